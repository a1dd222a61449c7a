//! The layout of the log in its sled tree, one key space per prefix byte:
//!
//! | key                                   | value                                  |
//! |---------------------------------------|----------------------------------------|
//! | `e` position (u64 BE)                 | crc + bincode [`StoredEvent`]          |
//! | `s` stream `\0` version (u64 BE)      | crc + position (u64 BE)                |
//! | `i` stream `\0` event id (16 bytes)   | crc + version, position (u64 BE each)  |
//! | `m` name                              | metadata such as the format marker     |
//!
//! Stream ids hold no control characters, so `\0` ends the stream part and
//! one stream's keys never interleave with another's. Every value's crc
//! covers its key too. All keys of one commit go into one atomic sled batch.
//!
//! [`StoredEvent`]: crate::codec::StoredEvent

use crate::codec::{read_u64, seal, unseal};
use crate::decide::IdEntry;
use crate::error::StoreError;
use crate::types::{EventId, StreamId};

pub(super) const FORMAT_KEY: &[u8] = b"mformat";
pub(super) const FORMAT: &[u8] = b"strata-log/1";

pub(super) fn event_key(position: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

pub(super) fn event_key_position(key: &[u8]) -> Result<u64, StoreError> {
    match key {
        [b'e', rest @ ..] if rest.len() == 8 => Ok(u64::from_be_bytes(rest.try_into().expect("8 bytes"))),
        _ => Err(StoreError::Corrupt {
            location: format!("event key {key:?}"),
            detail: "malformed event key".into(),
        }),
    }
}

/// `s` stream `\0`: the prefix of every version key of a stream.
pub(super) fn stream_prefix(stream: &StreamId) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.as_str().len() + 10);
    k.push(b's');
    k.extend_from_slice(stream.as_str().as_bytes());
    k.push(0);
    k
}

pub(super) fn stream_key(stream: &StreamId, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The version a stream key names.
pub(super) fn stream_key_version(key: &[u8]) -> Result<u64, StoreError> {
    if key.len() < 10 {
        return Err(StoreError::Corrupt {
            location: format!("stream key {key:?}"),
            detail: "malformed stream key".into(),
        });
    }
    read_u64(key, key.len() - 8, || format!("stream key {key:?}"))
}

pub(super) fn stream_value(key: &[u8], position: u64) -> Vec<u8> {
    seal(key, &position.to_be_bytes())
}

pub(super) fn decode_stream_value(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    let location = || format!("stream index entry {}", String::from_utf8_lossy(key));
    let body = unseal(key, value, location)?;
    read_u64(body, 0, location)
}

pub(super) fn id_key(stream: &StreamId, id: &EventId) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.as_str().len() + 18);
    k.push(b'i');
    k.extend_from_slice(stream.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn id_value(key: &[u8], entry: IdEntry) -> Vec<u8> {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&entry.version.to_be_bytes());
    body[8..].copy_from_slice(&entry.position.to_be_bytes());
    seal(key, &body)
}

pub(super) fn decode_id_value(key: &[u8], value: &[u8]) -> Result<IdEntry, StoreError> {
    let location = || format!("event id index entry {}", String::from_utf8_lossy(key));
    let body = unseal(key, value, location)?;
    Ok(IdEntry {
        version: read_u64(body, 0, location)?,
        position: read_u64(body, 8, location)?,
    })
}
