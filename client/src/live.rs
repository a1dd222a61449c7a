//! Following the log over Server-Sent Events (`GET /subscriptions/all`):
//! [`Client::follow`], the filter it sends ([`LiveFilter`]), and the
//! stream of [`LiveItem`]s it reads, which reconnects on its own with
//! `Last-Event-ID` so that a server restart costs no event and repeats
//! none.

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde_json::Value;

use crate::{Client, ClientError, problem};

/// The longest line of the event stream the client accepts (an event's
/// JSON, payload included): a longer one is an error, not an allocation.
pub const MAX_SSE_LINE: usize = 16 * 1024 * 1024;

/// Which events to follow: the query terms of `/subscriptions/all`, each
/// repeatable (see the route's documentation; empty follows everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveFilter {
    /// Exact event types.
    pub event_types: Vec<String>,
    /// Event type prefixes.
    pub event_type_prefixes: Vec<String>,
    /// Exact stream ids.
    pub streams: Vec<String>,
    /// Stream id prefixes.
    pub stream_prefixes: Vec<String>,
    /// Categories (stream ids before their first `-`).
    pub categories: Vec<String>,
}

impl LiveFilter {
    fn query(&self) -> Vec<(&'static str, &str)> {
        let mut q = Vec::new();
        for (key, terms) in [
            ("event_type", &self.event_types),
            ("event_type_prefix", &self.event_type_prefixes),
            ("stream", &self.streams),
            ("stream_prefix", &self.stream_prefixes),
            ("category", &self.categories),
        ] {
            q.extend(terms.iter().map(|t| (key, t.as_str())));
        }
        q
    }
}

/// A log event as the live stream sends it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LiveEvent {
    /// Its position in the log (also the SSE `id`).
    pub position: u64,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its type.
    pub event_type: String,
    /// Its id.
    pub event_id: String,
    /// When it was committed (RFC 3339).
    pub recorded_at: String,
    /// The payload, when it is JSON.
    #[serde(default)]
    pub data: Option<Value>,
    /// The payload, base64, when it is not JSON.
    #[serde(default)]
    pub data_base64: Option<String>,
    /// Its metadata.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// What the live stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveItem {
    /// An event the filter matches.
    Event(Box<LiveEvent>),
    /// Every matching event up to this position was yielded before: a
    /// consumer's checkpoint may move here.
    Checkpoint(u64),
}

/// One message of an event stream, as the SSE rules assemble it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// Its `event` field (`message` when absent).
    pub event: String,
    /// Its `data` lines, joined with `\n`.
    pub data: String,
    /// The last event id in force when it was dispatched.
    pub id: Option<String>,
}

/// An incremental parser of `text/event-stream` (the WHATWG rules: lines
/// end in CRLF, LF or CR; `:` starts a comment; a blank line dispatches;
/// an `id` sets the last event id even for a message without data).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// A CR ended the last line: a LF right after it is part of that end.
    after_cr: bool,
    event: String,
    data: Vec<String>,
    last_id: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the messages they complete. Errors when a line
    /// exceeds [`MAX_SSE_LINE`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseMessage>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(m) = self.line_done(&line) {
                        out.push(m);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_SSE_LINE {
                        return Err(format!("an event stream line longer than {MAX_SSE_LINE} bytes"));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    /// The last event id the stream set.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseMessage> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseMessage {
                event: if event.is_empty() { "message".into() } else { event },
                data,
                id: self.last_id.clone(),
            });
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// The live stream of [`Client::follow`]: history, then live events, for
/// as long as it is read. When the connection ends (a server restart, a
/// network failure) it connects again with `Last-Event-ID`, waiting
/// `reconnect_delay` between attempts, until
/// [`LiveEvents::max_reconnects`] attempts in a row have failed.
#[derive(Debug)]
pub struct LiveEvents {
    client: Client,
    filter: LiveFilter,
    after: u64,
    response: Option<reqwest::Response>,
    parser: SseParser,
    ready: VecDeque<LiveItem>,
    reconnect_delay: Duration,
    max_reconnects: u32,
    failures: u32,
}

impl LiveEvents {
    /// How long to wait before connecting again (default 500 ms).
    pub fn reconnect_delay(mut self, delay: Duration) -> LiveEvents {
        self.reconnect_delay = delay;
        self
    }

    /// How many failed connection attempts in a row end the stream with
    /// the last error (default 20).
    pub fn max_reconnects(mut self, attempts: u32) -> LiveEvents {
        self.max_reconnects = attempts;
        self
    }

