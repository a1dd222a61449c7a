//! `strata bench`: append throughput side by side with the disk's ceiling
//! and the naive embedded append, in one run (with `--postgres`, also
//! strata on PostgreSQL and plain `INSERT`s into the same database); then
//! the read side (see `read`), on PostgreSQL too with `--postgres`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod read;
mod report;

pub use self::read::ReadRow;
use self::read::{read_side, read_side_postgres};
use self::report::{add_ratios, plot, print_table};
use super::workload::{
    AppendSpec, Budget, FileMode, NaivePostgres, RunStats, Streams, run_appends, run_disk_ceiling, run_naive_sled,
};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strata_store::{
    Durability, EventStore, MemoryStore, PostgresOptions, PostgresStore, SegmentOptions, SegmentStore, StoreError,
};

use super::CliResult;

/// Who is measured.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Contender {
    /// The baseline: sled insert + `flush()` per append, what a team would
    /// write by hand on an embedded B-tree (no fsync, no batching across writers).
    Naive,
    /// strata's embedded log (`SegmentStore`), durable (the default): group
    /// commit, one fdatasync per group.
    #[value(alias = "segment")]
    Durable,
    /// strata's embedded log, buffered: acknowledged once written to the OS.
    #[value(alias = "segment-buffered")]
    Buffered,
    /// strata's `MemoryStore`.
    Memory,
    /// strata on PostgreSQL (`PostgresStore`, needs `--postgres`): group commit under the head row lock.
    Postgres,
    /// Plain autocommitted `INSERT`s into a `UNIQUE (stream_id, version)` table on the same database
    /// (needs `--postgres`), one connection per writer: what a team would write by hand.
    PlainInsert,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::Naive => "naive sled insert+flush",
            Contender::Durable => "strata durable",
            Contender::Buffered => "strata buffered",
            Contender::Memory => "strata memory",
            Contender::Postgres => "strata postgres",
            Contender::PlainInsert => "plain INSERT postgres",
        }
    }

    fn is_strata(self) -> bool {
        !matches!(self, Contender::Naive | Contender::PlainInsert)
    }

    fn needs_postgres(self) -> bool {
        matches!(self, Contender::Postgres | Contender::PlainInsert)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum StreamsArg {
    Distinct,
    Hot,
}

/// Arguments of `strata bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Concurrent writers, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64])]
    writers: Vec<usize>,
    /// Event payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [200, 4096])]
    sizes: Vec<usize>,
    /// Events per append.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100])]
    batches: Vec<usize>,
    /// Distinct streams per writer, and/or one hot stream with `Exact` versions.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [StreamsArg::Distinct, StreamsArg::Hot])]
    streams: Vec<StreamsArg>,
    /// The contenders, run in turn for every workload (`postgres` and
    /// `plain-insert` are added when `--postgres` is given).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Contender::Naive, Contender::Durable, Contender::Buffered, Contender::Memory])]
    contenders: Vec<Contender>,
    /// A PostgreSQL database to add strata on PostgreSQL and plain INSERTs
    /// as contenders (each strata run in a schema of its own, the INSERTs in
    /// a table of their own, all dropped afterwards), and the read side on
    /// PostgreSQL (the log, `read_all`, the plain fold and a rebuild of the
    /// read models, in a schema dropped afterwards). A libpq URL.
    #[arg(long, env = "STRATA_BENCH_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// Records per `fdatasync` for the disk's ceiling.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100, 1000])]
    disk_batches: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Appends per run (shared by its writers) instead of `--seconds`: the
    /// same work whatever the machine's load, e.g. for smoke tests.
    #[arg(long, conflicts_with = "seconds")]
    appends: Option<u64>,
    /// How many times every workload cycles through the contenders.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Directory for the stores and files under test (a temporary one inside it per run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput against writers for every contender (SVG) here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Events of the mixed order/stock log for the read side (read_all, plain fold, projection rebuild).
    #[arg(long, default_value_t = 1_000_000)]
    read_events: u64,
    /// Events of the one aggregate loaded with and without a snapshot.
    #[arg(long, default_value_t = 100_000)]
    load_events: u64,
    /// Skip the read side.
    #[arg(long)]
    no_read: bool,
    /// Skip the appends (and the disk's ceiling).
    #[arg(long)]
    no_appends: bool,
    /// A tiny configuration (a second or two), for smoke tests.
    #[arg(long)]
    quick: bool,
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `disk_ceiling` or a contender.
    pub contender: String,
    /// The workload (for the disk's ceiling: 1 writer, `events_per_append` = records per fdatasync).
    pub workload: AppendSpec,
    /// For the disk's ceiling: how the file was laid out.
    pub file_mode: Option<FileMode>,
    /// Round number.
    pub round: usize,
    /// Appends acknowledged.
    pub appends: u64,
    /// Events acknowledged.
    pub events: u64,
    /// Events the store holds after the run (strata contenders), to check the count.
    pub events_in_store: Option<u64>,
    /// Conflicts (hot stream).
    pub conflicts: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_sec: f64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Median append latency, µs.
    pub p50_us: u32,
    /// 99th percentile append latency, µs.
    pub p99_us: u32,
    /// strata's embedded log: events per fdatasync actually achieved (on
    /// PostgreSQL: per commit).
    pub events_per_flush: Option<f64>,
    /// strata's embedded log: mean time of one fdatasync, µs (on
    /// PostgreSQL: of the insert and `COMMIT`, the WAL flush included).
    pub mean_sync_us: Option<f64>,
    /// Events/s over the naive append's at the same workload and round
    /// (strata's embedded log and memory).
    pub ratio_to_naive: Option<f64>,
    /// strata on PostgreSQL: events/s over the plain INSERTs' at the same
    /// workload and round.
    pub ratio_to_plain_insert: Option<f64>,
    /// Events/s over the disk's ceiling at the nearest batch size.
    pub ratio_to_disk: Option<f64>,
    /// The disk ceiling's batch size used for `ratio_to_disk`.
    pub disk_batch: Option<usize>,
    /// Segment log: events written but not yet indexed when the writers stopped.
    pub index_lag: Option<u64>,
    /// Segment log: how long the index took to catch up after the writers
    /// stopped, in ms (counted in `seconds` and `events_per_sec`).
    pub catch_up_ms: Option<f64>,
    /// Segment log: bytes of records plus the sled index, per event.
    pub bytes_per_event: Option<f64>,
}

