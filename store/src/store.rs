//! The storage seam every backend implements.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::subscription::EventSubscription;
use crate::types::{AppendResult, Direction, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend, StreamId};

/// An append-only log of events in streams, with optimistic concurrency.
///
/// # Contract (every backend, checked by one conformance suite)
///
/// - **Atomic:** an append writes all of its events or none, across every
///   stream of an [`append_multi`](EventStore::append_multi). A failed call
///   writes nothing.
/// - **Expected version:** `Any` never conflicts; `NoStream` (= `Exact(0)`)
///   conflicts when the stream has events; `StreamExists` when it has none;
///   `Exact(n)` unless the stream's version is `n`. A conflict is
///   [`StoreError::WrongExpectedVersion`] with the stream's `actual` version.
/// - **Idempotent retries:** when every event id of an append is already in
///   the stream as one contiguous run where the expected version points
///   (`Exact(n)`: starting at version `n + 1`; `Any`/`StreamExists`:
///   anywhere), the append writes nothing and returns the original
///   [`AppendResult`]. This is read from a durable index of every id, so it
///   holds for any old retry and across restarts. Ids that only partly match
///   are a conflict; an id reused at the current version is
///   [`StoreError::DuplicateEventId`]. The same id may be used in other streams.
///   A multi-stream append is recognised as a retry only as a whole.
/// - **Versions and positions:** a stream's version is its number of events;
///   its events have versions `1..=n`. Global positions start at 1, are
///   gapless and increase in commit order; reads and subscriptions never see
///   an event before every lower position is visible too.
/// - **Durability:** when an append returns `Ok`, its events are as durable as
///   the backend's configured mode promises (see [`Durability`](crate::Durability)
///   for the embedded log).
/// - **Input:** invalid input (empty appends, limits, duplicate ids or streams
///   within one call) is refused before anything is written.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its version matches `expected`.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use strata_store::{EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamId, StoreError};
    /// let store = MemoryStore::new();
    /// let s = StreamId::new("counter-1").unwrap();
    /// let r = store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("Incremented", "{}")]).await.unwrap();
    /// assert_eq!(r.stream_version, 1);
    /// // A writer that decided on version 0 too is refused: no lost update.
    /// let e = store.append(&s, ExpectedVersion::Exact(0), vec![NewEvent::new("Incremented", "{}")]).await;
    /// assert!(matches!(e, Err(StoreError::WrongExpectedVersion { actual: 1, .. })));
    /// # });
    /// ```
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let mut results = self
            .append_multi(vec![StreamAppend::new(stream.clone(), expected, events)])
            .await?;
        Ok(results.pop().expect("one result per stream"))
    }

    /// Appends to several streams at once, each with its own expected
    /// version: all parts or none. Results come in the order of `appends`.
    /// Events get positions in that order too.
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError>;

    /// Reads up to `limit` events of `stream`, starting at version
    /// `from_version` (inclusive) and walking in `direction`. `Backward` from
    /// `u64::MAX` starts at the newest event. An absent stream reads as empty.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of the whole log from `from_position`
    /// (inclusive; 0 reads from the start), in position order.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's version: its number of events, 0 when absent.
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// The position of the newest visible event, 0 when the log is empty.
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Every event with a position greater than `after` (0 = from the start):
    /// history first, then live events as they commit, in position order with
    /// no gap and no duplicate. A subscriber that falls behind reads from the
    /// log at its own pace: it never blocks writers and never buffers more
    /// than one read batch. A projection resumes with `subscribe_all(checkpoint)`.
    fn subscribe_all(&self, after: u64) -> EventSubscription;
}

#[async_trait]
impl<T: EventStore + ?Sized> EventStore for std::sync::Arc<T> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        (**self).append(stream, expected, events).await
    }
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        (**self).append_multi(appends).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        (**self).read_stream(stream, from_version, direction, limit).await
    }
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        (**self).read_all(from_position, limit).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        (**self).stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        (**self).head_position().await
    }
    fn subscribe_all(&self, after: u64) -> EventSubscription {
        (**self).subscribe_all(after)
    }
}
