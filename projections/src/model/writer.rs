//! The writing side of a [`ModelStore`]: the runner's claim and lease,
//! write sets on the current generation, commits and refreshes.

use std::sync::atomic::Ordering;

use strata_store::EventId;
use tokio::sync::{MutexGuard, watch};
use tracing::{info, warn};

use super::run_state::RunState;
use super::store::ModelStore;
use super::write_set::WriteSet;
use crate::backend::{Checkpoint, Commit, Refresh};
use crate::error::ProjectionError;

impl ModelStore {
    /// Marks the model as owned by a runner of this process; false if one
    /// already owns it (the in-process claim). The runner is `Running` at
    /// once, except on a shared backend (PostgreSQL), where it stands by
    /// until [`ModelStore::lead`] has the lease.
    pub(crate) fn claim(&self) -> bool {
        let owned = if self.inner.backend.shared() {
            RunState::Standby
        } else {
            RunState::Running
        };
        self.inner.state.send_if_modified(|s| {
            if s.is_owned() {
                false
            } else {
                *s = owned;
                true
            }
        })
    }

    /// Records how the runner that owned the model ended, and gives up the
    /// lease.
    pub(crate) fn release(&self, ended: RunState) {
        self.inner.leased.store(false, Ordering::Release);
        self.inner.backend.drop_lease();
        self.inner.state.send_replace(ended);
    }

    /// Waits until this process may write the model: takes the backend's
    /// lease (at once for sled and memory, whose one process writes them;
    /// in PostgreSQL the model's advisory lock, waiting in
    /// [`RunState::Standby`] while another process holds it and trying
    /// again every retry interval), then refreshes the current generation
    /// to what the last writer committed. Returns false when `stop` fires
    /// first.
    pub(crate) async fn lead(&self, stop: &mut watch::Receiver<bool>) -> Result<bool, ProjectionError> {
        let backend = &self.inner.backend;
        let mut announced = false;
        loop {
            let got = match backend.try_lease().await {
                Ok(true) => match self.refresh().await {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(projection = %self.inner.name, error = %e, "cannot refresh the read model after taking its lease; trying again");
                        backend.drop_lease();
                        false
                    }
                },
                Ok(false) => false,
                Err(e) => {
                    warn!(projection = %self.inner.name, error = %e, "cannot take the read model's lease; trying again");
                    false
                }
            };
            if got {
                self.inner.leased.store(true, Ordering::Release);
                self.set_run_state(RunState::Running);
                if backend.shared() {
                    info!(projection = %self.inner.name, checkpoint = self.checkpoint(), "this process writes the read model");
                }
                return Ok(true);
            }
            if !announced {
                announced = true;
                info!(projection = %self.inner.name, "another process writes the read model; following its commits");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(false),
                _ = tokio::time::sleep(backend.retry_interval()) => {}
            }
        }
    }

    /// Gives up writing (after the lease was lost) and waits in
    /// [`RunState::Standby`] until [`ModelStore::lead`] again.
    pub(crate) fn step_down(&self) {
        self.inner.leased.store(false, Ordering::Release);
        self.inner.backend.drop_lease();
        self.set_run_state(RunState::Standby);
    }

    /// Sets the state of the runner that owns the model (Running/Standby).
    fn set_run_state(&self, state: RunState) {
        self.inner.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    /// The current generation and its checkpoint, read together: a swap
    /// (done under the commit lock) cannot fall between the two reads. A
    /// runner subscribes from this checkpoint and writes only to this
    /// generation.
    pub(crate) async fn follow_point(&self) -> (u64, u64) {
        let _guard = self.inner.commit.lock().await;
        (self.generation(), self.checkpoint())
    }

    /// The checkpoint stored in the current generation and the id of the
    /// event at it (`None` before the first commit, or if written by a
    /// version that did not record it).
    pub(crate) fn stored_checkpoint(&self) -> Result<(u64, Option<EventId>), ProjectionError> {
        let stored = self.reader().stored()?;
        Ok((stored.position, stored.event_id))
    }

    /// Errors with [`ProjectionError::ModelVersionMismatch`] when the model
    /// readers see holds events (its checkpoint is above 0) applied by a
    /// projection of another model version than `expected`. An empty model
    /// fits every version: its first commit records the runner's.
    pub(crate) fn check_model_version(&self, expected: u64) -> Result<(), ProjectionError> {
        let stored = self.reader().stored()?;
        if stored.position == 0 || stored.model_version == expected {
            Ok(())
        } else {
            Err(ProjectionError::ModelVersionMismatch {
                projection: self.inner.name.clone(),
                stored: stored.model_version,
                expected,
            })
        }
    }

    /// A fresh write set over generation `generation`, if it is still the
    /// current one (`None` once a rebuild swapped in another), for a batch
    /// staged on checkpoint `base` (the position before its first event) by
    /// a projection of `model_version`. Its commit is refused unless the
    /// checkpoint is still `base`: a batch staged before another writer's
    /// commit can never land after it.
    pub(crate) fn write_set_on(&self, generation: u64, base: u64, model_version: u64) -> Option<WriteSet> {
        let current = self.current();
        (current.id() == generation).then(|| WriteSet::new(current, &self.inner.name, model_version, base))
    }

    /// Commits a write set and its checkpoint to the current generation, if
    /// it is still the one the write set was staged on, on the checkpoint
    /// it was staged on, and this process holds the lease ([`ModelStore::lead`]);
    /// otherwise writes nothing and says so ([`Commit::Stale`], after
    /// refreshing to what is committed, or [`Commit::LeaseLost`]).
    pub(crate) async fn commit(&self, ws: WriteSet, at: Checkpoint) -> Result<Commit, ProjectionError> {
        let guard = self.inner.commit.lock().await;
        if self.current().id() != ws.generation().id() {
            return Ok(Commit::Stale);
        }
        if !self.inner.leased.load(Ordering::Acquire) {
            return Ok(Commit::LeaseLost);
        }
        let (generation, batch) = ws.into_batch(at)?;
        match generation.commit(batch).await? {
            Commit::Done => {
                self.inner.applied.send_replace(at.position);
                Ok(Commit::Done)
            }
            Commit::Stale => {
                // Learn what is committed (another writer's batch, another
                // generation), then follow on from there.
                self.refresh_locked(&guard).await?;
                Ok(Commit::Stale)
            }
            Commit::LeaseLost => Ok(Commit::LeaseLost),
        }
    }

    /// Brings the current generation up to what is committed (another
    /// process's commits, or a swap); nothing for backends whose current
    /// generation is the committed model.
    pub(crate) async fn refresh(&self) -> Result<(), ProjectionError> {
        let guard = self.inner.commit.lock().await;
        self.refresh_locked(&guard).await
    }

    async fn refresh_locked(&self, _commit_lock: &MutexGuard<'_, ()>) -> Result<(), ProjectionError> {
        match self.current().refresh().await? {
            Refresh::Unchanged => {}
            Refresh::Advanced { checkpoint } => {
                self.inner.applied.send_replace(checkpoint);
            }
            Refresh::Replaced { generation, checkpoint } => {
                info!(
                    projection = %self.inner.name,
                    generation = generation.id(),
                    checkpoint,
                    "a rebuilt generation was swapped in"
                );
                let old = std::mem::replace(
                    &mut *self.inner.current.write().unwrap_or_else(|p| p.into_inner()),
                    generation,
                );
                old.retire();
                self.inner.applied.send_replace(checkpoint);
            }
        }
        Ok(())
    }

    /// Takes the commit lock: while it is held, the live runner cannot commit.
    pub(crate) async fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.inner.commit.lock().await
    }
}
