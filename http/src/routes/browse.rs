//! `GET /streams` (the streams of the log, by prefix or category, paged)
//! and `GET /log` (the whole log from a position, paged): what a person
//! browsing the log needs, the web console first.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use strata_store::{EventStore, MAX_FILTER_TERM_BYTES, RecordedEvent, StoreError, StreamId};
use utoipa::{IntoParams, ToSchema};

use super::Log;
use super::orders::page_limit;
use super::streams::PAGE_BYTES;
use crate::error::HttpError;
use crate::extract::ApiQuery;
use crate::model::EventView;
use crate::problem::Problem;

/// Listing streams.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamsQuery {
    /// Only streams whose id starts with this (at most 256 bytes).
    #[param(max_length = 256)]
    prefix: Option<String>,
    /// Only the streams of this category (`{category}-*`; no `-` in it).
    /// Not with `prefix`.
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f-]+$")]
    category: Option<String>,
    /// Start after this stream id (the previous page's `next_after`).
    #[param(min_length = 1, max_length = 256)]
    after: Option<String>,
    /// The most streams to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A stream and its version.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamItem {
    /// The stream id.
    pub stream: String,
    /// Its version: its number of events.
    pub version: u64,
}

/// A page of streams, in the byte order of their ids.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamsPage {
    /// The streams.
    pub streams: Vec<StreamItem>,
    /// The `after` of the next page, when there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

fn invalid(reason: impl Into<String>) -> HttpError {
    HttpError::InvalidParameter { reason: reason.into() }
}

/// Lists the streams of the log.
#[utoipa::path(
    get,
    path = "/streams",
    tag = "log",
    params(StreamsQuery),
    responses(
        (status = 200, description = "The streams, in the byte order of their ids, with their versions", body = StreamsPage),
        (status = 400, description = "`invalid-parameter`: prefix and category together, a category with `-`, a limit out of range, an invalid `after`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_streams(
    State(state): State<Log>,
    ApiQuery(q): ApiQuery<StreamsQuery>,
) -> Result<Json<StreamsPage>, HttpError> {
    let limit = page_limit(q.limit)?;
    let prefix = match (q.prefix, q.category) {
        (Some(_), Some(_)) => return Err(invalid("give prefix or category, not both")),
        (Some(p), None) if p.len() > MAX_FILTER_TERM_BYTES => {
            return Err(invalid(format!("prefix is at most {MAX_FILTER_TERM_BYTES} bytes")));
        }
        (Some(p), None) => p,
        (None, Some(c))
            if c.is_empty()
                || c.len() > MAX_FILTER_TERM_BYTES
                || c.contains('-')
                || c.chars().any(char::is_control) =>
        {
            return Err(invalid(format!(
                "category must be 1..={MAX_FILTER_TERM_BYTES} bytes without `-` or control characters"
            )));
        }
        (None, Some(c)) => format!("{c}-"),
        (None, None) => String::new(),
    };
    let after = q
        .after
        .map(StreamId::new)
        .transpose()
        .map_err(|e| invalid(format!("after: {e}")))?;
    let streams = state
        .store
        .list_streams(&prefix, after.as_ref(), limit)
        .await
        .map_err(HttpError::from)?;
    let next_after = (streams.len() == limit)
        .then(|| streams.last().map(|s| s.stream_id.to_string()))
        .flatten();
    Ok(Json(StreamsPage {
        streams: streams
            .into_iter()
            .map(|s| StreamItem {
                stream: s.stream_id.to_string(),
                version: s.version,
            })
            .collect(),
        next_after,
    }))
}

/// Reading the whole log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// The first position to read (default 1).
    #[param(minimum = 0)]
    from: Option<u64>,
    /// The most events to return (default 100, at most 1000; a page also
    /// ends before its payloads pass 4 MiB).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A page of the whole log, in position order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// The position of the newest event when the page was read.
    pub head: u64,
    /// The events read.
    pub events: Vec<EventView>,
    /// The `from` of the next page, when the log went on past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_from: Option<u64>,
}

/// Up to `limit` events of the log from `from` to `head`, in small reads,
/// stopping before the payloads pass `budget` bytes (one event always).
async fn read_log(
    store: &dyn EventStore,
    from: u64,
    head: u64,
    limit: usize,
    budget: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const CHUNK: usize = 32;
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut bytes = 0usize;
    let mut next = from.max(1);
    while out.len() < limit && next <= head {
        let want = (limit - out.len()).min(CHUNK);
        let chunk = store.read_all(next, want).await?;
        let Some(last) = chunk.last() else { break };
        next = last.position + 1;
        let full = chunk.len() == want;
        for e in chunk {
            if e.position > head || (!out.is_empty() && bytes + e.payload.len() > budget) {
                return Ok(out);
            }
            bytes += e.payload.len();
            out.push(e);
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// Reads the whole log from a position.
#[utoipa::path(
    get,
    path = "/log",
    tag = "log",
    params(LogQuery),
    responses(
        (status = 200, description = "The events from `from` on, in position order, up to the head read first", body = LogPage),
        (status = 400, description = "`invalid-parameter`: a limit out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn read_log_page(
    State(state): State<Log>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogPage>, HttpError> {
    let limit = page_limit(q.limit)?;
    if q.from.is_some_and(|f| f > i64::MAX as u64) {
        return Err(invalid("from: at most 2^63-1 (positions are int64)"));
    }
    // The head first: the page describes the log up to it even while
    // writers append.
    let head = state.store.head_position().await.map_err(HttpError::from)?;
    let events = read_log(&*state.store, q.from.unwrap_or(1), head, limit, PAGE_BYTES)
        .await
        .map_err(HttpError::from)?;
    let next_from = events.last().filter(|e| e.position < head).map(|e| e.position + 1);
    Ok(Json(LogPage {
        head,
        events: events.iter().map(EventView::from_recorded).collect(),
        next_from,
    }))
}

#[cfg(test)]
mod tests {
    use strata_store::{ExpectedVersion, MemoryStore, NewEvent};

    use super::*;

    #[tokio::test]
    async fn a_log_page_stops_at_the_head_and_the_byte_budget() {
        let store = MemoryStore::new();
        let s = StreamId::new("big").unwrap();
        let events = (0..10).map(|_| NewEvent::new("T", vec![b'x'; 1000])).collect();
        store.append(&s, ExpectedVersion::NoStream, events).await.unwrap();
        let page = read_log(&store, 1, 10, 100, 3500).await.unwrap();
        assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2, 3]);
        let page = read_log(&store, 4, 6, 100, usize::MAX).await.unwrap();
        assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), [4, 5, 6]);
        let page = read_log(&store, 0, 10, 100, 10).await.unwrap();
        assert_eq!(page.len(), 1, "one event always");
        assert!(read_log(&store, 11, 10, 100, 10).await.unwrap().is_empty());
    }
}
