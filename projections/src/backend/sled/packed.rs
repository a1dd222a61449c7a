//! Packed runs: how a generation being built stores a commit's changes as
//! blocks of sorted entries (a sled value per block, see [`super::block`]),
//! how live commits after the swap write over them (the overlay), and the
//! reads that merge the two.
//!
//! Run `r` is the `r`-th packed commit of the generation (from 0); its
//! blocks are keyed `r` + `r` (u32 BE) + the block's first key, so the
//! block that would hold a key is the last one keyed at or before it. A
//! later run overrides earlier ones; a delete in a later run is an entry
//! flagged deleted, hiding what earlier runs hold. Live commits (after the
//! swap) write `o` + key, a flag byte and the value (or only the flag: deleted),
//! which override every run. A read looks at the overlay, then the runs
//! from the newest.

use std::ops::Bound;

use super::block::{self, Block, BlockError};
use crate::backend::Changes;
use crate::codec::{Entry, corrupt, prefix_end};
use crate::error::ProjectionError;

/// The key of the number of packed runs (u64 BE), absent when there are none.
pub(super) const RUNS_KEY: &[u8] = b"P";
/// The prefix of the blocks of packed runs.
const RUN: u8 = b'r';
/// The prefix of live keys over packed runs.
const OVERLAY: u8 = b'o';
/// An overlay value's flag: a value follows.
const LIVE: u8 = 0;
/// An overlay value's flag: the key is deleted.
const HIDDEN: u8 = 1;

/// Entries per block, at most. A probe of sled measured ~0.5 µs a key at
/// 64 entries a value against ~9 µs for a key a value; a `get` decodes
/// one entry per step of its binary search.
const BLOCK_ENTRIES: usize = 64;
/// Bytes per block, at most (a single larger entry takes a block of its
/// own): sled writes a node holding values past 128 KiB as a blob file.
const BLOCK_BYTES: usize = 16 * 1024;
/// Blocks per `sled::Batch` of a run being written: sled keeps every node
/// version a batch replaces until the batch is done, so one batch of a
/// whole rebuild holds gigabytes and runs many times slower. Nobody reads
/// a generation being built (a rebuild that fails or dies is removed) and
/// a run counts only once its last step is written, so only that step,
/// which holds the checkpoint, needs to be atomic with anything.
const STEP_BLOCKS: usize = if cfg!(test) { 4 } else { 64 };

fn run_prefix(run: u32) -> [u8; 5] {
    let r = run.to_be_bytes();
    [RUN, r[0], r[1], r[2], r[3]]
}

/// The model key a block's sled key names (its first entry's), for errors.
fn first_key(block_key: &[u8]) -> &[u8] {
    block_key.get(5..).unwrap_or_default()
}

fn block_key(run: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + key.len());
    k.extend_from_slice(&run_prefix(run));
    k.extend_from_slice(key);
    k
}

pub(super) fn overlay_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(OVERLAY);
    k.extend_from_slice(key);
    k
}

/// The overlay value of a live put of `value`.
pub(super) fn overlay_value(value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + 1);
    v.push(LIVE);
    v.extend_from_slice(value);
    v
}

/// The overlay value of a live delete.
pub(super) const OVERLAY_DELETED: &[u8] = &[HIDDEN];

/// An overlay value: the value, or `None` when it records a delete.
fn decode_overlay<'v>(name: &str, key: &[u8], value: &'v [u8]) -> Result<Option<&'v [u8]>, ProjectionError> {
    match value.split_first() {
        Some((&LIVE, v)) => Ok(Some(v)),
        Some((&HIDDEN, [])) => Ok(None),
        _ => Err(corrupt(name, key, "a live value over packed runs without its flag")),
    }
}

/// Packed runs a generation may hold: a rebuild writes one per commit of
/// its budget, so a count past this is damage, not a large rebuild (and
/// reads, which look at every run, would crawl).
const MAX_RUNS: u32 = 1 << 16;

