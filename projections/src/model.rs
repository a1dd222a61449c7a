//! Where a read model and its checkpoint live: [`ModelStore`], over sled
//! trees beside the log or over memory, and [`WriteSet`], the changes of
//! one batch of events staged for one atomic commit.
//!
//! # Layout in sled
//!
//! | tree                          | key            | value                               |
//! |-------------------------------|----------------|-------------------------------------|
//! | `projection.<name>.meta`      | `current`      | the generation readers see (u64 BE) |
//! |                               | `building`     | a generation being rebuilt (u64 BE) |
//! | `projection.<name>.gen.<id>`  | `c`            | the checkpoint (u64 BE)             |
//! |                               | `e`            | the id of the event at `c` (16 B)   |
//! |                               | `v`            | the model version that wrote it (u64 BE) |
//! |                               | `m` + key      | the read model's own keys           |
//!
//! A batch of events is committed as one sled `Batch` on the generation's
//! tree holding the read model's changes and the new checkpoint, so the two
//! can never disagree, whatever moment the process dies at. The batch also
//! records the [model version](crate::Projection::model_version) of the
//! projection that applied it, so a model written by a projection whose
//! keys differ (one without an index this one reads) is noticed.
//!
//! # In PostgreSQL (feature `postgres`)
//!
//! The same entries in tables beside the log (see `postgres.rs`), each
//! batch and its checkpoint in one transaction. Every process keeps the
//! current generation in memory too, the same map as a memory model, and
//! brings it up to the committed state: the writer after each of its
//! commits, every other process from the committed rows when notified (or
//! polled).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(feature = "postgres")]
use strata_store::PostgresStore;
use strata_store::{EventId, LocalTables, RecordedEvent, SledStore, StoreError, from_bincode, to_bincode};
use tokio::sync::{Mutex, MutexGuard, watch};
use tracing::{info, warn};
use uuid::Uuid;

use crate::error::ProjectionError;
#[cfg(feature = "postgres")]
use crate::postgres::{Announcement, Changes, LiveCommit, PgModel, Rebuilding};

/// The key of the checkpoint in a generation.
const CHECKPOINT_KEY: &[u8] = b"c";
/// The key of the id of the event at the checkpoint's position.
const CHECKPOINT_EVENT_KEY: &[u8] = b"e";
/// The key of the model version of the projection that wrote the generation.
const MODEL_VERSION_KEY: &[u8] = b"v";
/// The prefix of every read-model key in a generation.
const DATA: u8 = b'm';
const META_CURRENT: &[u8] = b"current";
const META_BUILDING: &[u8] = b"building";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A key and its value, as read from a model.
pub type Entry = (Vec<u8>, Vec<u8>);

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

fn decode_u64(projection: &str, key: &[u8], value: &[u8]) -> Result<u64, ProjectionError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| ProjectionError::Corrupt {
            projection: projection.to_string(),
            key: String::from_utf8_lossy(key).into_owned(),
            detail: format!("expected 8 bytes, found {}", value.len()),
        })
}

pub(crate) fn decode_value<T: DeserializeOwned>(
    projection: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ProjectionError> {
    from_bincode(bytes, String::new).map_err(|e| ProjectionError::Corrupt {
        projection: projection.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        detail: match e {
            StoreError::Corrupt { detail, .. } => detail,
            other => other.to_string(),
        },
    })
}

fn encode_value<T: Serialize>(projection: &str, key: &[u8], value: &T) -> Result<Vec<u8>, ProjectionError> {
    to_bincode(value).map_err(|e| ProjectionError::Corrupt {
        projection: projection.to_string(),
        key: String::from_utf8_lossy(key).into_owned(),
        detail: format!("cannot encode: {e}"),
    })
}

/// Records the checkpoint (and the id of the event there, and the model
/// version that wrote it) in a generation kept in memory, as a commit does.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn set_checkpoint_keys(map: &mut Map, position: u64, event_id: Option<EventId>, model_version: u64) {
    map.insert(CHECKPOINT_KEY.to_vec(), position.to_be_bytes().to_vec());
    match event_id {
        Some(id) => map.insert(CHECKPOINT_EVENT_KEY.to_vec(), id.as_bytes().to_vec()),
        None => map.remove(CHECKPOINT_EVENT_KEY),
    };
    map.insert(MODEL_VERSION_KEY.to_vec(), model_version.to_be_bytes().to_vec());
}

/// Follows the commits of other processes into a PostgreSQL model's
/// in-memory copy: refreshes when the listener announces a commit newer
/// than the copy (or reconnected, and may have missed some), and every
/// `poll_interval` in case a notification was lost. Ends with the model.
#[cfg(feature = "postgres")]
async fn follow_commits(
    model: std::sync::Weak<Inner>,
    mut announcements: tokio::sync::mpsc::UnboundedReceiver<Announcement>,
    poll_interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    listener: tokio::task::JoinHandle<()>,
) {
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        let heard = tokio::select! {
            _ = &mut stop => break,
            _ = poll.tick() => vec![None],
            a = announcements.recv() => match a {
                Some(a) => {
                    let mut heard = vec![a];
                    while let Ok(more) = announcements.try_recv() {
                        heard.push(more);
                    }
                    heard
                }
                None => break,
            },
        };
        let Some(inner) = model.upgrade() else { break };
        let model = ModelStore { inner };
        let (generation, checkpoint) = (model.generation(), model.checkpoint());
        let news = heard.iter().any(|a| match a {
            None => true,
            Some((g, p)) => *g != generation || *p > checkpoint,
        });
        if news {
            let failures = &model.inner.refresh_failures;
            match model.refresh().await {
                Ok(()) => failures.store(0, std::sync::atomic::Ordering::Relaxed),
                Err(e) => {
                    let n = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    warn!(projection = %model.name(), error = %e, failures = n, "cannot refresh the read model from PostgreSQL; trying again");
                }
            }
        }
    }
    listener.abort();
}

/// The upper bound of the keys starting with `prefix`, if there is one.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A checkpoint as committed: the position of the last event applied and
/// that event's id (so a log that holds another event there is noticed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Checkpoint {
    pub(crate) position: u64,
    pub(crate) event_id: EventId,
}

impl Checkpoint {
    /// The checkpoint after applying `event`.
    pub(crate) fn of(event: &RecordedEvent) -> Checkpoint {
        Checkpoint {
            position: event.position,
            event_id: event.id,
        }
    }
}

/// One copy of a read model with its checkpoint.
#[derive(Clone)]
enum Generation {
    Sled { id: u64, tree: sled::Tree },
    Memory { id: u64, map: Arc<RwLock<Map>> },
}

impl Generation {
    fn id(&self) -> u64 {
        match self {
            Generation::Sled { id, .. } | Generation::Memory { id, .. } => *id,
        }
    }

