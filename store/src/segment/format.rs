//! The bytes of a segment file: its header and its records.
//!
//! A segment file `log/NNNNNNNNNN.seg` is preallocated to its capacity and
//! starts with a 4 KiB header (only the first 40 bytes used, the rest zero):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `STRATAsl` |
//! | 8 | 4 | format version (2; 1 is read too), little endian like every number here |
//! | 12 | 4 | header size (4096) |
//! | 16 | 8 | segment sequence number (the file name's number) |
//! | 24 | 8 | position of the segment's first event |
//! | 32 | 4 | reserved, zero |
//! | 36 | 4 | CRC-32C of bytes 0..36 |
//!
//! Records follow, each at an offset that is a multiple of 8. One record
//! holds one whole append (every event of every stream of an
//! `append_multi`), so an append is on disk entirely or not at all:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `SREC` |
//! | 4 | 4 | body length |
//! | 8 | 8 | position of the record's first event (for a seal: the next position) |
//! | 16 | 8 | `synced_to`: a log address below which everything was synced when this record was written |
//! | 24 | 4 | number of events |
//! | 28 | 4 | CRC-32C of the body |
//! | 32 | 4 | kind: 1 = events, 2 = seal (written at a clean close, no events) |
//! | 36 | 4 | CRC-32C of bytes 0..36 |
//! | 40 | n | body, then zeros up to the next multiple of 8 |
//!
//! The body of an events record: `recorded_at` (u64, µs since the epoch),
//! the number of parts (u32), each part (stream id as u16 length + UTF-8,
//! version of its first event u64, event count u32), then every event in
//! position order: id (16 bytes), event type (u16 length + UTF-8), payload
//! (u32 length + bytes), metadata (a flag byte, then when it is 1:
//! correlation and causation id as an optional string each, the number of
//! extra pairs u32 and each pair as two strings; a string is a u32 length
//! and UTF-8, an optional string a flag byte before it).
//!
//! Format 2 adds two shorthands for what an append's events usually share
//! (one event type, the request's correlation id): an event type length of
//! `0xFFFF` means "the previous event's type" and a metadata flag of 2
//! "the previous event's metadata", the previous event of the same record.
//! They are written only into segments whose header says format 2, so a
//! build that reads only format 1 refuses a new segment by its version
//! rather than calling its records damaged. Event types are at most
//! [`MAX_EVENT_TYPE_BYTES`] long.
//!
//! A log address is `segment sequence << 40 | byte offset`. Every length is
//! checked against the bytes that remain before anything is allocated.

use bytes::Bytes;

use crate::types::{EventId, Metadata, NewEvent, RecordedEvent, StreamId, from_micros};

/// The size reserved for a segment's header; records start here.
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 4096;
const SEGMENT_MAGIC: [u8; 8] = *b"STRATAsl";
/// The format new segments are written in.
pub(crate) const SEGMENT_VERSION: u32 = 2;
/// The oldest format still read.
const OLDEST_SEGMENT_VERSION: u32 = 1;
/// The longest event type the record format holds (`0xFFFF` is the
/// "same type" shorthand).
pub(crate) const MAX_EVENT_TYPE_BYTES: usize = 0xFFFE;
/// An event type length meaning "the previous event's type" (format 2).
pub(crate) const SAME_TYPE: u16 = 0xFFFF;
/// A metadata flag meaning "the previous event's metadata" (format 2).
pub(crate) const SAME_METADATA: u8 = 2;
/// Bytes of a record header.
pub(crate) const RECORD_HEADER_BYTES: usize = 40;
const RECORD_MAGIC: [u8; 4] = *b"SREC";
/// The largest record body written or read (an append over it is refused).
pub(crate) const MAX_BODY_BYTES: usize = 96 * 1024 * 1024;
/// Offsets within a segment stay below 2^40.
pub(crate) const MAX_SEGMENT_BYTES: u64 = 1 << 40;

