//! The sled index of the segment log: derived from the segments, written
//! behind them in large batches, deletable (it is rebuilt on open).
//!
//! One tree, `strata-index`, one key space per prefix byte; every value
//! ends in a CRC-32C over its key and value:
//!
//! | key | value |
//! |---|---|
//! | `m` `format` | `strata-index/3` |
//! | `m` `checkpoint` | next position, log address after the last indexed record (u64 BE each) |
//! | `s` stream `\0` last version (u64 BE) | chunks: (first version, count, first position, record address, record length) |
//! | `i` tag, bucket (u64 BE), stream hash (u64 BE), first position (u64 BE) | runs: (version gap, position gap, count as varints; ids) |
//! | `p` position (u64 BE) | log address of the record starting there (a sparse point) |
//!
//! A stream entry covers consecutive chunks of one stream written in one
//! index batch (one chunk per append), so sled's work is one entry per
//! stream per batch, not one per event. Id entries group the ids of one
//! stream by a bucket: for UUID v7 ids (tag `T`) the second of their
//! timestamp (ids minted together share an entry), for other ids (tag `H`)
//! one of 16 hash buckets (256 in format 2: up to sixteen times the
//! entries, and sled spent about three bytes on disk per byte of them). The stream hash (FNV-1a 64) keeps keys fixed in
//! size; a hit is checked against the log by the caller, so a hash
//! collision can never answer for another stream.

use std::collections::HashMap;
use std::path::Path;

use tracing::warn;

use super::idruns::{ID_KEY_BYTES, Run, encode_runs, for_each_in_runs};
use super::tail::{Chunk, TailRecord};
use crate::decide::IdEntry;
use crate::error::StoreError;
use crate::types::{EventId, StreamId};

const TREE: &str = "strata-index";
const FORMAT_KEY: &[u8] = b"mformat";
const FORMAT: &[u8] = b"strata-index/3";
const CHECKPOINT_KEY: &[u8] = b"mcheckpoint";
/// Chunks per stream entry, ids per id entry: values stay small for sled.
const MAX_CHUNKS_PER_ENTRY: usize = 1024;
const MAX_IDS_PER_ENTRY: usize = 2048;
const CHUNK_BYTES: usize = 32;

/// Where the index has got to: the next position and record address to index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Checkpoint {
    pub(crate) next_position: u64,
    pub(crate) next_address: u64,
}

/// FNV-1a, 64 bits: stable across builds, unlike std's hasher.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn bucket(id: &EventId) -> (u8, u64) {
    let b = id.as_bytes();
    if b[6] >> 4 == 7 {
        let millis = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
        (b'T', millis >> 10)
    } else {
        (b'H', fnv64(b) >> 60)
    }
}

pub(crate) fn id_prefix(stream: &StreamId, id: &EventId) -> Vec<u8> {
    let (tag, bucket) = bucket(id);
    let mut k = Vec::with_capacity(ID_KEY_BYTES);
    k.push(b'i');
    k.push(tag);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(&fnv64(stream.as_str().as_bytes()).to_be_bytes());
    k
}

