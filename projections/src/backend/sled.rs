//! Read models in sled trees of [`LocalTables`] (the tables beside an
//! embedded log, or kept apart): a tree per generation, a meta tree naming
//! the current one.
//!
//! # Layout
//!
//! | tree                          | key            | value                               |
//! |-------------------------------|----------------|-------------------------------------|
//! | `projection.<name>.meta`      | `current`      | the generation readers see (u64 BE) |
//! |                               | `building`     | a generation being rebuilt (u64 BE) |
//! | `projection.<name>.gen.<id>`  | `c`            | the checkpoint (u64 BE)             |
//! |                               | `e`            | the id of the event at `c` (16 B)   |
//! |                               | `v`            | the model version that wrote it (u64 BE) |
//! |                               | `m` + key      | the read model's own keys (a generation without packed runs) |
//! |                               | `P`            | how many packed runs it has (u64 BE; absent: none) |
//! |                               | `r` + run (u32 BE) + first key | a block of a packed run: up to 64 sorted entries or 16 KiB, some flagged deleted ([`block`]'s format) |
//! |                               | `o` + key      | a live write over packed runs: 0 + the value, or 1 (deleted) |
//!
//! A batch is one `sled::Batch` on the generation's tree holding the
//! model's changes and `c`, `e`, `v`: sled applies a batch atomically, for
//! readers and across a crash. A swap writes the `current` pointers of every
//! model swapped in one transaction over their meta trees. This backend
//! knows only `LocalTables`, never which store (if any) they belong to.
//!
//! A generation being built (a rebuild, which nobody reads and which is
//! removed if it fails) writes each commit as a **packed run**: its
//! changes in blocks of sorted entries, one sled value per block, in
//! `sled::Batch`es of 64 blocks, the last holding `P` and the checkpoint
//! (so a run counts only once it is whole). One sled insert per block
//! instead of per key made the rebuild's write 4-9x cheaper a key
//! (~1-2.8 µs against ~9-17 µs, 1M events on a busy machine). A
//! later run overrides earlier ones, its deletes hiding their entries.
//! After the swap, live commits write `o` keys over the runs (a delete
//! writes the deleted flag only where a run holds the key) in one batch
//! with the checkpoint, as before. Reads look at `o`, then the runs from
//! the newest (a `get`: one sled read each, then a binary search in a
//! block); a range merges them lazily ([`packed`]). `P` is read once, when
//! the generation is opened: a generation without runs (never rebuilt, or
//! written by an older strata) reads and writes `m` keys exactly as before.
//! The runs are never compacted; the next rebuild writes a fresh
//! generation.

use std::any::Any;
use std::ops::Bound;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sled::transaction::{TransactionError, TransactionResult};
use strata_store::{EventId, LocalTables};
use tracing::{info, warn};
use uuid::Uuid;

use super::contract::{
    Batch, Changes, Commit, Generation, GenerationRef, ModelBackend, Opened, Stored, Swapped, own_generations,
};
use crate::codec::{Entry, corrupt, decode_u64};
use crate::error::ProjectionError;

mod block;
mod packed;
#[cfg(test)]
mod tests;

use packed::Packed;

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

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

fn meta_name(name: &str) -> String {
    format!("projection.{name}.meta")
}

fn tree_name(name: &str, id: u64) -> String {
    format!("projection.{name}.gen.{id}")
}

/// The fewest changes a commit to a generation being built writes as a
/// packed run. A smaller one (a rebuild's last few events, or every commit
/// of a rebuild with a tiny memory budget) is written a key at a time like
/// a live commit, so the runs a read looks through stay few; the next
/// packed run takes those keys in and removes them. Lower in unit tests,
/// so that the conformance suite's rebuilds write runs too.
const PACK_MIN: usize = if cfg!(test) { 64 } else { 1024 };

/// Where a generation is in its life; decides what its drop removes.
const BUILDING: u8 = 0;
const CURRENT: u8 = 1;
const RETIRED: u8 = 2;

/// One generation: a tree.
pub(crate) struct SledGeneration {
    name: String,
    id: u64,
    tree: sled::Tree,
    tables: LocalTables,
    meta: sled::Tree,
    /// [`BUILDING`], [`CURRENT`] or [`RETIRED`].
    state: AtomicU8,
    /// Makes a commit's compare-and-set and its batch one step.
    commit: Mutex<()>,
    /// How many packed runs the generation has (0: every entry is an
    /// `m` key, as before packed runs existed). Grows only while it is
    /// being built.
    runs: AtomicU32,
}

