//! `/subscriptions/all`, `/subscriptions/streams/{stream}` and
//! `/subscriptions/categories/{category}`: the log as Server-Sent Events.
//!
//! A client gets the history after its position, then live events as they
//! commit, through one path (the store's filtered subscription), so there
//! is no gap or duplicate at the handover. Each event's SSE `id` is its
//! position: a client that reconnects with `Last-Event-ID` (as every
//! `EventSource` does) resumes exactly after the last event it saw, on
//! this server or on the next one after a restart. Over a long stretch of
//! events its filter skips, a `checkpoint` event carries the position
//! examined as its `id`, so a reconnect does not examine that stretch
//! again.
//!
//! Memory per client is bounded: the subscription is pulled as the
//! connection takes bytes, so a client that stops reading stops the
//! server reading the log for it (one read batch and the socket's buffers
//! at most), and writers never wait for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;
use strata_store::{EventFilter, EventStore, StreamId, SubscriptionItem};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use crate::error::HttpError;
use crate::extract::ApiPath;
use crate::metrics::{Metrics, SseClient};
use crate::model::EventView;
use crate::problem::Problem;

/// The header an `EventSource` sends when it reconnects: the `id` of the
/// last event it received.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// How often an idle stream sends a comment, so proxies keep it open and
/// a client that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Cancelled when the server stops accepting connections: the live
/// streams end then (a client reconnects with `Last-Event-ID`), so a
/// graceful shutdown does not wait for them.
#[derive(Clone, Default)]
pub(crate) struct Closing(pub CancellationToken);

/// What the live routes use.
pub(crate) struct Live {
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    closing: Closing,
}

impl<S: Send + Sync> FromRef<S> for Live
where
    Arc<dyn EventStore>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
    Closing: FromRef<S>,
{
    fn from_ref(state: &S) -> Live {
        Live {
            store: FromRef::from_ref(state),
            metrics: FromRef::from_ref(state),
            closing: FromRef::from_ref(state),
        }
    }
}

/// The filter and the start of a live stream. Every term may be repeated:
/// an event matches when its type is one of the `event_type`s or starts
/// with one of the `event_type_prefix`es (no type term: any type) **and**
/// its stream is one of the `stream`s, starts with one of the
/// `stream_prefix`es or is in one of the `category`s (no stream term: any
/// stream). At most 64 terms in all, each 1..=256 bytes without control
/// characters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation of the query, parsed by `parse_query`.
pub(crate) struct LiveQuery {
    /// Start after this position (0, the default: from the first event).
    /// `Last-Event-ID`, when sent, takes its place.
    #[param(minimum = 0)]
    after: Option<u64>,
    /// An exact event type.
    #[param(max_items = 64, value_type = Option<Vec<String>>)]
    event_type: Option<Vec<String>>,
    /// An event type prefix.
    #[param(max_items = 64, value_type = Option<Vec<String>>)]
    event_type_prefix: Option<Vec<String>>,
    /// An exact stream id.
    #[param(max_items = 64, value_type = Option<Vec<String>>)]
    stream: Option<Vec<String>>,
    /// A stream id prefix.
    #[param(max_items = 64, value_type = Option<Vec<String>>)]
    stream_prefix: Option<Vec<String>>,
    /// A category: the stream id before its first `-` (so it holds no `-`).
    #[param(max_items = 64, value_type = Option<Vec<String>>)]
    category: Option<Vec<String>>,
}

/// The data of a `checkpoint` event: every event the filter matches up to
/// `position` was sent before it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct CheckpointView {
    /// The position examined.
    position: u64,
}

