//! Projections, side by side in one run:
//!
//! 1. rebuild speed on sled (events/s) of the order summary and the stock
//!    levels over one mixed log, against a plain fold of `read_all` into
//!    in-memory maps with no checkpointing (the upper bound), and against
//!    the same rebuild into in-memory read models (the cost of sled writes);
//! 2. the lag (head position − checkpoint) of both live projections while
//!    64 writers append with durable (fsync) group commit.
//!
//! `cargo bench --bench projections`. Sizes:
//! - `STRATA_BENCH_EVENTS` (default 200,000; the report's figure uses 1,000,000)
//! - `STRATA_BENCH_WRITERS` (default 64), `STRATA_BENCH_LIVE_SECS` (default 5)

/// The workloads of `strata bench` (`src/cli/workload/`), compiled here too.
#[path = "../src/cli/workload/mod.rs"]
#[allow(dead_code, unused_imports)]
mod bench_workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bench_workload::{Fold, HISTORY_SKUS, plain_fold, write_history};
use strata::projections::{
    ModelStore, ORDER_SUMMARY, OrderSummaryProjection, Projection, Projections, RebuildOptions, STOCK_LEVELS,
    StockLevelsProjection, rebuild, rebuild_all,
};
use strata::store::{
    Durability, EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamAppend, StreamId,
};
use strata_aggregates::domain::order::{OrderEvent, OrderLine};
use strata_aggregates::domain::stock::StockEvent;
use strata_aggregates::{DomainEvent, Format, encode};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ev<E: DomainEvent>(e: &E) -> NewEvent {
    encode(e, Format::Bincode).unwrap()
}

fn rate(events: u64, elapsed: Duration) -> String {
    format!(
        "{:>10.0} events/s  ({:.2} s)",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    )
}

async fn rebuild_speed(events: u64) {
    let dir = tempfile::tempdir().unwrap();
    // Buffered: the log is written fast; what is measured is the reading side.
    let store = SegmentStore::open_with(
        dir.path(),
        SegmentOptions {
            durability: Durability::Buffered,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    let n = write_history(&store, events).await.unwrap();
    println!(
        "log: {n} events (orders and stock mixed) written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());

    let t = Instant::now();
    let Fold {
        events: folded,
        orders,
        skus,
    } = plain_fold(&store).await.unwrap();
    let fold = t.elapsed();
    assert_eq!(folded, n);
    println!(
        "plain fold of read_all into maps (both models):   {}  [{orders} orders, {skus} SKUs]",
        rate(n, fold)
    );

    let mut sled_total = Duration::ZERO;
    let mut mem_total = Duration::ZERO;
    let parts: [(&str, Arc<dyn Projection>); 2] = [
        (ORDER_SUMMARY, Arc::new(OrderSummaryProjection)),
        (STOCK_LEVELS, Arc::new(StockLevelsProjection)),
    ];
    for (name, projection) in &parts {
        let model = ModelStore::open_sled(&store, name).unwrap();
        let report = rebuild(&*shared, &model, &**projection, RebuildOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(report.events, n);
        sled_total += report.elapsed;
        println!(
            "rebuild {name:<13} on sled (checkpointed):    {}",
            rate(n, report.elapsed)
        );
        let memory = ModelStore::memory(name).unwrap();
        let report = rebuild(&*shared, &memory, &**projection, RebuildOptions::default(), |_| {})
            .await
            .unwrap();
        mem_total += report.elapsed;
        println!(
            "rebuild {name:<13} in memory (checkpointed):  {}",
            rate(n, report.elapsed)
        );
    }
    println!(
        "rebuild both on sled, one after the other:        {}",
        rate(n, sled_total)
    );
    println!(
        "rebuild both in memory, one after the other:      {}",
        rate(n, mem_total)
    );
    let orders = ModelStore::open_sled(&store, ORDER_SUMMARY).unwrap();
    let stock = ModelStore::open_sled(&store, STOCK_LEVELS).unwrap();
    let targets: [(&ModelStore, &dyn Projection); 2] =
        [(&orders, &OrderSummaryProjection), (&stock, &StockLevelsProjection)];
    let reports = rebuild_all(&*shared, &targets, RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    let one_pass = reports[0].elapsed;
    println!(
        "rebuild both on sled in one pass (rebuild_all):   {}",
        rate(n, one_pass)
    );
    println!(
        "sled rebuild of both in one pass takes {:.1}x the plain fold",
        one_pass.as_secs_f64() / fold.as_secs_f64()
    );
}

async fn live_lag(writers: usize, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap(); // Durability::Fsync, group commit
    let projections = Arc::new(Projections::open(&store).unwrap());
    projections.start().await.unwrap();
    // The SKUs, registered and stocked (a history of no orders).
    write_history(&store, 0).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let appends = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let stop = stop.clone();
        let appends = appends.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("w{w}-{i}");
                let sku = (w * 7 + i as usize) % HISTORY_SKUS;
                let placed = OrderEvent::OrderPlaced {
                    order_id: id.clone(),
                    customer: format!("customer{w}"),
                    lines: vec![OrderLine {
                        sku: format!("sku{sku}"),
                        quantity: 1,
                        unit_price_cents: 100,
                    }],
                    total_cents: 100,
                };
                let reserved = StockEvent::StockReserved {
                    order_id: id.clone(),
                    quantity: 1,
                };
                store
                    .append_multi(vec![
                        StreamAppend::new(
                            StreamId::new(format!("order-{id}")).unwrap(),
                            ExpectedVersion::NoStream,
                            vec![ev(&placed)],
                        ),
                        StreamAppend::new(
                            StreamId::new(format!("stock-sku{sku}")).unwrap(),
                            ExpectedVersion::Any,
                            vec![ev(&reserved)],
                        ),
                    ])
                    .await
                    .unwrap();
                appends.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let start_head = store.head_position().await.unwrap();
    let t = Instant::now();
    let mut samples = Vec::new();
    while t.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        samples.push(projections.lag().await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = t.elapsed();
    let head = store.head_position().await.unwrap();
    let t = Instant::now();
    projections.wait_for(head, Duration::from_secs(120)).await.unwrap();
    let drain = t.elapsed();
    projections.stop().await.unwrap();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
    let events = head - start_head;
    let stats = store.stats();
    println!(
        "live, {writers} durable writers for {:.1} s: {} appends, {events} events ({:.0} events/s, {:.1} events per fsync)",
        elapsed.as_secs_f64(),
        appends.load(Ordering::Relaxed),
        events as f64 / elapsed.as_secs_f64(),
        stats.events_per_commit()
    );
    println!(
        "lag of both projections (events, sampled every 10 ms, n={}): mean {mean:.1}, p50 {}, p99 {}, max {}; caught up {:.1} ms after the writers stopped",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1],
        drain.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with a tiny size.
    let quick = std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let events = env("STRATA_BENCH_EVENTS", if quick { 5_000 } else { 200_000 });
    let writers = env("STRATA_BENCH_WRITERS", 64) as usize;
    let secs = env("STRATA_BENCH_LIVE_SECS", if quick { 1 } else { 5 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        rebuild_speed(events).await;
        live_lag(writers, secs).await;
    });
}