    fn read_map(map: &RwLock<Map>) -> RwLockReadGuard<'_, Map> {
        map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        match self {
            Generation::Sled { tree, .. } => Ok(tree.get(key)?.map(|v| v.to_vec())),
            Generation::Memory { map, .. } => Ok(Self::read_map(map).get(key).cloned()),
        }
    }

    /// The first `limit` read-model entries with keys in `[from, to)` (full
    /// keys, with the data prefix), in key order: no more than `limit` are
    /// read. An empty range (`from >= to`) reads nothing.
    fn range_raw(&self, from: Vec<u8>, to: Option<Vec<u8>>, limit: usize) -> Result<Vec<Entry>, sled::Error> {
        if to.as_ref().is_some_and(|to| from >= *to) {
            // BTreeMap::range panics on a range that ends before it starts.
            return Ok(Vec::new());
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        match self {
            Generation::Sled { tree, .. } => tree
                .range::<Vec<u8>, _>((Bound::Included(from), upper))
                .take(limit)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect(),
            Generation::Memory { map, .. } => Ok(Self::read_map(map)
                .range::<Vec<u8>, _>((Bound::Included(from), upper))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()),
        }
    }

    fn checkpoint(&self, projection: &str) -> Result<u64, ProjectionError> {
        match self
            .get_raw(CHECKPOINT_KEY)
            .map_err(|e| ProjectionError::storage(projection, e))?
        {
            Some(v) => decode_u64(projection, CHECKPOINT_KEY, &v),
            None => Ok(0),
        }
    }

    /// The model version of the projection that last committed to this
    /// generation (0 when none was recorded: before the first commit, or
    /// written by a version of strata that did not record it).
    fn model_version(&self, projection: &str) -> Result<u64, ProjectionError> {
        match self
            .get_raw(MODEL_VERSION_KEY)
            .map_err(|e| ProjectionError::storage(projection, e))?
        {
            Some(v) => decode_u64(projection, MODEL_VERSION_KEY, &v),
            None => Ok(0),
        }
    }

    /// The id of the event at the checkpoint's position, if recorded
    /// (generations written before it was are not).
    fn checkpoint_event(&self, projection: &str) -> Result<Option<EventId>, ProjectionError> {
        match self
            .get_raw(CHECKPOINT_EVENT_KEY)
            .map_err(|e| ProjectionError::storage(projection, e))?
        {
            Some(v) => <[u8; 16]>::try_from(v.as_slice())
                .map(|b| Some(EventId::from_uuid(Uuid::from_bytes(b))))
                .map_err(|_| ProjectionError::Corrupt {
                    projection: projection.to_string(),
                    key: String::from_utf8_lossy(CHECKPOINT_EVENT_KEY).into_owned(),
                    detail: format!("expected 16 bytes, found {}", v.len()),
                }),
            None => Ok(None),
        }
    }

    /// Writes `staged`, the checkpoint, the id of the event at the
    /// checkpoint and the model version in one atomic step.
    fn commit(
        &self,
        staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        at: Checkpoint,
        model_version: u64,
    ) -> Result<(), sled::Error> {
        match self {
            Generation::Sled { tree, .. } => {
                let mut batch = sled::Batch::default();
                for (k, v) in staged {
                    let k = data_key(&k);
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                batch.insert(CHECKPOINT_KEY, &at.position.to_be_bytes());
                batch.insert(CHECKPOINT_EVENT_KEY, at.event_id.as_bytes());
                batch.insert(MODEL_VERSION_KEY, &model_version.to_be_bytes());
                tree.apply_batch(batch)
            }
            Generation::Memory { map, .. } => {
                let mut map = map.write().unwrap_or_else(|p| p.into_inner());
                for (k, v) in staged {
                    let k = data_key(&k);
                    match v {
                        Some(v) => map.insert(k, v),
                        None => map.remove(&k),
                    };
                }
                map.insert(CHECKPOINT_KEY.to_vec(), at.position.to_be_bytes().to_vec());
                map.insert(CHECKPOINT_EVENT_KEY.to_vec(), at.event_id.as_bytes().to_vec());
                map.insert(MODEL_VERSION_KEY.to_vec(), model_version.to_be_bytes().to_vec());
                Ok(())
            }
        }
    }
}

enum Backend {
    Sled {
        tables: LocalTables,
        meta: sled::Tree,
    },
    Memory {
        next_id: AtomicU64,
    },
    /// The committed model in PostgreSQL; the generations in memory are
    /// copies of it.
    #[cfg(feature = "postgres")]
    Postgres {
        pg: Arc<PgModel>,
        /// Dropped with the model: stops the task that follows other
        /// processes' commits.
        _stop_follower: tokio::sync::oneshot::Sender<()>,
    },
}

/// How a commit of a batch went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// The changes and the checkpoint are written.
    Done,
    /// Nothing was written: a rebuild swapped in another generation (or, in
    /// PostgreSQL, moved the checkpoint) since the batch was staged. Follow
    /// on from [`ModelStore::follow_point`].
    Stale,
    /// PostgreSQL: the connection that held the model's writer lock is
    /// gone, and the lock with it; whether the batch landed is unknown.
    /// The model was refreshed from what is committed; wait for the lock
    /// again before writing.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    LeaseLost,
}

struct Inner {
    name: String,
    backend: Backend,
    /// The generation readers see and the live runner writes to.
    current: RwLock<Arc<Generation>>,
    /// Generations swapped out, removed once no reader holds them.
    retired: std::sync::Mutex<Vec<Arc<Generation>>>,
    /// Held for every commit to the current generation and for a swap, so a
    /// commit is never split across generations.
    commit: Mutex<()>,
    /// The current generation's checkpoint, for `wait_for` and lag.
    applied: watch::Sender<u64>,
    /// Whether a runner owns this model, and how the last one ended.
    state: watch::Sender<RunState>,
    /// PostgreSQL: refreshes of the in-memory copy that failed in a row.
    refresh_failures: std::sync::atomic::AtomicU64,
}

/// Whether a runner follows the log into a read model.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum RunState {
    /// No runner was started.
    #[default]
    Idle,
    /// A runner is following the log.
    Running,
    /// The runner was stopped.
    Stopped,
    /// PostgreSQL: a runner of this process is ready to write, but another
    /// process holds the model's writer lock and writes it. This process
    /// follows that writer's commits (so reads and `wait_for` work as with
    /// `Running`) and takes over when the lock is free.
    Standby,
    /// The runner failed; the model holds everything before `position`.
    Failed {
        /// The position it failed at (the one after the checkpoint), if the
        /// failure belongs to an event.
        position: Option<u64>,
        /// The error, as text (the runner's result has the typed error).
        error: String,
    },
}

