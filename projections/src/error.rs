//! The one error type of the projections.

use std::time::Duration;

use strata_aggregates::CodecError;
use strata_store::{Classify, ErrorKind, EventId, StoreError, StreamId};

/// Everything that can go wrong while projecting the log into read models.
///
/// Each variant carries what a caller needs to act on it; "Handling" says
/// how, and [`ProjectionError::kind`] what kind of failure it is (each
/// variant's doc names its kind). A projection never
/// commits part of a failed batch: the read model and its checkpoint stay as
/// they were after the last event that applied cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A projection's `apply` failed on the event at `position`; the runner
    /// stopped there. Every event before it is applied and checkpointed
    /// (the checkpoint is `position - 1`), nothing after it is.
    ///
    /// Handling: fix the cause (`source` says what it is: an undecodable
    /// payload, an event the model cannot take) and start the runner again;
    /// it resumes at `position`. Kind: the kind of `source`.
    #[error("projection {projection} failed at position {position} ({stream} {event_type}): {source}")]
    Apply {
        /// The projection's name.
        projection: String,
        /// The position of the event that failed.
        position: u64,
        /// Its stream.
        stream: StreamId,
        /// Its type.
        event_type: String,
        /// Why `apply` failed.
        #[source]
        source: Box<ProjectionError>,
    },

    /// An event's payload does not decode as the domain event its stream
    /// holds. Returned by `apply`; the runner wraps it in [`ProjectionError::Apply`].
    ///
    /// Handling: the log holds an event this code does not understand; add
    /// an upcaster or run the code that wrote it. Kind: the codec's
    /// ([`CodecError::kind`]).
    #[error("cannot decode {event_type} of stream {stream}: {source}")]
    Decode {
        /// The event's stream.
        stream: StreamId,
        /// The event's type.
        event_type: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// An event that contradicts the read model (an order paid before it was
    /// placed, more stock released than was reserved). Returned by `apply`;
    /// the runner wraps it in [`ProjectionError::Apply`].
    ///
    /// Handling: the log disagrees with the projection's rules; fix the
    /// projection (or the writer that broke the domain's rules) and restart.
    /// Kind: [`ErrorKind::Internal`] (a bug on one side or the other).
    #[error("event {event_type} of stream {stream} does not fit the read model: {reason}")]
    Inconsistent {
        /// The event's stream.
        stream: StreamId,
        /// The event's type.
        event_type: String,
        /// What does not fit.
        reason: String,
    },

    /// Reading the log failed.
    ///
    /// Handling: see [`StoreError`]; restart the runner once the store is
    /// available again. Kind: the store error's.
    #[error("projection {projection} could not read the log: {source}")]
    Store {
        /// The projection's name.
        projection: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },

    /// The read model's storage (sled) failed.
    ///
    /// Handling: check the disk. Kind: [`ErrorKind::Internal`].
    #[error("read model {projection}: storage error: {source}")]
    Storage {
        /// The projection's name.
        projection: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },

    /// The read model's PostgreSQL storage failed (feature `postgres`):
    /// `source` is [`StoreError::Unavailable`] when the database could not
    /// be reached or the connection was lost, `StoreError::Postgres` when
    /// the server refused a statement.
    ///
    /// Handling: a runner that meets it while committing stops (nothing of
    /// the batch is applied, or all of it with its checkpoint: the next
    /// start resumes after whichever it was); restart it once the database
    /// is back. Kind: the store error's ([`ErrorKind::Unavailable`] when
    /// the database cannot be reached).
    #[error("read model {projection}: database error: {source}")]
    Database {
        /// The projection's name.
        projection: String,
        /// What the database said, classified as the store classifies it.
        #[source]
        source: StoreError,
    },

    /// A stored read-model value does not decode.
    ///
    /// Handling: the read model is damaged; rebuild it. Kind: [`ErrorKind::Corrupt`].
    #[error("read model {projection}: corrupt value at {key}: {detail}")]
    Corrupt {
        /// The projection's name.
        projection: String,
        /// The key, printed lossily.
        key: String,
        /// What is wrong.
        detail: String,
    },

    /// The checkpoint is beyond the newest event of the log. This happens
    /// when the log lost acknowledged appends that the read model had
    /// already seen (a store opened with a non-durable mode after a crash),
    /// or when the read model belongs to another log. Following the log from
    /// there would silently skip the events that will be written at
    /// `head + 1 ..= checkpoint`, so the runner refuses to start.
    ///
    /// Handling: rebuild the read model from the log (`rebuild`), which
    /// makes it match the log as it is now. Kind: [`ErrorKind::Corrupt`]
    /// (the read model holds what the log does not).
    #[error("projection {projection}: checkpoint {checkpoint} is beyond the log's head {head}; rebuild the read model")]
    CheckpointAhead {
        /// The projection's name.
        projection: String,
        /// The read model's checkpoint.
        checkpoint: u64,
        /// The log's head position.
        head: u64,
    },

    /// The event the log holds at the checkpoint's position is not the one
    /// the read model applied there. This happens when a store lost
    /// acknowledged appends the read model had seen (a non-durable mode
    /// after a crash) and new appends have since passed the old checkpoint,
    /// or when the read model belongs to another log: the model holds
    /// events that are no longer in the log, and following on would mix
    /// two histories. Checked when a runner starts.
    ///
    /// Handling: rebuild the read model from the log (`rebuild`), which
    /// makes it match the log as it is now. Kind: [`ErrorKind::Corrupt`].
    #[error("projection {projection}: the log's event at checkpoint {checkpoint} is {}, the read model applied {expected}; rebuild the read model", found.map(|f| f.to_string()).unwrap_or_else(|| "missing".into()))]
    CheckpointMismatch {
        /// The projection's name.
        projection: String,
        /// The read model's checkpoint.
        checkpoint: u64,
        /// The id of the event the read model applied at the checkpoint.
        expected: EventId,
        /// The id of the event the log holds there (`None`: no event).
        found: Option<EventId>,
    },

    /// The read model was written by another version of its projection
    /// (see [`Projection::model_version`](crate::Projection::model_version)):
    /// its keys are not the ones this projection writes and reads (an
    /// index may be missing), so following the log into it, or answering a
    /// query that needs what it lacks, would give wrong answers. `stored`
    /// is 0 for a model written before strata recorded versions.
    ///
    /// Handling: rebuild the read model (`rebuild`);
    /// [`Projections::start`](crate::Projections::start) rebuilds such
    /// models before it starts their runners. Kind:
    /// [`ErrorKind::Incompatible`].
    #[error(
        "read model {projection} was written by model version {stored}, this projection is version {expected}; rebuild the read model"
    )]
    ModelVersionMismatch {
        /// The projection's name.
        projection: String,
        /// The model version recorded with the read model.
        stored: u64,
        /// The model version of the projection (or reader) that refused it.
        expected: u64,
    },

    /// A paging cursor (the `after` of a page) that does not have the form
    /// the read model's pages use.
    ///
    /// Handling: pass the `next` of the previous page unchanged. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("invalid cursor {cursor:?}: expected {expected}")]
    InvalidCursor {
        /// The cursor given.
        cursor: String,
        /// The form it should have.
        expected: &'static str,
    },

    /// The log delivered an event out of order (a gap or a repeat). The
    /// store's contract rules this out; the runner stops rather than apply it.
    ///
    /// Handling: report a bug in the store backend; restart the runner.
    /// Kind: [`ErrorKind::Internal`].
    #[error("projection {projection}: expected position {expected} or later, the log delivered {got}")]
    OutOfOrder {
        /// The projection's name.
        projection: String,
        /// The lowest position that may come next (positions skipped
        /// between are removed events).
        expected: u64,
        /// The position that came.
        got: u64,
    },

    /// `wait_for` gave up: the projection had not applied `position` within
    /// `timeout`.
    ///
    /// Handling: the read is not yet up to date; retry, or answer with the
    /// stale model and say so. Kind: [`ErrorKind::Unavailable`].
    #[error("projection {projection} has applied up to {applied}, not {position}, after {timeout:?}")]
    Timeout {
        /// The projection's name.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position applied when the wait ended.
        applied: u64,
        /// How long it waited.
        timeout: Duration,
    },

    /// `wait_for` cannot succeed: the runner is not running (never started,
    /// stopped, or failed) and the position is not applied.
    ///
    /// Handling: start the runner; when `failure` is set, it failed with
    /// that error (see the runner's own result for the typed error). Kind:
    /// [`ErrorKind::Unavailable`].
    #[error("projection {projection} is not running (applied up to {applied}, waiting for {position}){}", failure.as_ref().map(|f| format!(": it failed: {f}")).unwrap_or_default())]
    NotRunning {
        /// The projection's name.
        projection: String,
        /// The position waited for.
        position: u64,
        /// The position applied.
        applied: u64,
        /// The failure that stopped the runner, if it failed.
        failure: Option<String>,
    },

    /// A runner for this read model is already running.
    ///
    /// Handling: stop it first, or use its handle. Kind: [`ErrorKind::Conflict`].
    #[error("projection {projection} is already running")]
    AlreadyRunning {
        /// The projection's name.
        projection: String,
    },

    /// A projection name that cannot name sled trees: it must be 1..=64
    /// ASCII letters, digits, `_` or `-`.
    ///
    /// Handling: choose another name. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid projection name {name:?}: use 1..=64 ASCII letters, digits, '_' or '-'")]
    InvalidName {
        /// The name given.
        name: String,
    },

    /// The same read model named twice in one `rebuild_all`.
    ///
    /// Handling: name each model once. Kind: [`ErrorKind::InvalidInput`].
    #[error("read model {projection} is named twice in one rebuild")]
    DuplicateModel {
        /// The model's name.
        projection: String,
    },

    /// A read model was opened for a projection of another name.
    ///
    /// Handling: pass the model store opened under the projection's name.
    /// Kind: [`ErrorKind::InvalidInput`].
    #[error("read model {model} cannot hold projection {projection}")]
    NameMismatch {
        /// The read model's name.
        model: String,
        /// The projection's name.
        projection: String,
    },
}

