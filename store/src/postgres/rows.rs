//! The rows of the `events` table as strata reads them: each event row's
//! CRC-32, an event decoded and checked from its columns, and a stream's
//! state from the columns of `stream_state`.

use std::time::SystemTime;

use bytes::Bytes;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::codec::from_bincode;
use crate::error::StoreError;
use crate::pg::{describe, from_db};
use crate::retention::{StreamMetadata, StreamState};
use crate::types::{EventId, Metadata, RecordedEvent, StreamId, to_micros};

/// The CRC-32 of one event row: every column, each variable-length one with
/// its length, so a value moved between columns or rows fails too.
#[allow(clippy::too_many_arguments)]
pub(super) fn row_checksum(
    position: i64,
    stream: &str,
    version: i64,
    id: &Uuid,
    event_type: &str,
    payload: &[u8],
    metadata: &[u8],
    recorded_micros: u64,
) -> i32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&position.to_be_bytes());
    for field in [stream.as_bytes(), event_type.as_bytes(), payload, metadata] {
        h.update(&(field.len() as u64).to_be_bytes());
        h.update(field);
    }
    h.update(&version.to_be_bytes());
    h.update(id.as_bytes());
    h.update(&recorded_micros.to_be_bytes());
    h.finalize() as i32
}

/// The stream state in columns `base..base + 5` of `row` (truncate_before,
/// deleted, tombstoned, max_count, max_age_ms); `None` when the row has
/// none (a left join that found nothing).
pub(super) fn state_at(row: &Row, base: usize) -> Result<Option<StreamState>, tokio_postgres::Error> {
    let Some(truncate_before) = row.try_get::<_, Option<i64>>(base)? else {
        return Ok(None);
    };
    let count: Option<i64> = row.try_get(base + 3)?;
    let age: Option<i64> = row.try_get(base + 4)?;
    Ok(Some(StreamState {
        truncate_before: truncate_before.max(0) as u64,
        deleted: row.try_get::<_, Option<bool>>(base + 1)?.unwrap_or(false),
        tombstoned: row.try_get::<_, Option<bool>>(base + 2)?.unwrap_or(false),
        metadata: StreamMetadata {
            max_count: count.map(|c| c.max(1) as u64),
            max_age: age.map(|a| std::time::Duration::from_millis(a.max(1) as u64)),
        },
    }))
}

/// Decodes and checks one event row (columns in the order of `schema::COLUMNS`).
pub(super) fn decode_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    decode_event_at(row, 0)
}

/// Decodes and checks the event in the columns of `row` from `base` on
/// (in the order of `schema::COLUMNS`).
pub(super) fn decode_event_at(row: &Row, base: usize) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(base).map_err(|e| corrupt_row(None, e))?;
    let location = || format!("event at position {position}");
    let decode = |e: tokio_postgres::Error| corrupt_row(Some(position), e);
    let stream: &str = row.try_get(base + 1).map_err(decode)?;
    let version: i64 = row.try_get(base + 2).map_err(decode)?;
    let id: Uuid = row.try_get(base + 3).map_err(decode)?;
    let event_type: &str = row.try_get(base + 4).map_err(decode)?;
    let payload: &[u8] = row.try_get(base + 5).map_err(decode)?;
    let metadata: &[u8] = row.try_get(base + 6).map_err(decode)?;
    let recorded_at: SystemTime = row.try_get(base + 7).map_err(decode)?;
    let crc: i32 = row.try_get(base + 8).map_err(decode)?;
    let computed = row_checksum(
        position,
        stream,
        version,
        &id,
        event_type,
        payload,
        metadata,
        to_micros(recorded_at),
    );
    if computed != crc {
        return Err(StoreError::Corrupt {
            location: location(),
            detail: format!("checksum mismatch: stored {crc:08x}, computed {computed:08x}"),
        });
    }
    let metadata: Metadata = from_bincode(metadata, location)?;
    let stream_id = StreamId::new(stream).map_err(|e| StoreError::Corrupt {
        location: location(),
        detail: e.to_string(),
    })?;
    Ok(RecordedEvent {
        stream_id,
        version: from_db(version, "event version")?,
        position: from_db(position, "event position")?,
        id: EventId::from_uuid(id),
        event_type: event_type.to_string(),
        payload: Bytes::copy_from_slice(payload),
        metadata,
        recorded_at,
    })
}

pub(super) fn corrupt_row(position: Option<i64>, e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt {
        location: match position {
            Some(p) => format!("event at position {p}"),
            None => "event row".into(),
        },
        detail: describe(&e),
    }
}