/// The storage of one projection's read model and checkpoint.
///
/// Cheap to clone; clones share the model. Readers (the read model's query
/// methods, or [`ModelStore::get`]) always see one whole generation: a
/// rebuild writes a fresh generation and swaps it in only when it has
/// caught up with the log.
///
/// Open one `ModelStore` per projection name and database, and share it by
/// cloning: two stores opened on the same trees do not coordinate.
#[derive(Clone)]
pub struct ModelStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ModelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStore")
            .field("name", &self.inner.name)
            .field("generation", &self.generation())
            .field("checkpoint", &self.checkpoint())
            .finish()
    }
}

/// Reads of one generation of a read model, from [`ModelStore::reader`].
///
/// Every read sees the generation that was current when the reader was
/// taken, so an answer built from several reads (an index, then the values
/// it names) never mixes the model before a rebuild with the model after
/// it. It is not a snapshot: the live runner's commits to that generation
/// show between two reads (each commit whole). Cheap to clone.
#[derive(Clone)]
pub struct ModelReader {
    name: String,
    generation: Arc<Generation>,
}

impl std::fmt::Debug for ModelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelReader")
            .field("name", &self.name)
            .field("generation", &self.generation.id())
            .finish()
    }
}

impl ModelReader {
    /// The id of the generation this reader reads.
    pub fn generation(&self) -> u64 {
        self.generation.id()
    }

    /// The generation's checkpoint as stored now: the position of the last
    /// event applied to it (0 before any).
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.generation.checkpoint(&self.name)
    }

    /// The model version of the projection that last committed to the
    /// generation (0 when none was recorded); see
    /// [`ModelStore::model_version`].
    pub fn model_version(&self) -> Result<u64, ProjectionError> {
        self.generation.model_version(&self.name)
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.generation
            .get_raw(&data_key(key))
            .map_err(|e| ProjectionError::storage(&self.name, e))
    }

    /// The value under `key`, decoded (as written by [`WriteSet::put_value`]).
    pub fn get_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.get(key)?.map(|v| decode_value(&self.name, key, &v)).transpose()
    }

    /// The first `limit` entries with a key in `from..to` (`to` exclusive;
    /// `None` runs to the end), in key order; no more than `limit` are read.
    /// A range that ends before it starts is empty.
    pub fn range_limit(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        self.scan(data_key(from), Some(to.map_or_else(|| vec![DATA + 1], data_key)), limit)
    }

    /// The first `limit` entries with a key in `[from, to)` (full keys),
    /// with the data prefix taken off.
    fn scan(&self, from: Vec<u8>, to: Option<Vec<u8>>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        let mut entries = self
            .generation
            .range_raw(from, to, limit)
            .map_err(|e| ProjectionError::storage(&self.name, e))?;
        for (k, _) in &mut entries {
            k.remove(0);
        }
        Ok(entries)
    }
}

fn validate_name(name: &str) -> Result<(), ProjectionError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProjectionError::InvalidName { name: name.to_string() })
    }
}

impl ModelStore {
    /// Opens (or creates) the read model `name` in the tables beside the
    /// log of `store` ([`SledStore::tables`]), in trees named
    /// `projection.<name>.*`.
    pub fn open_sled(store: &SledStore, name: &str) -> Result<ModelStore, ProjectionError> {
        ModelStore::open_in_tables(&store.tables(), name)
    }

    /// Opens (or creates) the read model `name` in trees
    /// `projection.<name>.*` of `tables`. Removes the remains of a rebuild
    /// that did not finish (its generation was never swapped in).
    pub fn open_in_tables(tables: &LocalTables, name: &str) -> Result<ModelStore, ProjectionError> {
        validate_name(name)?;
        let storage = |e| ProjectionError::storage(name, e);
        let tables_err = |e| ProjectionError::store(name, e);
        let meta = tables
            .open_tree(&format!("projection.{name}.meta"))
            .map_err(tables_err)?;
        let current_id = match meta.get(META_CURRENT).map_err(storage)? {
            Some(v) => decode_u64(name, META_CURRENT, &v)?,
            None => {
                meta.insert(META_CURRENT, &1u64.to_be_bytes()).map_err(storage)?;
                1
            }
        };
        let gen_prefix = format!("projection.{name}.gen.");
        let current_tree = format!("{gen_prefix}{current_id}");
        for tree_name in tables.tree_names() {
            if tree_name.starts_with(&gen_prefix) && tree_name != current_tree {
                warn!(projection = name, tree = %tree_name, "dropping a generation left by an unfinished rebuild");
                tables.drop_tree(&tree_name).map_err(tables_err)?;
            }
        }
        meta.remove(META_BUILDING).map_err(storage)?;
        let tree = tables.open_tree(&current_tree).map_err(tables_err)?;
        let generation = Generation::Sled { id: current_id, tree };
        let checkpoint = generation.checkpoint(name)?;
        info!(
            projection = name,
            generation = current_id,
            checkpoint,
            "opened read model"
        );
        Ok(ModelStore::new(
            name,
            Backend::Sled {
                tables: tables.clone(),
                meta,
            },
            generation,
            checkpoint,
        ))
    }

    /// An empty read model in memory (for tests and for a `MemoryStore`).
    /// Its checkpoint starts at 0; nothing survives the process.
    pub fn memory(name: &str) -> Result<ModelStore, ProjectionError> {
        validate_name(name)?;
        let generation = Generation::Memory {
            id: 1,
            map: Arc::new(RwLock::new(Map::new())),
        };
        Ok(ModelStore::new(
            name,
            Backend::Memory {
                next_id: AtomicU64::new(2),
            },
            generation,
            0,
        ))
    }

