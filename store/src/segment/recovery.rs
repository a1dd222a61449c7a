//! Opening a segment log: find the segments, scan from the index's
//! checkpoint to the end, index what the index lacks, and tell a torn tail
//! (cut, logged) from damage (refused, named by segment file and offset).
//!
//! The rule: only the newest segment can have a torn tail, because a new
//! segment is created only after every write to the previous one is
//! synced. In the newest segment, a bad record (or zeros) at offset X
//! ends the log unless a valid record further on says, in its `synced_to`
//! field, that X was already synced when it was written: then X held an
//! acknowledged record and is damage. Whatever follows X otherwise was
//! never synced, so never acknowledged: it is zeroed (so it can never be
//! mistaken for a record later) and synced before the store takes appends.
//! After a clean close (the log ends in a seal record and zeros) the rest of
//! the segment is not read: nothing was written there.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::IndexProgress;
use super::format::{
    KIND_SEAL, RECORD_HEADER_BYTES, RecordHeader, SEGMENT_HEADER_BYTES, SegmentHeader, address, decode_events,
    parse_segment_name,
};
use super::index::{Checkpoint, Index};
use super::log::{Log, Segment, SegmentCursor, Stop, is_sparse_point, show_path};
use super::spare;
use super::tail::{Chunk, TailRecord};
use super::writer::Cursor;
use crate::error::StoreError;

const SCAN_CHUNK: usize = 1 << 20;

/// Opens the segments, brings the index up to the end of the log and
/// returns where the writer goes on.
pub(super) fn recover(
    log: &Log,
    index: &Index,
    batch_events: usize,
    segment_bytes: u64,
    growth_bytes: u64,
    progress: &mut dyn FnMut(IndexProgress),
) -> Result<Cursor, StoreError> {
    let segments = open_segments(log, segment_bytes)?;
    if segments.is_empty() {
        if index.checkpoint()?.is_some() {
            warn!("the index describes a log that is not there; clearing it");
            index.clear()?;
        }
        let segment = log.create_segment(1, 1, segment_bytes, growth_bytes)?;
        log.push_segment(segment.clone());
        return Ok(Cursor {
            segment,
            offset: SEGMENT_HEADER_BYTES,
            previous: None,
            next_position: 1,
        });
    }
    for s in &segments {
        log.push_segment(s.clone());
    }
    for (p, a) in index.sparse_points()? {
        log.add_sparse(p, a);
    }
    let mut scan = Scan {
        log,
        index,
        segments: &segments,
        batch: Vec::new(),
        batch_events,
        max_batch: batch_events,
        indexed: 0,
        progress,
    };
    if let Some(cp) = index.checkpoint()? {
        if let Some((position, at)) = log.seek(cp.next_position - 1) {
            match scan.run(at, position, Some(cp)) {
                Ok(cursor) => return Ok(cursor),
                Err(Failed::Mismatch(why)) => {
                    warn!(reason = %why, "the index does not match the log; rebuilding it");
                }
                Err(Failed::Store(e)) => return Err(e),
            }
        } else {
            warn!("the index has a checkpoint but no position map; rebuilding it");
        }
        index.clear()?;
        log.clear_sparse();
        scan.batch.clear();
    } else {
        info!("indexing the whole log");
    }
    let first = &segments[0];
    match scan.run(address(first.seq, SEGMENT_HEADER_BYTES), first.first_position, None) {
        Ok(cursor) => Ok(cursor),
        Err(Failed::Mismatch(why)) => Err(StoreError::Corrupt {
            location: "index".into(),
            detail: why,
        }),
        Err(Failed::Store(e)) => Err(e),
    }
}

