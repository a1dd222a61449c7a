//! `SegmentStore`: the log on segment files of strata's own format, with a
//! sled index derived from them. See `docs/log.md`.
//!
//! Layout of a data directory:
//!
//! ```text
//! strata.lock          flock: one process owns the directory
//! log/NNNNNNNNNN.seg   the segments (the log itself)
//! index/               the sled index: derived, deletable, rebuilt on open
//! tables/              the tables beside the log (read models, HTTP records):
//!                      a sled database of their own, not derived, never deleted
//! ```

mod format;
mod grow;
mod idruns;
mod index;
mod indexer;
mod layout;
mod log;
mod options;
mod read;
mod recovery;
mod retention;
mod scavenge;
mod signal;
#[cfg(feature = "sim")]
mod sim;
mod spare;
mod storage;
mod syncer;
mod tail;
mod verify;
mod writer;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

pub(crate) use self::format::MAX_EVENT_TYPE_BYTES;
use self::format::{MAX_SEGMENT_BYTES, SEGMENT_HEADER_BYTES, address};
use self::index::Index;
use self::log::Log;
use self::tail::Tail;
use self::writer::Request;
use crate::durability::Durability;
use crate::error::StoreError;
use crate::filter::{EventFilter, FILTER_SCAN_WINDOW, FilteredRead, filter_read};
use crate::retention::{StreamOperation, StreamOperationResult};
use crate::store::EventStore;
use crate::subscription::{EventSubscription, FilteredSubscription};

/// The smallest `SegmentOptions::segment_growth_bytes`: a sector.
const MIN_GROWTH_BYTES: u64 = 512;
use crate::tables::LocalTables;
use crate::types::{AppendResult, Direction, RecordedEvent, StreamAppend, StreamId, StreamSummary};

pub use self::layout::DataLayout;
use self::options::Stats;
pub use self::options::{DiskUsage, IndexProgress, SegmentOptions, SegmentStats};
pub use self::scavenge::{ScavengeOptions, ScavengeProgress, ScavengeReport};
#[cfg(feature = "sim")]
pub use self::sim::{PowerLoss, SimDisk, SimOp};
pub use self::storage::{FileStorage, Storage, StorageFile};
pub use self::verify::VerifyReport;

/// State shared by the handles, the writer, the syncer and the indexer.
struct Shared {
    log: Log,
    index: Index,
    tail: Mutex<Tail>,
    /// The newest position readers may see (synced in the default mode).
    visible: AtomicU64,
    head: watch::Sender<u64>,
    /// A log address below which everything is synced.
    durable: AtomicU64,
    /// The newest position that is synced: the indexer goes no further.
    durable_position: AtomicU64,
    /// The newest position in the sled index.
    indexed: AtomicU64,
    /// Groups the syncer has answered.
    handled: AtomicU64,
    /// Set while the writer waits for the indexer.
    lagging: AtomicBool,
    /// Set when the store closes: the indexer finishes and stops.
    stopping: AtomicBool,
    /// Set when a write, sync or index batch failed: no more appends.
    failure: Mutex<Option<String>>,
    /// Bumped and signalled when the state changes for a thread in [`Shared::wait`].
    signal: (Mutex<u64>, Condvar),
    /// Threads in [`Shared::wait`]: with none, [`Shared::notify`] is free.
    waiters: AtomicUsize,
    /// The indexer's own signal, so that a commit does not wake it for
    /// every append (a context switch each on a small machine).
    index_signal: (Mutex<u64>, Condvar),
    /// The indexer is woken early once this many events wait for it.
    index_batch_events: u64,
    stats: Stats,
    /// The states of streams with a metadata stream (`retention.rs`).
    states: Mutex<retention::States>,
    /// Set once any stream has a state: reads skip the lookups until then.
    any_states: AtomicBool,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a failed write, sync or index batch; returns the reason given to callers.
    fn fail(&self, e: &StoreError) -> String {
        let reason =
            format!("a write failed; the outcome of in-flight appends is unknown until the store is reopened: {e}");
        error!(error = %e, "segment log write failed; refusing further appends");
        let reason = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason)
            .clone();
        self.notify();
        self.wake_indexer();
        reason
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    fn publish(&self, position: u64) {
        self.visible.fetch_max(position, Ordering::AcqRel);
        self.head.send_replace(self.visible());
        self.notify();
        self.nudge_indexer();
    }
}

