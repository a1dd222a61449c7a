//! `/subscriptions/groups`: persistent subscription groups of competing
//! consumers (strata-subscriptions) over HTTP. A consumer reads a batch
//! (its events are leased to it), handles each event, and acknowledges it
//! (or refuses it: retried with backoff, parked once its retries are used
//! up); parked events are listed and replayed. Delivery is at least once.

mod model;

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use strata_subscriptions::{
    ConsumerName, Created, DeliveryToken, GroupName, MAX_PARKED_PAGE, MAX_READ_BATCH, MAX_REPLAY, MAX_TOKENS,
    NackAction, Subscriptions,
};
use utoipa::IntoParams;

pub(crate) use self::model::TOKEN;
pub use self::model::{
    AckBody, BatchView, CountersView, DeliveryView, FilterBody, GroupSettingsBody, GroupSettingsView, GroupView,
    GroupsView, NackActionBody, NackBody, ParkedPage, ParkedView, ReadBody, ReplayBody, ReplayView, SettledView,
    StartBody, StrategyBody,
};
use super::live::Closing;
use super::orders::encode_segment;
use crate::error::HttpError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::problem::Problem;

/// The longest a read waits for events.
const MAX_WAIT_MS: u64 = 30_000;

/// The longest reason a nack keeps, in characters.
const MAX_REASON_CHARS: usize = 1_000;

/// What the group routes use: the groups, and the shutdown signal (a
/// waiting read answers when the server stops).
pub(crate) struct Groups {
    subscriptions: Subscriptions,
    closing: Closing,
}

impl<S: Send + Sync> FromRef<S> for Groups
where
    Subscriptions: FromRef<S>,
    Closing: FromRef<S>,
{
    fn from_ref(state: &S) -> Groups {
        Groups {
            subscriptions: FromRef::from_ref(state),
            closing: FromRef::from_ref(state),
        }
    }
}

fn group_name(raw: String) -> Result<GroupName, HttpError> {
    Ok(GroupName::new(raw)?)
}

fn tokens(raw: &[String]) -> Result<Vec<DeliveryToken>, HttpError> {
    if raw.is_empty() || raw.len() > MAX_TOKENS {
        return Err(HttpError::InvalidBody {
            reason: format!("tokens: {} given, 1..={MAX_TOKENS} taken", raw.len()),
        });
    }
    raw.iter()
        .map(|t| t.parse::<DeliveryToken>().map_err(HttpError::from))
        .collect()
}

/// Every group with its progress.
#[utoipa::path(
    get,
    operation_id = "list_groups",
    path = "/subscriptions/groups",
    tag = "subscriptions",
    responses((status = 200, description = "Every group, in name order, with its lag, pending, in-flight and parked counts", body = GroupsView))
)]
pub(crate) async fn list(State(g): State<Groups>) -> Result<Json<GroupsView>, HttpError> {
    let groups = g.subscriptions.groups().await?;
    Ok(Json(GroupsView {
        groups: groups.iter().map(GroupView::from).collect(),
    }))
}

