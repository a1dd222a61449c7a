//! Tests of rebuilds: swaps of several models, and reading ahead.

use std::sync::Arc;

use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentStore, StreamId};

use super::*;

/// A store of `n` events, 10 to an append, in streams of their own
/// (`s-0`, `s-1`, ...), and the directory it lives in.
pub(super) async fn ticks(n: usize) -> (tempfile::TempDir, SegmentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    for i in 0..n / 10 {
        let events = (0..10).map(|_| NewEvent::new("Tick", "{}")).collect();
        store
            .append(
                &StreamId::new(format!("s-{i}")).unwrap(),
                ExpectedVersion::NoStream,
                events,
            )
            .await
            .unwrap();
    }
    (dir, store)
}

/// Counts events.
struct Count(&'static str);

impl Projection for Count {
    fn name(&self) -> &str {
        self.0
    }
    fn apply(&self, _: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        let n: u64 = ws.get_value(b"n")?.unwrap_or(0);
        ws.put_value(b"n".to_vec(), &(n + 1))
    }
}

/// Records each event's position as a key.
struct Positions;

impl Projection for Positions {
    fn name(&self) -> &str {
        "positions"
    }
    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        ws.put(event.position.to_be_bytes().to_vec(), Vec::new());
        Ok(())
    }
}

/// The positions a [`Positions`] model holds, in key order.
fn positions_in(model: &ModelStore) -> Vec<u64> {
    let entries = model.entries().unwrap();
    entries
        .iter()
        .map(|(k, _)| u64::from_be_bytes(k[..].try_into().unwrap()))
        .collect()
}

/// A sled model of each of `names` on `store`.
fn models_named(store: &SegmentStore, names: &[&str]) -> Vec<ModelStore> {
    names.iter().map(|n| ModelStore::open_sled(store, n).unwrap()).collect()
}

/// A rebuild that reads ahead applies every event once, in order (a
/// repeat or a gap fails the replay's order check), on a multi-threaded
/// runtime and on a current-thread one.
#[test]
fn a_rebuild_reading_ahead_applies_every_event_once() {
    for multi_thread in [true, false] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        .unwrap();
        runtime.block_on(async {
            let (_dir, store) = ticks(500).await;
            let model = ModelStore::open_sled(&store, "positions").unwrap();
            let shared: Arc<dyn EventStore> = Arc::new(store.clone());
            let options = RebuildOptions {
                batch_size: 7,
                flush_keys: 40,
                ..RebuildOptions::default()
            };
            let targets: [(&ModelStore, &dyn Projection); 1] = [(&model, &Positions)];
            let reports = rebuild_all_if(&store, &targets, options, |_| {}, None, Some(shared))
                .await
                .unwrap();
            assert_eq!(reports[0].events, 500);
            assert_eq!(
                positions_in(&model),
                (1..=500).collect::<Vec<u64>>(),
                "multi_thread: {multi_thread}"
            );
        });
    }
}

/// Models rebuilt together are swapped in together: when writing the
/// pointers fails for one, every model (on disk and in memory) stays on
/// its old generation.
#[tokio::test]
async fn a_failed_swap_leaves_every_model_on_its_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let events = (0..5).map(|_| NewEvent::new("Tick", "{}")).collect();
    store
        .append(&StreamId::new("a").unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap();
    let first = ModelStore::open_sled(&store, "swap_first").unwrap();
    let second = ModelStore::open_sled(&store, "swap_second").unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    crate::backend::sled::failpoint::fail_pointer_write("swap_second");
    let result = {
        let targets: [(&ModelStore, &dyn Projection); 2] =
            [(&first, &Count("swap_first")), (&second, &Count("swap_second"))];
        rebuild_all(&*shared, &targets, RebuildOptions::default(), |_| {}).await
    };
    assert!(result.is_err(), "the injected failure is reported");
    assert_eq!((first.generation(), second.generation()), (1, 1), "in memory");
    assert_eq!((first.checkpoint(), second.checkpoint()), (0, 0));
    drop((first, second));
    let first = ModelStore::open_sled(&store, "swap_first").unwrap();
    let second = ModelStore::open_sled(&store, "swap_second").unwrap();
    assert_eq!((first.generation(), second.generation()), (1, 1), "on disk");
}

