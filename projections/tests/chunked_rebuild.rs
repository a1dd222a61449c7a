//! A rebuild folds the log in memory and writes it in chunks whose size is
//! a memory budget: from a commit after every event to one commit for the
//! whole log. Whatever the chunks, the rebuilt models equal the live ones
//! byte for byte, after random order and stock histories that end with
//! deleted streams (soft and hard) and an order placed again after its
//! delete: a fold that drops a key it put and removed again must never drop
//! a removal of a key an earlier chunk wrote. On sled (proptest) and on
//! PostgreSQL (where the first chunk is written with `COPY` and the rows,
//! not only this process's copy, are compared, through another process).
//! The PostgreSQL test needs a server: `scripts/test-postgres.sh cargo test
//! -p strata-projections --features postgres --test chunked_rebuild`.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use strata_aggregates::domain::order::{OrderEvent, OrderLine};
use strata_aggregates::{Format, encode};
use strata_projections::{
    OrderSummaryProjection, Projection, Projections, RebuildOptions, RunnerOptions, StockLevelsProjection, rebuild_all,
};
use strata_store::{DeleteMode, EventStore, ExpectedVersion, StreamId};
use support::world::{World, assert_models_match};
use support::{open_buffered, runtime};

const WAIT: Duration = Duration::from_secs(30);

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The order summary's and stock levels' entries.
fn entries(p: &Projections) -> (Entries, Entries) {
    (
        p.orders().model().entries().unwrap(),
        p.stock().model().entries().unwrap(),
    )
}

/// Appends the history of `ops`, checks the live models against the
/// world, then deletes streams (`deletes`: which order or SKU, and whether
/// hard) and places the first soft-deleted order again. Returns the head.
async fn history(
    store: &dyn EventStore,
    projections: &Projections,
    ops: &[(u8, u32, u32)],
    deletes: &[(bool, u16, bool)],
) -> u64 {
    let mut world = World::default();
    for &(kind, a, b) in ops {
        if let Some(parts) = world.step(kind, a, b) {
            store.append_multi(parts).await.unwrap();
        }
    }
    let head = store.head_position().await.unwrap();
    projections.wait_for(head, WAIT).await.unwrap();
    assert_models_match(&world, projections.orders(), projections.stock());

    let orders: Vec<String> = projections
        .orders()
        .all()
        .unwrap()
        .into_iter()
        .map(|o| o.order_id)
        .collect();
    let skus: Vec<String> = projections.stock().all().unwrap().into_iter().map(|s| s.sku).collect();
    let mut deleted: Vec<String> = Vec::new();
    let mut placed_again = None;
    for &(order, which, hard) in deletes {
        let stream = match (order, orders.is_empty(), skus.is_empty()) {
            (true, false, _) => format!("order-{}", orders[usize::from(which) % orders.len()]),
            (false, _, false) => format!("stock-{}", skus[usize::from(which) % skus.len()]),
            _ => continue,
        };
        if deleted.contains(&stream) {
            continue;
        }
        let mode = if hard { DeleteMode::Hard } else { DeleteMode::Soft };
        store
            .delete_stream(&StreamId::new(stream.clone()).unwrap(), ExpectedVersion::Any, mode)
            .await
            .unwrap();
        if !hard && placed_again.is_none() && stream.starts_with("order-") {
            placed_again = Some(stream.clone());
        }
        deleted.push(stream);
    }
    if let Some(stream) = placed_again {
        let id = stream.trim_start_matches("order-").to_string();
        let placed = OrderEvent::OrderPlaced {
            order_id: id,
            customer: "returning".into(),
            lines: vec![OrderLine {
                sku: "sku-none".into(),
                quantity: 1,
                unit_price_cents: 7,
            }],
            total_cents: 7,
        };
        store
            .append(
                &StreamId::new(stream).unwrap(),
                ExpectedVersion::NoStream,
                vec![encode(&placed, Format::Bincode).unwrap()],
            )
            .await
            .unwrap();
    }
    let head = store.head_position().await.unwrap();
    projections.wait_for(head, WAIT).await.unwrap();
    head
}