/// Lists and opens the segment files, checking their headers. A newest
/// segment whose header never became durable (a crash while creating it)
/// and that holds no record is removed.
fn open_segments(log: &Log, segment_bytes: u64) -> Result<Vec<Arc<Segment>>, StoreError> {
    let storage = &log.storage;
    let mut seqs = Vec::new();
    let names = storage
        .list(&log.dir)
        .map_err(|e| StoreError::io(format!("listing {}", show_path(&log.dir)), e))?;
    spare::remove_stale(&**storage, &log.dir, &names)?;
    for name in names {
        match parse_segment_name(&name) {
            Some(seq) => seqs.push(seq),
            None if spare::is_spare_name(&name) => {}
            None => warn!(file = %name, "ignoring a file that is not a segment in the log directory"),
        }
    }
    seqs.sort_unstable();
    let mut out: Vec<Arc<Segment>> = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = log.path_of(seq);
        if let Some(prev) = out.last()
            && prev.seq + 1 != seq
        {
            return Err(StoreError::Corrupt {
                location: format!("segment file {}", show_path(&log.path_of(prev.seq + 1))),
                detail: "missing: the segments before and after it exist".into(),
            });
        }
        let file = storage
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {}", show_path(&path)), e))?;
        let len = file
            .len()
            .map_err(|e| StoreError::io(format!("reading the length of {}", show_path(&path)), e))?;
        // The newest segment is written on, up to the segment size; the
        // others are as long as their files.
        let capacity = if i + 1 == seqs.len() {
            len.max(segment_bytes)
        } else {
            len
        };
        let mut head = vec![0u8; len.min(40) as usize];
        file.read_at(&mut head, 0)
            .map_err(|e| StoreError::io(format!("reading {}", show_path(&path)), e))?;
        let header = SegmentHeader::decode(&head).and_then(|h| {
            if h.seq == seq {
                Ok(h)
            } else {
                Err(format!("the header names segment {}", h.seq))
            }
        });
        match header {
            Ok(h) => out.push(Arc::new(
                Segment::new(seq, h.first_position, file, capacity, len).with_version(h.version),
            )),
            Err(detail) if i + 1 == seqs.len() => {
                let probe = Arc::new(Segment::new(seq, 0, file, capacity, len));
                if find_after(log, &probe, SEGMENT_HEADER_BYTES, u64::MAX)?.records > 0 {
                    return Err(StoreError::Corrupt {
                        location: format!("segment file {}", show_path(&path)),
                        detail: format!("{detail}, but it holds records: refusing to open"),
                    });
                }
                warn!(file = %show_path(&path), %detail, "removing a segment whose creation did not complete");
                storage
                    .remove(&path)
                    .and_then(|()| storage.sync_dir(&log.dir))
                    .map_err(|e| StoreError::io(format!("removing {}", show_path(&path)), e))?;
            }
            Err(detail) => {
                return Err(StoreError::Corrupt {
                    location: format!("segment file {}", show_path(&path)),
                    detail,
                });
            }
        }
    }
    Ok(out)
}

/// What lies after an offset in a segment.
struct After {
    /// Valid records found.
    records: u64,
    /// The end of the last non-zero byte, if any.
    nonzero_end: Option<u64>,
    /// A valid record that says `from` was synced: its offset.
    attested_by: Option<u64>,
}

/// Looks at everything after `from` in a segment: valid records (at any
/// multiple of 8), whether one attests that `synced` was synced, and where
/// the last non-zero byte is.
fn find_after(log: &Log, segment: &Segment, from: u64, synced: u64) -> Result<After, StoreError> {
    let mut after = After {
        records: 0,
        nonzero_end: None,
        attested_by: None,
    };
    let io = |e| StoreError::io(format!("scanning {}", log.describe(address(segment.seq, from))), e);
    let mut at = from;
    let allocated = segment.allocated();
    while at < allocated {
        let n = (allocated - at).min((SCAN_CHUNK + RECORD_HEADER_BYTES) as u64) as usize;
        let mut buf = vec![0u8; n];
        segment.file.read_at(&mut buf, at).map_err(io)?;
        let step = n.min(SCAN_CHUNK);
        if let Some(last) = buf[..step].iter().rposition(|b| *b != 0) {
            after.nonzero_end = Some(at + last as u64 + 1);
            let mut o = 0;
            while o + RECORD_HEADER_BYTES <= n && o < step {
                if &buf[o..o + 4] == b"SREC"
                    && let Ok(h) = RecordHeader::decode(&buf[o..o + RECORD_HEADER_BYTES])
                {
                    let body_at = at + o as u64 + RECORD_HEADER_BYTES as u64;
                    if body_at + h.body_len as u64 <= allocated {
                        let mut body = vec![0u8; h.body_len as usize];
                        segment.file.read_at(&mut body, body_at).map_err(io)?;
                        if h.check_body(&body).is_ok() {
                            after.records += 1;
                            if h.synced_to > synced && after.attested_by.is_none() {
                                after.attested_by = Some(at + o as u64);
                            }
                        }
                    }
                }
                o += 8;
            }
        }
        at += step as u64;
    }
    Ok(after)
}

