//! The life of a stream: soft delete, hard delete (tombstone), truncation
//! and retention by count and age, one set of rules for every backend.
//!
//! Every change to a stream's life is recorded in the log itself, as one
//! event of the stream's *metadata stream* `$$<stream>` (KurrentDB's name):
//! its type says what was done (`$streamDeleted`, `$streamTombstoned`,
//! `$streamTruncated`, `$metadata`) and its payload holds the stream's whole
//! [`StreamState`] after the change, so the newest event of `$$<stream>` is
//! all a backend needs. The metadata stream's version is the *metadata
//! version* a writer of the metadata names as its expected version.
//! Appending to a `$$` stream directly is refused.
//!
//! What a reader sees is decided at read time from that state (see
//! [`StreamState::removes`]): a removed event is skipped by `read_stream`,
//! `read_all` and subscriptions, and its position is never reused. The bytes
//! stay in the log until a scavenge (see `docs/retention.md`).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::StoreError;
use crate::types::{ExpectedVersion, NewEvent, StreamId};

/// The prefix of metadata streams.
pub const METADATA_STREAM_PREFIX: &str = "$$";

/// The event type of a soft delete in a metadata stream.
pub const EVENT_STREAM_DELETED: &str = "$streamDeleted";
/// The event type of a hard delete (tombstone) in a metadata stream.
pub const EVENT_STREAM_TOMBSTONED: &str = "$streamTombstoned";
/// The event type of a truncation in a metadata stream.
pub const EVENT_STREAM_TRUNCATED: &str = "$streamTruncated";
/// The event type of new retention metadata in a metadata stream.
pub const EVENT_METADATA: &str = "$metadata";

/// Whether `stream` is a metadata stream (`$$<stream>`).
pub fn is_metadata_stream(stream: &StreamId) -> bool {
    stream.as_str().starts_with(METADATA_STREAM_PREFIX)
}

/// The metadata stream of `stream`: `$$<stream>`.
pub fn metadata_stream(stream: &StreamId) -> StreamId {
    StreamId::metadata_of(stream)
}

/// The stream a metadata stream describes, when `stream` is one.
pub fn described_stream(stream: &StreamId) -> Option<StreamId> {
    let rest = stream.as_str().strip_prefix(METADATA_STREAM_PREFIX)?;
    StreamId::new(rest).ok()
}

/// The retention a stream's administrator sets: how many of its newest
/// events and how old an event it keeps. `None` keeps everything.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StreamMetadata {
    /// Keep only the newest `max_count` events (at least 1).
    pub max_count: Option<u64>,
    /// Keep only events recorded less than `max_age` ago (whole
    /// milliseconds; at least 1 ms).
    pub max_age: Option<Duration>,
}

/// Everything the rules know of a stream's life besides its events: what
/// the newest event of its metadata stream holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StreamState {
    /// Events with a version below this are removed (0 and 1: none).
    pub truncate_before: u64,
    /// Soft-deleted: the stream reads as absent while no event was written
    /// after the delete (its last version is below `truncate_before`).
    pub deleted: bool,
    /// Hard-deleted: every event is removed and no append is accepted, ever.
    pub tombstoned: bool,
    /// The retention set with [`StreamOperation::SetMetadata`].
    pub metadata: StreamMetadata,
}

impl StreamState {
    /// Whether the stream reads as absent: tombstoned, or soft-deleted with
    /// nothing written since (`last_version` is its highest version ever).
    pub fn is_absent(&self, last_version: u64) -> bool {
        self.tombstoned || (self.deleted && last_version < self.truncate_before)
    }

    /// The version an expected version is judged against and
    /// `stream_version` reports: 0 while the stream reads as absent, its
    /// last version otherwise (versions keep counting across a delete).
    pub fn reported_version(&self, last_version: u64) -> u64 {
        if self.is_absent(last_version) { 0 } else { last_version }
    }

    /// Whether the event at `version`, recorded at `recorded_micros` (µs
    /// since the epoch), is removed from a stream whose last version is
    /// `last_version`, at time `now_micros`.
    pub fn removes(&self, version: u64, recorded_micros: u64, last_version: u64, now_micros: u64) -> bool {
        if self.tombstoned || version < self.truncate_before {
            return true;
        }
        if let Some(count) = self.metadata.max_count
            && version.saturating_add(count) <= last_version
        {
            return true;
        }
        if let Some(age) = self.metadata.max_age {
            let age = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
            if recorded_micros.saturating_add(age) < now_micros {
                return true;
            }
        }
        false
    }

    /// Whether any event of the stream may be removed (a reader needs the
    /// stream's last version only then).
    pub fn removes_any(&self) -> bool {
        self.tombstoned
            || self.truncate_before > 1
            || self.metadata.max_count.is_some()
            || self.metadata.max_age.is_some()
    }

