//! Every answer strata-http gives to an error from below it, pinned: one
//! example of every variant of the store's, the domain's and the read
//! models' errors (their `examples()`), each mapped the way the routes map
//! it, with its status and whole problem body compared to `answers.txt`.

use strata_aggregates::RepositoryError;
use strata_aggregates::domain::order::{OrderCommandKind, OrderError, OrderStatus};
use strata_aggregates::domain::service::OrderServiceError;
use strata_aggregates::domain::stock::{StockError, StockItem};
use strata_projections::ProjectionError;
use strata_store::StoreError;

use crate::error::{HttpError, from_projection, from_store};
use crate::routes::{orders, stock};

/// The variants of `StoreError` that exist with the `postgres` feature only.
const POSTGRES_ONLY: [&str; 2] = ["Postgres", "IncompatibleSchema"];

/// Every example, labelled, as the routes answer it. Version conflicts are
/// left out: the routes answer them with the resource's state (see the
/// conflict tests over HTTP).
fn answers() -> Vec<(String, HttpError)> {
    let mut out = Vec::new();
    // The variants of the `postgres` feature: see `postgres_errors_are_internal`.
    for e in StoreError::examples()
        .into_iter()
        .filter(|e| !POSTGRES_ONLY.contains(&e.variant))
    {
        out.push((format!("StoreError::{}", e.variant), from_store(e.error)));
    }
    for e in ProjectionError::examples() {
        out.push((format!("ProjectionError::{}", e.variant), from_projection(e.error)));
    }
    let mut order_errors = OrderError::examples();
    order_errors.push(strata_store::Example {
        variant: "InvalidTransition(from New)",
        error: OrderError::InvalidTransition {
            from: OrderStatus::New,
            command: OrderCommandKind::Pay,
        },
    });
    for e in order_errors {
        let label = format!("OrderServiceError::Rejected(OrderError::{})", e.variant);
        out.push((label, orders::refusal("o-1", OrderServiceError::Rejected(e.error))));
    }
    for e in StockError::examples() {
        let label = format!("OrderServiceError::StockRejected(StockError::{})", e.variant);
        let source = OrderServiceError::StockRejected {
            sku: "tea".into(),
            source: e.error,
        };
        out.push((label, orders::refusal("o-1", source)));
    }
    for e in OrderServiceError::examples() {
        if !matches!(e.error, OrderServiceError::Conflict(_)) {
            out.push((
                format!("OrderServiceError::{}", e.variant),
                orders::refusal("o-1", e.error),
            ));
        }
    }
    for e in StockError::examples() {
        let label = format!("RepositoryError<StockItem>::Rejected(StockError::{})", e.variant);
        out.push((label, stock::refusal("tea", RepositoryError::Rejected(e.error))));
    }
    for e in RepositoryError::<StockItem>::examples(StockError::EmptyName) {
        if !matches!(e.error, RepositoryError::Conflict(_)) {
            let label = format!("RepositoryError<StockItem>::{}", e.variant);
            out.push((label, stock::refusal("tea", e.error)));
        }
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

#[test]
fn every_answer_is_the_recorded_one() {
    let got = render(&answers());
    let expected = include_str!("answers.txt");
    for (got, expected) in got.lines().zip(expected.lines()) {
        assert_eq!(got, expected);
    }
    assert_eq!(got, expected);
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
        let problem = from_store(e.error).to_problem();
        assert_eq!(
            (problem.status, problem.problem_type.as_str()),
            (500, "/problems/internal-error")
        );
        assert_eq!(problem.detail, format!("internal error: {message}"));
    }
}