/// The log on segment files with a sled index: see the module documentation
/// and `docs/log.md`.
///
/// Cheap to clone; clones share the store. One process owns the directory:
/// a second open fails with [`StoreError::Locked`]. Closing (dropping the
/// last clone and subscription) finishes the queued appends, seals the log
/// and brings the index up to date.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentStore, StreamId};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SegmentStore::open(dir.path()).unwrap();
/// let s = StreamId::new("order-1").unwrap();
/// store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", "{}")]).await.unwrap();
/// drop(store);
/// let store = SegmentStore::open(dir.path()).unwrap();
/// assert_eq!(store.stream_version(&s).await.unwrap(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct SegmentStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Request>>,
    /// The writer's state: the writer thread's, or an idle-time caller's.
    cell: Arc<writer::WriterCell>,
    writer: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
    path: PathBuf,
    options: SegmentOptions,
    /// The tables beside the log, opened on first use.
    tables: Mutex<Option<LocalTables>>,
    /// The directory's lock; the tables hold it too while they are in use.
    lock: Arc<dyn Any + Send + Sync>,
    /// Held by a running scavenge: two at once would rewrite one segment
    /// through the same copy file.
    scavenging: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            warn!("the strata writer thread panicked");
        }
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.notify();
        self.shared.wake_indexer();
        if let Some(i) = self.indexer.take()
            && i.join().is_err()
        {
            warn!("the strata indexer thread panicked");
        }
        if let Err(e) = self.shared.index.flush() {
            warn!(error = %e, "flushing the index at close failed; the next open re-indexes the tail");
        }
    }
}

