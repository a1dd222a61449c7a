//! `/streams/{stream}`: the generic log.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use strata_store::{
    Direction, EventId, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError, StreamId,
};
use utoipa::IntoParams;

use super::orders::{encode_segment, page_limit};
use super::{Log, Written, metadata, versioned};
use crate::error::{HttpError, StaleVersion};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::model::{AppendView, EventView, EventsPage, NewEventBody};
use crate::precondition::{IfMatch, if_match, if_none_match_any};
use crate::problem::Problem;

/// Whether the generic log API refuses to write `stream`: the domain's
/// streams (their read models are strict) and system streams.
pub fn is_reserved_stream(stream: &str) -> bool {
    ["order-", "stock-", "doc-", "collection-", "unique-"]
        .iter()
        .any(|prefix| stream.starts_with(prefix))
        || stream.starts_with('$')
}

fn stream_id(raw: &str) -> Result<StreamId, HttpError> {
    StreamId::new(raw).map_err(HttpError::from)
}

/// Reading a stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadQuery {
    /// The first version to read (default: 1 forward, the newest backward).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    from: Option<u64>,
    /// The most events to return (default 100, at most 1000; a page also
    /// ends before its payloads pass 4 MiB).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `forward` (default) or `backward`.
    #[param(pattern = "^(forward|backward)$")]
    direction: Option<String>,
}

/// The most payload bytes one page of events carries: a page ends early
/// (its `next_from` says where to go on) rather than exceed it.
pub(crate) const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The most payload bytes of `events_since` in one problem body; beyond it
/// `events_since_complete` is false.
pub(crate) const PROBLEM_BYTES: usize = 1024 * 1024;

/// Reads up to `limit` events of `stream` from version `from` in
/// `direction`, none newer than `max_version`, and stops before the payloads
/// add up to more than `budget` bytes (one event is always returned, as the
/// store's own limits bound it). Reads in small chunks, so a page of large
/// events is never all in memory at once beyond the budget.
pub(crate) async fn read_page(
    store: &dyn EventStore,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    limit: usize,
    max_version: u64,
    budget: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const CHUNK: usize = 32;
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut bytes = 0usize;
    let mut next = from;
    while out.len() < limit {
        let want = (limit - out.len()).min(CHUNK);
        let chunk = store.read_stream(stream, next, direction, want).await?;
        let full = chunk.len() == want;
        for e in chunk {
            if e.version > max_version || (!out.is_empty() && bytes + e.payload.len() > budget) {
                return Ok(out);
            }
            bytes += e.payload.len();
            next = match direction {
                Direction::Forward => e.version + 1,
                Direction::Backward => e.version.saturating_sub(1),
            };
            out.push(e);
        }
        if !full || next == 0 {
            break;
        }
    }
    Ok(out)
}

