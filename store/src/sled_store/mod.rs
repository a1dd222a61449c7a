//! `SledStore`: the embedded default backend, on sled 0.34.

mod keys;
mod writer;

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use self::keys::{
    FORMAT, FORMAT_KEY, decode_id_value, decode_stream_value, event_key, event_key_position, id_key, stream_key,
    stream_key_version,
};
use self::writer::Request;
use crate::codec::{StoredEvent, from_bincode, stored_event_head, unseal};
use crate::commit_stats::{CommitCounters, CommitStats};
use crate::decide::IdEntry;
use crate::durability::{Durability, SledFiles};
use crate::error::StoreError;
use crate::filter::{EventFilter, FILTER_SCAN_WINDOW, FilteredRead};
use crate::limits::Limits;
use crate::store::EventStore;
use crate::subscription::{EventSubscription, FilteredSubscription};
use crate::tables::{LocalTables, open_sled};
use crate::types::{AppendResult, Direction, EventId, RecordedEvent, StreamAppend, StreamId};

/// How a [`SledStore`] is opened.
#[derive(Clone, Debug)]
pub struct SledOptions {
    /// What an acknowledged append survives (default [`Durability::Fsync`]).
    pub durability: Durability,
    /// Limits on appends.
    pub limits: Limits,
    /// sled's page cache, in bytes (default 256 MiB).
    pub cache_capacity_bytes: u64,
    /// The most appends one group commit takes (default 1,024).
    pub max_group_appends: usize,
    /// How many appends may wait for the writer before `append` waits for room (default 4,096).
    pub queue_capacity: usize,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            durability: Durability::default(),
            limits: Limits::default(),
            cache_capacity_bytes: 256 * 1024 * 1024,
            max_group_appends: 1024,
            queue_capacity: 4096,
        }
    }
}

/// State shared by the store handles and the writer thread.
struct Shared {
    tree: sled::Tree,
    /// The newest position readers may see: committed with the configured
    /// durability. Events above it are in flight and invisible.
    visible: AtomicU64,
    head: watch::Sender<u64>,
    stats: CommitCounters,
    /// Set when a write or flush failed: the store takes no more appends.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a failed write or flush and returns the reason given to callers.
    fn fail(&self, e: &StoreError) -> String {
        let reason =
            format!("a write failed, the outcome of in-flight appends is unknown until the store is reopened: {e}");
        error!(error = %e, "sled write or flush failed; refusing further appends");
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason)
            .clone()
    }

    fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    fn publish(&self, position: u64) {
        self.visible.store(position, Ordering::Release);
        self.head.send_replace(position);
    }
}

