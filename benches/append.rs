//! Append throughput, side by side in one run: durable group commit on
//! `SledStore` vs. the naive embedded append (sled insert + `flush()` per
//! append) vs. `Durability::Buffered`, for one 200-byte event per append by
//! 1, 8 and 64 concurrent writers.
//!
//! `cargo bench --bench append`. Criterion reports events/s per contender;
//! compare the rows of one run (the machine is shared, absolute figures
//! drift between runs, ratios much less).

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata::workload::{AppendSpec, Budget, Streams, run_appends, run_naive_sled};
use strata_store::{Durability, EventStore, SledOptions, SledStore};

const WRITERS: [usize; 3] = [1, 8, 64];

fn spec(writers: usize) -> AppendSpec {
    AppendSpec {
        writers,
        event_bytes: 200,
        events_per_append: 1,
        streams: Streams::Distinct,
    }
}

fn open(dir: &std::path::Path, durability: Durability) -> Arc<dyn EventStore> {
    Arc::new(
        SledStore::open_with(
            dir,
            SledOptions {
                durability,
                ..SledOptions::default()
            },
        )
        .expect("open sled store"),
    )
}

fn append_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append_200B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));

    let naive_dir = tempfile::tempdir().unwrap();
    let naive = sled::open(naive_dir.path()).unwrap();
    let durable_dir = tempfile::tempdir().unwrap();
    let durable = open(durable_dir.path(), Durability::Fsync);
    let buffered_dir = tempfile::tempdir().unwrap();
    let buffered = open(buffered_dir.path(), Durability::Buffered);

    let mut run = 0u64;
    for writers in WRITERS {
        group.bench_function(BenchmarkId::new("naive_sled_insert_flush", writers), |b| {
            b.iter_custom(|iters| {
                run_naive_sled(&naive, spec(writers), Budget::Appends(iters))
                    .unwrap()
                    .elapsed
            })
        });
        for (name, store) in [("strata_sled_durable", &durable), ("strata_sled_buffered", &buffered)] {
            group.bench_function(BenchmarkId::new(name, writers), |b| {
                b.iter_custom(|iters| {
                    run += 1;
                    rt.block_on(run_appends(store.clone(), spec(writers), Budget::Appends(iters), run))
                        .unwrap()
                        .elapsed
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append_throughput);
criterion_main!(benches);