    /// Opens (or creates) the read model `name` in the database and schema of
    /// `store`, beside the log, and loads its current generation into
    /// memory (see `docs/postgres.md`, "Read models").
    ///
    /// Several processes may open the same model: one runner at a time
    /// writes it (the one holding its writer lock, an advisory lock);
    /// every process serves reads from its copy, which follows the
    /// committed model within moments (notified on each commit, polled every
    /// `poll_interval` of the store's options in case a notification is
    /// lost). Must be called inside a tokio runtime.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(store: &PostgresStore, name: &str) -> Result<ModelStore, ProjectionError> {
        validate_name(name)?;
        let (pg, state, entries) = PgModel::open(store, name).await?;
        let mut map: Map = entries.into_iter().map(|(k, v)| (data_key(&k), v)).collect();
        set_checkpoint_keys(&mut map, state.checkpoint, state.event_id, state.model_version);
        let generation = Generation::Memory {
            id: state.generation,
            map: Arc::new(RwLock::new(map)),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let model = ModelStore::new(
            name,
            Backend::Postgres {
                pg: pg.clone(),
                _stop_follower: stop,
            },
            generation,
            state.checkpoint,
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(crate::postgres::listen(pg.clone(), tx));
        tokio::spawn(follow_commits(
            Arc::downgrade(&model.inner),
            rx,
            pg.poll_interval,
            stopped,
            listener,
        ));
        Ok(model)
    }

    fn new(name: &str, backend: Backend, generation: Generation, checkpoint: u64) -> ModelStore {
        ModelStore {
            inner: Arc::new(Inner {
                name: name.to_string(),
                backend,
                current: RwLock::new(Arc::new(generation)),
                retired: std::sync::Mutex::new(Vec::new()),
                commit: Mutex::new(()),
                applied: watch::Sender::new(checkpoint),
                state: watch::Sender::new(RunState::Idle),
                refresh_failures: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The projection name this model belongs to.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The position of the last event applied to the model readers see (0
    /// before any).
    pub fn checkpoint(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// The id of the generation readers see; it changes when a rebuild is
    /// swapped in.
    pub fn generation(&self) -> u64 {
        self.current().id()
    }

    /// The model version of the projection that wrote the model readers
    /// see (see [`Projection::model_version`](crate::Projection::model_version)):
    /// 0 when none was recorded (no commit yet, or a model written before
    /// strata recorded it).
    pub fn model_version(&self) -> Result<u64, ProjectionError> {
        self.reader().model_version()
    }

    /// A reader of the generation readers see now: every read through it
    /// sees that generation, even after a rebuild swapped in another one,
    /// so the reads that make up one answer (an index, then the values it
    /// names) never mix two generations. The live runner's commits to that
    /// generation do show between two reads. Hold it for one answer, not
    /// longer: a swapped-out generation is removed only once no reader
    /// holds it.
    pub fn reader(&self) -> ModelReader {
        ModelReader {
            name: self.inner.name.clone(),
            generation: self.current(),
        }
    }

    /// The value stored under `key` in the model readers see.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.reader().get(key)
    }

    /// The value under `key`, decoded (as written by [`WriteSet::put_value`]).
    pub fn get_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.reader().get_value(key)
    }

    /// Every entry whose key starts with `prefix`, in key order, from one
    /// generation.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, ProjectionError> {
        let from = data_key(prefix);
        let to = prefix_end(&from);
        self.reader().scan(from, to, usize::MAX)
    }

    /// Every entry whose key starts with `prefix`, decoded (as written by
    /// [`WriteSet::put_value`]), in key order, from one generation.
    pub fn scan_prefix_values<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, ProjectionError> {
        self.scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| decode_value(self.name(), &k, &v).map(|v| (k, v)))
            .collect()
    }

    /// Every entry with a key in `from..to` (`to` exclusive; `None` runs to
    /// the end), in key order, from one generation.
    pub fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<Entry>, ProjectionError> {
        self.range_limit(from, to, usize::MAX)
    }

    /// The first `limit` entries with a key in `from..to` (`to` exclusive;
    /// `None` runs to the end), in key order, from one generation. Reads no
    /// more than `limit` entries of the model, however many the range
    /// holds: what a page of a large model needs (ask for one more than
    /// the page to learn whether another follows).
    pub fn range_limit(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        self.reader().range_limit(from, to, limit)
    }

    /// Every entry of the model readers see, in key order (for tests and
    /// tools that compare two models).
    pub fn entries(&self) -> Result<Vec<Entry>, ProjectionError> {
        self.reader().scan(vec![DATA], Some(vec![DATA + 1]), usize::MAX)
    }

    fn current(&self) -> Arc<Generation> {
        self.inner.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn applied_watch(&self) -> watch::Receiver<u64> {
        self.inner.applied.subscribe()
    }

    /// How many times in a row bringing this process's copy of a
    /// PostgreSQL model up to what is committed has failed (0 once one
    /// succeeds; always 0 for sled and memory models, which are the
    /// committed model). A copy that cannot refresh goes stale while its
    /// [`RunState`] still says `Standby`: `/healthz` reports it.
    pub fn refresh_failures(&self) -> u64 {
        self.inner.refresh_failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a runner is following the log into this model, and how the
    /// last one ended.
    pub fn run_state(&self) -> RunState {
        self.inner.state.borrow().clone()
    }

    /// Waits until the model readers see has applied `position` (read your
    /// writes: pass the `last_position` of an append).
    ///
    /// Errors with [`ProjectionError::Timeout`] when `timeout` passes first,
    /// and at once with [`ProjectionError::NotRunning`] when no runner is
    /// following the log into this model (or it fails while waiting), since
    /// the position would then never come.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let mut applied = self.applied_watch();
        let mut state = self.inner.state.subscribe();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let now = *applied.borrow_and_update();
            if now >= position {
                return Ok(());
            }
            let run_state = state.borrow_and_update().clone();
            if !matches!(run_state, RunState::Running | RunState::Standby) {
                return Err(ProjectionError::NotRunning {
                    projection: self.inner.name.clone(),
                    position,
                    applied: now,
                    failure: match run_state {
                        RunState::Failed { error, .. } => Some(error),
                        _ => None,
                    },
                });
            }
            tokio::select! {
                _ = &mut deadline => {
                    return Err(ProjectionError::Timeout {
                        projection: self.inner.name.clone(),
                        position,
                        applied: *applied.borrow(),
                        timeout,
                    });
                }
                _ = applied.changed() => {}
                _ = state.changed() => {}
            }
        }
    }

    /// Marks the model as owned by a runner of this process; false if one
    /// already owns it. The runner is `Running` at once, except in
    /// PostgreSQL, where it stands by until [`ModelStore::lead`] has the
    /// writer lock.
    pub(crate) fn claim(&self) -> bool {
        let owned = match &self.inner.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres { .. } => RunState::Standby,
            _ => RunState::Running,
        };
        self.inner.state.send_if_modified(|s| {
            if matches!(s, RunState::Running | RunState::Standby) {
                false
            } else {
                *s = owned;
                true
            }
        })
    }

    /// Records how the runner that owned the model ended (and, in
    /// PostgreSQL, gives up the writer lock).
    pub(crate) fn release(&self, ended: RunState) {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres { pg, .. } = &self.inner.backend {
            pg.drop_lease();
        }
        self.inner.state.send_replace(ended);
    }

    /// The current generation and its checkpoint, read together: a swap
    /// (done under the commit lock) cannot fall between the two reads. A
    /// runner subscribes from this checkpoint and writes only to this
    /// generation.
    pub(crate) async fn follow_point(&self) -> (u64, u64) {
        let _guard = self.inner.commit.lock().await;
        (self.generation(), self.checkpoint())
    }

    /// The checkpoint stored in the current generation and the id of the
    /// event at it (`None` before the first commit, or if written by a
    /// version that did not record it).
    pub(crate) fn stored_checkpoint(&self) -> Result<(u64, Option<EventId>), ProjectionError> {
        let generation = self.current();
        Ok((
            generation.checkpoint(&self.inner.name)?,
            generation.checkpoint_event(&self.inner.name)?,
        ))
    }

    /// Errors with [`ProjectionError::ModelVersionMismatch`] when the model
    /// readers see holds events (its checkpoint is above 0) applied by a
    /// projection of another model version than `expected`. An empty model
    /// fits every version: its first commit records the runner's.
    pub(crate) fn check_model_version(&self, expected: u64) -> Result<(), ProjectionError> {
        let reader = self.reader();
        if reader.checkpoint()? == 0 {
            return Ok(());
        }
        let stored = reader.model_version()?;
        if stored == expected {
            Ok(())
        } else {
            Err(ProjectionError::ModelVersionMismatch {
                projection: self.inner.name.clone(),
                stored,
                expected,
            })
        }
    }

    /// A fresh write set over generation `generation`, if it is still the
    /// current one (`None` once a rebuild swapped in another), for a batch
    /// staged on checkpoint `base` (the position before its first event) by
    /// a projection of `model_version`. On PostgreSQL the commit is fenced
    /// on `base`: a batch staged before another writer's commit can never
    /// land after it.
    pub(crate) fn write_set_on(&self, generation: u64, base: u64, model_version: u64) -> Option<WriteSet> {
        let current = self.current();
        (current.id() == generation).then(|| {
            let mut ws = WriteSet::new(current, self.inner.name.clone(), model_version);
            ws.base = Some(base);
            ws
        })
    }

    /// Commits a write set and its checkpoint to the current generation, if
    /// it is still the one the write set was staged on; otherwise writes
    /// nothing and says so ([`Commit::Stale`], or in PostgreSQL
    /// [`Commit::LeaseLost`]).
    pub(crate) async fn commit(&self, ws: WriteSet, at: Checkpoint) -> Result<Commit, ProjectionError> {
        let guard = self.inner.commit.lock().await;
        if self.current().id() != ws.generation.id() {
            return Ok(Commit::Stale);
        }
        #[cfg(feature = "postgres")]
        if let Backend::Postgres { pg, .. } = &self.inner.backend {
            let from = match ws.base {
                Some(base) => base,
                None => ws.generation.checkpoint(&self.inner.name)?,
            };
            match pg
                .commit_live(ws.generation.id(), from, at, ws.model_version, &ws.staged)
                .await?
            {
                LiveCommit::Done => {}
                LiveCommit::Fenced => {
                    // Learn what is committed (another generation), then
                    // follow on from there.
                    self.refresh_locked(&guard).await?;
                    return Ok(Commit::Stale);
                }
                // Whether the batch landed is learnt when this process
                // takes the lock again (`lead` refreshes first).
                LiveCommit::LeaseLost => return Ok(Commit::LeaseLost),
            }
        }
        ws.generation
            .commit(ws.staged, at, ws.model_version)
            .map_err(|e| ProjectionError::storage(&self.inner.name, e))?;
        self.inner.applied.send_replace(at.position);
        self.reap();
        drop(guard);
        Ok(Commit::Done)
    }

    /// Brings the in-memory copy of a PostgreSQL model up to what is
    /// committed (another process's commits, or a swap); nothing for the
    /// other backends, whose model is the committed one.
    #[cfg(feature = "postgres")]
    pub(crate) async fn refresh(&self) -> Result<(), ProjectionError> {
        let guard = self.inner.commit.lock().await;
        self.refresh_locked(&guard).await
    }

    #[cfg(feature = "postgres")]
    async fn refresh_locked(&self, _commit_lock: &MutexGuard<'_, ()>) -> Result<(), ProjectionError> {
        if let Backend::Postgres { pg, .. } = &self.inner.backend {
            let current = self.current();
            let checkpoint = current.checkpoint(&self.inner.name)?;
            match pg.changes(current.id(), checkpoint).await? {
                Changes::None => {}
                Changes::Incremental { state, changes } => {
                    let Generation::Memory { map, .. } = &*current else {
                        unreachable!("PostgreSQL models are copied into memory")
                    };
                    let mut map = map.write().unwrap_or_else(|p| p.into_inner());
                    for (k, v) in changes {
                        match v {
                            Some(v) => map.insert(data_key(&k), v),
                            None => map.remove(&data_key(&k)),
                        };
                    }
                    set_checkpoint_keys(&mut map, state.checkpoint, state.event_id, state.model_version);
                    drop(map);
                    self.inner.applied.send_replace(state.checkpoint);
                }
                Changes::Full { state, entries } => {
                    let mut fresh: Map = entries.into_iter().map(|(k, v)| (data_key(&k), v)).collect();
                    set_checkpoint_keys(&mut fresh, state.checkpoint, state.event_id, state.model_version);
                    if state.generation == current.id() {
                        // Too far behind for changes: the same generation, reloaded.
                        let Generation::Memory { map, .. } = &*current else {
                            unreachable!("PostgreSQL models are copied into memory")
                        };
                        *map.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                    } else {
                        info!(
                            projection = %self.inner.name,
                            generation = state.generation,
                            checkpoint = state.checkpoint,
                            "a rebuilt generation was swapped in"
                        );
                        let generation = Arc::new(Generation::Memory {
                            id: state.generation,
                            map: Arc::new(RwLock::new(fresh)),
                        });
                        *self.inner.current.write().unwrap_or_else(|p| p.into_inner()) = generation;
                    }
                    self.inner.applied.send_replace(state.checkpoint);
                }
            }
        }
        Ok(())
    }

    /// Waits until this process may write the model. Immediate for sled and
    /// memory models, whose one process writes them. In PostgreSQL, takes
    /// the model's writer lock, waiting in [`RunState::Standby`] while
    /// another process holds it (trying again every poll interval), then
    /// refreshes the copy to what that writer committed. Returns false when
    /// `stop` fires first.
    pub(crate) async fn lead(&self, stop: &mut watch::Receiver<bool>) -> Result<bool, ProjectionError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres { pg, .. } = &self.inner.backend {
            let mut announced = false;
            loop {
                let got = match pg.try_lease().await {
                    Ok(true) => match self.refresh().await {
                        Ok(()) => true,
                        Err(e) => {
                            warn!(projection = %self.inner.name, error = %e, "cannot refresh the read model after taking its writer lock; trying again");
                            pg.drop_lease();
                            false
                        }
                    },
                    Ok(false) => false,
                    Err(e) => {
                        warn!(projection = %self.inner.name, error = %e, "cannot take the read model's writer lock; trying again");
                        false
                    }
                };
                if got {
                    self.set_run_state(RunState::Running);
                    info!(projection = %self.inner.name, checkpoint = self.checkpoint(), "this process writes the read model");
                    return Ok(true);
                }
                if !announced {
                    announced = true;
                    info!(projection = %self.inner.name, "another process writes the read model; following its commits");
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(false),
                    _ = tokio::time::sleep(pg.poll_interval) => {}
                }
            }
        }
        let _ = stop;
        Ok(true)
    }

    /// Gives up writing (PostgreSQL: after the writer lock was lost) and
    /// waits in [`RunState::Standby`] until [`ModelStore::lead`] again.
    pub(crate) fn step_down(&self) {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres { pg, .. } = &self.inner.backend {
            pg.drop_lease();
        }
        self.set_run_state(RunState::Standby);
    }

    /// Sets the state of the runner that owns the model (Running/Standby).
    fn set_run_state(&self, state: RunState) {
        self.inner.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    /// Removes the swapped-out generations no reader holds any more. A
    /// reader that cloned a generation before a swap finishes its read on
    /// it; only then is its tree dropped. (Whatever is left at exit is
    /// dropped by the next open.)
    fn reap(&self) {
        // Generations in memory go with their last reader.
        let Backend::Sled { tables, .. } = &self.inner.backend else {
            self.inner.retired.lock().unwrap_or_else(|p| p.into_inner()).clear();
            return;
        };
        let mut retired = self.inner.retired.lock().unwrap_or_else(|p| p.into_inner());
        if retired.is_empty() {
            return;
        }
        let name = &self.inner.name;
        retired.retain(|generation| {
            // Only this list holds it, and `current()` can no longer hand it out.
            if Arc::strong_count(generation) > 1 {
                return true;
            }
            let tree_name = format!("projection.{name}.gen.{}", generation.id());
            match tables.drop_tree(&tree_name) {
                Ok(_) => false,
                Err(e) => {
                    warn!(projection = %name, tree = %tree_name, error = %e, "could not drop a retired generation; the next open drops it");
                    false
                }
            }
        });
    }

    /// Starts a new, empty generation that readers do not see. In
    /// PostgreSQL, waits for the model's rebuild lock first (one rebuild of
    /// a model at a time, across processes).
    pub(crate) async fn begin_generation(&self) -> Result<Building, ProjectionError> {
        let name = &self.inner.name;
        let storage = |e| ProjectionError::storage(name, e);
        let generation = match &self.inner.backend {
            Backend::Sled { tables, meta } => {
                let current = self.current().id();
                let building = match meta.get(META_BUILDING).map_err(storage)? {
                    Some(v) => decode_u64(name, META_BUILDING, &v)?,
                    None => 0,
                };
                let id = current.max(building) + 1;
                meta.insert(META_BUILDING, &id.to_be_bytes()).map_err(storage)?;
                let tree_name = format!("projection.{name}.gen.{id}");
                // A tree of that name can only be the remains of a failed rebuild.
                let tables_err = |e| ProjectionError::store(name, e);
                tables.drop_tree(&tree_name).map_err(tables_err)?;
                let tree = tables.open_tree(&tree_name).map_err(tables_err)?;
                Generation::Sled { id, tree }
            }
            Backend::Memory { next_id } => Generation::Memory {
                id: next_id.fetch_add(1, Ordering::Relaxed),
                map: Arc::new(RwLock::new(Map::new())),
            },
            #[cfg(feature = "postgres")]
            Backend::Postgres { pg, .. } => {
                let rebuilding = pg.begin_generation().await?;
                let generation = Generation::Memory {
                    id: rebuilding.generation(),
                    map: Arc::new(RwLock::new(Map::new())),
                };
                return Ok(Building {
                    model: self.clone(),
                    generation: Some(Arc::new(generation)),
                    pg: Some(rebuilding),
                });
            }
        };
        Ok(Building {
            model: self.clone(),
            generation: Some(Arc::new(generation)),
            #[cfg(feature = "postgres")]
            pg: None,
        })
    }

    /// Takes the commit lock: while it is held, the live runner cannot commit.
    pub(crate) async fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.inner.commit.lock().await
    }
}

/// A generation being rebuilt; dropped without [`Building::swap_in`], it is
/// removed.
pub(crate) struct Building {
    model: ModelStore,
    generation: Option<Arc<Generation>>,
    /// PostgreSQL: the generation's rows and the rebuild lock.
    #[cfg(feature = "postgres")]
    pg: Option<Rebuilding>,
}

impl Building {
    /// A write set for a projection of `model_version`.
    pub(crate) fn write_set(&self, model_version: u64) -> WriteSet {
        WriteSet::new(
            self.generation.clone().expect("present until swapped"),
            self.model.inner.name.clone(),
            model_version,
        )
    }