fn stream_key(stream: &StreamId, version: u64) -> Vec<u8> {
    let s = stream.as_str().as_bytes();
    let mut k = Vec::with_capacity(s.len() + 10);
    k.push(b's');
    k.extend_from_slice(s);
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn sparse_key(position: u64) -> [u8; 9] {
    let mut k = [b'p'; 9];
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

pub(crate) fn seal(key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(key), &value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

pub(crate) fn unseal<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        location: format!("index entry {}", String::from_utf8_lossy(key)),
        detail: format!("{detail}; delete the index directory and reopen to rebuild it"),
    };
    if value.len() < 4 {
        return Err(corrupt("entry shorter than its checksum"));
    }
    let (body, crc) = value.split_at(value.len() - 4);
    if crc32c::crc32c_append(crc32c::crc32c(key), body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(body)
}

pub(crate) fn be(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn decode_chunks(key: &[u8], value: &[u8]) -> Result<Vec<Chunk>, StoreError> {
    let body = unseal(key, value)?;
    if body.len() % CHUNK_BYTES != 0 {
        return Err(StoreError::Corrupt {
            location: format!("index entry {}", String::from_utf8_lossy(key)),
            detail: format!("{} bytes is not a whole number of chunks", body.len()),
        });
    }
    Ok(body
        .chunks_exact(CHUNK_BYTES)
        .map(|c| Chunk {
            first_version: be(c, 0),
            count: le32(c, 8),
            first_position: be(c, 12),
            address: be(c, 20),
            len: le32(c, 28),
        })
        .collect())
}

fn encode_chunks(chunks: &[Chunk]) -> Vec<u8> {
    let mut v = Vec::with_capacity(chunks.len() * CHUNK_BYTES + 4);
    for c in chunks {
        v.extend_from_slice(&c.first_version.to_be_bytes());
        v.extend_from_slice(&c.count.to_le_bytes());
        v.extend_from_slice(&c.first_position.to_be_bytes());
        v.extend_from_slice(&c.address.to_be_bytes());
        v.extend_from_slice(&c.len.to_le_bytes());
    }
    v
}

/// The sled index.
pub(crate) struct Index {
    db: sled::Db,
    tree: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index in directory `path`.
    pub(crate) fn open(path: &Path) -> Result<Index, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(1000))
            .open()?;
        let tree = db.open_tree(TREE)?;
        match tree.get(FORMAT_KEY)? {
            Some(f) if f.as_ref() == FORMAT => {}
            // The index is derived from the log: one in another format
            // (an older strata's) is emptied, and the open rebuilds it.
            Some(f) => {
                warn!(
                    found = %String::from_utf8_lossy(&f),
                    expected = %String::from_utf8_lossy(FORMAT),
                    dir = %path.display(),
                    "the index is in another format; rebuilding it from the log"
                );
                tree.clear()?;
                tree.insert(FORMAT_KEY, FORMAT)?;
            }
            None => {
                tree.clear()?;
                tree.insert(FORMAT_KEY, FORMAT)?;
            }
        }
        Ok(Index { db, tree })
    }

    /// Forgets everything but the format marker (before a rebuild).
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear()?;
        self.tree.insert(FORMAT_KEY, FORMAT)?;
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes sled takes on disk.
    pub(crate) fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub(crate) fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(v) = self.tree.get(CHECKPOINT_KEY)? else {
            return Ok(None);
        };
        let body = unseal(CHECKPOINT_KEY, &v)?;
        if body.len() != 16 {
            return Err(StoreError::Corrupt {
                location: "index checkpoint".into(),
                detail: format!("{} bytes instead of 16", body.len()),
            });
        }
        Ok(Some(Checkpoint {
            next_position: be(body, 0),
            next_address: be(body, 8),
        }))
    }

    /// Every sparse point: (position, log address).
    pub(crate) fn sparse_points(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(b"p") {
            let (k, v) = kv?;
            let body = unseal(&k, &v)?;
            if k.len() != 9 || body.len() != 8 {
                return Err(StoreError::Corrupt {
                    location: format!("index sparse entry {k:?}"),
                    detail: "malformed".into(),
                });
            }
            out.push((be(&k, 1), be(body, 0)));
        }
        Ok(out)
    }

    /// Up to `limit` indexed stream ids that start with `prefix` and sort
    /// after `after`, in byte order: one range lookup per stream (a stream
    /// id holds no control character, so `id \x01` is past every key of
    /// `id` and before every longer id).
    pub(crate) fn stream_ids(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamId>, StoreError> {
        let key_of = |id: &[u8], end: &[u8]| [&b"s"[..], id, end].concat();
        let scope = key_of(prefix.as_bytes(), b"");
        let mut start = scope.clone();
        if let Some(a) = after {
            start = start.max(key_of(a.as_str().as_bytes(), b"\x01"));
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(kv) = self.tree.range(start.as_slice()..).next() else {
                break;
            };
            let (k, _) = kv?;
            if !k.starts_with(&scope) || k.len() < 10 {
                break;
            }
            let raw = &k[1..k.len() - 9];
            let id = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| StreamId::new(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    location: "the stream index".into(),
                    detail: "a stream key that is not a stream id".into(),
                })?;
            start = key_of(raw, b"\x01");
            out.push(id);
        }
        Ok(out)
    }

    /// The stream's newest indexed version.
    pub(crate) fn head(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        match self
            .tree
            .range(stream_key(stream, 0)..=stream_key(stream, u64::MAX))
            .next_back()
        {
            Some(kv) => {
                let (k, _) = kv?;
                Ok(Some(be(&k, k.len() - 8)))
            }
            None => Ok(None),
        }
    }

    /// Every indexed stream whose id starts with `prefix`, in key order.
    pub(crate) fn streams_with_prefix(&self, prefix: &str) -> Result<Vec<StreamId>, StoreError> {
        let mut key = vec![b's'];
        key.extend_from_slice(prefix.as_bytes());
        let mut out: Vec<StreamId> = Vec::new();
        for kv in self.tree.scan_prefix(&key) {
            let (k, _) = kv?;
            let name = std::str::from_utf8(&k[1..k.len().saturating_sub(9)])
                .ok()
                .and_then(|s| StreamId::new(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    location: format!("index key {k:?}"),
                    detail: "not a stream id; delete the index directory and reopen to rebuild it".into(),
                })?;
            if out.last() != Some(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The stream's newest indexed version at or below position `visible`.
    ///
    /// The index may hold records past a reader's `visible`: the reader
    /// took its visible head, then the head moved and the indexer indexed
    /// the records it uncovered. A chunk is one record's part, so it is
    /// wholly at or below `visible` or wholly above it.
    pub(crate) fn head_at(&self, stream: &StreamId, visible: u64) -> Result<Option<u64>, StoreError> {
        for kv in self
            .tree
            .range(stream_key(stream, 0)..=stream_key(stream, u64::MAX))
            .rev()
        {
            let (k, v) = kv?;
            let chunks = decode_chunks(&k, &v)?;
            if let Some(c) = chunks.iter().rev().find(|c| c.last_position() <= visible) {
                return Ok(Some(c.last_version()));
            }
        }
        Ok(None)
    }

    /// The stream's indexed chunks holding a version in `lo..=hi`, oldest first.
    pub(crate) fn chunks(&self, stream: &StreamId, lo: u64, hi: u64) -> Result<Vec<Chunk>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.range(stream_key(stream, lo)..=stream_key(stream, u64::MAX)) {
            let (k, v) = kv?;
            let chunks = decode_chunks(&k, &v)?;
            if chunks.first().is_none_or(|c| c.first_version > hi) {
                break;
            }
            out.extend(
                chunks
                    .into_iter()
                    .filter(|c| c.last_version() >= lo && c.first_version <= hi),
            );
        }
        Ok(out)
    }

    /// Every id under an id prefix ([`id_prefix`]): where it sits in a
    /// stream whose hash matches. The caller checks a hit against the log.
    pub(crate) fn ids_under(&self, prefix: &[u8]) -> Result<HashMap<EventId, IdEntry>, StoreError> {
        let mut out = HashMap::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            for_each_in_runs(&k, &v, |id, entry| {
                out.insert(id, entry);
            })?;
        }
        Ok(out)
    }

    /// Every stream entry and every id entry, decoded, for `verify`: per
    /// stream its chunks; per (stream hash, id) its entry.
    pub(crate) fn dump(&self) -> Result<IndexDump, StoreError> {
        let mut dump = IndexDump::default();
        for kv in self.tree.scan_prefix(b"s") {
            let (k, v) = kv?;
            let stream = std::str::from_utf8(&k[1..k.len().saturating_sub(9)])
                .ok()
                .and_then(|s| StreamId::new(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    location: format!("index key {k:?}"),
                    detail: "not a stream id".into(),
                })?;
            dump.chunks.entry(stream).or_default().extend(decode_chunks(&k, &v)?);
        }
        for kv in self.tree.scan_prefix(b"i") {
            let (k, v) = kv?;
            let hash = if k.len() == 26 { be(&k, 10) } else { 0 };
            for_each_in_runs(&k, &v, |id, entry| {
                dump.ids.insert((hash, id), entry);
            })?;
        }
        dump.checkpoint = self.checkpoint()?;
        Ok(dump)
    }

    /// Indexes `records` (consecutive, oldest first) and moves the
    /// checkpoint past them, in one atomic sled batch.
    pub(crate) fn apply(&self, records: &[TailRecord], checkpoint: Checkpoint) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut streams: HashMap<&StreamId, Vec<Chunk>> = HashMap::new();
        let mut order: Vec<&StreamId> = Vec::new();
        let mut ids: HashMap<Vec<u8>, Vec<Run>> = HashMap::new();
        for r in records {
            for (stream, chunk) in &r.parts {
                let chunks = streams.entry(stream).or_insert_with(|| {
                    order.push(stream);
                    Vec::new()
                });
                chunks.push(*chunk);
            }
            for (stream, id, entry) in r.id_entries() {
                let runs = ids.entry(id_prefix(stream, &id)).or_default();
                match runs.last_mut() {
                    Some(run)
                        if run.first_version + run.ids.len() as u64 == entry.version
                            && run.first_position + run.ids.len() as u64 == entry.position =>
                    {
                        run.ids.push(id)
                    }
                    _ => runs.push(Run {
                        first_version: entry.version,
                        first_position: entry.position,
                        ids: vec![id],
                    }),
                }
            }
            if r.sparse {
                let k = sparse_key(r.first_position);
                batch.insert(&k[..], seal(&k, r.address.to_be_bytes().to_vec()));
            }
        }
        for stream in order {
            for group in streams[stream].chunks(MAX_CHUNKS_PER_ENTRY) {
                let last = group.last().expect("non-empty group").last_version();
                let k = stream_key(stream, last);
                batch.insert(k.clone(), seal(&k, encode_chunks(group)));
            }
        }
        for (prefix, runs) in ids {
            let mut entry: Vec<Run> = Vec::new();
            let mut n = 0;
            let mut flush = |entry: &mut Vec<Run>| {
                if let Some(first) = entry.first() {
                    let mut k = prefix.clone();
                    k.extend_from_slice(&first.first_position.to_be_bytes());
                    let body = encode_runs(first.first_position, entry).expect("runs ascending (checked when added)");
                    batch.insert(k.clone(), seal(&k, body));
                }
                entry.clear();
            };
            for run in runs {
                // Runs of one stream come in log order, so they ascend; an
                // entry is cut short before one that would not.
                let ascending = entry.last().is_none_or(|last: &Run| {
                    run.first_version >= last.first_version + last.ids.len() as u64
                        && run.first_position >= last.first_position + last.ids.len() as u64
                });
                if (n + run.ids.len() > MAX_IDS_PER_ENTRY || !ascending) && !entry.is_empty() {
                    flush(&mut entry);
                    n = 0;
                }
                n += run.ids.len();
                entry.push(run);
            }
            flush(&mut entry);
        }
        let mut cp = checkpoint.next_position.to_be_bytes().to_vec();
        cp.extend_from_slice(&checkpoint.next_address.to_be_bytes());
        batch.insert(CHECKPOINT_KEY, seal(CHECKPOINT_KEY, cp));
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

/// The index's contents, decoded (for `verify`).
#[derive(Default)]
pub(crate) struct IndexDump {
    pub(crate) chunks: HashMap<StreamId, Vec<Chunk>>,
    pub(crate) ids: HashMap<(u64, EventId), IdEntry>,
    pub(crate) checkpoint: Option<Checkpoint>,
}

/// The stream hash used in id keys.
pub(crate) fn stream_hash(stream: &StreamId) -> u64 {
    fnv64(stream.as_str().as_bytes())
}