enum Failed {
    /// The index's checkpoint does not fit the log: rebuild it.
    Mismatch(String),
    Store(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Store(e)
    }
}

struct Scan<'a> {
    log: &'a Log,
    index: &'a Index,
    segments: &'a [Arc<Segment>],
    batch: Vec<TailRecord>,
    batch_events: usize,
    max_batch: usize,
    indexed: u64,
    progress: &'a mut dyn FnMut(IndexProgress),
}

impl Scan<'_> {
    fn flush(&mut self, segments_done: u64) -> Result<(), StoreError> {
        if let Some(last) = self.batch.last() {
            let cp = Checkpoint {
                next_position: last.last_position() + 1,
                next_address: last.address + last.len as u64,
            };
            self.index.apply(&self.batch, cp)?;
            self.indexed += self.batch.iter().map(|r| r.event_count as u64).sum::<u64>();
            self.batch.clear();
            self.batch_events = self.max_batch;
        }
        (self.progress)(IndexProgress {
            segments_done,
            segments: self.segments.len() as u64,
            events: self.indexed,
        });
        Ok(())
    }

    /// Scans from `start` (a record of position `expected`) to the end of
    /// the log, indexing records past the checkpoint `cp` (which the scan
    /// must pass exactly), or every record when there is none.
    fn run(&mut self, start: u64, mut expected: u64, cp: Option<Checkpoint>) -> Result<Cursor, Failed> {
        let (start_seq, start_offset) = super::format::split_address(start);
        let first = self
            .segments
            .iter()
            .position(|s| s.seq == start_seq)
            .ok_or_else(|| Failed::Mismatch(format!("the index points into segment {start_seq}, which is gone")))?;
        let index_from = cp.map_or(expected, |c| c.next_position);
        let mut passed = cp.is_none();
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            let offset = if i == first { start_offset } else { SEGMENT_HEADER_BYTES };
            if i != first && segment.first_position != expected {
                return Err(Failed::Store(StoreError::Corrupt {
                    location: format!("segment file {}", show_path(&self.log.path_of(segment.seq))),
                    detail: format!(
                        "it starts at position {}, but the segment before it ends before position {expected}",
                        segment.first_position
                    ),
                }));
            }
            let mut cursor = SegmentCursor::new(segment.clone(), offset);
            let mut previous = None;
            // Whether the last record read is a seal: the log was closed
            // cleanly there, and nothing after it was ever written.
            let mut sealed = false;
            loop {
                if !passed && expected >= index_from {
                    let cp = cp.expect("a checkpoint to pass");
                    if expected != cp.next_position || cursor.address() != cp.next_address {
                        return Err(Failed::Mismatch(format!(
                            "the checkpoint (position {}, address {:x}) is not a record boundary of the log",
                            cp.next_position, cp.next_address
                        )));
                    }
                    passed = true;
                }
                let at = cursor.offset;
                let stop = match cursor.next_record() {
                    Ok(record) if record.header.first_position != expected => Stop::Bad(format!(
                        "a record of position {}, expected {expected}",
                        record.header.first_position
                    )),
                    // A seal is no sparse point and does not count as the
                    // previous record: the first event record of a segment
                    // is always a sparse point.
                    Ok(record) if record.header.kind == KIND_SEAL => {
                        sealed = true;
                        continue;
                    }
                    Ok(record) => {
                        match decode_events(&record.header, &record.body, record.version).inspect(|_| sealed = false) {
                            Err(d) => Stop::Bad(d),
                            Ok((parts, events)) => {
                                let sparse = is_sparse_point(previous, at);
                                if sparse {
                                    self.log.add_sparse(record.header.first_position, record.address);
                                }
                                previous = Some(at);
                                expected = record.header.next_position();
                                if record.header.first_position >= index_from {
                                    let len = record.len() as u32;
                                    let mut position = record.header.first_position;
                                    let parts = parts
                                        .into_iter()
                                        .map(|p| {
                                            let chunk = Chunk {
                                                first_version: p.first_version,
                                                count: p.count,
                                                first_position: position,
                                                address: record.address,
                                                len,
                                            };
                                            position += p.count as u64;
                                            (p.stream, chunk)
                                        })
                                        .collect();
                                    self.batch.push(TailRecord {
                                        address: record.address,
                                        len,
                                        first_position: record.header.first_position,
                                        event_count: record.header.event_count,
                                        sparse,
                                        parts,
                                        ids: events.iter().map(|e| e.id).collect(),
                                    });
                                    self.batch_events = self.batch_events.saturating_sub(events.len());
                                    if self.batch_events == 0 {
                                        self.flush(i as u64)?;
                                    }
                                }
                                continue;
                            }
                        }
                    }
                    Err(stop) => stop,
                };
                let bad = match stop {
                    Stop::Io(e) => {
                        return Err(Failed::Store(StoreError::io(
                            format!("reading {}", self.log.describe(address(segment.seq, at))),
                            e,
                        )));
                    }
                    Stop::End => None,
                    Stop::Bad(d) => Some(d),
                };
                if i != last {
                    if let Some(d) = bad {
                        return Err(Failed::Store(damage(self.log, address(segment.seq, at), &d)));
                    }
                    segment.end.store(at, Ordering::Release);
                    break;
                }
                if !passed {
                    return Err(Failed::Mismatch(format!(
                        "the index reaches position {index_from}, the log ends before it"
                    )));
                }
                // After a clean close the rest of the segment was never
                // written: no torn tail to cut, and the seal vouches for
                // every record before it. Otherwise look at the rest.
                if !(sealed && bad.is_none()) {
                    cut_tail(self.log, segment, at, bad)?;
                }
                segment.end.store(at, Ordering::Release);
                self.flush(self.segments.len() as u64)?;
                return Ok(Cursor {
                    segment: segment.clone(),
                    offset: at,
                    previous,
                    next_position: expected,
                });
            }
        }
        unreachable!("the last segment returns")
    }
}