    pub(crate) fn id(&self) -> u64 {
        self.generation.as_ref().expect("present until swapped").id()
    }

    /// Commits to the generation being built (no reader sees it).
    #[cfg_attr(not(feature = "postgres"), allow(clippy::unused_async))]
    pub(crate) async fn commit(&self, ws: WriteSet, at: Checkpoint) -> Result<(), ProjectionError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = &self.pg {
            let from = ws.generation.checkpoint(&self.model.inner.name)?;
            pg.commit(from, at, ws.model_version, &ws.staged).await?;
        }
        ws.generation
            .commit(ws.staged, at, ws.model_version)
            .map_err(|e| ProjectionError::storage(&self.model.inner.name, e))
    }

    /// Makes these generations the ones readers see and the live runners
    /// write to, all at `checkpoint`, and removes the old ones. The caller
    /// holds every model's commit lock.
    ///
    /// On sled the pointers (`current` in each `projection.<name>.meta`)
    /// are written in one transaction over the meta trees, after a flush of
    /// the new generations and followed by another: after a crash either
    /// every model is on its new generation or none is. (Models in
    /// different sled databases cannot share a transaction; they are
    /// swapped one database at a time, with a warning.) In memory, each
    /// model's pointer moves under its own lock, one after the other.
    ///
    /// In PostgreSQL the pointers move in one transaction (the models of
    /// one rebuild must share one database), which first locks each
    /// model's live checkpoint: when another process's runner has already
    /// committed past `checkpoint`, nothing is swapped and that position is
    /// returned (`Some`), to replay up to it and try again, so that no
    /// reader ever sees its model go back. `None`: swapped in.
    pub(crate) async fn swap_in_all(
        buildings: Vec<&mut Building>,
        checkpoint: u64,
    ) -> Result<Option<u64>, ProjectionError> {
        let Some(first) = buildings.first() else {
            return Ok(None);
        };
        #[cfg(feature = "postgres")]
        {
            let rebuilding: Vec<&Rebuilding> = buildings.iter().filter_map(|b| b.pg.as_ref()).collect();
            if !rebuilding.is_empty()
                && let Some(live) = crate::postgres::swap(&rebuilding, checkpoint).await?
            {
                return Ok(Some(live));
            }
        }
        let name = first.model.inner.name.clone();
        let storage = |e| ProjectionError::storage(&name, e);
        // (meta tree, model name, new generation id) of the sled models.
        let mut pointers = Vec::new();
        for b in &buildings {
            if let Backend::Sled { tables, meta } = &b.model.inner.backend {
                // Everything of the new generation is on disk before the
                // pointer names it.
                tables.flush().map_err(|e| ProjectionError::store(&name, e))?;
                pointers.push((meta, b.model.inner.name.as_str(), b.id()));
            }
        }
        if !pointers.is_empty() {
            match write_pointers(&pointers) {
                Err(sled::transaction::TransactionError::Storage(sled::Error::Unsupported(reason)))
                    if pointers.len() > 1 =>
                {
                    warn!(projection = %name, %reason, "read models in different databases: swapping their generations one at a time");
                    for pointer in &pointers {
                        write_pointers(std::slice::from_ref(pointer)).map_err(|e| storage(transaction_error(e)))?;
                    }
                }
                result => result.map_err(|e| storage(transaction_error(e)))?,
            }
            // The pointers are on disk before the old trees go.
            for b in &buildings {
                if let Backend::Sled { tables, .. } = &b.model.inner.backend {
                    tables.flush().map_err(|e| ProjectionError::store(&name, e))?;
                }
            }
        }
        for b in buildings {
            let generation = b.generation.take().expect("present until swapped");
            #[cfg(feature = "postgres")]
            if let Some(pg) = b.pg.take() {
                pg.swapped();
            }
            let model = &b.model;
            let old = model.current();
            *model.inner.current.write().unwrap_or_else(|p| p.into_inner()) = generation;
            model.inner.applied.send_replace(checkpoint);
            model.inner.retired.lock().unwrap_or_else(|p| p.into_inner()).push(old);
            model.reap();
        }
        Ok(None)
    }
}