/// Parses the live routes' query: the filter terms (repeatable) and `after`.
pub(crate) fn parse_query(raw: Option<&str>, mut filter: EventFilter) -> Result<(EventFilter, u64), HttpError> {
    let mut after = None;
    let bad = |reason: String| HttpError::InvalidParameter { reason };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.into_owned();
        filter = match key.as_ref() {
            "after" => {
                if after.is_some() {
                    return Err(bad("after is given more than once".into()));
                }
                after = Some(parse_position("after", &value)?);
                filter
            }
            "event_type" => filter.event_type(value),
            "event_type_prefix" => filter.event_type_prefix(value),
            "stream" => filter.stream(StreamId::new(value).map_err(|e| bad(format!("stream: {e}")))?),
            "stream_prefix" => filter.stream_prefix(value),
            "category" => filter.category(value),
            other => {
                return Err(bad(format!(
                    "unknown query parameter {:?}: expected after, event_type, event_type_prefix, stream, stream_prefix or category",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
    }
    filter.check().map_err(|e| bad(e.to_string()))?;
    Ok((filter, after.unwrap_or(0)))
}

fn parse_position(what: &str, value: &str) -> Result<u64, HttpError> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::InvalidParameter {
            reason: format!(
                "{what} must be a position (a decimal number), not {:?}",
                value.chars().take(64).collect::<String>()
            ),
        });
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|p| *p <= crate::json::integer::MAX)
        .ok_or_else(|| HttpError::InvalidParameter {
            reason: format!("{what} is above 9223372036854775807 (2^63-1), the largest position"),
        })
}

/// Where the stream starts: after `Last-Event-ID` when the client sent
/// one (a reconnect), else after the query's `after`.
fn start(headers: &HeaderMap, after: u64) -> Result<u64, HttpError> {
    match headers.get(LAST_EVENT_ID) {
        None => Ok(after),
        Some(v) => {
            let v = v.to_str().map_err(|_| HttpError::InvalidParameter {
                reason: "Last-Event-ID is not visible ASCII".into(),
            })?;
            parse_position("Last-Event-ID", v)
        }
    }
}

/// The SSE event of a log event: its position as `id`, the event as JSON
/// (as the log routes show it) as `data`.
fn event_of(e: &strata_store::RecordedEvent) -> Event {
    let json = serde_json::to_string(&EventView::from_recorded(e)).unwrap_or_default();
    // A JSON payload is passed through as stored: line breaks in it can
    // only be whitespace between tokens (JSON strings escape them), so
    // they become spaces and `data` stays one line.
    let json = if json.contains(['\n', '\r']) {
        json.replace(['\n', '\r'], " ")
    } else {
        json
    };
    Event::default().id(e.position.to_string()).data(json)
}

fn checkpoint_of(position: u64) -> Event {
    let json = serde_json::to_string(&CheckpointView { position }).unwrap_or_default();
    Event::default().event("checkpoint").id(position.to_string()).data(json)
}

fn error_of(e: &HttpError) -> Event {
    let json = serde_json::to_string(&e.to_problem()).unwrap_or_default();
    Event::default().event("error").data(json)
}

/// The live stream: the subscription's items as SSE events until the
/// client goes, the server stops, or the log fails (an `error` event with
/// a problem body, then the end: reconnect with `Last-Event-ID`).
fn live_stream(live: Live, after: u64, filter: EventFilter) -> impl Stream<Item = Result<Event, Infallible>> {
    struct St {
        items: strata_store::FilteredSubscription,
        closing: CancellationToken,
        metrics: Arc<Metrics>,
        _client: SseClient,
        done: bool,
    }
    let st = St {
        items: live.store.subscribe_filtered(after, filter),
        closing: live.closing.0.clone(),
        _client: live.metrics.sse_client(),
        metrics: live.metrics,
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let item = tokio::select! {
            biased;
            () = st.closing.cancelled() => return None,
            item = st.items.next() => item?,
        };
        let event = match item {
            Ok(SubscriptionItem::Event(e)) => {
                st.metrics.sse_event();
                event_of(&e)
            }
            Ok(SubscriptionItem::Checkpoint(p)) => checkpoint_of(p),
            Err(e) => {
                tracing::warn!(error = %e, "a live stream failed");
                st.done = true;
                error_of(&HttpError::from(e))
            }
        };
        Some((Ok(event), st))
    })
}

