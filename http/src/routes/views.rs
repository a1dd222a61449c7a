//! `/views`: the read models, a page at a time, with read-your-writes
//! through `min_position`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use strata_aggregates::domain::order::OrderStatus;
use strata_projections::{LowStockCursor, OrderFilter};
use utoipa::IntoParams;

use super::orders::page_limit;
use super::{STRATA_POSITION, Views};
use crate::error::HttpError;
use crate::extract::ApiQuery;
use crate::model::{OrderSummaryView, OrdersView, StockLevelView, StockLevelsView};
use crate::problem::Problem;

/// Waits (bounded by the server's read wait) until the order summary and
/// stock levels have applied `min_position`; returns the position both
/// have applied. (Not the document listing: a view waits only for the
/// read models it may read.)
async fn wait(state: &Views, min_position: Option<u64>) -> Result<u64, HttpError> {
    let models = [state.projections.orders().model(), state.projections.stock().model()];
    if let Some(p) = min_position {
        let deadline = tokio::time::Instant::now() + state.config.read_wait_timeout;
        for model in models {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            model.wait_for(p, left).await.map_err(HttpError::from)?;
        }
    }
    Ok(models.iter().map(|m| m.checkpoint()).min().unwrap_or(0))
}

fn with_position(position: u64, body: impl serde::Serialize) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut().insert(STRATA_POSITION, HeaderValue::from(position));
    r
}

/// Filters and paging of the order summary.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrdersQuery {
    /// Only orders in this status (`placed`, `paid`, `shipped`, `delivered`, `cancelled`).
    #[param(pattern = "^(placed|paid|shipped|delivered|cancelled)$")]
    status: Option<String>,
    /// Only the orders of this customer.
    customer: Option<String>,
    /// The most orders to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page: only orders with a greater id.
    after: Option<String>,
    /// Wait until the read model has applied this log position (a write's `Strata-Position`).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    min_position: Option<u64>,
}

/// The order summary read model, a page at a time, in order id order.
///
/// Each page reads one index (`status`, `customer`) or the orders
/// themselves from one generation of the model, at most `limit` + 1
/// entries of it. With both `customer` and `status`, the customer's orders
/// are filtered by status, at most 10 × `limit` of them per page: such a
/// page may hold fewer than `limit` orders and still have a `next`.
#[utoipa::path(
    get,
    path = "/views/orders",
    tag = "views",
    params(OrdersQuery),
    responses(
        (status = 200, description = "One page of orders; `next` is the `after` of the following page", body = OrdersView, headers(("Strata-Position" = u64, description = "The position the read model had applied"))),
        (status = 400, description = "`invalid-parameter`: unknown status, `limit` not in 1..=1000, unknown or unparsable parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`read-model-lagging` (min_position not reached within the wait) or `service-unavailable` (also while a read model stored by an older version awaits its rebuild)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn orders(
    State(state): State<Views>,
    ApiQuery(q): ApiQuery<OrdersQuery>,
) -> Result<Response, HttpError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| HttpError::InvalidParameter {
                    reason: format!("unknown status {s:?}"),
                })
        })
        .transpose()?;
    let limit = page_limit(q.limit)?;
    let position = wait(&state, q.min_position).await?;
    let filter = OrderFilter {
        status,
        customer: q.customer,
    };
    let page = state
        .projections
        .orders()
        .page(&filter, q.after.as_deref(), limit)
        .map_err(HttpError::from)?;
    Ok(with_position(
        position,
        OrdersView {
            position,
            orders: page.orders.iter().map(OrderSummaryView::from).collect(),
            counts: page.counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
            next: page.next,
        },
    ))
}

/// Filters and paging of the stock levels.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StockQuery {
    /// Only items with at most this many units available, fewest first.
    low: Option<i64>,
    /// The most items to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page: a SKU (only greater SKUs follow),
    /// or with `low` `<available>:<sku>`.
    after: Option<String>,
    /// Wait until the read model has applied this log position.
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    min_position: Option<u64>,
}

/// The stock levels read model, a page at a time: by SKU, or with `low`
/// fewest available first, then by SKU. Each page reads at most `limit` + 1
/// entries of the model, from one generation.
#[utoipa::path(
    get,
    path = "/views/stock",
    tag = "views",
    params(StockQuery),
    responses(
        (status = 200, description = "One page of stock levels; `next` is the `after` of the following page", body = StockLevelsView, headers(("Strata-Position" = u64, description = "The position the read model had applied"))),
        (status = 400, description = "`invalid-parameter`: `limit` not in 1..=1000, an `after` that is not `<available>:<sku>` with `low`, unknown or unparsable parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`read-model-lagging` or `service-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stock(
    State(state): State<Views>,
    ApiQuery(q): ApiQuery<StockQuery>,
) -> Result<Response, HttpError> {
    let limit = page_limit(q.limit)?;
    let low_after = match (q.low, &q.after) {
        (Some(_), Some(after)) => Some(after.parse::<LowStockCursor>().map_err(HttpError::from)?),
        _ => None,
    };
    let position = wait(&state, q.min_position).await?;
    let model = state.projections.stock();
    let (items, next) = match q.low {
        Some(threshold) => {
            let page = model
                .low_stock_page(threshold, low_after.as_ref(), limit)
                .map_err(HttpError::from)?;
            (page.items, page.next.map(|c| c.to_string()))
        }
        None => {
            let page = model.page(q.after.as_deref(), limit).map_err(HttpError::from)?;
            (page.items, page.next)
        }
    };
    let items = items.iter().map(StockLevelView::from).collect();
    Ok(with_position(position, StockLevelsView { position, items, next }))
}
