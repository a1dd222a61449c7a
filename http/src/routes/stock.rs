//! `/stock`: stock items, one stream per SKU.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_aggregates::domain::stock::{StockCommand, StockItem};
use strata_aggregates::{Executed, Repository, RepositoryError};

use super::orders::{encode_segment, missing_for_star};
use super::{Domain, Written, check_id, metadata, recovered, versioned, written_before_crash};
use crate::error::{HttpError, StaleVersion};
use crate::extract::{ApiJson, ApiPath};
use crate::model::{AdjustStock, EventView, ReceiveStock, RegisterStock, StockView};
use crate::precondition::{Expect, if_match, no_if_match_on_create, resolve};
use crate::problem::Problem;

fn map_error(state: &Domain, sku: &str, e: RepositoryError<StockItem>) -> HttpError {
    let not_found = || HttpError::NotFound {
        resource: "stock item",
        id: sku.to_string(),
    };
    match e {
        RepositoryError::Conflict(c) if c.current == 0 => not_found(),
        RepositoryError::Conflict(c) => HttpError::StaleVersion(Box::new(StaleVersion {
            status: state.config.conflict_status.status(),
            resource: "stock item",
            id: sku.to_string(),
            expected: c.expected.into(),
            current_version: c.current,
            current: serde_json::to_value(StockView::new(&c.state, c.current)).unwrap_or_default(),
            events_since: c
                .events_since
                .iter()
                .map(|e| serde_json::to_value(EventView::from_envelope(e)).unwrap_or_default())
                .collect(),
            events_since_complete: c.events_since_complete,
        })),
        other => HttpError::Stock {
            sku: sku.to_string(),
            source: other,
        },
    }
}

/// A keyed request retried after its first run died with the process: if
/// that run's write landed, the stock item as it is now.
async fn after_crash(
    state: &Domain,
    headers: &HeaderMap,
    sku: &str,
    status: StatusCode,
) -> Result<Option<Response>, HttpError> {
    // An id that names no stream is refused by the write itself.
    let Ok(stream) = Repository::<StockItem>::stream_id(sku) else {
        return Ok(None);
    };
    let Some(event) = written_before_crash(&*state.store, headers, &stream).await? else {
        return Ok(None);
    };
    let loaded = state
        .service
        .stock()
        .load(sku)
        .await
        .map_err(|e| map_error(state, sku, e))?;
    let location = (status == StatusCode::CREATED).then(|| format!("/stock/{}", encode_segment(sku)));
    Ok(Some(recovered(
        status,
        loaded.version,
        &event,
        location,
        StockView::new(&loaded.state, loaded.version),
    )))
}

fn written(status: StatusCode, done: &Executed<StockItem>, location: Option<String>) -> Response {
    Written {
        status,
        version: done.version,
        position: done.append.map(|a| a.last_position),
        location,
        appended: done.events.len() as u64,
        body: StockView::new(&done.state, done.version),
    }
    .into_response()
}