    /// The position after which the stream resumes when it reconnects:
    /// the last event or checkpoint received.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next item; waits for one. Errors: a refusal of the request
    /// (a bad filter: [`ClientError::Problem`]), an `error` event of the
    /// server (the log failed), a malformed stream, or reconnects that
    /// kept failing.
    pub async fn next(&mut self) -> Result<LiveItem, ClientError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(item);
            }
            let Some(response) = self.response.as_mut() else {
                self.connect().await?;
                continue;
            };
            let status = response.status().as_u16();
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    let messages = self
                        .parser
                        .feed(&bytes)
                        .map_err(|reason| ClientError::Unexpected { status, reason })?;
                    for m in messages {
                        self.accept(m, status)?;
                    }
                }
                // The server ended the stream (it stopped), or the
                // connection broke: resume after the last position.
                Ok(None) | Err(_) => {
                    self.response = None;
                    self.parser = SseParser::default();
                }
            }
        }
    }

    fn accept(&mut self, m: SseMessage, status: u16) -> Result<(), ClientError> {
        let bad = |reason: String| ClientError::Unexpected { status, reason };
        match m.event.as_str() {
            "message" => {
                let event: LiveEvent =
                    serde_json::from_str(&m.data).map_err(|e| bad(format!("an event that does not parse: {e}")))?;
                if event.position <= self.after {
                    return Err(bad(format!(
                        "position {} after position {}: out of order",
                        event.position, self.after
                    )));
                }
                self.after = event.position;
                self.ready.push_back(LiveItem::Event(Box::new(event)));
            }
            "checkpoint" => {
                let position =
                    m.id.as_deref()
                        .and_then(|id| id.parse().ok())
                        .ok_or_else(|| bad(format!("a checkpoint without a position: {:?}", m.id)))?;
                self.after = self.after.max(position);
                self.ready.push_back(LiveItem::Checkpoint(position));
            }
            "error" => {
                let body: Value = serde_json::from_str(&m.data).unwrap_or(Value::String(m.data));
                let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
                return Err(ClientError::Problem {
                    status: u16::try_from(body["status"].as_u64().unwrap_or(500)).unwrap_or(500),
                    problem_type: text("type"),
                    detail: text("detail"),
                    body,
                });
            }
            // Event names of later versions.
            _ => {}
        }
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        if self.failures > 0 {
            tokio::time::sleep(self.reconnect_delay).await;
        }
        let mut url = self
            .client
            .base
            .join("subscriptions/all")
            .map_err(|e| ClientError::InvalidUrl {
                url: self.client.base.to_string(),
                reason: e.to_string(),
            })?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in self.filter.query() {
                q.append_pair(k, v);
            }
            q.append_pair("after", &self.after.to_string());
        }
        let request = self
            .client
            .http
            .get(url)
            .header(ACCEPT, "text/event-stream")
            .header("last-event-id", self.after.to_string())
            // No overall deadline: the stream is meant to last.
            .timeout(Duration::from_secs(365 * 24 * 3600));
        match self.client.send(request).await {
            Ok(r) if r.status() == StatusCode::OK => {
                self.failures = 0;
                self.response = Some(r);
                Ok(())
            }
            // A refusal: the request itself is wrong, retrying cannot help
            // (503: the server is not ready yet, try again).
            Ok(r) if r.status() != StatusCode::SERVICE_UNAVAILABLE => Err(problem(r).await),
            Ok(r) => self.failed(problem(r).await),
            Err(e) => self.failed(e),
        }
    }

    fn failed(&mut self, e: ClientError) -> Result<(), ClientError> {
        self.failures += 1;
        if self.failures > self.max_reconnects {
            return Err(e);
        }
        tracing::debug!(error = %e, attempt = self.failures, "the live stream could not connect; trying again");
        Ok(())
    }
}

impl Client {
    /// Follows the log from after position `after` (0: from the first
    /// event) with `filter`: the history, then live events. The stream
    /// reconnects on its own when the connection ends, resuming after the
    /// last event or checkpoint it yielded, so a server restart neither
    /// loses nor repeats an event. Nothing is sent until the first
    /// [`LiveEvents::next`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), strata_client::ClientError> {
    /// use strata_client::{Client, LiveFilter, LiveItem};
    ///
    /// let client = Client::new("http://127.0.0.1:8080")?;
    /// let filter = LiveFilter { categories: vec!["order".into()], ..LiveFilter::default() };
    /// let mut live = client.follow(filter, 0);
    /// while let LiveItem::Event(e) = live.next().await? {
    ///     println!("{} {} {}", e.position, e.stream, e.event_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn follow(&self, filter: LiveFilter, after: u64) -> LiveEvents {
        LiveEvents {
            client: self.clone(),
            filter,
            after,
            response: None,
            parser: SseParser::default(),
            ready: VecDeque::new(),
            reconnect_delay: Duration::from_millis(500),
            max_reconnects: 20,
            failures: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_sse_rules() {
        let mut p = SseParser::default();
        let mut got = p.feed(b": keep-alive\n\nid: 3\ndata: {\"a\":\ndata: 1}\n\n").unwrap();
        got.extend(p.feed(b"event: checkpoint\r\nid: 9\r\ndata: x\r").unwrap());
        got.extend(p.feed(b"\n\r\nid: 10\n\n").unwrap());
        assert_eq!(
            got,
            vec![
                SseMessage {
                    event: "message".into(),
                    data: "{\"a\":\n1}".into(),
                    id: Some("3".into())
                },
                SseMessage {
                    event: "checkpoint".into(),
                    data: "x".into(),
                    id: Some("9".into())
                },
            ]
        );
        assert_eq!(p.last_id(), Some("10"), "an id without data still counts");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut failed = false;
        for _ in 0..=MAX_SSE_LINE / chunk.len() {
            if p.feed(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
