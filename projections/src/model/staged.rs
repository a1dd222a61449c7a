//! What a [`WriteSet`](super::write_set::WriteSet) stages under one key: a
//! removal, bytes, or a typed value that is encoded once, when the write
//! set becomes a batch.
//!
//! A fold reads and writes the same keys event after event (an order's
//! summary, a status count): staging the typed value spares it a decode
//! and an encode per event. The value's encoded length is counted when it
//! is staged (a pass of the encoder that builds no bytes), so a value that
//! cannot be encoded is refused there, as an eager encode would, and the
//! write set's memory estimate stays exact about the bytes it will write.

use std::any::Any;
use std::mem::size_of;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_store::bincode_len;

use crate::codec::{decode_value, encode_error, encode_value};
use crate::error::ProjectionError;

/// One staged change.
pub(crate) enum Staged {
    /// The key is removed.
    Removed,
    /// The key holds these bytes.
    Bytes(Vec<u8>),
    /// The key holds this value, encoded at the commit.
    Value(Box<dyn StagedValue>),
}

/// A typed value staged by `WriteSet::put_value`, with what the write set
/// needs of it without knowing its type.
pub(crate) trait StagedValue: Send + Sync {
    /// Puts a clone of the value in `slot` if `slot` is an `Option<T>` of
    /// the value's own type `T`; says whether it did.
    fn clone_to(&self, slot: &mut dyn Any) -> bool;
    /// The value's bytes, as `WriteSet::put_value` always stored it.
    fn encode(&self, projection: &str, key: &[u8]) -> Result<Vec<u8>, ProjectionError>;
    /// The length of those bytes (counted when the value was staged).
    fn encoded_len(&self) -> usize;
    /// Replaces the value with a clone of `value`, whose encoded length is
    /// `encoded_len`, if `value` is of the value's own type; says whether
    /// it did.
    fn replace(&mut self, value: &dyn Any, encoded_len: usize) -> bool;
    /// Roughly the memory the value takes beside its encoded length: its
    /// box. The heap parts are counted as their encoded length, which is
    /// about right for strings and byte vectors but low for vectors of
    /// integers (varints), maps and spare capacity: the write set's
    /// `staged_bytes` is an estimate, and the rebuild's budget with it.
    fn boxed_size(&self) -> usize;
}

struct Typed<T> {
    value: T,
    encoded_len: usize,
}

impl<T: Serialize + Clone + Send + Sync + 'static> StagedValue for Typed<T> {
    fn clone_to(&self, slot: &mut dyn Any) -> bool {
        match slot.downcast_mut::<Option<T>>() {
            Some(slot) => {
                *slot = Some(self.value.clone());
                true
            }
            None => false,
        }
    }

    fn encode(&self, projection: &str, key: &[u8]) -> Result<Vec<u8>, ProjectionError> {
        encode_value(projection, key, &self.value)
    }

    fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    fn replace(&mut self, value: &dyn Any, encoded_len: usize) -> bool {
        match value.downcast_ref::<T>() {
            Some(value) => {
                self.value.clone_from(value);
                self.encoded_len = encoded_len;
                true
            }
            None => false,
        }
    }

    fn boxed_size(&self) -> usize {
        size_of::<Self>()
    }
}

impl Staged {
    /// A clone of `value`, staged typed; `encoded_len` is its
    /// [`encoded_len`].
    pub(crate) fn typed<T: Serialize + Clone + Send + Sync + 'static>(value: &T, encoded_len: usize) -> Staged {
        Staged::Value(Box::new(Typed {
            value: value.clone(),
            encoded_len,
        }))
    }

    /// Roughly the memory the change takes beside its key (see the write
    /// set's `staged_bytes`).
    pub(crate) fn size(&self) -> usize {
        match self {
            Staged::Removed => 0,
            Staged::Bytes(bytes) => bytes.len(),
            Staged::Value(value) => value.encoded_len() + value.boxed_size(),
        }
    }

    /// The bytes the change leaves under `key` (`None`: removed).
    pub(crate) fn bytes(&self, projection: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        match self {
            Staged::Removed => Ok(None),
            Staged::Bytes(bytes) => Ok(Some(bytes.clone())),
            Staged::Value(value) => value.encode(projection, key).map(Some),
        }
    }

    /// The bytes the change leaves under `key`, for the commit.
    pub(crate) fn into_bytes(self, projection: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        match self {
            Staged::Bytes(bytes) => Ok(Some(bytes)),
            other => other.bytes(projection, key),
        }
    }

    /// The value the change leaves under `key`, as a `T`: a clone of the
    /// staged value if it is a `T`, else decoded from the bytes (a
    /// [`ProjectionError::Corrupt`] if they are not a `T`).
    pub(crate) fn get_value<T: DeserializeOwned + 'static>(
        &self,
        projection: &str,
        key: &[u8],
    ) -> Result<Option<T>, ProjectionError> {
        match self {
            Staged::Removed => Ok(None),
            // Decoded in place: no copy of the staged bytes.
            Staged::Bytes(bytes) => decode_value(projection, key, bytes).map(Some),
            Staged::Value(value) => {
                let mut slot: Option<T> = None;
                if value.clone_to(&mut slot) {
                    return Ok(slot);
                }
                decode_value(projection, key, &value.encode(projection, key)?).map(Some)
            }
        }
    }
}

/// The length of `value` encoded under `key` (counted, no bytes built), or
/// the error [`encode_value`] gives for it: what `put_value` checks before
/// it stages a value.
pub(crate) fn encoded_len<T: Serialize>(projection: &str, key: &[u8], value: &T) -> Result<usize, ProjectionError> {
    bincode_len(value).map_err(|e| encode_error(projection, key, e))
}
