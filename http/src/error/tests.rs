//! Every answer strata-http gives to an error from below it, pinned: one
//! example of every variant of the store's, the domain's and the read
//! models' errors (their `examples()`, which fail to compile when a variant
//! has none), each carried the way the routes carry it, with its status and
//! whole problem body compared to `answers.txt`; and the table of kinds
//! checked for a row per (source, kind).

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use strata_aggregates::RepositoryError;
use strata_aggregates::domain::order::{OrderCommandKind, OrderError, OrderStatus};
use strata_aggregates::domain::service::OrderServiceError;
use strata_aggregates::domain::stock::{StockError, StockItem};
use strata_projections::ProjectionError;
use strata_store::{ErrorKind, Example, StoreError};
use strata_subscriptions::SubscriptionError;

use super::HttpError;
use super::answer::{Source, by_kind, generic};
use crate::problem::{PROBLEM_JSON, ProblemType};

/// The variants of `StoreError` that exist with the `postgres` feature only.
const POSTGRES_ONLY: [&str; 2] = ["Postgres", "IncompatibleSchema"];

fn order(e: OrderServiceError) -> HttpError {
    HttpError::Order {
        id: "o-1".into(),
        source: e,
    }
}

fn stock(e: RepositoryError<StockItem>) -> HttpError {
    HttpError::Stock {
        sku: "tea".into(),
        source: e,
    }
}

/// Every example, labelled, carried as the routes carry it. (A version
/// conflict is answered by its route with the resource's state; one that
/// reaches the table is a bug, answered as an internal error.)
fn answers() -> Vec<(String, HttpError)> {
    let mut out = Vec::new();
    // The variants of the `postgres` feature: see `postgres_errors_are_internal`.
    for e in StoreError::examples()
        .into_iter()
        .filter(|e| !POSTGRES_ONLY.contains(&e.variant))
    {
        out.push((format!("StoreError::{}", e.variant), HttpError::Store(e.error)));
    }
    for e in ProjectionError::examples() {
        out.push((
            format!("ProjectionError::{}", e.variant),
            HttpError::Projection(e.error),
        ));
    }
    let mut order_errors = OrderError::examples();
    order_errors.push(Example {
        variant: "InvalidTransition(from New)",
        error: OrderError::InvalidTransition {
            from: OrderStatus::New,
            command: OrderCommandKind::Pay,
        },
    });
    for e in order_errors {
        let label = format!("OrderServiceError::Rejected(OrderError::{})", e.variant);
        out.push((label, order(OrderServiceError::Rejected(e.error))));
    }
    for e in StockError::examples() {
        let label = format!("OrderServiceError::StockRejected(StockError::{})", e.variant);
        let source = OrderServiceError::StockRejected {
            sku: "tea".into(),
            source: e.error,
        };
        out.push((label, order(source)));
    }
    for e in OrderServiceError::examples() {
        out.push((format!("OrderServiceError::{}", e.variant), order(e.error)));
    }
    for e in StockError::examples() {
        let label = format!("RepositoryError<StockItem>::Rejected(StockError::{})", e.variant);
        out.push((label, stock(RepositoryError::Rejected(e.error))));
    }
    for e in RepositoryError::<StockItem>::examples(StockError::EmptyName) {
        out.push((format!("RepositoryError<StockItem>::{}", e.variant), stock(e.error)));
    }
    let mut group_errors = SubscriptionError::examples();
    group_errors.push(Example {
        variant: "InvalidName(consumer)",
        error: SubscriptionError::InvalidName {
            what: "consumer",
            name: "a b".into(),
            reason: "may hold only ASCII letters, digits, `.`, `_` and `-`",
        },
    });
    for e in group_errors {
        out.push((
            format!("SubscriptionError::{}", e.variant),
            HttpError::Subscription(e.error),
        ));
    }
    out
}

fn render(answers: &[(String, HttpError)]) -> String {
    answers
        .iter()
        .map(|(label, e)| {
            let body = serde_json::to_string(&e.to_problem()).expect("a problem serialises");
            format!("{label}\n  {} {body}\n", e.status().as_u16())
        })
        .collect()
}

