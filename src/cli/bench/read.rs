//! The read side of `strata bench`: `read_all` over a mixed order/stock
//! log, the plain fold of it (the upper bound of a projection), a rebuild
//! of the read models, and, on the embedded log, opening the store and
//! loading one long aggregate. With `--postgres`, the log, the fold and the
//! rebuild again on PostgreSQL. Every rebuild is also given as a ratio to
//! the plain fold of the same log on the same backend, measured just
//! before it: the figure that means something on a shared machine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;
use strata::aggregates::Repository;
use strata::aggregates::domain::stock::StockItem;
use strata::projections::{Projections, RebuildReport};
use strata_store::{Durability, EventStore, PostgresOptions, PostgresStore, SegmentOptions, SegmentStore};

use super::super::workload::{long_stock_stream, plain_fold, scan_log, write_history};
use super::BenchArgs;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One measurement of the read side.
#[derive(Clone, Debug, Serialize)]
pub struct ReadRow {
    /// Where the log (and the read models) are: `segment` (sled for the
    /// models) or `postgres`.
    pub backend: &'static str,
    /// What was measured.
    pub what: String,
    /// Events read and applied (for an aggregate load from a snapshot: the tail after it).
    pub events: u64,
    /// Wall time in seconds (for an aggregate load: the median of five loads).
    pub seconds: f64,
    /// Events per second.
    pub events_per_sec: f64,
    /// A rebuild: its events/s over the plain fold's on the same backend.
    pub ratio_to_fold: Option<f64>,
}

/// Prints the read side's rows.
pub(super) fn print_read(rows: &[ReadRow]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<9} {:<62} {:>10} {:>12} {:>14} {:>7}",
        "backend", "read side", "events", "ms", "events/s", "×fold"
    );
    for r in rows {
        println!(
            "{:<9} {:<62} {:>10} {:>12.2} {:>14.0} {:>7}",
            r.backend,
            r.what,
            r.events,
            r.seconds * 1e3,
            r.events_per_sec,
            r.ratio_to_fold.map(|v| format!("{v:.2}")).unwrap_or_default(),
        );
    }
}

fn read_row(backend: &'static str, what: &str, events: u64, took: Duration) -> ReadRow {
    ReadRow {
        backend,
        what: what.into(),
        events,
        seconds: took.as_secs_f64(),
        events_per_sec: events as f64 / took.as_secs_f64().max(1e-9),
        ratio_to_fold: None,
    }
}

/// `read_all`, the plain fold and a rebuild of `projections` (every read
/// model in one pass) over the `n` events of `store`.
async fn fold_and_rebuild(
    backend: &'static str,
    store: &dyn EventStore,
    n: u64,
    projections: &Projections,
    progress: &ProgressBar,
) -> BenchResult<Vec<ReadRow>> {
    let mut rows = Vec::new();
    progress.set_message(format!("{backend}: read_all"));
    let (read, took) = scan_log(store, 4096).await?;
    rows.push(read_row(backend, "read_all, pages of 4,096", read, took));
    progress.set_message(format!("{backend}: plain fold"));
    let start = Instant::now();
    let fold = plain_fold(store).await?;
    let fold = read_row(
        backend,
        "plain fold of read_all into maps (upper bound)",
        fold.events,
        start.elapsed(),
    );
    progress.inc(1);
    progress.set_message(format!("{backend}: rebuild of the read models"));
    let reports = projections
        .rebuild(|p| {
            let left = p
                .remaining()
                .map_or_else(|| "?".into(), |d| format!("{:.0} s", d.as_secs_f64()));
            progress.set_message(format!(
                "{backend}: rebuild {}/{} events, {:.0} events/s, {left} left",
                p.done,
                p.total,
                p.events_per_sec()
            ));
        })
        .await?;
    let RebuildReport { events, elapsed, .. } = *reports.first().ok_or("no rebuild report")?;
    if events != n {
        return Err(format!("{backend}: the rebuild applied {events} events of {n}").into());
    }
    let mut rebuilt = read_row(
        backend,
        "projection rebuild, every read model in one pass, swapped in",
        events,
        elapsed,
    );
    rebuilt.ratio_to_fold = Some(rebuilt.events_per_sec / fold.events_per_sec.max(1e-9));
    rows.push(fold);
    rows.push(rebuilt);
    progress.inc(1);
    Ok(rows)
}