/// Models in two sled databases cannot share a transaction: they are
/// still both swapped in.
#[tokio::test]
async fn models_in_different_databases_are_swapped_in_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path().join("log")).unwrap();
    let events = (0..3).map(|_| NewEvent::new("Tick", "{}")).collect();
    store
        .append(&StreamId::new("a").unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap();
    let other_db = strata_store::LocalTables::open(dir.path().join("models"), strata_store::Durability::Fsync).unwrap();
    let first = ModelStore::open_sled(&store, "apart_first").unwrap();
    let second = ModelStore::open_in_tables(&other_db, "apart_second").unwrap();
    let targets: [(&ModelStore, &dyn Projection); 2] =
        [(&first, &Count("apart_first")), (&second, &Count("apart_second"))];
    rebuild_all(&store, &targets, RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!((first.generation(), second.generation()), (2, 2));
    assert_eq!((first.checkpoint(), second.checkpoint()), (3, 3));
    assert_eq!(second.get_value::<u64>(b"n").unwrap(), Some(3));
}

/// Fails at one position.
struct FailsAt(&'static str, u64);

impl Projection for FailsAt {
    fn name(&self) -> &str {
        self.0
    }
    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        if event.position == self.1 {
            return Err(ProjectionError::Corrupt {
                projection: self.0.to_string(),
                key: String::new(),
                detail: format!("fails at {}", self.1),
            });
        }
        Count(self.0).apply(event, ws)
    }
}

/// Several models fold a page side by side (in lanes; there are at least
/// two cores under test), committing every 20 changed keys, so a lane
/// also reads what its model committed: each sees every event once, in
/// order, and they are swapped in together with the same checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_folded_side_by_side_each_apply_every_event_once() {
    let (_dir, store) = ticks(300).await;
    let names = ["lanes_a", "lanes_b", "lanes_c"];
    let models = models_named(&store, &names);
    let counts: Vec<Count> = names.iter().map(|n| Count(n)).collect();
    let positions = ModelStore::open_sled(&store, "positions").unwrap();
    let mut targets: Vec<(&ModelStore, &dyn Projection)> = models
        .iter()
        .zip(&counts)
        .map(|(m, c)| (m, c as &dyn Projection))
        .collect();
    targets.push((&positions, &Positions));
    let options = RebuildOptions {
        batch_size: 16,
        flush_keys: 20,
        ..RebuildOptions::default()
    };
    let reports = rebuild_all(&store, &targets, options, |_| {}).await.unwrap();
    assert!(reports.iter().all(|r| r.events == 300));
    for model in &models {
        assert_eq!(model.get_value::<u64>(b"n").unwrap(), Some(300), "{}", model.name());
        assert_eq!(model.checkpoint(), 300);
    }
    assert_eq!(positions_in(&positions), (1..=300).collect::<Vec<u64>>());
}

/// When models folded side by side fail on the same page, the rebuild
/// reports the first failed model's error, in the order given, and no
/// model is swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_failing_in_its_lane_fails_the_rebuild_and_nothing_is_swapped() {
    let (_dir, store) = ticks(100).await;
    let names = ["fail_ok", "fail_late", "fail_early"];
    let models = models_named(&store, &names);
    let projections: [&dyn Projection; 3] = [&Count("fail_ok"), &FailsAt("fail_late", 60), &FailsAt("fail_early", 50)];
    let targets: Vec<(&ModelStore, &dyn Projection)> = models.iter().zip(projections).collect();
    let options = RebuildOptions {
        batch_size: 100,
        ..RebuildOptions::default()
    };
    match rebuild_all(&store, &targets, options, |_| {}).await {
        Err(ProjectionError::Apply {
            projection, position, ..
        }) => assert_eq!((projection.as_str(), position), ("fail_late", 60)),
        other => panic!("expected the first model's apply error, got {other:?}"),
    }
    for model in &models {
        assert_eq!((model.generation(), model.checkpoint()), (1, 0), "{}", model.name());
    }
}

/// Panics at one position.
struct PanicsAt(u64);

impl Projection for PanicsAt {
    fn name(&self) -> &str {
        "panics"
    }
    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        assert!(event.position != self.0, "the projection panics at {}", self.0);
        Count("panics").apply(event, ws)
    }
}

/// A panic in a model folded in a lane of its own reaches the rebuild's
/// caller, as it would without lanes. (The lane may run on the caller's
/// thread, should its own start late: `threads.rs` tests a panic that
/// crosses a thread.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "the projection panics at 42")]
async fn a_model_panicking_in_its_lane_panics_the_rebuild() {
    let (_dir, store) = ticks(100).await;
    let first = ModelStore::open_sled(&store, "calm").unwrap();
    let second = ModelStore::open_sled(&store, "panics").unwrap();
    let targets: [(&ModelStore, &dyn Projection); 2] = [(&first, &Count("calm")), (&second, &PanicsAt(42))];
    let options = RebuildOptions {
        batch_size: 100,
        ..RebuildOptions::default()
    };
    let _ = rebuild_all(&store, &targets, options, |_| {}).await;
}
