//! A rebuild swapped in while the live runner is between batches or in the
//! middle of one: the runner never applies to the new generation what the
//! rebuild already put there. Deterministic: a gate holds the runner's
//! subscription, or its `apply`, at a chosen position while the rebuild
//! runs and swaps.

mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use strata_projections::{
    ModelStore, Projection, ProjectionError, ProjectionRunner, RebuildOptions, RunnerOptions, WriteSet, rebuild,
};
use strata_store::{
    AppendResult, Direction, EventStore, EventSubscription, ExpectedVersion, MemoryStore, NewEvent, RecordedEvent,
    StoreError, StreamAppend, StreamId,
};
use support::{POISON, Tally, assert_exactly_once, read_tally};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);

/// A store whose subscriptions deliver no event past the gate's position
/// until the gate moves.
#[derive(Clone)]
struct GatedStore {
    inner: MemoryStore,
    gate: watch::Sender<u64>,
}

#[async_trait]
impl EventStore for GatedStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append(stream, expected, events).await
    }
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
        let gate = self.gate.subscribe();
        EventSubscription::from_stream(self.inner.subscribe_all(after).then(move |item| {
            let mut gate = gate.clone();
            async move {
                if let Ok(event) = &item {
                    let position = event.position;
                    let _ = gate.wait_for(|open| *open >= position).await;
                }
                item
            }
        }))
    }
    fn subscribe_filtered(&self, after: u64, filter: strata_store::EventFilter) -> strata_store::FilteredSubscription {
        self.inner.subscribe_filtered(after, filter)
    }
}

async fn ticks(store: &dyn EventStore, n: usize) -> u64 {
    let events = (0..n).map(|_| NewEvent::new("Tick", "{}")).collect();
    store
        .append(&StreamId::new("a").unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap()
        .last_position
}

/// Runner at checkpoint 90 between batches; a rebuild replays to 100 and
/// swaps; only then does the runner receive 91..=100, which the new
/// generation already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_received_after_a_swap_is_not_applied_to_the_new_generation() {
    let memory = MemoryStore::new();
    let gated = GatedStore {
        inner: memory.clone(),
        gate: watch::Sender::new(90),
    };
    ticks(&memory, 90).await;
    let model = ModelStore::memory("tally").unwrap();
    let projection = Arc::new(Tally::new("tally"));
    let runner = ProjectionRunner::start(
        Arc::new(gated.clone()),
        model.clone(),
        projection.clone(),
        RunnerOptions::default(),
    )
    .await
    .unwrap();
    runner.wait_for(90, WAIT).await.unwrap();
    // 91..=100 in one append: the runner's subscription holds them back.
    assert_eq!(ticks(&memory, 10).await, 100);

    let before = model.generation();
    let report = rebuild(&memory, &model, &*projection, RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.events, 100);
    assert_ne!(model.generation(), before, "swapped");

    gated.gate.send_replace(u64::MAX);
    let head = ticks(&memory, 5).await;
    runner.wait_for(head, WAIT).await.unwrap();
    assert_exactly_once(&read_tally(&model), head);
    runner.stop().await.unwrap();
}

/// Holds `apply` of the event at `at` (once) until released.
struct Hold {
    inner: Tally,
    at: u64,
    reached: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Projection for Hold {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn apply(&self, event: &RecordedEvent, model: &mut WriteSet) -> Result<(), ProjectionError> {
        if event.position == self.at
            && let Some(reached) = self.reached.lock().unwrap().take()
        {
            reached.send(()).unwrap();
            self.release.lock().unwrap().recv_timeout(WAIT).unwrap();
        }
        self.inner.apply(event, model)
    }
}

/// Runner applying 91..=100 on the old generation fails at 95; meanwhile a
/// rebuild swapped in a generation holding all of 1..=100. The runner must
/// not re-apply 91..=94 to the new generation (its "commit what came before
/// the failure" step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_across_a_swap_commits_nothing_to_the_new_generation() {
    let memory = MemoryStore::new();
    let gated = GatedStore {
        inner: memory.clone(),
        gate: watch::Sender::new(90),
    };
    ticks(&memory, 90).await;
    let model = ModelStore::memory("tally").unwrap();
    let (poisoned, _flag) = Tally::poisoned("tally");
    let (reached_tx, reached) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let hold = Arc::new(Hold {
        inner: poisoned,
        at: 95,
        reached: Mutex::new(Some(reached_tx)),
        release: Mutex::new(release_rx),
    });
    let runner = ProjectionRunner::start(Arc::new(gated.clone()), model.clone(), hold, RunnerOptions::default())
        .await
        .unwrap();
    runner.wait_for(90, WAIT).await.unwrap();
    // 91..=100 in one append, 95 a poison: one batch for the runner.
    let mut events: Vec<NewEvent> = (0..10).map(|_| NewEvent::new("Tick", "{}")).collect();
    events[4] = NewEvent::new(POISON, "{}");
    memory
        .append(&StreamId::new("a").unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap();
    gated.gate.send_replace(u64::MAX);
    reached.recv_timeout(WAIT).unwrap();

    // While the runner is inside the batch: a rebuild (whose projection
    // takes the poison) replays to 100 and swaps.
    let healthy = Tally::new("tally");
    rebuild(&memory, &model, &healthy, RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    release.send(()).unwrap();

    let head = ticks(&memory, 5).await;
    runner.wait_for(head, WAIT).await.unwrap();
    assert_exactly_once(&read_tally(&model), head);
    runner.stop().await.unwrap();
}
