//! The runner: catches a projection up from its checkpoint, then follows
//! the log, one atomic commit per batch.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use strata_store::{EventStore, RecordedEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backend::{Checkpoint, Commit};
use crate::catch_up::{CaughtUp, catch_up};
use crate::error::ProjectionError;
use crate::model::run_state::RunState;
use crate::model::store::ModelStore;
use crate::projection::Projection;

/// How a runner batches its work.
#[derive(Clone, Copy, Debug)]
pub struct RunnerOptions {
    /// The most events applied and committed as one atomic write (default
    /// 512). When the runner is behind, batches are full; when it keeps up,
    /// a batch holds whatever has arrived since the last one.
    pub batch_size: usize,
    /// When the runner starts (or a rebuild swaps a generation in) more
    /// than `batch_size` events behind the log, it first catches up the
    /// way a rebuild folds: large reads into one write set, committed with
    /// its checkpoint when it holds this many changed keys (default
    /// 16,384; or 64 MiB), then follows the subscription.
    pub catch_up_keys: usize,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 512,
            catch_up_keys: 16_384,
        }
    }
}

/// A projection following the log into its read model, in a tokio task.
///
/// Started with [`ProjectionRunner::start`]; it runs until [`stop`](Self::stop)
/// or until it fails (an `apply` error, a store error), which it reports
/// through [`join`](Self::join) / [`stop`](Self::stop) and the model's
/// [`RunState`]. A panic in the task (in a projection's `apply`, in sled)
/// also ends it: the model is released with [`RunState::Failed`] carrying
/// the panic's message, so waiters learn at once and a new runner can
/// start; `join`/`stop` re-raise the panic. Dropping the handle stops the runner too; nothing is lost,
/// since every commit is atomic.
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    model: ModelStore,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ProjectionError>>>,
}

impl ProjectionRunner {
    /// Starts `projection` on `model`: it applies every event after the
    /// model's checkpoint, then follows `subscribe_all(checkpoint)`.
    ///
    /// Must be called inside a tokio runtime. Errors with
    /// [`ProjectionError::CheckpointAhead`] when the checkpoint is beyond the
    /// log's head, [`ProjectionError::CheckpointMismatch`] when the log holds
    /// another event at the checkpoint than the one the model applied (see
    /// there; a rebuild fixes both), [`ProjectionError::ModelVersionMismatch`]
    /// when the model holds events applied by another
    /// [model version](Projection::model_version) of the projection (a
    /// rebuild fixes it too), [`ProjectionError::AlreadyRunning`] when a
    /// runner owns the model, [`ProjectionError::NameMismatch`] when the
    /// model was opened for another projection.
    pub async fn start(
        store: Arc<dyn EventStore>,
        model: ModelStore,
        projection: Arc<dyn Projection>,
        options: RunnerOptions,
    ) -> Result<ProjectionRunner, ProjectionError> {
        let name = projection.name().to_string();
        if name != model.name() {
            return Err(ProjectionError::NameMismatch {
                model: model.name().to_string(),
                projection: name,
            });
        }
        if !model.claim() {
            return Err(ProjectionError::AlreadyRunning { projection: name });
        }
        let checked = match model.check_model_version(projection.model_version()) {
            Ok(()) => check_checkpoint(&*store, &model, &name).await,
            Err(e) => Err(e),
        };
        let (checkpoint, head) = match checked {
            Ok(point) => point,
            Err(e) => {
                model.release(RunState::Stopped);
                return Err(e);
            }
        };
        info!(projection = %name, checkpoint, head, lag = head - checkpoint, "starting projection");
        let (stop, stop_rx) = watch::channel(false);
        let task = {
            let store = store.clone();
            let model = model.clone();
            tokio::spawn(async move {
                // Releases the claim however the task ends: returning,
                // panicking (in a projection's apply, in sled), or dropped
                // with its runtime.
                let mut claim = Claim {
                    model: model.clone(),
                    ended: None,
                };
                let following = lead_and_follow(&*store, &model, &*projection, options, stop_rx);
                let result = match AssertUnwindSafe(following).catch_unwind().await {
                    Ok(result) => result,
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        error!(projection = %model.name(), panic = %message, "projection runner panicked");
                        claim.ended = Some(RunState::Failed {
                            position: None,
                            error: format!("projection {} panicked: {message}", model.name()),
                        });
                        drop(claim);
                        std::panic::resume_unwind(panic);
                    }
                };
                claim.ended = Some(match &result {
                    Ok(()) => RunState::Stopped,
                    Err(e) => {
                        warn!(projection = %model.name(), error = %e, "projection stopped on an error");
                        RunState::Failed {
                            position: match e {
                                ProjectionError::Apply { position, .. } => Some(*position),
                                _ => None,
                            },
                            error: e.to_string(),
                        }
                    }
                });
                result
            })
        };
        Ok(ProjectionRunner {
            store,
            model,
            stop,
            task: Some(task),
        })
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        self.model.name()
    }

    /// The read model it writes to.
    pub fn model(&self) -> &ModelStore {
        &self.model
    }

    /// The position of the last event applied and committed.
    pub fn checkpoint(&self) -> u64 {
        self.model.checkpoint()
    }

    /// How many events of the log are not applied yet: the head position
    /// minus the checkpoint, now.
    pub async fn lag(&self) -> Result<u64, ProjectionError> {
        let head = self
            .store
            .head_position()
            .await
            .map_err(|e| ProjectionError::store(self.name(), e))?;
        Ok(head.saturating_sub(self.model.checkpoint()))
    }

    /// Waits until `position` is applied; see [`ModelStore::wait_for`].
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        self.model.wait_for(position, timeout).await
    }

    /// Whether the runner is still following the log.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the runner after the batch it is committing, and returns how
    /// it ended: `Ok` when it was running, its error when it had failed.
    pub async fn stop(mut self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        self.finish().await
    }

    /// Waits until the runner ends by itself (it fails, or the store
    /// closes) and returns its error.
    pub async fn join(mut self) -> Result<(), ProjectionError> {
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), ProjectionError> {
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("model", &self.model)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl Drop for ProjectionRunner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Checks that the model's checkpoint names an event of this log: not
/// beyond its head, and (when the model recorded it) the same event the
/// model applied there. Returns the checkpoint and the head.
async fn check_checkpoint(
    store: &dyn EventStore,
    model: &ModelStore,
    name: &str,
) -> Result<(u64, u64), ProjectionError> {
    let head = store
        .head_position()
        .await
        .map_err(|e| ProjectionError::store(name, e))?;
    let (checkpoint, applied) = model.stored_checkpoint()?;
    if checkpoint > head {
        return Err(ProjectionError::CheckpointAhead {
            projection: name.to_string(),
            checkpoint,
            head,
        });
    }
    if checkpoint == 0 {
        return Ok((checkpoint, head));
    }
    let Some(expected) = applied else {
        debug!(
            projection = name,
            checkpoint, "no event id recorded with the checkpoint (an older model); not compared"
        );
        return Ok((checkpoint, head));
    };
    let found = store
        .read_all(checkpoint, 1)
        .await
        .map_err(|e| ProjectionError::store(name, e))?
        .into_iter()
        .find(|e| e.position == checkpoint)
        .map(|e| e.id);
    if found.is_none() {
        // The event at the checkpoint was removed since (its stream was
        // deleted or truncated): the position is at or below the head and
        // the log skips it; nothing to compare.
        debug!(
            projection = name,
            checkpoint, "the event at the checkpoint was removed from the log; not compared"
        );
        return Ok((checkpoint, head));
    }
    if found != Some(expected) {
        return Err(ProjectionError::CheckpointMismatch {
            projection: name.to_string(),
            checkpoint,
            expected,
            found,
        });
    }
    Ok((checkpoint, head))
}

/// A runner task's claim on its model: released on drop with how the task
/// ended (`Stopped` if it was dropped before it could say, e.g. with its
/// runtime), so the model never stays claimed by a task that is gone.
struct Claim {
    model: ModelStore,
    ended: Option<RunState>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let ended = self.ended.take().unwrap_or_else(|| {
            if std::thread::panicking() {
                RunState::Failed {
                    position: None,
                    error: format!("projection {} panicked", self.model.name()),
                }
            } else {
                RunState::Stopped
            }
        });
        self.model.release(ended);
    }
}

