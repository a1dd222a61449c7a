//! The one error type of strata-http, and how each variant becomes a
//! problem response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use strata_projections::ProjectionError;
use strata_store::StoreError;

use crate::problem::{PROBLEM_JSON, Problem, ProblemType};
use crate::routes::documents::DocumentProblem;

/// A write decided on a version that is no longer current: what the 409
/// (or 412) body says.
#[derive(Clone, PartialEq, Debug)]
pub struct StaleVersion {
    /// The status configured for version conflicts (409 or 412).
    pub status: StatusCode,
    /// The kind of resource (`order`, `stock item`, `stream`).
    pub resource: &'static str,
    /// Its id.
    pub id: String,
    /// What the request expected: a version, or `"*"`, `"any"`, `"no-stream"`.
    pub expected: Value,
    /// The version now.
    pub current_version: u64,
    /// The resource now.
    pub current: Value,
    /// The events after the expected version, oldest first.
    pub events_since: Vec<Value>,
    /// Whether `events_since` is every such event.
    pub events_since_complete: bool,
}

/// Everything that can go wrong in strata-http: a request's problem (each
/// variant maps to one [`ProblemType`] and status; see
/// [`HttpError::problem_type`]) or a failure to start or serve.
///
/// Handling: request problems are answered as `application/problem+json`;
/// the others are returned by [`crate::Server`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A stale `If-Match` / `expected_version` (409, or 412 when configured).
    #[error("{resource} {id} is at version {current_version}, the request expected {expected}", resource = .0.resource, id = .0.id, current_version = .0.current_version, expected = .0.expected)]
    StaleVersion(Box<StaleVersion>),

    /// A state machine refusal (409).
    #[error("cannot {command} {resource} {id}: it is {current_status}")]
    InvalidTransition {
        /// The resource kind.
        resource: &'static str,
        /// Its id.
        id: String,
        /// Its status.
        current_status: String,
        /// The refused command.
        command: String,
        /// The commands the status accepts.
        allowed_commands: Vec<String>,
    },

    /// A create for an id that exists (409).
    #[error("{resource} {id} already exists")]
    AlreadyExists {
        /// The resource kind.
        resource: &'static str,
        /// The id.
        id: String,
    },

    /// More units requested than available (409).
    #[error("insufficient stock of {sku}: {requested} requested, {available} available")]
    InsufficientStock {
        /// The SKU.
        sku: String,
        /// Units requested.
        requested: u64,
        /// Units available.
        available: u64,
    },

    /// Another stock rule refused the command (409).
    #[error("stock item {sku}: {reason}")]
    StockStateConflict {
        /// The SKU.
        sku: String,
        /// The refusal.
        reason: String,
    },

    /// An event id already used in the stream elsewhere (409).
    #[error("{reason}")]
    DuplicateEventId {
        /// The stream.
        stream: String,
        /// The store's message.
        reason: String,
    },

    /// The first request with this key has not finished (409).
    #[error("a request with Idempotency-Key {key:?} is still in flight")]
    IdempotencyKeyInFlight {
        /// The key.
        key: String,
    },

    /// Payment not equal to the total (422).
    #[error("payment of {amount_cents} cents does not match the order total of {total_cents} cents")]
    PaymentMismatch {
        /// The order.
        order_id: String,
        /// Its total.
        total_cents: u64,
        /// The amount offered.
        amount_cents: u64,
    },

    /// An order line names an unregistered SKU (422).
    #[error("unknown SKU {sku}")]
    UnknownSku {
        /// The SKU.
        sku: String,
    },

    /// A domain rule on input values (422).
    #[error("{reason}")]
    ValidationFailed {
        /// The rule broken.
        reason: String,
    },

    /// JSON of the wrong shape (422).
    #[error("{reason}")]
    InvalidBody {
        /// Where and what.
        reason: String,
    },

    /// The key came with another request (422).
    #[error("Idempotency-Key {key:?} was first used for a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },

    /// Not JSON (400).
    #[error("{reason}")]
    MalformedJson {
        /// The parser's message.
        reason: String,
    },

    /// A path id that cannot name a resource (400).
    #[error("invalid id {id:?}: {reason}")]
    InvalidId {
        /// The id (cleaned of control characters).
        id: String,
        /// What is wrong.
        reason: String,
    },

    /// An If-Match this API cannot use (400).
    #[error("invalid If-Match {value:?}: {reason}")]
    InvalidIfMatch {
        /// The header value.
        value: String,
        /// What is wrong.
        reason: String,
    },

    /// If-Match and expected_version name different versions (400).
    #[error("the precondition header ({if_match}) and expected_version ({body}) disagree")]
    ConflictingExpectedVersions {
        /// The If-Match (or If-None-Match) value.
        if_match: String,
        /// The expected_version value.
        body: String,
    },

    /// A bad query or path parameter (400).
    #[error("{reason}")]
    InvalidParameter {
        /// Which and why.
        reason: String,
    },

    /// Events the log refuses (400).
    #[error("{reason}")]
    InvalidEvents {
        /// Why.
        reason: String,
    },

    /// A malformed Idempotency-Key (400).
    #[error("invalid Idempotency-Key: {reason}")]
    InvalidIdempotencyKey {
        /// Why.
        reason: String,
    },

    /// A domain or system stream written through the generic log API (403).
    #[error("stream {stream} is reserved: write it through its resource routes")]
    ReservedStream {
        /// The stream.
        stream: String,
    },

    /// No such resource (404).
    #[error("{resource} {id} does not exist")]
    NotFound {
        /// The resource kind.
        resource: &'static str,
        /// The id or path.
        id: String,
    },

    /// A method the route does not take (405).
    #[error("method {method} is not allowed on this route")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },

    /// Over the body limit or the log's limits (413).
    #[error("{reason}")]
    PayloadTooLarge {
        /// Which limit.
        reason: String,
    },

    /// Not a media type the route takes (415).
    #[error("expected Content-Type: {expected}, got {}", .content_type.as_deref().map_or_else(|| "none".to_string(), |t| format!("{t:?}")))]
    UnsupportedMediaType {
        /// What was sent.
        content_type: Option<String>,
        /// What the route takes.
        expected: &'static str,
    },

    /// A problem of the document routes, built where the document errors
    /// are mapped (`routes/documents`): its type, status and members.
    #[error("{}", .0.problem.detail)]
    Document(Box<DocumentProblem>),

    /// A write without If-Match on a server that requires it (428).
    #[error(
        "this server requires writes to existing resources to name the version they were decided on: If-Match: \"<version>\" or expected_version (If-Match: * names none)"
    )]
    PreconditionRequired,

    /// A hot stock item outran the retries (503).
    #[error("stock item {sku} kept changing: gave up after {attempts} attempts")]
    StockContention {
        /// The SKU.
        sku: String,
        /// Attempts made.
        attempts: u32,
    },

    /// A write that named no version lost its race on every retry (503):
    /// the server read, decided and retried on its own, and ran out.
    #[error("{resource} {id} kept changing: gave up after {attempts} attempts")]
    Contention {
        /// What kind of resource.
        resource: &'static str,
        /// Its id.
        id: String,
        /// Attempts made.
        attempts: u32,
    },

    /// A read model behind `min_position` after the wait (503).
    #[error("the read model has applied position {applied}, not {position}, within the wait")]
    ReadModelLagging {
        /// The position asked for.
        position: u64,
        /// The position applied.
        applied: u64,
    },

    /// The store or a read model cannot serve now (503).
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },

    /// A server-side failure (500).
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },

    /// Opening or using the store failed while starting or stopping.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// Starting or stopping the read models failed.
    #[error(transparent)]
    Projection(#[from] ProjectionError),

    /// Binding or serving the socket failed.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the server was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl HttpError {
    /// The problem type this error is answered with.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            HttpError::StaleVersion(_) => ProblemType::WrongExpectedVersion,
            HttpError::InvalidTransition { .. } => ProblemType::InvalidTransition,
            HttpError::AlreadyExists { .. } => ProblemType::AlreadyExists,
            HttpError::InsufficientStock { .. } => ProblemType::InsufficientStock,
            HttpError::StockStateConflict { .. } => ProblemType::StockStateConflict,
            HttpError::DuplicateEventId { .. } => ProblemType::DuplicateEventId,
            HttpError::IdempotencyKeyInFlight { .. } => ProblemType::IdempotencyKeyInFlight,
            HttpError::PaymentMismatch { .. } => ProblemType::PaymentMismatch,
            HttpError::UnknownSku { .. } => ProblemType::UnknownSku,
            HttpError::ValidationFailed { .. } => ProblemType::ValidationFailed,
            HttpError::InvalidBody { .. } => ProblemType::InvalidBody,
            HttpError::IdempotencyKeyReused { .. } => ProblemType::IdempotencyKeyReused,
            HttpError::MalformedJson { .. } => ProblemType::MalformedJson,
            HttpError::InvalidId { .. } => ProblemType::InvalidId,
            HttpError::InvalidIfMatch { .. } => ProblemType::InvalidIfMatch,
            HttpError::ConflictingExpectedVersions { .. } => ProblemType::ConflictingExpectedVersions,
            HttpError::InvalidParameter { .. } => ProblemType::InvalidParameter,
            HttpError::InvalidEvents { .. } => ProblemType::InvalidEvents,
            HttpError::InvalidIdempotencyKey { .. } => ProblemType::InvalidIdempotencyKey,
            HttpError::ReservedStream { .. } => ProblemType::ReservedStream,
            HttpError::NotFound { .. } => ProblemType::NotFound,
            HttpError::MethodNotAllowed { .. } => ProblemType::MethodNotAllowed,
            HttpError::PayloadTooLarge { .. } => ProblemType::PayloadTooLarge,
            HttpError::UnsupportedMediaType { .. } => ProblemType::UnsupportedMediaType,
            HttpError::PreconditionRequired => ProblemType::PreconditionRequired,
            HttpError::StockContention { .. } => ProblemType::StockContention,
            HttpError::Contention { .. } => ProblemType::Contention,
            HttpError::ReadModelLagging { .. } => ProblemType::ReadModelLagging,
            HttpError::Unavailable { .. } => ProblemType::ServiceUnavailable,
            HttpError::Document(d) => d.kind,
            HttpError::Store(e) => store_problem_type(e),
            HttpError::Internal { .. } | HttpError::Projection(_) | HttpError::Io { .. } => ProblemType::Internal,
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::StaleVersion(s) => s.status,
            HttpError::Document(d) => {
                StatusCode::from_u16(d.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => other.problem_type().default_status(),
        }
    }

    /// The problem body of this error (without `instance`).
    pub fn to_problem(&self) -> Problem {
        if let HttpError::Document(d) = self {
            let mut p = d.problem.clone();
            p.retry_after = self.retry_after();
            return p;
        }
        let kind = self.problem_type();
        let mut p = Problem {
            problem_type: kind.uri(),
            title: kind.title().to_string(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            ..Problem::default()
        };
        match self {
            HttpError::StaleVersion(s) => {
                p.resource = Some(s.resource.to_string());
                p.id = Some(s.id.clone());
                p.expected_version = Some(s.expected.clone());
                p.current_version = Some(s.current_version);
                p.current = Some(s.current.clone());
                p.events_since = Some(s.events_since.clone());
                p.events_since_complete = Some(s.events_since_complete);
            }
            HttpError::InvalidTransition {
                resource,
                id,
                current_status,
                command,
                allowed_commands,
            } => {
                p.resource = Some(resource.to_string());
                p.id = Some(id.clone());
                p.current_status = Some(current_status.clone());
                p.command = Some(command.clone());
                p.allowed_commands = Some(allowed_commands.clone());
            }
            HttpError::AlreadyExists { resource, id } | HttpError::NotFound { resource, id } => {
                p.resource = Some(resource.to_string());
                p.id = Some(id.clone());
            }
            HttpError::InsufficientStock {
                sku,
                requested,
                available,
            } => {
                p.resource = Some("stock item".into());
                p.id = Some(sku.clone());
                p.requested = Some(*requested);
                p.available = Some(*available);
            }
            HttpError::StockStateConflict { sku, .. }
            | HttpError::UnknownSku { sku }
            | HttpError::StockContention { sku, .. } => {
                p.resource = Some("stock item".into());
                p.id = Some(sku.clone());
            }
            HttpError::Contention { resource, id, .. } => {
                p.resource = Some((*resource).into());
                p.id = Some(id.clone());
            }
            HttpError::DuplicateEventId { stream, .. } | HttpError::ReservedStream { stream } => {
                p.resource = Some("stream".into());
                p.id = Some(stream.clone());
            }
            HttpError::IdempotencyKeyInFlight { key } | HttpError::IdempotencyKeyReused { key } => {
                p.resource = Some("idempotency key".into());
                p.id = Some(key.clone());
            }
            HttpError::PaymentMismatch {
                order_id,
                total_cents,
                amount_cents,
            } => {
                p.resource = Some("order".into());
                p.id = Some(order_id.clone());
                p.total_cents = Some(*total_cents);
                p.amount_cents = Some(*amount_cents);
            }
            HttpError::ReadModelLagging { position, applied } => {
                p.position = Some(*position);
                p.applied_position = Some(*applied);
            }
            _ => {}
        }
        p.retry_after = self.retry_after();
        p
    }

    /// Seconds a client should wait before retrying, for transient problems.
    pub fn retry_after(&self) -> Option<u64> {
        match self.problem_type() {
            ProblemType::IdempotencyKeyInFlight
            | ProblemType::StockContention
            | ProblemType::Contention
            | ProblemType::ReadModelLagging
            | ProblemType::ServiceUnavailable => Some(1),
            _ => None,
        }
    }
}

/// The problem type of a store error (conflicts are mapped by the caller,
/// which knows the resource).
fn store_problem_type(e: &StoreError) -> ProblemType {
    match e {
        StoreError::WrongExpectedVersion { .. } => ProblemType::WrongExpectedVersion,
        StoreError::InvalidStreamId { .. } => ProblemType::InvalidId,
        StoreError::EmptyAppend { .. } | StoreError::InvalidEventType { .. } | StoreError::DuplicateStream { .. } => {
            ProblemType::InvalidEvents
        }
        StoreError::TooManyEvents { .. }
        | StoreError::AppendTooLarge { .. }
        | StoreError::PayloadTooLarge { .. }
        | StoreError::MetadataTooLarge { .. } => ProblemType::PayloadTooLarge,
        StoreError::DuplicateEventId { .. } => ProblemType::DuplicateEventId,
        StoreError::Unavailable { .. } => ProblemType::ServiceUnavailable,
        _ => ProblemType::Internal,
    }
}

/// A response extension naming the problem type of an error response, for
/// metrics (conflicts per route) and logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProblemKind(pub ProblemType);

tokio::task_local! {
    /// The request path, for the `instance` member of problem bodies.
    pub(crate) static REQUEST_PATH: String;
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut problem = self.to_problem();
        problem.instance = REQUEST_PATH.try_with(Clone::clone).ok();
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(problem = %self.problem_type(), error = %self, "request failed");
        } else {
            tracing::debug!(problem = %self.problem_type(), error = %self, "request refused");
        }
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let HttpError::StaleVersion(s) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", s.current_version))
        {
            headers.insert(header::ETAG, v);
        }
        if let HttpError::Document(d) = &self {
            d.add_headers(headers);
        }
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ProblemKind(self.problem_type()));
        response
    }
}

