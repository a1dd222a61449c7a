//! The write set's typed values: what a get sees after a put, what the
//! commit writes, the encode errors and the memory estimate.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strata_store::{EventId, to_bincode};

use super::*;
use crate::backend::{MemoryGeneration, Stored};
use crate::codec::Entry;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
struct Summary {
    id: String,
    count: u64,
    at: SystemTime,
}

fn summary(id: &str, count: u64) -> Summary {
    Summary {
        id: id.to_string(),
        count,
        at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

fn generation(entries: Vec<Entry>) -> GenerationRef {
    Arc::new(MemoryGeneration::new(1, entries, Stored::default()))
}

/// A write set on a generation that holds `entries`.
fn on(entries: Vec<Entry>) -> WriteSet {
    WriteSet::new(generation(entries), "m", 0, 0)
}

fn fresh() -> WriteSet {
    WriteSet::on_fresh(generation(Vec::new()), "m", 0, 0)
}

fn changes(ws: WriteSet) -> Changes {
    let at = Checkpoint {
        position: 1,
        event_id: EventId::new(),
    };
    ws.into_batch(at).unwrap().1.changes
}

/// A value whose `Serialize` counts its calls: a get of its own type must
/// not encode it.
#[derive(Clone, Debug, Default, Deserialize)]
struct Counted {
    n: u64,
    #[serde(skip)]
    encoded: Arc<std::sync::atomic::AtomicUsize>,
}

impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.encoded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.n.serialize(s)
    }
}

#[test]
fn a_get_of_the_type_put_is_the_value_without_encoding_it() {
    let mut ws = fresh();
    let value = Counted {
        n: 7,
        ..Counted::default()
    };
    ws.put_value(b"k".to_vec(), &value).unwrap();
    let counted_at_put = value.encoded.load(std::sync::atomic::Ordering::SeqCst);
    let got: Counted = ws.get_value(b"k").unwrap().unwrap();
    assert_eq!(got.n, 7);
    assert_eq!(
        value.encoded.load(std::sync::atomic::Ordering::SeqCst),
        counted_at_put,
        "the staged value was encoded for a get of its own type"
    );
    // The commit encodes it, once.
    assert_eq!(changes(ws)[&b"k".to_vec()], Some(to_bincode(&7u64).unwrap()));
    assert_eq!(
        value.encoded.load(std::sync::atomic::Ordering::SeqCst),
        counted_at_put + 1
    );
}

#[test]
fn the_commit_writes_the_bytes_an_eager_encode_wrote() {
    let mut ws = fresh();
    ws.put_value(b"o1".to_vec(), &summary("1", 1)).unwrap();
    ws.put_value(b"n".to_vec(), &3u64).unwrap();
    ws.put(b"i".to_vec(), Vec::new());
    // Staged over: the last put wins, typed over bytes and bytes over typed.
    ws.put(b"o2".to_vec(), b"raw".to_vec());
    ws.put_value(b"o2".to_vec(), &summary("2", 2)).unwrap();
    ws.put_value(b"o3".to_vec(), &summary("3", 3)).unwrap();
    ws.put(b"o3".to_vec(), b"raw".to_vec());
    // A value of another type over a typed value.
    ws.put_value(b"x".to_vec(), &1u64).unwrap();
    ws.put_value(b"x".as_slice(), &summary("x", 1)).unwrap();
    assert_eq!(ws.get_value::<Summary>(b"x").unwrap(), Some(summary("x", 1)));
    let mut s1 = ws.get_value::<Summary>(b"o1").unwrap().unwrap();
    s1.count += 1;
    ws.put_value(b"o1".to_vec(), &s1).unwrap();
    let expected: Changes = [
        (b"i".to_vec(), Some(Vec::new())),
        (b"n".to_vec(), Some(to_bincode(&3u64).unwrap())),
        (b"o1".to_vec(), Some(to_bincode(&summary("1", 2)).unwrap())),
        (b"o2".to_vec(), Some(to_bincode(&summary("2", 2)).unwrap())),
        (b"o3".to_vec(), Some(b"raw".to_vec())),
        (b"x".to_vec(), Some(to_bincode(&summary("x", 1)).unwrap())),
    ]
    .into_iter()
    .collect();
    assert_eq!(changes(ws), expected);
}

#[test]
fn get_encodes_a_typed_value() {
    let mut ws = fresh();
    ws.put_value(b"o".to_vec(), &summary("1", 5)).unwrap();
    assert_eq!(ws.get(b"o").unwrap(), Some(to_bincode(&summary("1", 5)).unwrap()));
}