/// The log on an embedded sled database: the default backend.
///
/// Cheap to clone; clones share the store. One process owns the directory:
/// a second open, from this process or another, fails with
/// [`StoreError::Locked`]. The writer thread stops and sled is flushed when
/// the last clone (and the last subscription) is dropped.
///
/// Appends go through one writer thread that commits every waiting append in
/// one atomic batch and one flush (group commit), so throughput grows with
/// the number of concurrent writers while every acknowledgement keeps its
/// [`Durability`]. Reads go to sled directly and never wait for the writer;
/// they see only committed events.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use strata_store::{EventStore, ExpectedVersion, NewEvent, SledStore, StreamId};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SledStore::open(dir.path()).unwrap();
/// let s = StreamId::new("order-1").unwrap();
/// store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", "{}")]).await.unwrap();
/// drop(store);
/// let store = SledStore::open(dir.path()).unwrap();
/// assert_eq!(store.stream_version(&s).await.unwrap(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Request>>,
    threads: Vec<JoinHandle<()>>,
    db: sled::Db,
    tables: LocalTables,
    path: PathBuf,
    options: SledOptions,
    _lock: Arc<File>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued, then stop;
        // the syncer stops after answering the writer's last group.
        drop(self.tx.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                warn!("a strata writer thread panicked");
            }
        }
        if let Err(e) = self.db.flush() {
            warn!(error = %e, "flushing sled on close failed");
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path` with default options:
    /// durable appends ([`Durability::Fsync`]) and default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StoreError> {
        SledStore::open_with(path, SledOptions::default())
    }

    /// Opens (or creates) the store in directory `path`.
    ///
    /// Restores the stream heads, the global position and the event id index
    /// from disk; they are all read from the log's own keys, so nothing that
    /// was acknowledged is missing and no append is half there.
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<SledStore, StoreError> {
        options.limits.validate()?;
        if options.max_group_appends == 0 || options.queue_capacity == 0 {
            return Err(StoreError::InvalidLimits {
                reason: "max_group_appends and queue_capacity must be positive".into(),
            });
        }
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("strata.lock"))
            .map_err(|e| StoreError::io("opening the lock file", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
            Err(TryLockError::Error(e)) => return Err(StoreError::io("locking the store directory", e)),
        }
        let db = open_sled(&path, options.cache_capacity_bytes)?;
        let tree = db.open_tree("strata-log")?;
        match tree.get(FORMAT_KEY)? {
            Some(f) if f.as_ref() == FORMAT => {}
            Some(f) => {
                return Err(StoreError::IncompatibleFormat {
                    path,
                    found: String::from_utf8_lossy(&f).into_owned(),
                    expected: String::from_utf8_lossy(FORMAT).into_owned(),
                });
            }
            None if tree.is_empty() => {
                tree.insert(FORMAT_KEY, FORMAT)?;
                tree.flush()?;
            }
            None => {
                return Err(StoreError::IncompatibleFormat {
                    path,
                    found: "no format marker".into(),
                    expected: String::from_utf8_lossy(FORMAT).into_owned(),
                });
            }
        }
        let head = match tree.scan_prefix(b"e").next_back() {
            Some(kv) => event_key_position(&kv?.0)?,
            None => 0,
        };
        let syncer = match options.durability {
            Durability::Fsync => {
                Some(SledFiles::open(&path).map_err(|e| StoreError::io("opening sled's files for fsync", e))?)
            }
            _ => None,
        };
        let lock = Arc::new(lock);
        let tables = LocalTables::beside(db.clone(), &path, options.durability, lock.clone())?;
        let shared = Arc::new(Shared {
            tree,
            visible: AtomicU64::new(head),
            head: watch::Sender::new(head),
            stats: CommitCounters::default(),
            failure: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let (applied_tx, applied_rx) = std::sync::mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::io("starting the writer threads", e))
        };
        let threads = vec![
            spawn("strata-writer", {
                let shared = shared.clone();
                let max_group = options.max_group_appends;
                Box::new(move || writer::run_writer(shared, rx, applied_tx, max_group))
            })?,
            spawn("strata-syncer", {
                let shared = shared.clone();
                let durability = options.durability;
                Box::new(move || writer::run_syncer(shared, applied_rx, syncer, durability))
            })?,
        ];
        info!(path = %path.display(), head, durability = ?options.durability, "opened sled store");
        Ok(SledStore {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                threads,
                db,
                tables,
                path,
                options,
                _lock: lock,
            }),
        })
    }

    /// The tables beside the log, for read models, idempotency records and
    /// other state kept with it (see [`LocalTables`]). They share this
    /// store's directory and [`Durability`].
    pub fn tables(&self) -> LocalTables {
        self.inner.tables.clone()
    }

    /// The log's own sled tree, for tests that damage records on purpose.
    /// Not part of the API: its keys and values are the backend's private
    /// format.
    #[doc(hidden)]
    pub fn log_tree_for_tests(&self) -> &sled::Tree {
        self.tree()
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SledOptions {
        &self.inner.options
    }

    /// Group commit counters since the store was opened.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.shared.stats.snapshot()
    }

    fn tree(&self) -> &sled::Tree {
        &self.inner.shared.tree
    }

    fn read_event(&self, position: u64) -> Result<RecordedEvent, StoreError> {
        let key = event_key(position);
        let location = || format!("event at position {position}");
        let value = self.tree().get(key)?.ok_or_else(|| StoreError::Corrupt {
            location: location(),
            detail: "the event is missing".into(),
        })?;
        let body = unseal(&key, &value, location)?;
        let stored: StoredEvent = from_bincode(body, location)?;
        Ok(stored.into_recorded(position))
    }

    /// The event a stream index entry points at, checked against the entry.
    fn read_stream_event(&self, stream: &StreamId, version: u64, position: u64) -> Result<RecordedEvent, StoreError> {
        let event = self.read_event(position)?;
        if &event.stream_id != stream || event.version != version {
            return Err(StoreError::Corrupt {
                location: format!("stream {stream} version {version}"),
                detail: format!(
                    "index points at position {position}, which holds {} version {}",
                    event.stream_id, event.version
                ),
            });
        }
        Ok(event)
    }
}

/// The newest version of `stream` whose event is at or below `visible`.
fn newest_version(tree: &sled::Tree, stream: &StreamId, visible: u64) -> Result<u64, StoreError> {
    for kv in tree.range(stream_key(stream, 1)..=stream_key(stream, u64::MAX)).rev() {
        let (k, v) = kv?;
        if decode_stream_value(&k, &v)? <= visible {
            return stream_key_version(&k);
        }
    }
    Ok(0)
}

fn find_id(tree: &sled::Tree, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
    let key = id_key(stream, id);
    tree.get(&key)?.map(|v| decode_id_value(&key, &v)).transpose()
}

#[async_trait]
impl EventStore for SledStore {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.options.limits.check(&appends)?;
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        let tx = self.inner.tx.as_ref().ok_or_else(closed)?;
        tx.send(Request { appends, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let visible = self.inner.shared.visible();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        match direction {
            Direction::Forward => {
                let range = self
                    .tree()
                    .range(stream_key(stream, from_version.max(1))..=stream_key(stream, u64::MAX));
                for kv in range {
                    let (k, v) = kv?;
                    let position = decode_stream_value(&k, &v)?;
                    if position > visible {
                        break;
                    }
                    out.push(self.read_stream_event(stream, stream_key_version(&k)?, position)?);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Direction::Backward => {
                if from_version == 0 {
                    return Ok(out);
                }
                let range = self
                    .tree()
                    .range(stream_key(stream, 1)..=stream_key(stream, from_version));
                for kv in range.rev() {
                    let (k, v) = kv?;
                    let position = decode_stream_value(&k, &v)?;
                    if position > visible {
                        continue;
                    }
                    out.push(self.read_stream_event(stream, stream_key_version(&k)?, position)?);
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let visible = self.inner.shared.visible();
        let from = from_position.max(1);
        if limit == 0 || from > visible {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(limit.min((visible - from + 1) as usize).min(4096));
        for kv in self.tree().range(event_key(from)..=event_key(visible)) {
            let (k, v) = kv?;
            let position = event_key_position(&k)?;
            let location = || format!("event at position {position}");
            let body = unseal(&k, &v, location)?;
            let stored: StoredEvent = from_bincode(body, location)?;
            out.push(stored.into_recorded(position));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Checks each record's checksum, decodes its stream and type, and
    /// decodes the rest only when the filter matches.
    async fn read_filtered(
        &self,
        from_position: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<FilteredRead, StoreError> {
        filter.check()?;
        let visible = self.inner.shared.visible();
        let from = from_position.max(1);
        let mut read = FilteredRead {
            events: Vec::new(),
            examined: from - 1,
        };
        if limit == 0 || from > visible {
            return Ok(read);
        }
        let last = visible.min(from.saturating_add(FILTER_SCAN_WINDOW as u64 - 1));
        for kv in self.tree().range(event_key(from)..=event_key(last)) {
            let (k, v) = kv?;
            let position = event_key_position(&k)?;
            if position != read.examined + 1 {
                return Err(StoreError::Corrupt {
                    location: format!("event at position {}", read.examined + 1),
                    detail: "the event is missing".into(),
                });
            }
            let location = || format!("event at position {position}");
            let body = unseal(&k, &v, location)?;
            let head = stored_event_head(body, location)?;
            if filter.matches_parts(head.stream, head.event_type) {
                let stored: StoredEvent = from_bincode(body, location)?;
                read.events.push(stored.into_recorded(position));
            }
            read.examined = position;
            if read.events.len() == limit {
                break;
            }
        }
        Ok(read)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        newest_version(self.tree(), stream, self.inner.shared.visible())
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.inner.shared.visible())
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        EventSubscription::follow(self.clone(), self.inner.shared.head.subscribe(), after)
    }

    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
        FilteredSubscription::follow(self.clone(), self.inner.shared.head.subscribe(), after, filter)
    }
}
