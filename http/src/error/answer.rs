//! How strata-http answers the errors of the crates below it: the one
//! place that turns what kind of failure an error is (its
//! [`ErrorKind`]), and the variants that have problem types of their own,
//! into the problems the API answers with.
//!
//! The store, the domain and the read models know no HTTP: each of their
//! errors says its kind. Here [`by_kind`] maps (where the error comes from,
//! its kind) to a problem type, and one function per source ([`log`],
//! [`order`], [`stock`], [`read_model`]) first names the variants whose
//! answers carry data of their own (a stale version's state, the units of
//! insufficient stock, the commands a status allows) or differ from their
//! kind's, then answers every other variant by its kind. An answer is one
//! of http's own problem-shaped [`HttpError`]s, built when the response is
//! written: the error a handler returns keeps the typed source.
//!
//! Completeness is tested, not hoped for (see `tests.rs` beside this file
//! and `docs/http.md`): every (source, kind) pair either has a row in
//! [`by_kind`] or is listed as answered per variant, so a kind added to
//! strata-store fails the test until it has a row; and every variant of
//! every error enum below (their `examples()`, which fail to compile when a
//! variant has no example) is answered deliberately, with its status and
//! body pinned in `answers.txt`, so a variant added below fails the test
//! until its answer is reviewed. At run time an error this table does not
//! know (a kind added later) is answered as `internal-error` and logged.

use strata_aggregates::RepositoryError;
use strata_aggregates::domain::order::OrderError;
use strata_aggregates::domain::service::OrderServiceError;
use strata_aggregates::domain::stock::{StockError, StockItem};
use strata_projections::ProjectionError;
use strata_store::{ErrorKind, StoreError};
use strata_subscriptions::SubscriptionError;

use super::HttpError;
use crate::problem::ProblemType;

/// Where an error comes from, as far as its answer is concerned: the same
/// kind is answered differently by source (invalid input to the log is
/// `invalid-events` (400), to the domain `validation-failed` (422); a read
/// model refusing the server's own call is the server's failure).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    /// The log ([`StoreError`]), under any route.
    Log,
    /// An order and the order service ([`OrderError`], [`OrderServiceError`]).
    Order,
    /// A stock item ([`StockError`], its repository's errors).
    Stock,
    /// The read models ([`ProjectionError`]), under the views.
    ReadModel,
    /// The persistent subscription groups ([`SubscriptionError`]): their
    /// input comes in request bodies (settings, consumer names, tokens).
    Group,
}

impl Source {
    /// Every source.
    #[cfg(test)]
    pub(crate) const ALL: [Source; 5] = [
        Source::Log,
        Source::Order,
        Source::Stock,
        Source::ReadModel,
        Source::Group,
    ];
}

/// The problem type of an error of `kind` from `source` that no variant
/// rule names; `None` where each variant needs a rule of its own (what
/// conflicts, what was not found) and for a kind added to strata-store
/// after this table.
pub(crate) fn by_kind(source: Source, kind: ErrorKind) -> Option<ProblemType> {
    use ErrorKind as K;
    use Source as S;
    Some(match (source, kind) {
        (S::Order | S::Stock, K::NotFound) => ProblemType::NotFound,
        (S::Log, K::InvalidInput) => ProblemType::InvalidEvents,
        (S::Order | S::Stock, K::InvalidInput) => ProblemType::ValidationFailed,
        (S::Group, K::InvalidInput) => ProblemType::InvalidBody,
        (S::Log | S::Order | S::Stock | S::Group, K::TooLarge) => ProblemType::PayloadTooLarge,
        (S::Stock, K::Conflict) => ProblemType::StockStateConflict,
        // The server's own calls into its read models, not the client's
        // input: the client sends only cursors (named in `read_model`).
        (S::ReadModel, K::InvalidInput | K::TooLarge | K::Conflict) => ProblemType::Internal,
        (_, K::Unavailable) => ProblemType::ServiceUnavailable,
        // A tombstoned stream, under any route that writes it.
        (S::Log | S::Order | S::Stock | S::Group, K::Gone) => ProblemType::StreamDeleted,
        (S::ReadModel, K::Gone) => ProblemType::Internal,
        (_, K::Corrupt | K::Incompatible | K::Misconfigured | K::Internal) => ProblemType::Internal,
        // Answered per variant: the log's and the order's conflicts have
        // problem types of their own; nothing of the log or the read models
        // is "not found" today.
        (S::Log | S::Order | S::Group, K::Conflict) | (S::Log | S::ReadModel | S::Group, K::NotFound) => return None,
        // A kind added to strata-store after this table.
        _ => return None,
    })
}

