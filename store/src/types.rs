//! The value types of the log: stream ids, event ids, expected versions,
//! events to append and events as recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// The longest stream id accepted, in bytes of UTF-8.
pub const MAX_STREAM_ID_BYTES: usize = 256;

/// The name of a stream: 1..=256 bytes of UTF-8 with no control characters.
///
/// Cheap to clone (the string is shared).
///
/// ```
/// use strata_store::StreamId;
/// let id = StreamId::new("order-42").unwrap();
/// assert_eq!(id.as_str(), "order-42");
/// assert!(StreamId::new("").is_err());
/// assert!(StreamId::new("bad\nid").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates `s` as a stream id.
    ///
    /// Errors with [`StoreError::InvalidStreamId`] when `s` is empty, longer
    /// than [`MAX_STREAM_ID_BYTES`], or holds a control character.
    pub fn new(s: impl AsRef<str>) -> Result<StreamId, StoreError> {
        let s = s.as_ref();
        let reason = if s.is_empty() {
            Some("must not be empty")
        } else if s.len() > MAX_STREAM_ID_BYTES + s.starts_with("$$") as usize * 2 {
            Some("must be at most 256 bytes of UTF-8 (258 for a `$$` metadata stream)")
        } else if s.chars().any(char::is_control) {
            Some("must not contain control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidStreamId {
                stream: s.chars().take(64).filter(|c| !c.is_control()).collect(),
                reason,
            }),
            None => Ok(StreamId(Arc::from(s))),
        }
    }

    /// The metadata stream of `stream`, `$$<stream>` (see
    /// [`crate::metadata_stream`]).
    pub(crate) fn metadata_of(stream: &StreamId) -> StreamId {
        StreamId(Arc::from(format!("$${}", stream.as_str())))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamId::new(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        StreamId::new(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = StoreError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        StreamId::new(s)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> String {
        id.0.to_string()
    }
}

/// The id of one event, a UUID chosen by the writer.
///
/// An append whose event ids are already in the stream is answered from the
/// log instead of being written again (see [`crate::EventStore`]), so a writer
/// that retries after a timeout must reuse the ids of its first attempt.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh id (UUID v7: time ordered, random in its low bits).
    pub fn new() -> EventId {
        EventId(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(uuid: Uuid) -> EventId {
        EventId(uuid)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The 16 bytes of the UUID.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl From<Uuid> for EventId {
    fn from(uuid: Uuid) -> Self {
        EventId(uuid)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::from_str(s).map(EventId)
    }
}

/// The version of a stream an append was decided on.
///
/// The version of a stream is the number of events in it: an absent stream
/// has version 0 and its first event has version 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is. Never conflicts.
    Any,
    /// The stream must have no events (same as `Exact(0)`).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's version must be exactly this.
    Exact(u64),
}

impl ExpectedVersion {
    /// `Exact(0)` is `NoStream`; every other value is itself.
    pub fn normalized(self) -> ExpectedVersion {
        match self {
            ExpectedVersion::Exact(0) => ExpectedVersion::NoStream,
            other => other,
        }
    }

    /// Whether a stream at version `actual` satisfies this expectation.
    pub fn accepts(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::StreamExists => actual > 0,
            ExpectedVersion::Exact(n) => actual == n,
        }
    }

    /// The version this expectation names, if it names one (`NoStream` is 0).
    pub fn exact(self) -> Option<u64> {
        match self {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(n) => Some(n),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// What travels with an event besides its payload.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by everything done for one request or business flow.
    pub correlation_id: Option<String>,
    /// The id of the message (often an event id) that caused this event.
    pub causation_id: Option<String>,
    /// Any further small string values.
    pub extra: BTreeMap<String, String>,
}

impl Metadata {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.extra.is_empty()
    }

    /// The size this metadata counts against [`crate::Limits::max_metadata_bytes`]:
    /// the bytes of every id, key and value.
    pub fn size(&self) -> usize {
        self.correlation_id.as_ref().map_or(0, String::len)
            + self.causation_id.as_ref().map_or(0, String::len)
            + self.extra.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

/// An event to append.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewEvent {
    /// Its id; reuse it when retrying, so the retry is recognised.
    pub id: EventId,
    /// The type name readers dispatch on, e.g. `OrderPlaced`.
    pub event_type: String,
    /// The encoded event; the store does not look inside.
    pub payload: Bytes,
    /// Correlation, causation and further values.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event with a fresh id and no metadata.
    pub fn new(event_type: impl Into<String>, payload: impl Into<Bytes>) -> NewEvent {
        NewEvent {
            id: EventId::new(),
            event_type: event_type.into(),
            payload: payload.into(),
            metadata: Metadata::default(),
        }
    }

    /// The same event with the given id.
    pub fn with_id(mut self, id: EventId) -> NewEvent {
        self.id = id;
        self
    }

    /// The same event with the given metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> NewEvent {
        self.metadata = metadata;
        self
    }
}

/// An event as the log holds it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in that stream: 1 for the first event, gapless.
    pub version: u64,
    /// Its global position: 1 for the first event of the log, gapless, in commit order.
    pub position: u64,
    /// The id it was appended with.
    pub id: EventId,
    /// Its type name.
    pub event_type: String,
    /// The payload as appended.
    pub payload: Bytes,
    /// The metadata as appended.
    pub metadata: Metadata,
    /// When the store committed it (microsecond precision).
    pub recorded_at: SystemTime,
}

/// A stream as [`crate::EventStore::list_streams`] lists it: its id and
/// its version (its number of events) when it was listed.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StreamSummary {
    /// The stream.
    pub stream_id: StreamId,
    /// Its number of events (at least 1: a listed stream exists).
    pub version: u64,
}

/// What an append did: the stream's version after it and the global positions
/// of its first and last event.
///
/// A retry that the store recognises returns the result of the original append.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct AppendResult {
    /// The stream's version right after this append (the version of its last event).
    pub stream_version: u64,
    /// The global position of the append's first event.
    pub first_position: u64,
    /// The global position of the append's last event.
    pub last_position: u64,
}

/// One stream's part of an [`crate::EventStore::append_multi`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StreamAppend {
    /// The stream to append to.
    pub stream: StreamId,
    /// The version the events were decided on.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// Bundles a stream, its expected version and its events.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
        StreamAppend {
            stream,
            expected,
            events,
        }
    }
}

/// Which way [`crate::EventStore::read_stream`] walks a stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub enum Direction {
    /// Oldest first: versions `from, from + 1, ...`.
    #[default]
    Forward,
    /// Newest first: versions `from, from - 1, ...` (`u64::MAX` starts at the newest).
    Backward,
}

/// Microseconds since the Unix epoch, the precision every backend keeps.
pub(crate) fn to_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_micros`].
pub(crate) fn from_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// The current time, truncated to microseconds.
pub(crate) fn now_micros() -> u64 {
    to_micros(SystemTime::now())
}