/// Record kinds.
pub(crate) const KIND_EVENTS: u32 = 1;
pub(crate) const KIND_SEAL: u32 = 2;

/// The log address of `offset` in segment `seq`.
pub(crate) fn address(seq: u64, offset: u64) -> u64 {
    (seq << 40) | offset
}

/// The segment and offset of a log address.
pub(crate) fn split_address(address: u64) -> (u64, u64) {
    (address >> 40, address & (MAX_SEGMENT_BYTES - 1))
}

/// The name of segment `seq`'s file.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:010}.seg")
}

/// The sequence number a segment file name stands for.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A record's length on disk: header, body and padding to 8 bytes.
pub(crate) fn record_len(body_len: usize) -> u64 {
    ((RECORD_HEADER_BYTES + body_len) as u64).div_ceil(8) * 8
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The header of a segment file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SegmentHeader {
    pub(crate) seq: u64,
    pub(crate) first_position: u64,
    /// The record format of the segment (see the module documentation).
    pub(crate) version: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SEGMENT_HEADER_BYTES as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_position.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the first 40 bytes of a segment file; the error says what is wrong.
    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < 40 {
            return Err("the file is shorter than a segment header".into());
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(format!("not a strata segment (magic {:?})", &b[0..8]));
        }
        let crc = crc32c::crc32c(&b[0..36]);
        if crc != u32_at(b, 36) {
            return Err(format!(
                "segment header checksum mismatch: stored {:08x}, computed {crc:08x}",
                u32_at(b, 36)
            ));
        }
        let version = u32_at(b, 8);
        if !(OLDEST_SEGMENT_VERSION..=SEGMENT_VERSION).contains(&version)
            || u32_at(b, 12) as u64 != SEGMENT_HEADER_BYTES
        {
            return Err(format!(
                "segment format version {version}, this build reads {OLDEST_SEGMENT_VERSION} to {SEGMENT_VERSION}"
            ));
        }
        Ok(SegmentHeader {
            seq: u64_at(b, 16),
            first_position: u64_at(b, 24),
            version,
        })
    }
}

/// The fixed part of a record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RecordHeader {
    pub(crate) body_len: u32,
    pub(crate) first_position: u64,
    pub(crate) synced_to: u64,
    pub(crate) event_count: u32,
    pub(crate) body_crc: u32,
    pub(crate) kind: u32,
}

/// Why 40 bytes are not a record header.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum HeaderError {
    /// All zeros: the end of the written part of a segment.
    Zero,
    /// Anything else; what is wrong.
    Bad(String),
}

impl RecordHeader {
    pub(crate) fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut b = [0u8; RECORD_HEADER_BYTES];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_position.to_le_bytes());
        b[16..24].copy_from_slice(&self.synced_to.to_le_bytes());
        b[24..28].copy_from_slice(&self.event_count.to_le_bytes());
        b[28..32].copy_from_slice(&self.body_crc.to_le_bytes());
        b[32..36].copy_from_slice(&self.kind.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<RecordHeader, HeaderError> {
        if b.len() < RECORD_HEADER_BYTES {
            return Err(HeaderError::Bad("truncated record header".into()));
        }
        let b = &b[..RECORD_HEADER_BYTES];
        if b.iter().all(|x| *x == 0) {
            return Err(HeaderError::Zero);
        }
        if b[0..4] != RECORD_MAGIC {
            return Err(HeaderError::Bad("no record magic".into()));
        }
        let crc = crc32c::crc32c(&b[0..36]);
        if crc != u32_at(b, 36) {
            return Err(HeaderError::Bad(format!(
                "record header checksum mismatch: stored {:08x}, computed {crc:08x}",
                u32_at(b, 36)
            )));
        }
        let h = RecordHeader {
            body_len: u32_at(b, 4),
            first_position: u64_at(b, 8),
            synced_to: u64_at(b, 16),
            event_count: u32_at(b, 24),
            body_crc: u32_at(b, 28),
            kind: u32_at(b, 32),
        };
        if h.body_len as usize > MAX_BODY_BYTES {
            return Err(HeaderError::Bad(format!("body length {} over the limit", h.body_len)));
        }
        match h.kind {
            KIND_EVENTS if h.event_count > 0 && h.first_position > 0 => Ok(h),
            KIND_SEAL if h.event_count == 0 && h.body_len == 0 => Ok(h),
            _ => Err(HeaderError::Bad(format!(
                "record kind {} with {} events",
                h.kind, h.event_count
            ))),
        }
    }

    /// The position after the record's last event.
    pub(crate) fn next_position(&self) -> u64 {
        self.first_position + self.event_count as u64
    }

    /// Checks `body` against the header's checksum.
    pub(crate) fn check_body(&self, body: &[u8]) -> Result<(), String> {
        let crc = crc32c::crc32c(body);
        if crc != self.body_crc {
            return Err(format!(
                "record body checksum mismatch: stored {:08x}, computed {crc:08x}",
                self.body_crc
            ));
        }
        Ok(())
    }
}

