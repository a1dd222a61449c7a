//! The single writer of a `SegmentStore`: pipelined group commit.
//!
//! - The **writer** thread takes every append waiting (up to a bound),
//!   judges each with the shared rules (`decide.rs`) against the stream
//!   heads, the in-memory tail and the sled index, encodes each accepted
//!   append as one record, writes the group with one `write_at`, hands it
//!   to the syncer and goes on with the next group.
//! - The **syncer** thread takes every group handed over, `fdatasync`s the
//!   segment once for all of them, then moves the visible head and answers
//!   their callers, in commit order. Nothing is visible or acknowledged
//!   before it is synced.
//!
//! - When the writer is idle (nothing queued, the syncer idle, the durable
//!   mode, tokio's multi-thread runtime), the **caller** takes the
//!   writer's lock and does all of it itself: one append is then the disk's
//!   write and `fdatasync` with no thread hop ([`WriterCell::try_inline`]).
//!
//! A failed write or sync marks the store failed: every later append is
//! refused with `StoreError::Unavailable`, nothing more is acknowledged,
//! and reopening recovers what is on disk.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::warn;

use super::format::{
    KIND_EVENTS, KIND_SEAL, MAX_BODY_BYTES, PartIn, RecordHeader, SEGMENT_HEADER_BYTES, address, encode_body,
    record_len,
};
use super::grow::Grower;
use super::log::{Segment, is_sparse_point};
use super::spare::Spare;
use super::syncer::{commit, fail_outcomes};
use super::tail::{Chunk, Tail, TailRecord};
use super::{Shared, index};
use crate::decide::{IdEntry, Plan, StreamView, all_done, plan_multi, plan_op};
use crate::error::StoreError;
use crate::retention::{StreamOperation, StreamState};
use crate::types::{AppendResult, Direction, EventId, StreamAppend, StreamId, now_micros};

mod cell;

pub(super) use self::cell::{WriterCell, WriterConfig, run_writer};

/// Stop adding appends to a group once it holds this many bytes.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// The writer remembers this many stream heads, then forgets them all.
const MAX_CACHED_HEADS: usize = 262_144;
/// The writer keeps the id lookups it made in the index (each valid while
/// the index stays at the tail epoch it was made at) until they hold this
/// many prefixes and ids together, then forgets them all.
const MAX_CACHED_IDS: usize = 1 << 20;
/// How long a waiting thread sleeps at most before it looks again (a
/// safety net: every change of state also wakes it).
pub(super) const WAKE: Duration = Duration::from_millis(100);

pub(super) type Reply = oneshot::Sender<Result<Vec<AppendResult>, StoreError>>;
pub(super) type Outcome = (Reply, Result<Vec<AppendResult>, StoreError>);

/// One append waiting for the writer.
pub(super) struct Request {
    pub(super) appends: Vec<StreamAppend>,
    /// A stream operation instead of `appends`: answered with the result
    /// of the metadata event that records it.
    pub(super) op: Option<StreamOperation>,
    /// Close the current segment and start the next (a scavenge asks, so
    /// that everything written so far is in segments no longer written).
    pub(super) roll: bool,
    pub(super) reply: Reply,
}

/// A group written, waiting for the syncer.
pub(super) struct Written {
    pub(super) segment: Option<Arc<Segment>>,
    /// The log address after its last record.
    pub(super) end: u64,
    pub(super) last_position: Option<u64>,
    pub(super) events: u64,
    pub(super) outcomes: Vec<Outcome>,
}

/// Where the writer is.
pub(super) struct Cursor {
    pub(super) segment: Arc<Segment>,
    pub(super) offset: u64,
    pub(super) previous: Option<u64>,
    pub(super) next_position: u64,
}

struct Writer {
    shared: Arc<Shared>,
    cursor: Cursor,
    heads: HashMap<StreamId, u64>,
    ids: HashMap<Vec<u8>, (u64, HashMap<EventId, IdEntry>)>,
    to_syncer: Option<std_mpsc::Sender<Written>>,
    sent: u64,
    segment_bytes: u64,
    fsync: bool,
    group_start: u64,
    buf: Vec<u8>,
    outcomes: Vec<Outcome>,
    first_position: u64,
    /// The next segment, prepared in the background (see `spare.rs`).
    spare: Option<Spare>,
    prepare_spare: bool,
    /// The current segment, grown ahead of the writer (see `grow.rs`).
    grower: Grower,
    growth_bytes: u64,
}

