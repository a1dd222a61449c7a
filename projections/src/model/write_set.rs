//! [`WriteSet`]: the changes of one batch of events, staged for one atomic
//! commit with the batch's checkpoint.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Batch, Changes, Checkpoint, GenerationRef};
use crate::error::ProjectionError;
use crate::model::staged::{Staged, encoded_len};
use crate::threads::{cores, side_by_side};

/// The changes one batch of events makes to a read model, staged in memory
/// and committed together with the checkpoint in one atomic write.
///
/// Reads see the batch's own staged changes first, then the committed model.
/// Keys are the read model's own; the store keeps them apart from the
/// checkpoint.
///
/// A value staged with [`put_value`](WriteSet::put_value) is kept as it
/// is and encoded once, at the commit: a [`get_value`](WriteSet::get_value)
/// of the same type returns a clone of it, without a decode. The bytes
/// committed are the same as if it had been encoded when staged.
pub struct WriteSet {
    generation: GenerationRef,
    projection: String,
    /// The model version of the projection applying the batch, recorded
    /// with the checkpoint.
    model_version: u64,
    /// Hashed, not ordered: a rebuild's fold looks keys up in hundreds of
    /// thousands of them for every event; they are put in key order once,
    /// for the commit. A table of its own, hashed by `hasher`, so that a
    /// change finds or makes its slot in one lookup (hashbrown's `entry`,
    /// which may first grow the table), and a key is copied only when it
    /// is new. Each key is kept with its hash: the table
    /// grows by rehashing every key, and a key's bytes are elsewhere in
    /// memory.
    staged: HashTable<Slot>,
    /// foldhash, not the standard SipHash, for the fold's speed; randomly
    /// seeded per map, since keys hold ids that clients choose.
    hasher: foldhash::fast::RandomState,
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
    /// Roughly the memory the staged changes take (see [`STAGED_OVERHEAD`]
    /// and `Staged::size`).
    bytes: usize,
}

/// One change of a batch: a key and its value (`None`: removed).
type Change = (Vec<u8>, Option<Vec<u8>>);

/// One staged change: the key's hash, the key and the change.
type Slot = (u64, Vec<u8>, Staged);

/// What one staged change costs beside its key's and value's bytes: the
/// map's slot, the key's vector and the allocations (an estimate, for the
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
            staged: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
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

    /// Stages `value` under `key`, keeping count of the bytes staged. The
    /// key is copied only when it is not staged yet.
    fn stage(&mut self, key: impl AsRef<[u8]> + Into<Vec<u8>>, value: Staged) {
        let k = key.as_ref();
        let hash = self.hash(k);
        let entry = self.staged.entry(
            hash,
            |(h, staged, _)| *h == hash && staged.as_slice() == k,
            |(h, ..)| *h,
        );
        let dropped = matches!(value, Staged::Removed) && self.fresh;
        match entry {
            Entry::Occupied(slot) if dropped => {
                let ((_, k, old), _) = slot.remove();
                self.bytes -= STAGED_OVERHEAD + k.len() + old.size();
            }
            Entry::Occupied(mut slot) => {
                let old = &mut slot.get_mut().2;
                self.bytes = self.bytes + value.size() - old.size();
                *old = value;
            }
            Entry::Vacant(_) if dropped => {}
            Entry::Vacant(slot) => {
                let key = key.into();
                self.bytes += STAGED_OVERHEAD + key.len() + value.size();
                slot.insert((hash, key, value));
            }
        }
    }

    /// The hash `key` is staged under.
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key`, if it is staged.
    fn find_mut(&mut self, key: &[u8]) -> Option<&mut Slot> {
        let hash = self.hash(key);
        self.staged
            .find_mut(hash, |(h, staged, _)| *h == hash && staged.as_slice() == key)
    }

    /// What is staged under `key`, if anything.
    fn find(&self, key: &[u8]) -> Option<&Staged> {
        let hash = self.hash(key);
        self.staged
            .find(hash, |(h, staged, _)| *h == hash && staged.as_slice() == key)
            .map(|(.., staged)| staged)
    }

    /// The generation it is staged on.
    pub(crate) fn generation(&self) -> &GenerationRef {
        &self.generation
    }

    /// The batch to commit, ending at `at`, and the generation to commit
    /// it to: the staged values encoded, in key order (see [`sorted`]).
    pub(crate) fn into_batch(self, at: Checkpoint) -> Result<(GenerationRef, Batch), ProjectionError> {
        let staged = self.staged.into_iter().map(|(_, key, staged)| (key, staged)).collect();
        let changes = sorted(&self.projection, staged)?;
        let batch = Batch {
            changes,
            base: self.base,
            at,
            model_version: self.model_version,
        };
        Ok((self.generation, batch))
    }

    /// The value under `key`: staged in this batch (a value staged with
    /// [`put_value`](WriteSet::put_value) is encoded), else committed.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        if let Some(staged) = self.find(key) {
            return staged.bytes(&self.projection, key);
        }
        if self.fresh {
            return Ok(None);
        }
        self.generation.get(key)
    }

    /// The value under `key`, decoded (as written by
    /// [`WriteSet::put_value`]): a value staged in this batch as a `T` is
    /// cloned, anything else is decoded from its bytes
    /// ([`ProjectionError::Corrupt`] if they do not hold a `T`).
    pub fn get_value<T: DeserializeOwned + 'static>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        match self.find(key) {
            Some(staged) => staged.get_value(&self.projection, key),
            None if self.fresh => Ok(None),
            None => self
                .generation
                .get(key)?
                .as_deref()
                .map(|v| crate::codec::decode_value(&self.projection, key, v))
                .transpose(),
        }
    }

    /// Stages `value` under `key`.
    pub fn put(&mut self, key: impl AsRef<[u8]> + Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.stage(key, Staged::Bytes(value.into()));
    }

    /// Stages `value` under `key`, to be stored encoded (bincode, as
    /// [`get_value`](WriteSet::get_value) and the model's readers decode
    /// it).
    ///
    /// The value is kept as it is (a clone) until the commit, where it is
    /// encoded; its encoded length is counted now, so a value that cannot
    /// be encoded is refused here with [`ProjectionError::Corrupt`] and
    /// nothing is staged.
    ///
    /// A [`get_value`](WriteSet::get_value) of the same type before the
    /// commit returns a clone of the value, not a decode of its bytes, so
    /// `T`'s encoding must be faithful: decoding what it encodes gives the
    /// value back (no `#[serde(skip)]` fields a fold relies on, no shared
    /// state behind an `Arc` that changes after the put). Otherwise a
    /// rebuild, whose commits fall elsewhere than the live runner's, could
    /// fold to another model.
    ///
    /// Since 0.1 (issue 14) `T` must be `Clone + Send + Sync + 'static`
    /// (it was `Serialize` alone): a borrowed view such as `&(u64, &str)`
    /// is staged as an owned value, or encoded first and staged with
    /// [`put`](WriteSet::put).
    pub fn put_value<T: Serialize + Clone + Send + Sync + 'static>(
        &mut self,
        key: impl AsRef<[u8]> + Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), ProjectionError> {
        let encoded_len = encoded_len(&self.projection, key.as_ref(), value)?;
        // A value of the same type staged under the key: replaced in place.
        if let Some((.., Staged::Value(staged))) = self.find_mut(key.as_ref()) {
            let before = staged.encoded_len();
            if staged.replace(value, encoded_len) {
                self.bytes = self.bytes + encoded_len - before;
                return Ok(());
            }
        }
        self.stage(key, Staged::typed(value, encoded_len));
        Ok(())
    }

    /// Stages the removal of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]> + Into<Vec<u8>>) {
        self.stage(key, Staged::Removed);
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

