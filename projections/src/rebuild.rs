//! `rebuild`: a fresh copy of a read model, replayed from position 1 and
//! swapped in when it has caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_store::{EventStore, RecordedEvent};
use tracing::{Instrument, debug, info, info_span};

use crate::backend::Checkpoint;
use crate::error::ProjectionError;
use crate::model::building::Building;
use crate::model::store::ModelStore;
use crate::model::write_set::WriteSet;
use crate::projection::Projection;
use crate::threads::drop_elsewhere;

mod lanes;
mod read_ahead;

use read_ahead::{Page, ReadAhead};

/// Pages of at least this many events are freed on another thread.
const DROP_ELSEWHERE_MIN: usize = 256;

/// How a rebuild batches its work.
///
/// A rebuild folds the log into memory and writes the read models when
/// the fold holds `flush_bytes` (or one model `flush_keys` changed keys),
/// and once more before the swap: on a log whose models fit in the budget,
/// every key is written once, with its final value, and a key the fold
/// puts and removes again (an order's old status in the status index) is
/// never written at all.
#[derive(Clone, Copy, Debug)]
pub struct RebuildOptions {
    /// Events read from the log at a time (default 16,384: a rebuild
    /// folds a page into its models side by side, and a longer page holds
    /// them up at fewer joins; 4,096 before issue 14's third pass).
    pub batch_size: usize,
    /// Changed keys one model's fold may hold before it is committed, with
    /// its checkpoint, in one atomic write (default: no limit of its own;
    /// `flush_bytes` decides).
    pub flush_keys: usize,
    /// Memory, roughly, that the fold of every model together may hold
    /// (changed keys, their values and their bookkeeping) before it is
    /// committed (default 256 MiB). A key that many events change is
    /// written once per commit.
    pub flush_bytes: usize,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            batch_size: 16384,
            flush_keys: usize::MAX,
            flush_bytes: 256 << 20,
        }
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
    /// Time since the rebuild started.
    pub elapsed: Duration,
}

impl RebuildProgress {
    /// Events replayed per second so far (0 before any).
    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.done as f64 / secs } else { 0.0 }
    }

    /// The time left at the rate so far (`None` before the first events
    /// are replayed). Writers appending meanwhile make it longer.
    pub fn remaining(&self) -> Option<Duration> {
        let rate = self.events_per_sec();
        (rate > 0.0).then(|| Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate))
    }
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
    progress: impl FnMut(RebuildProgress) + Send,
) -> Result<RebuildReport, ProjectionError> {
    let mut reports = rebuild_all(store, &[(model, projection)], options, progress).await?;
    Ok(reports.pop().expect("one report per model"))
}

/// Rebuilds several read models in one pass over the log: each event is
/// read once and applied to every projection's fresh generation; all are
/// swapped in together once caught up: on sled, their generation pointers
/// are written in one transaction, so a crash leaves every model on its
/// new generation or every model on its old one (models in different sled
/// databases are swapped one database at a time). Otherwise as
/// [`rebuild`]; if any projection fails, none is swapped in. Returns a report per model, in
/// the order given.
pub async fn rebuild_all(
    store: &dyn EventStore,
    targets: &[(&ModelStore, &dyn Projection)],
    options: RebuildOptions,
    progress: impl FnMut(RebuildProgress) + Send,
) -> Result<Vec<RebuildReport>, ProjectionError> {
    rebuild_all_if(store, targets, options, progress, None, None).await
}

/// Whether a model still needs the rebuild its caller asked for.
pub(crate) type StillNeeded<'a> = &'a (dyn Fn(&ModelStore, &dyn Projection) -> bool + Sync);