/// An error from below, answered.
#[derive(Debug)]
pub(crate) struct Mapped {
    /// The problem-shaped error it is answered as.
    pub(crate) answer: HttpError,
    /// Whether a rule of this table chose the answer (`false`: the
    /// fallback, `internal-error`, for an error it does not know).
    pub(crate) deliberate: bool,
}

fn chosen(answer: HttpError) -> Mapped {
    Mapped {
        answer,
        deliberate: true,
    }
}

fn internal(e: &dyn std::fmt::Display) -> Mapped {
    chosen(HttpError::Internal { reason: e.to_string() })
}

/// What an error's answer names: the kind of resource and its id.
type Subject<'a> = Option<(&'static str, &'a str)>;

/// The answer of problem type `problem` with `message` as its detail, for
/// the problem types [`by_kind`] gives; `None` for one that needs more
/// than a message (or a subject it lacks).
pub(crate) fn generic(problem: ProblemType, message: String, subject: Subject<'_>) -> Option<HttpError> {
    Some(match problem {
        ProblemType::NotFound => {
            let (resource, id) = subject?;
            HttpError::NotFound {
                resource,
                id: id.to_string(),
            }
        }
        ProblemType::StockStateConflict => {
            let (_, sku) = subject?;
            HttpError::StockStateConflict {
                sku: sku.to_string(),
                reason: message,
            }
        }
        ProblemType::InvalidEvents => HttpError::InvalidEvents { reason: message },
        ProblemType::InvalidBody => HttpError::InvalidBody { reason: message },
        ProblemType::ValidationFailed => HttpError::ValidationFailed { reason: message },
        ProblemType::PayloadTooLarge => HttpError::PayloadTooLarge { reason: message },
        ProblemType::ServiceUnavailable => HttpError::Unavailable { reason: message },
        ProblemType::StreamDeleted => HttpError::StreamDeleted { reason: message },
        ProblemType::Internal => HttpError::Internal { reason: message },
        _ => return None,
    })
}

/// Answers an error by its kind ([`by_kind`]), or as `internal-error`,
/// not deliberately, when the table has no answer.
fn by_kind_of(source: Source, kind: ErrorKind, e: &dyn std::fmt::Display, subject: Subject<'_>) -> Mapped {
    let message = e.to_string();
    match by_kind(source, kind).and_then(|problem| generic(problem, message.clone(), subject)) {
        Some(answer) => chosen(answer),
        None => Mapped {
            answer: HttpError::Internal { reason: message },
            deliberate: false,
        },
    }
}

/// A store error, under any route.
pub(crate) fn log(e: &StoreError) -> Mapped {
    match e {
        // The routes answer a version conflict with the resource's state
        // (`HttpError::StaleVersion`); one that reaches here is a bug.
        StoreError::WrongExpectedVersion { .. } => internal(e),
        StoreError::DuplicateEventId { stream, .. } => chosen(HttpError::DuplicateEventId {
            stream: stream.to_string(),
            reason: e.to_string(),
        }),
        StoreError::InvalidStreamId { stream, reason } => chosen(HttpError::InvalidId {
            id: stream.clone(),
            reason: reason.to_string(),
        }),
        StoreError::Unavailable { reason } => chosen(HttpError::Unavailable { reason: reason.clone() }),
        // Filters arrive as query parameters of the subscription routes.
        StoreError::InvalidFilter { .. } => chosen(HttpError::InvalidParameter { reason: e.to_string() }),
        // Deletes, truncations and retention arrive as parameters and bodies.
        StoreError::InvalidStreamOperation { .. } => chosen(HttpError::ValidationFailed { reason: e.to_string() }),
        other => by_kind_of(Source::Log, other.kind(), other, None),
    }
}

/// An order service error of the order `id`.
pub(crate) fn order(id: &str, e: &OrderServiceError) -> Mapped {
    match e {
        // The routes answer a version conflict with the order's state.
        OrderServiceError::Conflict(_) => internal(e),
        OrderServiceError::Rejected(refusal) => order_refusal(id, refusal),
        OrderServiceError::UnknownSku { sku } => chosen(HttpError::UnknownSku { sku: sku.clone() }),
        OrderServiceError::StockRejected { sku, source } => stock_in_order(sku, source),
        OrderServiceError::StockContention { sku, attempts } => chosen(HttpError::StockContention {
            sku: sku.clone(),
            attempts: *attempts,
        }),
        OrderServiceError::Store(e) => log(e),
        other => by_kind_of(Source::Order, other.kind(), other, Some(("order", id))),
    }
}