/// One stream's part of a record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Part {
    pub(crate) stream: StreamId,
    pub(crate) first_version: u64,
    pub(crate) count: u32,
}

/// One stream's events of an append, as the writer encodes them.
pub(crate) struct PartIn<'a> {
    pub(crate) stream: &'a StreamId,
    pub(crate) first_version: u64,
    pub(crate) events: &'a [NewEvent],
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

/// Appends the body of an events record to `out`, in the record format of
/// segment format `version` (the shorthands from 2 on).
pub(crate) fn encode_body(out: &mut Vec<u8>, recorded_at: u64, parts: &[PartIn<'_>], version: u32) {
    let shorthands = version >= 2;
    let mut previous: Option<&NewEvent> = None;
    out.extend_from_slice(&recorded_at.to_le_bytes());
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        let s = p.stream.as_str();
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(&p.first_version.to_le_bytes());
        out.extend_from_slice(&(p.events.len() as u32).to_le_bytes());
    }
    for p in parts {
        for e in p.events {
            out.extend_from_slice(e.id.as_bytes());
            let same = previous.filter(|_| shorthands);
            if same.is_some_and(|prev| prev.event_type == e.event_type) {
                out.extend_from_slice(&SAME_TYPE.to_le_bytes());
            } else {
                debug_assert!(
                    e.event_type.len() <= MAX_EVENT_TYPE_BYTES || !shorthands,
                    "checked by Limits"
                );
                out.extend_from_slice(&(e.event_type.len() as u16).to_le_bytes());
                out.extend_from_slice(e.event_type.as_bytes());
            }
            out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.payload);
            let m = &e.metadata;
            previous = Some(e);
            if m.is_empty() {
                out.push(0);
            } else if same.is_some_and(|prev| prev.metadata == *m) {
                out.push(SAME_METADATA);
            } else {
                out.push(1);
                put_opt(out, &m.correlation_id);
                put_opt(out, &m.causation_id);
                out.extend_from_slice(&(m.extra.len() as u32).to_le_bytes());
                for (k, v) in &m.extra {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
        }
    }
}

/// Reads a body, every length checked before use.
struct Cursor<'a> {
    body: &'a Bytes,
    at: usize,
}