impl ProjectionError {
    /// What kind of failure this is (each variant's doc names its kind;
    /// the wrappers `Apply`, `Decode`, `Store` and `Database` take their
    /// source's).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProjectionError::Apply { source, .. } => source.kind(),
            ProjectionError::Decode { source, .. } => source.kind(),
            ProjectionError::Store { source, .. } | ProjectionError::Database { source, .. } => source.kind(),
            ProjectionError::Inconsistent { .. }
            | ProjectionError::Storage { .. }
            | ProjectionError::OutOfOrder { .. } => ErrorKind::Internal,
            ProjectionError::Corrupt { .. }
            | ProjectionError::CheckpointAhead { .. }
            | ProjectionError::CheckpointMismatch { .. } => ErrorKind::Corrupt,
            ProjectionError::ModelVersionMismatch { .. } => ErrorKind::Incompatible,
            ProjectionError::InvalidCursor { .. }
            | ProjectionError::InvalidName { .. }
            | ProjectionError::DuplicateModel { .. }
            | ProjectionError::NameMismatch { .. } => ErrorKind::InvalidInput,
            ProjectionError::Timeout { .. } | ProjectionError::NotRunning { .. } => ErrorKind::Unavailable,
            ProjectionError::AlreadyRunning { .. } => ErrorKind::Conflict,
        }
    }

    pub(crate) fn storage(projection: &str, source: sled::Error) -> ProjectionError {
        ProjectionError::Storage {
            projection: projection.to_string(),
            source,
        }
    }

    pub(crate) fn store(projection: &str, source: StoreError) -> ProjectionError {
        ProjectionError::Store {
            projection: projection.to_string(),
            source,
        }
    }
}

impl Classify for ProjectionError {
    fn kind(&self) -> ErrorKind {
        ProjectionError::kind(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_says_its_kind() {
        use ErrorKind::*;
        let kinds: Vec<_> = ProjectionError::examples()
            .into_iter()
            .map(|e| (e.variant, e.error.kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Apply", Corrupt),
                ("Decode", Corrupt),
                ("Inconsistent", Internal),
                ("Store", Unavailable),
                ("Storage", Internal),
                ("Database", Unavailable),
                ("Corrupt", Corrupt),
                ("CheckpointAhead", Corrupt),
                ("CheckpointMismatch", Corrupt),
                ("ModelVersionMismatch", Incompatible),
                ("InvalidCursor", InvalidInput),
                ("OutOfOrder", Internal),
                ("Timeout", Unavailable),
                ("NotRunning", Unavailable),
                ("AlreadyRunning", Conflict),
                ("InvalidName", InvalidInput),
                ("DuplicateModel", InvalidInput),
                ("NameMismatch", InvalidInput),
            ]
        );
    }
}
