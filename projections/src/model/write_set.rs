//! [`WriteSet`]: the changes of one batch of events, staged for one atomic
//! commit with the batch's checkpoint.

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
    staged: Changes,
    /// The checkpoint the batch is staged on: the commit is refused unless
    /// the generation is still there.
    base: u64,
}

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
            staged: Changes::new(),
            base,
        }
    }

    /// The generation it is staged on.
    pub(crate) fn generation(&self) -> &GenerationRef {
        &self.generation
    }

    /// The batch to commit, ending at `at`, and the generation to commit it to.
    pub(crate) fn into_batch(self, at: Checkpoint) -> (GenerationRef, Batch) {
        let batch = Batch {
            changes: self.staged,
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
        self.generation.get(key)
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