/// What the rules see: the writer's heads, the tail (every record written,
/// synced or not), then the sled index.
struct View<'a> {
    shared: &'a Shared,
    heads: &'a mut HashMap<StreamId, u64>,
    /// Id lookups in the index, by id prefix, with the tail epoch they were
    /// made at: the ids of one append mostly share a prefix, so one sled
    /// scan answers for all of them.
    ids: &'a mut HashMap<Vec<u8>, (u64, HashMap<EventId, IdEntry>)>,
}

impl StreamView for View<'_> {
    fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        if let Some(v) = self.heads.get(stream) {
            return Ok(*v);
        }
        let tail = self
            .shared
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version(stream);
        let v = match tail {
            Some(v) => v,
            None => self.shared.index.head(stream)?.unwrap_or(0),
        };
        self.heads.insert(stream.clone(), v);
        Ok(v)
    }

    fn state(&mut self, stream: &StreamId) -> Result<StreamState, StoreError> {
        Ok(self.shared.written_state(stream))
    }

    fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
        let (found, epoch) = {
            let tail = self.shared.tail.lock().unwrap_or_else(|p| p.into_inner());
            (tail.find_id(stream, id), tail.epoch())
        };
        if found.is_some() {
            return Ok(found);
        }
        // Not in the tail at `epoch`: then it is in the index as it was at
        // `epoch` or later, or nowhere. A lookup made at the same epoch saw
        // that index; one made at an older epoch may not have.
        let prefix = index::id_prefix(stream, id);
        let entry = match self.ids.get(&prefix) {
            Some((at, ids)) if *at == epoch => ids.get(id).copied(),
            _ => {
                let ids = self.shared.index.ids_under(&prefix)?;
                let entry = ids.get(id).copied();
                self.ids.insert(prefix, (epoch, ids));
                entry
            }
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        // The key holds a hash of the stream: check the hit against the log.
        let events = self
            .shared
            .read_stream_range(stream, entry.version, Direction::Forward, 1, u64::MAX)?;
        Ok(events
            .first()
            .filter(|e| e.id == *id && e.version == entry.version && e.position == entry.position)
            .map(|_| entry))
    }
}

pub(super) fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable {
        reason: reason.to_string(),
    }
}

impl Writer {
    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.shared.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the group collected so far and hands it to the syncer; or,
    /// when nothing else waits (`inline`, the durable mode, the syncer
    /// idle), syncs and answers it on this thread: the pipeline gains
    /// nothing then, and a thread hop is saved.
    /// Returns whether it synced and answered the group here.
    fn finish(&mut self, inline: bool) -> bool {
        if inline && self.fsync && self.shared.handled.load(Ordering::Acquire) >= self.sent {
            let written = self.write_group();
            commit(&self.shared, vec![written], true);
            true
        } else {
            self.flush();
            false
        }
    }

    /// Writes the group collected so far and hands it to the syncer.
    fn flush(&mut self) {
        let written = self.write_group();
        if !written.outcomes.is_empty() || written.segment.is_some() {
            self.sent += 1;
            if self.to_syncer.as_ref().is_none_or(|tx| tx.send(written).is_err()) {
                warn!("the syncer stopped before the writer");
            }
        }
    }

    /// Writes the group collected so far with one `write_at`.
    fn write_group(&mut self) -> Written {
        let outcomes = std::mem::take(&mut self.outcomes);
        let mut written = Written {
            segment: None,
            end: address(self.cursor.segment.seq, self.cursor.offset),
            last_position: None,
            events: 0,
            outcomes,
        };
        if let Some(reason) = self.shared.failure() {
            // Nothing more is written once the store failed: what is in
            // `buf` may be a half-done group (a panic left it) or follow a
            // write that did not land.
            self.buf.clear();
            fail_outcomes(&mut written.outcomes, &reason);
        }
        if !self.buf.is_empty() {
            let result = self
                .cursor
                .segment
                .file
                .write_at(&self.buf, self.group_start)
                .map_err(|e| StoreError::io(format!("writing {}", self.shared.log.describe(written.end)), e));
            match result {
                Ok(()) => {
                    self.cursor.segment.end.store(self.cursor.offset, Ordering::Release);
                    written.segment = Some(self.cursor.segment.clone());
                    written.last_position = Some(self.cursor.next_position - 1);
                    written.events = self.cursor.next_position - self.first_position;
                }
                Err(e) => {
                    let reason = self.shared.fail(&e);
                    fail_outcomes(&mut written.outcomes, &reason);
                }
            }
            self.buf.clear();
        }
        self.group_start = self.cursor.offset;
        self.first_position = self.cursor.next_position;
        written
    }