#[test]
fn a_get_of_another_type_decodes_the_encoded_value_or_is_corrupt() {
    let mut ws = fresh();
    // A u32 and a u64 encode alike (varint): decoded from the bytes.
    ws.put_value(b"n".to_vec(), &300u32).unwrap();
    assert_eq!(ws.get_value::<u64>(b"n").unwrap(), Some(300));
    // A summary read as a list of numbers: its bytes are not one.
    ws.put_value(b"o".to_vec(), &summary("1", 5)).unwrap();
    let err = ws.get_value::<Vec<u64>>(b"o").unwrap_err();
    assert!(
        matches!(&err, ProjectionError::Corrupt { projection, key, .. } if projection == "m" && key == "o"),
        "{err:?}"
    );
    // The same error as for the same bytes committed.
    let committed = on(vec![(b"o".to_vec(), to_bincode(&summary("1", 5)).unwrap())]);
    assert_eq!(
        committed.get_value::<Vec<u64>>(b"o").unwrap_err().to_string(),
        err.to_string()
    );
}

#[test]
fn a_delete_hides_the_typed_value_and_the_committed_one() {
    let mut ws = on(vec![(b"c".to_vec(), to_bincode(&1u64).unwrap())]);
    ws.put_value(b"t".to_vec(), &2u64).unwrap();
    assert_eq!(ws.get_value::<u64>(b"c").unwrap(), Some(1));
    ws.delete(b"t".to_vec());
    ws.delete(b"c".to_vec());
    assert_eq!(ws.get_value::<u64>(b"t").unwrap(), None);
    assert_eq!(ws.get_value::<u64>(b"c").unwrap(), None);
    assert_eq!(ws.get(b"t").unwrap(), None);
    let expected: Changes = [(b"c".to_vec(), None), (b"t".to_vec(), None)].into_iter().collect();
    assert_eq!(changes(ws), expected);

    // On a fresh generation a delete drops the staged value.
    let mut ws = fresh();
    ws.put_value(b"t".to_vec(), &summary("1", 1)).unwrap();
    ws.delete(b"t".to_vec());
    assert_eq!(ws.get_value::<Summary>(b"t").unwrap(), None);
    assert!(ws.is_empty());
    assert_eq!(ws.staged_bytes(), 0);
    // And a put after it stages the new value.
    ws.put_value(b"t".to_vec(), &summary("2", 2)).unwrap();
    assert_eq!(ws.get_value::<Summary>(b"t").unwrap(), Some(summary("2", 2)));
}

#[test]
fn a_value_that_cannot_be_encoded_is_refused_at_the_put_as_before() {
    let before_epoch = Summary {
        at: UNIX_EPOCH - Duration::from_secs(1),
        ..summary("1", 1)
    };
    let expected = crate::codec::encode_value("m", b"o", &before_epoch).unwrap_err();
    assert!(matches!(expected, ProjectionError::Corrupt { .. }));
    let mut ws = fresh();
    ws.put_value(b"o".to_vec(), &summary("1", 1)).unwrap();
    let bytes = ws.staged_bytes();
    let err = ws.put_value(b"o".to_vec(), &before_epoch).unwrap_err();
    assert_eq!(format!("{err:?}"), format!("{expected:?}"));
    // Nothing was staged: the value before it stands.
    assert_eq!(ws.get_value::<Summary>(b"o").unwrap(), Some(summary("1", 1)));
    assert_eq!(ws.staged_bytes(), bytes);
    assert_eq!(ws.len(), 1);
}

#[test]
fn staged_bytes_count_the_encoded_length_of_typed_values() {
    let mut ws = fresh();
    assert_eq!(ws.staged_bytes(), 0);
    let small = summary("1", 1);
    ws.put_value(b"o".to_vec(), &small).unwrap();
    let one = ws.staged_bytes();
    let encoded = to_bincode(&small).unwrap().len();
    assert!(one >= STAGED_OVERHEAD + 1 + encoded, "{one}");
    // Beside the encoded bytes, about the value's own size.
    assert!(
        one <= STAGED_OVERHEAD + 1 + encoded + 2 * std::mem::size_of::<Summary>(),
        "{one}"
    );

    // A longer value under the same key: grows by the difference.
    let long = summary(&"x".repeat(10_000), 1);
    ws.put_value(b"o".to_vec(), &long).unwrap();
    assert_eq!(
        ws.staged_bytes() - one,
        to_bincode(&long).unwrap().len() - encoded,
        "the estimate follows the encoded length"
    );
    // Back to the small one: back to where it was.
    ws.put_value(b"o".to_vec(), &small).unwrap();
    assert_eq!(ws.staged_bytes(), one);
    // A value of another type: its own length and size.
    ws.put_value(b"o".to_vec(), &7u64).unwrap();
    assert_eq!(
        ws.staged_bytes(),
        STAGED_OVERHEAD + 1 + 1 + std::mem::size_of::<(u64, usize)>()
    );
    ws.put_value(b"o".to_vec(), &small).unwrap();
    assert_eq!(ws.staged_bytes(), one);
    // Bytes over the typed value: counted as bytes.
    ws.put(b"o".to_vec(), vec![0; 40]);
    assert_eq!(ws.staged_bytes(), STAGED_OVERHEAD + 1 + 40);
    // Removed on a fresh generation: nothing left.
    ws.delete(b"o".to_vec());
    assert_eq!(ws.staged_bytes(), 0);
}

