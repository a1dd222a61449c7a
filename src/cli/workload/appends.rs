//! Append workloads: strata, the naive sled append and the disk's ceiling
//! driven by the same writers, payloads and stream choice.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use strata_store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};

/// Which streams the writers append to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Streams {
    /// Each writer appends to a stream of its own (no conflicts), with `Any`.
    Distinct,
    /// Every writer appends to one stream with `Exact` of the version it
    /// read, retrying on conflict (the conflicts are counted).
    Hot,
}

/// One append workload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
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

/// How long a run lasts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Budget {
    /// This many appends in all, shared evenly by the writers.
    Appends(u64),
    /// As many appends as fit in this time.
    Time(Duration),
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
    /// Appends refused with a version conflict (and retried).
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

    pub(crate) fn merge(&mut self, other: RunStats) {
        self.appends += other.appends;
        self.events += other.events;
        self.bytes += other.bytes;
        self.conflicts += other.conflicts;
        self.latencies_us.extend(other.latencies_us);
    }

    pub(crate) fn count(&mut self, spec: &AppendSpec, took: Duration) {
        self.latencies_us.push(micros(took));
        self.appends += 1;
        self.events += spec.events_per_append as u64;
        self.bytes += (spec.events_per_append * spec.event_bytes) as u64;
    }
}

