//! The peer row of `strata bench --postgres`: cqrs-es's postgres-es
//! appending the same workload to the same database, so its figures sit
//! beside strata on PostgreSQL and the plain INSERTs of one session.
//!
//! The workload is `strata bench`'s "distinct" one: `writers` concurrent
//! writers, each appending single events with a 200-byte payload to an
//! aggregate of its own, durable (PostgreSQL's defaults), for `seconds`
//! each. postgres-es is driven through its event repository's `persist`
//! (what `CqrsFramework::execute` calls after a command is decided), with
//! the sequence counted by the writer, as strata's bench appends with
//! `ExpectedVersion::Any` and the plain INSERTs count versions on the
//! client: the storage path, without loading the aggregate first.
//!
//! ```sh
//! cargo run --release --manifest-path peers/postgres-es/Cargo.toml -- postgres://strata@127.0.0.1:5432/postgres [seconds] [writers,...]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum BenchEvent {
    Ticked { data: String },
}

impl DomainEvent for BenchEvent {
    fn event_type(&self) -> String {
        "BenchEvent".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

/// Only its type name is used: postgres-es keys rows by it.
#[derive(Default, Serialize, Deserialize)]
struct Bench;

impl Aggregate for Bench {
    const TYPE: &'static str = "bench";
    type Command = ();
    type Event = BenchEvent;
    type Error = Never;
    type Services = ();

    async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), Never> {
        Ok(())
    }

    fn apply(&mut self, _: BenchEvent) {}
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: strata-peer-postgres-es URL [seconds] [writers,...]")?;
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let writers: Vec<usize> = match args.next() {
        Some(w) => w.split(',').map(|n| n.parse()).collect::<Result<_, _>>()?,
        None => vec![1, 8, 64],
    };
    let max = writers.iter().copied().max().unwrap_or(1) as u32;
    let pool = PgPoolOptions::new().max_connections(max).connect(&url).await?;
    let tag = std::process::id();
    let (events, snapshots) = (format!("peer_es_events_{tag}"), format!("peer_es_snapshots_{tag}"));
    // The tables of postgres-es's db/init.sql.
    sqlx::raw_sql(&format!(
        "CREATE TABLE {events} (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
             sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
             event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id, sequence));
         CREATE TABLE {snapshots} (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
             last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
             current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));"
    ))
    .execute(&pool)
    .await?;
    let repo = Arc::new(PostgresEventRepository::new(pool.clone()).with_tables(&events, &snapshots));
    let data: String = (0..200).map(|i| char::from(b'a' + (i * 31 % 26) as u8)).collect();
    println!(
        "{:<24} {:>7} {:>6} {:>12} {:>9} {:>9}",
        "contender", "writers", "bytes", "events/s", "p50 µs", "p99 µs"
    );
    for (run, &n) in writers.iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|w| {
                let (repo, stop, data) = (repo.clone(), stop.clone(), data.clone());
                tokio::spawn(async move {
                    let id = format!("bench-{run}-{w}");
                    let mut latencies = Vec::new();
                    let mut sequence = 0;
                    while !stop.load(Ordering::Relaxed) {
                        sequence += 1;
                        let event = BenchEvent::Ticked { data: data.clone() };
                        let serialized = SerializedEvent::new(
                            id.clone(),
                            sequence,
                            Bench::TYPE.to_string(),
                            event.event_type(),
                            event.event_version(),
                            serde_json::to_value(&event).expect("serializable"),
                            serde_json::json!({}),
                        );
                        let t = Instant::now();
                        repo.persist::<Bench>(&[serialized], None).await?;
                        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok::<_, PersistenceError>(latencies)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let stored: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {events} WHERE aggregate_id LIKE 'bench-{run}-%'"
        ))
        .fetch_one(&pool)
        .await?;
        assert_eq!(stored as usize, latencies.len(), "every acknowledged event is stored");
        println!(
            "{:<24} {:>7} {:>6} {:>12.0} {:>9} {:>9}",
            "postgres-es persist",
            n,
            200,
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
    sqlx::raw_sql(&format!("DROP TABLE {events}; DROP TABLE {snapshots};"))
        .execute(&pool)
        .await?;
    Ok(())
}
