//! The life of streams over HTTP: `DELETE /streams/{stream}` (soft, or
//! `?hard=true`), `GET`/`PUT /streams/{stream}/metadata` (retention with
//! its own ETag), and the erasure of an order, `DELETE /orders/{id}`.
//! Every one is an expected-version write: `If-Match` names the version it
//! was decided on. See `docs/retention.md`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_store::{
    DeleteMode, ExpectedVersion, StoreError, StreamId, StreamInfo, StreamMetadata, StreamOperationResult,
};
use utoipa::{IntoParams, ToSchema};

use super::Log;
use super::streams::{is_reserved_stream, stream_conflict};
use crate::error::{HttpError, StaleVersion};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::precondition::{IfMatch, etag, if_match};
use crate::problem::Problem;

/// A delete or an erasure, done.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamDeleteView {
    /// The stream deleted.
    stream: String,
    /// `soft` (the stream can be written again, going on from its old
    /// version) or `hard` (never again).
    mode: &'static str,
    /// The position of the delete's record in the log (`$$<stream>`): wait
    /// for a read model to reach it with `min_position`.
    position: u64,
    /// The stream's metadata version after the delete.
    metadata_version: u64,
}

/// A stream's retention and state, as `GET /streams/{stream}/metadata` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamMetadataView {
    /// The stream.
    stream: String,
    /// Its metadata version (also the `ETag`): 0 when nothing was ever set.
    metadata_version: u64,
    /// Its version as appends are judged (0 while deleted).
    version: u64,
    /// Keep only the newest `max_count` events.
    max_count: Option<u64>,
    /// Keep only events younger than this many milliseconds.
    max_age_ms: Option<u64>,
    /// Events below this version are removed (0: none).
    truncate_before: u64,
    /// Soft-deleted.
    deleted: bool,
    /// Hard-deleted: can never be written again.
    tombstoned: bool,
}

impl StreamMetadataView {
    fn of(stream: &StreamId, info: &StreamInfo) -> StreamMetadataView {
        StreamMetadataView {
            stream: stream.to_string(),
            metadata_version: info.metadata_version,
            version: info.version,
            max_count: info.state.metadata.max_count,
            max_age_ms: info.state.metadata.max_age.map(|a| a.as_millis() as u64),
            truncate_before: info.state.truncate_before,
            deleted: info.state.deleted,
            tombstoned: info.state.tombstoned,
        }
    }
}

/// The retention to set (it replaces the old one; an absent field keeps nothing).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamMetadataBody {
    /// Keep only the newest `max_count` events (1 to 2^53).
    #[schema(minimum = 1, maximum = 9_007_199_254_740_992_u64)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    max_count: Option<u64>,
    /// Keep only events younger than this many milliseconds (1 ms to
    /// 1,000 years).
    #[schema(minimum = 1, maximum = 31_557_600_000_000_u64)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    max_age_ms: Option<u64>,
}

/// How to delete.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// `true`: a hard delete (tombstone), the stream can never be written
    /// again. Default `false`: a soft delete.
    hard: Option<bool>,
}

/// The expected version `If-Match` names: `"n"` exactly (`"0"`: absent),
/// `*` the resource exists, none: no check (428 when the server requires
/// If-Match).
fn expected(headers: &HeaderMap, require: bool) -> Result<ExpectedVersion, HttpError> {
    match if_match(headers)? {
        Some(IfMatch::Version(v)) => Ok(ExpectedVersion::Exact(v).normalized()),
        Some(IfMatch::Any) if !require => Ok(ExpectedVersion::StreamExists),
        None if !require => Ok(ExpectedVersion::Any),
        _ => Err(HttpError::PreconditionRequired),
    }
}

fn deleted(stream: &StreamId, mode: DeleteMode, r: StreamOperationResult) -> Response {
    let view = StreamDeleteView {
        stream: stream.to_string(),
        mode: match mode {
            DeleteMode::Soft => "soft",
            DeleteMode::Hard => "hard",
        },
        position: r.position,
        metadata_version: r.metadata_version,
    };
    (
        StatusCode::OK,
        [
            (header::ETAG, etag(r.metadata_version)),
            (header::HeaderName::from_static("strata-position"), r.position.into()),
        ],
        Json(view),
    )
        .into_response()
}