/// [`rebuild_all`], unless `still_needed` says, once every model's rebuild
/// lock is held and its copy brought up to what is committed, that no
/// model needs it any more (another process rebuilt them while this one
/// waited for the locks): then nothing is rebuilt and no report returned.
///
/// Given `read_ahead` (the same store, shared), the catch-up reads the log
/// on a task of its own, ahead of the fold ([`ReadAhead`]).
pub(crate) async fn rebuild_all_if(
    store: &dyn EventStore,
    targets: &[(&ModelStore, &dyn Projection)],
    options: RebuildOptions,
    mut progress: impl FnMut(RebuildProgress) + Send,
    still_needed: Option<StillNeeded<'_>>,
    read_ahead: Option<Arc<dyn EventStore>>,
) -> Result<Vec<RebuildReport>, ProjectionError> {
    for (i, (model, projection)) in targets.iter().enumerate() {
        if projection.name() != model.name() {
            return Err(ProjectionError::NameMismatch {
                model: model.name().to_string(),
                projection: projection.name().to_string(),
            });
        }
        if targets[..i].iter().any(|(m, _)| m.name() == model.name()) {
            return Err(ProjectionError::DuplicateModel {
                projection: model.name().to_string(),
            });
        }
    }
    let Some((first, _)) = targets.first() else {
        return Ok(Vec::new());
    };
    let name = first.name();
    let started = Instant::now();
    let batch_size = options.batch_size.max(1);
    let mut replay = Replay {
        models: Vec::with_capacity(targets.len()),
        flush_keys: options.flush_keys.max(1),
        flush_bytes: options.flush_bytes.max(1),
    };
    for (model, projection) in targets {
        replay.models.push(Target {
            building: model.begin_generation().await?,
            projection: *projection,
            pending: None,
            cost: Duration::ZERO,
        });
    }
    if let Some(still_needed) = still_needed {
        // What another process committed while this one waited for the
        // locks decides it.
        for (model, _) in targets {
            model.refresh().await?;
        }
        if !targets
            .iter()
            .any(|(model, projection)| still_needed(model, *projection))
        {
            info!(
                projection = name,
                "rebuild no longer needed: done meanwhile by another process"
            );
            return Ok(Vec::new());
        }
    }
    let mut total = head(store, name).await?;
    for t in &replay.models {
        info!(
            projection = t.projection.name(),
            generation = t.building.id(),
            total,
            "rebuilding read model"
        );
    }
    let mut report = |done, total| {
        progress(RebuildProgress {
            done,
            total,
            elapsed: started.elapsed(),
        })
    };
    report(0, total);
    let mut done = 0;
    let (mut read_ahead, mut ahead) = (read_ahead, None);
    // Catch up without holding anything up, until at most a batch is left.
    loop {
        total = total.max(head(store, name).await?);
        if total - done <= batch_size as u64 {
            break;
        }
        // Started only when there is more than a batch to read.
        if let Some(shared) = read_ahead.take() {
            ahead = Some(ReadAhead::start(shared, name, done, batch_size));
        }
        let page = match ahead.as_mut() {
            Some(ahead) => ahead.next().await,
            None => None,
        };
        done = match page {
            Some(page) => replay.fold(page?, done, u64::MAX).await?,
            // The read-ahead reached the head (or there is none): read in turn.
            None => {
                ahead = None;
                replay.batch(store, done, batch_size, u64::MAX).await?
            }
        };
        report(done, total);
    }
    drop(ahead);
    // What is folded is written before the live runners are held off: the
    // largest write of the rebuild does not stall them.
    replay.flush().await?;
    // The rest with the live runners' commits held off, up to the head seen
    // now; the live runners take over from there after the swap. (Runners
    // take one model's lock at a time, so taking several here cannot deadlock.)
    let mut locks = Vec::with_capacity(targets.len());
    for (model, _) in targets {
        locks.push(model.lock_commits().await);
    }
    let ids: Vec<u64> = replay.models.iter().map(|t| t.building.id()).collect();
    let mut target = head(store, name).await?;
    loop {
        total = total.max(target);
        while done < target {
            done = replay.batch(store, done, batch_size, target).await?;
            report(done, total);
        }
        replay.flush().await?;
        // All pointers in one atomic write: no crash leaves some models on
        // their new generation and others on their old one. In PostgreSQL a
        // runner of another process may have committed past `done`
        // meanwhile: then replay up to there first, so no reader's model
        // goes back.
        let buildings = replay.models.iter_mut().map(|t| &mut t.building).collect();
        let swapping = Instant::now();
        let swapped = Building::swap_in_all(buildings, done).await?;
        debug!(projection = name, took = ?swapping.elapsed(), "rebuild: swap");
        match swapped {
            None => break,
            Some(live) => {
                debug!(
                    projection = name,
                    done, live, "a live runner is ahead of the rebuild; replaying up to it"
                );
                target = live.max(head(store, name).await?);
            }
        }
    }
    let elapsed = started.elapsed();
    let names: Vec<&str> = replay.models.iter().map(|t| t.projection.name()).collect();
    let reports: Vec<RebuildReport> = ids
        .iter()
        .map(|&generation| RebuildReport {
            events: done,
            generation,
            elapsed,
        })
        .collect();
    drop(replay);
    drop(locks);
    for (name, report) in names.iter().zip(&reports) {
        info!(
            projection = name,
            generation = report.generation,
            events = done,
            ?elapsed,
            "rebuilt read model swapped in"
        );
    }
    Ok(reports)
}