type Decode<T> = Result<T, String>;

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Decode<std::ops::Range<usize>> {
        if self.body.len() - self.at < n {
            return Err(format!(
                "a field of {n} bytes at body offset {} runs past the body's {} bytes",
                self.at,
                self.body.len()
            ));
        }
        let r = self.at..self.at + n;
        self.at += n;
        Ok(r)
    }
    fn u8(&mut self) -> Decode<u8> {
        let r = self.take(1)?;
        Ok(self.body[r.start])
    }
    fn u16(&mut self) -> Decode<u16> {
        let r = self.take(2)?;
        Ok(u16::from_le_bytes(self.body[r].try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Decode<u32> {
        let r = self.take(4)?;
        Ok(u32_at(self.body, r.start))
    }
    fn u64(&mut self) -> Decode<u64> {
        let r = self.take(8)?;
        Ok(u64_at(self.body, r.start))
    }
    fn str_of(&mut self, n: usize) -> Decode<String> {
        let r = self.take(n)?;
        String::from_utf8(self.body[r].to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }
    fn string(&mut self) -> Decode<String> {
        let n = self.u32()? as usize;
        self.str_of(n)
    }
    fn opt(&mut self) -> Decode<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            f => Err(format!("bad option flag {f}")),
        }
    }
}

/// Decodes an events record's body into its events (payloads share the
/// body's buffer), by the rules of segment format `version` (the
/// shorthands only from 2 on). `header` must have been checked against
/// `body`.
pub(crate) fn decode_events(
    header: &RecordHeader,
    body: &Bytes,
    version: u32,
) -> Decode<(Vec<Part>, Vec<RecordedEvent>)> {
    let shorthands = version >= 2;
    let mut c = Cursor { body, at: 0 };
    let recorded_at = from_micros(c.u64()?);
    let part_count = c.u32()? as usize;
    // Every part takes at least 14 bytes: bound the count before allocating.
    if part_count == 0 || part_count > body.len() / 14 {
        return Err(format!("{part_count} parts in a body of {} bytes", body.len()));
    }
    let mut parts = Vec::with_capacity(part_count);
    let mut total = 0u64;
    for _ in 0..part_count {
        let n = c.u16()? as usize;
        let stream = StreamId::new(c.str_of(n)?).map_err(|e| e.to_string())?;
        let first_version = c.u64()?;
        let count = c.u32()?;
        if count == 0 || first_version == 0 {
            return Err(format!(
                "part of stream {stream} with {count} events from version {first_version}"
            ));
        }
        total += count as u64;
        parts.push(Part {
            stream,
            first_version,
            count,
        });
    }
    if total != header.event_count as u64 {
        return Err(format!(
            "parts hold {total} events, the header says {}",
            header.event_count
        ));
    }
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(total as usize);
    let mut position = header.first_position;
    for part in &parts {
        for i in 0..part.count as u64 {
            let id = c.take(16)?;
            let id = EventId::from_uuid(uuid::Uuid::from_bytes(body[id].try_into().expect("16 bytes")));
            let event_type = match c.u16()? {
                SAME_TYPE if shorthands => match events.last() {
                    Some(prev) => prev.event_type.clone(),
                    None => return Err("the first event of a record names a previous event's type".into()),
                },
                n => c.str_of(n as usize)?,
            };
            let n = c.u32()? as usize;
            let payload = body.slice(c.take(n)?);
            let metadata = match c.u8()? {
                0 => Metadata::default(),
                SAME_METADATA if shorthands => match events.last() {
                    Some(prev) => prev.metadata.clone(),
                    None => return Err("the first event of a record names a previous event's metadata".into()),
                },
                1 => {
                    let correlation_id = c.opt()?;
                    let causation_id = c.opt()?;
                    let pairs = c.u32()? as usize;
                    // Each pair takes at least 8 bytes.
                    if pairs > (body.len() - c.at) / 8 {
                        return Err(format!("{pairs} metadata pairs cannot fit the body"));
                    }
                    let mut extra = std::collections::BTreeMap::new();
                    for _ in 0..pairs {
                        let k = c.string()?;
                        let v = c.string()?;
                        extra.insert(k, v);
                    }
                    Metadata {
                        correlation_id,
                        causation_id,
                        extra,
                    }
                }
                f => return Err(format!("bad metadata flag {f}")),
            };
            events.push(RecordedEvent {
                stream_id: part.stream.clone(),
                version: part.first_version + i,
                position,
                id,
                event_type,
                payload,
                metadata,
                recorded_at,
            });
            position += 1;
        }
    }
    if c.at != body.len() {
        return Err(format!("{} bytes after the last event", body.len() - c.at));
    }
    Ok((parts, events))
}

#[cfg(test)]
mod tests;