/// Deletes a stream of the log: soft (it reads as absent until written
/// again) or, with `?hard=true`, for good.
#[utoipa::path(
    delete,
    path = "/streams/{stream}",
    tag = "log",
    params(("stream" = String, Path, description = "The stream id (not `order-*`, `stock-*`, `doc-*` or `$*`: erase those through their routes)"),
           ("If-Match" = Option<String>, Header, description = "The stream version the delete was decided on, or `*`: it must exist"),
           DeleteQuery),
    responses(
        (status = 200, description = "Deleted: its events are removed from every read; a scavenge erases them from disk", body = StreamDeleteView,
            headers(("ETag" = String, description = "The stream's metadata version"),
                    ("Strata-Position" = u64, description = "The position of the delete's record"))),
        (status = 403, description = "`reserved-stream`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version`: the stream moved since the version named", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`stream-deleted`: the stream was already hard-deleted", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_stream(
    State(state): State<Log>,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Response, HttpError> {
    let stream = StreamId::new(&raw).map_err(HttpError::from)?;
    if is_reserved_stream(stream.as_str()) {
        return Err(HttpError::ReservedStream {
            stream: stream.to_string(),
        });
    }
    let expected = expected(&headers, state.config.require_if_match)?;
    let mode = if q.hard.unwrap_or(false) {
        DeleteMode::Hard
    } else {
        DeleteMode::Soft
    };
    match state.store.delete_stream(&stream, expected, mode).await {
        Ok(r) => Ok(deleted(&stream, mode, r)),
        Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
            Err(stream_conflict(&state, &stream, expected, actual).await)
        }
        Err(e) => Err(HttpError::from(e)),
    }
}

/// Reads a stream's retention and state, with its metadata version as the `ETag`.
#[utoipa::path(
    get,
    path = "/streams/{stream}/metadata",
    tag = "log",
    params(("stream" = String, Path, description = "The stream id")),
    responses(
        (status = 200, description = "The stream's retention and state (a stream never configured has metadata version 0)", body = StreamMetadataView,
            headers(("ETag" = String, description = "The metadata version"))),
    )
)]
pub(crate) async fn get_metadata(
    State(state): State<Log>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Response, HttpError> {
    let stream = StreamId::new(&raw).map_err(HttpError::from)?;
    let info = state.store.stream_info(&stream).await.map_err(HttpError::from)?;
    Ok((
        StatusCode::OK,
        [(header::ETAG, etag(info.metadata_version))],
        Json(StreamMetadataView::of(&stream, &info)),
    )
        .into_response())
}

/// Sets a stream's retention: `max_count` and `max_age_ms`, judged against
/// its metadata version, so two administrators cannot overwrite each other.
#[utoipa::path(
    put,
    path = "/streams/{stream}/metadata",
    tag = "log",
    params(("stream" = String, Path, description = "The stream id (any stream, domain streams too)"),
           ("If-Match" = Option<String>, Header, description = "The metadata version the change was decided on (`\"0\"`: never set)")),
    request_body = StreamMetadataBody,
    responses(
        (status = 200, description = "Set", body = StreamMetadataView,
            headers(("ETag" = String, description = "The new metadata version"),
                    ("Strata-Position" = u64, description = "The position of the change's record"))),
        (status = 409, description = "`wrong-expected-version`: the metadata changed since the version named", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`stream-deleted`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation-failed` (a count or age of 0) or `invalid-body`", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put_metadata(
    State(state): State<Log>,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<StreamMetadataBody>,
) -> Result<Response, HttpError> {
    let stream = StreamId::new(&raw).map_err(HttpError::from)?;
    // `*` on metadata: some metadata was set before.
    let expected = expected(&headers, state.config.require_if_match)?;
    let metadata = StreamMetadata {
        max_count: body.max_count,
        max_age: body.max_age_ms.map(Duration::from_millis),
    };
    match state.store.set_stream_metadata(&stream, expected, metadata).await {
        Ok(r) => {
            let info = state.store.stream_info(&stream).await.map_err(HttpError::from)?;
            Ok((
                StatusCode::OK,
                [
                    (header::ETAG, etag(r.metadata_version)),
                    (header::HeaderName::from_static("strata-position"), r.position.into()),
                ],
                Json(StreamMetadataView::of(&stream, &info)),
            )
                .into_response())
        }
        Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
            let info = state.store.stream_info(&stream).await.map_err(HttpError::from)?;
            Err(HttpError::StaleVersion(Box::new(StaleVersion {
                status: state.config.conflict_status.status(),
                resource: "stream metadata",
                id: stream.to_string(),
                expected: match expected.exact() {
                    Some(v) => v.into(),
                    None => "*".into(),
                },
                current_version: actual,
                current: serde_json::to_value(StreamMetadataView::of(&stream, &info)).unwrap_or_default(),
                events_since: Vec::new(),
                events_since_complete: true,
            })))
        }
        Err(e) => Err(HttpError::from(e)),
    }
}

/// Erases an order (a support engineer's answer to an erasure request):
/// its stream is hard-deleted, so it reads as gone, leaves the order
/// summary, and can never be placed again under this id; the next scavenge
/// erases its events from disk.
#[utoipa::path(
    delete,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The order id"),
           ("If-Match" = Option<String>, Header, description = "The order's version the erasure was decided on")),
    responses(
        (status = 200, description = "Erased", body = StreamDeleteView,
            headers(("ETag" = String, description = "The order stream's metadata version"),
                    ("Strata-Position" = u64, description = "The position of the erasure's record"))),
        (status = 404, description = "`not-found`: no such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`stream-deleted`: already erased", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn erase_order(
    State(state): State<Log>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, HttpError> {
    let stream = StreamId::new(format!("order-{id}")).map_err(HttpError::from)?;
    let expected = expected(&headers, state.config.require_if_match)?;
    let info = state.store.stream_info(&stream).await.map_err(HttpError::from)?;
    if info.state.tombstoned {
        return Err(HttpError::from(StoreError::StreamDeleted { stream }));
    }
    if info.version == 0 {
        return Err(HttpError::NotFound { resource: "order", id });
    }
    match state.store.delete_stream(&stream, expected, DeleteMode::Hard).await {
        Ok(r) => Ok(deleted(&stream, DeleteMode::Hard, r)),
        Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
            Err(stream_conflict(&state, &stream, expected, actual).await)
        }
        Err(e) => Err(HttpError::from(e)),
    }
}
