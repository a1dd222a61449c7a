//! `/orders`: the order state machine, through the order service.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use strata_aggregates::domain::order::{Order, OrderCommand, OrderLine};
use strata_aggregates::domain::service::{OrderServiceError, OrderWrite};
use strata_aggregates::{Conflict, Repository};
use strata_store::EventStore;
use utoipa::IntoParams;

use super::{Domain, Written, check_id, metadata, recovered, versioned, written_before_crash};
use crate::error::{HttpError, StaleVersion};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::idempotency::parse_key;
use crate::model::{CancelOrder, DeliverOrder, EventView, EventsPage, OrderView, PayOrder, PlaceOrder, ShipOrder};
use crate::precondition::{Expect, if_match, no_if_match_on_create, resolve};
use crate::problem::Problem;

/// The most events one page returns.
pub(crate) const MAX_PAGE: usize = 1000;
/// Events per page when `limit` is absent.
pub(crate) const DEFAULT_PAGE: usize = 100;

/// Percent-encodes a path segment.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The stale-version problem of an order conflict (with the order now and
/// the events since the client's version).
fn order_conflict(state: &Domain, id: &str, c: &Conflict<Order>) -> HttpError {
    HttpError::StaleVersion(Box::new(StaleVersion {
        status: state.config.conflict_status.status(),
        resource: "order",
        id: id.to_string(),
        expected: c.expected.into(),
        current_version: c.current,
        current: serde_json::to_value(OrderView::new(&c.state, c.current)).unwrap_or_default(),
        events_since: c
            .events_since
            .iter()
            .map(|e| serde_json::to_value(EventView::from_envelope(e)).unwrap_or_default())
            .collect(),
        events_since_complete: c.events_since_complete,
    }))
}

/// A write with `If-Match: *` to a resource that does not exist.
pub(crate) fn missing_for_star(state: &Domain, resource: &'static str, id: &str) -> HttpError {
    HttpError::StaleVersion(Box::new(StaleVersion {
        status: state.config.conflict_status.status(),
        resource,
        id: id.to_string(),
        expected: "*".into(),
        current_version: 0,
        current: serde_json::Value::Null,
        events_since: Vec::new(),
        events_since_complete: true,
    }))
}

/// Maps an order service error to its problem: a version conflict here,
/// with the order's state; every other error by the table of kinds.
fn map_error(state: &Domain, id: &str, e: OrderServiceError) -> HttpError {
    match e {
        OrderServiceError::Conflict(c) if c.current == 0 => HttpError::NotFound {
            resource: "order",
            id: id.to_string(),
        },
        OrderServiceError::Conflict(c) => order_conflict(state, id, &c),
        other => HttpError::Order {
            id: id.to_string(),
            source: other,
        },
    }
}

/// A keyed request retried after its first run died with the process: if
/// that run's write landed, the order as it is now.
async fn after_crash(
    state: &Domain,
    headers: &HeaderMap,
    id: &str,
    status: StatusCode,
) -> Result<Option<Response>, HttpError> {
    // An id that names no stream is refused by the write itself.
    let Ok(stream) = Repository::<Order>::stream_id(id) else {
        return Ok(None);
    };
    let Some(event) = written_before_crash(&*state.store, headers, &stream).await? else {
        return Ok(None);
    };
    let loaded = state
        .service
        .orders()
        .load(id)
        .await
        .map_err(|e| map_error(state, id, e.into()))?;
    let location = (status == StatusCode::CREATED).then(|| format!("/orders/{}", encode_segment(id)));
    Ok(Some(recovered(
        status,
        loaded.version,
        &event,
        location,
        OrderView::new(&loaded.state, loaded.version),
    )))
}

fn written(status: StatusCode, done: &OrderWrite, location: Option<String>) -> Response {
    let appended = done.events.len() as u64 + done.stock.iter().map(|s| s.events.len() as u64).sum::<u64>();
    Written {
        status,
        version: done.version,
        position: Some(done.position()),
        location,
        appended,
        body: OrderView::new(&done.order, done.version),
    }
    .into_response()
}

