//! Reads of a `SegmentStore`: from the segments, found through the sparse
//! position map (`read_all`) or the stream index (`read_stream`); only
//! positions at or below the visible head are served.

use std::collections::{BTreeMap, BTreeSet};

use super::Shared;
use super::format::{KIND_SEAL, SEGMENT_HEADER_BYTES, decode_events, split_address};
use super::log::{RawRecord, SPARSE_BLOCK, SegmentCursor, Stop};
use super::retention::Removal;
use super::tail::Chunk;
use crate::error::StoreError;
use crate::retention::is_metadata_stream;
use crate::types::{Direction, RecordedEvent, StreamId, StreamSummary};

impl Shared {
    fn corrupt(&self, record: &RawRecord, detail: String) -> StoreError {
        StoreError::Corrupt {
            location: format!(
                "{} (record of positions {}..{})",
                self.log.describe(record.address),
                record.header.first_position,
                record.header.next_position()
            ),
            detail,
        }
    }

    /// The events of a record, checked.
    fn events_of(&self, record: &RawRecord) -> Result<Vec<RecordedEvent>, StoreError> {
        decode_events(&record.header, &record.body, record.version)
            .map(|(_, events)| events)
            .map_err(|d| self.corrupt(record, d))
    }

    /// The stream's newest version at or below position `visible`.
    pub(super) fn visible_version(&self, stream: &StreamId, visible: u64) -> Result<u64, StoreError> {
        // The tail first: a record leaves it only once the index holds it.
        if let Some(v) = self.tail().visible_version(stream, visible) {
            return Ok(v);
        }
        // Not `index.head`: the indexer may have indexed records past
        // `visible` since the caller took it.
        Ok(self.index.head_at(stream, visible)?.unwrap_or(0))
    }