/// Reads a stream of the log.
#[utoipa::path(
    get,
    operation_id = "read_stream",
    path = "/streams/{stream}",
    tag = "log",
    params(("stream" = String, Path, description = "The stream id"), ReadQuery),
    responses(
        (status = 200, description = "The events (an absent stream reads as empty, version 0); JSON payloads as `data`, others as `data_base64`", body = EventsPage,
            headers(("ETag" = String, description = "The stream's version"))),
        (status = 304, description = "If-None-Match names the current version"),
    )
)]
pub(crate) async fn read(
    State(state): State<Log>,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, HttpError> {
    let stream = stream_id(&raw)?;
    let limit = page_limit(q.limit)?;
    let direction = match q.direction.as_deref() {
        None | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(other) => {
            return Err(HttpError::InvalidParameter {
                reason: format!("direction must be forward or backward, not {other:?}"),
            });
        }
    };
    // The version first, then the events up to it: the page and its ETag
    // describe one state of the stream even while writers append.
    let version = state.store.stream_version(&stream).await.map_err(HttpError::from)?;
    let from = match (q.from, direction) {
        (Some(f), Direction::Forward) => f,
        (Some(f), Direction::Backward) => f.min(version),
        (None, Direction::Forward) => 1,
        (None, Direction::Backward) => version,
    };
    let events = read_page(&*state.store, &stream, from, direction, limit, version, PAGE_BYTES)
        .await
        .map_err(HttpError::from)?;
    let next_from = match (direction, events.last()) {
        (Direction::Forward, Some(last)) if last.version < version => Some(last.version + 1),
        (Direction::Backward, Some(last)) if last.version > 1 => Some(last.version - 1),
        _ => None,
    };
    let page = EventsPage {
        stream: stream.to_string(),
        version,
        events: events.iter().map(EventView::from_recorded).collect(),
        next_from,
    };
    Ok(versioned(&headers, version, page))
}

/// Appending to a stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AppendQuery {
    /// The version the append was decided on: a number, `no-stream`,
    /// `exists`, or `*` / `any` (the default: no check). Or use If-Match.
    #[param(pattern = "^(\\*|any|no-stream|exists|0|[1-9][0-9]{0,18})$")]
    expected_version: Option<String>,
}

fn parse_expected(s: &str) -> Result<ExpectedVersion, HttpError> {
    match s {
        "*" | "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= crate::json::integer::MAX)
            .map(|v| ExpectedVersion::Exact(v).normalized())
            .ok_or_else(|| HttpError::InvalidParameter {
                reason: "expected_version is above 9223372036854775807 (2^63-1), the largest version".into(),
            }),
        other => Err(HttpError::InvalidParameter {
            reason: format!("expected_version must be a version, no-stream, exists, * or any, not {other:?}"),
        }),
    }
}

fn expected_json(e: ExpectedVersion) -> Value {
    match e {
        ExpectedVersion::Any => "any".into(),
        ExpectedVersion::NoStream => 0.into(),
        ExpectedVersion::StreamExists => "*".into(),
        ExpectedVersion::Exact(n) => n.into(),
    }
}

/// The append's expected version from If-Match, If-None-Match and the query.
fn expected(headers: &HeaderMap, query: Option<&str>, require: bool) -> Result<ExpectedVersion, HttpError> {
    let from_header = match (if_match(headers)?, if_none_match_any(headers)?) {
        (Some(_), true) => {
            return Err(HttpError::InvalidIfMatch {
                value: "If-Match with If-None-Match".into(),
                reason: "send one precondition".into(),
            });
        }
        (Some(IfMatch::Any), false) => Some(ExpectedVersion::StreamExists),
        (Some(IfMatch::Version(v)), false) => Some(ExpectedVersion::Exact(v).normalized()),
        (None, true) => Some(ExpectedVersion::NoStream),
        (None, false) => None,
    };
    let from_query = query.map(parse_expected).transpose()?;
    let expected = match (from_header, from_query) {
        (None, None) => ExpectedVersion::Any,
        (Some(e), None) | (None, Some(e)) => e,
        (Some(a), Some(b)) if a == b => a,
        (Some(a), Some(b)) => {
            return Err(HttpError::ConflictingExpectedVersions {
                if_match: a.to_string(),
                body: b.to_string(),
            });
        }
    };
    // Required means a version is named: `*`, `any` and `exists` check none.
    if require && expected.exact().is_none() {
        return Err(HttpError::PreconditionRequired);
    }
    Ok(expected)
}