/// Registers a stock item (nothing on hand).
#[utoipa::path(
    post,
    path = "/stock",
    tag = "stock",
    request_body = RegisterStock,
    responses(
        (status = 201, description = "Registered", body = StockView,
            headers(("ETag" = String, description = "`\"1\"`"), ("Location" = String, description = "`/stock/{sku}`"),
                    ("Strata-Position" = u64, description = "The commit position"))),
        (status = 409, description = "`already-exists`: the SKU is registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation-failed` (empty SKU or name) or `invalid-body`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterStock>,
) -> Result<Response, HttpError> {
    no_if_match_on_create(&headers)?;
    let sku = body.sku.clone();
    if let Some(r) = after_crash(&state, &headers, &sku, StatusCode::CREATED).await? {
        return Ok(r);
    }
    let cmd = StockCommand::Register {
        sku: body.sku,
        name: body.name,
    };
    let done = state
        .service
        .stock()
        .execute_with(&sku, &cmd, None, &metadata(&headers))
        .await
        .map_err(|e| map_error(&state, &sku, e))?;
    Ok(written(
        StatusCode::CREATED,
        &done,
        Some(format!("/stock/{}", encode_segment(&sku))),
    ))
}

/// Reads a stock item, with its version as the `ETag`.
#[utoipa::path(
    get,
    path = "/stock/{sku}",
    tag = "stock",
    params(("sku" = String, Path, description = "The SKU")),
    responses(
        (status = 200, description = "The item", body = StockView, headers(("ETag" = String, description = "The item's version"))),
        (status = 304, description = "If-None-Match names the current version"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_item(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(sku): ApiPath<String>,
) -> Result<Response, HttpError> {
    check_id("stock", &sku)?;
    let loaded = state
        .service
        .stock()
        .load(&sku)
        .await
        .map_err(|e| map_error(&state, &sku, e))?;
    if !loaded.state.is_registered() {
        return Err(HttpError::NotFound {
            resource: "stock item",
            id: sku,
        });
    }
    Ok(versioned(
        &headers,
        loaded.version,
        StockView::new(&loaded.state, loaded.version),
    ))
}

async fn command(
    state: &Domain,
    headers: &HeaderMap,
    sku: &str,
    cmd: StockCommand,
    body_version: Option<u64>,
) -> Result<Response, HttpError> {
    check_id("stock", sku)?;
    let expect = resolve(if_match(headers)?, body_version, state.config.require_if_match)?;
    if let Some(r) = after_crash(state, headers, sku, StatusCode::OK).await? {
        return Ok(r);
    }
    let repo = state.service.stock();
    let expected = match expect {
        Expect::Unconditional => None,
        Expect::Version(v) => Some(v),
        Expect::MustExist => {
            let loaded = repo.load(sku).await.map_err(|e| map_error(state, sku, e))?;
            if !loaded.exists() {
                return Err(missing_for_star(state, "stock item", sku));
            }
            None
        }
    };
    let done = repo
        .execute_with(sku, &cmd, expected, &metadata(headers))
        .await
        .map_err(|e| match e {
            // The client named no version: running out of retries is
            // contention, not a stale version of the client's.
            RepositoryError::Conflict(c) if expected.is_none() && c.current > 0 => HttpError::Contention {
                resource: "stock item",
                id: sku.to_string(),
                attempts: c.attempts,
            },
            e => map_error(state, sku, e),
        })?;
    Ok(written(StatusCode::OK, &done, None))
}

/// Records units received.
#[utoipa::path(
    post,
    path = "/stock/{sku}/receive",
    tag = "stock",
    params(("sku" = String, Path, description = "The SKU"),
           ("If-Match" = Option<String>, Header, description = "The ETag the receipt was decided on, or `*`")),
    request_body = ReceiveStock,
    responses(
        (status = 200, description = "Received", body = StockView, headers(("ETag" = String, description = "The new version"), ("Strata-Position" = u64, description = "The commit position"))),
        (status = 404, description = "`not-found`: the SKU is not registered", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version`: stale If-Match, with the item now and the events since", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation-failed` (zero units) or `invalid-body` (negative, wrong type, unknown field)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn receive(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<ReceiveStock>,
) -> Result<Response, HttpError> {
    let cmd = StockCommand::Receive {
        quantity: body.quantity,
    };
    command(&state, &headers, &sku, cmd, body.expected_version).await
}

/// Sets on hand to what a count found.
#[utoipa::path(
    post,
    path = "/stock/{sku}/adjust",
    tag = "stock",
    params(("sku" = String, Path, description = "The SKU"),
           ("If-Match" = Option<String>, Header, description = "The ETag the count was decided on, or `*`")),
    request_body = AdjustStock,
    responses(
        (status = 200, description = "Adjusted (or unchanged when the count equals on hand)", body = StockView, headers(("ETag" = String, description = "The new version"), ("Strata-Position" = u64, description = "The commit position, when something was appended"))),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` or `stock-state-conflict` (a count below the reserved units)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn adjust(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<AdjustStock>,
) -> Result<Response, HttpError> {
    let cmd = StockCommand::Adjust { counted: body.counted };
    command(&state, &headers, &sku, cmd, body.expected_version).await
}
