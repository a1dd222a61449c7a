//! [`ModelStore`]: the handle of one projection's read model, whatever
//! backend stores it; its reads and read-your-writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, oneshot, watch};

use super::reader::ModelReader;
use super::run_state::RunState;
use crate::backend::{GenerationRef, ModelBackend, Opened};
use crate::codec::{Entry, decode_value, prefix_end};
use crate::error::ProjectionError;

/// What the clones of a [`ModelStore`] share.
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) backend: Arc<dyn ModelBackend>,
    /// The generation readers see and the live runner writes to.
    pub(crate) current: RwLock<GenerationRef>,
    /// Held for every commit to the current generation, for a swap and for
    /// a refresh, so a commit is never split across generations.
    pub(crate) commit: Mutex<()>,
    /// Held by a rebuild from its first generation to its swap: one
    /// rebuild of a model at a time in this process.
    pub(crate) rebuild: Arc<Mutex<()>>,
    /// The current generation's checkpoint, for `wait_for` and lag.
    pub(crate) applied: watch::Sender<u64>,
    /// Whether a runner owns this model, and how the last one ended.
    pub(crate) state: watch::Sender<RunState>,
    /// Whether this process may commit to the current generation: set by
    /// `lead`, cleared by `step_down` and `release`.
    pub(crate) leased: AtomicBool,
    /// Shared backends: refreshes of the copy that failed in a row.
    pub(crate) refresh_failures: AtomicU64,
    /// Dropped with the model: stops the follower of other processes'
    /// commits (shared backends).
    pub(crate) stop_follower: std::sync::Mutex<Option<oneshot::Sender<()>>>,
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
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ModelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStore")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend.kind())
            .field("generation", &self.generation())
            .field("checkpoint", &self.checkpoint())
            .finish()
    }
}

/// 1..=64 ASCII letters, digits, `_` or `-`: it names sled trees and rows.
pub(crate) fn validate_name(name: &str) -> Result<(), ProjectionError> {
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
    /// The handle of an opened backend, at its current generation's
    /// checkpoint.
    pub(crate) fn from_opened(name: &str, opened: Opened) -> Result<ModelStore, ProjectionError> {
        let checkpoint = opened.current.stored()?.position;
        Ok(ModelStore {
            inner: Arc::new(Inner {
                name: name.to_string(),
                backend: opened.backend,
                current: RwLock::new(opened.current),
                commit: Mutex::new(()),
                rebuild: Arc::new(Mutex::new(())),
                applied: watch::Sender::new(checkpoint),
                state: watch::Sender::new(RunState::Idle),
                leased: AtomicBool::new(false),
                refresh_failures: AtomicU64::new(0),
                stop_follower: std::sync::Mutex::new(None),
            }),
        })
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
        ModelReader::new(&self.inner.name, self.current())
    }

    /// The value stored under `key` in the model readers see.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.reader().get(key)
    }

    /// The value under `key`, decoded (as written by
    /// [`WriteSet::put_value`](crate::WriteSet::put_value)).
    pub fn get_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.reader().get_value(key)
    }

    /// Every entry whose key starts with `prefix`, in key order, from one
    /// generation.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, ProjectionError> {
        let end = prefix_end(prefix);
        self.range(prefix, end.as_deref())
    }

    /// Every entry whose key starts with `prefix`, decoded (as written by
    /// [`WriteSet::put_value`](crate::WriteSet::put_value)), in key order,
    /// from one generation.
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
        self.range(&[], None)
    }

    /// The generation readers see.
    pub(crate) fn current(&self) -> GenerationRef {
        self.inner.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many times in a row bringing this process's copy of a
    /// PostgreSQL model up to what is committed has failed (0 once one
    /// succeeds; always 0 for sled and memory models, which are the
    /// committed model). A copy that cannot refresh goes stale while its
    /// [`RunState`] still says `Standby`: `/healthz` reports it.
    pub fn refresh_failures(&self) -> u64 {
        self.inner.refresh_failures.load(Ordering::Relaxed)
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
        let mut applied = self.inner.applied.subscribe();
        let mut state = self.inner.state.subscribe();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let now = *applied.borrow_and_update();
            if now >= position {
                return Ok(());
            }
            let run_state = state.borrow_and_update().clone();
            if !run_state.is_owned() {
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
}
