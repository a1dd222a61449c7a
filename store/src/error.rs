//! The one error type of the log.

use std::path::PathBuf;

use crate::kind::{Classify, ErrorKind};
use crate::types::{EventId, ExpectedVersion, StreamId};

/// Everything that can go wrong in the log.
///
/// Each variant carries what a caller needs to act on it; "Handling" says how,
/// and [`StoreError::kind`] what kind of failure it is (each variant's kind
/// is named in its doc). No variant writes anything: an append that fails
/// leaves the log as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream moved on since the caller read it, or a retry's event ids
    /// only partly match what the stream holds.
    ///
    /// Handling: re-read the stream (its version is `actual`), decide again,
    /// and append with the new version; or report the conflict. Kind:
    /// [`ErrorKind::Conflict`].
    #[error("wrong expected version for stream {stream}: expected {expected}, actual {actual}")]
    WrongExpectedVersion {
        /// The stream whose version did not match.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was judged.
        actual: u64,
    },

    /// An append to, or a change of, a stream that was hard-deleted
    /// (tombstoned): it can never be written again.
    ///
    /// Handling: the stream is gone for good; write to another stream.
    /// Kind: [`ErrorKind::Gone`] (HTTP 410).
    #[error("stream {stream} was deleted for good (tombstoned) and cannot be written again")]
    StreamDeleted {
        /// The tombstoned stream.
        stream: StreamId,
    },

    /// A stream operation (delete, truncate, metadata) that breaks a rule:
    /// a truncation past the stream's version, a retention of zero events,
    /// an operation on a `$$` metadata stream.
    ///
    /// Handling: bad input, fix the request; nothing was written. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("invalid operation on stream {stream}: {reason}")]
    InvalidStreamOperation {
        /// The stream named.
        stream: StreamId,
        /// What rule it breaks.
        reason: String,
    },

    /// A string is not a valid stream id.
    ///
    /// Handling: bad input, fix the id. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid stream id {stream:?}: {reason}")]
    InvalidStreamId {
        /// The offending id (its first 64 characters, control characters removed).
        stream: String,
        /// What rule it breaks.
        reason: &'static str,
    },

    /// A filter of a read or subscription that breaks a rule of
    /// [`crate::EventFilter`] (an empty or overlong term, a category with
    /// `-`, too many terms).
    ///
    /// Handling: bad input, fix the filter; nothing was read. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("invalid filter: {reason}")]
    InvalidFilter {
        /// Which term breaks which rule.
        reason: String,
    },

    /// An append with no events.
    ///
    /// Handling: bad input; nothing was written. Kind: [`ErrorKind::InvalidInput`].
    #[error("append to stream {stream} has no events")]
    EmptyAppend {
        /// The stream of the empty append.
        stream: StreamId,
    },

    /// An append with more events than [`crate::Limits::max_events_per_append`].
    ///
    /// Handling: split the append, or raise the limit. Kind: [`ErrorKind::TooLarge`].
    #[error("append to stream {stream} has {count} events, more than the limit of {limit}")]
    TooManyEvents {
        /// The stream of the append.
        stream: StreamId,
        /// How many events it had.
        count: usize,
        /// The configured limit.
        limit: usize,
    },

    /// An append (all its streams) whose payloads and metadata add up to more
    /// than [`crate::Limits::max_append_bytes`].
    ///
    /// Handling: split the append, or raise the limit. Kind: [`ErrorKind::TooLarge`].
    #[error("append of {size} bytes exceeds the limit of {limit} bytes")]
    AppendTooLarge {
        /// Payload and metadata bytes in the append.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// An event payload larger than [`crate::Limits::max_payload_bytes`].
    ///
    /// Handling: store less in the event, or raise the limit. Kind: [`ErrorKind::TooLarge`].
    #[error("event {event_id} for stream {stream} has a payload of {size} bytes, more than the limit of {limit}")]
    PayloadTooLarge {
        /// The stream of the append.
        stream: StreamId,
        /// The event's id.
        event_id: EventId,
        /// Its payload size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// Event metadata larger than [`crate::Limits::max_metadata_bytes`].
    ///
    /// Handling: carry less metadata, or raise the limit. Kind: [`ErrorKind::TooLarge`].
    #[error("event {event_id} for stream {stream} has {size} bytes of metadata, more than the limit of {limit}")]
    MetadataTooLarge {
        /// The stream of the append.
        stream: StreamId,
        /// The event's id.
        event_id: EventId,
        /// The metadata's size as counted by [`crate::Metadata::size`].
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// An event type that is empty, holds control characters, or is longer
    /// than [`crate::Limits::max_event_type_bytes`].
    ///
    /// Handling: bad input, fix the type name. Kind: [`ErrorKind::InvalidInput`].
    #[error("event {event_id} for stream {stream} has an invalid event type: {reason}")]
    InvalidEventType {
        /// The stream of the append.
        stream: StreamId,
        /// The event's id.
        event_id: EventId,
        /// What rule it breaks.
        reason: String,
    },

    /// An event id used twice in one append, or an id the stream already holds
    /// at another place than the append's expected version points to.
    ///
    /// Handling: give each new event a fresh id; to retry an append, reuse its
    /// ids with the same expected version. Kind: [`ErrorKind::Conflict`].
    #[error("event id {event_id} is already used in stream {stream}{}", existing_version.map(|v| format!(" at version {v}")).unwrap_or_else(|| " by another event of the append".into()))]
    DuplicateEventId {
        /// The stream.
        stream: StreamId,
        /// The repeated id.
        event_id: EventId,
        /// The version that holds it, or `None` when it repeats within the append.
        existing_version: Option<u64>,
    },

    /// The same stream named twice in one `append_multi`.
    ///
    /// Handling: merge the two parts into one. Kind: [`ErrorKind::InvalidInput`].
    #[error("stream {stream} appears more than once in one multi-stream append")]
    DuplicateStream {
        /// The repeated stream.
        stream: StreamId,
    },

    /// A stored record failed its checksum or could not be decoded. It is
    /// never served as an event.
    ///
    /// Handling: the data on disk is damaged; restore from a backup. Kind:
    /// [`ErrorKind::Corrupt`].
    #[error("corrupt record ({location}): {detail}")]
    Corrupt {
        /// Which record, e.g. `event at position 42`.
        location: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Another process (or another open store in this one) owns the directory.
    ///
    /// Handling: stop the other owner, or use another directory. Kind:
    /// [`ErrorKind::Misconfigured`].
    #[error("the store at {} is already open in another process or handle", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },

    /// The directory holds data of a format this version cannot read.
    ///
    /// Handling: open it with the strata version that wrote it. Kind:
    /// [`ErrorKind::Incompatible`].
    #[error("the store at {} has format {found:?}, this build reads {expected:?}", path.display())]
    IncompatibleFormat {
        /// The directory.
        path: PathBuf,
        /// The format found.
        found: String,
        /// The format this build writes.
        expected: String,
    },

    /// The directory holds data in a layout this build does not open (see
    /// [`DataLayout`](crate::DataLayout)): nothing in it was changed.
    ///
    /// Handling: keep the directory with the strata version that wrote it,
    /// or open a new directory with this one (the events can be carried
    /// over by reading them with the old version and appending them with
    /// this one). Kind: [`ErrorKind::Incompatible`].
    #[error("the directory {} is in {layout}, which this build does not open (it reads only the segment log's layout: log/, index/, tables/)", path.display())]
    UnsupportedLayout {
        /// The directory.
        path: PathBuf,
        /// The layout found.
        layout: crate::DataLayout,
    },

    /// Configured limits that make no sense (zero, or above what the codec decodes).
    ///
    /// Handling: fix the configuration. Kind: [`ErrorKind::Misconfigured`].
    #[error("invalid limits: {reason}")]
    InvalidLimits {
        /// What is wrong.
        reason: String,
    },

    /// The store can no longer accept appends: it was closed, or a write or
    /// flush failed, after which the outcome of in-flight appends is unknown
    /// until the store is reopened (reopening recovers what is on disk). On
    /// PostgreSQL: the database could not be reached, or the connection was
    /// lost; `reason` says whether the append may have committed (it is then
    /// wholly in the log or wholly absent).
    ///
    /// Handling: reopen the store (embedded) or try again (PostgreSQL); retry
    /// appends with the same event ids, which are answered idempotently if
    /// they did land. Kind: [`ErrorKind::Unavailable`].
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },

    /// An I/O error: the segment files, the lock file, an fsync of sled's files.
    ///
    /// Handling: check the disk. Kind: [`ErrorKind::Internal`].
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    /// An error from sled.
    ///
    /// Handling: check the disk. Kind: [`ErrorKind::Internal`] (sled's
    /// own corruption reports become [`StoreError::Corrupt`]).
    #[error("sled error: {0}")]
    Sled(#[source] sled::Error),

    /// PostgreSQL refused a statement (a lost connection is
    /// [`StoreError::Unavailable`] instead). Nothing was written: an append
    /// transaction that fails this way is rolled back.
    ///
    /// Handling: look at `source` (its SQLSTATE, e.g. a missing privilege or
    /// a full disk); retrying with the same event ids is safe. Kind:
    /// [`ErrorKind::Internal`].
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL error while {context}: {}", describe_postgres(source))]
    Postgres {
        /// What the store was doing.
        context: String,
        /// The driver's error (shared: one failed transaction answers every
        /// append of its group).
        #[source]
        source: std::sync::Arc<tokio_postgres::Error>,
    },

    /// The PostgreSQL schema was migrated by a newer strata than this one.
    ///
    /// Handling: run the strata version that migrated it, or use another
    /// schema. Kind: [`ErrorKind::Incompatible`].
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL schema {schema} is at migration {found}; this build knows migrations up to {supported}")]
    IncompatibleSchema {
        /// The schema.
        schema: String,
        /// The newest migration applied to it.
        found: i32,
        /// The newest migration this build knows.
        supported: i32,
    },

    /// A number too large for the column that would store it (PostgreSQL's
    /// `bigint` holds at most `i64::MAX`). Positions, versions and counts
    /// never come near it; nothing was written.
    ///
    /// Handling: a bug or damaged data upstream. Kind:
    /// [`ErrorKind::Internal`].
    #[error("{what} {value} is out of range: the most that can be stored is {max}")]
    OutOfRange {
        /// What the number is, e.g. `event position`.
        what: String,
        /// The number.
        value: u64,
        /// The largest that fits.
        max: u64,
    },

    /// A table name that [`crate::LocalTables`] refuses: empty, or one of
    /// reserved for strata (`strata-*`) or sled's (`__sled__*`).
    ///
    /// Handling: a programming error; pick another name. Kind:
    /// [`ErrorKind::Internal`].
    #[error("invalid table name {name:?}: {reason}")]
    InvalidTableName {
        /// The name asked for.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl StoreError {
    /// Whether this is a [`StoreError::WrongExpectedVersion`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }

    /// Whether the caller's input is at fault: the kind is
    /// [`ErrorKind::InvalidInput`] or [`ErrorKind::TooLarge`].
    pub fn is_invalid_input(&self) -> bool {
        matches!(self.kind(), ErrorKind::InvalidInput | ErrorKind::TooLarge)
    }

    /// What kind of failure this is (each variant's doc names its kind).
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::WrongExpectedVersion { .. } | StoreError::DuplicateEventId { .. } => ErrorKind::Conflict,
            StoreError::InvalidStreamId { .. }
            | StoreError::EmptyAppend { .. }
            | StoreError::InvalidFilter { .. }
            | StoreError::InvalidStreamOperation { .. }
            | StoreError::InvalidEventType { .. }
            | StoreError::DuplicateStream { .. } => ErrorKind::InvalidInput,
            StoreError::TooManyEvents { .. }
            | StoreError::AppendTooLarge { .. }
            | StoreError::PayloadTooLarge { .. }
            | StoreError::MetadataTooLarge { .. } => ErrorKind::TooLarge,
            StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            StoreError::StreamDeleted { .. } => ErrorKind::Gone,
            StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::IncompatibleFormat { .. } | StoreError::UnsupportedLayout { .. } => ErrorKind::Incompatible,
            StoreError::Locked { .. } | StoreError::InvalidLimits { .. } => ErrorKind::Misconfigured,
            StoreError::Io { .. }
            | StoreError::Sled(_)
            | StoreError::OutOfRange { .. }
            | StoreError::InvalidTableName { .. } => ErrorKind::Internal,
            #[cfg(feature = "postgres")]
            StoreError::Postgres { .. } => ErrorKind::Internal,
            #[cfg(feature = "postgres")]
            StoreError::IncompatibleSchema { .. } => ErrorKind::Incompatible,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        StoreError::kind(self)
    }
}

/// An error of the PostgreSQL driver with what the server said, when it
/// said something (the driver's own `Display` is only "db error"). Shown
/// in [`StoreError::Postgres`]'s message; `strata_store::pg::describe`.
#[cfg(feature = "postgres")]
pub fn describe_postgres(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(" ({detail})"));
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                location: format!("sled page at {at:?}"),
                detail: "sled reported corruption".into(),
            },
            other => StoreError::Sled(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_an_example_and_a_kind() {
        let examples = StoreError::examples();
        let kinds: Vec<_> = examples.iter().map(|e| (e.variant, e.error.kind())).collect();
        assert!(kinds.contains(&("WrongExpectedVersion", ErrorKind::Conflict)));
        assert!(kinds.contains(&("DuplicateEventId", ErrorKind::Conflict)));
        assert!(kinds.contains(&("PayloadTooLarge", ErrorKind::TooLarge)));
        assert!(kinds.contains(&("Unavailable", ErrorKind::Unavailable)));
        assert!(kinds.contains(&("Corrupt", ErrorKind::Corrupt)));
        for e in &examples {
            assert_eq!(Classify::kind(&e.error), e.error.kind(), "{}", e.variant);
            assert_eq!(
                e.error.is_invalid_input(),
                matches!(e.error.kind(), ErrorKind::InvalidInput | ErrorKind::TooLarge)
            );
        }
    }

    #[test]
    fn limits_are_too_large_and_bad_input_invalid() {
        let s = StreamId::new("s").unwrap();
        let id = EventId::new();
        let too_big = StoreError::PayloadTooLarge {
            stream: s.clone(),
            event_id: id,
            size: 2,
            limit: 1,
        };
        assert_eq!(too_big.kind(), ErrorKind::TooLarge);
        assert!(too_big.is_invalid_input());
        assert_eq!(
            StoreError::EmptyAppend { stream: s.clone() }.kind(),
            ErrorKind::InvalidInput
        );
        let conflict = StoreError::WrongExpectedVersion {
            stream: s,
            expected: ExpectedVersion::NoStream,
            actual: 1,
        };
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        assert!(conflict.is_conflict() && !conflict.is_invalid_input());
        assert_eq!(
            StoreError::Unavailable { reason: "x".into() }.kind(),
            ErrorKind::Unavailable
        );
    }
}