/// One operation of [`a_batch_holds_the_last_change_of_each_key_in_key_order`].
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    PutValue(Vec<u8>, u64),
    Delete(Vec<u8>),
}

fn change() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    // Short keys of few letters: shared prefixes, keys that are prefixes
    // of others, and many keys equal to the pivot's neighbours.
    let key = proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xff)], 0..5);
    prop_oneof![
        (key.clone(), proptest::collection::vec(any::<u8>(), 0..3)).prop_map(|(k, v)| Op::Put(k, v)),
        (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::PutValue(k, v)),
        key.prop_map(Op::Delete),
    ]
}

proptest::proptest! {
    /// A batch holds each key's last change, encoded, in key order, on a
    /// fresh generation (where a delete drops the key's change) and on
    /// one that holds values; batches of more than 64 changes are sorted
    /// in two halves on two threads under test.
    #[test]
    fn a_batch_holds_the_last_change_of_each_key_in_key_order(
        changes_made in proptest::collection::vec(change(), 0..400),
        is_fresh in proptest::bool::ANY,
    ) {
        let mut ws = if is_fresh { fresh() } else { on(Vec::new()) };
        let mut model: Changes = Changes::new();
        for c in changes_made {
            match c {
                Op::Put(k, v) => {
                    model.insert(k.clone(), Some(v.clone()));
                    ws.put(k, v);
                }
                Op::PutValue(k, v) => {
                    model.insert(k.clone(), Some(to_bincode(&v).unwrap()));
                    ws.put_value(k, &v).unwrap();
                }
                Op::Delete(k) => {
                    if is_fresh {
                        model.remove(&k);
                    } else {
                        model.insert(k.clone(), None);
                    }
                    ws.delete(k);
                }
            }
        }
        let got = changes(ws);
        proptest::prop_assert_eq!(got, model);
    }
}

proptest::proptest! {
    /// The keys below the pivot come first, and each half comes out of
    /// `encode_and_sort` in key order: put one after the other, they are
    /// the batch in key order (the map the batch is collected into would
    /// hide a misplaced key, at the cost of a slower commit).
    #[test]
    fn the_halves_of_a_large_batch_are_in_key_order(
        keys in proptest::collection::btree_set(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6), 64..300),
    ) {
        let n = keys.len();
        let mut staged: Vec<(Vec<u8>, Staged)> = keys.iter().rev().map(|k| (k.clone(), Staged::Bytes(k.clone()))).collect();
        let below = split_at_pivot(&mut staged);
        proptest::prop_assert!(0 < below && below < n, "both halves hold keys: {below} of {n}");
        let low_max = staged[..below].iter().map(|(k, _)| k.clone()).max().unwrap();
        let high_min = staged[below..].iter().map(|(k, _)| k.clone()).min().unwrap();
        proptest::prop_assert!(low_max < high_min);
        let mut out: Vec<Change> = (0..n).map(|_| (Vec::new(), None)).collect();
        let (from_low, from_high) = staged.split_at_mut(below);
        let (to_low, to_high) = out.split_at_mut(below);
        encode_and_sort("m", from_low, to_low).unwrap();
        encode_and_sort("m", from_high, to_high).unwrap();
        let got: Vec<Vec<u8>> = out.iter().map(|(k, _)| k.clone()).collect();
        let want: Vec<Vec<u8>> = keys.into_iter().collect();
        proptest::prop_assert_eq!(&got, &want);
        proptest::prop_assert!(out.iter().all(|(k, v)| v.as_ref() == Some(k)), "each key keeps its own value");
    }

    /// The estimate's bookkeeping: on a fresh generation, it comes back to
    /// nothing once every key staged is deleted again, whatever was staged
    /// over what before (not whether the estimate is close to the memory
    /// used, nor a non-fresh set, where a delete stays staged).
    #[test]
    fn the_memory_estimate_returns_to_zero_when_every_key_is_dropped(
        ops in proptest::collection::vec(change(), 0..300),
    ) {
        let mut ws = fresh();
        let mut touched = std::collections::BTreeSet::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    touched.insert(k.clone());
                    ws.put(k, v);
                }
                Op::PutValue(k, v) => {
                    touched.insert(k.clone());
                    ws.put_value(k, &v).unwrap();
                }
                Op::Delete(k) => ws.delete(k),
            }
        }
        for k in touched {
            ws.delete(k);
        }
        proptest::prop_assert_eq!((ws.staged_bytes(), ws.len()), (0, 0));
    }
}