/// Points every `(meta, name, id)` at generation `id`, in one transaction.
fn write_pointers(pointers: &[(&sled::Tree, &str, u64)]) -> sled::transaction::TransactionResult<(), sled::Error> {
    use sled::Transactional;

    let metas: Vec<&sled::Tree> = pointers.iter().map(|(meta, _, _)| *meta).collect();
    metas.as_slice().transaction(|trees| {
        for (tree, (_, _name, id)) in trees.iter().zip(pointers) {
            #[cfg(test)]
            if failpoint::pointer_write_fails(_name) {
                return Err(sled::transaction::ConflictableTransactionError::Abort(
                    sled::Error::Unsupported("failpoint".into()),
                ));
            }
            tree.insert(META_CURRENT, &id.to_be_bytes())?;
            tree.remove(META_BUILDING)?;
        }
        Ok(())
    })
}

fn transaction_error(e: sled::transaction::TransactionError<sled::Error>) -> sled::Error {
    match e {
        sled::transaction::TransactionError::Abort(e) | sled::transaction::TransactionError::Storage(e) => e,
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        if let Some(generation) = self.generation.take()
            && let Backend::Sled { tables, meta } = &self.model.inner.backend
        {
            let name = &self.model.inner.name;
            let tree_name = format!("projection.{name}.gen.{}", generation.id());
            drop(generation);
            if let Err(e) = tables
                .drop_tree(&tree_name)
                .and_then(|_| Ok(meta.remove(META_BUILDING)?))
            {
                warn!(projection = %name, error = %e, "could not remove an abandoned rebuild; it is removed on the next open");
            }
        }
    }
}

