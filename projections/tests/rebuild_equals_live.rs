//! Rebuild equals live: for random order and stock histories, the read
//! models a runner builds by following the log are the ones a rebuild from
//! scratch builds, and both are what a plain fold of the history says.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use strata_projections::{
    ModelStore, ORDER_SUMMARY, OrderSummaries, OrderSummaryProjection, Projection, ProjectionRunner, Projections,
    RebuildOptions, RunnerOptions, STOCK_LEVELS, StockLevels, StockLevelsProjection, rebuild,
};
use strata_store::EventStore;
use support::world::{World, assert_models_match};
use support::{Tally, assert_exactly_once, open_buffered, read_tally, runtime};

const WAIT: Duration = Duration::from_secs(30);

/// Follows `ops` live on sled, then rebuilds, and compares.
async fn live_then_rebuild(ops: Vec<(u8, u32, u32)>, batch_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_buffered(dir.path());
    let projections = Projections::open(&store).unwrap().with_options(RunnerOptions {
        batch_size,
        ..RunnerOptions::default()
    });
    projections.start().await.unwrap();

    let mut world = World::default();
    for (kind, a, b) in ops {
        if let Some(parts) = world.step(kind, a, b) {
            store.append_multi(parts).await.unwrap();
        }
    }
    let head = store.head_position().await.unwrap();
    projections.wait_for(head, WAIT).await.unwrap();
    assert_models_match(&world, projections.orders(), projections.stock());
    let live_orders = projections.orders().model().entries().unwrap();
    let live_stock = projections.stock().model().entries().unwrap();

    // A rebuild into fresh memory models, from the same log.
    let store: Arc<dyn EventStore> = Arc::new(store);
    let orders = ModelStore::memory(ORDER_SUMMARY).unwrap();
    let stock = ModelStore::memory(STOCK_LEVELS).unwrap();
    let options = RebuildOptions {
        batch_size: 7,
        flush_keys: 5,
        ..RebuildOptions::default()
    };
    rebuild(&*store, &orders, &OrderSummaryProjection, options, |_| {})
        .await
        .unwrap();
    rebuild(&*store, &stock, &StockLevelsProjection, options, |_| {})
        .await
        .unwrap();
    assert_eq!(orders.entries().unwrap(), live_orders, "order summary: rebuilt vs live");
    assert_eq!(stock.entries().unwrap(), live_stock, "stock levels: rebuilt vs live");

    // A rebuild in place on sled, with the runners still going: readers see
    // the old model (whole) until the swap, and the same model after it.
    let seen_during = Arc::new(AtomicBool::new(true));
    let orders_model = projections.orders().model().clone();
    let stock_model = projections.stock().model().clone();
    let generation = orders_model.generation();
    let ok = seen_during.clone();
    projections
        .rebuild(|_| {
            if orders_model.entries().unwrap() != live_orders || stock_model.entries().unwrap() != live_stock {
                ok.store(false, Ordering::SeqCst);
            }
        })
        .await
        .unwrap();
    assert!(seen_during.load(Ordering::SeqCst), "a reader saw a half-built model");
    assert_ne!(orders_model.generation(), generation, "the rebuild was swapped in");
    assert_eq!(orders_model.checkpoint(), head);
    assert_eq!(orders_model.entries().unwrap(), live_orders);
    assert_eq!(stock_model.entries().unwrap(), live_stock);
    assert_models_match(&world, projections.orders(), projections.stock());
    projections.stop().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn rebuild_equals_live(
        ops in proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 1..250),
        batch_size in 1usize..64,
    ) {
        runtime().block_on(live_then_rebuild(ops, batch_size));
    }
}

/// The same on a `MemoryStore` with in-memory read models, one long history.
#[test]
fn rebuild_equals_live_in_memory() {
    runtime().block_on(async {
        let store = strata_store::MemoryStore::new();
        let shared: Arc<dyn EventStore> = Arc::new(store.clone());
        let projections = Projections::in_memory(shared.clone()).unwrap();
        projections.start().await.unwrap();
        let mut world = World::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if let Some(parts) = world.step(seed as u8, (seed >> 8) as u32, (seed >> 40) as u32) {
                store.append_multi(parts).await.unwrap();
            }
        }
        let head = store.head_position().await.unwrap();
        projections.wait_for(head, WAIT).await.unwrap();
        assert_models_match(&world, projections.orders(), projections.stock());
        let live = (
            projections.orders().model().entries().unwrap(),
            projections.stock().model().entries().unwrap(),
        );
        projections.rebuild(|_| {}).await.unwrap();
        let rebuilt = (
            projections.orders().model().entries().unwrap(),
            projections.stock().model().entries().unwrap(),
        );
        assert_eq!(rebuilt, live);
        assert_models_match(
            &world,
            &OrderSummaries::new(projections.orders().model().clone()),
            &StockLevels::new(projections.stock().model().clone()),
        );
        projections.stop().await.unwrap();
    });
}

/// A rebuild while writers append and the live runner follows: after the
/// swap the runner goes on from the rebuilt generation, and every position
/// is applied exactly once in the model that is served.
#[test]
fn rebuild_during_live_appends_hands_over_exactly_once() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open_buffered(dir.path());
        let shared: Arc<dyn EventStore> = Arc::new(store.clone());
        let model = ModelStore::open_sled(&store, "tally").unwrap();
        let projection: Arc<dyn Projection> = Arc::new(Tally::new("tally"));
        let runner = ProjectionRunner::start(
            shared.clone(),
            model.clone(),
            projection.clone(),
            RunnerOptions {
                batch_size: 16,
                ..RunnerOptions::default()
            },
        )
        .await
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            let stop = stop.clone();
            let appended = appended.clone();
            writers.push(tokio::spawn(async move {
                let stream = strata_store::StreamId::new(format!("w-{w}")).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let e = strata_store::NewEvent::new("Ping", vec![w as u8]);
                    store
                        .append(&stream, strata_store::ExpectedVersion::Any, vec![e])
                        .await
                        .unwrap();
                    appended.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }));
        }
        while appended.load(Ordering::SeqCst) < 2_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = model.generation();
        let mut calls = 0;
        let report = rebuild(
            &*shared,
            &model,
            &*projection,
            RebuildOptions {
                batch_size: 100,
                flush_keys: 10,
                ..RebuildOptions::default()
            },
            |_| calls += 1,
        )
        .await
        .unwrap();
        assert!(calls > 1, "progress was reported");
        assert_ne!(model.generation(), before);
        while appended.load(Ordering::SeqCst) < report.events + 1_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.unwrap();
        }
        let head = store.head_position().await.unwrap();
        runner.wait_for(head, WAIT).await.unwrap();
        assert!(head > report.events, "the runner applied events after the swap");
        assert_exactly_once(&read_tally(&model), head);
        runner.stop().await.unwrap();
    });
}
