//! The format of a packed block: a run of sorted entries stored as one
//! sled value, read by binary search without decoding the whole block.
//!
//! ```text
//! offset          size   what
//! 0               1      format version (1)
//! 1               4      entry count n (u32 LE), 1 ..= MAX_ENTRIES
//! 5               4 * n  offsets table: where entry i starts (u32 LE, from the block's start)
//! 5 + 4n          ...    entries, in key order, each:
//!                          flag (u8: 0 a value, 1 deleted), key length (u32 LE),
//!                          value length (u32 LE, 0 when deleted), key, value
//! len - 4         4      CRC-32 (crc32fast) of everything before it
//! ```
//!
//! A block read from disk is checked whole once (length, version, count
//! against the length, checksum) by [`Block::parse`]; each entry is
//! bounds-checked when it is read, so a damaged block is an error, never
//! a panic or an allocation of a length read from it.

/// The format version written in the first byte of every block.
const VERSION: u8 = 1;
/// The version byte and the entry count.
const HEADER: usize = 1 + 4;
/// The checksum at the end.
const TRAILER: usize = 4;
/// The flag, the key length and the value length before each entry's bytes.
const ENTRY_HEADER: usize = 1 + 4 + 4;
/// The most entries a block may hold (the writer's limit is far lower).
pub(super) const MAX_ENTRIES: usize = 1 << 16;

const PUT: u8 = 0;
const DELETED: u8 = 1;

/// What is wrong with a block.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BlockError(pub(super) String);

fn bad(detail: impl Into<String>) -> BlockError {
    BlockError(detail.into())
}

fn u32_at(bytes: &[u8], at: usize) -> Result<usize, BlockError> {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad(format!("a length at byte {at} runs past the block's end")))
}

/// The encoded size of a block of `entries` (keys, values).
pub(super) fn encoded_len<'a>(entries: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> usize {
    HEADER
        + TRAILER
        + entries
            .into_iter()
            .map(|(k, v)| 4 + ENTRY_HEADER + k.len() + v.map_or(0, <[u8]>::len))
            .sum::<usize>()
}

/// A block of `entries`: keys strictly increasing, at least one and at
/// most [`MAX_ENTRIES`], each key and value shorter than 4 GiB (the
/// writer's caller guarantees all three).
pub(super) fn encode(entries: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    debug_assert!(!entries.is_empty() && entries.len() <= MAX_ENTRIES);
    debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
    let len = encoded_len(entries.iter().copied());
    let mut out = Vec::with_capacity(len);
    out.push(VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut at = HEADER + 4 * entries.len();
    for (k, v) in entries {
        out.extend_from_slice(&(at as u32).to_le_bytes());
        at += ENTRY_HEADER + k.len() + v.map_or(0, <[u8]>::len);
    }
    for (k, v) in entries {
        out.push(if v.is_some() { PUT } else { DELETED });
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.map_or(0, <[u8]>::len) as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(v.unwrap_or_default());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), len);
    out
}

/// An entry of a block: its key and its value (`None`: deleted).
pub(super) type BlockEntry<'a> = (&'a [u8], Option<&'a [u8]>);

/// A block checked by [`Block::parse`], over the bytes `B` holding it.
#[derive(Clone)]
pub(super) struct Block<B> {
    bytes: B,
    count: usize,
}