/// The changes one batch of events makes to a read model, staged in memory
/// and committed together with the checkpoint in one atomic write.
///
/// Reads see the batch's own staged changes first, then the committed model.
/// Keys are the read model's own; the store keeps them apart from the
/// checkpoint.
pub struct WriteSet {
    generation: Arc<Generation>,
    projection: String,
    /// The model version of the projection applying the batch, recorded
    /// with the checkpoint.
    model_version: u64,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The checkpoint the batch was staged on, when the runner knows it.
    base: Option<u64>,
}

impl std::fmt::Debug for WriteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSet")
            .field("projection", &self.projection)
            .field("generation", &self.generation.id())
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl WriteSet {
    fn new(generation: Arc<Generation>, projection: String, model_version: u64) -> WriteSet {
        WriteSet {
            generation,
            projection,
            model_version,
            staged: BTreeMap::new(),
            base: None,
        }
    }

    /// The value under `key`: staged in this batch, else committed.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        if let Some(staged) = self.staged.get(key) {
            return Ok(staged.clone());
        }
        self.generation
            .get_raw(&data_key(key))
            .map_err(|e| ProjectionError::storage(&self.projection, e))
    }

    /// The value under `key`, decoded (as written by [`WriteSet::put_value`]).
    pub fn get_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.get(key)?
            .map(|v| decode_value(&self.projection, key, &v))
            .transpose()
    }

    /// Stages `value` under `key`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.staged.insert(key.into(), Some(value.into()));
    }

    /// Stages `value`, encoded, under `key`.
    pub fn put_value<T: Serialize>(&mut self, key: impl Into<Vec<u8>>, value: &T) -> Result<(), ProjectionError> {
        let key = key.into();
        let bytes = encode_value(&self.projection, &key, value)?;
        self.staged.insert(key, Some(bytes));
        Ok(())
    }

    /// Stages the removal of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.staged.insert(key.into(), None);
    }

    /// How many keys the batch changes so far.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Whether the batch changes nothing so far.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }
}

/// Test-only fault injection.
#[cfg(test)]
pub(crate) mod failpoint {
    use std::sync::Mutex;

    /// Models whose pointer write fails.
    static POINTER_WRITE_FAILS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Makes the write of model `name`'s generation pointer fail.
    pub(crate) fn fail_pointer_write(name: &str) {
        POINTER_WRITE_FAILS.lock().unwrap().push(name.to_string());
    }

    pub(crate) fn pointer_write_fails(name: &str) -> bool {
        POINTER_WRITE_FAILS.lock().unwrap().iter().any(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_skips_trailing_max_bytes() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }

    #[tokio::test]
    async fn a_commit_writes_the_model_and_the_checkpoint_together() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
        let model = ModelStore::open_in_tables(&db, "t").unwrap();
        let mut ws = model.write_set_on(model.generation(), model.checkpoint(), 3).unwrap();
        ws.put(b"k".to_vec(), b"v".to_vec());
        assert_eq!(ws.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            model.get(b"k").unwrap(),
            None,
            "staged changes are invisible to readers"
        );
        let id = EventId::new();
        assert_eq!(
            model
                .commit(
                    ws,
                    Checkpoint {
                        position: 7,
                        event_id: id
                    }
                )
                .await
                .unwrap(),
            Commit::Done
        );
        assert_eq!(model.get(b"k").unwrap(), Some(b"v".to_vec()));
        drop(model);
        let model = ModelStore::open_in_tables(&db, "t").unwrap();
        assert_eq!(model.checkpoint(), 7);
        assert_eq!(model.stored_checkpoint().unwrap(), (7, Some(id)));
        assert_eq!(model.model_version().unwrap(), 3, "recorded with the checkpoint");
        assert_eq!(model.entries().unwrap(), vec![(b"k".to_vec(), b"v".to_vec())]);
    }

