//! `MemoryStore`: the log in memory, with exactly the rules of the durable
//! backends (it is no weaker test double).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::decide::{IdEntry, Plan, StreamView, all_done, plan_multi, plan_op};
use crate::error::StoreError;
use crate::filter::{EventFilter, FILTER_SCAN_WINDOW, FilteredRead};
use crate::limits::Limits;
use crate::retention::{StreamOperation, StreamOperationResult, StreamState, is_metadata_stream};
use crate::store::EventStore;
use crate::subscription::{EventSubscription, FilteredSubscription};
use crate::types::{
    AppendResult, Direction, EventId, NewEvent, RecordedEvent, StreamAppend, StreamId, StreamSummary, from_micros,
    now_micros, to_micros,
};

/// The log in memory. Cheap to clone; clones share the log.
///
/// Used to replay history in tests and as a reference for the other
/// backends: it checks expected versions, recognises retries by event id and
/// enforces the same limits. Nothing survives the process.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use strata_store::{Direction, EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamId};
/// let store = MemoryStore::new();
/// let s = StreamId::new("order-1").unwrap();
/// store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("OrderPlaced", "{}")]).await.unwrap();
/// let events = store.read_stream(&s, 1, Direction::Forward, 10).await.unwrap();
/// assert_eq!(events[0].event_type, "OrderPlaced");
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    head: watch::Sender<u64>,
    limits: Limits,
}

#[derive(Default)]
struct State {
    /// Every event; the event at position `p` is at index `p - 1`.
    log: Vec<RecordedEvent>,
    streams: HashMap<StreamId, Stream>,
    /// The state of every stream whose metadata stream has an event.
    states: HashMap<StreamId, StreamState>,
}

#[derive(Default)]
struct Stream {
    /// Position of each version; version `v` is at index `v - 1`.
    positions: Vec<u64>,
    ids: HashMap<EventId, IdEntry>,
}

impl StreamView for State {
    fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.streams.get(stream).map_or(0, |s| s.positions.len() as u64))
    }

    fn state(&mut self, stream: &StreamId) -> Result<StreamState, StoreError> {
        Ok(self.states.get(stream).copied().unwrap_or_default())
    }

    fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
        Ok(self.streams.get(stream).and_then(|s| s.ids.get(id).copied()))
    }
}

impl State {
    /// Appends `events` to `stream` after version `current`; returns what
    /// the append did.
    fn write(&mut self, stream: &StreamId, current: u64, events: Vec<NewEvent>, recorded_at: u64) -> AppendResult {
        let first_position = self.log.len() as u64 + 1;
        let stream_state = self.streams.entry(stream.clone()).or_default();
        let mut version = current;
        for (i, event) in events.into_iter().enumerate() {
            version += 1;
            let position = first_position + i as u64;
            stream_state.positions.push(position);
            stream_state.ids.insert(event.id, IdEntry { version, position });
            self.log.push(RecordedEvent {
                stream_id: stream.clone(),
                version,
                position,
                id: event.id,
                event_type: event.event_type,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at: from_micros(recorded_at),
            });
        }
        AppendResult {
            stream_version: version,
            first_position,
            last_position: self.log.len() as u64,
        }
    }

