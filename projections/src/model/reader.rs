//! [`ModelReader`]: reads of one generation of a read model.

use serde::de::DeserializeOwned;

use crate::backend::{GenerationRef, Stored};
use crate::codec::{Entry, decode_value};
use crate::error::ProjectionError;

/// Reads of one generation of a read model, from
/// [`ModelStore::reader`](crate::ModelStore::reader).
///
/// Every read sees the generation that was current when the reader was
/// taken, so an answer built from several reads (an index, then the values
/// it names) never mixes the model before a rebuild with the model after
/// it. It is not a snapshot: the live runner's commits to that generation
/// show between two reads (each commit whole). Cheap to clone.
#[derive(Clone)]
pub struct ModelReader {
    name: String,
    generation: GenerationRef,
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
    pub(crate) fn new(name: &str, generation: GenerationRef) -> ModelReader {
        ModelReader {
            name: name.to_string(),
            generation,
        }
    }

    /// The id of the generation this reader reads.
    pub fn generation(&self) -> u64 {
        self.generation.id()
    }

    /// The generation's checkpoint as stored now: the position of the last
    /// event applied to it (0 before any).
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self.generation.stored()?.position)
    }

    /// The model version of the projection that last committed to the
    /// generation (0 when none was recorded); see
    /// [`ModelStore::model_version`](crate::ModelStore::model_version).
    pub fn model_version(&self) -> Result<u64, ProjectionError> {
        Ok(self.generation.stored()?.model_version)
    }

    /// The checkpoint, its event and the model version, as stored now.
    pub(crate) fn stored(&self) -> Result<Stored, ProjectionError> {
        self.generation.stored()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.generation.get(key)
    }

    /// The value under `key`, decoded (as written by
    /// [`WriteSet::put_value`](crate::WriteSet::put_value)).
    pub fn get_value<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.get(key)?.map(|v| decode_value(&self.name, key, &v)).transpose()
    }

    /// The first `limit` entries with a key in `from..to` (`to` exclusive;
    /// `None` runs to the end), in key order; no more than `limit` are read.
    /// A range that ends before it starts is empty.
    pub fn range_limit(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        self.generation.range(from, to, limit)
    }
}
