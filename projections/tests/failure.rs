//! Failures: an `apply` error stops the runner at that position with its
//! error, and a restart after the fix resumes there; a checkpoint beyond
//! the log's head is refused; read-your-writes waits and times out.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_projections::{
    ModelStore, ProjectionError, ProjectionRunner, RebuildOptions, RunState, RunnerOptions, rebuild,
};
use strata_store::{EventStore, ExpectedVersion, MemoryStore, NewEvent, SegmentStore, StreamId};
use support::{POISON, Tally, assert_exactly_once, read_tally};

async fn append(store: &dyn EventStore, stream: &str, event_type: &str, n: usize) -> u64 {
    let events = (0..n).map(|_| NewEvent::new(event_type, "{}")).collect();
    store
        .append(&StreamId::new(stream).unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap()
        .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_apply_stops_at_its_position_and_a_restart_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    append(&store, "a", "Tick", 10).await;
    let poison = append(&store, "b", POISON, 1).await;
    let head = append(&store, "a", "Tick", 5).await;
    assert_eq!(poison, 11);

    let model = ModelStore::open_sled(&store, "tally").unwrap();
    let (tally, poisoned) = Tally::poisoned("tally");
    let tally = Arc::new(tally);
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    // One batch holds all 16 events: the 10 before the poison are
    // committed, the poison and the 5 after it are not.
    let runner = ProjectionRunner::start(
        shared.clone(),
        model.clone(),
        tally.clone(),
        RunnerOptions {
            batch_size: 100,
            ..RunnerOptions::default()
        },
    )
    .await
    .unwrap();
    let error = runner.join().await.unwrap_err();
    match &error {
        ProjectionError::Apply {
            projection,
            position,
            event_type,
            source,
            ..
        } => {
            assert_eq!(
                (projection.as_str(), *position, event_type.as_str()),
                ("tally", poison, POISON)
            );
            assert!(matches!(**source, ProjectionError::Inconsistent { .. }), "{source:?}");
        }
        other => panic!("expected an apply error, got {other:?}"),
    }
    assert_eq!(model.checkpoint(), poison - 1);
    assert_eq!(
        model.run_state(),
        RunState::Failed {
            position: Some(poison),
            error: error.to_string()
        }
    );
    assert_exactly_once(&read_tally(&model), poison - 1);
    // Nobody follows the log now: waiting for the poison fails at once with the failure.
    match model.wait_for(poison, Duration::from_secs(30)).await {
        Err(ProjectionError::NotRunning {
            applied,
            failure: Some(_),
            ..
        }) => assert_eq!(applied, poison - 1),
        other => panic!("expected NotRunning, got {other:?}"),
    }

    // The checkpoint is durable: reopen everything, fix the cause, restart.
    drop((model, shared));
    drop(store);
    let store = SegmentStore::open(dir.path()).unwrap();
    let model = ModelStore::open_sled(&store, "tally").unwrap();
    assert_eq!(model.checkpoint(), poison - 1);
    poisoned.store(false, Ordering::SeqCst);
    let runner = ProjectionRunner::start(Arc::new(store.clone()), model.clone(), tally, RunnerOptions::default())
        .await
        .unwrap();
    runner.wait_for(head, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();
    assert_exactly_once(&read_tally(&model), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_beyond_the_head_is_refused_until_a_rebuild() {
    // A read model that saw 10 events, then a log with only 6 (as after a
    // crash that lost acknowledged appends of a non-durable store).
    let model = ModelStore::memory("tally").unwrap();
    let projection = Arc::new(Tally::new("tally"));
    let long = MemoryStore::new();
    let ten = append(&long, "a", "Tick", 10).await;
    let runner = ProjectionRunner::start(
        Arc::new(long),
        model.clone(),
        projection.clone(),
        RunnerOptions::default(),
    )
    .await
    .unwrap();
    runner.wait_for(ten, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();

    let short = MemoryStore::new();
    let six = append(&short, "a", "Tick", 6).await;
    let shared: Arc<dyn EventStore> = Arc::new(short.clone());
    let refused = ProjectionRunner::start(
        shared.clone(),
        model.clone(),
        projection.clone(),
        RunnerOptions::default(),
    )
    .await;
    match refused {
        Err(ProjectionError::CheckpointAhead { checkpoint, head, .. }) => assert_eq!((checkpoint, head), (ten, six)),
        other => panic!("expected CheckpointAhead, got {other:?}"),
    }
    assert_ne!(
        model.run_state(),
        RunState::Running,
        "the refused runner let go of the model"
    );

    rebuild(&*shared, &model, &*projection, RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(model.checkpoint(), six);
    assert_exactly_once(&read_tally(&model), six);
    let runner = ProjectionRunner::start(shared, model.clone(), projection, RunnerOptions::default())
        .await
        .unwrap();
    let next = append(&short, "a", "Tick", 2).await;
    runner.wait_for(next, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();
    assert_exactly_once(&read_tally(&model), next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_once_applied_and_times_out_otherwise() {
    let store = MemoryStore::new();
    let model = ModelStore::memory("tally").unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let runner = ProjectionRunner::start(
        shared,
        model.clone(),
        Arc::new(Tally::new("tally")),
        RunnerOptions::default(),
    )
    .await
    .unwrap();
    let p = append(&store, "a", "Tick", 3).await;
    runner.wait_for(p, Duration::from_secs(30)).await.unwrap();
    assert_exactly_once(&read_tally(&model), p);
    assert_eq!(runner.lag().await.unwrap(), 0);

    match runner.wait_for(p + 1, Duration::from_millis(50)).await {
        Err(ProjectionError::Timeout { position, applied, .. }) => assert_eq!((position, applied), (p + 1, p)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // A second runner on the same model is refused.
    let second = ProjectionRunner::start(
        Arc::new(store.clone()),
        model.clone(),
        Arc::new(Tally::new("tally")),
        RunnerOptions::default(),
    )
    .await;
    assert!(
        matches!(second, Err(ProjectionError::AlreadyRunning { .. })),
        "{second:?}"
    );
    runner.stop().await.unwrap();
    assert_eq!(model.run_state(), RunState::Stopped);
    let late = append(&store, "a", "Tick", 1).await;
    assert!(matches!(
        model.wait_for(late, Duration::from_secs(30)).await,
        Err(ProjectionError::NotRunning { failure: None, .. })
    ));
}

/// Panics on `Boom` events while armed.
struct Boom {
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl strata_projections::Projection for Boom {
    fn name(&self) -> &str {
        "boom"
    }

    fn apply(
        &self,
        event: &strata_store::RecordedEvent,
        model: &mut strata_projections::WriteSet,
    ) -> Result<(), ProjectionError> {
        if event.event_type == "Boom" && self.armed.load(Ordering::SeqCst) {
            panic!("boom at position {}", event.position);
        }
        model.put_value(b"last".to_vec(), &event.position)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_apply_releases_the_model() {
    let store = MemoryStore::new();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let model = ModelStore::memory("boom").unwrap();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let projection = Arc::new(Boom { armed: armed.clone() });
    let runner = ProjectionRunner::start(
        shared.clone(),
        model.clone(),
        projection.clone(),
        RunnerOptions::default(),
    )
    .await
    .unwrap();
    let ticks = append(&store, "a", "Tick", 3).await;
    runner.wait_for(ticks, Duration::from_secs(30)).await.unwrap();
    let boom = append(&store, "a", "Boom", 1).await;

    // The waiter learns at once that nobody will apply the position, and why.
    match model.wait_for(boom, Duration::from_secs(30)).await {
        Err(ProjectionError::NotRunning {
            applied,
            failure: Some(failure),
            ..
        }) => {
            assert_eq!(applied, ticks);
            assert!(
                failure.contains("panicked") && failure.contains("boom at position 4"),
                "{failure}"
            );
        }
        other => panic!("expected NotRunning with the failure, got {other:?}"),
    }
    assert!(
        matches!(model.run_state(), RunState::Failed { .. }),
        "{:?}",
        model.run_state()
    );
    drop(runner); // its join() would re-raise the panic

    // The claim was released: a new runner starts and resumes at the event.
    armed.store(false, Ordering::SeqCst);
    let runner = ProjectionRunner::start(shared, model.clone(), projection, RunnerOptions::default())
        .await
        .unwrap();
    runner.wait_for(boom, Duration::from_secs(30)).await.unwrap();
    assert_eq!(model.get_value::<u64>(b"last").unwrap(), Some(boom));
    runner.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_event_was_replaced_is_refused_until_a_rebuild() {
    // A read model that saw 10 events, then a log that lost them and has
    // since taken 12 others (as a non-durable store after a crash, then new
    // appends): the head is past the checkpoint, but position 10 holds
    // another event.
    let model = ModelStore::memory("tally").unwrap();
    let projection = Arc::new(Tally::new("tally"));
    let long = MemoryStore::new();
    let ten = append(&long, "a", "Tick", 10).await;
    let runner = ProjectionRunner::start(
        Arc::new(long.clone()),
        model.clone(),
        projection.clone(),
        RunnerOptions::default(),
    )
    .await
    .unwrap();
    runner.wait_for(ten, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();
    let applied = long.read_all(ten, 1).await.unwrap()[0].id;

    let other = MemoryStore::new();
    append(&other, "b", "Tick", 12).await;
    let now_there = other.read_all(ten, 1).await.unwrap()[0].id;
    let shared: Arc<dyn EventStore> = Arc::new(other.clone());
    let refused = ProjectionRunner::start(
        shared.clone(),
        model.clone(),
        projection.clone(),
        RunnerOptions::default(),
    )
    .await;
    match refused {
        Err(ProjectionError::CheckpointMismatch {
            checkpoint,
            expected,
            found,
            ..
        }) => assert_eq!((checkpoint, expected, found), (ten, applied, Some(now_there))),
        other => panic!("expected CheckpointMismatch, got {other:?}"),
    }
    assert_ne!(
        model.run_state(),
        RunState::Running,
        "the refused runner let go of the model"
    );

    rebuild(&*shared, &model, &*projection, RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    let runner = ProjectionRunner::start(shared, model.clone(), projection, RunnerOptions::default())
        .await
        .unwrap();
    let next = append(&other, "b", "Tick", 2).await;
    runner.wait_for(next, Duration::from_secs(30)).await.unwrap();
    runner.stop().await.unwrap();
    assert_exactly_once(&read_tally(&model), next);
}
