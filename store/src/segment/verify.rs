//! `verify`: every record of the log checked, and the index compared with
//! what a rebuild from the log would hold.

use std::collections::HashMap;
use std::fmt;

use super::format::{KIND_SEAL, SEGMENT_HEADER_BYTES, address, decode_events};
use super::index::{Index, stream_hash};
use super::log::{Log, SegmentCursor, Stop};
use crate::decide::IdEntry;
use crate::error::StoreError;
use crate::types::{EventId, StreamId};

/// What [`SegmentStore::verify`](super::SegmentStore::verify) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files.
    pub segments: u64,
    /// Records checked (appends, and seals written at clean closes).
    pub records: u64,
    /// Events in them.
    pub events: u64,
    /// Streams.
    pub streams: u64,
    /// Bytes of records.
    pub record_bytes: u64,
    /// Stream index entries compared (one per event).
    pub index_entries: u64,
    /// Everything wrong, each naming where; empty when all is well.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} segments, {} records, {} events in {} streams, {} bytes of records",
            self.segments, self.records, self.events, self.streams, self.record_bytes
        )?;
        writeln!(
            f,
            "index: {} stream entries compared with a rebuild",
            self.index_entries
        )?;
        if self.problems.is_empty() {
            write!(f, "no problems found")
        } else {
            writeln!(f, "{} problems:", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
            Ok(())
        }
    }
}

type StreamEntries = HashMap<StreamId, Vec<(u64, u64, u64)>>;

/// Reads every record up to position `visible` and compares the index
/// with the entries a rebuild would write.
pub(super) fn verify(log: &Log, index: &Index, visible: u64) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut streams: StreamEntries = HashMap::new();
    let mut ids: HashMap<(u64, EventId), IdEntry> = HashMap::new();
    let segments = log.segments();
    report.segments = segments.len() as u64;
    let mut expected = segments.first().map_or(1, |s| s.first_position);
    'segments: for segment in &segments {
        if segment.first_position != expected {
            report.problems.push(format!(
                "{}: starts at position {}, expected {expected}",
                log.describe(address(segment.seq, 0)),
                segment.first_position
            ));
            expected = segment.first_position;
        }
        let mut cursor = SegmentCursor::new(segment.clone(), SEGMENT_HEADER_BYTES);
        while expected <= visible {
            let at = cursor.address();
            let record = match cursor.next_record() {
                Ok(r) => r,
                Err(Stop::End) => continue 'segments,
                Err(Stop::Bad(d)) => {
                    report.problems.push(format!("{}: {d}", log.describe(at)));
                    continue 'segments;
                }
                Err(Stop::Io(e)) => return Err(StoreError::io(format!("reading {}", log.describe(at)), e)),
            };
            report.records += 1;
            report.record_bytes += record.len();
            if record.header.first_position != expected {
                report.problems.push(format!(
                    "{}: a record of position {}, expected {expected}",
                    log.describe(at),
                    record.header.first_position
                ));
            }
            if record.header.kind == KIND_SEAL {
                continue;
            }
            expected = record.header.next_position();
            match decode_events(&record.header, &record.body, record.version) {
                Ok((_, events)) => {
                    report.events += events.len() as u64;
                    for e in events {
                        ids.insert(
                            (stream_hash(&e.stream_id), e.id),
                            IdEntry {
                                version: e.version,
                                position: e.position,
                            },
                        );
                        streams
                            .entry(e.stream_id)
                            .or_default()
                            .push((e.version, e.position, record.address));
                    }
                }
                Err(d) => report.problems.push(format!("{}: {d}", log.describe(at))),
            }
        }
    }
    if expected <= visible {
        report
            .problems
            .push(format!("the log ends before position {visible}, at {}", expected - 1));
    }
    report.streams = streams.len() as u64;
    compare_index(index, &streams, &ids, visible, &mut report)?;
    Ok(report)
}

fn compare_index(
    index: &Index,
    streams: &StreamEntries,
    ids: &HashMap<(u64, EventId), IdEntry>,
    visible: u64,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let dump = index.dump()?;
    let indexed_to = dump.checkpoint.map_or(0, |c| c.next_position - 1);
    if indexed_to != visible {
        report.problems.push(format!(
            "index: indexed up to position {indexed_to}, the log's head is {visible}"
        ));
    }
    for (stream, want) in streams {
        let mut got: Vec<(u64, u64, u64)> = dump
            .chunks
            .get(stream)
            .map(|chunks| {
                chunks
                    .iter()
                    .flat_map(|c| {
                        (0..c.count as u64).map(move |i| (c.first_version + i, c.first_position + i, c.address))
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.sort_unstable();
        report.index_entries += got.len() as u64;
        let want: Vec<_> = want.iter().copied().filter(|(_, p, _)| *p <= indexed_to).collect();
        if got != want {
            let first = got
                .iter()
                .zip(&want)
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            report.problems.push(format!(
                "index: stream {stream} differs from a rebuild at entry {first} ({} entries, a rebuild has {})",
                got.len(),
                want.len()
            ));
        }
    }
    for stream in dump.chunks.keys().filter(|s| !streams.contains_key(*s)) {
        report
            .problems
            .push(format!("index: stream {stream} is indexed but not in the log"));
    }
    let want_ids: HashMap<_, _> = ids.iter().filter(|(_, e)| e.position <= indexed_to).collect();
    let mismatched = want_ids.iter().filter(|(k, e)| dump.ids.get(k) != Some(**e)).count();
    let extra = dump.ids.keys().filter(|k| !want_ids.contains_key(k)).count();
    if mismatched > 0 || extra > 0 {
        report.problems.push(format!(
            "index: {mismatched} event ids missing or wrong, {extra} ids indexed that the log does not hold"
        ));
    }
    Ok(())
}