/// The number of runs as stored under [`RUNS_KEY`] in `tree`, checked
/// against the runs the tree holds: run `n - 1` has blocks and run `n`
/// none (a count that is off would hide runs or invent one).
pub(super) fn stored_runs(name: &str, tree: &sled::Tree, value: &[u8]) -> Result<u32, ProjectionError> {
    let n = crate::codec::decode_u64(name, RUNS_KEY, value)?;
    let runs = u32::try_from(n).ok().filter(|&n| n <= MAX_RUNS).ok_or_else(|| {
        corrupt(
            name,
            RUNS_KEY,
            format!("{n} packed runs, more than the {MAX_RUNS} allowed"),
        )
    })?;
    let has_blocks = |run: u32| -> Result<bool, ProjectionError> {
        Ok(tree
            .scan_prefix(run_prefix(run))
            .next()
            .transpose()
            .map_err(|e| ProjectionError::storage(name, e))?
            .is_some())
    };
    if (runs > 0 && !has_blocks(runs - 1)?) || has_blocks(runs)? {
        return Err(corrupt(
            name,
            RUNS_KEY,
            format!("{runs} packed runs recorded, but the blocks stored say otherwise"),
        ));
    }
    Ok(runs)
}

fn bad_block(name: &str, key: &[u8], run: u32, e: BlockError) -> ProjectionError {
    corrupt(name, key, format!("packed block of run {run}: {}", e.0))
}

/// The generation's tree and how many runs it has, for reads.
pub(super) struct Packed<'a> {
    pub(super) name: &'a str,
    pub(super) tree: &'a sled::Tree,
    pub(super) runs: u32,
}

impl Packed<'_> {
    fn storage(&self, e: sled::Error) -> ProjectionError {
        ProjectionError::storage(self.name, e)
    }

    /// The last block of `run` keyed at or before `key` (the one that
    /// would hold it), with its sled key, if any.
    fn block_at_or_before(&self, run: u32, key: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>, ProjectionError> {
        let prefix = run_prefix(run);
        self.tree
            .range::<&[u8], _>((Bound::Included(&prefix[..]), Bound::Included(&block_key(run, key)[..])))
            .next_back()
            .transpose()
            .map_err(|e| self.storage(e))
    }

    /// The block of `run` that would hold `key`, if any.
    fn block_for(&self, run: u32, key: &[u8]) -> Result<Option<Block<sled::IVec>>, ProjectionError> {
        self.block_at_or_before(run, key)?
            .map(|(_, v)| Block::parse(v).map_err(|e| bad_block(self.name, key, run, e)))
            .transpose()
    }

    /// What the runs hold for `key`, newest first: `Some(None)` when the
    /// newest run that has it records it deleted.
    pub(super) fn in_runs(&self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, ProjectionError> {
        for run in (0..self.runs).rev() {
            if let Some(block) = self.block_for(run, key)? {
                let found = block.find(key).map_err(|e| bad_block(self.name, key, run, e))?;
                if let Some(v) = found {
                    return Ok(Some(v.map(<[u8]>::to_vec)));
                }
            }
        }
        Ok(None)
    }

    /// The value under `key`: the overlay's, else the newest run's.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        let overlay = overlay_key(key);
        if let Some(v) = self.tree.get(&overlay).map_err(|e| self.storage(e))? {
            return Ok(decode_overlay(self.name, key, &v)?.map(<[u8]>::to_vec));
        }
        Ok(self.in_runs(key)?.flatten())
    }

    /// At most `limit` entries in `from..to`, merged from the overlay and
    /// the runs, each read one entry (a run: one block) ahead of the merge.
    pub(super) fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut sources = Vec::with_capacity(self.runs as usize + 1);
        let upper = Bound::Excluded(to.map_or_else(|| vec![OVERLAY + 1], overlay_key));
        sources.push(Source::Overlay(
            self.tree
                .range::<Vec<u8>, _>((Bound::Included(overlay_key(from)), upper)),
        ));
        for run in (0..self.runs).rev() {
            sources.push(Source::Run(RunCursor::new(self, run, from)?));
        }
        let mut heads = Vec::with_capacity(sources.len());
        for s in &mut sources {
            heads.push(s.next(self, to)?);
        }
        let mut out = Vec::new();
        while out.len() < limit {
            // The smallest key; among equal keys the newest source's entry.
            let Some(winner) = (0..heads.len())
                .filter(|&i| heads[i].is_some())
                .min_by(|&a, &b| heads[a].as_ref().map(|h| &h.0).cmp(&heads[b].as_ref().map(|h| &h.0)))
            else {
                break;
            };
            let Some((key, value)) = heads[winner].take() else {
                break;
            };
            let shadowed = |head: &Head| head.as_ref().is_some_and(|h| h.0 == key);
            let advance: Vec<usize> = (0..heads.len())
                .filter(|&i| i == winner || shadowed(&heads[i]))
                .collect();
            if let Some(value) = value {
                out.push((key, value));
                if out.len() == limit {
                    // Nothing more is needed: no source reads ahead.
                    break;
                }
            }
            for i in advance {
                heads[i] = sources[i].next(self, to)?;
            }
        }
        Ok(out)
    }
}

