//! A rebuild's first batch into its fresh generation, written with one
//! binary `COPY` instead of the `INSERT … ON CONFLICT` of every other
//! batch: a rebuild folds the whole log in memory (see `RebuildOptions`),
//! so on most logs this is the only batch it writes.
//!
//! Safe only for the first batch (base 0): the generation's id was never
//! used before ([`sql::NEXT_GENERATION`]) and its entries are only written
//! in the transaction that moves its checkpoint from 0, so no row of it
//! exists and none conflicts. The fence is the same compare-and-set as
//! [`sql::COMMIT`]'s, in the same transaction as the rows: a checkpoint
//! never names missing rows, nor the other way round.

use std::io::Cursor;
use std::pin::pin;

use futures::SinkExt;
use strata_store::deadpool_postgres::ClientWrapper;
use strata_store::tokio_postgres;

use super::sql;
use super::tables::PgModel;
use crate::backend::contract::Batch;
use crate::error::ProjectionError;

/// Bytes sent to the server per `CopyData` message.
const CHUNK: usize = 1 << 20;

/// The binary `COPY` header: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Why a bulk commit did not write.
enum Failed {
    Db(tokio_postgres::Error),
    Model(ProjectionError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Failed {
        Failed::Db(e)
    }
}

/// Commits `batch`, the first of `generation` (its base is 0), through
/// `client` (the rebuild lock's connection): true when written, false
/// when fenced off (the generation was retired, or its checkpoint moved).
pub(super) async fn commit_first(
    client: &ClientWrapper,
    model: &PgModel,
    generation: u64,
    batch: &Batch,
) -> Result<bool, ProjectionError> {
    debug_assert_eq!(batch.base, 0, "only a generation's first batch is copied");
    let name = &model.name;
    let generation = model.bigint(generation, "generation")?;
    let position = model.bigint(batch.at.position, "checkpoint")?;
    let version = model.bigint(batch.model_version, "model version")?;
    let base = model.bigint(batch.base, "checkpoint")?;
    let event_id = batch.at.event_id.as_uuid();
    let (fence_sql, copy_sql) = (model.sql(sql::FENCE), model.sql(sql::COPY_ENTRIES));
    let written = async {
        client.batch_execute("BEGIN").await?;
        let fenced = client
            .execute(&fence_sql, &[name, &generation, &position, &event_id, &base, &version])
            .await?;
        if fenced != 1 {
            client.batch_execute("ROLLBACK").await?;
            return Ok(false);
        }
        let mut sink = pin!(client.copy_in::<_, Cursor<Vec<u8>>>(&copy_sql).await?);
        let mut chunk = Vec::with_capacity(CHUNK + 1024);
        chunk.extend_from_slice(HEADER);
        for (key, value) in &batch.changes {
            row(&mut chunk, name, generation, key, value.as_deref(), position).map_err(Failed::Model)?;
            if chunk.len() >= CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK + 1024));
                sink.send(Cursor::new(full)).await?;
            }
        }
        chunk.extend_from_slice(&(-1i16).to_be_bytes());
        sink.send(Cursor::new(chunk)).await?;
        sink.as_mut().finish().await?;
        client.batch_execute("COMMIT").await?;
        Ok(true)
    }
    .await;
    match written {
        Ok(written) => Ok(written),
        Err(failed) => {
            // Leave the connection out of the failed transaction (its drop
            // still removes the generation through it).
            let _ = client.batch_execute("ROLLBACK").await;
            Err(match failed {
                Failed::Db(e) => model.db_error("copying a rebuild's batch", e),
                Failed::Model(e) => e,
            })
        }
    }
}

/// Appends one row `(model, generation, key, value, position)` in the
/// binary `COPY` format.
fn row(
    out: &mut Vec<u8>,
    name: &str,
    generation: i64,
    key: &[u8],
    value: Option<&[u8]>,
    position: i64,
) -> Result<(), ProjectionError> {
    let field = |out: &mut Vec<u8>, bytes: &[u8]| -> Result<(), ProjectionError> {
        let len = i32::try_from(bytes.len()).map_err(|_| ProjectionError::Corrupt {
            projection: name.to_string(),
            key: String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned(),
            detail: format!("a key or value of {} bytes does not fit a row", bytes.len()),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
        Ok(())
    };
    out.extend_from_slice(&5i16.to_be_bytes());
    field(out, name.as_bytes())?;
    field(out, &generation.to_be_bytes())?;
    field(out, key)?;
    match value {
        Some(value) => field(out, value)?,
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    field(out, &position.to_be_bytes())
}