fn to_new_event(body: NewEventBody, request: &Metadata) -> Result<NewEvent, HttpError> {
    let mut metadata = Metadata::default();
    if let Some(m) = body.metadata {
        if let Some(key) = m
            .extra
            .keys()
            .find(|k| k.starts_with("strata.") || k.starts_with("http."))
        {
            return Err(HttpError::InvalidEvents {
                reason: format!("metadata key {key:?} is reserved (prefixes strata. and http.)"),
            });
        }
        metadata.correlation_id = m.correlation_id;
        metadata.causation_id = m.causation_id;
        metadata.extra = m.extra;
    }
    if metadata.correlation_id.is_none() {
        metadata.correlation_id.clone_from(&request.correlation_id);
    }
    for (k, v) in &request.extra {
        metadata.extra.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let payload = serde_json::to_vec(&body.data).map_err(|e| HttpError::InvalidBody { reason: e.to_string() })?;
    Ok(NewEvent {
        id: EventId::from_uuid(body.event_id),
        event_type: body.event_type,
        payload: Bytes::from(payload),
        metadata,
    })
}

/// Appends events to a stream of the log.
#[utoipa::path(
    post,
    path = "/streams/{stream}",
    tag = "log",
    params(("stream" = String, Path, description = "The stream id (not `order-*`, `stock-*` or `$*`)"),
           ("If-Match" = Option<String>, Header, description = "The stream version the append was decided on (`\"0\"`: the stream must not exist), or `*`: it must exist"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: the stream must not exist"),
           AppendQuery),
    request_body = Vec<NewEventBody>,
    responses(
        (status = 201, description = "Appended (or, for a retry with the same event ids, the original append)", body = AppendView,
            headers(("ETag" = String, description = "The stream's version after the append"),
                    ("Location" = String, description = "`/streams/{stream}?from=<first version>`"),
                    ("Strata-Position" = u64, description = "The position of the last event"))),
        (status = 403, description = "`reserved-stream`: write orders and stock through their routes", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` (with the stream's version and the events since) or `duplicate-event-id`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn append(
    State(state): State<Log>,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<AppendQuery>,
    ApiJson(events): ApiJson<Vec<NewEventBody>>,
) -> Result<Response, HttpError> {
    let stream = stream_id(&raw)?;
    if is_reserved_stream(stream.as_str()) {
        return Err(HttpError::ReservedStream {
            stream: stream.to_string(),
        });
    }
    let expected = expected(&headers, q.expected_version.as_deref(), state.config.require_if_match)?;
    if events.is_empty() {
        return Err(HttpError::InvalidEvents {
            reason: "an append needs at least one event".into(),
        });
    }
    let request = metadata(&headers);
    let events = events
        .into_iter()
        .map(|e| to_new_event(e, &request))
        .collect::<Result<Vec<_>, _>>()?;
    let count = events.len() as u64;
    match state.store.append(&stream, expected, events).await {
        Ok(r) => {
            let first_version = r.stream_version + 1 - count;
            Ok(Written {
                status: StatusCode::CREATED,
                version: r.stream_version,
                position: Some(r.last_position),
                location: Some(format!(
                    "/streams/{}?from={first_version}",
                    encode_segment(stream.as_str())
                )),
                appended: count,
                body: AppendView::new(stream.as_str(), &r),
            }
            .into_response())
        }
        Err(StoreError::WrongExpectedVersion { expected, actual, .. }) => {
            Err(stream_conflict(&state, &stream, expected, actual).await)
        }
        Err(e) => Err(HttpError::from(e)),
    }
}

pub(super) async fn stream_conflict(
    state: &Log,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: u64,
) -> HttpError {
    let limit = state.config.conflict_event_limit;
    let (events_since, complete) = match expected.exact() {
        Some(v) if v < actual => {
            let missing = actual - v;
            let wanted = usize::try_from(missing).unwrap_or(usize::MAX).min(limit);
            // Only what happened up to the version the problem reports, and
            // no more payload than a problem body should carry.
            match read_page(
                &state.store,
                stream,
                v + 1,
                Direction::Forward,
                wanted,
                actual,
                PROBLEM_BYTES,
            )
            .await
            {
                Ok(events) => {
                    let complete = events.len() as u64 >= missing;
                    (events.iter().map(EventView::from_recorded).collect(), complete)
                }
                Err(e) => return HttpError::from(e),
            }
        }
        _ => (Vec::new(), true),
    };
    HttpError::StaleVersion(Box::new(StaleVersion {
        status: state.config.conflict_status.status(),
        resource: "stream",
        id: stream.to_string(),
        expected: expected_json(expected),
        current_version: actual,
        current: serde_json::json!({ "stream": stream.as_str(), "version": actual }),
        events_since: events_since
            .into_iter()
            .map(|e: EventView| serde_json::to_value(e).unwrap_or_default())
            .collect(),
        events_since_complete: complete,
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, header};

    use super::*;

    #[tokio::test]
    async fn pages_stop_at_the_byte_budget_and_the_version_read() {
        use strata_store::MemoryStore;
        let store = MemoryStore::new();
        let s = StreamId::new("big").unwrap();
        let events = (0..10).map(|_| NewEvent::new("T", vec![b'x'; 1000])).collect();
        store.append(&s, ExpectedVersion::NoStream, events).await.unwrap();
        let versions = |v: &[RecordedEvent]| v.iter().map(|e| e.version).collect::<Vec<_>>();

        let page = read_page(&store, &s, 1, Direction::Forward, 100, 10, 3500)
            .await
            .unwrap();
        assert_eq!(versions(&page), [1, 2, 3], "3 events fit in 3,500 bytes");
        let page = read_page(&store, &s, 1, Direction::Forward, 100, 10, 10).await.unwrap();
        assert_eq!(versions(&page), [1], "one event always comes back");
        let page = read_page(&store, &s, 5, Direction::Forward, 100, 7, usize::MAX)
            .await
            .unwrap();
        assert_eq!(versions(&page), [5, 6, 7], "nothing newer than the version read");
        let page = read_page(&store, &s, 3, Direction::Backward, 100, 10, usize::MAX)
            .await
            .unwrap();
        assert_eq!(versions(&page), [3, 2, 1]);
        let page = read_page(&store, &s, 1, Direction::Forward, 40, 10, usize::MAX)
            .await
            .unwrap();
        assert_eq!(page.len(), 10, "reads across chunks to the end");
    }

    #[test]
    fn reserved_streams() {
        for s in ["order-1", "stock-tea", "$snapshot-order-1", "$all"] {
            assert!(is_reserved_stream(s), "{s}");
        }
        for s in ["orders", "notes-1", "stockpile", "x-order-1"] {
            assert!(!is_reserved_stream(s), "{s}");
        }
    }

    #[test]
    fn expected_version_from_headers_and_query() {
        let none = HeaderMap::new();
        assert_eq!(expected(&none, None, false).unwrap(), ExpectedVersion::Any);
        assert!(matches!(
            expected(&none, None, true),
            Err(HttpError::PreconditionRequired)
        ));
        assert!(matches!(
            expected(&none, Some("*"), true),
            Err(HttpError::PreconditionRequired)
        ));
        assert_eq!(expected(&none, Some("*"), false).unwrap(), ExpectedVersion::Any);
        assert_eq!(expected(&none, Some("3"), false).unwrap(), ExpectedVersion::Exact(3));
        assert_eq!(expected(&none, Some("0"), false).unwrap(), ExpectedVersion::NoStream);
        let mut star = HeaderMap::new();
        star.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(expected(&star, None, false).unwrap(), ExpectedVersion::StreamExists);
        assert!(matches!(
            expected(&star, None, true),
            Err(HttpError::PreconditionRequired)
        ));
        let mut create = HeaderMap::new();
        create.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(expected(&create, None, true).unwrap(), ExpectedVersion::NoStream);
        let mut v2 = HeaderMap::new();
        v2.insert(header::IF_MATCH, HeaderValue::from_static("\"2\""));
        assert_eq!(expected(&v2, Some("2"), false).unwrap(), ExpectedVersion::Exact(2));
        assert!(expected(&v2, Some("3"), false).is_err());
        assert!(expected(&none, Some("-1"), false).is_err());
    }
}