/// The generations being rebuilt, each with a write set its events are
/// folded into until the write sets together hold `flush_bytes` (or one
/// holds `flush_keys` changed keys, or the rebuild is about to swap), then
/// all committed with the last event's checkpoint: the fold's reads hit
/// its own staged changes, and a key that many events change (a count, a
/// busy SKU) is written once per commit, not once per batch read from the
/// log.
struct Replay<'a> {
    models: Vec<Target<'a>>,
    flush_keys: usize,
    flush_bytes: usize,
}

struct Target<'a> {
    building: Building,
    projection: &'a dyn Projection,
    /// Folded but not committed yet, and the checkpoint it reaches.
    pending: Option<(WriteSet, Checkpoint)>,
    /// How long folding the last page into this model took (how the
    /// models are dealt to lanes, see [`lanes`]).
    cost: Duration,
}

impl Replay<'_> {
    /// Folds the events after `done` (at most `limit` and up to `until`)
    /// into the generations being built; returns the position reached.
    async fn batch(
        &mut self,
        store: &dyn EventStore,
        done: u64,
        limit: usize,
        until: u64,
    ) -> Result<u64, ProjectionError> {
        let page = Page::read(store, self.models[0].projection.name(), done, limit).await?;
        self.fold(page, done, until).await
    }

    /// Folds `page`, the events read after `done`, up to `until` into the
    /// generations being built; returns the position reached.
    async fn fold(&mut self, page: Page, done: u64, until: u64) -> Result<u64, ProjectionError> {
        let name = self.models[0].projection.name();
        let span = info_span!(
            "rebuild_batch",
            projection = name,
            models = self.models.len(),
            first = done + 1,
            events = tracing::field::Empty
        );
        async {
            let Page {
                head_before,
                mut events,
            } = page;
            events.retain(|e| e.position <= until);
            tracing::Span::current().record("events", events.len());
            // Every position up to the head taken before the read that the
            // read skips is removed: the replay moves past it.
            let Some(last) = events.last().map(Checkpoint::of) else {
                return Ok(done.max(head_before.min(until)));
            };
            lanes::fold_page(&mut self.models, &events, done, last)?;
            // A short page is cheaper to drop than to hand over.
            if events.len() >= DROP_ELSEWHERE_MIN {
                drop_elsewhere(events);
            }
            let (mut bytes, mut full) = (0, false);
            for (ws, _) in self.models.iter().filter_map(|t| t.pending.as_ref()) {
                bytes += ws.staged_bytes();
                full |= ws.len() >= self.flush_keys;
            }
            if full || bytes >= self.flush_bytes {
                self.flush().await?;
            }
            Ok(last.position)
        }
        .instrument(span)
        .await
    }

    /// Commits what is folded and not committed yet.
    async fn flush(&mut self) -> Result<(), ProjectionError> {
        for t in &mut self.models {
            if let Some((ws, at)) = t.pending.take() {
                let (keys, bytes, started) = (ws.len(), ws.staged_bytes(), Instant::now());
                t.building.commit(ws, at).await?;
                debug!(
                    projection = t.projection.name(),
                    keys,
                    bytes,
                    checkpoint = at.position,
                    took = ?started.elapsed(),
                    "rebuild: committed what is folded"
                );
            }
        }
        Ok(())
    }
}

/// Applies `event`, which must come after position `previous` (a position
/// skipped between them was removed from the log).
fn check_and_apply(
    projection: &dyn Projection,
    event: &RecordedEvent,
    previous: u64,
    ws: &mut WriteSet,
) -> Result<(), ProjectionError> {
    let name = projection.name();
    if event.position <= previous {
        return Err(ProjectionError::OutOfOrder {
            projection: name.to_string(),
            expected: previous + 1,
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

#[cfg(test)]
mod tests;
