//! Test support shared by the integration tests: a small counter aggregate
//! whose `Added` event changed shape (v1 → v2), and store wrappers that count
//! reads or slip a competing write in before an append.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_aggregates::{Aggregate, CodecError, DomainEvent, Snapshottable, StoredShape};
use strata_store::{
    AppendResult, Direction, EventStore, EventSubscription, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent,
    StoreError, StreamAppend, StreamId,
};

/// The counter's events today. `Added` is at shape version 2: v1 had a
/// `u32` amount and no note.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum CounterEvent {
    Added { amount: u64, note: String },
    Reset,
}

/// The counter's events as an older release wrote them.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum CounterEventV1 {
    Added { amount: u32 },
    Reset,
}

impl DomainEvent for CounterEventV1 {
    fn event_type(&self) -> &'static str {
        match self {
            CounterEventV1::Added { .. } => "Added",
            CounterEventV1::Reset => "Reset",
        }
    }
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> &'static str {
        match self {
            CounterEvent::Added { .. } => "Added",
            CounterEvent::Reset => "Reset",
        }
    }

    fn event_version(&self) -> u32 {
        match self {
            CounterEvent::Added { .. } => 2,
            CounterEvent::Reset => 1,
        }
    }

    fn upcast(stored: &StoredShape<'_>) -> Result<Self, CodecError> {
        match (stored.event_type(), stored.version()) {
            ("Added", 1) => match stored.decode::<CounterEventV1>()? {
                CounterEventV1::Added { amount } => Ok(CounterEvent::Added {
                    amount: u64::from(amount),
                    note: "from v1".into(),
                }),
                CounterEventV1::Reset => Ok(CounterEvent::Reset),
            },
            (event_type, version) => Err(CodecError::UnknownVersion {
                event_type: event_type.into(),
                version,
            }),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CounterCommand {
    Add(u64),
    Reset,
    /// Decides no events.
    Nothing,
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CounterError {
    #[error("nothing to reset")]
    NothingToReset,
}

/// A counter: its total and how many adds made it.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    pub total: u64,
    pub adds: u64,
}

fn handle_counter(total: u64, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterError> {
    match command {
        CounterCommand::Add(amount) => Ok(vec![CounterEvent::Added {
            amount: *amount,
            note: String::new(),
        }]),
        CounterCommand::Reset if total == 0 => Err(CounterError::NothingToReset),
        CounterCommand::Reset => Ok(vec![CounterEvent::Reset]),
        CounterCommand::Nothing => Ok(Vec::new()),
    }
}

impl Aggregate for Counter {
    const KIND: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;

    fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterError> {
        handle_counter(self.total, command)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added { amount, .. } => {
                self.total += amount;
                self.adds += 1;
            }
            CounterEvent::Reset => *self = Counter::default(),
        }
    }
}

impl Snapshottable for Counter {
    const SNAPSHOT_VERSION: u32 = 1;
}

/// The same counter in a later release whose state lists its fields in
/// another order: bincode would read a v1 snapshot into it without error,
/// swapping the two numbers. Its snapshot version says the shape changed.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct CounterReshaped {
    pub adds: u64,
    pub total: u64,
}

impl Aggregate for CounterReshaped {
    const KIND: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;

    fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterError> {
        handle_counter(self.total, command)
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added { amount, .. } => {
                self.total += amount;
                self.adds += 1;
            }
            CounterEvent::Reset => *self = CounterReshaped::default(),
        }
    }
}

impl Snapshottable for CounterReshaped {
    const SNAPSHOT_VERSION: u32 = 2;
}

/// A store that counts the events `read_stream` returns per stream.
#[derive(Clone, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    reads: Arc<Mutex<Vec<(StreamId, usize)>>>,
}

impl CountingStore {
    pub fn new(inner: MemoryStore) -> CountingStore {
        CountingStore {
            inner,
            reads: Arc::default(),
        }
    }

    /// Events returned from `stream` since the last reset.
    pub fn events_read(&self, stream: &str) -> usize {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s.as_str() == stream)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn reset(&self) {
        self.reads.lock().unwrap().clear();
    }
}

#[async_trait]
impl EventStore for CountingStore {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.append_multi(appends).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(stream, from_version, direction, limit).await?;
        self.reads.lock().unwrap().push((stream.clone(), events.len()));
        Ok(events)
    }
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from_position, limit).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }
    fn subscribe_all(&self, after: u64) -> EventSubscription {
        self.inner.subscribe_all(after)
    }
    fn subscribe_filtered(&self, after: u64, filter: strata_store::EventFilter) -> strata_store::FilteredSubscription {
        self.inner.subscribe_filtered(after, filter)
    }
}

/// A store where another writer gets in first: before each of the next
/// `times` appends, it appends `make()` to `stream` itself.
#[derive(Clone)]
pub struct RacingStore {
    pub inner: MemoryStore,
    stream: StreamId,
    make: Arc<dyn Fn() -> NewEvent + Send + Sync>,
    left: Arc<AtomicUsize>,
    pub interlopers: Arc<AtomicUsize>,
}

impl RacingStore {
    pub fn new(
        inner: MemoryStore,
        stream: &str,
        times: usize,
        make: impl Fn() -> NewEvent + Send + Sync + 'static,
    ) -> RacingStore {
        RacingStore {
            inner,
            stream: StreamId::new(stream).unwrap(),
            make: Arc::new(make),
            left: Arc::new(AtomicUsize::new(times)),
            interlopers: Arc::default(),
        }
    }
}

#[async_trait]
impl EventStore for RacingStore {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.inner
                .append(&self.stream, ExpectedVersion::Any, vec![(self.make)()])
                .await?;
            self.interlopers.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.append_multi(appends).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from_version, direction, limit).await
    }
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from_position, limit).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }
    fn subscribe_all(&self, after: u64) -> EventSubscription {
        self.inner.subscribe_all(after)
    }
    fn subscribe_filtered(&self, after: u64, filter: strata_store::EventFilter) -> strata_store::FilteredSubscription {
        self.inner.subscribe_filtered(after, filter)
    }
}