    #[tokio::test]
    async fn a_write_set_of_a_replaced_generation_is_refused() {
        let model = ModelStore::memory("t").unwrap();
        let stale = model.write_set_on(model.generation(), model.checkpoint(), 0).unwrap();
        let mut building = model.begin_generation().await.unwrap();
        let mut ws = building.write_set(0);
        ws.put(b"new".to_vec(), b"1".to_vec());
        let at = |position| Checkpoint {
            position,
            event_id: EventId::new(),
        };
        building.commit(ws, at(3)).await.unwrap();
        {
            let _lock = model.lock_commits().await;
            assert_eq!(Building::swap_in_all(vec![&mut building], 3).await.unwrap(), None);
        }
        assert_eq!(model.commit(stale, at(9)).await.unwrap(), Commit::Stale);
        assert_eq!(model.checkpoint(), 3);
        assert_eq!(model.get(b"new").unwrap(), Some(b"1".to_vec()));
    }

    #[tokio::test]
    async fn an_unfinished_rebuild_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
        let model = ModelStore::open_in_tables(&db, "t").unwrap();
        let building = model.begin_generation().await.unwrap();
        let id = building.id();
        std::mem::forget(building); // as if the process died mid-rebuild
        drop(model);
        let name = format!("projection.t.gen.{id}");
        assert!(db.tree_names().contains(&name));
        let model = ModelStore::open_in_tables(&db, "t").unwrap();
        assert!(!db.tree_names().contains(&name));
        assert_eq!(model.generation(), 1);
    }

    /// Commits `entries` (key, value) to the current generation at `position`.
    async fn put_all(model: &ModelStore, entries: &[(&[u8], &[u8])], position: u64) {
        let mut ws = model.write_set_on(model.generation(), model.checkpoint(), 0).unwrap();
        for (k, v) in entries {
            ws.put(k.to_vec(), v.to_vec());
        }
        let at = Checkpoint {
            position,
            event_id: EventId::new(),
        };
        assert_eq!(model.commit(ws, at).await.unwrap(), Commit::Done);
    }

    #[tokio::test]
    async fn a_bounded_range_reads_at_most_its_limit_on_sled_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
        for model in [
            ModelStore::open_in_tables(&db, "t").unwrap(),
            ModelStore::memory("t").unwrap(),
        ] {
            put_all(&model, &[(b"a1", b"1"), (b"a2", b"2"), (b"a3", b"3"), (b"b1", b"4")], 1).await;
            let keys = |entries: Vec<Entry>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
            assert_eq!(
                keys(model.range_limit(b"a", Some(b"b"), 2).unwrap()),
                [b"a1".to_vec(), b"a2".to_vec()]
            );
            assert_eq!(keys(model.range_limit(b"a2", None, 10).unwrap()).len(), 3, "to the end");
            assert_eq!(model.range_limit(b"a", Some(b"b"), 0).unwrap(), vec![]);
            assert_eq!(
                model.range_limit(b"b", Some(b"a"), 5).unwrap(),
                vec![],
                "a range that ends before it starts is empty, not a panic"
            );
            assert_eq!(
                model.range(b"a", Some(b"b")).unwrap(),
                model.range_limit(b"a", Some(b"b"), usize::MAX).unwrap()
            );
            // The checkpoint and the model version are not model entries.
            assert_eq!(keys(model.range_limit(b"", None, 100).unwrap()).len(), 4);
        }
    }

    #[tokio::test]
    async fn a_reader_keeps_reading_its_generation_after_a_swap() {
        let model = ModelStore::memory("t").unwrap();
        put_all(&model, &[(b"k", b"old")], 1).await;
        let reader = model.reader();
        let mut building = model.begin_generation().await.unwrap();
        let mut ws = building.write_set(2);
        ws.put(b"k".to_vec(), b"new".to_vec());
        let at = Checkpoint {
            position: 1,
            event_id: EventId::new(),
        };
        building.commit(ws, at).await.unwrap();
        {
            let _lock = model.lock_commits().await;
            assert_eq!(Building::swap_in_all(vec![&mut building], 1).await.unwrap(), None);
        }
        assert_eq!(model.get(b"k").unwrap(), Some(b"new".to_vec()));
        assert_eq!(model.model_version().unwrap(), 2);
        assert_eq!(reader.get(b"k").unwrap(), Some(b"old".to_vec()), "still its generation");
        assert_eq!(reader.model_version().unwrap(), 0);
        assert_eq!(reader.checkpoint().unwrap(), 1);
        assert_ne!(reader.generation(), model.generation());
    }

    /// A generation as strata wrote it before it recorded model versions:
    /// checkpoint and entries, no `v`. It reads as version 0, which only a
    /// projection of version 0 may follow; an empty model fits any.
    #[test]
    fn a_model_without_a_recorded_version_is_version_0() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
        let empty = ModelStore::open_in_tables(&db, "empty").unwrap();
        assert_eq!(empty.model_version().unwrap(), 0);
        assert!(empty.check_model_version(7).is_ok(), "nothing applied yet");
        let meta = db.open_tree("projection.t.meta").unwrap();
        meta.insert(META_CURRENT, &1u64.to_be_bytes()).unwrap();
        let tree = db.open_tree("projection.t.gen.1").unwrap();
        tree.insert(CHECKPOINT_KEY, &5u64.to_be_bytes()).unwrap();
        tree.insert(data_key(b"k"), b"v".to_vec()).unwrap();
        let model = ModelStore::open_in_tables(&db, "t").unwrap();
        assert_eq!((model.checkpoint(), model.model_version().unwrap()), (5, 0));
        assert!(model.check_model_version(0).is_ok());
        assert!(matches!(
            model.check_model_version(1),
            Err(ProjectionError::ModelVersionMismatch {
                stored: 0,
                expected: 1,
                ..
            })
        ));
    }

    #[test]
    fn names_that_cannot_name_trees_are_refused() {
        assert!(matches!(
            ModelStore::memory(""),
            Err(ProjectionError::InvalidName { .. })
        ));
        assert!(matches!(
            ModelStore::memory("a.b"),
            Err(ProjectionError::InvalidName { .. })
        ));
        assert!(ModelStore::memory("order_summary-2").is_ok());
    }
}
