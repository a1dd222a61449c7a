//! [`WriteSet`]: the changes of one batch of events, staged for one atomic
//! commit with the batch's checkpoint.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Batch, Changes, Checkpoint, GenerationRef};
use crate::codec::{decode_value, encode_value};
use crate::error::ProjectionError;

/// The changes one batch of events makes to a read model, staged in memory
/// and committed together with the checkpoint in one atomic write.
///
/// Reads see the batch's own staged changes first, then the committed model.
/// Keys are the read model's own; the store keeps them apart from the
/// checkpoint.
pub struct WriteSet {
    generation: GenerationRef,
    projection: String,
    /// The model version of the projection applying the batch, recorded
    /// with the checkpoint.
    model_version: u64,
    /// Hashed, not ordered: a rebuild's fold looks keys up in hundreds of
    /// thousands of them for every event; they are put in key order once,
    /// for the commit.
    staged: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The checkpoint the batch is staged on: the commit is refused unless
    /// the generation is still there.
    base: u64,
    /// The generation held nothing at `base` and nobody else writes it (a
    /// rebuild's first write set on its fresh generation): a read that
    /// misses the staged changes finds nothing without asking the backend,
    /// and a delete drops the key's staged change instead of staging a
    /// removal, so a key put and deleted again in the fold is never
    /// written.
    fresh: bool,
    /// Roughly the memory the staged changes take (see [`STAGED_OVERHEAD`]).
    bytes: usize,
}

/// What one staged change costs beside its key's and value's bytes: the
/// map's slot, the two vectors and their allocations (an estimate, for the
/// rebuild's memory budget).
const STAGED_OVERHEAD: usize = 96;

impl std::fmt::Debug for WriteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSet")
            .field("projection", &self.projection)
            .field("generation", &self.generation.id())
            .field("base", &self.base)
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl WriteSet {
    /// A write set on `generation`, whose checkpoint is `base`, for a
    /// projection of `model_version`.
    pub(crate) fn new(generation: GenerationRef, projection: &str, model_version: u64, base: u64) -> WriteSet {
        WriteSet {
            generation,
            projection: projection.to_string(),
            model_version,
            staged: HashMap::new(),
            base,
            fresh: false,
            bytes: 0,
        }
    }

    /// A write set on a generation that holds nothing at `base` and that
    /// only this write set's owner writes (a rebuild's fresh generation):
    /// see `fresh`.
    pub(crate) fn on_fresh(generation: GenerationRef, projection: &str, model_version: u64, base: u64) -> WriteSet {
        WriteSet {
            fresh: true,
            ..WriteSet::new(generation, projection, model_version, base)
        }
    }

    /// Stages `value` (`None`: a removal) under `key`, keeping count of the
    /// bytes staged.
    fn stage(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if value.is_none() && self.fresh {
            if let Some(old) = self.staged.remove(&key) {
                self.bytes -= STAGED_OVERHEAD + key.len() + old.map_or(0, |v| v.len());
            }
            return;
        }
        let (key_len, added) = (key.len(), value.as_ref().map_or(0, Vec::len));
        match self.staged.insert(key, value) {
            Some(old) => self.bytes = self.bytes + added - old.map_or(0, |v| v.len()),
            None => self.bytes += STAGED_OVERHEAD + key_len + added,
        }
    }

    /// The generation it is staged on.
    pub(crate) fn generation(&self) -> &GenerationRef {
        &self.generation
    }

    /// The batch to commit, ending at `at`, and the generation to commit it to.
    pub(crate) fn into_batch(self, at: Checkpoint) -> (GenerationRef, Batch) {
        let batch = Batch {
            changes: self.staged.into_iter().collect::<Changes>(),
            base: self.base,
            at,
            model_version: self.model_version,
        };
        (self.generation, batch)
    }

    /// The value under `key`: staged in this batch, else committed.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        if let Some(staged) = self.staged.get(key) {
            return Ok(staged.clone());
        }
        if self.fresh {
            return Ok(None);
        }
        self.generation.get(key)
    }

    /// The value under `key`, decoded (as written by [`WriteSet::put_value`]).
    pub fn get_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        let decode = |v: &[u8]| decode_value(&self.projection, key, v);
        match self.staged.get(key) {
            // Decoded in place: no copy of the staged bytes.
            Some(staged) => staged.as_deref().map(decode).transpose(),
            None if self.fresh => Ok(None),
            None => self.generation.get(key)?.as_deref().map(decode).transpose(),
        }
    }

    /// Stages `value` under `key`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.stage(key.into(), Some(value.into()));
    }

    /// Stages `value`, encoded, under `key`.
    pub fn put_value<T: Serialize>(&mut self, key: impl Into<Vec<u8>>, value: &T) -> Result<(), ProjectionError> {
        let key = key.into();
        let bytes = encode_value(&self.projection, &key, value)?;
        self.stage(key, Some(bytes));
        Ok(())
    }

    /// Stages the removal of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.stage(key.into(), None);
    }

    /// How many keys the batch changes so far.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Roughly how much memory the staged changes take, in bytes.
    pub(crate) fn staged_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the batch changes nothing so far.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }
}