/// An entry as a source yields it: `None` for a delete.
type Head = Option<(Vec<u8>, Option<Vec<u8>>)>;

enum Source {
    Overlay(sled::Iter),
    Run(RunCursor),
}

impl Source {
    fn next(&mut self, p: &Packed<'_>, to: Option<&[u8]>) -> Result<Head, ProjectionError> {
        match self {
            Source::Overlay(iter) => match iter.next() {
                None => Ok(None),
                Some(Err(e)) => Err(p.storage(e)),
                Some(Ok((k, v))) => {
                    let value = decode_overlay(p.name, &k[1..], &v)?.map(<[u8]>::to_vec);
                    Ok(Some((k[1..].to_vec(), value)))
                }
            },
            Source::Run(cursor) => cursor.next(p, to),
        }
    }
}

/// The entries of one run from a key on, a block at a time.
struct RunCursor {
    run: u32,
    blocks: sled::Iter,
    block: Option<(Block<sled::IVec>, usize, Vec<u8>)>,
    /// The first key wanted, until the first block is positioned.
    from: Option<Vec<u8>>,
    /// Past `to` or the run's last block: nothing more is read.
    done: bool,
}

impl RunCursor {
    fn new(p: &Packed<'_>, run: u32, from: &[u8]) -> Result<RunCursor, ProjectionError> {
        let prefix = run_prefix(run);
        // The block holding `from` starts at or before it.
        let start = p
            .block_at_or_before(run, from)?
            .map_or_else(|| prefix.to_vec(), |(k, _)| k.to_vec());
        let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Ok(RunCursor {
            run,
            blocks: p.tree.range::<Vec<u8>, _>((Bound::Included(start), end)),
            block: None,
            from: Some(from.to_vec()),
            done: false,
        })
    }

    fn next(&mut self, p: &Packed<'_>, to: Option<&[u8]>) -> Result<Head, ProjectionError> {
        loop {
            if let Some((block, i, block_key)) = &mut self.block
                && *i < block.len()
            {
                let (k, v) = block
                    .entry(*i)
                    .map_err(|e| bad_block(p.name, first_key(block_key), self.run, e))?;
                if to.is_some_and(|to| k >= to) {
                    self.block = None;
                    self.done = true;
                    return Ok(None);
                }
                *i += 1;
                return Ok(Some((k.to_vec(), v.map(<[u8]>::to_vec))));
            }
            if self.done {
                return Ok(None);
            }
            match self.blocks.next() {
                None => {
                    self.block = None;
                    self.done = true;
                    return Ok(None);
                }
                Some(Err(e)) => return Err(p.storage(e)),
                Some(Ok((k, v))) => {
                    let block = Block::parse(v).map_err(|e| bad_block(p.name, first_key(&k), self.run, e))?;
                    let first = match self.from.take() {
                        Some(from) => block
                            .lower_bound(&from)
                            .map_err(|e| bad_block(p.name, first_key(&k), self.run, e))?,
                        None => 0,
                    };
                    self.block = Some((block, first, k.to_vec()));
                }
            }
        }
    }
}

/// The live keys a run being written takes in: what the generation's
/// small commits wrote one key at a time (`m` keys before the first run,
/// `o` keys after), as entries (`None`: an `o` deleted mark), with their
/// sled keys, to be removed in the run's last step.
pub(super) fn live_entries(name: &str, tree: &sled::Tree, runs: u32, data: u8) -> Result<Live, ProjectionError> {
    let prefix = if runs == 0 { data } else { OVERLAY };
    let (mut entries, mut keys) = (Vec::new(), Vec::new());
    for kv in tree.scan_prefix([prefix]) {
        let (k, v) = kv.map_err(|e| ProjectionError::storage(name, e))?;
        let value = if runs == 0 {
            Some(v.to_vec())
        } else {
            decode_overlay(name, &k[1..], &v)?.map(<[u8]>::to_vec)
        };
        entries.push((k[1..].to_vec(), value));
        keys.push(k);
    }
    Ok(Live { entries, keys })
}

