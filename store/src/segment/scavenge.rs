//! Scavenging the segment log: the payloads and metadata of removed events
//! erased from the segment files, crash-safely, while the store serves.
//!
//! 1. **Retention made permanent.** A stream whose `max_count` or `max_age`
//!    removes events is truncated before its first kept event (a
//!    [`StreamOperation::TruncateForRetention`] judged against the metadata
//!    version the scavenge read, so an administrator's change made since
//!    wins), so what is erased can never read as present again.
//! 2. **The current segment closed.** The writer starts a new segment, so
//!    every event written before the scavenge is in a segment nobody
//!    writes any more.
//! 3. **Each closed segment with something to erase rewritten:** copied to
//!    `log/NNNNNNNNNN.seg.scavenge` with the payload and metadata bytes of
//!    every event removed for good (its stream tombstoned, or below its
//!    truncation) overwritten with zeros and the record's checksums
//!    recomputed; that copy synced, renamed over the segment (atomic), the
//!    directory synced, and swapped in for readers. Records keep their
//!    length and place, so the index and the position map stay valid, and
//!    a crash at any step leaves the old segment or the new one, never a
//!    mix; a leftover `.scavenge` file is deleted by the next scavenge.
//!    What stays of an erased event: its stream id, version, position, id
//!    and type (the id answers a late retry; see `docs/retention.md`).
//! 4. **Resumable:** an event already zeroed is not rewritten again, so a
//!    scavenge run after a crash picks up where the last one stopped.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::format::{
    KIND_EVENTS, RECORD_HEADER_BYTES, SAME_METADATA, SAME_TYPE, SEGMENT_HEADER_BYTES, decode_events, segment_name,
};
use super::log::{RawRecord, Segment, SegmentCursor, Stop, show_path};
use super::retention::Removal;
use super::writer::Request;
use super::{SegmentStore, Shared, blocking};
use crate::error::StoreError;
use crate::retention::{StreamOperation, StreamState, metadata_stream};
use crate::store::EventStore;
use crate::types::{Direction, ExpectedVersion, StreamId, now_micros, to_micros};

/// The suffix of a segment's scavenged copy before it is renamed over it.
const SCAVENGE_SUFFIX: &str = ".scavenge";
/// How much a scavenge copies at a time.
const COPY_CHUNK: usize = 1 << 20;

/// How a scavenge runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScavengeOptions {
    /// Bytes read and written per second at most (`None`: as fast as the
    /// disk goes), so a scavenge leaves the disk to appends.
    pub max_bytes_per_second: Option<u64>,
}

/// How far a scavenge has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScavengeProgress {
    /// Segments examined.
    pub segments_done: u64,
    /// Segments to examine.
    pub segments_total: u64,
    /// Events erased so far.
    pub events_erased: u64,
}