/// Staged changes at least this many are encoded and sorted on two
/// threads (see [`sorted`]).
const PARALLEL_MIN: usize = if cfg!(test) { 64 } else { 1 << 15 };

/// `staged` encoded and in key order: the changes of a batch.
///
/// A rebuild's commit holds hundreds of thousands of changes, and what it
/// costs is mostly this sort and the encoding of the values: on a machine
/// with more than one core, a large batch is split at a pivot key (the
/// median of a sample of its keys) into the keys below it and the rest,
/// each encoded and sorted on a thread of its own; one after the other,
/// they are in order.
fn sorted(projection: &str, mut staged: Vec<(Vec<u8>, Staged)>) -> Result<Changes, ProjectionError> {
    let n = staged.len();
    let mut changes: Vec<Change> = Vec::with_capacity(n);
    changes.resize_with(n, || (Vec::new(), None));
    if n < PARALLEL_MIN || cores() < 2 {
        encode_and_sort(projection, &mut staged, &mut changes)?;
    } else {
        let below = split_at_pivot(&mut staged);
        let (from_low, from_high) = staged.split_at_mut(below);
        let (to_low, to_high) = changes.split_at_mut(below);
        let parts = vec![(from_low, to_low), (from_high, to_high)];
        side_by_side("strata-sort", parts, |(from, to)| encode_and_sort(projection, from, to))
            .into_iter()
            .collect::<Result<(), ProjectionError>>()?;
    }
    drop(staged);
    debug_assert!(
        changes.windows(2).all(|w| w[0].0 < w[1].0),
        "the halves are in key order"
    );
    // In key order already: the map's own (stable) sort finds one run and
    // merges nothing; the map is built on this vector's memory.
    Ok(changes.into_iter().collect())
}

/// Moves the keys of `staged` below a pivot key before the others and
/// returns how many they are. The pivot is the median of up to 255 keys
/// taken evenly through `staged` (a staged map's order is its hashes',
/// which says nothing of the keys'), so the two parts are about as large.
fn split_at_pivot(staged: &mut [(Vec<u8>, Staged)]) -> usize {
    let step = staged.len().div_ceil(255).max(1);
    let mut sample: Vec<&[u8]> = staged.iter().step_by(step).map(|(k, _)| k.as_slice()).collect();
    sample.sort_unstable();
    let Some(pivot) = sample.get(sample.len() / 2).map(|k| k.to_vec()) else {
        return 0;
    };
    let mut below = 0;
    for i in 0..staged.len() {
        if staged[i].0 < pivot {
            staged.swap(i, below);
            below += 1;
        }
    }
    below
}

/// Moves the changes of `from` into `to` (as long), encoded, and sorts
/// them by key (keys are unique: an unstable sort). What is left in
/// `from` is empty.
fn encode_and_sort(projection: &str, from: &mut [(Vec<u8>, Staged)], to: &mut [Change]) -> Result<(), ProjectionError> {
    // A slot left over would commit the empty key's removal.
    assert_eq!(from.len(), to.len(), "a change for every slot");
    for ((key, staged), slot) in from.iter_mut().zip(to.iter_mut()) {
        let value = std::mem::replace(staged, Staged::Removed).into_bytes(projection, key)?;
        *slot = (std::mem::take(key), value);
    }
    to.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(())
}

#[cfg(test)]
mod tests;
