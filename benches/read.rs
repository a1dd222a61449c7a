//! The read side, on the workloads of `strata bench` (shared through
//! `src/cli/workload/`), side by side in one run over one mixed log of
//! orders and stock (`STRATA_BENCH_READ_EVENTS`, default 100,000):
//!
//! - `read/read_all`: the whole log in pages of 4,096;
//! - `read/plain_fold`: `read_all` folded into maps, nothing written (the
//!   upper bound of a projection);
//! - `read/rebuild_both`: both projections rebuilt in one pass (read models in sled tables), with
//!   checkpoints and a generation swap.
//!
//! `cargo bench --bench read`. Loading one aggregate with and without a
//! snapshot is in `cargo bench --bench aggregates`.

/// The workloads of `strata bench` (`src/cli/workload/`), compiled here too.
#[path = "../src/cli/workload/mod.rs"]
#[allow(dead_code, unused_imports)]
mod bench_workload;

use std::time::Duration;

use bench_workload::{plain_fold, scan_log, write_history};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata::projections::Projections;
use strata_store::{Durability, SegmentOptions, SegmentStore};

fn read_side(c: &mut Criterion) {
    let target = std::env::var("STRATA_BENCH_READ_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions {
        durability: Durability::Buffered,
        ..SegmentOptions::default()
    };
    let store = SegmentStore::open_with(dir.path(), options).unwrap();
    let events = rt.block_on(write_history(&store, target)).unwrap();
    let projections = Projections::open(&store).unwrap();

    let mut group = c.benchmark_group("read");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(events));
    group.bench_function("read_all", |b| {
        b.iter(|| {
            let (n, _) = rt.block_on(scan_log(&store, 4096)).unwrap();
            assert_eq!(n, events);
        })
    });
    group.bench_function("plain_fold", |b| {
        b.iter(|| assert_eq!(rt.block_on(plain_fold(&store)).unwrap().events, events))
    });
    group.bench_function("rebuild_both", |b| {
        b.iter(|| {
            let reports = rt.block_on(projections.rebuild(|_| {})).unwrap();
            assert_eq!(reports[0].events, events);
        })
    });
    group.finish();
}

criterion_group!(benches, read_side);
criterion_main!(benches);