    /// The payload of the metadata event that records this state: lines of
    /// `key=value`, readable in any dump of the log.
    pub fn encode(&self) -> Bytes {
        let mut s = format!(
            "truncate_before={}\ndeleted={}\ntombstoned={}\n",
            self.truncate_before, self.deleted, self.tombstoned
        );
        if let Some(c) = self.metadata.max_count {
            s.push_str(&format!("max_count={c}\n"));
        }
        if let Some(a) = self.metadata.max_age {
            s.push_str(&format!("max_age_ms={}\n", a.as_millis()));
        }
        Bytes::from(s)
    }

    /// Decodes [`StreamState::encode`]'s payload; the error says what is wrong.
    pub fn decode(payload: &[u8]) -> Result<StreamState, String> {
        if payload.len() > 4096 {
            return Err(format!("a stream state of {} bytes (at most 4096)", payload.len()));
        }
        let text = std::str::from_utf8(payload).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut state = StreamState::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').ok_or_else(|| format!("no `=` in {line:?}"))?;
            let number = || value.parse::<u64>().map_err(|e| format!("{key}: {e}"));
            let flag = || value.parse::<bool>().map_err(|e| format!("{key}: {e}"));
            match key {
                "truncate_before" => state.truncate_before = number()?,
                "deleted" => state.deleted = flag()?,
                "tombstoned" => state.tombstoned = flag()?,
                "max_count" => state.metadata.max_count = Some(number()?),
                "max_age_ms" => state.metadata.max_age = Some(Duration::from_millis(number()?)),
                // Keys of a later version are ignored: they only add retention.
                _ => {}
            }
        }
        Ok(state)
    }
}

/// How a stream is deleted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DeleteMode {
    /// The stream reads as absent until it is written again; a new write
    /// goes on from the old version (KurrentDB's soft delete).
    Soft,
    /// The stream is removed and can never be written again
    /// ([`StoreError::StreamDeleted`]).
    Hard,
}

/// A change to a stream's life, judged like an append: against an
/// expected version, all or nothing, recorded in the log.
///
/// Non-exhaustive: operations may be added, so a `match` outside this
/// crate needs an arm for the others (a wrapper store passes an operation
/// on whole, to [`crate::EventStore::modify_stream`]):
///
/// ```
/// use strata_store::StreamOperation;
/// fn what(op: &StreamOperation) -> &'static str {
///     match op {
///         StreamOperation::Delete { .. } => "delete",
///         StreamOperation::Truncate { .. } | StreamOperation::TruncateForRetention { .. } => "truncate",
///         StreamOperation::SetMetadata { .. } => "retention",
///         _ => "another",
///     }
/// }
/// ```
///
/// Without that arm it does not compile:
///
/// ```compile_fail,E0004
/// use strata_store::StreamOperation;
/// fn what(op: &StreamOperation) -> &'static str {
///     match op {
///         StreamOperation::Delete { .. } => "delete",
///         StreamOperation::Truncate { .. } | StreamOperation::TruncateForRetention { .. } => "truncate",
///         StreamOperation::SetMetadata { .. } => "retention",
///     }
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StreamOperation {
    /// Deletes the stream; `expected` is judged against its version.
    Delete {
        /// The stream.
        stream: StreamId,
        /// The stream version the delete was decided on.
        expected: ExpectedVersion,
        /// Soft or hard.
        mode: DeleteMode,
    },
    /// Removes the events below version `before`; the version keeps
    /// counting. `expected` is judged against the stream's version.
    Truncate {
        /// The stream.
        stream: StreamId,
        /// The stream version the truncation was decided on.
        expected: ExpectedVersion,
        /// The first version kept: 1..=version + 1.
        before: u64,
    },
    /// Sets the stream's retention; `expected` is judged against the
    /// *metadata version* (the version of `$$<stream>`).
    SetMetadata {
        /// The stream.
        stream: StreamId,
        /// The metadata version the change was decided on.
        expected: ExpectedVersion,
        /// The new retention (it replaces the old one).
        metadata: StreamMetadata,
    },
    /// Makes a retention permanent (what a scavenge does first): removes
    /// the events below version `before`, like [`StreamOperation::Truncate`],
    /// but judged against the *metadata version* the retention was read at,
    /// so an administrator's metadata change made since wins and the
    /// truncation is refused ([`StoreError::WrongExpectedVersion`] on
    /// `$$<stream>`). Appends to the stream meanwhile do not refuse it.
    TruncateForRetention {
        /// The stream.
        stream: StreamId,
        /// The metadata version the retention was read at.
        metadata_expected: ExpectedVersion,
        /// The first version kept: 1..=version + 1.
        before: u64,
    },
}