fn damage(log: &Log, at: u64, detail: &str) -> StoreError {
    StoreError::Corrupt {
        location: log.describe(at),
        detail: format!(
            "a damaged record inside the log, not at its tail ({detail}); refusing to open: \
             restore the segment file from a backup"
        ),
    }
}

/// The end of the newest segment at `at`: refuses when a later record
/// shows `at` was synced, otherwise cuts (zeros and syncs) whatever
/// unsynced bytes follow.
fn cut_tail(log: &Log, segment: &Segment, at: u64, bad: Option<String>) -> Result<(), StoreError> {
    let here = address(segment.seq, at);
    let after = find_after(log, segment, at, here)?;
    if let Some(by) = after.attested_by {
        let detail = format!(
            "{}; a record at byte offset {by} was written after this one was synced",
            bad.as_deref().unwrap_or("zeros where a record was")
        );
        return Err(damage(log, here, &detail));
    }
    let Some(end) = after.nonzero_end else {
        return Ok(());
    };
    warn!(
        segment = %show_path(&log.path_of(segment.seq)),
        offset = at,
        bytes = end - at,
        complete_records_after = after.records,
        reason = bad.as_deref().unwrap_or("bytes after the last record"),
        "cutting a torn tail: these writes were never synced, so never acknowledged"
    );
    let zeros = vec![0u8; SCAN_CHUNK];
    let mut o = at;
    let io = |e| StoreError::io(format!("cutting the tail of {}", log.describe(here)), e);
    while o < end {
        let n = (end - o).min(SCAN_CHUNK as u64) as usize;
        segment.file.write_at(&zeros[..n], o).map_err(io)?;
        o += n as u64;
    }
    segment.file.sync_data().map_err(io)
}