/// Places an order and reserves its stock in one atomic append.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    request_body = PlaceOrder,
    responses(
        (status = 201, description = "Placed; every line's stock reserved in the same atomic append", body = OrderView,
            headers(("ETag" = String, description = "The order's version, `\"1\"`"),
                    ("Location" = String, description = "`/orders/{id}`"),
                    ("Strata-Position" = u64, description = "The log position the write committed at"))),
        (status = 409, description = "`already-exists` (the order id is taken) or `insufficient-stock`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`unknown-sku`, `validation-failed` or `invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`stock-contention`: the SKUs kept changing; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn place_order(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlaceOrder>,
) -> Result<Response, HttpError> {
    no_if_match_on_create(&headers)?;
    let id = body.order_id.clone().unwrap_or_else(|| new_order_id(&headers));
    if let Some(r) = after_crash(&state, &headers, &id, StatusCode::CREATED).await? {
        return Ok(r);
    }
    let lines = body
        .lines
        .into_iter()
        .map(|l| OrderLine {
            sku: l.sku,
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents,
        })
        .collect();
    let command = OrderCommand::Place {
        order_id: id.clone(),
        customer: body.customer,
        lines,
    };
    let done = state
        .service
        .execute(&id, &command, None, &metadata(&headers))
        .await
        .map_err(|e| map_error(&state, &id, e))?;
    Ok(written(
        StatusCode::CREATED,
        &done,
        Some(format!("/orders/{}", encode_segment(&id))),
    ))
}

/// The id of an order placed without one: derived from the request's
/// Idempotency-Key when it has one, so that even a retry that runs again
/// (after a crash between the append and the key's record) names the same
/// order and is refused as a duplicate instead of placing a second one.
///
/// The request's fingerprint goes into the id too: the same key reused for
/// another order, once the first record has expired, names a new order.
fn new_order_id(headers: &HeaderMap) -> String {
    match parse_key(headers).ok().flatten() {
        Some(key) => {
            let fingerprint = headers
                .get(crate::idempotency::INTERNAL_FINGERPRINT)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            let digest = Sha256::new()
                .chain_update(b"strata order id\0")
                .chain_update(key.as_str().as_bytes())
                .chain_update(b"\0")
                .chain_update(&fingerprint)
                .finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
        }
        None => uuid::Uuid::now_v7().to_string(),
    }
}

/// Runs a command on an existing order under the request's precondition.
async fn command(
    state: &Domain,
    headers: &HeaderMap,
    id: &str,
    command: OrderCommand,
    body_version: Option<u64>,
) -> Result<Response, HttpError> {
    check_id("order", id)?;
    let expect = resolve(if_match(headers)?, body_version, state.config.require_if_match)?;
    if let Some(r) = after_crash(state, headers, id, StatusCode::OK).await? {
        return Ok(r);
    }
    let expected = match expect {
        Expect::Unconditional => None,
        Expect::Version(v) => Some(v),
        Expect::MustExist => {
            let loaded = state
                .service
                .orders()
                .load(id)
                .await
                .map_err(|e| map_error(state, id, e.into()))?;
            if !loaded.exists() {
                return Err(missing_for_star(state, "order", id));
            }
            None
        }
    };
    let done = state
        .service
        .execute(id, &command, expected, &metadata(headers))
        .await
        .map_err(|e| match e {
            // The client named no version: running out of retries is
            // contention, not a stale version of the client's.
            OrderServiceError::Conflict(c) if expected.is_none() && c.current > 0 => HttpError::Contention {
                resource: "order",
                id: id.to_string(),
                attempts: c.attempts,
            },
            e => map_error(state, id, e),
        })?;
    Ok(written(StatusCode::OK, &done, None))
}

/// Reads an order, with its version as the `ETag`.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order", body = OrderView, headers(("ETag" = String, description = "The order's version"))),
        (status = 304, description = "If-None-Match names the current version"),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_order(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, HttpError> {
    check_id("order", &id)?;
    let loaded = state
        .service
        .orders()
        .load(&id)
        .await
        .map_err(|e| map_error(&state, &id, e.into()))?;
    if !loaded.exists() {
        return Err(HttpError::NotFound { resource: "order", id });
    }
    Ok(versioned(
        &headers,
        loaded.version,
        OrderView::new(&loaded.state, loaded.version),
    ))
}

/// Paging of a stream's events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// The first version to read (default 1).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    from: Option<u64>,
    /// The most events to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, HttpError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(HttpError::InvalidParameter {
            reason: "limit must be at least 1".into(),
        }),
        n if n > MAX_PAGE => Err(HttpError::InvalidParameter {
            reason: format!("limit is at most {MAX_PAGE}"),
        }),
        n => Ok(n),
    }
}

