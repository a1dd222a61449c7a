//! Generations being rebuilt, and the swap that makes them current.

use tokio::sync::OwnedMutexGuard;

use super::store::ModelStore;
use super::write_set::WriteSet;
use crate::backend::{Checkpoint, Commit, GenerationRef, Swapped};
use crate::codec::corrupt;
use crate::error::ProjectionError;

impl ModelStore {
    /// Starts a new, empty generation that readers do not see. Waits while
    /// another rebuild of this model is under way (in this process; in
    /// PostgreSQL, in any process).
    pub(crate) async fn begin_generation(&self) -> Result<Building, ProjectionError> {
        let one_rebuild = self.inner.rebuild.clone().lock_owned().await;
        let generation = self.inner.backend.begin_generation().await?;
        Ok(Building {
            model: self.clone(),
            generation,
            checkpoint: 0,
            _one_rebuild: one_rebuild,
        })
    }
}

/// A generation being rebuilt. Dropped without being swapped in (and once
/// no write set on it is left), it is removed.
pub(crate) struct Building {
    model: ModelStore,
    generation: GenerationRef,
    /// What is committed to it so far.
    checkpoint: u64,
    _one_rebuild: OwnedMutexGuard<()>,
}

impl Building {
    /// A write set for a projection of `model_version`, on what is
    /// committed so far. Before the first commit the generation holds
    /// nothing (a new tree, rows under an id never used before, a new map)
    /// and only this rebuild writes it: the write set knows it is fresh
    /// (see `WriteSet::on_fresh`).
    pub(crate) fn write_set(&self, model_version: u64) -> WriteSet {
        let (generation, name) = (self.generation.clone(), &self.model.inner.name);
        if self.checkpoint == 0 {
            WriteSet::on_fresh(generation, name, model_version, 0)
        } else {
            WriteSet::new(generation, name, model_version, self.checkpoint)
        }
    }

    /// The generation's id.
    pub(crate) fn id(&self) -> u64 {
        self.generation.id()
    }

    /// Commits to the generation being built (no reader sees it).
    pub(crate) async fn commit(&mut self, ws: WriteSet, at: Checkpoint) -> Result<(), ProjectionError> {
        let started = std::time::Instant::now();
        let (generation, batch) = ws.into_batch(at)?;
        tracing::debug!(
            projection = %self.model.inner.name,
            keys = batch.changes.len(),
            took = ?started.elapsed(),
            "rebuild: the write set encoded and sorted"
        );
        let base = batch.base;
        if generation.id() != self.generation.id() {
            return Err(self.lost(format!(
                "a write set of generation {} was committed to it",
                generation.id()
            )));
        }
        match generation.commit(batch).await? {
            Commit::Done => {
                self.checkpoint = at.position;
                Ok(())
            }
            Commit::Stale | Commit::LeaseLost => Err(self.lost(format!(
                "the checkpoint of the generation being rebuilt is no longer at {base}"
            ))),
        }
    }

    fn lost(&self, detail: String) -> ProjectionError {
        corrupt(
            &self.model.inner.name,
            format!("generation {}", self.id()).as_bytes(),
            detail,
        )
    }

    /// Makes these generations the ones readers see and the live runners
    /// write to, all at `checkpoint`, and retires the old ones. The caller
    /// holds every model's commit lock.
    ///
    /// Each kind of backend swaps its models together (see
    /// [`ModelBackend::swap`](crate::backend::ModelBackend::swap): on sled
    /// one transaction over the models' pointers, in PostgreSQL one
    /// transaction; in memory the pointers move one after the other),
    /// backends shared with other processes first: they may refuse, when
    /// another process's runner has already committed past `checkpoint`,
    /// and then nothing is swapped and that position is returned (`Some`),
    /// to replay up to it and try again, so that no reader ever sees its
    /// model go back. `None`: swapped in. (Models of different kinds in one
    /// rebuild are swapped one kind at a time.)
    pub(crate) async fn swap_in_all(
        buildings: Vec<&mut Building>,
        checkpoint: u64,
    ) -> Result<Option<u64>, ProjectionError> {
        let mut kinds: Vec<(bool, &'static str)> = Vec::new();
        for b in &buildings {
            let backend = &b.model.inner.backend;
            let kind = (!backend.shared(), backend.kind());
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        // Shared backends (false) first.
        kinds.sort_by_key(|(local, _)| *local);
        for (_, kind) in kinds {
            let group: Vec<&Building> = buildings
                .iter()
                .filter(|b| b.model.inner.backend.kind() == kind)
                .map(|b| &**b)
                .collect();
            let built: Vec<&GenerationRef> = group.iter().map(|b| &b.generation).collect();
            match group[0].model.inner.backend.swap(&built, checkpoint).await? {
                Swapped::Done => {}
                Swapped::Behind { live } => return Ok(Some(live)),
            }
        }
        for b in buildings {
            let model = &b.model;
            let old = std::mem::replace(
                &mut *model.inner.current.write().unwrap_or_else(|p| p.into_inner()),
                b.generation.clone(),
            );
            old.retire();
            model.inner.applied.send_replace(checkpoint);
        }
        Ok(None)
    }
}