/// A variant added below shows up here as a line that `answers.txt` lacks:
/// review its answer (status, type, body) and add it.
#[test]
fn every_answer_is_the_recorded_one() {
    let got = render(&answers());
    let expected = include_str!("answers.txt");
    for (got, expected) in got.lines().zip(expected.lines()) {
        assert_eq!(got, expected);
    }
    assert_eq!(got, expected);
}

/// No example falls through to the fallback for errors the table does
/// not know.
#[test]
fn every_variant_is_answered_deliberately() {
    for (label, e) in answers() {
        assert!(e.answer().deliberate(), "{label} has no answer chosen for it");
        assert!(
            !matches!(
                e.answer().error(),
                HttpError::Store(_)
                    | HttpError::Projection(_)
                    | HttpError::Order { .. }
                    | HttpError::Stock { .. }
                    | HttpError::Subscription(_)
            ),
            "{label} is answered by a problem of http's own"
        );
    }
}

/// The pairs [`by_kind`] leaves to the variants' own rules.
const PER_VARIANT: [(Source, ErrorKind); 6] = [
    (Source::Log, ErrorKind::Conflict),
    (Source::Order, ErrorKind::Conflict),
    (Source::Group, ErrorKind::Conflict),
    (Source::Log, ErrorKind::NotFound),
    (Source::ReadModel, ErrorKind::NotFound),
    (Source::Group, ErrorKind::NotFound),
];

/// A kind added to strata-store (`ErrorKind::ALL`) has no row here: this
/// test fails until it has one for every source, or is listed as answered
/// per variant.
#[test]
fn every_kind_has_a_row_for_every_source() {
    for source in Source::ALL {
        for &kind in ErrorKind::ALL {
            match by_kind(source, kind) {
                None => assert!(
                    PER_VARIANT.contains(&(source, kind)),
                    "no answer for {kind} errors of {source:?}: add a row to `by_kind`"
                ),
                Some(problem) => {
                    assert!(!PER_VARIANT.contains(&(source, kind)), "{source:?} {kind}");
                    let subject = match source {
                        Source::Order => Some(("order", "o-1")),
                        Source::Stock => Some(("stock item", "tea")),
                        Source::Log | Source::ReadModel | Source::Group => None,
                    };
                    let answer = generic(problem, "why".into(), subject);
                    assert!(answer.is_some(), "{source:?} {kind}: no answer of type {problem}");
                    assert_eq!(answer.map(|a| a.problem_type()), Some(problem));
                }
            }
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_errors_are_internal() {
    let examples: Vec<_> = StoreError::examples()
        .into_iter()
        .filter(|e| POSTGRES_ONLY.contains(&e.variant))
        .collect();
    assert_eq!(examples.len(), POSTGRES_ONLY.len());
    for e in examples {
        let message = e.error.to_string();
        let answer = HttpError::Store(e.error);
        assert!(answer.answer().deliberate());
        let problem = answer.to_problem();
        assert_eq!(
            (problem.status, problem.problem_type.as_str()),
            (500, "/problems/internal-error")
        );
        assert_eq!(problem.detail, format!("internal error: {message}"));
    }
}

#[test]
fn an_error_from_below_keeps_its_typed_source() {
    let e = HttpError::Order {
        id: "o-1".into(),
        source: OrderServiceError::StockRejected {
            sku: "tea".into(),
            source: StockError::InsufficientStock {
                requested: 5,
                available: 2,
            },
        },
    };
    let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<OrderServiceError>());
    assert!(matches!(
        source,
        Some(OrderServiceError::StockRejected {
            source: StockError::InsufficientStock { requested: 5, .. },
            ..
        })
    ));
    assert_eq!(e.problem_type(), ProblemType::InsufficientStock);
    let unavailable = HttpError::Store(StoreError::Unavailable {
        reason: "closed".into(),
    });
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = unavailable.into_response();
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
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