    /// Waits until the syncer has handled every group sent.
    fn drain(&self) -> Result<(), StoreError> {
        self.shared.wait(|| {
            if let Some(reason) = self.shared.failure() {
                return Some(Err(unavailable(&reason)));
            }
            (self.shared.handled.load(Ordering::Acquire) >= self.sent).then_some(Ok(()))
        })
    }

    /// Closes the current segment and starts the next, big enough for a record of `len` bytes.
    fn roll(&mut self, len: u64) -> Result<(), StoreError> {
        self.flush();
        self.drain()?;
        self.grower.finish();
        let old = self.cursor.segment.clone();
        old.file
            .sync_data()
            .map_err(|e| StoreError::io(format!("syncing {}", self.shared.log.describe(address(old.seq, 0))), e))?;
        let capacity = self.segment_bytes.max(SEGMENT_HEADER_BYTES + len);
        let seq = old.seq + 1;
        let installed = match self.spare.take() {
            Some(spare) => spare.install(&self.shared.log, seq, self.cursor.next_position, capacity, len)?,
            None => None,
        };
        let segment = match installed {
            Some(segment) => segment,
            None => self.shared.log.create_segment(
                seq,
                self.cursor.next_position,
                capacity,
                self.growth_bytes.max(SEGMENT_HEADER_BYTES + len),
            )?,
        };
        self.shared
            .durable
            .store(address(segment.seq, SEGMENT_HEADER_BYTES), Ordering::Release);
        self.shared.log.push_segment(segment.clone());
        self.cursor = Cursor {
            segment,
            offset: SEGMENT_HEADER_BYTES,
            previous: None,
            next_position: self.cursor.next_position,
        };
        self.group_start = self.cursor.offset;
        self.first_position = self.cursor.next_position;
        Ok(())
    }

    /// Closes the current segment (unless nothing is in it yet) and starts the next.
    fn roll_now(&mut self) -> Result<(), StoreError> {
        if self.cursor.offset == SEGMENT_HEADER_BYTES && self.buf.is_empty() {
            return Ok(());
        }
        self.roll(0).map_err(|e| unavailable(&self.shared.fail(&e)))
    }

    /// Judges one append and, when accepted, encodes it into the group.
    fn add(&mut self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let plans = {
            let mut view = View {
                shared: &self.shared,
                heads: &mut self.heads,
                ids: &mut self.ids,
            };
            plan_multi(&mut view, &appends)?
        };
        if let Some(results) = all_done(&plans) {
            return Ok(results);
        }
        self.write_planned(&appends, &plans)
    }

    /// Judges a stream operation and, when accepted, encodes the metadata
    /// event that records it into the group and records the new state.
    fn add_op(&mut self, op: StreamOperation) -> Result<Vec<AppendResult>, StoreError> {
        let write = {
            let mut view = View {
                shared: &self.shared,
                heads: &mut self.heads,
                ids: &mut self.ids,
            };
            plan_op(&mut view, &op)?
        };
        let plan = Plan::Write {
            current: write.meta_version,
        };
        let results = self.write_planned(&[write.append()], &[plan])?;
        if let Some(r) = results.first() {
            self.shared.record_state(op.stream(), r.first_position, write.state);
        }
        Ok(results)
    }

