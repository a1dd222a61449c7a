//! The swap of rebuilt generations: one transaction over every model.

use std::sync::Arc;

use tracing::{debug, warn};

use super::generation::PgGeneration;
use super::sql;
use crate::backend::contract::{Generation, Swapped};
use crate::error::ProjectionError;

/// Makes each generation (being built, committed up to `checkpoint`)
/// current, in one transaction over every model (all share one database).
/// Refused, writing nothing, when a model's live generation has already
/// moved past `checkpoint` (another process's runner kept committing):
/// returns that position, to replay up to before trying again. On success,
/// retires the old generations (their writers' next commit is fenced off),
/// announces the swap, releases the rebuild locks, and deletes the old
/// generations' rows in the background.
pub(super) async fn swap(targets: &[&PgGeneration], checkpoint: u64) -> Result<Swapped, ProjectionError> {
    let Some(first) = targets.first() else {
        return Ok(Swapped::Done);
    };
    let mut targets = targets.to_vec();
    // One lock order for every swap: no deadlock between two.
    targets.sort_by(|a, b| a.model.name.cmp(&b.model.name));
    let model = &first.model;
    let mut client = model.connection().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| model.db_error("starting a swap", e))?;
    let cp = model.bigint(checkpoint, "checkpoint")?;
    let mut old = Vec::with_capacity(targets.len());
    let mut behind = None;
    for t in &targets {
        let (m, id) = (&t.model, t.id());
        let new_gen = m.bigint(id, "generation")?;
        let row = tx
            .query_one(&m.sql(sql::LOCK_CURRENT), &[&m.name])
            .await
            .map_err(|e| m.db_error("locking a read model's pointer", e))?;
        let current: i64 = row.get(0);
        let live = m.stored_number(row.get(1), "checkpoint")?;
        // A rebuild that lost its lock (its connection dropped) may have
        // had its generation removed by the rebuild that took over: then
        // there is nothing to swap in. Its checkpoint must be where this
        // rebuild left it: a row at another position is not this
        // rebuild's work.
        let built: Option<i64> = tx
            .query_opt(&m.sql(sql::GENERATION_LIVE), &[&m.name, &new_gen])
            .await
            .map_err(|e| m.db_error("checking the rebuilt generation", e))?
            .map(|row| row.get(0));
        if built != Some(cp) || current == new_gen {
            return Err(ProjectionError::Corrupt {
                projection: m.name.clone(),
                key: format!("generation {id}"),
                detail: "the generation being rebuilt is gone: this rebuild lost its lock and another one took over; nothing was swapped in".into(),
            });
        }
        if live > checkpoint {
            behind = Some(behind.unwrap_or(0).max(live));
        }
        old.push((current, new_gen));
    }
    if let Some(live) = behind {
        tx.rollback()
            .await
            .map_err(|e| model.db_error("abandoning a swap", e))?;
        return Ok(Swapped::Behind { live });
    }
    for (t, (old_gen, new_gen)) in targets.iter().zip(&old) {
        let m = &t.model;
        let step = |e| m.db_error("swapping a generation in", e);
        tx.execute(&m.sql(sql::SET_CURRENT), &[&m.name, new_gen])
            .await
            .map_err(step)?;
        tx.execute(&m.sql(sql::RETIRE), &[&m.name, old_gen])
            .await
            .map_err(step)?;
        tx.execute(&m.sql(sql::SET_REFRESH_FROM), &[&m.name, new_gen, &cp])
            .await
            .map_err(step)?;
        let payload = format!("{new_gen} {checkpoint} {}", m.name);
        tx.execute(sql::NOTIFY, &[&m.channel, &payload]).await.map_err(step)?;
    }
    tx.commit().await.map_err(|e| model.db_error("committing a swap", e))?;
    drop(client);
    for (t, (old_gen, _)) in targets.iter().zip(old) {
        if let Some(rebuilding) = t.building.lock().await.take() {
            rebuilding.swapped();
        }
        let m = t.model.clone();
        tokio::spawn(drop_retired(m, old_gen));
    }
    Ok(Swapped::Done)
}

/// Deletes a retired generation's rows (unless, somehow, it is current again).
async fn drop_retired(m: Arc<super::tables::PgModel>, generation: i64) {
    let dropped = async {
        let mut client = m.connection().await?;
        m.drop_unless_current(&mut client, generation)
            .await
            .map_err(|e| m.db_error("dropping a retired generation", e))
    }
    .await;
    match dropped {
        Ok(rows) => debug!(projection = %m.name, generation, rows, "dropped a retired generation"),
        Err(e) => {
            warn!(projection = %m.name, error = %e, "could not drop a retired generation; the next rebuild drops it")
        }
    }
}