/// The live keys of a generation being built, for its next run.
pub(super) struct Live {
    /// The entries, in key order (`None`: deleted).
    entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Their sled keys.
    keys: Vec<sled::IVec>,
}

/// Writes `changes` over `live` (see [`live_entries`]) as run `run` of
/// `tree`: blocks in `sled::Batch`es of [`STEP_BLOCKS`], the last of them
/// with `last` (the checkpoint's keys and values), the removal of
/// `live_keys` and the new number of runs. Deletes are dropped from the
/// first run (there is nothing under it to hide). Returns whether the run
/// has any block (if not, only `last` and the removals are written and the
/// run does not count).
pub(super) fn write_run(
    name: &str,
    tree: &sled::Tree,
    run: u32,
    changes: &Changes,
    live: &Live,
    last: &[(&[u8], &[u8])],
) -> Result<bool, ProjectionError> {
    let storage = |e| ProjectionError::storage(name, e);
    let mut w = RunWriter {
        tree,
        run,
        write: sled::Batch::default(),
        blocks: 0,
        staged: 0,
    };
    // Blocks of this run left by a commit that failed part way.
    for k in tree.scan_prefix(run_prefix(run)).keys() {
        w.write.remove(k.map_err(storage)?);
    }
    let mut entries: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(BLOCK_ENTRIES);
    let mut bytes = 0;
    let (mut new, mut old) = (changes.iter().peekable(), live.entries.iter().peekable());
    loop {
        // The smaller key of the two; the commit's own change on a tie.
        let next = match (new.peek(), old.peek()) {
            (Some(n), Some(o)) if *n.0 > o.0 => old.next().map(from_old),
            (Some(n), Some(o)) if *n.0 == o.0 => {
                old.next();
                new.next().map(from_new)
            }
            (Some(_), _) => new.next().map(from_new),
            (None, _) => old.next().map(from_old),
        };
        let Some((k, v)) = next else { break };
        if v.is_none() && run == 0 {
            continue;
        }
        if u32::try_from(k.len()).is_err() || v.is_some_and(|v| u32::try_from(v.len()).is_err()) {
            return Err(storage(sled::Error::Unsupported(format!(
                "a key or value of 4 GiB or more, at {}",
                String::from_utf8_lossy(&k[..k.len().min(64)])
            ))));
        }
        let size = block::encoded_len([(k, v)]);
        if entries.len() == BLOCK_ENTRIES || (!entries.is_empty() && bytes + size > BLOCK_BYTES) {
            w.block(&mut entries).map_err(storage)?;
            bytes = 0;
        }
        entries.push((k, v));
        bytes += size;
    }
    w.block(&mut entries).map_err(storage)?;
    let mut write = w.write;
    for k in &live.keys {
        write.remove(k.clone());
    }
    for (k, v) in last {
        write.insert(*k, *v);
    }
    if w.blocks > 0 {
        write.insert(RUNS_KEY, &u64::from(run + 1).to_be_bytes());
    }
    // The last step: the rest of the blocks with the checkpoint.
    tree.apply_batch(write).map_err(storage)?;
    Ok(w.blocks > 0)
}

fn from_new<'a>((k, v): (&'a Vec<u8>, &'a Option<Vec<u8>>)) -> (&'a [u8], Option<&'a [u8]>) {
    (k, v.as_deref())
}

fn from_old((k, v): &(Vec<u8>, Option<Vec<u8>>)) -> (&[u8], Option<&[u8]>) {
    (k, v.as_deref())
}

/// The `sled::Batch`es of a run being written.
struct RunWriter<'a> {
    tree: &'a sled::Tree,
    run: u32,
    write: sled::Batch,
    blocks: usize,
    staged: usize,
}

impl RunWriter<'_> {
    /// Stages `entries` (if any) as a block, applying a step when it is full.
    fn block(&mut self, entries: &mut Vec<(&[u8], Option<&[u8]>)>) -> Result<(), sled::Error> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.write.insert(block_key(self.run, first.0), block::encode(entries));
        entries.clear();
        self.blocks += 1;
        self.staged += 1;
        if self.staged == STEP_BLOCKS {
            self.tree.apply_batch(std::mem::take(&mut self.write))?;
            self.staged = 0;
        }
        Ok(())
    }
}