    /// Encodes appends already judged (every plan a write) as one record of the group.
    fn write_planned(&mut self, appends: &[StreamAppend], plans: &[Plan]) -> Result<Vec<AppendResult>, StoreError> {
        let mut parts = Vec::with_capacity(appends.len());
        for (append, plan) in appends.iter().zip(plans) {
            let Plan::Write { current } = plan else {
                unreachable!("plan_multi refuses mixed plans")
            };
            parts.push(PartIn {
                stream: &append.stream,
                first_version: current + 1,
                events: &append.events,
            });
        }
        let mut body = Vec::new();
        encode_body(&mut body, now_micros(), &parts, self.cursor.segment.version);
        if body.len() > MAX_BODY_BYTES {
            return Err(StoreError::AppendTooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let len = record_len(body.len());
        if self.cursor.offset + len > self.cursor.segment.capacity
            && let Err(e) = self.roll(len)
        {
            return Err(unavailable(&self.shared.fail(&e)));
        }
        if let Err(e) = self.grower.ensure(&self.cursor.segment, self.cursor.offset + len) {
            let e = StoreError::io(
                format!(
                    "growing {}",
                    self.shared.log.describe(address(self.cursor.segment.seq, 0))
                ),
                e,
            );
            return Err(unavailable(&self.shared.fail(&e)));
        }
        let event_count: usize = appends.iter().map(|a| a.events.len()).sum();
        let header = RecordHeader {
            body_len: body.len() as u32,
            first_position: self.cursor.next_position,
            synced_to: self.shared.durable.load(Ordering::Acquire),
            event_count: event_count as u32,
            body_crc: crc32c::crc32c(&body),
            kind: KIND_EVENTS,
        };
        let at = self.cursor.offset;
        let record_address = address(self.cursor.segment.seq, at);
        self.buf.extend_from_slice(&header.encode());
        self.buf.extend_from_slice(&body);
        self.buf.resize(self.buf.len() + (len as usize - 40 - body.len()), 0);
        let sparse = is_sparse_point(self.cursor.previous, at);
        if sparse {
            self.shared.log.add_sparse(header.first_position, record_address);
        }
        let mut position = header.first_position;
        let mut record = TailRecord {
            address: record_address,
            len: len as u32,
            first_position: position,
            event_count: event_count as u32,
            sparse,
            parts: Vec::with_capacity(appends.len()),
            ids: Vec::with_capacity(event_count),
        };
        let mut results = Vec::with_capacity(appends.len());
        for part in &parts {
            let count = part.events.len() as u32;
            let chunk = Chunk {
                first_version: part.first_version,
                count,
                first_position: position,
                address: record_address,
                len: len as u32,
            };
            record.parts.push((part.stream.clone(), chunk));
            record.ids.extend(part.events.iter().map(|e| e.id));
            results.push(AppendResult {
                stream_version: chunk.last_version(),
                first_position: position,
                last_position: chunk.last_position(),
            });
            self.heads.insert(part.stream.clone(), chunk.last_version());
            position += count as u64;
        }
        self.tail().push(record);
        self.cursor.previous = Some(at);
        self.cursor.offset += len;
        self.cursor.next_position = position;
        self.grower.ahead(&self.cursor.segment, self.cursor.offset);
        self.maybe_prepare_spare();
        Ok(results)
    }

    /// Once the current segment is half full, starts preparing the next.
    fn maybe_prepare_spare(&mut self) {
        let segment = &self.cursor.segment;
        if self.prepare_spare && self.spare.is_none() && self.cursor.offset > segment.capacity / 2 {
            self.spare = Some(Spare::start(
                &self.shared.log,
                segment.seq + 1,
                self.segment_bytes,
                self.growth_bytes,
            ));
        }
    }

    /// Drops a spare that was prepared and not used (at close).
    fn discard_spare(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.discard(&self.shared.log);
        }
    }

    /// Waits while the index is too far behind (bounded memory).
    fn wait_for_index(&self, max_lag: usize) -> Result<(), StoreError> {
        if self.tail().events() <= max_lag {
            return Ok(());
        }
        self.shared.lagging.store(true, Ordering::Release);
        self.shared.wake_indexer();
        let r = self.shared.wait(|| {
            if let Some(reason) = self.shared.failure() {
                return Some(Err(unavailable(&reason)));
            }
            (self.tail().events() <= max_lag / 2).then_some(Ok(()))
        });
        self.shared.lagging.store(false, Ordering::Release);
        r
    }

    /// Writes a seal record: everything before it is synced (a clean close).
    fn seal(&mut self) -> Result<(), StoreError> {
        let len = record_len(0);
        if self.cursor.offset + len > self.cursor.segment.allocated() {
            return self
                .cursor
                .segment
                .file
                .sync_data()
                .map_err(|e| StoreError::io("syncing the log at close", e));
        }
        let header = RecordHeader {
            body_len: 0,
            first_position: self.cursor.next_position,
            synced_to: address(self.cursor.segment.seq, self.cursor.offset),
            event_count: 0,
            body_crc: crc32c::crc32c(&[]),
            kind: KIND_SEAL,
        };
        let file = &self.cursor.segment.file;
        file.write_at(&header.encode(), self.cursor.offset)
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io("writing the seal record at close", e))
    }
}