impl StreamOperation {
    /// The stream the operation changes.
    pub fn stream(&self) -> &StreamId {
        match self {
            StreamOperation::Delete { stream, .. }
            | StreamOperation::Truncate { stream, .. }
            | StreamOperation::SetMetadata { stream, .. }
            | StreamOperation::TruncateForRetention { stream, .. } => stream,
        }
    }
}

impl fmt::Display for StreamOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamOperation::Delete { stream, mode, .. } => write!(f, "{mode:?} delete of {stream}"),
            StreamOperation::Truncate { stream, before, .. }
            | StreamOperation::TruncateForRetention { stream, before, .. } => {
                write!(f, "truncation of {stream} before {before}")
            }
            StreamOperation::SetMetadata { stream, .. } => write!(f, "metadata of {stream}"),
        }
    }
}

/// What a [`StreamOperation`] did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StreamOperationResult {
    /// The global position of the metadata event that records it (wait for
    /// a projection to reach it to read your own delete).
    pub position: u64,
    /// The metadata version after it.
    pub metadata_version: u64,
}

/// A stream as the rules see it ([`crate::EventStore::stream_info`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StreamInfo {
    /// Its version as expected versions are judged (0 while it reads as absent).
    pub version: u64,
    /// The version of its metadata stream (0 when nothing was ever set).
    pub metadata_version: u64,
    /// Its state after the newest metadata event.
    pub state: StreamState,
}

/// What a metadata event to write looks like: one event of `$$<stream>`.
pub(crate) fn state_event(event_type: &str, state: &StreamState) -> NewEvent {
    NewEvent::new(event_type, state.encode())
}

/// Checks a retention before it is written.
/// The largest `max_count` a stream's metadata may set (2^53: exact in
/// every JSON reader, and far from overflowing a version sum in SQL).
pub const MAX_RETENTION_COUNT: u64 = 1 << 53;
/// The largest `max_age` a stream's metadata may set, in milliseconds
/// (1,000 years of 365.25 days: within PostgreSQL's interval range).
pub const MAX_RETENTION_AGE_MS: u64 = 31_557_600_000_000;

pub(crate) fn check_metadata(stream: &StreamId, metadata: &StreamMetadata) -> Result<(), StoreError> {
    let reason = if metadata.max_count == Some(0) {
        Some("max_count must be at least 1 (delete the stream to remove every event)")
    } else if metadata.max_count.is_some_and(|n| n > MAX_RETENTION_COUNT) {
        Some("max_count must be at most 2^53")
    } else if metadata.max_age.is_some_and(|a| a.as_millis() == 0) {
        Some("max_age must be at least 1 ms")
    } else if metadata
        .max_age
        .is_some_and(|a| a.as_millis() > u128::from(MAX_RETENTION_AGE_MS))
    {
        Some("max_age must be at most 1,000 years")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidStreamOperation {
            stream: stream.clone(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_ignores_unknown_keys() {
        let s = StreamState {
            truncate_before: 7,
            deleted: true,
            tombstoned: false,
            metadata: StreamMetadata {
                max_count: Some(3),
                max_age: Some(Duration::from_millis(1500)),
            },
        };
        assert_eq!(StreamState::decode(&s.encode()).unwrap(), s);
        let mut more = s.encode().to_vec();
        more.extend_from_slice(b"later_key=1\n");
        assert_eq!(StreamState::decode(&more).unwrap(), s);
        assert!(StreamState::decode(b"truncate_before=x").is_err());
        assert!(StreamState::decode(&[0xff]).is_err());
        assert!(StreamState::decode(&vec![b'a'; 5000]).is_err());
    }

    #[test]
    fn removal_rules() {
        let mut s = StreamState::default();
        assert!(!s.removes(1, 0, 1, 10) && !s.removes_any());
        s.truncate_before = 3;
        assert!(s.removes(2, 0, 5, 0) && !s.removes(3, 0, 5, 0));
        s.metadata.max_count = Some(2);
        assert!(s.removes(3, 0, 5, 0) && !s.removes(4, 0, 5, 0));
        s.metadata.max_age = Some(Duration::from_millis(1));
        assert!(s.removes(5, 0, 5, 1001) && !s.removes(5, 0, 5, 1000));
        s.deleted = true;
        assert!(!s.is_absent(5) && s.is_absent(2));
        assert_eq!((s.reported_version(2), s.reported_version(5)), (0, 5));
        s.tombstoned = true;
        assert!(s.removes(5, 0, 5, 0) && s.is_absent(5));
    }
}