    /// Up to `limit` streams that start with `prefix`, after `after`, with
    /// their visible versions: those that read as present (no `$$`
    /// metadata stream, no deleted stream; see `docs/retention.md`). The
    /// tail is read before the index: a record that leaves the tail
    /// meanwhile is in the index by then.
    pub(super) fn list_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        let visible = self.visible();
        let mut out = Vec::new();
        let mut cursor = after.cloned();
        // Pages of ids until `limit` streams are listed: the streams left
        // out do not count against it.
        while out.len() < limit {
            let want = limit - out.len();
            let mut ids: BTreeSet<StreamId> = self.tail().stream_ids(prefix, cursor.as_ref()).cloned().collect();
            ids.extend(self.index.stream_ids(prefix, cursor.as_ref(), want)?);
            if ids.is_empty() {
                break;
            }
            // The first `want` of the union are the next ids in order (the
            // index gave at least that many, or all it has).
            for stream_id in ids.into_iter().take(want) {
                cursor = Some(stream_id.clone());
                if is_metadata_stream(&stream_id) {
                    continue;
                }
                let version = self.visible_version(&stream_id, visible)?;
                let absent = self.state_at(&stream_id, visible).is_some_and(|s| s.is_absent(version));
                if version > 0 && !absent {
                    out.push(StreamSummary { stream_id, version });
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` events of the log from `from` on.
    pub(super) fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let visible = self.visible();
        let from = from.max(1);
        if limit == 0 || from > visible {
            return Ok(Vec::new());
        }
        let missing = |position: u64| StoreError::Corrupt {
            location: format!("log at position {position}"),
            detail: "no record holds this position".into(),
        };
        let (sparse_position, start) = self.log.seek(from).ok_or_else(|| missing(from))?;
        let (seq, offset) = split_address(start);
        let mut segment = self.log.segment(seq).ok_or_else(|| missing(from))?;
        // Small pages (a subscription's) read little more than they need:
        // up to a block before `from`, and about 512 bytes per event.
        let chunk = limit.saturating_mul(512).saturating_add(SPARSE_BLOCK as usize);
        let mut cursor = SegmentCursor::new(segment.clone(), offset).with_chunk(chunk);
        let mut out = Vec::with_capacity(limit.min((visible - from + 1) as usize).min(65_536));
        let mut removal = Removal::new(self, visible);
        // The position of the next record; a record past `visible` may be
        // half written: it is never read.
        let mut expected = sparse_position;
        while expected <= visible {
            let record = match cursor.next_record() {
                Ok(r) => r,
                Err(Stop::End) => {
                    segment = self.log.next_segment(segment.seq).ok_or_else(|| missing(expected))?;
                    if segment.first_position != expected {
                        return Err(missing(expected));
                    }
                    cursor = SegmentCursor::new(segment.clone(), SEGMENT_HEADER_BYTES).with_chunk(chunk);
                    continue;
                }
                Err(Stop::Bad(detail)) => {
                    return Err(StoreError::Corrupt {
                        location: format!("{} (position {expected})", self.log.describe(cursor.address())),
                        detail,
                    });
                }
                Err(Stop::Io(e)) => {
                    return Err(StoreError::io(
                        format!("reading {}", self.log.describe(cursor.address())),
                        e,
                    ));
                }
            };
            let header = record.header;
            if header.first_position != expected {
                return Err(self.corrupt(&record, format!("expected the record of position {expected}")));
            }
            expected = header.next_position();
            if header.kind == KIND_SEAL || expected <= from {
                continue;
            }
            for event in self.events_of(&record)? {
                if event.position >= from && event.position <= visible && !removal.removes(&event)? {
                    out.push(event);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` events of `stream` from version `from` in `direction`,
    /// none above position `visible`.
    pub(super) fn read_stream_range(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
        visible: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.visible_version(stream, visible)?;
        if limit == 0 || head == 0 {
            return Ok(Vec::new());
        }
        let span = (limit as u64).saturating_sub(1);
        let (lo, hi) = match direction {
            Direction::Forward => {
                let lo = from.max(1);
                if lo > head {
                    return Ok(Vec::new());
                }
                (lo, lo.saturating_add(span).min(head))
            }
            Direction::Backward => {
                if from == 0 {
                    return Ok(Vec::new());
                }
                let hi = from.min(head);
                (hi.saturating_sub(span).max(1), hi)
            }
        };
        // The tail first, then the index: a record leaves the tail only
        // once the index holds it, so nothing visible is missed.
        let mut chunks: BTreeMap<u64, Chunk> = BTreeMap::new();
        for c in self.tail().chunks(stream, lo, hi) {
            chunks.insert(c.first_version, c);
        }
        for c in self.index.chunks(stream, lo, hi)? {
            chunks.entry(c.first_version).or_insert(c);
        }
        let mut out = Vec::with_capacity((hi - lo + 1).min(65_536) as usize);
        for chunk in chunks.values().filter(|c| c.last_position() <= visible) {
            let record = self.log.read_record(chunk.address, Some(chunk.len))?;
            let events = self.events_of(&record)?;
            let mut found = 0;
            for e in events.into_iter().filter(|e| &e.stream_id == stream) {
                if e.version < chunk.first_version || e.version > chunk.last_version() {
                    continue;
                }
                if e.position != chunk.first_position + (e.version - chunk.first_version) {
                    return Err(self.corrupt(
                        &record,
                        format!(
                            "the index puts {stream} version {} at position {}, the record at {}",
                            e.version,
                            chunk.first_position + (e.version - chunk.first_version),
                            e.position
                        ),
                    ));
                }
                found += 1;
                if e.version >= lo && e.version <= hi {
                    out.push(e);
                }
            }
            if found != chunk.count {
                return Err(self.corrupt(
                    &record,
                    format!(
                        "the index puts {stream} versions {}..={} here; the record holds {found} of them",
                        chunk.first_version,
                        chunk.last_version()
                    ),
                ));
            }
        }
        if out.len() as u64 != hi - lo + 1 {
            return Err(StoreError::Corrupt {
                location: format!("index of stream {stream}"),
                detail: format!(
                    "versions {lo}..={hi} wanted, {} found; delete the index directory and reopen to rebuild it",
                    out.len()
                ),
            });
        }
        if direction == Direction::Backward {
            out.reverse();
        }
        Ok(out)
    }
}