/// The order's history, decoded.
#[utoipa::path(
    get,
    path = "/orders/{id}/events",
    tag = "orders",
    params(("id" = String, Path, description = "The order id"), PageQuery),
    responses(
        (status = 200, description = "The order's events, oldest first", body = EventsPage, headers(("ETag" = String, description = "The order's version"))),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn order_events(
    State(state): State<Domain>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, HttpError> {
    check_id("order", &id)?;
    let limit = page_limit(q.limit)?;
    let from = q.from.unwrap_or(1).max(1);
    let stream = Repository::<Order>::stream_id(&id).map_err(HttpError::from)?;
    let version = state.store.stream_version(&stream).await.map_err(HttpError::from)?;
    if version == 0 {
        return Err(HttpError::NotFound { resource: "order", id });
    }
    let mut events = state
        .service
        .orders()
        .read_events(&id, from, limit)
        .await
        .map_err(|e| map_error(&state, &id, e.into()))?;
    // The page describes the version its ETag names, even while writers append.
    events.retain(|e| e.version <= version);
    let next_from = events.last().filter(|e| e.version < version).map(|e| e.version + 1);
    let page = EventsPage {
        stream: stream.to_string(),
        version,
        events: events.iter().map(EventView::from_envelope).collect(),
        next_from,
    };
    Ok(versioned(&HeaderMap::new(), version, page))
}

/// Pays an order in full.
#[utoipa::path(
    post,
    path = "/orders/{id}/pay",
    tag = "orders",
    params(("id" = String, Path, description = "The order id"),
           ("If-Match" = Option<String>, Header, description = "The ETag the payment was decided on, or `*`")),
    request_body = PayOrder,
    responses(
        (status = 200, description = "Paid", body = OrderView, headers(("ETag" = String, description = "The new version"), ("Strata-Position" = u64, description = "The commit position"))),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` (stale If-Match, with the order now and the events since) or `invalid-transition`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` when the server runs with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`payment-mismatch`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn pay(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PayOrder>,
) -> Result<Response, HttpError> {
    let cmd = OrderCommand::Pay {
        amount_cents: body.amount_cents,
    };
    command(&state, &headers, &id, cmd, body.expected_version).await
}

/// Ships a paid order and commits its reservations.
#[utoipa::path(
    post,
    path = "/orders/{id}/ship",
    tag = "orders",
    params(("id" = String, Path, description = "The order id"),
           ("If-Match" = Option<String>, Header, description = "The ETag the shipment was decided on, or `*`")),
    request_body(content = Option<ShipOrder>, description = "Optional"),
    responses(
        (status = 200, description = "Shipped", body = OrderView, headers(("ETag" = String, description = "The new version"), ("Strata-Position" = u64, description = "The commit position"))),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` or `invalid-transition` (e.g. not paid: the body lists the allowed commands)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn ship(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ShipOrder>,
) -> Result<Response, HttpError> {
    let cmd = OrderCommand::Ship {
        tracking: body.tracking,
    };
    command(&state, &headers, &id, cmd, body.expected_version).await
}

/// Records the delivery of a shipped order.
#[utoipa::path(
    post,
    path = "/orders/{id}/deliver",
    tag = "orders",
    params(("id" = String, Path, description = "The order id"),
           ("If-Match" = Option<String>, Header, description = "The ETag the delivery was decided on, or `*`")),
    request_body(content = Option<DeliverOrder>, description = "Optional"),
    responses(
        (status = 200, description = "Delivered", body = OrderView, headers(("ETag" = String, description = "The new version"), ("Strata-Position" = u64, description = "The commit position"))),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` or `invalid-transition`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn deliver(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<DeliverOrder>,
) -> Result<Response, HttpError> {
    command(&state, &headers, &id, OrderCommand::Deliver, body.expected_version).await
}

/// Cancels a placed or paid order and releases its reservations.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(("id" = String, Path, description = "The order id"),
           ("If-Match" = Option<String>, Header, description = "The ETag the cancellation was decided on, or `*`")),
    request_body(content = Option<CancelOrder>, description = "Optional"),
    responses(
        (status = 200, description = "Cancelled", body = OrderView, headers(("ETag" = String, description = "The new version"), ("Strata-Position" = u64, description = "The commit position"))),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` or `invalid-transition`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel(
    State(state): State<Domain>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CancelOrder>,
) -> Result<Response, HttpError> {
    let cmd = OrderCommand::Cancel { reason: body.reason };
    command(&state, &headers, &id, cmd, body.expected_version).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn an_order_id_follows_from_the_idempotency_key() {
        let keyed = |k: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", HeaderValue::from_static(k));
            new_order_id(&h)
        };
        assert_eq!(keyed("k-1"), keyed("\"k-1\""), "a key means the same quoted or not");
        assert_ne!(keyed("k-1"), keyed("k-2"));
        assert_ne!(new_order_id(&HeaderMap::new()), new_order_id(&HeaderMap::new()));
        assert_eq!(encode_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