fn order_refusal(id: &str, e: &OrderError) -> Mapped {
    match e {
        OrderError::AlreadyExists { order_id, .. } => chosen(HttpError::AlreadyExists {
            resource: "order",
            id: order_id.clone(),
        }),
        // A command the status refuses (to an order that does not exist,
        // the kind is not-found and the answer `not-found`).
        OrderError::InvalidTransition { from, command } if e.kind() == ErrorKind::Conflict => {
            chosen(HttpError::InvalidTransition {
                resource: "order",
                id: id.to_string(),
                current_status: from.to_string(),
                command: command.to_string(),
                allowed_commands: from.allowed_commands().iter().map(|c| c.to_string()).collect(),
            })
        }
        OrderError::PaymentMismatch {
            total_cents,
            amount_cents,
        } => chosen(HttpError::PaymentMismatch {
            order_id: id.to_string(),
            total_cents: *total_cents,
            amount_cents: *amount_cents,
        }),
        other => by_kind_of(Source::Order, other.kind(), other, Some(("order", id))),
    }
}

/// A stock item's refusal of its part in an order.
fn stock_in_order(sku: &str, e: &StockError) -> Mapped {
    match e {
        StockError::InsufficientStock { requested, available } => chosen(HttpError::InsufficientStock {
            sku: sku.to_string(),
            requested: *requested,
            available: *available,
        }),
        // The order names a SKU nobody registered: the order is at fault.
        StockError::NotRegistered { .. } => chosen(HttpError::UnknownSku { sku: sku.to_string() }),
        // The request was about the order: the detail names the item.
        other if by_kind(Source::Stock, other.kind()) == Some(ProblemType::ValidationFailed) => {
            chosen(HttpError::ValidationFailed {
                reason: format!("stock item {sku}: {other}"),
            })
        }
        other => by_kind_of(Source::Stock, other.kind(), other, Some(("stock item", sku))),
    }
}

/// A stock repository error of the stock item `sku`.
pub(crate) fn stock(sku: &str, e: &RepositoryError<StockItem>) -> Mapped {
    match e {
        // The routes answer a version conflict with the item's state.
        RepositoryError::Conflict(_) => internal(e),
        RepositoryError::Rejected(refusal) => stock_refusal(sku, refusal),
        RepositoryError::Store(e) => log(e),
        // The routes send each command to the SKU it names: a mismatch is
        // a bug of the route, not the client's input.
        RepositoryError::IdMismatch { .. } => internal(e),
        other => by_kind_of(Source::Stock, other.kind(), other, Some(("stock item", sku))),
    }
}

fn stock_refusal(sku: &str, e: &StockError) -> Mapped {
    match e {
        StockError::AlreadyRegistered { sku } => chosen(HttpError::AlreadyExists {
            resource: "stock item",
            id: sku.clone(),
        }),
        StockError::InsufficientStock { requested, available } => chosen(HttpError::InsufficientStock {
            sku: sku.to_string(),
            requested: *requested,
            available: *available,
        }),
        other => by_kind_of(Source::Stock, other.kind(), other, Some(("stock item", sku))),
    }
}

/// A read model error, under the views.
pub(crate) fn read_model(e: &ProjectionError) -> Mapped {
    match e {
        ProjectionError::Timeout { position, applied, .. } => chosen(HttpError::ReadModelLagging {
            position: *position,
            applied: *applied,
        }),
        ProjectionError::InvalidCursor { cursor, expected } => chosen(HttpError::InvalidParameter {
            reason: format!("after {cursor:?} is not a cursor of this view: expected {expected}"),
        }),
        // The model is not following the log, whatever the cause's kind:
        // its runner cannot read the log, or the model has an older layout
        // that `Projections::start` rebuilds as the server starts.
        ProjectionError::Store { .. } | ProjectionError::ModelVersionMismatch { .. } => {
            chosen(HttpError::Unavailable { reason: e.to_string() })
        }
        other => by_kind_of(Source::ReadModel, other.kind(), other, None),
    }
}

/// A persistent subscription group's error.
pub(crate) fn group(e: &SubscriptionError) -> Mapped {
    match e {
        // The group's name comes in the path; a consumer's in the body.
        SubscriptionError::InvalidName {
            what: "group",
            name,
            reason,
        } => chosen(HttpError::InvalidId {
            id: name.clone(),
            reason: reason.to_string(),
        }),
        SubscriptionError::GroupNotFound { group } => chosen(HttpError::NotFound {
            resource: "subscription group",
            id: group.to_string(),
        }),
        SubscriptionError::GroupExists { group } => chosen(HttpError::GroupExists {
            group: group.to_string(),
        }),
        SubscriptionError::Contention { group, attempts } => chosen(HttpError::Contention {
            resource: "subscription group",
            id: group.to_string(),
            attempts: *attempts,
        }),
        SubscriptionError::Store(e) => log(e),
        other => by_kind_of(Source::Group, other.kind(), other, None),
    }
}
