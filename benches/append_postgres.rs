//! Durable append throughput on PostgreSQL, side by side in one run with
//! the embedded log: strata's `PostgresStore` (group commit under the head row lock)
//! vs. strata's `SegmentStore` (durable group commit) vs. plain autocommitted
//! `INSERT`s into a `UNIQUE (stream_id, version)` table, one connection per
//! writer (what a team would write by hand), for one 200-byte event per
//! append by 1, 8 and 64 concurrent writers.
//!
//! Needs a server in `STRATA_POSTGRES_URL`; the script starts a throwaway one:
//!
//! ```sh
//! scripts/test-postgres.sh cargo bench --bench append_postgres --features postgres
//! ```
//!
//! Every contender is durable: PostgreSQL with its defaults (`fsync`,
//! `synchronous_commit = on`), the embedded log with `Durability::Fsync`.

/// The workloads of `strata bench` (`src/cli/workload/`), compiled here too.
#[path = "../src/cli/workload/mod.rs"]
#[allow(dead_code, unused_imports)]
mod bench_workload;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bench_workload::{AppendSpec, Budget, NaivePostgres, Streams, run_appends};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata_store::{EventStore, PostgresOptions, PostgresStore, SegmentStore, tokio_postgres};

const WRITERS: [usize; 3] = [1, 8, 64];

fn spec(writers: usize) -> AppendSpec {
    AppendSpec {
        writers,
        event_bytes: 200,
        events_per_append: 1,
        streams: Streams::Distinct,
    }
}

fn append_throughput(c: &mut Criterion) {
    let Ok(url) = std::env::var("STRATA_POSTGRES_URL") else {
        eprintln!(
            "SKIPPED append_postgres: STRATA_POSTGRES_URL is not set; run \
             scripts/test-postgres.sh cargo bench --bench append_postgres --features postgres"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tag = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() % 1_000_000_000;
    let schema = format!("strata_bench_{tag}");
    let options = PostgresOptions {
        schema: schema.clone(),
        ..PostgresOptions::default()
    };
    let pg_store = Arc::new(
        rt.block_on(PostgresStore::connect_with(&url, options))
            .expect("connect to STRATA_POSTGRES_URL"),
    );
    let postgres: Arc<dyn EventStore> = pg_store.clone();
    let naive = rt
        .block_on(NaivePostgres::connect(
            &url,
            &format!("naive_bench_{tag}"),
            *WRITERS.iter().max().unwrap(),
        ))
        .expect("plain PostgreSQL connections");
    let local_dir = tempfile::tempdir().unwrap();
    let local_store = Arc::new(SegmentStore::open(local_dir.path()).expect("open the embedded store"));
    let local: Arc<dyn EventStore> = local_store.clone();

    let mut group = c.benchmark_group("durable_append_200B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut run = 0u64;
    for writers in WRITERS {
        for (name, store) in [("strata_postgres", &postgres), ("strata_embedded", &local)] {
            group.bench_function(BenchmarkId::new(name, writers), |b| {
                b.iter_custom(|iters| {
                    run += 1;
                    rt.block_on(run_appends(store.clone(), spec(writers), Budget::Appends(iters), run))
                        .unwrap()
                        .elapsed
                })
            });
        }
        group.bench_function(BenchmarkId::new("plain_postgres_insert", writers), |b| {
            b.iter_custom(|iters| {
                run += 1;
                rt.block_on(naive.run(spec(writers), Budget::Appends(iters), run))
                    .unwrap()
                    .elapsed
            })
        });
    }
    group.finish();
    let pg = pg_store.commit_stats();
    eprintln!(
        "strata_postgres: {} commits, {:.1} events per commit, mean commit (WAL flush) {:?}",
        pg.commits,
        pg.events_per_commit(),
        pg.mean_sync_time()
    );
    let local = local_store.stats();
    eprintln!(
        "strata_embedded: {} fdatasyncs, {:.1} events per fdatasync, mean fdatasync {:?}",
        local.commits,
        local.events_per_commit(),
        local.mean_sync_time()
    );

    rt.block_on(async {
        naive.drop_table().await.ok();
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("admin connection");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .ok();
    });
}

criterion_group!(benches, append_throughput);
criterion_main!(benches);