impl<B: AsRef<[u8]>> Block<B> {
    /// Checks `bytes`' length, version, entry count and checksum.
    pub(super) fn parse(bytes: B) -> Result<Block<B>, BlockError> {
        let b = bytes.as_ref();
        if b.len() < HEADER + TRAILER {
            return Err(bad(format!("a block of {} bytes is shorter than its header", b.len())));
        }
        if b[0] != VERSION {
            return Err(bad(format!("unknown block version {}", b[0])));
        }
        let count = u32_at(b, 1)?;
        if count == 0 || count > MAX_ENTRIES {
            return Err(bad(format!("a block of {count} entries")));
        }
        // Each entry takes at least its offset and its header.
        if (count * (4 + ENTRY_HEADER)).saturating_add(HEADER + TRAILER) > b.len() {
            return Err(bad(format!("{count} entries do not fit in {} bytes", b.len())));
        }
        let body = b.len() - TRAILER;
        let stored = u32_at(b, body)? as u32;
        let computed = crc32fast::hash(&b[..body]);
        if stored != computed {
            return Err(bad(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        Ok(Block { bytes, count })
    }

    /// How many entries the block holds (at least one).
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Entry `i` (< [`len`](Self::len)).
    pub(super) fn entry(&self, i: usize) -> Result<BlockEntry<'_>, BlockError> {
        let b = self.bytes.as_ref();
        let body = &b[..b.len() - TRAILER];
        let data = HEADER + 4 * self.count;
        let at = u32_at(b, HEADER + 4 * i)?;
        if at < data || at.saturating_add(ENTRY_HEADER) > body.len() {
            return Err(bad(format!("entry {i} at byte {at} is outside the block's entries")));
        }
        let flag = body[at];
        let key_len = u32_at(body, at + 1)?;
        let value_len = u32_at(body, at + 5)?;
        let key_at = at + ENTRY_HEADER;
        let key = key_at
            .checked_add(key_len)
            .and_then(|end| body.get(key_at..end))
            .ok_or_else(|| bad(format!("entry {i}'s key of {key_len} bytes runs past the block's end")))?;
        let value_at = key_at + key_len;
        let value = value_at
            .checked_add(value_len)
            .and_then(|end| body.get(value_at..end))
            .ok_or_else(|| {
                bad(format!(
                    "entry {i}'s value of {value_len} bytes runs past the block's end"
                ))
            })?;
        match flag {
            PUT => Ok((key, Some(value))),
            DELETED if value_len == 0 => Ok((key, None)),
            DELETED => Err(bad(format!("deleted entry {i} has a value of {value_len} bytes"))),
            other => Err(bad(format!("entry {i} has an unknown flag {other}"))),
        }
    }

    /// The key of entry `i`.
    pub(super) fn key(&self, i: usize) -> Result<&[u8], BlockError> {
        self.entry(i).map(|(k, _)| k)
    }

    /// The index of the first entry whose key is not below `key` (the
    /// block's length if there is none), by binary search.
    pub(super) fn lower_bound(&self, key: &[u8]) -> Result<usize, BlockError> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid)? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The entry with `key`: `Some(None)` if the block records it deleted.
    pub(super) fn find(&self, key: &[u8]) -> Result<Option<Option<&[u8]>>, BlockError> {
        let i = self.lower_bound(key)?;
        if i == self.count {
            return Ok(None);
        }
        let (k, v) = self.entry(i)?;
        Ok((k == key).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type Owned = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn encode_owned(entries: &Owned) -> Vec<u8> {
        let refs: Vec<(&[u8], Option<&[u8]>)> = entries.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
        encode(&refs)
    }

    /// Every entry, read back one by one.
    fn decode_all(bytes: &[u8]) -> Result<Owned, BlockError> {
        let block = Block::parse(bytes)?;
        (0..block.len())
            .map(|i| block.entry(i).map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))))
            .collect()
    }

    fn sample() -> Owned {
        vec![
            (b"".to_vec(), Some(b"empty key".to_vec())),
            (b"a".to_vec(), Some(Vec::new())),
            (b"b".to_vec(), None),
            (b"c\xff".to_vec(), Some(vec![7; 300])),
        ]
    }

    #[test]
    fn a_block_reads_back_what_was_written() {
        let entries = sample();
        let bytes = encode_owned(&entries);
        assert_eq!(
            bytes.len(),
            encoded_len(entries.iter().map(|(k, v)| (&k[..], v.as_deref())))
        );
        assert_eq!(decode_all(&bytes).unwrap(), entries);
        let block = Block::parse(&bytes[..]).unwrap();
        assert_eq!(
            block.find(b"a").unwrap(),
            Some(Some(&b""[..])),
            "an empty value is a value"
        );
        assert_eq!(block.find(b"b").unwrap(), Some(None), "a deleted entry");
        assert_eq!(block.find(b"ab").unwrap(), None);
        assert_eq!(block.find(b"d").unwrap(), None);
        assert_eq!(block.lower_bound(b"").unwrap(), 0);
        assert_eq!(block.lower_bound(b"bb").unwrap(), 3);
        assert_eq!(block.lower_bound(b"z").unwrap(), 4);
    }

    /// Every strict prefix of a block (a truncated value) is an error.
    #[test]
    fn a_truncated_block_is_an_error() {
        let bytes = encode_owned(&sample());
        for len in 0..bytes.len() {
            assert!(decode_all(&bytes[..len]).is_err(), "{len} of {} bytes", bytes.len());
        }
    }