impl SegmentStore {
    /// Opens (or creates) the store in directory `path` with default
    /// options: durable appends and default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<SegmentStore, StoreError> {
        SegmentStore::open_with(path, SegmentOptions::default())
    }

    /// Opens (or creates) the store in directory `path`.
    pub fn open_with(path: impl AsRef<Path>, options: SegmentOptions) -> Result<SegmentStore, StoreError> {
        SegmentStore::open_with_progress(path, options, &mut |_| {})
    }

    /// Opens (or creates) the store, calling `progress` while it indexes the
    /// log (after a crash, or a deleted index directory).
    pub fn open_with_progress(
        path: impl AsRef<Path>,
        options: SegmentOptions,
        progress: &mut dyn FnMut(IndexProgress),
    ) -> Result<SegmentStore, StoreError> {
        SegmentStore::open_on(Arc::new(FileStorage), path, options, progress)
    }

    /// Opens the store on any [`Storage`] (the simulated disk in tests).
    /// The sled index always lives on the real file system, in
    /// `options.index_dir` or `path/index`.
    pub fn open_on(
        storage: Arc<dyn Storage>,
        path: impl AsRef<Path>,
        options: SegmentOptions,
        progress: &mut dyn FnMut(IndexProgress),
    ) -> Result<SegmentStore, StoreError> {
        options.limits.validate()?;
        if options.max_group_appends == 0
            || options.queue_capacity == 0
            || options.max_index_lag_events == 0
            || options.index_batch_events == 0
        {
            return Err(StoreError::InvalidLimits {
                reason:
                    "max_group_appends, queue_capacity, max_index_lag_events and index_batch_events must be positive"
                        .into(),
            });
        }
        if options.segment_growth_bytes < MIN_GROWTH_BYTES {
            return Err(StoreError::InvalidLimits {
                reason: format!(
                    "segment_growth_bytes is {}, less than {MIN_GROWTH_BYTES}",
                    options.segment_growth_bytes
                ),
            });
        }
        if options.segment_bytes < 2 * SEGMENT_HEADER_BYTES || options.segment_bytes >= MAX_SEGMENT_BYTES {
            return Err(StoreError::InvalidLimits {
                reason: format!(
                    "segment_bytes must be within 8 KiB..1 TiB, not {}",
                    options.segment_bytes
                ),
            });
        }
        let path = path.as_ref().to_path_buf();
        let io = |what: &str, e| StoreError::io(format!("{what} {}", path.display()), e);
        layout::check(&*storage, &path)?;
        storage.create_dir_all(&path).map_err(|e| io("creating", e))?;
        let lock: Arc<dyn Any + Send + Sync> = Arc::from(
            storage
                .lock(&path)
                .map_err(|e| io("locking", e))?
                .ok_or_else(|| StoreError::Locked { path: path.clone() })?,
        );
        let log_dir = path.join("log");
        storage
            .create_dir_all(&log_dir)
            .map_err(|e| io("creating log/ in", e))?;
        storage.sync_dir(&path).map_err(|e| io("syncing", e))?;
        let index_dir = options.index_dir.clone().unwrap_or_else(|| path.join("index"));
        let index = open_index(&index_dir)?;
        let log = Log::new(storage, log_dir);
        let cursor = recovery::recover(
            &log,
            &index,
            options.index_batch_events,
            options.segment_bytes,
            options.segment_growth_bytes,
            progress,
        )?;
        let head = cursor.next_position - 1;
        let durable = address(cursor.segment.seq, cursor.offset);
        let shared = Arc::new(Shared {
            log,
            index,
            tail: Mutex::new(Tail::default()),
            visible: AtomicU64::new(head),
            head: watch::Sender::new(head),
            durable: AtomicU64::new(durable),
            durable_position: AtomicU64::new(head),
            indexed: AtomicU64::new(head),
            handled: AtomicU64::new(0),
            lagging: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            signal: (Mutex::new(0), Condvar::new()),
            waiters: AtomicUsize::new(0),
            index_signal: (Mutex::new(0), Condvar::new()),
            index_batch_events: options.index_batch_events as u64,
            stats: Stats::default(),
            states: Mutex::new(retention::States::default()),
            any_states: AtomicBool::new(false),
        });
        shared.load_states()?;
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let (to_syncer, from_writer) = std::sync::mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::io("starting the writer threads", e))
        };
        let fsync = options.durability == Durability::Fsync;
        let syncer = spawn("strata-syncer", {
            let shared = shared.clone();
            Box::new(move || syncer::run_syncer(shared, from_writer, fsync))
        })?;
        let config = writer::WriterConfig {
            max_group_appends: options.max_group_appends,
            max_index_lag_events: options.max_index_lag_events,
            segment_bytes: options.segment_bytes,
            growth_bytes: options.segment_growth_bytes,
            prepare_spare: options.prepare_next_segment,
            fsync,
        };
        let cell = Arc::new(writer::WriterCell::new(shared.clone(), to_syncer, cursor, config));
        let writer = spawn("strata-writer", {
            let cell = cell.clone();
            Box::new(move || writer::run_writer(cell, rx, syncer))
        })?;
        let indexer = spawn("strata-indexer", {
            let shared = shared.clone();
            let batch = options.index_batch_events;
            Box::new(move || indexer::run_indexer(shared, batch))
        })?;
        info!(path = %path.display(), head, durability = ?options.durability, "opened segment store");
        Ok(SegmentStore {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                cell,
                writer: Some(writer),
                indexer: Some(indexer),
                path,
                options,
                tables: Mutex::new(None),
                lock,
                scavenging: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The tables beside the log, for read models, idempotency records and
    /// other state kept with it (see [`LocalTables`]): a sled database of
    /// their own in `tables/` (or [`SegmentOptions::tables_dir`]), opened on
    /// the first call and kept while the store or a clone of them lives.
    /// Unlike the index they are not derived from the log: nothing rebuilds
    /// them. [`LocalTables::sync`] makes their writes survive what the
    /// store's appends survive ([`Durability`]).
    ///
    /// Errors: [`StoreError::Sled`] or [`StoreError::Io`] when the
    /// database cannot be opened.
    pub fn tables(&self) -> Result<LocalTables, StoreError> {
        let mut tables = self.inner.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tables.as_ref() {
            return Ok(t.clone());
        }
        let options = &self.inner.options;
        let dir = options
            .tables_dir
            .clone()
            .unwrap_or_else(|| self.inner.path.join("tables"));
        let opened = LocalTables::open_locked(&dir, options.durability, self.inner.lock.clone())?;
        *tables = Some(opened.clone());
        Ok(opened)
    }

    /// Refuses a directory in a layout this build does not open
    /// ([`StoreError::UnsupportedLayout`], naming the [`DataLayout`]),
    /// without changing anything in it; what [`SegmentStore::open`] checks
    /// first. A directory that is absent, empty or in the segment log's
    /// layout passes.
    pub fn check_layout(path: impl AsRef<Path>) -> Result<(), StoreError> {
        layout::check(&FileStorage, path.as_ref())
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SegmentOptions {
        &self.inner.options
    }

    /// Group commit and index counters since the store was opened.
    pub fn stats(&self) -> SegmentStats {
        let shared = &self.inner.shared;
        let s = &shared.stats;
        SegmentStats {
            commits: s.commits.load(Ordering::Relaxed),
            appends: s.appends.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            inline_appends: s.inline_appends.load(Ordering::Relaxed),
            write_time: Duration::from_nanos(s.write_nanos.load(Ordering::Relaxed)),
            sync_time: Duration::from_nanos(s.sync_nanos.load(Ordering::Relaxed)),
            head: shared.visible(),
            indexed: shared.indexed.load(Ordering::Acquire),
        }
    }

    /// Waits (blocking the thread) until the sled index holds every visible
    /// event, or the store failed.
    pub fn wait_indexed(&self) -> Result<(), StoreError> {
        let shared = &self.inner.shared;
        let target = shared.visible();
        shared.lagging.store(true, Ordering::Release);
        shared.wake_indexer();
        let r = shared.wait(|| {
            if let Some(reason) = shared.failure() {
                return Some(Err(StoreError::Unavailable { reason }));
            }
            (shared.indexed.load(Ordering::Acquire) >= target).then_some(Ok(()))
        });
        shared.lagging.store(false, Ordering::Release);
        r
    }

    /// What the log and the index take on disk.
    pub fn disk_usage(&self) -> DiskUsage {
        let shared = &self.inner.shared;
        let segments = shared.log.segments();
        DiskUsage {
            log_bytes: segments
                .iter()
                .map(|s| s.end.load(Ordering::Acquire).saturating_sub(SEGMENT_HEADER_BYTES))
                .sum(),
            log_allocated: segments.iter().map(|s| s.allocated()).sum(),
            index_bytes: shared.index.size_on_disk(),
        }
    }

    /// Checks every record of the log and that the index equals a rebuild
    /// from it (see [`VerifyReport`]). Waits for the index to catch up first.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.wait_indexed()?;
        verify::verify(
            &self.inner.shared.log,
            &self.inner.shared.index,
            self.inner.shared.visible(),
        )
    }
}

/// Opens the sled index; one that sled cannot open is deleted and rebuilt.
fn open_index(dir: &Path) -> Result<Index, StoreError> {
    match Index::open(dir) {
        Ok(index) => Ok(index),
        Err(e) => {
            warn!(error = %e, dir = %dir.display(), "the index cannot be opened; deleting it to rebuild it from the log");
            std::fs::remove_dir_all(dir).map_err(|e| StoreError::io(format!("removing {}", dir.display()), e))?;
            Index::open(dir)
        }
    }
}

#[async_trait]
impl EventStore for SegmentStore {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.options.limits.check(&appends)?;
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        let tx = self.inner.tx.as_ref().ok_or_else(closed)?;
        let req = Request {
            appends,
            op: None,
            roll: false,
            reply,
        };
        if let Err(req) = self.inner.cell.try_inline(req, tx) {
            tx.send(req).await.map_err(|_| closed())?;
        }
        answer.await.map_err(|_| closed())?
    }

    async fn modify_stream(&self, op: StreamOperation) -> Result<StreamOperationResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        let tx = self.inner.tx.as_ref().ok_or_else(closed)?;
        tx.send(Request {
            appends: Vec::new(),
            op: Some(op),
            roll: false,
            reply,
        })
        .await
        .map_err(|_| closed())?;
        let written = answer.await.map_err(|_| closed())??;
        let r = written.first().ok_or_else(closed)?;
        Ok(StreamOperationResult {
            position: r.last_position,
            metadata_version: r.stream_version,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let shared = self.inner.shared.clone();
        let visible = shared.visible();
        let stream = stream.clone();
        blocking(move || shared.read_stream_kept(&stream, from_version, direction, limit, visible)).await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let shared = self.inner.shared.clone();
        blocking(move || shared.read_all(from_position, limit)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let shared = &self.inner.shared;
        let visible = shared.visible();
        let last = shared.visible_version(stream, visible)?;
        Ok(shared
            .state_at(stream, visible)
            .map_or(last, |s| s.reported_version(last)))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.inner.shared.visible())
    }

    /// From the stream index and the tail (the records not yet indexed).
    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        let shared = self.inner.shared.clone();
        let (prefix, after) = (prefix.to_owned(), after.cloned());
        blocking(move || shared.list_streams(&prefix, after.as_ref(), limit)).await
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        EventSubscription::follow(self.clone(), self.inner.shared.head.subscribe(), after)
    }

    /// One pass over the window's records (a record's events are decoded
    /// together), each event tested as it comes.
    async fn read_filtered(
        &self,
        from_position: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<FilteredRead, StoreError> {
        filter.check()?;
        let from = from_position.max(1);
        if limit == 0 {
            return Ok(FilteredRead {
                events: Vec::new(),
                examined: from - 1,
            });
        }
        let shared = self.inner.shared.clone();
        let events = blocking(move || shared.read_all(from, FILTER_SCAN_WINDOW)).await?;
        Ok(filter_read(events, from, limit, filter))
    }

    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
        FilteredSubscription::follow(self.clone(), self.inner.shared.head.subscribe(), after, filter)
    }
}

/// Runs file reads off the async worker threads when the runtime allows it.
async fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
