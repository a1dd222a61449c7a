//! Loading aggregates from their streams and appending what commands decide.

use std::sync::Arc;

use strata_store::{
    AppendResult, Direction, EventId, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamAppend,
    StreamId,
};
use tracing::{Instrument, field, warn};

use crate::aggregate::{Aggregate, Snapshottable};
use crate::codec::{Format, decode, encode_with};
use crate::error::{Conflict, EventEnvelope, RepositoryError};
use crate::retry::RetryPolicy;
use crate::snapshot::SnapshotConfig;

/// How many events one read of a stream asks for while loading.
const READ_BATCH: usize = 1024;

/// An aggregate's state as loaded from its stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<A> {
    /// The state: the fold of every event up to `version`.
    pub state: A,
    /// The stream's version the state was built from (0: no events; the
    /// value of an `ETag`).
    pub version: u64,
    /// The version of the snapshot the load started from, if one was used.
    pub snapshot_version: Option<u64>,
    /// How many events were read and applied (after the snapshot, if any).
    pub replayed: u64,
}

impl<A> Loaded<A> {
    /// Whether the stream has events (the aggregate exists).
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

/// What a successful [`Repository::execute`] did.
#[derive(Clone, Debug)]
pub struct Executed<A: Aggregate> {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The state after the command.
    pub state: A,
    /// The stream's version after the command (the new `ETag`).
    pub version: u64,
    /// The events appended, oldest first; empty when the command changed nothing.
    pub events: Vec<A::Event>,
    /// Where the events landed in the log; `None` when nothing was appended.
    pub append: Option<AppendResult>,
    /// How many times the command was decided again after a conflict.
    pub retries: u32,
}

/// How far an execute got, for its span: attempts made and the stream
/// version the last one read.
#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) attempts: u32,
    pub(crate) version: Option<u64>,
}

/// Loads aggregates of type `A` and executes commands on them, over any
/// [`EventStore`].
///
/// Cheap to clone. Configured with a payload [`Format`] (bincode by
/// default), a [`RetryPolicy`] for writes that do not name a version, and
/// optionally snapshots.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use strata_aggregates::Repository;
/// use strata_aggregates::domain::stock::{StockCommand, StockItem};
/// use strata_store::MemoryStore;
///
/// let stock = Repository::<StockItem>::new(Arc::new(MemoryStore::new())).with_snapshots(100);
/// let register = StockCommand::Register { sku: "tea".into(), name: "Green tea".into() };
/// let done = stock.execute("tea", register, Some(0)).await.unwrap();
/// assert_eq!(done.version, 1);
///
/// // A client that read version 0 and writes again gets a conflict with what changed.
/// let receive = StockCommand::Receive { quantity: 5 };
/// let stale = stock.execute("tea", receive.clone(), Some(0)).await.unwrap_err();
/// let conflict = stale.conflict().unwrap();
/// assert_eq!((conflict.expected, conflict.current, conflict.events_since.len()), (0, 1, 1));
///
/// // Without a version, the repository reads, decides and retries on its own.
/// let done = stock.execute("tea", receive, None).await.unwrap();
/// assert_eq!(done.state.on_hand(), 5);
/// # });
/// ```
pub struct Repository<A: Aggregate> {
    store: Arc<dyn EventStore>,
    format: Format,
    retry: RetryPolicy,
    snapshots: Option<SnapshotConfig<A>>,
    conflict_event_limit: usize,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            format: self.format,
            retry: self.retry,
            snapshots: self.snapshots.clone(),
            conflict_event_limit: self.conflict_event_limit,
        }
    }
}

