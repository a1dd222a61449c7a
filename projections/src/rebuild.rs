//! `rebuild`: a fresh copy of a read model, replayed from position 1 and
//! swapped in when it has caught up.

use std::time::{Duration, Instant};

use strata_store::{EventStore, RecordedEvent};
use tracing::{Instrument, info, info_span};

use crate::error::ProjectionError;
use crate::model::{Building, ModelStore};
use crate::projection::Projection;

/// How a rebuild batches its work.
#[derive(Clone, Copy, Debug)]
pub struct RebuildOptions {
    /// Events read from the log and committed per atomic write (default 4,096).
    pub batch_size: usize,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions { batch_size: 4096 }
    }
}

/// How far a rebuild is: `done` of `total` events, for a progress bar.
/// `total` is the log's head position, so it grows while writers append.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RebuildProgress {
    /// Events replayed so far (the position reached).
    pub done: u64,
    /// Events to replay (the head position last seen).
    pub total: u64,
}

/// What a finished rebuild did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RebuildReport {
    /// Events replayed (= the new checkpoint).
    pub events: u64,
    /// The generation now served.
    pub generation: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Rebuilds `projection`'s read model from the start of the log.
///
/// Replays every event from position 1 into a fresh, empty generation of
/// `model` with its own checkpoint, which readers do not see; reports
/// `progress` after each batch. Once it has caught up with the log, it
/// holds off the live runner's commits for the last few events, then swaps
/// the new generation in atomically (on sled: one write of the pointer in
/// `projection.<name>.meta`) and drops the old one. Readers see the old
/// model until the swap and the whole new one after it, never a half-built
/// one.
///
/// A live [`ProjectionRunner`](crate::ProjectionRunner) on the same model
/// may keep running: it keeps the old generation up to date until the swap,
/// then notices it, drops its uncommitted batch and follows on from the new
/// generation's checkpoint.
///
/// If the rebuild fails (or the process dies), the model readers see is
/// untouched and the partial generation is removed (on sled, at the latest
/// by the next open).
pub async fn rebuild(
    store: &dyn EventStore,
    model: &ModelStore,
    projection: &dyn Projection,
    options: RebuildOptions,
    mut progress: impl FnMut(RebuildProgress) + Send,
) -> Result<RebuildReport, ProjectionError> {
    let name = projection.name();
    if name != model.name() {
        return Err(ProjectionError::NameMismatch {
            model: model.name().to_string(),
            projection: name.to_string(),
        });
    }
    let started = Instant::now();
    let batch_size = options.batch_size.max(1);
    let building = model.begin_generation()?;
    let mut total = head(store, name).await?;
    info!(
        projection = name,
        generation = building.id(),
        total,
        "rebuilding read model"
    );
    progress(RebuildProgress { done: 0, total });
    let mut done = 0;
    // Catch up without holding anything up, until at most a batch is left.
    loop {
        total = total.max(head(store, name).await?);
        if total - done <= batch_size as u64 {
            break;
        }
        done = replay_batch(store, &building, projection, done, batch_size, u64::MAX).await?;
        progress(RebuildProgress { done, total });
    }
    // The rest with the live runner's commits held off, up to the head seen
    // now; the live runner takes over from there after the swap.
    let _commits = model.lock_commits().await;
    let target = head(store, name).await?;
    total = total.max(target);
    while done < target {
        done = replay_batch(store, &building, projection, done, batch_size, target).await?;
        progress(RebuildProgress { done, total });
    }
    let generation = building.id();
    building.swap_in(done)?;
    let elapsed = started.elapsed();
    info!(
        projection = name,
        generation,
        events = done,
        ?elapsed,
        "rebuilt read model swapped in"
    );
    Ok(RebuildReport {
        events: done,
        generation,
        elapsed,
    })
}

/// Replays the events after `done` (at most `limit` and up to `until`) into
/// the generation being built; returns the position reached.
async fn replay_batch(
    store: &dyn EventStore,
    building: &Building,
    projection: &dyn Projection,
    done: u64,
    limit: usize,
    until: u64,
) -> Result<u64, ProjectionError> {
    let name = projection.name();
    let span = info_span!(
        "rebuild_batch",
        projection = name,
        first = done + 1,
        events = tracing::field::Empty
    );
    async {
        let mut events = store
            .read_all(done + 1, limit)
            .await
            .map_err(|e| ProjectionError::store(name, e))?;
        events.retain(|e| e.position <= until);
        tracing::Span::current().record("events", events.len());
        let mut ws = building.write_set();
        let mut next = done + 1;
        for event in &events {
            check_and_apply(projection, event, next, &mut ws)?;
            next += 1;
        }
        if next == done + 1 {
            return Ok(done);
        }
        building.commit(ws, next - 1)?;
        Ok(next - 1)
    }
    .instrument(span)
    .await
}

fn check_and_apply(
    projection: &dyn Projection,
    event: &RecordedEvent,
    expected: u64,
    ws: &mut crate::model::WriteSet,
) -> Result<(), ProjectionError> {
    let name = projection.name();
    if event.position != expected {
        return Err(ProjectionError::OutOfOrder {
            projection: name.to_string(),
            expected,
            got: event.position,
        });
    }
    projection.apply(event, ws).map_err(|source| ProjectionError::Apply {
        projection: name.to_string(),
        position: event.position,
        stream: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        source: Box::new(source),
    })
}

async fn head(store: &dyn EventStore, name: &str) -> Result<u64, ProjectionError> {
    store.head_position().await.map_err(|e| ProjectionError::store(name, e))
}