/// What a scavenge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScavengeReport {
    /// Streams truncated to make `max_count`/`max_age` removals permanent.
    pub streams_truncated: u64,
    /// Segments examined.
    pub segments_examined: u64,
    /// Segments rewritten (those with something to erase).
    pub segments_rewritten: u64,
    /// Events examined in the examined segments.
    pub events_examined: u64,
    /// Events whose payload and metadata were erased.
    pub events_erased: u64,
    /// Payload and metadata bytes overwritten.
    pub bytes_erased: u64,
    /// Bytes of segment files read and written by the rewrites.
    pub bytes_copied: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl SegmentStore {
    /// Erases removed events from the segment files: see the module
    /// documentation of `scavenge.rs` and `docs/retention.md`. Runs while
    /// the store serves appends, reads and subscriptions; `progress` is
    /// called after each segment. Scavenges of one store run one at a
    /// time: a second call waits for the one running.
    ///
    /// Errors: [`StoreError::Io`] when a file cannot be written (the
    /// segment stays as it was), [`StoreError::Corrupt`] for a damaged
    /// record, and what a truncation or a segment roll returns.
    pub async fn scavenge(
        &self,
        options: ScavengeOptions,
        progress: &mut (dyn FnMut(ScavengeProgress) + Send),
    ) -> Result<ScavengeReport, StoreError> {
        // One at a time: a second call waits for the first, then finds
        // (nearly) nothing left to do.
        let _one_at_a_time = self.inner.scavenging.lock().await;
        let started = Instant::now();
        let mut report = ScavengeReport {
            streams_truncated: self.make_retention_permanent().await?,
            ..ScavengeReport::default()
        };
        self.roll_segment().await?;
        let shared = self.inner.shared.clone();
        remove_leftovers(&shared)?;
        let segments = shared.log.segments();
        // Every segment but the newest: nobody writes them any more.
        let closed: Vec<Arc<Segment>> = segments[..segments.len().saturating_sub(1)].to_vec();
        let visible = shared.visible();
        let mut done = ScavengeProgress {
            segments_done: 0,
            segments_total: closed.len() as u64,
            events_erased: 0,
        };
        progress(done);
        for segment in closed {
            let shared = shared.clone();
            let part = blocking(move || scavenge_segment(&shared, &segment, visible, options)).await?;
            report.segments_examined += 1;
            report.segments_rewritten += u64::from(part.rewritten);
            report.events_examined += part.events_examined;
            report.events_erased += part.events_erased;
            report.bytes_erased += part.bytes_erased;
            report.bytes_copied += part.bytes_copied;
            done.segments_done += 1;
            done.events_erased = report.events_erased;
            progress(done);
        }
        report.elapsed = started.elapsed();
        info!(
            segments = report.segments_examined,
            rewritten = report.segments_rewritten,
            erased = report.events_erased,
            bytes = report.bytes_erased,
            "scavenge finished"
        );
        Ok(report)
    }

    /// Truncates every stream whose `max_count`/`max_age` removes events
    /// before its first kept one; returns how many it truncated.
    async fn make_retention_permanent(&self) -> Result<u64, StoreError> {
        let shared = self.inner.shared.clone();
        let visible = shared.visible();
        let streams: Vec<(StreamId, StreamState)> = shared.states_with_retention(visible);
        let mut truncated = 0;
        for (stream, state) in streams {
            let last = shared.visible_version(&stream, visible)?;
            let meta_version = shared.visible_version(&metadata_stream(&stream), visible)?;
            let mut first = Removal::first_kept(&state, last);
            if let Some(age) = state.metadata.max_age {
                let age = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
                let now = now_micros();
                while first <= last {
                    let s = shared.clone();
                    let st = stream.clone();
                    let page =
                        blocking(move || s.read_stream_range(&st, first, Direction::Forward, 256, visible)).await?;
                    let Some(kept) = page
                        .iter()
                        .find(|e| to_micros(e.recorded_at).saturating_add(age) >= now)
                    else {
                        first = page.last().map_or(last + 1, |e| e.version + 1);
                        if page.is_empty() {
                            break;
                        }
                        continue;
                    };
                    first = kept.version;
                    break;
                }
            }
            if first > state.truncate_before.max(1) && first <= last + 1 {
                // Judged against the metadata version the retention was
                // read at: an administrator's change made since wins.
                let op = StreamOperation::TruncateForRetention {
                    metadata_expected: ExpectedVersion::Exact(meta_version),
                    stream,
                    before: first,
                };
                match self.modify_stream(op).await {
                    Ok(_) => truncated += 1,
                    // Deleted for good meanwhile: its events go anyway. Its
                    // retention changed: the next scavenge judges it again.
                    Err(StoreError::StreamDeleted { .. } | StoreError::WrongExpectedVersion { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(truncated)
    }

    /// Asks the writer to close the current segment and start the next.
    async fn roll_segment(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        let tx = self.inner.tx.as_ref().ok_or_else(closed)?;
        tx.send(Request {
            appends: Vec::new(),
            op: None,
            roll: true,
            reply,
        })
        .await
        .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?.map(|_| ())
    }
}

/// Deletes `.scavenge` copies a crash left behind (never renamed: the
/// segment they copy is still in place).
fn remove_leftovers(shared: &Shared) -> Result<(), StoreError> {
    let storage = &shared.log.storage;
    let dir = &shared.log.dir;
    let names = storage
        .list(dir)
        .map_err(|e| StoreError::io(format!("listing {}", show_path(dir)), e))?;
    for name in names.into_iter().filter(|n| n.ends_with(SCAVENGE_SUFFIX)) {
        let path = dir.join(&name);
        warn!(file = %show_path(&path), "removing the copy an interrupted scavenge left");
        storage
            .remove(&path)
            .map_err(|e| StoreError::io(format!("removing {}", show_path(&path)), e))?;
    }
    Ok(())
}

/// What scavenging one segment did.
#[derive(Default)]
struct SegmentPart {
    rewritten: bool,
    events_examined: u64,
    events_erased: u64,
    bytes_erased: u64,
    bytes_copied: u64,
}

/// A record to write back: where, and its new bytes (header and body).
struct Patch {
    offset: u64,
    bytes: Vec<u8>,
}

/// Scavenges one closed segment (see the module documentation).
fn scavenge_segment(
    shared: &Shared,
    segment: &Arc<Segment>,
    visible: u64,
    options: ScavengeOptions,
) -> Result<SegmentPart, StoreError> {
    let mut part = SegmentPart::default();
    let mut patches = Vec::new();
    let mut cursor = SegmentCursor::new(segment.clone(), SEGMENT_HEADER_BYTES);
    let mut end = SEGMENT_HEADER_BYTES;
    loop {
        let record = match cursor.next_record() {
            Ok(r) => r,
            Err(Stop::End) => break,
            Err(Stop::Bad(detail)) => {
                return Err(StoreError::Corrupt {
                    location: shared.log.describe(cursor.address()),
                    detail,
                });
            }
            Err(Stop::Io(e)) => {
                return Err(StoreError::io(
                    format!("reading {}", shared.log.describe(cursor.address())),
                    e,
                ));
            }
        };
        end = cursor.offset;
        if record.header.kind != KIND_EVENTS {
            continue;
        }
        if let Some(patch) = erase_in_record(shared, &record, visible, &mut part)? {
            patches.push(patch);
        }
    }
    if patches.is_empty() {
        return Ok(part);
    }
    let path = shared.log.path_of(segment.seq);
    let copy_path = shared
        .log
        .dir
        .join(format!("{}{SCAVENGE_SUFFIX}", segment_name(segment.seq)));
    let io = |what: &str, e| StoreError::io(format!("{what} {}", show_path(&copy_path)), e);
    let storage = &shared.log.storage;
    let copy = storage.create(&copy_path).map_err(|e| io("creating", e))?;
    let allocated = segment.allocated();
    copy.preallocate(allocated).map_err(|e| io("preallocating", e))?;
    let throttle = Throttle::new(options.max_bytes_per_second);
    let mut at = 0u64;
    let mut buf = vec![0u8; COPY_CHUNK];
    while at < end {
        let n = ((end - at) as usize).min(COPY_CHUNK);
        segment
            .file
            .read_at(&mut buf[..n], at)
            .map_err(|e| StoreError::io(format!("reading {}", show_path(&path)), e))?;
        copy.write_at(&buf[..n], at).map_err(|e| io("writing", e))?;
        at += n as u64;
        part.bytes_copied += 2 * n as u64;
        throttle.pace(2 * n as u64);
    }
    for p in &patches {
        copy.write_at(&p.bytes, p.offset).map_err(|e| io("writing", e))?;
    }
    copy.sync_data().map_err(|e| io("syncing", e))?;
    storage.rename(&copy_path, &path).map_err(|e| io("renaming", e))?;
    storage
        .sync_dir(&shared.log.dir)
        .map_err(|e| StoreError::io(format!("syncing {}", show_path(&shared.log.dir)), e))?;
    let file = storage
        .open(&path)
        .map_err(|e| StoreError::io(format!("opening {}", show_path(&path)), e))?;
    shared.log.replace_segment(Arc::new(Segment {
        seq: segment.seq,
        first_position: segment.first_position,
        file,
        capacity: segment.capacity,
        allocated: AtomicU64::new(allocated),
        end: AtomicU64::new(segment.end.load(Ordering::Acquire)),
        version: segment.version,
    }));
    part.rewritten = true;
    info!(segment = %show_path(&path), erased = part.events_erased, "scavenged a segment");
    Ok(part)
}

/// The record with the payload and metadata of its events removed for
/// good zeroed, when it has any not zeroed yet.
fn erase_in_record(
    shared: &Shared,
    record: &RawRecord,
    visible: u64,
    part: &mut SegmentPart,
) -> Result<Option<Patch>, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        location: shared.log.describe(record.address),
        detail,
    };
    let (_, events) = decode_events(&record.header, &record.body, record.version).map_err(corrupt)?;
    let ranges = event_ranges(&record.body, record.version).map_err(corrupt)?;
    if ranges.len() != events.len() {
        return Err(corrupt(format!(
            "{} events decoded, {} walked",
            events.len(),
            ranges.len()
        )));
    }
    part.events_examined += events.len() as u64;
    // Whether each event goes; the metadata an event shares with later
    // ones (format 2's shorthand) is erased only when every event sharing
    // it goes, since those bytes are theirs too.
    let gone: Vec<bool> = events
        .iter()
        .map(|event| {
            shared
                .state_at(&event.stream_id, visible)
                .is_some_and(|s| s.tombstoned || event.version < s.truncate_before)
        })
        .collect();
    let mut metadata_kept = vec![false; events.len()];
    for (i, r) in ranges.iter().enumerate() {
        if !gone[i] {
            metadata_kept[r.metadata_from] = true;
        }
    }
    let mut body = None::<Vec<u8>>;
    for (i, r) in ranges.into_iter().enumerate() {
        if !gone[i] {
            continue;
        }
        let mut erase = vec![r.payload];
        if !metadata_kept[i] {
            erase.extend(r.metadata);
        }
        if erase.iter().all(|r| record.body[r.clone()].iter().all(|b| *b == 0)) {
            continue;
        }
        let b = body.get_or_insert_with(|| record.body.to_vec());
        for r in erase {
            part.bytes_erased += r.len() as u64;
            b[r].fill(0);
        }
        part.events_erased += 1;
    }
    let Some(body) = body else {
        return Ok(None);
    };
    let mut header = record.header;
    header.body_crc = crc32c::crc32c(&body);
    let mut bytes = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&body);
    let (_, offset) = super::format::split_address(record.address);
    Ok(Some(Patch { offset, bytes }))
}

/// Where an event's erasable bytes are in an events record's body.
struct EventRanges {
    payload: Range<usize>,
    /// Its metadata strings' contents (empty when it shares another's).
    metadata: Vec<Range<usize>>,
    /// The event (index in the record) whose bytes hold its metadata:
    /// itself, or an earlier one for format 2's "same metadata".
    metadata_from: usize,
}

/// For each event of an events record's body, in order, the byte ranges
/// of its payload and of its metadata strings' contents (what a scavenge
/// zeroes). Lengths are checked against the body, as `decode_events` does.
fn event_ranges(body: &[u8], version: u32) -> Result<Vec<EventRanges>, String> {
    let shorthands = version >= 2;
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<Range<usize>, String> {
        if body.len() - *at < n {
            return Err(format!("{n} bytes wanted at {at} of a body of {}", body.len()));
        }
        *at += n;
        Ok(*at - n..*at)
    };
    let u16_at = |r: Range<usize>| u16::from_le_bytes(body[r].try_into().expect("2 bytes"));
    let u32_at = |r: Range<usize>| u32::from_le_bytes(body[r].try_into().expect("4 bytes")) as usize;
    take(&mut at, 8)?;
    let parts = u32_at(take(&mut at, 4)?);
    let mut total = 0usize;
    for _ in 0..parts {
        let n = u16_at(take(&mut at, 2)?) as usize;
        take(&mut at, n + 8)?;
        total = total.saturating_add(u32_at(take(&mut at, 4)?));
    }
    if total > body.len() / 23 {
        return Err(format!("{total} events cannot fit a body of {}", body.len()));
    }
    let mut out: Vec<EventRanges> = Vec::with_capacity(total);
    for i in 0..total {
        take(&mut at, 16)?;
        match u16_at(take(&mut at, 2)?) {
            SAME_TYPE if shorthands => {}
            n => {
                take(&mut at, n as usize)?;
            }
        }
        let n = u32_at(take(&mut at, 4)?);
        let payload = take(&mut at, n)?;
        let mut metadata = Vec::new();
        let mut metadata_from = i;
        match body[take(&mut at, 1)?][0] {
            1 => {
                for _ in 0..2 {
                    if body[take(&mut at, 1)?][0] == 1 {
                        let n = u32_at(take(&mut at, 4)?);
                        metadata.push(take(&mut at, n)?);
                    }
                }
                let pairs = u32_at(take(&mut at, 4)?);
                for _ in 0..pairs.min(body.len()) {
                    for _ in 0..2 {
                        let n = u32_at(take(&mut at, 4)?);
                        metadata.push(take(&mut at, n)?);
                    }
                }
            }
            SAME_METADATA if shorthands => {
                metadata_from = out
                    .last()
                    .map(|prev| prev.metadata_from)
                    .ok_or("the first event of a record names a previous event's metadata")?;
            }
            _ => {}
        }
        out.push(EventRanges {
            payload,
            metadata,
            metadata_from,
        });
    }
    Ok(out)
}

/// Keeps a copy under a rate of bytes per second.
struct Throttle {
    rate: Option<u64>,
    started: Instant,
    bytes: AtomicU64,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate: rate.filter(|r| *r > 0),
            started: Instant::now(),
            bytes: AtomicU64::new(0),
        }
    }

    /// Counts `n` bytes and sleeps while they run ahead of the rate.
    fn pace(&self, n: u64) {
        let Some(rate) = self.rate else { return };
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}