/// The text of a panic's payload, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// What committing a batch did.
enum Committed {
    /// Applied and committed up to this position.
    Through(u64),
    /// A rebuild swapped in another generation: nothing was committed;
    /// resubscribe from the new generation's checkpoint.
    GenerationChanged,
    /// PostgreSQL: the writer lock was lost; wait for it again.
    LeaseLost,
}

/// How following the log ended without an error.
enum Followed {
    Stopped,
    /// PostgreSQL: the writer lock was lost.
    LeaseLost,
}

/// Waits until this process may write the model (at once for sled and
/// memory; in PostgreSQL, once it holds the model's writer lock, following
/// the writing process's commits meanwhile), then follows the log; goes
/// back to waiting when the lock is lost.
async fn lead_and_follow(
    store: &dyn EventStore,
    model: &ModelStore,
    projection: &dyn Projection,
    options: RunnerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    loop {
        if !model.lead(&mut stop).await? {
            return Ok(());
        }
        match follow(store, model, projection, options, &mut stop).await? {
            Followed::Stopped => return Ok(()),
            Followed::LeaseLost => {
                warn!(
                    projection = projection.name(),
                    "lost the read model's writer lock; waiting to take it again"
                );
                model.step_down();
            }
        }
    }
}

async fn follow(
    store: &dyn EventStore,
    model: &ModelStore,
    projection: &dyn Projection,
    options: RunnerOptions,
    stop: &mut watch::Receiver<bool>,
) -> Result<Followed, ProjectionError> {
    let name = projection.name();
    let batch_size = options.batch_size.max(1);
    'subscribe: loop {
        // The subscription belongs to this generation: its events are
        // applied to it and to no other (see `apply_batch`).
        let (generation, checkpoint) = model.follow_point().await;
        // A generation swapped in by another process (PostgreSQL) may have
        // been written by another version of the projection.
        model.check_model_version(projection.model_version())?;
        // Far behind: the batched path first.
        let limits = (batch_size, options.catch_up_keys.max(1));
        let checkpoint = match catch_up(store, model, projection, (generation, checkpoint), limits, stop).await? {
            CaughtUp::Near(checkpoint) => checkpoint,
            CaughtUp::GenerationChanged => continue 'subscribe,
            CaughtUp::LeaseLost => return Ok(Followed::LeaseLost),
            CaughtUp::Stopped => return Ok(Followed::Stopped),
        };
        debug!(projection = name, checkpoint, generation, "subscribing");
        let mut events = store.subscribe_all(checkpoint).ready_chunks(batch_size);
        let mut next = checkpoint + 1;
        loop {
            let chunk = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ok(Followed::Stopped),
                chunk = events.next() => chunk,
            };
            let Some(chunk) = chunk else {
                return Err(ProjectionError::store(
                    name,
                    strata_store::StoreError::Unavailable {
                        reason: "the subscription ended".into(),
                    },
                ));
            };
            let mut batch = Vec::with_capacity(chunk.len());
            let mut failure = None;
            for item in chunk {
                match item {
                    Ok(event) => batch.push(event),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                let span = info_span!(
                    "projection_batch",
                    projection = name,
                    first = next,
                    events = batch.len(),
                    lag = tracing::field::Empty
                );
                match apply_batch(store, model, projection, generation, next, &batch)
                    .instrument(span)
                    .await?
                {
                    Committed::Through(last) => next = last + 1,
                    Committed::LeaseLost => return Ok(Followed::LeaseLost),
                    Committed::GenerationChanged => {
                        info!(
                            projection = name,
                            "a rebuild was swapped in; following from its checkpoint"
                        );
                        continue 'subscribe;
                    }
                }
            }
            if let Some(e) = failure {
                return Err(ProjectionError::store(name, e));
            }
        }
    }
}

