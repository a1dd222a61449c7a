//! Aggregate benches, side by side in one run:
//!
//! - `load/{events}/{full|snapshot}`: loading one stock item whose stream
//!   holds 10,000 or 100,000 events, replaying them all vs. starting from a
//!   snapshot (every 1,000 events) and replaying the tail (499 events).
//! - `execute/{durability}/{hot|spread}`: `execute(None)` throughput with 16
//!   concurrent callers, all on one hot stream vs. spread over 1,000
//!   streams, with the default retry policy and snapshots every 100 events
//!   (without them every execute on the hot stream would replay its whole,
//!   growing history); conflicts (retries) and commands that ran out of
//!   attempts are printed after each case.
//!
//! All on SegmentStore. Setup writes go through `append` in batches; the load
//! stores use `Durability::Buffered` (loads only read). The execute cases
//! run once with the default `Durability::Fsync` and once `Buffered`.
//!
//! `cargo bench --bench aggregates`

/// The workloads of `strata bench` (`src/cli/workload/`), compiled here too.
#[path = "../src/cli/workload/mod.rs"]
#[allow(dead_code, unused_imports)]
mod bench_workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bench_workload::long_stock_stream;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::aggregates::domain::stock::{StockCommand, StockEvent, StockItem};
use strata::aggregates::{Format, Repository, RepositoryError, encode};
use strata::store::{Durability, EventStore, ExpectedVersion, SegmentOptions, SegmentStore, StreamAppend, StreamId};
use tokio::runtime::Runtime;

const SNAPSHOT_EVERY: u64 = 1_000;
const TAIL: u64 = 499;
const CALLERS: usize = 16;
const COMMANDS_PER_CALLER: usize = 25;
const SPREAD_STREAMS: usize = 1_000;
const EXECUTE_SNAPSHOT_EVERY: u64 = 100;
const SEED: u64 = 0x5eed;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(dir: &std::path::Path, durability: Durability) -> Arc<dyn EventStore> {
    let options = SegmentOptions {
        durability,
        ..SegmentOptions::default()
    };
    Arc::new(SegmentStore::open_with(dir, options).expect("open the embedded store"))
}

/// The workloads, shared by the benches.
mod workload {
    use super::*;

    /// Registers `count` stock items `s{i}` in one append.
    pub async fn register_many(store: &dyn EventStore, count: usize) {
        let appends = (0..count)
            .map(|i| {
                let event = StockEvent::StockItemRegistered {
                    sku: format!("s{i}"),
                    name: format!("item {i}"),
                };
                StreamAppend::new(
                    StreamId::new(format!("stock-s{i}")).unwrap(),
                    ExpectedVersion::NoStream,
                    vec![encode(&event, Format::Bincode).unwrap()],
                )
            })
            .collect();
        store.append_multi(appends).await.unwrap();
    }

    #[derive(Default)]
    pub struct Tally {
        pub commands: AtomicU64,
        pub retries: AtomicU64,
        pub exhausted: AtomicU64,
    }

    /// `CALLERS` concurrent callers, each executing `COMMANDS_PER_CALLER`
    /// receives, on `s0` or on a stream drawn from `s0..s{streams}`.
    pub async fn execute_batch(repo: &Repository<StockItem>, streams: usize, tally: &Arc<Tally>, round: u64) {
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let repo = repo.clone();
                let tally = tally.clone();
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(SEED ^ (round << 8) ^ caller as u64);
                    for _ in 0..COMMANDS_PER_CALLER {
                        let id = if streams == 1 {
                            "s0".to_string()
                        } else {
                            format!("s{}", rng.random_range(0..streams))
                        };
                        tally.commands.fetch_add(1, Ordering::Relaxed);
                        match repo.execute(&id, StockCommand::Receive { quantity: 1 }, None).await {
                            Ok(done) => {
                                tally.retries.fetch_add(u64::from(done.retries), Ordering::Relaxed);
                            }
                            Err(RepositoryError::Conflict(c)) => {
                                tally.retries.fetch_add(u64::from(c.attempts - 1), Ordering::Relaxed);
                                tally.exhausted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("execute failed: {e}"),
                        }
                    }
                })
            })
            .collect();
        for c in callers {
            c.await.unwrap();
        }
    }
}

fn load(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Buffered);
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for events in [10_000u64, 100_000] {
        let sku = format!("long{events}");
        rt.block_on(long_stock_stream(&store, &sku, events, SNAPSHOT_EVERY, TAIL))
            .unwrap();
        let full = Repository::<StockItem>::new(store.clone());
        let snap = Repository::<StockItem>::new(store.clone()).with_snapshots(SNAPSHOT_EVERY);
        let check = rt.block_on(snap.load(&sku)).unwrap();
        assert_eq!(check.version, events);
        assert_eq!(check.replayed, TAIL);
        eprintln!(
            "load/{events}: snapshot at version {:?}, tail {} events",
            check.snapshot_version, check.replayed
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new(format!("{events}"), "full"), |b| {
            b.iter(|| rt.block_on(full.load(&sku)).unwrap())
        });
        group.bench_function(BenchmarkId::new(format!("{events}"), "snapshot"), |b| {
            b.iter(|| rt.block_on(snap.load(&sku)).unwrap())
        });
    }
    group.finish();
}

fn execute(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("execute");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements((CALLERS * COMMANDS_PER_CALLER) as u64));
    for (durability, name) in [(Durability::Fsync, "fsync"), (Durability::Buffered, "buffered")] {
        for (streams, case) in [(1usize, "hot"), (SPREAD_STREAMS, "spread")] {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), durability);
            rt.block_on(workload::register_many(&*store, streams));
            let repo = Repository::<StockItem>::new(store.clone()).with_snapshots(EXECUTE_SNAPSHOT_EVERY);
            let tally = Arc::new(workload::Tally::default());
            let started = Instant::now();
            let round = AtomicU64::new(0);
            group.bench_function(BenchmarkId::new(name, case), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let r = round.fetch_add(1, Ordering::Relaxed);
                            workload::execute_batch(&repo, streams, &tally, r).await;
                        }
                        start.elapsed()
                    })
                })
            });
            let commands = tally.commands.load(Ordering::Relaxed);
            let retries = tally.retries.load(Ordering::Relaxed);
            let exhausted = tally.exhausted.load(Ordering::Relaxed);
            eprintln!(
                "execute/{name}/{case}: {commands} commands in {:.1?} (incl. warm-up), {retries} retries \
                 ({:.2} per command), {exhausted} ran out of attempts ({:.2}%)",
                started.elapsed(),
                retries as f64 / commands.max(1) as f64,
                100.0 * exhausted as f64 / commands.max(1) as f64,
            );
        }
    }
    group.finish();
}

criterion_group!(benches, load, execute);
criterion_main!(benches);