fn respond(live: Live, headers: &HeaderMap, raw: Option<&str>, filter: EventFilter) -> Result<Response, HttpError> {
    let (filter, after) = parse_query(raw, filter)?;
    let after = start(headers, after)?;
    let stream = live_stream(live, after, filter);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies (nginx) must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

const SSE_DESCRIPTION: &str = "`text/event-stream`: the history after the start, then live events as they commit. \
    Each log event is a message (no `event` field) whose `id` is its position and whose `data` is the event as JSON \
    (an `EventView`, as `GET /streams/{stream}` shows it). Over stretches of events the filter skips, an event named \
    `checkpoint` carries the position examined as its `id` (data `{\"position\": n}`). A failure of the log ends the \
    stream with an event named `error` whose data is a problem body; a server that stops ends it cleanly. Reconnect \
    with `Last-Event-ID`: no event is missed or sent twice.";

/// Follows the whole log, filtered, as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/subscriptions/all",
    tag = "subscriptions",
    params(
        LiveQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The position to resume after (what an EventSource sends when it reconnects); takes the place of `after`", pattern = "^(0|[1-9][0-9]{0,18})$"),
    ),
    responses(
        (status = 200, description = SSE_DESCRIPTION, body = String, content_type = "text/event-stream"),
        (status = 400, description = "`invalid-parameter`: an unknown parameter, a filter term that breaks its rules, a position that does not parse", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn all(
    State(live): State<Live>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    respond(live, &headers, raw.as_deref(), EventFilter::all())
}

/// Follows one stream (and the query's filter) as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/subscriptions/streams/{stream}",
    tag = "subscriptions",
    params(
        ("stream" = String, Path, description = "The stream id (1..=256 bytes, no control characters)", min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"),
        LiveQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The position to resume after; takes the place of `after`", pattern = "^(0|[1-9][0-9]{0,18})$"),
    ),
    responses(
        (status = 200, description = SSE_DESCRIPTION, body = String, content_type = "text/event-stream"),
        (status = 400, description = "`invalid-id` (the stream id) or `invalid-parameter`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stream(
    State(live): State<Live>,
    headers: HeaderMap,
    ApiPath(stream): ApiPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let stream = StreamId::new(stream).map_err(HttpError::from)?;
    respond(live, &headers, raw.as_deref(), EventFilter::all().stream(stream))
}

/// Follows one category (the streams `{category}-*`, and the query's
/// filter) as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/subscriptions/categories/{category}",
    tag = "subscriptions",
    params(
        ("category" = String, Path, description = "The category: stream ids before their first `-` (1..=256 bytes, no `-`, no control characters)", min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f-]+$"),
        LiveQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The position to resume after; takes the place of `after`", pattern = "^(0|[1-9][0-9]{0,18})$"),
    ),
    responses(
        (status = 200, description = SSE_DESCRIPTION, body = String, content_type = "text/event-stream"),
        (status = 400, description = "`invalid-parameter`: the category or the query", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn category(
    State(live): State<Live>,
    headers: HeaderMap,
    ApiPath(category): ApiPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    respond(live, &headers, raw.as_deref(), EventFilter::all().category(category))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_repeat_terms_and_refuse_the_unknown() {
        let (f, after) = parse_query(
            Some("category=order&category=sku&event_type_prefix=Order&after=7"),
            EventFilter::all(),
        )
        .unwrap();
        assert_eq!(after, 7);
        assert_eq!(f.categories(), ["order", "sku"]);
        assert!(f.matches_parts("sku-1", "OrderPlaced") && !f.matches_parts("sku-1", "Stock"));
        for bad in [
            "x=1",
            "after=1&after=2",
            "after=-1",
            "after=99999999999999999999",
            "category=a-b",
            "event_type=",
            "stream=",
        ] {
            assert!(
                matches!(
                    parse_query(Some(bad), EventFilter::all()),
                    Err(HttpError::InvalidParameter { .. })
                ),
                "{bad}"
            );
        }
        let (f, after) = parse_query(None, EventFilter::all()).unwrap();
        assert!(f.is_all() && after == 0);
    }

    #[test]
    fn last_event_id_takes_the_place_of_after() {
        let mut h = HeaderMap::new();
        assert_eq!(start(&h, 5).unwrap(), 5);
        h.insert(LAST_EVENT_ID, "12".parse().unwrap());
        assert_eq!(start(&h, 5).unwrap(), 12);
        h.insert(LAST_EVENT_ID, "x".parse().unwrap());
        assert!(start(&h, 5).is_err());
    }
}
