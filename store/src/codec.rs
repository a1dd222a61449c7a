//! Every byte the store writes or reads goes through here: bincode 2 with an
//! explicit decode limit, and a CRC-32 over each record.
//!
//! bincode is unmaintained (RUSTSEC-2025-0141); keeping every call in this one
//! module lets it be replaced without touching the backends.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::types::{EventId, Metadata, RecordedEvent, StreamId, from_micros};

/// The largest record the decoder accepts. bincode's default is to allocate
/// whatever a length prefix claims; this bound keeps a damaged prefix from
/// allocating more than this.
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Encodes a serde value with bincode 2 in the configuration the store uses
/// (standard, varint). Every bincode call of the workspace goes through this
/// and [`from_bincode`].
pub fn to_bincode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StoreError::Corrupt {
        location: "record being encoded".into(),
        detail: e.to_string(),
    })
}

/// Decodes a serde value written by [`to_bincode`], with an explicit size
/// limit (64 MiB) so a damaged length prefix cannot make it allocate more,
/// and refusing trailing bytes. Failures are [`StoreError::Corrupt`] naming
/// `location()`.
pub fn from_bincode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    location: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    match bincode::serde::decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, read)) if read == bytes.len() => Ok(value),
        Ok((_, read)) => Err(StoreError::Corrupt {
            location: location(),
            detail: format!("{} trailing bytes after the record", bytes.len() - read),
        }),
        Err(e) => Err(StoreError::Corrupt {
            location: location(),
            detail: e.to_string(),
        }),
    }
}

/// Decodes the start of a [`StoredEvent`] (stream, version, id, type)
/// without the rest, borrowing its strings from `bytes`: what a filtered
/// read needs to decide whether to decode the whole record. The record's
/// checksum must have been checked first ([`unseal`]).
pub(crate) fn stored_event_head<'a>(
    bytes: &'a [u8],
    location: impl FnOnce() -> String,
) -> Result<StoredEventHead<'a>, StoreError> {
    bincode::serde::borrow_decode_from_slice::<StoredEventHead<'a>, _>(bytes, config())
        .map(|(head, _)| head)
        .map_err(|e| StoreError::Corrupt {
            location: location(),
            detail: e.to_string(),
        })
}

/// CRC-32 of a key and a body, so a record moved to another key also fails.
fn checksum(key: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(key.len() as u32).to_le_bytes());
    h.update(key);
    h.update(body);
    h.finalize()
}

/// Frames `body` as `[crc32 le][body]`, the crc covering `key` too.
pub(crate) fn seal(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&checksum(key, body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks the frame written by [`seal`] and returns the body.
pub(crate) fn unseal<'a>(
    key: &[u8],
    value: &'a [u8],
    location: impl FnOnce() -> String,
) -> Result<&'a [u8], StoreError> {
    if value.len() < 4 {
        return Err(StoreError::Corrupt {
            location: location(),
            detail: format!("record of {} bytes is shorter than its checksum", value.len()),
        });
    }
    let (crc, body) = value.split_at(4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let actual = checksum(key, body);
    if stored != actual {
        return Err(StoreError::Corrupt {
            location: location(),
            detail: format!("checksum mismatch: stored {stored:08x}, computed {actual:08x}"),
        });
    }
    Ok(body)
}

/// An event as a backend stores it (the position is its key).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub(crate) stream: StreamId,
    pub(crate) version: u64,
    pub(crate) id: EventId,
    pub(crate) event_type: String,
    pub(crate) recorded_at: u64,
    pub(crate) metadata: Metadata,
    pub(crate) payload: Bytes,
}

/// The first fields of a [`StoredEvent`], in its order, borrowed.
#[derive(Deserialize)]
pub(crate) struct StoredEventHead<'a> {
    pub(crate) stream: &'a str,
    #[allow(dead_code)]
    pub(crate) version: u64,
    #[allow(dead_code)]
    pub(crate) id: EventId,
    pub(crate) event_type: &'a str,
}

impl StoredEvent {
    pub(crate) fn into_recorded(self, position: u64) -> RecordedEvent {
        RecordedEvent {
            stream_id: self.stream,
            version: self.version,
            position,
            id: self.id,
            event_type: self.event_type,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: from_micros(self.recorded_at),
        }
    }
}

/// Reads a big-endian u64 at `at`, or reports the record as corrupt.
pub(crate) fn read_u64(bytes: &[u8], at: usize, location: impl FnOnce() -> String) -> Result<u64, StoreError> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| StoreError::Corrupt {
            location: location(),
            detail: format!("record of {} bytes is too short", bytes.len()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_record_round_trips_and_detects_flips() {
        let sealed = seal(b"key", b"hello");
        assert_eq!(unseal(b"key", &sealed, String::new).unwrap(), b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(
                unseal(b"key", &bad, String::new),
                Err(StoreError::Corrupt { .. })
            ));
        }
        assert!(
            unseal(b"other", &sealed, String::new).is_err(),
            "a record under another key fails"
        );
    }

    #[test]
    fn decode_refuses_a_length_prefix_past_the_limit() {
        // A string whose varint length prefix claims u64::MAX bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let r: Result<String, _> = from_bincode(&bytes, || "test".into());
        assert!(matches!(r, Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut bytes = to_bincode(&7u32).unwrap();
        bytes.push(0);
        let r: Result<u32, _> = from_bincode(&bytes, || "test".into());
        assert!(matches!(r, Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn stored_event_payload_is_encoded_as_raw_bytes() {
        let ev = StoredEvent {
            stream: StreamId::new("s").unwrap(),
            version: 1,
            id: EventId::new(),
            event_type: "T".into(),
            recorded_at: 0,
            metadata: Metadata::default(),
            payload: Bytes::from(vec![255u8; 1000]),
        };
        let bytes = to_bincode(&ev).unwrap();
        assert!(
            bytes.len() < 1100,
            "payload bytes must not be varint-expanded: {}",
            bytes.len()
        );
        let back: StoredEvent = from_bincode(&bytes, String::new).unwrap();
        assert_eq!(back.payload, ev.payload);
        assert_eq!(back.id, ev.id);
        let head = stored_event_head(&bytes, String::new).unwrap();
        assert_eq!(
            (head.stream, head.version, head.id, head.event_type),
            ("s", 1, ev.id, "T")
        );
        assert!(
            stored_event_head(&bytes[..3], String::new).is_err(),
            "a cut record is corrupt"
        );
    }
}
