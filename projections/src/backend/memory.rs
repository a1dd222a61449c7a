//! Read models in memory: a map per generation. The backend of models over
//! a `MemoryStore`, and the copy every process of a PostgreSQL model reads
//! from ([`MemoryGeneration`] is used by `postgres` too).

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::contract::{Batch, Changes, Commit, Generation, GenerationRef, ModelBackend, Opened, Stored, Swapped};
use crate::codec::Entry;
use crate::error::ProjectionError;

/// A generation's entries and what it records beside them.
#[derive(Default)]
struct Copy {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    stored: Stored,
}

impl Copy {
    /// Applies `changes` and records `stored`.
    fn apply(&mut self, changes: Changes, stored: Stored) {
        for (k, v) in changes {
            match v {
                Some(v) => self.entries.insert(k, v),
                None => self.entries.remove(&k),
            };
        }
        self.stored = stored;
    }
}

/// A generation held in a map: the memory backend's generations, and the
/// copy a shared backend keeps in each process of the rows it committed
/// (PostgreSQL's), brought up to date with [`apply`](Self::apply) and
/// [`replace`](Self::replace).
///
/// As a [`Generation`] on its own, its commit is the compare-and-set of the
/// contract, in memory.
pub struct MemoryGeneration {
    id: u64,
    copy: RwLock<Copy>,
    /// Replaced by a swap: commits are refused.
    retired: AtomicBool,
}

impl MemoryGeneration {
    /// Generation `id` holding `entries`, at `stored`.
    pub fn new(id: u64, entries: Vec<Entry>, stored: Stored) -> MemoryGeneration {
        MemoryGeneration {
            id,
            copy: RwLock::new(Copy {
                entries: entries.into_iter().collect(),
                stored,
            }),
            retired: AtomicBool::new(false),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Copy> {
        self.copy.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Copy> {
        self.copy.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies changes already committed elsewhere (PostgreSQL), with the
    /// checkpoint they lead to.
    pub fn apply(&self, changes: Changes, stored: Stored) {
        self.write().apply(changes, stored);
    }

    /// Replaces the whole copy (PostgreSQL, reloaded).
    pub fn replace(&self, entries: Vec<Entry>, stored: Stored) {
        *self.write() = Copy {
            entries: entries.into_iter().collect(),
            stored,
        };
    }

    /// The compare-and-set of a commit (see [`Generation::commit`]): applies
    /// `batch` if the checkpoint is still its base and the generation was
    /// not retired.
    fn commit_in_memory(&self, batch: Batch) -> Commit {
        let mut copy = self.write();
        if self.retired.load(Ordering::Acquire) || copy.stored.position != batch.base || batch.at.position <= batch.base
        {
            return Commit::Stale;
        }
        let stored = Stored::after(&batch);
        copy.apply(batch.changes, stored);
        Commit::Done
    }
}

#[async_trait]
impl Generation for MemoryGeneration {
    fn id(&self) -> u64 {
        self.id
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        Ok(self.read().entries.get(key).cloned())
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        if to.is_some_and(|to| from >= to) {
            // BTreeMap::range panics on a range that ends before it starts.
            return Ok(Vec::new());
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .read()
            .entries
            .range::<[u8], _>((Bound::Included(from), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn stored(&self) -> Result<Stored, ProjectionError> {
        Ok(self.read().stored)
    }

    async fn commit(&self, batch: Batch) -> Result<Commit, ProjectionError> {
        Ok(self.commit_in_memory(batch))
    }

    fn retire(&self) {
        // Under the write lock: a commit in flight lands before, or is refused.
        let _copy = self.write();
        self.retired.store(true, Ordering::Release);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Read models in memory: nothing survives the process.
pub(crate) struct MemoryBackend {
    name: String,
    next_id: AtomicU64,
}

impl MemoryBackend {
    /// An empty model `name` (generation 1, checkpoint 0).
    pub(crate) fn open(name: &str) -> Opened {
        let backend = MemoryBackend {
            name: name.to_string(),
            next_id: AtomicU64::new(2),
        };
        Opened {
            backend: Arc::new(backend),
            current: Arc::new(MemoryGeneration::new(1, Vec::new(), Stored::default())),
        }
    }
}

#[async_trait]
impl ModelBackend for MemoryBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn begin_generation(&self) -> Result<GenerationRef, ProjectionError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(MemoryGeneration::new(id, Vec::new(), Stored::default())))
    }

    /// Nothing to write: the core's pointer is the only one. (A generation
    /// goes with its last holder.)
    async fn swap(&self, _built: &[&GenerationRef], _checkpoint: u64) -> Result<Swapped, ProjectionError> {
        Ok(Swapped::Done)
    }
}