/// Maps a store error outside a version conflict (which the caller maps,
/// knowing the resource) to the error answered for it.
pub(crate) fn from_store(e: StoreError) -> HttpError {
    match &e {
        StoreError::InvalidStreamId { stream, reason } => HttpError::InvalidId {
            id: stream.clone(),
            reason: reason.to_string(),
        },
        StoreError::EmptyAppend { .. } | StoreError::InvalidEventType { .. } | StoreError::DuplicateStream { .. } => {
            HttpError::InvalidEvents { reason: e.to_string() }
        }
        StoreError::TooManyEvents { .. }
        | StoreError::AppendTooLarge { .. }
        | StoreError::PayloadTooLarge { .. }
        | StoreError::MetadataTooLarge { .. } => HttpError::PayloadTooLarge { reason: e.to_string() },
        StoreError::DuplicateEventId { stream, .. } => HttpError::DuplicateEventId {
            stream: stream.to_string(),
            reason: e.to_string(),
        },
        StoreError::Unavailable { reason } => HttpError::Unavailable { reason: reason.clone() },
        _ => HttpError::Internal { reason: e.to_string() },
    }
}

/// Maps a read model error.
pub(crate) fn from_projection(e: ProjectionError) -> HttpError {
    match e {
        ProjectionError::Timeout { position, applied, .. } => HttpError::ReadModelLagging { position, applied },
        ProjectionError::InvalidCursor { cursor, expected } => HttpError::InvalidParameter {
            reason: format!("after {cursor:?} is not a cursor of this view: expected {expected}"),
        },
        // A read model stored by an older version of its projection lacks
        // what this one reads; `Projections::start` rebuilds it.
        ProjectionError::NotRunning { .. }
        | ProjectionError::ModelVersionMismatch { .. }
        | ProjectionError::Store { .. }
        | ProjectionError::Database {
            source: StoreError::Unavailable { .. },
            ..
        } => HttpError::Unavailable { reason: e.to_string() },
        other => HttpError::Internal {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use strata_store::{ExpectedVersion, StreamId};

    use super::*;

    #[test]
    fn every_store_error_has_a_deliberate_status() {
        let s = StreamId::new("s").unwrap();
        let cases: Vec<(StoreError, u16)> = vec![
            (
                StoreError::InvalidStreamId {
                    stream: "x".into(),
                    reason: "bad",
                },
                400,
            ),
            (StoreError::EmptyAppend { stream: s.clone() }, 400),
            (StoreError::DuplicateStream { stream: s.clone() }, 400),
            (
                StoreError::TooManyEvents {
                    stream: s.clone(),
                    count: 2,
                    limit: 1,
                },
                413,
            ),
            (StoreError::AppendTooLarge { size: 2, limit: 1 }, 413),
            (
                StoreError::DuplicateEventId {
                    stream: s.clone(),
                    event_id: strata_store::EventId::new(),
                    existing_version: Some(1),
                },
                409,
            ),
            (
                StoreError::Unavailable {
                    reason: "closed".into(),
                },
                503,
            ),
            (
                StoreError::Corrupt {
                    location: "event at position 1".into(),
                    detail: "checksum".into(),
                },
                500,
            ),
            (
                StoreError::Io {
                    context: "fsync".into(),
                    source: std::io::Error::other("disk"),
                },
                500,
            ),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            let mapped = from_store(e);
            assert_eq!(mapped.status().as_u16(), status, "{text}");
            assert_eq!(mapped.to_problem().status, status);
        }
        // A conflict is mapped by the caller, but its type is still the conflict type.
        let conflict = StoreError::WrongExpectedVersion {
            stream: s,
            expected: ExpectedVersion::Exact(1),
            actual: 2,
        };
        assert_eq!(store_problem_type(&conflict), ProblemType::WrongExpectedVersion);
    }

    #[test]
    fn transient_problems_say_when_to_retry() {
        let e = HttpError::StockContention {
            sku: "tea".into(),
            attempts: 10,
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let e = HttpError::Contention {
            resource: "stock item",
            id: "tea".into(),
            attempts: 10,
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.problem_type().name(), "contention");
        assert_eq!(e.into_response().headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn projection_errors_map_to_503_or_500() {
        let lag = from_projection(ProjectionError::Timeout {
            projection: "p".into(),
            position: 9,
            applied: 3,
            timeout: std::time::Duration::from_millis(1),
        });
        assert_eq!(lag.problem_type(), ProblemType::ReadModelLagging);
        let stopped = from_projection(ProjectionError::NotRunning {
            projection: "p".into(),
            position: 9,
            applied: 3,
            failure: None,
        });
        assert_eq!(stopped.status(), StatusCode::SERVICE_UNAVAILABLE);
        let corrupt = from_projection(ProjectionError::Corrupt {
            projection: "p".into(),
            key: "k".into(),
            detail: "d".into(),
        });
        assert_eq!(corrupt.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let outdated = from_projection(ProjectionError::ModelVersionMismatch {
            projection: "p".into(),
            stored: 0,
            expected: 1,
        });
        assert_eq!(outdated.problem_type(), ProblemType::ServiceUnavailable);
        let cursor = from_projection(ProjectionError::InvalidCursor {
            cursor: "x".into(),
            expected: "y",
        });
        assert_eq!(cursor.problem_type(), ProblemType::InvalidParameter);
    }
}