/// Everything `strata bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// strata's version.
    pub version: &'static str,
    /// Cores the machine has.
    pub cores: usize,
    /// Seconds per run (when runs were timed).
    pub seconds_per_run: Option<f64>,
    /// Appends per run (when runs were counted, `--appends`).
    pub appends_per_run: Option<u64>,
    /// Every append run, disk ceiling first.
    pub rows: Vec<Row>,
    /// The read side.
    pub read: Vec<ReadRow>,
}

impl BenchArgs {
    fn apply_quick(&mut self) {
        if self.quick {
            self.writers = vec![1, 4];
            self.sizes = vec![200];
            self.batches = vec![1];
            self.disk_batches = vec![1, 10];
            self.seconds = self.seconds.min(0.15);
            self.rounds = 1;
            self.read_events = self.read_events.min(5_000);
            self.load_events = self.load_events.min(3_000);
        }
    }

    fn workloads(&self) -> Vec<AppendSpec> {
        let mut out = Vec::new();
        for &streams in &self.streams {
            for &event_bytes in &self.sizes {
                for &events_per_append in &self.batches {
                    for &writers in &self.writers {
                        out.push(AppendSpec {
                            writers,
                            event_bytes,
                            events_per_append,
                            streams: match streams {
                                StreamsArg::Distinct => Streams::Distinct,
                                StreamsArg::Hot => Streams::Hot,
                            },
                        });
                    }
                }
            }
        }
        out
    }
}

fn row(contender: String, workload: AppendSpec, round: usize, s: &RunStats) -> Row {
    Row {
        contender,
        workload,
        file_mode: None,
        round,
        appends: s.appends,
        events: s.events,
        events_in_store: None,
        conflicts: s.conflicts,
        seconds: s.elapsed.as_secs_f64(),
        events_per_sec: s.events_per_sec(),
        mb_per_sec: s.mb_per_sec(),
        p50_us: s.latency_us(0.5),
        p99_us: s.latency_us(0.99),
        events_per_flush: None,
        mean_sync_us: None,
        ratio_to_naive: None,
        ratio_to_plain_insert: None,
        ratio_to_disk: None,
        disk_batch: None,
        index_lag: None,
        catch_up_ms: None,
        bytes_per_event: None,
    }
}

/// The PostgreSQL side of a bench: the database and the plain INSERTs' connections.
struct PgBench {
    url: String,
    /// Names this bench's schemas and table apart from any other's.
    tag: String,
    naive: NaivePostgres,
}