    /// Every single flipped bit is caught (by the checksum, or before it).
    #[test]
    fn a_flipped_bit_is_an_error() {
        let bytes = encode_owned(&sample());
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_all(&b).is_err(), "bit {bit}");
        }
    }

    /// Re-seals `bytes` with a valid checksum after a change, so the checks
    /// behind the checksum are what is tested.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - TRAILER;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Lengths, counts, offsets and flags that a checksum would not catch
    /// (a block written wrong, or a checksum that happens to match) are
    /// errors, not panics or huge allocations.
    #[test]
    fn lengths_beyond_the_block_are_errors_behind_a_valid_checksum() {
        let good = encode_owned(&sample());
        let count_at = 1;
        let first_offset = HEADER;
        let first_entry = HEADER + 4 * 4;
        type Change = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Change)> = vec![
            ("version", Box::new(|b| b[0] = 2)),
            (
                "count 0",
                Box::new(move |b| b[count_at..count_at + 4].copy_from_slice(&0u32.to_le_bytes())),
            ),
            (
                "count huge",
                Box::new(move |b| b[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes())),
            ),
            (
                "count past the bytes",
                Box::new(move |b| b[count_at..count_at + 4].copy_from_slice(&1000u32.to_le_bytes())),
            ),
            (
                "offset inside the table",
                Box::new(move |b| b[first_offset..first_offset + 4].copy_from_slice(&1u32.to_le_bytes())),
            ),
            (
                "offset past the end",
                Box::new(move |b| b[first_offset..first_offset + 4].copy_from_slice(&u32::MAX.to_le_bytes())),
            ),
            (
                "key length huge",
                Box::new(move |b| b[first_entry + 1..first_entry + 5].copy_from_slice(&u32::MAX.to_le_bytes())),
            ),
            (
                "value length huge",
                Box::new(move |b| b[first_entry + 5..first_entry + 9].copy_from_slice(&(u32::MAX - 3).to_le_bytes())),
            ),
            ("unknown flag", Box::new(move |b| b[first_entry] = 9)),
            ("deleted with a value", Box::new(move |b| b[first_entry] = DELETED)),
        ];
        for (what, change) in cases {
            let mut b = good.clone();
            change(&mut b);
            let b = reseal(b);
            assert!(decode_all(&b).is_err(), "{what}");
            // A lookup through a damaged entry fails too (or finds nothing),
            // and never panics.
            if let Ok(block) = Block::parse(&b[..]) {
                let _ = block.find(b"a");
                let _ = block.find(b"");
            }
        }
    }

    fn entries() -> impl Strategy<Value = Owned> {
        prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 0..12),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            1..80,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// Any sorted entries read back whole and by key; keys between and
        /// around them are not found.
        #[test]
        fn blocks_round_trip(entries in entries(), probes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..20)) {
            let bytes = encode_owned(&entries);
            prop_assert_eq!(&decode_all(&bytes).unwrap(), &entries);
            let block = Block::parse(&bytes[..]).unwrap();
            for (k, v) in &entries {
                prop_assert_eq!(block.find(k).unwrap(), Some(v.as_deref()));
            }
            for p in probes {
                let expected = entries.iter().find(|(k, _)| *k == p).map(|(_, v)| v.as_deref());
                prop_assert_eq!(block.find(&p).unwrap(), expected);
                let lower = entries.iter().position(|(k, _)| *k >= p).unwrap_or(entries.len());
                prop_assert_eq!(block.lower_bound(&p).unwrap(), lower);
            }
        }

        /// Arbitrary damage (bytes overwritten, the block cut) is an error
        /// or, if it hits nothing the reader uses, the same entries; never a
        /// panic.
        #[test]
        fn damaged_blocks_never_panic(entries in entries(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>(), seal in any::<bool>()) {
            let mut bytes = encode_owned(&entries);
            let i = at.index(bytes.len());
            let changed = bytes[i] != byte;
            bytes[i] = byte;
            let full = bytes.len();
            bytes.truncate(cut.index(full + 1).max(1));
            let damaged = changed || bytes.len() < full;
            let bytes = if seal && bytes.len() >= HEADER + TRAILER { reseal(bytes) } else { bytes };
            if let Ok(read) = decode_all(&bytes) {
                prop_assert!(seal || !damaged, "damage not caught: {:?}", read);
            }
            if let Ok(block) = Block::parse(&bytes[..]) {
                for (k, _) in &entries {
                    let _ = block.find(k);
                }
            }
        }
    }
}