impl<A: Snapshottable> Repository<A> {
    /// The same repository, storing a snapshot of the state whenever a
    /// command leaves the stream `every` or more events past the last
    /// snapshot, so loads read the newest snapshot plus the events after it.
    pub fn with_snapshots(mut self, every: u64) -> Repository<A> {
        self.snapshots = Some(SnapshotConfig::new(every));
        self
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store` with bincode payloads, the default
    /// [`RetryPolicy`] and no snapshots.
    pub fn new(store: Arc<dyn EventStore>) -> Repository<A> {
        Repository {
            store,
            format: Format::default(),
            retry: RetryPolicy::default(),
            snapshots: None,
            conflict_event_limit: 1000,
        }
    }

    /// The same repository writing payloads in `format`. Reading accepts
    /// every format whatever this says (each event records its own).
    pub fn with_format(mut self, format: Format) -> Repository<A> {
        self.format = format;
        self
    }

    /// The same repository retrying under `policy`.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Repository<A> {
        self.retry = policy;
        self
    }

    /// The same repository with at most `limit` events in a
    /// [`Conflict::events_since`] (default 1,000).
    pub fn with_conflict_event_limit(mut self, limit: usize) -> Repository<A> {
        self.conflict_event_limit = limit;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The format new events are written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The retry policy of writes that do not name a version.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Snapshot interval, when snapshots are on.
    pub fn snapshot_interval(&self) -> Option<u64> {
        self.snapshots.as_ref().map(|s| s.every)
    }

    /// The stream of aggregate `id`: `"{KIND}-{id}"`.
    ///
    /// Errors with [`StoreError::InvalidStreamId`] when that is not a valid
    /// stream id (too long, control characters).
    pub fn stream_id(id: &str) -> Result<StreamId, StoreError> {
        StreamId::new(format!("{}-{id}", A::KIND))
    }

    /// Loads aggregate `id`: its state and version (a default state at
    /// version 0 when the stream has no events).
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, RepositoryError<A>> {
        let stream = Self::stream_id(id)?;
        self.load_stream(&stream).await
    }

    /// Loads the aggregate of `stream`: from the newest usable snapshot, if
    /// snapshots are on, then the events after it.
    pub async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>, RepositoryError<A>> {
        if let Some(config) = &self.snapshots
            && let Some(snapshot) = config.load(&*self.store, stream).await
        {
            // Read from the snapshot's own event: it must be the one the
            // snapshot names, or the snapshot is not of this history.
            let at = self
                .store
                .read_stream(stream, snapshot.version, Direction::Forward, 1)
                .await?;
            match at.first() {
                Some(e) if e.version == snapshot.version && e.id == snapshot.event_id => {
                    let mut loaded = Loaded {
                        state: snapshot.state,
                        version: snapshot.version,
                        snapshot_version: Some(snapshot.version),
                        replayed: 0,
                    };
                    self.catch_up(stream, &mut loaded).await?;
                    return Ok(loaded);
                }
                _ => warn!(%stream, version = snapshot.version, "snapshot does not match the stream; replaying"),
            }
        }
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
            snapshot_version: None,
            replayed: 0,
        };
        self.catch_up(stream, &mut loaded).await?;
        Ok(loaded)
    }

    /// Applies the events after `loaded.version` to `loaded`.
    pub(crate) async fn catch_up(&self, stream: &StreamId, loaded: &mut Loaded<A>) -> Result<(), RepositoryError<A>> {
        loop {
            let batch = self
                .store
                .read_stream(stream, loaded.version + 1, Direction::Forward, READ_BATCH)
                .await?;
            for recorded in &batch {
                if recorded.version != loaded.version + 1 {
                    return Err(RepositoryError::Store(StoreError::Corrupt {
                        location: format!("stream {stream}"),
                        detail: format!("expected version {}, read {}", loaded.version + 1, recorded.version),
                    }));
                }
                let event: A::Event = decode(recorded).map_err(|source| RepositoryError::Decode {
                    stream: stream.clone(),
                    version: recorded.version,
                    source,
                })?;
                loaded.state.apply(&event);
                loaded.version = recorded.version;
                loaded.replayed += 1;
            }
            if batch.len() < READ_BATCH {
                return Ok(());
            }
        }
    }

    /// Reads up to `limit` decoded events of aggregate `id` from version
    /// `from_version` (inclusive), oldest first.
    pub async fn read_events(
        &self,
        id: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope<A::Event>>, RepositoryError<A>> {
        let stream = Self::stream_id(id)?;
        self.read_envelopes(&stream, from_version, limit).await
    }

    async fn read_envelopes(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope<A::Event>>, RepositoryError<A>> {
        let recorded = self
            .store
            .read_stream(stream, from_version, Direction::Forward, limit)
            .await?;
        recorded
            .iter()
            .map(|r| {
                EventEnvelope::decode(r).map_err(|source| RepositoryError::Decode {
                    stream: stream.clone(),
                    version: r.version,
                    source,
                })
            })
            .collect()
    }

    /// Decides `command` on aggregate `id` and appends the events.
    ///
    /// - `expected: Some(v)`: the caller decided on version `v` (an
    ///   `If-Match`). No retry: if the stream is not at `v`, or moves before
    ///   the append, the result is [`RepositoryError::Conflict`] with the
    ///   current version and state and the events since `v`.
    /// - `expected: None`: the repository owns the read-modify-write: on a
    ///   conflict it catches up, decides again and retries under its
    ///   [`RetryPolicy`]; when attempts run out, the last conflict.
    ///
    /// A refusal is [`RepositoryError::Rejected`] with the aggregate's error
    /// (also for a command the aggregate runs only inside a domain service:
    /// [`Aggregate::check_direct`]);
    /// a command that names another id than `id` ([`Aggregate::command_id`])
    /// is [`RepositoryError::IdMismatch`].
    /// A command that decides no events appends nothing and succeeds.
    /// Every call runs in a `tracing` span `strata.execute` with the stream,
    /// the expected and resulting version, the retries and the outcome.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        expected: Option<u64>,
    ) -> Result<Executed<A>, RepositoryError<A>> {
        self.execute_with(id, &command, expected, &Metadata::default()).await
    }

    /// [`execute`](Repository::execute) with metadata (correlation and
    /// causation ids, extra values) recorded on every event.
    pub async fn execute_with(
        &self,
        id: &str,
        command: &A::Command,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<Executed<A>, RepositoryError<A>> {
        let stream = Self::stream_id(id)?;
        let span = tracing::info_span!(
            "strata.execute",
            kind = A::KIND,
            stream = %stream,
            expected = field::Empty,
            version = field::Empty,
            retries = field::Empty,
            outcome = field::Empty,
        );
        if let Some(v) = expected {
            span.record("expected", v);
        }
        let mut progress = Progress::default();
        let result = match A::command_id(command) {
            Some(named) if named != id => Err(RepositoryError::IdMismatch {
                stream: stream.clone(),
                id: id.to_string(),
                named: named.to_string(),
            }),
            _ => match A::check_direct(command) {
                Err(refusal) => Err(RepositoryError::Rejected(refusal)),
                Ok(()) => {
                    self.execute_in(&stream, command, expected, metadata, &mut progress)
                        .instrument(span.clone())
                        .await
                }
            },
        };
        // Whatever the outcome, what is known: the version the stream is at
        // (after the append, or as the last decision read it) and the retries.
        let (outcome, version) = match &result {
            Ok(done) if done.append.is_some() => ("appended", Some(done.version)),
            Ok(done) => ("unchanged", Some(done.version)),
            Err(RepositoryError::Conflict(c)) => ("conflict", Some(c.current)),
            Err(RepositoryError::Rejected(_)) => ("rejected", progress.version),
            Err(RepositoryError::IdMismatch { .. }) => ("id_mismatch", progress.version),
            Err(_) => ("error", progress.version),
        };
        span.record("outcome", outcome);
        span.record("retries", progress.attempts.saturating_sub(1));
        if let Some(v) = version {
            span.record("version", v);
        }
        result
    }

    async fn execute_in(
        &self,
        stream: &StreamId,
        command: &A::Command,
        expected: Option<u64>,
        metadata: &Metadata,
        progress: &mut Progress,
    ) -> Result<Executed<A>, RepositoryError<A>> {
        let mut attempt = 0u32;
        let mut previous: Option<Loaded<A>> = None;
        loop {
            attempt += 1;
            progress.attempts = attempt;
            let current = match previous.take() {
                Some(mut loaded) => {
                    self.catch_up(stream, &mut loaded).await?;
                    loaded
                }
                None => self.load_stream(stream).await?,
            };
            progress.version = Some(current.version);
            if let Some(v) = expected
                && current.version != v
            {
                return Err(self.conflict(stream, v, current, attempt).await);
            }
            let events = current.state.handle(command).map_err(RepositoryError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed {
                    stream: stream.clone(),
                    version: current.version,
                    state: current.state,
                    events,
                    append: None,
                    retries: attempt - 1,
                });
            }
            let new_events = self.encode_events(stream, &events, metadata)?;
            let mut state = current.state.clone();
            for event in &events {
                state.apply(event);
            }
            let new_version = current.version + events.len() as u64;
            let last_id = new_events.last().expect("events is not empty").id;
            let snapshot = self.snapshot_append(stream, &current, &state, new_version, last_id);
            let append = StreamAppend::new(
                stream.clone(),
                ExpectedVersion::Exact(current.version).normalized(),
                new_events,
            );
            match self.append_with_snapshot(append, snapshot).await {
                Ok(result) => {
                    return Ok(Executed {
                        stream: stream.clone(),
                        state,
                        version: result.stream_version,
                        events,
                        append: Some(result),
                        retries: attempt - 1,
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    if expected.is_some() || attempt >= self.retry.attempts() {
                        return Err(self.conflict(stream, current.version, current, attempt).await);
                    }
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    previous = Some(current);
                }
                Err(e) => return Err(RepositoryError::Store(e)),
            }
        }
    }

    /// Encodes `events` in the repository's format, with `metadata`'s ids
    /// and extra values added.
    pub(crate) fn encode_events(
        &self,
        stream: &StreamId,
        events: &[A::Event],
        metadata: &Metadata,
    ) -> Result<Vec<NewEvent>, RepositoryError<A>> {
        events
            .iter()
            .map(|event| {
                encode_with(event, self.format, metadata).map_err(|source| RepositoryError::Encode {
                    stream: stream.clone(),
                    source,
                })
            })
            .collect()
    }

    /// The snapshot to append with a write that takes `loaded` to `state` at
    /// `version`, when snapshots are on and one is due.
    pub(crate) fn snapshot_append(
        &self,
        stream: &StreamId,
        loaded: &Loaded<A>,
        state: &A,
        version: u64,
        last_event_id: EventId,
    ) -> Option<StreamAppend> {
        let config = self.snapshots.as_ref()?;
        let base = loaded.snapshot_version.unwrap_or(0);
        if !config.due(base, version) {
            return None;
        }
        config.append(stream, state, version, last_event_id, self.format)
    }

    /// Appends `append`, with `snapshot` in the same atomic write when given.
    /// A snapshot the store refuses as input (e.g. a state over the payload
    /// limit) is dropped and the events are appended alone.
    async fn append_with_snapshot(
        &self,
        append: StreamAppend,
        snapshot: Option<StreamAppend>,
    ) -> Result<AppendResult, StoreError> {
        let Some(snapshot) = snapshot else {
            return self.store.append(&append.stream, append.expected, append.events).await;
        };
        match self.store.append_multi(vec![append.clone(), snapshot]).await {
            Ok(mut results) => Ok(results.swap_remove(0)),
            Err(e) if e.is_invalid_input() => {
                warn!(stream = %append.stream, error = %e, "the store refused the snapshot; appending without it");
                self.store.append(&append.stream, append.expected, append.events).await
            }
            Err(e) => Err(e),
        }
    }

    /// The conflict of a write decided on `expected` after `attempts`
    /// attempts; `current` is the last state read (it is brought up to date).
    pub(crate) async fn conflict(
        &self,
        stream: &StreamId,
        expected: u64,
        mut current: Loaded<A>,
        attempts: u32,
    ) -> RepositoryError<A> {
        if let Err(e) = self.catch_up(stream, &mut current).await {
            return e;
        }
        let missing = current.version.saturating_sub(expected);
        let take = usize::try_from(missing)
            .unwrap_or(usize::MAX)
            .min(self.conflict_event_limit);
        let events_since = if take == 0 {
            Vec::new()
        } else {
            match self.read_envelopes(stream, expected + 1, take).await {
                Ok(events) => events,
                Err(e) => return e,
            }
        };
        RepositoryError::Conflict(Box::new(Conflict {
            stream: stream.clone(),
            expected,
            current: current.version,
            state: current.state,
            events_since_complete: events_since.len() as u64 == missing,
            events_since,
            attempts,
        }))
    }
}