impl SledGeneration {
    fn storage(&self, e: sled::Error) -> ProjectionError {
        ProjectionError::storage(&self.name, e)
    }

    fn read_u64(&self, key: &[u8]) -> Result<Option<u64>, ProjectionError> {
        match self.tree.get(key).map_err(|e| self.storage(e))? {
            Some(v) => decode_u64(&self.name, key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The packed runs, if the generation has any.
    fn packed(&self) -> Option<Packed<'_>> {
        match self.runs.load(Ordering::Acquire) {
            0 => None,
            runs => Some(Packed {
                name: &self.name,
                tree: &self.tree,
                runs,
            }),
        }
    }

    /// A generation of model `name` on `tree`, with the runs it stores.
    fn new(
        name: &str,
        id: u64,
        tree: sled::Tree,
        backend: (&LocalTables, &sled::Tree),
        state: u8,
    ) -> Result<SledGeneration, ProjectionError> {
        let runs = match tree
            .get(packed::RUNS_KEY)
            .map_err(|e| ProjectionError::storage(name, e))?
        {
            Some(v) => packed::stored_runs(name, &tree, &v)?,
            None => 0,
        };
        Ok(SledGeneration {
            name: name.to_string(),
            id,
            tree,
            tables: backend.0.clone(),
            meta: backend.1.clone(),
            state: AtomicU8::new(state),
            commit: Mutex::new(()),
            runs: AtomicU32::new(runs),
        })
    }

    /// A live commit's changes over packed runs: a put writes the overlay;
    /// a delete writes a deleted mark where a run holds the key, and
    /// otherwise removes the overlay's key.
    fn stage_over_runs(
        &self,
        packed: &Packed<'_>,
        changes: Changes,
        write: &mut sled::Batch,
    ) -> Result<(), ProjectionError> {
        for (k, v) in changes {
            let key = packed::overlay_key(&k);
            match v {
                Some(v) => write.insert(key, packed::overlay_value(&v)),
                None if packed.in_runs(&k)?.is_some_and(|v| v.is_some()) => write.insert(key, packed::OVERLAY_DELETED),
                None => write.remove(key),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Generation for SledGeneration {
    fn id(&self) -> u64 {
        self.id
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        if let Some(packed) = self.packed() {
            return packed.get(key);
        }
        Ok(self
            .tree
            .get(data_key(key))
            .map_err(|e| self.storage(e))?
            .map(|v| v.to_vec()))
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        if to.is_some_and(|to| from >= to) {
            return Ok(Vec::new());
        }
        if let Some(packed) = self.packed() {
            return packed.range(from, to, limit);
        }
        let upper = Bound::Excluded(to.map_or_else(|| vec![DATA + 1], data_key));
        self.tree
            .range::<Vec<u8>, _>((Bound::Included(data_key(from)), upper))
            .take(limit)
            .map(|kv| {
                kv.map(|(k, v)| (k[1..].to_vec(), v.to_vec()))
                    .map_err(|e| self.storage(e))
            })
            .collect()
    }

    fn stored(&self) -> Result<Stored, ProjectionError> {
        let event_id = match self.tree.get(CHECKPOINT_EVENT_KEY).map_err(|e| self.storage(e))? {
            Some(v) => Some(
                <[u8; 16]>::try_from(&v[..])
                    .map(|b| EventId::from_uuid(Uuid::from_bytes(b)))
                    .map_err(|_| {
                        corrupt(
                            &self.name,
                            CHECKPOINT_EVENT_KEY,
                            format!("expected 16 bytes, found {}", v.len()),
                        )
                    })?,
            ),
            None => None,
        };
        Ok(Stored {
            position: self.read_u64(CHECKPOINT_KEY)?.unwrap_or(0),
            event_id,
            model_version: self.read_u64(MODEL_VERSION_KEY)?.unwrap_or(0),
        })
    }

    async fn commit(&self, batch: Batch) -> Result<Commit, ProjectionError> {
        let _one_at_a_time = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.read_u64(CHECKPOINT_KEY)?.unwrap_or(0);
        if self.state.load(Ordering::Acquire) == RETIRED || stored != batch.base || batch.at.position <= batch.base {
            return Ok(Commit::Stale);
        }
        #[cfg(test)]
        if failpoint::commit_fails(&self.name) {
            return Err(self.storage(sled::Error::Unsupported("failpoint: the commit fails".into())));
        }
        let position = batch.at.position.to_be_bytes();
        let version = batch.model_version.to_be_bytes();
        let checkpoint: [(&[u8], &[u8]); 3] = [
            (CHECKPOINT_KEY, &position),
            (CHECKPOINT_EVENT_KEY, batch.at.event_id.as_bytes()),
            (MODEL_VERSION_KEY, &version),
        ];
        if self.state.load(Ordering::Acquire) == BUILDING && batch.changes.len() >= PACK_MIN {
            let run = self.runs.load(Ordering::Acquire);
            let live = packed::live_entries(&self.name, &self.tree, run, DATA)?;
            let written = packed::write_run(&self.name, &self.tree, run, &batch.changes, &live, &checkpoint)?;
            if written {
                self.runs.store(run + 1, Ordering::Release);
            }
            // Hundreds of thousands of keys and values: freed elsewhere.
            crate::threads::drop_elsewhere(batch.changes);
            return Ok(Commit::Done);
        }
        let mut write = sled::Batch::default();
        match self.packed() {
            Some(packed) => self.stage_over_runs(&packed, batch.changes, &mut write)?,
            None => {
                for (k, v) in batch.changes {
                    let k = data_key(&k);
                    match v {
                        Some(v) => write.insert(k, v),
                        None => write.remove(k),
                    }
                }
            }
        }
        for (k, v) in checkpoint {
            write.insert(k, v);
        }
        self.tree.apply_batch(write).map_err(|e| self.storage(e))?;
        Ok(Commit::Done)
    }

    fn retire(&self) {
        let _no_commit_in_flight = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        self.state.store(RETIRED, Ordering::Release);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for SledGeneration {
    /// Removes the tree of a retired generation (its last reader is done)
    /// and of a rebuild that was never swapped in.
    fn drop(&mut self) {
        let state = *self.state.get_mut();
        if state == CURRENT {
            return;
        }
        let name = tree_name(&self.name, self.id);
        // This handle is the last one and is not used again.
        let mut removed = self.tables.drop_tree(&name).map(|_| ());
        if state == BUILDING && removed.is_ok() {
            removed = self
                .meta
                .compare_and_swap(META_BUILDING, Some(&self.id.to_be_bytes()[..]), None::<&[u8]>)
                .map(|_| ())
                .map_err(Into::into);
        }
        if let Err(e) = removed {
            warn!(projection = %self.name, tree = %name, error = %e, "could not remove a generation that is not current; the next open removes it");
        }
    }
}

/// Read models in the sled trees of [`LocalTables`].
pub(crate) struct SledBackend {
    name: String,
    tables: LocalTables,
    meta: sled::Tree,
}

impl SledBackend {
    /// Opens (or creates) model `name` in `tables`, removing the trees of
    /// generations that are not current (left by a rebuild that died).
    pub(crate) fn open(tables: &LocalTables, name: &str) -> Result<Opened, ProjectionError> {
        let storage = |e| ProjectionError::storage(name, e);
        let tables_err = |e| ProjectionError::store(name, e);
        let meta = tables.open_tree(&meta_name(name)).map_err(tables_err)?;
        let current_id = match meta.get(META_CURRENT).map_err(storage)? {
            Some(v) => decode_u64(name, META_CURRENT, &v)?,
            None => {
                meta.insert(META_CURRENT, &1u64.to_be_bytes()).map_err(storage)?;
                1
            }
        };
        let gen_prefix = format!("projection.{name}.gen.");
        let current_tree = tree_name(name, current_id);
        for tree_name in tables.tree_names() {
            if tree_name.starts_with(&gen_prefix) && tree_name != current_tree {
                warn!(projection = name, tree = %tree_name, "dropping a generation left by an unfinished rebuild");
                tables.drop_tree(&tree_name).map_err(tables_err)?;
            }
        }
        meta.remove(META_BUILDING).map_err(storage)?;
        let tree = tables.open_tree(&current_tree).map_err(tables_err)?;
        let current = SledGeneration::new(name, current_id, tree, (tables, &meta), CURRENT)?;
        info!(
            projection = name,
            generation = current_id,
            checkpoint = current.stored()?.position,
            "opened read model"
        );
        let backend = SledBackend {
            name: name.to_string(),
            tables: tables.clone(),
            meta,
        };
        Ok(Opened {
            backend: Arc::new(backend),
            current: Arc::new(current),
        })
    }
}

#[async_trait]
impl ModelBackend for SledBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "sled"
    }

    async fn begin_generation(&self) -> Result<GenerationRef, ProjectionError> {
        let name = &self.name;
        let storage = |e| ProjectionError::storage(name, e);
        let tables_err = |e| ProjectionError::store(name, e);
        let read = |key: &[u8]| -> Result<u64, ProjectionError> {
            match self.meta.get(key).map_err(storage)? {
                Some(v) => decode_u64(name, key, &v),
                None => Ok(0),
            }
        };
        let id = read(META_CURRENT)?.max(read(META_BUILDING)?) + 1;
        self.meta.insert(META_BUILDING, &id.to_be_bytes()).map_err(storage)?;
        let tree = tree_name(name, id);
        // A tree of that name can only be the remains of a failed rebuild.
        self.tables.drop_tree(&tree).map_err(tables_err)?;
        let tree = self.tables.open_tree(&tree).map_err(tables_err)?;
        Ok(Arc::new(SledGeneration::new(
            name,
            id,
            tree,
            (&self.tables, &self.meta),
            BUILDING,
        )?))
    }

    /// Flushes the new generations, writes every model's `current` pointer
    /// in one transaction over their meta trees (models in different sled
    /// databases cannot share one: they are swapped one database at a time,
    /// with a warning), and flushes again, so the pointers are on disk
    /// before the old trees go.
    async fn swap(&self, built: &[&GenerationRef], _checkpoint: u64) -> Result<Swapped, ProjectionError> {
        let built = own_generations::<SledGeneration>(&self.name, built)?;
        let tables_err = |e| ProjectionError::store(&self.name, e);
        let storage = |e| ProjectionError::storage(&self.name, e);
        for g in &built {
            // Everything of the new generation is on disk before the pointer names it.
            g.tables.flush().map_err(tables_err)?;
        }
        let pointers: Vec<(&sled::Tree, &str, u64)> = built.iter().map(|g| (&g.meta, g.name.as_str(), g.id)).collect();
        match write_pointers(&pointers) {
            Err(TransactionError::Storage(sled::Error::Unsupported(reason))) if pointers.len() > 1 => {
                warn!(projection = %self.name, %reason, "read models in different databases: swapping their generations one at a time");
                for pointer in &pointers {
                    write_pointers(std::slice::from_ref(pointer)).map_err(|e| storage(transaction_error(e)))?;
                }
            }
            result => result.map_err(|e| storage(transaction_error(e)))?,
        }
        for g in &built {
            g.tables.flush().map_err(tables_err)?;
            g.state.store(CURRENT, Ordering::Release);
        }
        Ok(Swapped::Done)
    }
}

/// Points every `(meta, name, id)` at generation `id`, in one transaction.
fn write_pointers(pointers: &[(&sled::Tree, &str, u64)]) -> TransactionResult<(), sled::Error> {
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

fn transaction_error(e: TransactionError<sled::Error>) -> sled::Error {
    match e {
        TransactionError::Abort(e) | TransactionError::Storage(e) => e,
    }
}

/// Test-only fault injection, by model name.
#[cfg(test)]
pub(crate) mod failpoint {
    use std::sync::Mutex;

    /// Models whose pointer write fails.
    static POINTER_WRITE_FAILS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    /// Models whose commits fail before writing anything.
    static COMMIT_FAILS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Makes the write of model `name`'s generation pointer fail.
    pub(crate) fn fail_pointer_write(name: &str) {
        POINTER_WRITE_FAILS.lock().unwrap().push(name.to_string());
    }

    pub(crate) fn pointer_write_fails(name: &str) -> bool {
        POINTER_WRITE_FAILS.lock().unwrap().iter().any(|n| n == name)
    }

    /// Makes (`true`) or stops making commits to model `name` fail.
    pub(crate) fn fail_commits(name: &str, fail: bool) {
        let mut names = COMMIT_FAILS.lock().unwrap();
        names.retain(|n| n != name);
        if fail {
            names.push(name.to_string());
        }
    }

    pub(crate) fn commit_fails(name: &str) -> bool {
        COMMIT_FAILS.lock().unwrap().iter().any(|n| n == name)
    }
}
