//! `/views`: the read models, with read-your-writes through `min_position`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use strata_aggregates::domain::order::OrderStatus;
use utoipa::IntoParams;

use super::STRATA_POSITION;
use crate::error::{HttpError, from_projection};
use crate::extract::ApiQuery;
use crate::model::{OrderSummaryView, OrdersView, StockLevelView, StockLevelsView};
use crate::problem::Problem;
use crate::state::{AppState, Shared};

/// Waits (bounded by the server's read wait) until both read models have
/// applied `min_position`; returns the position they have applied.
async fn wait(state: &AppState, min_position: Option<u64>) -> Result<u64, HttpError> {
    if let Some(p) = min_position {
        state
            .projections
            .wait_for(p, state.config.read_wait_timeout)
            .await
            .map_err(from_projection)?;
    }
    Ok(state.projections.checkpoint())
}

fn with_position(position: u64, body: impl serde::Serialize) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut().insert(STRATA_POSITION, HeaderValue::from(position));
    r
}

/// Filters of the order summary.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrdersQuery {
    /// Only orders in this status (`placed`, `paid`, `shipped`, `delivered`, `cancelled`).
    status: Option<String>,
    /// Only the orders of this customer.
    customer: Option<String>,
    /// Wait until the read model has applied this log position (a write's `Strata-Position`).
    min_position: Option<u64>,
}

/// The order summary read model.
#[utoipa::path(
    get,
    path = "/views/orders",
    tag = "views",
    params(OrdersQuery),
    responses(
        (status = 200, description = "The orders", body = OrdersView, headers(("Strata-Position" = u64, description = "The position the read model had applied"))),
        (status = 503, description = "`read-model-lagging` (min_position not reached within the wait) or `service-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn orders(
    State(state): State<Shared>,
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
    let position = wait(&state, q.min_position).await?;
    let model = state.projections.orders();
    let all = match &q.customer {
        Some(c) => model.orders_of_customer(c),
        None => model.all(),
    }
    .map_err(from_projection)?;
    let orders = all
        .iter()
        .filter(|o| status.is_none_or(|s| o.status == s))
        .map(OrderSummaryView::from)
        .collect();
    let counts = model
        .counts()
        .map_err(from_projection)?
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    Ok(with_position(
        position,
        OrdersView {
            position,
            orders,
            counts,
        },
    ))
}

/// Filters of the stock levels.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StockQuery {
    /// Only items with at most this many units available, fewest first.
    low: Option<i64>,
    /// Wait until the read model has applied this log position.
    min_position: Option<u64>,
}

/// The stock levels read model.
#[utoipa::path(
    get,
    path = "/views/stock",
    tag = "views",
    params(StockQuery),
    responses(
        (status = 200, description = "The stock levels", body = StockLevelsView, headers(("Strata-Position" = u64, description = "The position the read model had applied"))),
        (status = 503, description = "`read-model-lagging` or `service-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stock(
    State(state): State<Shared>,
    ApiQuery(q): ApiQuery<StockQuery>,
) -> Result<Response, HttpError> {
    let position = wait(&state, q.min_position).await?;
    let model = state.projections.stock();
    let items = match q.low {
        Some(n) => model.low_stock(n),
        None => model.all(),
    }
    .map_err(from_projection)?;
    let items = items.iter().map(StockLevelView::from).collect();
    Ok(with_position(position, StockLevelsView { position, items }))
}