/// A payload of `n` bytes (not all zero, so nothing compresses it away).
pub fn payload(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Hands out the appends of a run to its writers.
#[derive(Clone)]
pub(crate) struct Tickets {
    budget: Budget,
    pub(crate) start: Instant,
    taken: Arc<AtomicU64>,
}

impl Tickets {
    pub(crate) fn new(budget: Budget) -> Tickets {
        Tickets {
            budget,
            start: Instant::now(),
            taken: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether the writer may make one more append.
    pub(crate) fn next(&self) -> bool {
        match self.budget {
            Budget::Appends(n) => self.taken.fetch_add(1, Ordering::Relaxed) < n,
            Budget::Time(d) => self.start.elapsed() < d,
        }
    }
}

/// Runs appends of `spec` against `store` within `budget` and measures them.
/// `run` distinguishes the streams of repeated runs on one store.
pub async fn run_appends(
    store: Arc<dyn EventStore>,
    spec: AppendSpec,
    budget: Budget,
    run: u64,
) -> Result<RunStats, StoreError> {
    let data = payload(spec.event_bytes);
    let hot = StreamId::new(format!("bench-hot-{run}"))?;
    let tickets = Tickets::new(budget);
    let mut tasks = Vec::with_capacity(spec.writers);
    for w in 0..spec.writers {
        let (store, data, hot, tickets) = (store.clone(), data.clone(), hot.clone(), tickets.clone());
        tasks.push(tokio::spawn(async move {
            let own = StreamId::new(format!("bench-{run}-{w}"))?;
            let mut stats = RunStats::default();
            while tickets.next() {
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
                stats.count(&spec, t.elapsed());
            }
            Ok::<_, StoreError>(stats)
        }));
    }
    let mut total = RunStats::default();
    for t in tasks {
        total.merge(t.await.expect("bench writer panicked")?);
    }
    total.elapsed = tickets.start.elapsed();
    Ok(total)
}

/// The naive embedded append, what a team would write by hand on sled: one
/// `apply_batch` of the append's events (keyed by a global counter) and a
/// `flush()` per append, by `writers` threads, no batching across writers.
/// For [`Streams::Hot`], a sled transaction checks and bumps a version key
/// first (optimistic concurrency by hand), counting conflicts.
pub fn run_naive_sled(db: &sled::Db, spec: AppendSpec, budget: Budget) -> Result<RunStats, sled::Error> {
    let tree = db.open_tree("naive")?;
    let counter = Arc::new(AtomicU64::new(tree.len() as u64 + 1));
    let data = payload(spec.event_bytes);
    let tickets = Tickets::new(budget);
    let results: Vec<Result<RunStats, sled::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.writers)
            .map(|_| {
                let (tree, counter, data, tickets) = (tree.clone(), counter.clone(), data.clone(), tickets.clone());
                scope.spawn(move || {
                    let mut stats = RunStats::default();
                    while tickets.next() {
                        let t = Instant::now();
                        match spec.streams {
                            Streams::Distinct => {
                                let mut batch = sled::Batch::default();
                                for _ in 0..spec.events_per_append {
                                    let k = counter.fetch_add(1, Ordering::Relaxed);
                                    batch.insert(&k.to_be_bytes(), &data[..]);
                                }
                                tree.apply_batch(batch)?;
                            }
                            Streams::Hot => loop {
                                let seen = version_of(tree.get(b"hot-version")?);
                                let r = tree.transaction(|tx| {
                                    let now = version_of(tx.get(b"hot-version")?);
                                    if now != seen {
                                        return sled::transaction::abort(());
                                    }
                                    for i in 0..spec.events_per_append as u64 {
                                        let mut k = b"hot-".to_vec();
                                        k.extend_from_slice(&(seen + 1 + i).to_be_bytes());
                                        tx.insert(k, &data[..])?;
                                    }
                                    tx.insert(b"hot-version", &(seen + spec.events_per_append as u64).to_be_bytes())?;
                                    Ok(())
                                });
                                match r {
                                    Ok(()) => break,
                                    Err(sled::transaction::TransactionError::Abort(())) => stats.conflicts += 1,
                                    Err(sled::transaction::TransactionError::Storage(e)) => return Err(e),
                                }
                            },
                        }
                        tree.flush()?;
                        stats.count(&spec, t.elapsed());
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
    total.elapsed = tickets.start.elapsed();
    Ok(total)
}

fn version_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| v.as_ref().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// How the disk-ceiling file is laid out before the run.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Written with zeros and synced beforehand: appends only overwrite
    /// blocks, `fdatasync` has no metadata to write.
    Preallocated,
    /// Grows with every append, as a log file does.
    Growing,
}

/// The disk's ceiling: one writer appending `record_bytes` records to a
/// plain file, with one `fdatasync` every `records_per_sync` records. No
/// database does better on the same disk with the same flush granularity.
/// Latencies are per `fdatasync` batch.
pub fn run_disk_ceiling(
    dir: &Path,
    record_bytes: usize,
    records_per_sync: usize,
    mode: FileMode,
    budget: Budget,
) -> std::io::Result<RunStats> {
    let path = dir.join(format!("ceiling-{record_bytes}-{records_per_sync}-{mode:?}.log"));
    let record = payload(record_bytes);
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let batch_bytes = (records_per_sync * record_bytes) as u64;
    // Room for the budgeted appends, or for a few thousand batches in a
    // timed run (within 1..=256 MiB); a timed run stops when it is full.
    let room = match budget {
        Budget::Appends(n) => n * batch_bytes,
        Budget::Time(_) => (batch_bytes * 2048).clamp(1 << 20, 256 << 20),
    };
    if mode == FileMode::Preallocated {
        let room = room as usize;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..room.div_ceil(zeros.len()) {
            file.write_all(&zeros)?;
        }
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        drop(file);
        file = OpenOptions::new().write(true).open(&path)?;
    }
    let spec = AppendSpec {
        writers: 1,
        event_bytes: record_bytes,
        events_per_append: records_per_sync,
        streams: Streams::Distinct,
    };
    let tickets = Tickets::new(budget);
    let mut stats = RunStats::default();
    let mut written = 0u64;
    while tickets.next() {
        if mode == FileMode::Preallocated && written + batch_bytes > room {
            break;
        }
        let t = Instant::now();
        for _ in 0..records_per_sync {
            file.write_all(&record)?;
        }
        file.sync_data()?;
        written += batch_bytes;
        stats.count(&spec, t.elapsed());
    }
    stats.elapsed = tickets.start.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(stats)
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
        let stats = run_appends(store.clone(), spec, Budget::Appends(101), 0).await.unwrap();
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
        let mut spec = AppendSpec {
            writers: 3,
            event_bytes: 64,
            events_per_append: 2,
            streams: Streams::Distinct,
        };
        let stats = run_naive_sled(&db, spec, Budget::Appends(10)).unwrap();
        assert_eq!(stats.events, 20);
        assert_eq!(db.open_tree("naive").unwrap().len(), 20);
        spec.streams = Streams::Hot;
        let stats = run_naive_sled(&db, spec, Budget::Appends(10)).unwrap();
        assert_eq!(stats.events, 20);
        let tree = db.open_tree("naive").unwrap();
        assert_eq!(version_of(tree.get(b"hot-version").unwrap()), 20);
    }

    #[test]
    fn disk_ceiling_syncs_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [FileMode::Preallocated, FileMode::Growing] {
            let stats = run_disk_ceiling(dir.path(), 100, 10, mode, Budget::Appends(5)).unwrap();
            assert_eq!((stats.appends, stats.events, stats.bytes), (5, 50, 5000));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "files are removed");
    }
}
