//! A runner's catch-up from far behind the log: the rebuild's batched path
//! on the live generation. Large reads folded into one write set, committed
//! with its checkpoint in one atomic write when it holds
//! [`RunnerOptions::catch_up_keys`](crate::RunnerOptions::catch_up_keys)
//! changed keys (or [`CATCH_UP_BYTES`]), instead of one commit per
//! subscription batch: a key that many events change (a count, a busy SKU)
//! is written once per commit, and the per-commit cost is paid rarely.
//!
//! Unlike a rebuild's fresh generation, the live generation is read by
//! everyone, so each commit is atomic as every runner commit is: readers
//! see the model at one checkpoint or the next, never between.

use strata_store::EventStore;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::backend::{Checkpoint, Commit};
use crate::error::ProjectionError;
use crate::model::store::ModelStore;
use crate::model::write_set::WriteSet;
use crate::projection::Projection;

/// Events read from the log at a time while catching up.
const CATCH_UP_READ: usize = 4096;

/// Memory, roughly, that a catch-up's write set may hold before it is
/// committed, whatever its key count.
pub(crate) const CATCH_UP_BYTES: usize = 64 << 20;

/// How a catch-up ended.
pub(crate) enum CaughtUp {
    /// Within `batch_size` events of the head (or the log skips ahead, or
    /// an event failed: the subscription path applies it again and reports
    /// it): follow on from this checkpoint.
    Near(u64),
    /// A rebuild swapped in another generation: follow that one.
    GenerationChanged,
    /// PostgreSQL: the writer lock was lost.
    LeaseLost,
    /// Asked to stop (what was folded and not committed is dropped: the
    /// next runner applies it again).
    Stopped,
}

/// Catches `model`'s `generation` up from `checkpoint` while the log's head
/// is more than `batch_size` events ahead; see the module's doc.
pub(crate) async fn catch_up(
    store: &dyn EventStore,
    model: &ModelStore,
    projection: &dyn Projection,
    (generation, mut checkpoint): (u64, u64),
    (batch_size, catch_up_keys): (usize, usize),
    stop: &watch::Receiver<bool>,
) -> Result<CaughtUp, ProjectionError> {
    let name = projection.name();
    let behind = head(store, name).await?.saturating_sub(checkpoint);
    if behind <= batch_size as u64 {
        return Ok(CaughtUp::Near(checkpoint));
    }
    info!(
        projection = name,
        checkpoint, behind, "catching up from far behind in large batches"
    );
    // What is folded and not committed yet, and the last event in it.
    let mut pending: Option<(WriteSet, Checkpoint)> = None;
    loop {
        if *stop.borrow() {
            return Ok(CaughtUp::Stopped);
        }
        let last_folded = pending.as_ref().map_or(checkpoint, |(_, at)| at.position);
        let near = head(store, name).await?.saturating_sub(last_folded) <= batch_size as u64;
        let events = if near {
            Vec::new()
        } else {
            store
                .read_all(last_folded + 1, CATCH_UP_READ)
                .await
                .map_err(|e| ProjectionError::store(name, e))?
        };
        let mut failed = false;
        if !events.is_empty() {
            let mut ws = match pending.take() {
                Some((ws, _)) => ws,
                None => match model.write_set_on(generation, checkpoint, projection.model_version()) {
                    Some(ws) => ws,
                    None => return Ok(CaughtUp::GenerationChanged),
                },
            };
            let mut previous = last_folded;
            for event in &events {
                if event.position <= previous || projection.apply(event, &mut ws).is_err() {
                    // The write set holds part of this event's changes:
                    // drop it; the subscription path applies these events
                    // again one batch at a time and reports the failure
                    // exactly (what came before it committed).
                    failed = true;
                    break;
                }
                previous = event.position;
            }
            if failed {
                debug!(
                    projection = name,
                    checkpoint, "catch-up met a failing event; following one batch at a time"
                );
                return Ok(CaughtUp::Near(checkpoint));
            }
            let at = Checkpoint::of(events.last().expect("not empty"));
            pending = Some((ws, at));
        }
        let full = pending
            .as_ref()
            .is_some_and(|(ws, _)| ws.len() >= catch_up_keys || ws.staged_bytes() >= CATCH_UP_BYTES);
        let done = near || events.is_empty();
        if (full || done)
            && let Some((ws, at)) = pending.take()
        {
            let keys = ws.len();
            match model.commit(ws, at).await? {
                Commit::Done => {
                    debug!(projection = name, keys, checkpoint = at.position, "catch-up: committed");
                    checkpoint = at.position;
                }
                Commit::Stale => return Ok(CaughtUp::GenerationChanged),
                Commit::LeaseLost => return Ok(CaughtUp::LeaseLost),
            }
        }
        if done {
            return Ok(CaughtUp::Near(checkpoint));
        }
    }
}

async fn head(store: &dyn EventStore, name: &str) -> Result<u64, ProjectionError> {
    store.head_position().await.map_err(|e| ProjectionError::store(name, e))
}
