//! What a repository returns when a command does not land.

use std::fmt;
use std::time::SystemTime;

use strata_store::{Classify, ErrorKind, EventId, RecordedEvent, StoreError, StreamId};

use crate::aggregate::Aggregate;
use crate::codec::{CodecError, DomainEvent, decode};

/// A decoded event with where the log holds it.
#[derive(Clone, PartialEq, Debug)]
pub struct EventEnvelope<E> {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in the stream (1 for the first event).
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// The id it was appended with.
    pub id: EventId,
    /// The stored type name.
    pub event_type: String,
    /// When the store committed it.
    pub recorded_at: SystemTime,
    /// The event, upcast to its current shape.
    pub event: E,
}

impl<E: DomainEvent> EventEnvelope<E> {
    /// Decodes a recorded event (upcasting older shapes).
    pub fn decode(recorded: &RecordedEvent) -> Result<EventEnvelope<E>, CodecError> {
        Ok(EventEnvelope {
            stream_id: recorded.stream_id.clone(),
            version: recorded.version,
            position: recorded.position,
            id: recorded.id,
            event_type: recorded.event_type.clone(),
            recorded_at: recorded.recorded_at,
            event: decode(recorded)?,
        })
    }
}

/// A write decided on a version the stream has moved past: what the caller
/// needs to show a diff, merge, or decide again.
#[derive(Clone)]
pub struct Conflict<A: Aggregate> {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The version the command was decided on (the caller's `If-Match`, or
    /// the version the last retry read).
    pub expected: u64,
    /// The stream's version now.
    pub current: u64,
    /// The aggregate's state at `current`.
    pub state: A,
    /// The events after `expected` up to `current`, oldest first (at most
    /// the repository's `conflict_event_limit`; see `events_since_complete`).
    pub events_since: Vec<EventEnvelope<A::Event>>,
    /// Whether `events_since` holds every event after `expected`.
    pub events_since_complete: bool,
    /// How many attempts were made (1 when the caller named the version).
    pub attempts: u32,
}

impl<A: Aggregate> fmt::Debug for Conflict<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conflict")
            .field("stream", &self.stream)
            .field("expected", &self.expected)
            .field("current", &self.current)
            .field("events_since", &self.events_since)
            .field("events_since_complete", &self.events_since_complete)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Why [`Repository::execute`](crate::Repository::execute) or
/// [`Repository::load`](crate::Repository::load) did not succeed. Nothing was
/// appended in any case.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<A: Aggregate> {
    /// The stream moved past the version the command was decided on: the
    /// caller's version was stale, or every retry lost its race.
    ///
    /// Handling: show the caller the current state and the events since its
    /// version so it can re-read, merge and retry, naming `current`. When
    /// the repository was retrying (`expected: None`), the stream is hot:
    /// retry later. Kind: [`ErrorKind::Conflict`].
    #[error(
        "conflict on stream {}: decided on version {}, the stream is at {} (after {} attempts)",
        .0.stream, .0.expected, .0.current, .0.attempts
    )]
    Conflict(Box<Conflict<A>>),

    /// The aggregate refused the command: its own typed error.
    ///
    /// Handling: as the domain error says. Kind: the domain error's
    /// (strata's domain errors implement [`Classify`]: a state conflict is
    /// [`ErrorKind::Conflict`], invalid input [`ErrorKind::InvalidInput`]).
    #[error(transparent)]
    Rejected(A::Error),

    /// A stored event of the stream cannot be decoded (or upcast).
    ///
    /// Handling: the stream holds data this code does not understand; deploy
    /// an upcaster or the version that wrote it. Kind: the codec's
    /// ([`CodecError::kind`]).
    #[error("cannot decode event {version} of stream {stream}: {source}")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version in the stream.
        version: u64,
        /// What failed.
        #[source]
        source: CodecError,
    },

    /// An event the command produced cannot be encoded.
    ///
    /// Handling: a bug in the event type. Kind: [`ErrorKind::Internal`].
    #[error("cannot encode an event for stream {stream}: {source}")]
    Encode {
        /// The stream.
        stream: StreamId,
        /// What failed.
        #[source]
        source: CodecError,
    },

    /// The command names an aggregate id ([`Aggregate::command_id`]) other
    /// than the one it was sent to.
    ///
    /// Handling: bad input; send it to the id it names, or fix the id in
    /// the command. Nothing was written. Kind: [`ErrorKind::InvalidInput`].
    #[error("the command names {named:?}, but was sent to {id:?} (stream {stream})")]
    IdMismatch {
        /// The stream the command was sent to.
        stream: StreamId,
        /// The id the command was sent to.
        id: String,
        /// The id the command names.
        named: String,
    },

    /// The store failed or refused the input: an invalid id
    /// ([`StoreError::InvalidStreamId`]), limits, an unavailable store,
    /// corruption or I/O. Never a version conflict, which is
    /// [`RepositoryError::Conflict`].
    ///
    /// Handling: see [`StoreError`]; `StoreError::is_invalid_input` tells
    /// the caller's fault from the store's. Kind: the store error's.
    #[error(transparent)]
    Store(StoreError),
}

impl<A: Aggregate> RepositoryError<A> {
    /// The conflict, if this is one.
    pub fn conflict(&self) -> Option<&Conflict<A>> {
        match self {
            RepositoryError::Conflict(c) => Some(c),
            _ => None,
        }
    }

    /// The aggregate's refusal, if this is one.
    pub fn rejection(&self) -> Option<&A::Error> {
        match self {
            RepositoryError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl<A: Aggregate> RepositoryError<A>
where
    A::Error: Classify,
{
    /// What kind of failure this is: a conflict is [`ErrorKind::Conflict`];
    /// a refusal has the aggregate error's kind; an event that does not
    /// decode has the codec's kind, one that does not encode is
    /// [`ErrorKind::Internal`] (a bug); a command sent to another id than
    /// it names is [`ErrorKind::InvalidInput`]; a store error has the
    /// store's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepositoryError::Conflict(_) => ErrorKind::Conflict,
            RepositoryError::Rejected(e) => e.kind(),
            RepositoryError::Decode { source, .. } => source.kind(),
            RepositoryError::Encode { .. } => ErrorKind::Internal,
            RepositoryError::IdMismatch { .. } => ErrorKind::InvalidInput,
            RepositoryError::Store(e) => e.kind(),
        }
    }
}

impl<A: Aggregate> Classify for RepositoryError<A>
where
    A::Error: Classify,
{
    fn kind(&self) -> ErrorKind {
        RepositoryError::kind(self)
    }
}

impl<A: Aggregate> From<StoreError> for RepositoryError<A> {
    fn from(e: StoreError) -> Self {
        RepositoryError::Store(e)
    }
}

impl<A: Aggregate> fmt::Debug for RepositoryError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryError::Conflict(c) => f.debug_tuple("Conflict").field(c).finish(),
            RepositoryError::Rejected(e) => f.debug_tuple("Rejected").field(e).finish(),
            RepositoryError::Decode {
                stream,
                version,
                source,
            } => f
                .debug_struct("Decode")
                .field("stream", stream)
                .field("version", version)
                .field("source", source)
                .finish(),
            RepositoryError::Encode { stream, source } => f
                .debug_struct("Encode")
                .field("stream", stream)
                .field("source", source)
                .finish(),
            RepositoryError::IdMismatch { stream, id, named } => f
                .debug_struct("IdMismatch")
                .field("stream", stream)
                .field("id", id)
                .field("named", named)
                .finish(),
            RepositoryError::Store(e) => f.debug_tuple("Store").field(e).finish(),
        }
    }
}
