//! Append throughput, side by side in one run, on the workloads of
//! `strata bench` (shared through `src/cli/workload/`):
//!
//! - `append_200B/*/{1,8,64}`: one 200-byte event per append by 1, 8 and 64
//!   writers: durable group commit on `SegmentStore` vs. the naive embedded
//!   append (sled insert + `flush()` per append) vs. `Durability::Buffered`
//!   vs. `MemoryStore`;
//! - `append_batches/*`: 100-event appends of 4 KiB events and a hot stream
//!   with `Exact` versions, 8 writers;
//! - `disk_ceiling/*`: a plain file with one `fdatasync` per 1 and per 100
//!   200-byte records: what the disk allows at all.
//!
//! `cargo bench --bench append`. Criterion reports events/s; compare rows of
//! one run (the machine is shared and absolute figures drift between runs).

/// The workloads of `strata bench` (`src/cli/workload/`), compiled here too.
#[path = "../src/cli/workload/mod.rs"]
#[allow(dead_code, unused_imports)]
mod bench_workload;

use std::sync::Arc;
use std::time::Duration;

use bench_workload::{AppendSpec, Budget, FileMode, Streams, run_appends, run_disk_ceiling, run_naive_sled};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_store::{Durability, EventStore, MemoryStore, SegmentOptions, SegmentStore};
use tokio::runtime::Runtime;

fn open(dir: &std::path::Path, durability: Durability) -> Arc<dyn EventStore> {
    let options = SegmentOptions {
        durability,
        ..SegmentOptions::default()
    };
    Arc::new(SegmentStore::open_with(dir, options).expect("open the embedded store"))
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
}

/// Runs `spec` on the naive append and on every strata contender.
fn contenders(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, spec: AppendSpec, param: &str) {
    let naive_dir = tempfile::tempdir().unwrap();
    let naive = sled::open(naive_dir.path()).unwrap();
    group.bench_function(BenchmarkId::new("naive_sled_insert_flush", param), |b| {
        b.iter_custom(|iters| {
            run_naive_sled(&naive, spec, Budget::Appends(iters / spec.events_per_append as u64 + 1))
                .unwrap()
                .elapsed
        })
    });
    let durable_dir = tempfile::tempdir().unwrap();
    let buffered_dir = tempfile::tempdir().unwrap();
    let stores: [(&str, Arc<dyn EventStore>); 3] = [
        ("strata_durable", open(durable_dir.path(), Durability::Fsync)),
        ("strata_buffered", open(buffered_dir.path(), Durability::Buffered)),
        ("strata_memory", Arc::new(MemoryStore::new())),
    ];
    let mut run = 0u64;
    for (name, store) in stores {
        group.bench_function(BenchmarkId::new(name, param), |b| {
            b.iter_custom(|iters| {
                run += 1;
                let budget = Budget::Appends(iters / spec.events_per_append as u64 + 1);
                rt.block_on(run_appends(store.clone(), spec, budget, run))
                    .unwrap()
                    .elapsed
            })
        });
    }
}

fn append_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append_200B");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    for writers in [1, 8, 64] {
        let spec = AppendSpec {
            writers,
            event_bytes: 200,
            events_per_append: 1,
            streams: Streams::Distinct,
        };
        contenders(&mut group, &rt, spec, &writers.to_string());
    }
    group.finish();

    let mut group = c.benchmark_group("append_batches");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let batched = AppendSpec {
        writers: 8,
        event_bytes: 4096,
        events_per_append: 100,
        streams: Streams::Distinct,
    };
    contenders(&mut group, &rt, batched, "8w_4KiB_x100");
    let hot = AppendSpec {
        writers: 8,
        event_bytes: 200,
        events_per_append: 1,
        streams: Streams::Hot,
    };
    contenders(&mut group, &rt, hot, "8w_200B_hot");
    group.finish();
}

fn disk_ceiling(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("disk_ceiling");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    for batch in [1usize, 100] {
        group.bench_function(BenchmarkId::new("fdatasync_per_batch_200B", batch), |b| {
            b.iter_custom(|iters| {
                let syncs = iters / batch as u64 + 1;
                run_disk_ceiling(dir.path(), 200, batch, FileMode::Growing, Budget::Appends(syncs))
                    .unwrap()
                    .elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, disk_ceiling, append_throughput);
criterion_main!(benches);
