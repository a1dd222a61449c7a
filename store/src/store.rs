//! The storage seam every backend implements.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::filter::{EventFilter, FILTER_SCAN_WINDOW, FilteredRead, filter_read};
use crate::retention::{
    DeleteMode, StreamInfo, StreamMetadata, StreamOperation, StreamOperationResult, StreamState, metadata_stream,
};
use crate::subscription::{EventSubscription, FilteredSubscription, SUBSCRIPTION_BATCH};
use crate::types::{
    AppendResult, Direction, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend, StreamId, StreamSummary,
};

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
/// - **The life of a stream** ([`modify_stream`](EventStore::modify_stream),
///   see `docs/retention.md`): a soft-deleted stream reads as absent
///   (version 0, no events) until it is written again, and then goes on
///   from its old version; a tombstoned one refuses every append with
///   [`StoreError::StreamDeleted`]; a truncated one has no events below
///   the version it was truncated before; `max_count`/`max_age` keep the
///   newest events / the recent ones. Removed events are skipped by every
///   read and subscription; their positions are never reused. Every
///   operation is judged against an expected version like an append and is
///   recorded as one event of the stream's metadata stream `$$<stream>`.
///   So "versions are gapless" holds of the versions ever written, and a
///   reader sees only those not removed.
/// - **Removed, not uncommitted:** a position at or below
///   [`head_position`](EventStore::head_position) that `read_all` skips is
///   removed (and stays removed); only positions above the head may still
///   appear. Subscriptions rely on it to move past removed events.
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

    /// Reads the events of the whole log that match `filter`, from
    /// `from_position` (inclusive; 0 reads from the start) in position
    /// order, and says how far it looked. It stops after the `limit`-th
    /// match, after examining [`FILTER_SCAN_WINDOW`] events, or at the
    /// newest visible event, whichever comes first; it says how far it looked ([`FilteredRead::examined`]): every matching
    /// event up to that position is returned, so the next read starts
    /// after it, and a reader over a long stretch of unrelated events still
    /// moves on. Like `read_all`, it never looks past an event before
    /// every lower position is visible.
    ///
    /// Errors: [`StoreError::InvalidFilter`] for a filter that breaks its
    /// rules, and whatever `read_all` returns.
    ///
    /// The provided implementation reads whole events with `read_all` and
    /// tests each; a backend overrides it to test the stream id and type
    /// before it decodes the rest (sled), or to filter in the database
    /// (PostgreSQL).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use strata_store::{EventFilter, EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamId};
    /// let store = MemoryStore::new();
    /// for (stream, t) in [("order-1", "OrderPlaced"), ("sku-tea", "StockReceived"), ("order-2", "OrderPlaced")] {
    ///     store.append(&StreamId::new(stream)?, ExpectedVersion::Any, vec![NewEvent::new(t, "{}")]).await?;
    /// }
    /// let read = store.read_filtered(0, 10, &EventFilter::all().category("sku")).await?;
    /// assert_eq!((read.events.len(), read.events[0].position, read.examined), (1, 2, 3));
    /// # Ok::<(), strata_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    async fn read_filtered(
        &self,
        from_position: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<FilteredRead, StoreError> {
        filter.check()?;
        let from = from_position.max(1);
        let mut read = FilteredRead {
            events: Vec::new(),
            examined: from - 1,
        };
        while read.events.len() < limit && read.examined + 1 - from < FILTER_SCAN_WINDOW as u64 {
            let window = FILTER_SCAN_WINDOW - (read.examined + 1 - from) as usize;
            let start = read.examined + 1;
            let events = self.read_all(start, window.min(SUBSCRIPTION_BATCH)).await?;
            if events.is_empty() {
                break;
            }
            let part = filter_read(events, start, limit - read.events.len(), filter);
            read.events.extend(part.events);
            read.examined = part.examined;
        }
        Ok(read)
    }

    /// The stream's version: the version of its last event, 0 when absent
    /// (never written, or soft-deleted or tombstoned and not written since).
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// Changes the life of a stream: a delete, a truncation or new
    /// retention metadata (see [`StreamOperation`]), judged against its
    /// expected version like an append and written as one event of the
    /// stream's metadata stream. Atomic and as durable as an append.
    ///
    /// Errors: [`StoreError::WrongExpectedVersion`] when the expected
    /// version is stale (for metadata: the metadata version),
    /// [`StoreError::StreamDeleted`] on a tombstoned stream,
    /// [`StoreError::InvalidStreamOperation`] for bad input.
    ///
    /// The provided implementation refuses (for wrappers in tests); every
    /// backend of this crate implements it.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use strata_store::{DeleteMode, EventStore, ExpectedVersion, MemoryStore, NewEvent, StoreError, StreamId};
    /// let store = MemoryStore::new();
    /// let s = StreamId::new("customer-9")?;
    /// store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("Registered", "{}")]).await?;
    /// store.delete_stream(&s, ExpectedVersion::Exact(1), DeleteMode::Soft).await?;
    /// assert_eq!(store.stream_version(&s).await?, 0);
    /// // Written again, it goes on from its old version.
    /// let r = store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("Registered", "{}")]).await?;
    /// assert_eq!(r.stream_version, 2);
    /// store.delete_stream(&s, ExpectedVersion::Any, DeleteMode::Hard).await?;
    /// let refused = store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("Registered", "{}")]).await;
    /// assert!(matches!(refused, Err(StoreError::StreamDeleted { .. })));
    /// # Ok::<(), StoreError>(())
    /// # }).unwrap();
    /// ```
    async fn modify_stream(&self, op: StreamOperation) -> Result<StreamOperationResult, StoreError> {
        Err(StoreError::Unavailable {
            reason: format!("this store cannot record a {op}"),
        })
    }

    /// Deletes `stream` (soft or hard) if its version matches `expected`.
    async fn delete_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<StreamOperationResult, StoreError> {
        self.modify_stream(StreamOperation::Delete {
            stream: stream.clone(),
            expected,
            mode,
        })
        .await
    }

    /// Removes the events of `stream` below version `before` if its
    /// version matches `expected`; the version keeps counting.
    async fn truncate_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        before: u64,
    ) -> Result<StreamOperationResult, StoreError> {
        self.modify_stream(StreamOperation::Truncate {
            stream: stream.clone(),
            expected,
            before,
        })
        .await
    }

    /// Sets the retention of `stream` if its metadata version matches `expected`.
    async fn set_stream_metadata(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        metadata: StreamMetadata,
    ) -> Result<StreamOperationResult, StoreError> {
        self.modify_stream(StreamOperation::SetMetadata {
            stream: stream.clone(),
            expected,
            metadata,
        })
        .await
    }

    /// The stream's version, metadata version and state, read from its
    /// metadata stream and [`stream_version`](EventStore::stream_version).
    async fn stream_info(&self, stream: &StreamId) -> Result<StreamInfo, StoreError> {
        let meta = metadata_stream(stream);
        let newest = self.read_stream(&meta, u64::MAX, Direction::Backward, 1).await?;
        let (metadata_version, state) = match newest.first() {
            Some(e) => (
                e.version,
                StreamState::decode(&e.payload).map_err(|detail| StoreError::Corrupt {
                    location: format!("stream {meta} version {}", e.version),
                    detail,
                })?,
            ),
            None => (0, StreamState::default()),
        };
        Ok(StreamInfo {
            version: self.stream_version(stream).await?,
            metadata_version,
            state,
        })
    }

    /// The position of the newest visible event, 0 when the log is empty.
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Up to `limit` streams whose id starts with `prefix` (`""`: every
    /// stream) and sorts after `after` (`None`: from the first), in the
    /// byte order of their ids, each with its visible version. A page ends
    /// after `limit` streams: the next one starts `after` the last id.
    /// (A category `c` is the prefix `c-`.)
    ///
    /// Only streams that read as present are listed: `$$` metadata
    /// streams, tombstoned streams and soft-deleted streams not written
    /// since are left out (a page is still `limit` long while more follow);
    /// a truncated stream is listed with its version. See `docs/retention.md`.
    ///
    /// The provided implementation reads the whole log (a backend without
    /// a stream index, such as a test double; it also leaves out a stream
    /// whose every event is truncated); every backend of this crate
    /// answers from its stream index instead.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use strata_store::{EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamId};
    /// let store = MemoryStore::new();
    /// for s in ["order-2", "order-1", "sku-tea", "order-1"] {
    ///     store.append(&StreamId::new(s)?, ExpectedVersion::Any, vec![NewEvent::new("T", "{}")]).await?;
    /// }
    /// let page = store.list_streams("order-", None, 10).await?;
    /// let ids: Vec<_> = page.iter().map(|s| (s.stream_id.as_str(), s.version)).collect();
    /// assert_eq!(ids, [("order-1", 2), ("order-2", 1)]);
    /// # Ok::<(), strata_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        let mut versions = std::collections::BTreeMap::<String, u64>::new();
        let mut next = 1;
        loop {
            let events = self.read_all(next, SUBSCRIPTION_BATCH).await?;
            let Some(last) = events.last() else { break };
            next = last.position + 1;
            for e in events {
                let id = e.stream_id.as_str();
                if id.starts_with(prefix)
                    && after.is_none_or(|a| id > a.as_str())
                    && !crate::retention::is_metadata_stream(&e.stream_id)
                {
                    versions.insert(id.to_owned(), e.version);
                }
            }
        }
        versions
            .into_iter()
            .take(limit)
            .map(|(id, version)| {
                Ok(StreamSummary {
                    stream_id: StreamId::new(id)?,
                    version,
                })
            })
            .collect()
    }

    /// Every event with a position greater than `after` (0 = from the start):
    /// history first, then live events as they commit, in position order with
    /// no gap and no duplicate. A subscriber that falls behind reads from the
    /// log at its own pace: it never blocks writers and never buffers more
    /// than one read batch. A projection resumes with `subscribe_all(checkpoint)`.
    fn subscribe_all(&self, after: u64) -> EventSubscription;

    /// The events that match `filter` with a position greater than `after`,
    /// history then live, in position order, with no gap and no duplicate
    /// among them (the guarantees of [`subscribe_all`](EventStore::subscribe_all)),
    /// and [`SubscriptionItem::Checkpoint`](crate::SubscriptionItem::Checkpoint)s
    /// that say how far the log has been examined when the events that
    /// matched stop short of it: a consumer that stores the last position
    /// it received (event or checkpoint) and resubscribes from it misses
    /// nothing and moves on over long stretches of unrelated events.
    /// An invalid filter ends the subscription with
    /// [`StoreError::InvalidFilter`]. Backends build it with
    /// [`FilteredSubscription::follow`] over their [`read_filtered`](EventStore::read_filtered).
    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription;
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
    async fn read_filtered(
        &self,
        from_position: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<FilteredRead, StoreError> {
        (**self).read_filtered(from_position, limit, filter).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        (**self).stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        (**self).head_position().await
    }
    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        (**self).list_streams(prefix, after, limit).await
    }
    async fn modify_stream(&self, op: StreamOperation) -> Result<StreamOperationResult, StoreError> {
        (**self).modify_stream(op).await
    }
    async fn stream_info(&self, stream: &StreamId) -> Result<StreamInfo, StoreError> {
        (**self).stream_info(stream).await
    }
    fn subscribe_all(&self, after: u64) -> EventSubscription {
        (**self).subscribe_all(after)
    }
    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
        (**self).subscribe_filtered(after, filter)
    }
}
