//! Append workloads, shared by the criterion benches and `strata bench`, so
//! both measure exactly the same thing.
//!
//! Every contender is driven by the same writers, payloads and stream
//! choice; the figures are meant to be compared side by side in one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};

/// Which streams the writers append to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Streams {
    /// Each writer appends to streams of its own (no conflicts), with `Any`.
    Distinct,
    /// Every writer appends to one stream with `Exact` of the version it
    /// read, retrying on conflict (the conflicts are counted).
    Hot,
}

/// One append workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AppendSpec {
    /// Concurrent writers.
    pub writers: usize,
    /// Payload size of each event, in bytes.
    pub event_bytes: usize,
    /// Events per append.
    pub events_per_append: usize,
    /// Distinct streams or one hot stream.
    pub streams: Streams,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Appends acknowledged.
    pub appends: u64,
    /// Events acknowledged.
    pub events: u64,
    /// Bytes of payload acknowledged.
    pub bytes: u64,
    /// Appends refused with `WrongExpectedVersion` (and retried).
    pub conflicts: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of every acknowledged append, in microseconds (unsorted).
    pub latencies_us: Vec<u32>,
}

impl RunStats {
    /// Events per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload megabytes (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn latency_us(&self, q: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        sorted[i]
    }

    fn merge(&mut self, other: RunStats) {
        self.appends += other.appends;
        self.events += other.events;
        self.bytes += other.bytes;
        self.conflicts += other.conflicts;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// A payload of `n` bytes (not all zero, so nothing compresses it away).
pub fn payload(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Splits `total` appends over `writers` as evenly as possible.
fn share(total: u64, writers: usize, w: usize) -> u64 {
    let writers = writers as u64;
    total / writers + u64::from((w as u64) < total % writers)
}

/// Runs `total_appends` appends of `spec` against `store` and measures them.
/// `run` distinguishes the streams of repeated runs on one store.
pub async fn run_appends(
    store: Arc<dyn EventStore>,
    spec: AppendSpec,
    total_appends: u64,
    run: u64,
) -> Result<RunStats, StoreError> {
    let data = payload(spec.event_bytes);
    let hot = StreamId::new(format!("bench-hot-{run}"))?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(spec.writers);
    for w in 0..spec.writers {
        let (store, data, hot) = (store.clone(), data.clone(), hot.clone());
        let n = share(total_appends, spec.writers, w);
        tasks.push(tokio::spawn(async move {
            let own = StreamId::new(format!("bench-{run}-{w}"))?;
            let mut stats = RunStats {
                latencies_us: Vec::with_capacity(n as usize),
                ..RunStats::default()
            };
            for _ in 0..n {
                let events = || {
                    (0..spec.events_per_append)
                        .map(|_| NewEvent::new("BenchEvent", data.clone()))
                        .collect::<Vec<_>>()
                };
                let t = Instant::now();
                match spec.streams {
                    Streams::Distinct => {
                        store.append(&own, ExpectedVersion::Any, events()).await?;
                    }
                    Streams::Hot => loop {
                        let version = store.stream_version(&hot).await?;
                        match store.append(&hot, ExpectedVersion::Exact(version), events()).await {
                            Ok(_) => break,
                            Err(StoreError::WrongExpectedVersion { .. }) => stats.conflicts += 1,
                            Err(e) => return Err(e),
                        }
                    },
                }
                stats.latencies_us.push(micros(t.elapsed()));
                stats.appends += 1;
                stats.events += spec.events_per_append as u64;
                stats.bytes += (spec.events_per_append * spec.event_bytes) as u64;
            }
            Ok::<_, StoreError>(stats)
        }));
    }
    let mut total = RunStats::default();
    for t in tasks {
        total.merge(t.await.expect("bench writer panicked")?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// The naive embedded append: each append is one sled `insert` of every
/// event (keyed by a global counter) followed by `flush()`, by `writers`
/// threads, no batching across writers. What a team would write by hand.
pub fn run_naive_sled(db: &sled::Db, spec: AppendSpec, total_appends: u64) -> Result<RunStats, sled::Error> {
    let tree = db.open_tree("naive")?;
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(tree.len() as u64));
    let data = payload(spec.event_bytes);
    let start = Instant::now();
    let results: Vec<Result<RunStats, sled::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.writers)
            .map(|w| {
                let (tree, counter, data) = (tree.clone(), counter.clone(), data.clone());
                let n = share(total_appends, spec.writers, w);
                scope.spawn(move || {
                    let mut stats = RunStats::default();
                    for _ in 0..n {
                        let t = Instant::now();
                        let mut batch = sled::Batch::default();
                        for _ in 0..spec.events_per_append {
                            let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            batch.insert(&k.to_be_bytes(), &data[..]);
                        }
                        tree.apply_batch(batch)?;
                        tree.flush()?;
                        stats.latencies_us.push(micros(t.elapsed()));
                        stats.appends += 1;
                        stats.events += spec.events_per_append as u64;
                        stats.bytes += (spec.events_per_append * spec.event_bytes) as u64;
                    }
                    Ok(stats)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("naive writer panicked"))
            .collect()
    });
    let mut total = RunStats::default();
    for r in results {
        total.merge(r?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// The hand-written PostgreSQL append: one connection per writer, each
/// append one autocommitted `INSERT` into a table with
/// `UNIQUE (stream_id, version)` (a duplicate version is the conflict),
/// each writer on a stream of its own with the version counted on the
/// client. Durable as PostgreSQL commits are (`synchronous_commit = on`);
/// no batching across writers except what the server's own WAL flush
/// shares. What a team would write by hand.
#[cfg(feature = "postgres")]
pub struct NaivePostgres {
    clients: Vec<Arc<strata_store::tokio_postgres::Client>>,
    table: String,
}

#[cfg(feature = "postgres")]
impl NaivePostgres {
    /// Opens `writers` connections to `url` and creates `table` (an
    /// unqualified name, created in the connection's default schema).
    pub async fn connect(url: &str, table: &str, writers: usize) -> Result<Self, strata_store::tokio_postgres::Error> {
        use strata_store::tokio_postgres::{self, NoTls};
        let mut clients = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            clients.push(Arc::new(client));
        }
        clients[0]
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     stream_id text NOT NULL,
                     version bigint NOT NULL,
                     event_type text NOT NULL,
                     payload bytea NOT NULL,
                     recorded_at timestamptz NOT NULL DEFAULT now(),
                     UNIQUE (stream_id, version)
                 )"
            ))
            .await?;
        Ok(NaivePostgres {
            clients,
            table: table.to_string(),
        })
    }

    /// Drops the table.
    pub async fn drop_table(&self) -> Result<(), strata_store::tokio_postgres::Error> {
        self.clients[0]
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await
    }

    /// Runs `total_appends` single-event appends by `spec.writers` writers
    /// (at most the number of connections); `run` distinguishes the streams
    /// of repeated runs.
    pub async fn run(
        &self,
        spec: AppendSpec,
        total_appends: u64,
        run: u64,
    ) -> Result<RunStats, strata_store::tokio_postgres::Error> {
        let data = payload(spec.event_bytes);
        let sql = format!(
            "INSERT INTO {} (stream_id, version, event_type, payload) VALUES ($1, $2, $3, $4)",
            self.table
        );
        let writers = spec.writers.min(self.clients.len());
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(writers);
        for w in 0..writers {
            let (client, data, sql) = (self.clients[w].clone(), data.clone(), sql.clone());
            let n = share(total_appends, writers, w);
            tasks.push(tokio::spawn(async move {
                let statement = client.prepare(&sql).await?;
                let stream = format!("naive-{run}-{w}");
                let mut stats = RunStats {
                    latencies_us: Vec::with_capacity(n as usize),
                    ..RunStats::default()
                };
                for version in 1..=n as i64 {
                    let t = Instant::now();
                    client
                        .execute(&statement, &[&stream, &version, &"BenchEvent", &&data[..]])
                        .await?;
                    stats.latencies_us.push(micros(t.elapsed()));
                    stats.appends += 1;
                    stats.events += 1;
                    stats.bytes += spec.event_bytes as u64;
                }
                Ok::<_, strata_store::tokio_postgres::Error>(stats)
            }));
        }
        let mut total = RunStats::default();
        for t in tasks {
            total.merge(t.await.expect("bench writer panicked")?);
        }
        total.elapsed = start.elapsed();
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::MemoryStore;

    #[tokio::test]
    async fn runs_count_every_event_and_hot_runs_count_conflicts() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let spec = AppendSpec {
            writers: 8,
            event_bytes: 200,
            events_per_append: 3,
            streams: Streams::Hot,
        };
        let stats = run_appends(store.clone(), spec, 101, 0).await.unwrap();
        assert_eq!((stats.appends, stats.events, stats.bytes), (101, 303, 303 * 200));
        assert_eq!(store.head_position().await.unwrap(), 303);
        assert_eq!(stats.latencies_us.len(), 101);
        let hot = StreamId::new("bench-hot-0").unwrap();
        assert_eq!(store.stream_version(&hot).await.unwrap(), 303);
    }

    #[test]
    fn naive_baseline_writes_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let spec = AppendSpec {
            writers: 3,
            event_bytes: 64,
            events_per_append: 2,
            streams: Streams::Distinct,
        };
        let stats = run_naive_sled(&db, spec, 10).unwrap();
        assert_eq!(stats.events, 20);
        assert_eq!(db.open_tree("naive").unwrap().len(), 20);
    }
}