    /// Whether `event` is removed by its stream's state at time `now`.
    fn removed(&self, event: &RecordedEvent, now: u64) -> bool {
        let Some(state) = self.states.get(&event.stream_id) else {
            return false;
        };
        let last = self
            .streams
            .get(&event.stream_id)
            .map_or(0, |s| s.positions.len() as u64);
        state.removes(event.version, to_micros(event.recorded_at), last, now)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty log with the default [`Limits`].
    pub fn new() -> MemoryStore {
        MemoryStore::with_limits(Limits::default()).expect("default limits are valid")
    }

    /// An empty log with the given limits.
    pub fn with_limits(limits: Limits) -> Result<MemoryStore, StoreError> {
        limits.validate()?;
        Ok(MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                head: watch::Sender::new(0),
                limits,
            }),
        })
    }

    /// Moves the head to `head`. Writes may finish out of order here: the
    /// head only moves forward.
    fn publish(&self, head: u64) {
        self.inner.head.send_if_modified(|h| {
            let moved = head > *h;
            *h = (*h).max(head);
            moved
        });
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied append:
        // appends are planned first and applied without fallible steps.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.limits.check(&appends)?;
        let (results, head) = {
            let mut state = self.state();
            let plans = plan_multi(&mut *state, &appends)?;
            if let Some(results) = all_done(&plans) {
                return Ok(results);
            }
            let recorded_at = now_micros();
            let mut results = Vec::with_capacity(appends.len());
            for (append, plan) in appends.into_iter().zip(plans) {
                let Plan::Write { current } = plan else {
                    unreachable!("plan_multi refuses mixed plans")
                };
                results.push(state.write(&append.stream, current, append.events, recorded_at));
            }
            let head = state.log.len() as u64;
            (results, head)
        };
        self.publish(head);
        Ok(results)
    }

    async fn modify_stream(&self, op: StreamOperation) -> Result<StreamOperationResult, StoreError> {
        let (result, head) = {
            let mut state = self.state();
            let write = plan_op(&mut *state, &op)?;
            let r = state.write(&write.meta, write.meta_version, vec![write.event], now_micros());
            state.states.insert(op.stream().clone(), write.state);
            let result = StreamOperationResult {
                position: r.last_position,
                metadata_version: r.stream_version,
            };
            (result, state.log.len() as u64)
        };
        self.publish(head);
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.state();
        let Some(s) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let now = now_micros();
        let kept = |p: &&u64| !state.removed(&state.log[**p as usize - 1], now);
        let positions: Vec<u64> = match direction {
            Direction::Forward => {
                let start = (from_version.max(1) - 1).min(s.positions.len() as u64) as usize;
                s.positions[start..].iter().filter(kept).take(limit).copied().collect()
            }
            Direction::Backward => {
                if from_version == 0 {
                    return Ok(Vec::new());
                }
                let end = (from_version.min(s.positions.len() as u64)) as usize;
                s.positions[..end]
                    .iter()
                    .rev()
                    .filter(kept)
                    .take(limit)
                    .copied()
                    .collect()
            }
        };
        Ok(positions
            .into_iter()
            .map(|p| state.log[p as usize - 1].clone())
            .collect())
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.state();
        let start = (from_position.max(1) - 1).min(state.log.len() as u64) as usize;
        let now = now_micros();
        Ok(state.log[start..]
            .iter()
            .filter(|e| !state.removed(e, now))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn read_filtered(
        &self,
        from_position: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<FilteredRead, StoreError> {
        filter.check()?;
        let state = self.state();
        let from = from_position.max(1);
        let mut read = FilteredRead {
            events: Vec::new(),
            examined: from - 1,
        };
        let start = (from - 1).min(state.log.len() as u64) as usize;
        let now = now_micros();
        for event in state.log[start..].iter().take(FILTER_SCAN_WINDOW) {
            if read.events.len() == limit {
                break;
            }
            read.examined = event.position;
            if !state.removed(event, now) && filter.matches(event) {
                read.events.push(event.clone());
            }
        }
        Ok(read)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let mut state = self.state();
        let last = state.version(stream)?;
        Ok(state.state(stream)?.reported_version(last))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.state().log.len() as u64)
    }

    /// A pass over the streams (a map without order): memory is for tests.
    /// Lists the streams that read as present: no `$$` metadata stream, no
    /// deleted stream (see `docs/retention.md`).
    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        let state = self.state();
        let mut out: Vec<StreamSummary> = state
            .streams
            .iter()
            .filter(|(id, s)| {
                !s.positions.is_empty()
                    && id.as_str().starts_with(prefix)
                    && after.is_none_or(|a| id.as_str() > a.as_str())
                    && !is_metadata_stream(id)
                    && !state
                        .states
                        .get(*id)
                        .is_some_and(|st| st.is_absent(s.positions.len() as u64))
            })
            .map(|(id, s)| StreamSummary {
                stream_id: id.clone(),
                version: s.positions.len() as u64,
            })
            .collect();
        out.sort_unstable_by(|a, b| a.stream_id.as_str().cmp(b.stream_id.as_str()));
        out.truncate(limit);
        Ok(out)
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        EventSubscription::follow(self.clone(), self.inner.head.subscribe(), after)
    }

    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
        FilteredSubscription::follow(self.clone(), self.inner.head.subscribe(), after, filter)
    }
}