/// Creates a group (idempotent: the same settings again answer 200).
#[utoipa::path(
    put,
    operation_id = "create_group",
    path = "/subscriptions/groups/{group}",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body = GroupSettingsBody,
    responses(
        (status = 201, description = "Created", body = GroupView,
            headers(("Location" = String, description = "`/subscriptions/groups/{group}`"))),
        (status = 200, description = "It existed with these settings", body = GroupView),
        (status = 400, description = "`invalid-id`: the group's name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`subscription-group-exists`: it exists with other settings", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body`: a setting out of its range, a filter that breaks its rules, `start` with `start_after`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create(
    State(g): State<Groups>,
    ApiPath(raw): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<GroupSettingsBody>,
) -> Result<Response, HttpError> {
    let name = group_name(raw)?;
    let settings = body.to_settings()?;
    let created = g.subscriptions.create_group(&name, settings).await?;
    let info = g.subscriptions.group(&name).await?;
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Existed => StatusCode::OK,
    };
    let mut response = (status, Json(GroupView::from(&info))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/subscriptions/groups/{}", encode_segment(name.as_str()))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One group with its progress.
#[utoipa::path(
    get,
    operation_id = "get_group",
    path = "/subscriptions/groups/{group}",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(State(g): State<Groups>, ApiPath(raw): ApiPath<String>) -> Result<Json<GroupView>, HttpError> {
    let name = group_name(raw)?;
    let info = g.subscriptions.group(&name).await?;
    Ok(Json(GroupView::from(&info)))
}

/// Deletes a group with its state and parked events.
#[utoipa::path(
    delete,
    operation_id = "delete_group",
    path = "/subscriptions/groups/{group}",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    responses(
        (status = 204, description = "Deleted; its consumers' next calls are `not-found`"),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(State(g): State<Groups>, ApiPath(raw): ApiPath<String>) -> Result<StatusCode, HttpError> {
    let name = group_name(raw)?;
    if g.subscriptions.delete_group(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(HttpError::NotFound {
            resource: "subscription group",
            id: name.to_string(),
        })
    }
}

/// Leases a batch of the group's events to a consumer.
#[utoipa::path(
    post,
    operation_id = "read_group",
    path = "/subscriptions/groups/{group}/read",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body = ReadBody,
    responses(
        (status = 200, description = "The events leased, oldest first as the group's strategy allows (empty when none was due within the wait). Acknowledge or refuse each within the group's ack timeout, or it is delivered again.", body = BatchView),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`: other processes kept changing the group (PostgreSQL); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn read(
    State(g): State<Groups>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<ReadBody>,
) -> Result<Json<BatchView>, HttpError> {
    let name = group_name(raw)?;
    let consumer = ConsumerName::new(body.consumer)?;
    let max = body.max_events.unwrap_or(10);
    if max == 0 || max as usize > MAX_READ_BATCH {
        return Err(HttpError::InvalidBody {
            reason: format!("max_events {max} is not within 1..={MAX_READ_BATCH}"),
        });
    }
    let wait = body.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(HttpError::InvalidBody {
            reason: format!("wait_ms {wait} is more than {MAX_WAIT_MS}"),
        });
    }
    // A server that stops answers a waiting read at once. A batch leased
    // but not answered is delivered again after the ack timeout.
    let batch = tokio::select! {
        batch = g.subscriptions.read(&name, &consumer, max as usize, Duration::from_millis(wait)) => batch?,
        () = g.closing.0.cancelled() => Vec::new(),
    };
    Ok(Json(BatchView {
        deliveries: batch.iter().map(DeliveryView::from).collect(),
    }))
}

/// Acknowledges deliveries: their events are done.
#[utoipa::path(
    post,
    path = "/subscriptions/groups/{group}/ack",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body = AckBody,
    responses(
        (status = 200, description = "Settled; tokens no longer current are listed as `stale` (their events were or will be delivered again)", body = SettledView),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`: other processes kept changing the group (PostgreSQL); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn ack(
    State(g): State<Groups>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<AckBody>,
) -> Result<Json<SettledView>, HttpError> {
    let name = group_name(raw)?;
    let tokens = tokens(&body.tokens)?;
    Ok(Json(g.subscriptions.ack(&name, &tokens).await?.into()))
}

/// Refuses deliveries: retried after the group's retry delay, or parked.
#[utoipa::path(
    post,
    path = "/subscriptions/groups/{group}/nack",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body = NackBody,
    responses(
        (status = 200, description = "Settled; tokens no longer current are listed as `stale`", body = SettledView),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`: other processes kept changing the group (PostgreSQL); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn nack(
    State(g): State<Groups>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<NackBody>,
) -> Result<Json<SettledView>, HttpError> {
    let name = group_name(raw)?;
    let tokens = tokens(&body.tokens)?;
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(HttpError::InvalidBody {
            reason: format!("reason is longer than {MAX_REASON_CHARS} characters"),
        });
    }
    let action = match body.action {
        Some(NackActionBody::Park) => NackAction::Park,
        Some(NackActionBody::Retry) | None => NackAction::Retry,
    };
    Ok(Json(
        g.subscriptions.nack(&name, &tokens, action, &reason).await?.into(),
    ))
}

/// A page of parked events.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ParkedQuery {
    /// Events after this position (default 0: from the first).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    after: Option<u64>,
    /// The most events (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Lists the group's parked events.
#[utoipa::path(
    get,
    path = "/subscriptions/groups/{group}/parked",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"), ParkedQuery),
    responses(
        (status = 200, description = "Parked events in position order", body = ParkedPage),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn parked(
    State(g): State<Groups>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<ParkedQuery>,
) -> Result<Json<ParkedPage>, HttpError> {
    let name = group_name(raw)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PARKED_PAGE {
        return Err(HttpError::InvalidParameter {
            reason: format!("limit {limit} is not within 1..={MAX_PARKED_PAGE}"),
        });
    }
    let events = g.subscriptions.parked(&name, q.after.unwrap_or(0), limit).await?;
    let next_after = (events.len() == limit)
        .then(|| events.last().map(|e| e.position))
        .flatten();
    Ok(Json(ParkedPage {
        events: events.iter().map(ParkedView::from).collect(),
        next_after,
    }))
}

/// Delivers parked events again.
#[utoipa::path(
    post,
    path = "/subscriptions/groups/{group}/parked/replay",
    tag = "subscriptions",
    params(("group" = String, Path, description = "The group's name: 1..=100 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or a digit", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")),
    request_body(content = ReplayBody, description = "Optional: without a body, every parked event (up to 10,000 per call)"),
    responses(
        (status = 200, description = "Marked: they come back, with their retries counted afresh, as the group's buffer has room", body = ReplayView),
        (status = 404, description = "`not-found`: no such group", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`: other processes kept changing the group (PostgreSQL); retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn replay(
    State(g): State<Groups>,
    ApiPath(raw): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReplayBody>,
) -> Result<Json<ReplayView>, HttpError> {
    let name = group_name(raw)?;
    if let Some(p) = &body.positions
        && p.len() > MAX_REPLAY
    {
        return Err(HttpError::InvalidBody {
            reason: format!("positions: {} given, at most {MAX_REPLAY} taken", p.len()),
        });
    }
    let marked = g.subscriptions.replay_parked(&name, body.positions.as_deref()).await?;
    Ok(Json(ReplayView { marked }))
}