impl PgBench {
    async fn connect(url: &str, writers: usize) -> Result<PgBench, Box<dyn std::error::Error + Send + Sync>> {
        let tag = format!("{:08x}", rand_tag());
        let naive = NaivePostgres::connect(url, &format!("strata_bench_insert_{tag}"), writers.max(1))
            .await
            .map_err(|e| {
                format!(
                    "connecting to --postgres: {}",
                    StoreError::from_postgres("connecting", e)
                )
            })?;
        Ok(PgBench {
            url: url.to_string(),
            tag,
            naive,
        })
    }

    async fn drop_schema(&self, schema: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        drop_schema(&self.url, schema).await
    }
}

/// Drops a schema a bench made in the database at `url`.
async fn drop_schema(url: &str, schema: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use strata_store::tokio_postgres::{self, NoTls};
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}

/// A tag from the clock and the process id: schemas of concurrent benches differ.
fn rand_tag() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

async fn run_contender(
    contender: Contender,
    spec: AppendSpec,
    budget: Budget,
    dir: &Path,
    round: usize,
    run: u64,
    pg: Option<&PgBench>,
) -> Result<Row, Box<dyn std::error::Error + Send + Sync>> {
    let label = contender.label().to_string();
    if contender.needs_postgres() {
        let pg = pg.ok_or("the PostgreSQL contenders need --postgres")?;
        if contender == Contender::PlainInsert {
            let stats = pg
                .naive
                .run(spec, budget, run)
                .await
                .map_err(|e| StoreError::from_postgres("plain INSERTs", e))?;
            return Ok(row(label, spec, round, &stats));
        }
        let schema = format!("strata_bench_{}_{run}", pg.tag);
        let options = PostgresOptions {
            schema: schema.clone(),
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect_with(&pg.url, options).await?;
        let shared: Arc<dyn EventStore> = Arc::new(store.clone());
        let result = run_appends(shared, spec, budget, run).await;
        let head = store.head_position().await;
        let c = store.commit_stats();
        drop(store);
        pg.drop_schema(&schema).await?;
        let mut r = row(label, spec, round, &result?);
        r.events_in_store = Some(head?);
        r.events_per_flush = Some(c.events_per_commit());
        r.mean_sync_us = Some(c.mean_sync_time().as_secs_f64() * 1e6);
        return Ok(r);
    }
    let tmp = tempfile::tempdir_in(dir)?;
    if contender == Contender::Naive {
        let db = sled::open(tmp.path())?;
        let stats = tokio::task::block_in_place(|| run_naive_sled(&db, spec, budget))?;
        return Ok(row(label, spec, round, &stats));
    }
    if matches!(contender, Contender::Durable | Contender::Buffered) {
        return run_segment(contender, spec, budget, tmp.path(), round, run).await;
    }
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let stats = run_appends(store.clone(), spec, budget, run).await?;
    let mut r = row(label, spec, round, &stats);
    r.events_in_store = Some(store.head_position().await?);
    Ok(r)
}

/// A run on the embedded log: the throughput counts the time the index takes to
/// catch up after the writers stop, so it is sustained, not a burst.
async fn run_segment(
    contender: Contender,
    spec: AppendSpec,
    budget: Budget,
    dir: &Path,
    round: usize,
    run: u64,
) -> Result<Row, Box<dyn std::error::Error + Send + Sync>> {
    let durability = match contender {
        Contender::Durable => Durability::Fsync,
        _ => Durability::Buffered,
    };
    let store = SegmentStore::open_with(
        dir,
        SegmentOptions {
            durability,
            ..SegmentOptions::default()
        },
    )?;
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let mut stats = run_appends(shared, spec, budget, run).await?;
    let lag = store.stats().index_lag();
    let started = std::time::Instant::now();
    let waited = store.clone();
    tokio::task::spawn_blocking(move || waited.wait_indexed()).await??;
    let catch_up = started.elapsed();
    stats.elapsed += catch_up;
    let mut r = row(contender.label().to_string(), spec, round, &stats);
    let c = store.stats();
    r.events_in_store = Some(c.head);
    r.events_per_flush = Some(c.events_per_commit());
    r.mean_sync_us = Some(c.mean_sync_time().as_secs_f64() * 1e6);
    r.index_lag = Some(lag);
    r.catch_up_ms = Some(catch_up.as_secs_f64() * 1e3);
    let usage = store.disk_usage();
    r.bytes_per_event = Some((usage.log_bytes + usage.index_bytes) as f64 / c.head.max(1) as f64);
    Ok(r)
}

pub async fn bench(mut args: BenchArgs) -> CliResult {
    args.apply_quick();
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => std::env::temp_dir(),
    };
    let budget = match args.appends {
        Some(n) => Budget::Appends(n),
        None => Budget::Time(Duration::from_secs_f64(args.seconds)),
    };
    let workloads = args.workloads();
    let mut contenders = args.contenders.clone();
    if args.postgres.is_some() {
        contenders.extend([Contender::Postgres, Contender::PlainInsert]);
    } else if contenders.iter().any(|c| c.needs_postgres()) {
        return Err("the postgres and plain-insert contenders need --postgres URL".into());
    }
    contenders.sort();
    contenders.dedup();
    let pg = match &args.postgres {
        Some(url) if !args.no_appends => {
            let writers = args.writers.iter().copied().max().unwrap_or(1);
            Some(PgBench::connect(url, writers).await?)
        }
        _ => None,
    };
    let disk_runs = args.sizes.len() * args.disk_batches.len() * 2;
    let mut total = 0;
    if !args.no_appends {
        total += disk_runs + workloads.len() * contenders.len() * args.rounds;
    }
    if !args.no_read {
        total += 5 + if args.postgres.is_some() { 3 } else { 0 };
    }
    let progress = ProgressBar::new(total as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let mut rows = Vec::new();
    let ceiling_dir = tempfile::tempdir_in(&base)?;
    let (sizes, workloads) = if args.no_appends {
        (Vec::new(), Vec::new())
    } else {
        (args.sizes.clone(), workloads)
    };
    for &size in &sizes {
        for &batch in &args.disk_batches {
            for mode in [FileMode::Preallocated, FileMode::Growing] {
                progress.set_message(format!("disk ceiling {size} B × {batch} per fdatasync ({mode:?})"));
                let spec = AppendSpec {
                    writers: 1,
                    event_bytes: size,
                    events_per_append: batch,
                    streams: Streams::Distinct,
                };
                let dir = ceiling_dir.path().to_path_buf();
                let stats = tokio::task::block_in_place(|| run_disk_ceiling(&dir, size, batch, mode, budget))?;
                let mut r = row("disk ceiling".into(), spec, 0, &stats);
                r.file_mode = Some(mode);
                rows.push(r);
                progress.inc(1);
            }
        }
    }
    let mut run = 0u64;
    for spec in &workloads {
        for round in 0..args.rounds {
            for &contender in &contenders {
                progress.set_message(format!(
                    "{} · {} writers · {} B × {} · {:?}",
                    contender.label(),
                    spec.writers,
                    spec.event_bytes,
                    spec.events_per_append,
                    spec.streams
                ));
                run += 1;
                let r = run_contender(contender, *spec, budget, &base, round, run, pg.as_ref()).await?;
                if let Some(stored) = r.events_in_store
                    && stored != r.events
                {
                    return Err(format!(
                        "{}: {} events acknowledged but {stored} in the store",
                        r.contender, r.events
                    )
                    .into());
                }
                rows.push(r);
                progress.inc(1);
            }
        }
    }
    if let Some(pg) = &pg
        && let Err(e) = pg.naive.drop_table().await
    {
        eprintln!("could not drop the plain INSERT table: {e}");
    }
    let read = if args.no_read {
        Vec::new()
    } else {
        let mut read = read_side(&args, &base, &progress).await?;
        if let Some(url) = &args.postgres {
            let schema = format!("strata_bench_read_{:08x}", rand_tag());
            let on_postgres = read_side_postgres(&args, url, &schema, &progress).await;
            drop_schema(url, &schema).await?;
            read.extend(on_postgres?);
        }
        read
    };
    progress.finish_and_clear();
    add_ratios(&mut rows);
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        seconds_per_run: args.appends.is_none().then_some(args.seconds),
        appends_per_run: args.appends,
        rows,
        read,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot
        && !report.rows.is_empty()
    {
        plot(&report, path)?;
        eprintln!("wrote {}", path.display());
    }
    let strata: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.contender.starts_with("strata"))
        .collect();
    if strata.iter().any(|r| r.events == 0) && !contenders.iter().all(|c| !c.is_strata()) {
        return Err("a strata contender acknowledged no events".into());
    }
    Ok(())
}