/// The chunkings every backend is rebuilt with: a commit per event, small
/// chunks by key count, a commit per batch read from the log (any budget
/// is exceeded), and the default (the whole log in one commit here).
fn chunkings(batch_size: usize, flush_keys: usize) -> [(&'static str, RebuildOptions); 4] {
    let d = RebuildOptions::default();
    [
        (
            "a commit per event",
            RebuildOptions {
                batch_size: 1,
                flush_bytes: 1,
                ..d
            },
        ),
        (
            "small chunks by keys",
            RebuildOptions {
                batch_size,
                flush_keys,
                ..d
            },
        ),
        (
            "a commit per batch",
            RebuildOptions {
                batch_size,
                flush_bytes: 1,
                ..d
            },
        ),
        ("the default: one commit", d),
    ]
}

/// Rebuilds both models in place (the runners going on) with each
/// chunking and compares them with `live`, and with what `reopened` reads.
async fn rebuilds_equal_live<F, Fut>(
    store: &dyn EventStore,
    projections: &Projections,
    live: &(Entries, Entries),
    batch_size: usize,
    flush_keys: usize,
    reopened: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<(Entries, Entries)>>,
{
    for (what, options) in chunkings(batch_size, flush_keys) {
        let generation = projections.orders().model().generation();
        let targets: [(&strata_projections::ModelStore, &dyn Projection); 2] = [
            (projections.orders().model(), &OrderSummaryProjection),
            (projections.stock().model(), &StockLevelsProjection),
        ];
        rebuild_all(store, &targets, options, |_| {}).await.unwrap();
        assert_ne!(
            projections.orders().model().generation(),
            generation,
            "{what}: swapped in"
        );
        assert_eq!(&entries(projections), live, "{what}: rebuilt vs live");
        if let Some(stored) = reopened().await {
            assert_eq!(&stored, live, "{what}: rebuilt as stored vs live");
        }
    }
}

async fn on_sled(ops: Vec<(u8, u32, u32)>, deletes: Vec<(bool, u16, bool)>, batch_size: usize, flush_keys: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_buffered(dir.path());
    let projections = Projections::open(&store).unwrap().with_options(RunnerOptions {
        batch_size,
        ..RunnerOptions::default()
    });
    projections.start().await.unwrap();
    history(&store, &projections, &ops, &deletes).await;
    let live = entries(&projections);
    // sled's trees are what is stored: nothing to read apart.
    rebuilds_equal_live(&store, &projections, &live, batch_size, flush_keys, || async { None }).await;
    assert!(
        projections
            .models()
            .iter()
            .all(|m| m.run_state() == strata_projections::RunState::Running),
        "the runners went on"
    );
    projections.stop().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn chunked_rebuilds_equal_live_on_sled(
        ops in proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 1..250),
        deletes in proptest::collection::vec((any::<bool>(), any::<u16>(), any::<bool>()), 0..6),
        batch_size in 1usize..40,
        flush_keys in 1usize..12,
    ) {
        runtime().block_on(on_sled(ops, deletes, batch_size, flush_keys));
    }
}

/// On PostgreSQL, one longer history; another process opens the models
/// after each rebuild and reads them from the rows.
#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn chunked_rebuilds_equal_live_on_postgres() {
    #[cfg(feature = "postgres")]
    runtime().block_on(async {
        use support::pg::store;
        let db = strata_testkit::TestDatabase::new();
        let a = store(&db, "a").await;
        let projections = Projections::open_postgres(&a)
            .await
            .unwrap()
            .with_options(RunnerOptions {
                batch_size: 5,
                ..RunnerOptions::default()
            });
        projections.start().await.unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let ops: Vec<(u8, u32, u32)> = (0..500)
            .map(|_| {
                let s = next();
                (s as u8, (s >> 8) as u32, (s >> 40) as u32)
            })
            .collect();
        let deletes = [(true, 3, false), (true, 11, true), (false, 1, false), (true, 17, false)];
        history(&a, &projections, &ops, &deletes).await;
        let live = entries(&projections);
        let reopened = || async {
            let b = store(&db, "b").await;
            let other = Projections::open_postgres(&b).await.unwrap();
            Some(entries(&other))
        };
        rebuilds_equal_live(&a, &projections, &live, 7, 5, reopened).await;
        assert!(
            projections
                .models()
                .iter()
                .all(|m| m.run_state() == strata_projections::RunState::Running)
        );
        projections.stop().await.unwrap();
    });
}