/// Applies `batch` (starting at position `next`) to one write set on
/// `generation`, the generation the subscription started from, and commits
/// it with the checkpoint. When an event fails, commits the events before it
/// and returns the failure.
///
/// If a rebuild swapped in another generation since the subscription
/// started, nothing is applied or committed: the new generation already
/// holds what its rebuild replayed, possibly this very batch, so the
/// runner resubscribes from its checkpoint instead
/// ([`Committed::GenerationChanged`]).
async fn apply_batch(
    store: &dyn EventStore,
    model: &ModelStore,
    projection: &dyn Projection,
    generation: u64,
    next: u64,
    batch: &[RecordedEvent],
) -> Result<Committed, ProjectionError> {
    let name = projection.name();
    let Some(mut ws) = model.write_set_on(generation, next - 1, projection.model_version()) else {
        return Ok(Committed::GenerationChanged);
    };
    // Positions increase; one skipped was removed (a deleted or truncated
    // stream's event, see strata-store's `EventStore` contract).
    let mut previous = next - 1;
    for (i, event) in batch.iter().enumerate() {
        let failure = if event.position <= previous {
            ProjectionError::OutOfOrder {
                projection: name.to_string(),
                expected: previous + 1,
                got: event.position,
            }
        } else {
            match projection.apply(event, &mut ws) {
                Ok(()) => {
                    previous = event.position;
                    continue;
                }
                Err(source) => ProjectionError::Apply {
                    projection: name.to_string(),
                    position: event.position,
                    stream: event.stream_id.clone(),
                    event_type: event.event_type.clone(),
                    source: Box::new(source),
                },
            }
        };
        // The write set holds part of the failed event's changes: stage the
        // events before it again, without it, and commit those, still only
        // to the subscription's generation. If a rebuild swapped in another
        // meanwhile, the failure was met on a model no longer served: follow
        // the new one instead.
        drop(ws);
        if i > 0 {
            let Some(mut clean) = model.write_set_on(generation, next - 1, projection.model_version()) else {
                return Ok(Committed::GenerationChanged);
            };
            for event in &batch[..i] {
                projection
                    .apply(event, &mut clean)
                    .map_err(|source| ProjectionError::Apply {
                        projection: name.to_string(),
                        position: event.position,
                        stream: event.stream_id.clone(),
                        event_type: event.event_type.clone(),
                        source: Box::new(source),
                    })?;
            }
            match model.commit(clean, Checkpoint::of(&batch[i - 1])).await? {
                Commit::Done => {}
                Commit::Stale => return Ok(Committed::GenerationChanged),
                Commit::LeaseLost => return Ok(Committed::LeaseLost),
            }
        } else if model.generation() != generation {
            return Ok(Committed::GenerationChanged);
        }
        return Err(failure);
    }
    let last = batch.last().expect("a batch is not empty");
    match model.commit(ws, Checkpoint::of(last)).await? {
        Commit::Done => {}
        Commit::Stale => return Ok(Committed::GenerationChanged),
        Commit::LeaseLost => return Ok(Committed::LeaseLost),
    }
    let last = last.position;
    if let Ok(head) = store.head_position().await {
        tracing::Span::current().record("lag", head.saturating_sub(last));
    }
    Ok(Committed::Through(last))
}