/// The read side on the embedded log (read models on sled): `read_all`
/// and `subscribe_all`, the plain fold, a rebuild of the read models,
/// opening the store, and loading one long aggregate with and without a
/// snapshot.
pub(super) async fn read_side(args: &BenchArgs, base: &Path, progress: &ProgressBar) -> BenchResult<Vec<ReadRow>> {
    use futures::StreamExt;
    const BACKEND: &str = "segment";
    let tmp = tempfile::tempdir_in(base)?;
    let options = SegmentOptions {
        durability: Durability::Buffered,
        ..SegmentOptions::default()
    };
    let dir = tmp.path().join("log");
    let store = SegmentStore::open_with(&dir, options.clone())?;
    progress.set_message(format!("writing a log of {} order and stock events", args.read_events));
    let n = write_history(&store, args.read_events).await?;
    let waited = store.clone();
    tokio::task::spawn_blocking(move || waited.wait_indexed()).await??;
    progress.inc(1);

    progress.set_message("subscribe_all");
    let start = Instant::now();
    let mut sub = store.subscribe_all(0);
    let mut seen = 0u64;
    while seen < n {
        match sub.next().await {
            Some(Ok(e)) => {
                seen += 1;
                std::hint::black_box(&e);
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the subscription ended early".into()),
        }
    }
    let subscribed = read_row(BACKEND, "subscribe_all from 0", seen, start.elapsed());
    drop(sub);

    let projections = Projections::open(&store)?;
    let mut rows = fold_and_rebuild(BACKEND, &store, n, &projections, progress).await?;
    rows.insert(1, subscribed);
    drop(projections);

    progress.set_message("open");
    let usage = store.disk_usage();
    drop(store);
    let start = Instant::now();
    let store = SegmentStore::open_with(&dir, options.clone())?;
    let took = start.elapsed();
    rows.push(read_row(
        BACKEND,
        &format!(
            "open a store of {n} events ({} MB log, {} MB index)",
            usage.log_bytes / 1_000_000,
            usage.index_bytes / 1_000_000
        ),
        n,
        took,
    ));
    drop(store);
    progress.inc(1);

    progress.set_message(format!("an aggregate of {} events", args.load_events));
    let agg: Arc<dyn EventStore> = Arc::new(SegmentStore::open_with(tmp.path().join("aggregate"), options)?);
    const SNAPSHOT_EVERY: u64 = 1_000;
    let tail = (args.load_events / 200).clamp(1, SNAPSHOT_EVERY - 1);
    long_stock_stream(
        &agg,
        "long",
        args.load_events,
        SNAPSHOT_EVERY.min(args.load_events / 2),
        tail,
    )
    .await?;
    for (what, snapshots) in [
        ("load one aggregate, full replay", false),
        ("load one aggregate, from its snapshot", true),
    ] {
        let mut repo = Repository::<StockItem>::new(agg.clone());
        if snapshots {
            repo = repo.with_snapshots(SNAPSHOT_EVERY.min(args.load_events / 2));
        }
        let mut times = Vec::new();
        let (mut version, mut replayed) = (0, 0);
        for _ in 0..5 {
            let start = Instant::now();
            let loaded = repo.load("long").await?;
            times.push(start.elapsed());
            (version, replayed) = (loaded.version, loaded.replayed);
            if snapshots != loaded.snapshot_version.is_some() {
                return Err(format!("{what}: snapshot used: {:?}", loaded.snapshot_version).into());
            }
        }
        times.sort();
        // The events it actually read and applied, in the median load's time.
        rows.push(read_row(
            BACKEND,
            &format!("{what} ({version}-event stream)"),
            replayed,
            times[times.len() / 2],
        ));
    }
    progress.inc(1);
    Ok(rows)
}

/// The read side on PostgreSQL, in `schema` of the database at `url`
/// (the caller drops it): the same log written into a `PostgresStore`,
/// `read_all`, the plain fold and a rebuild of the read models kept in
/// that database.
pub(super) async fn read_side_postgres(
    args: &BenchArgs,
    url: &str,
    schema: &str,
    progress: &ProgressBar,
) -> BenchResult<Vec<ReadRow>> {
    let options = PostgresOptions {
        schema: schema.to_string(),
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(url, options).await?;
    progress.set_message(format!(
        "postgres: writing a log of {} order and stock events",
        args.read_events
    ));
    let n = write_history(&store, args.read_events).await?;
    progress.inc(1);
    let projections = Projections::open_postgres(&store).await?;
    let rows = fold_and_rebuild("postgres", &store, n, &projections, progress).await?;
    drop(projections);
    drop(store);
    Ok(rows)
}
