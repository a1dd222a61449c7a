//! A generation of a PostgreSQL model: its rows, and this process's copy
//! of them in memory (the projections' `apply` and the readers are
//! synchronous). A generation being rebuilt also holds the model's rebuild
//! lock until it is swapped in or dropped.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use futures::try_join;
use strata_store::deadpool_postgres::{ClientWrapper, Object};
use strata_store::pg;
use tokio::sync::Mutex;
use tracing::warn;

use super::sql;
use super::tables::{Catchup, CommitParams, LiveCommit, PgModel, State};
use crate::backend::contract::{Batch, Commit, Generation, Refresh, Stored};
use crate::backend::memory::MemoryGeneration;
use crate::codec::Entry;
use crate::error::ProjectionError;

/// The model's rebuild lock (a session-level advisory lock on a connection
/// of its own), held by a generation being built. Dropped before its swap,
/// the generation's rows are deleted before the lock goes.
pub(super) struct Rebuilding {
    model: Arc<PgModel>,
    generation: u64,
    lock: Option<ClientWrapper>,
}

impl Rebuilding {
    /// The generation was swapped in: release the rebuild lock, keep the rows.
    pub(super) fn swapped(mut self) {
        self.lock.take();
    }
}

impl Drop for Rebuilding {
    /// A rebuild that was not swapped in: its rows are deleted before the
    /// rebuild lock is released (when a runtime is there to do it; otherwise
    /// the next open or rebuild removes them).
    fn drop(&mut self) {
        let Some(mut client) = self.lock.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (model, generation) = (self.model.clone(), self.generation);
        runtime.spawn(async move {
            let Ok(generation) = i64::try_from(generation) else { return };
            if let Err(e) = model.drop_unless_current(&mut client, generation).await {
                warn!(projection = %model.name, error = %pg::describe(&e), "could not remove an abandoned rebuild; the next rebuild or open removes it");
            }
        });
    }
}

/// One generation: this process's copy, and the model's rows.
pub(crate) struct PgGeneration {
    pub(super) model: Arc<PgModel>,
    copy: MemoryGeneration,
    /// While it is being built: the rebuild lock, through whose connection
    /// its batches are committed.
    pub(super) building: Mutex<Option<Rebuilding>>,
}

impl PgGeneration {
    /// The current generation as loaded.
    pub(super) fn live(model: Arc<PgModel>, state: State, entries: Vec<Entry>) -> PgGeneration {
        PgGeneration {
            copy: MemoryGeneration::new(state.generation, entries, state.stored),
            model,
            building: Mutex::new(None),
        }
    }

    /// Starts a new generation: waits for the model's rebuild lock, removes
    /// what an earlier rebuild left, and creates the generation's
    /// checkpoint row.
    pub(super) async fn begin(model: &Arc<PgModel>) -> Result<PgGeneration, ProjectionError> {
        let mut client = Object::take(model.connection().await?);
        let step = |e| model.db_error("starting a generation", e);
        client
            .execute(sql::LOCK, &[&model.lock_name("rebuild")])
            .await
            .map_err(step)?;
        let name = &model.name;
        // Under the pointer lock: a swap in flight (of an earlier rebuild
        // that lost this lock with its connection) either committed first,
        // and its generation is current and kept, or waits and then finds
        // its generation gone and refuses.
        let id: i64 = {
            let tx = client.transaction().await.map_err(step)?;
            tx.execute(&model.sql(sql::LOCK_POINTER), &[name]).await.map_err(step)?;
            tx.execute(&model.sql(sql::DROP_OTHER_GENERATIONS), &[name])
                .await
                .map_err(step)?;
            tx.execute(&model.sql(sql::DROP_OTHER_CHECKPOINTS), &[name])
                .await
                .map_err(step)?;
            let id: i64 = tx
                .query_one(&model.sql(sql::NEXT_GENERATION), &[name])
                .await
                .map_err(step)?
                .get(0);
            tx.execute(&model.sql(sql::NEW_CHECKPOINT), &[name, &id])
                .await
                .map_err(step)?;
            tx.commit().await.map_err(step)?;
            id
        };
        let id = model.stored_number(id, "generation")?;
        Ok(PgGeneration {
            copy: MemoryGeneration::new(id, Vec::new(), Stored::default()),
            model: model.clone(),
            building: Mutex::new(Some(Rebuilding {
                model: model.clone(),
                generation: id,
                lock: Some(client),
            })),
        })
    }

    /// Commits a batch of a generation being built through the rebuild
    /// lock's connection (nobody reads it yet); false when fenced off.
    async fn commit_building(&self, rebuilding: &Rebuilding, batch: &Batch) -> Result<bool, ProjectionError> {
        let model = &self.model;
        let client = rebuilding.lock.as_ref().ok_or_else(|| ProjectionError::Corrupt {
            projection: model.name.clone(),
            key: format!("generation {}", self.copy.id()),
            detail: "the rebuild lock is gone".into(),
        })?;
        if batch.base == 0 {
            return super::bulk::commit_first(client, model, self.copy.id(), batch).await;
        }
        let params = CommitParams::new(model, self.copy.id(), batch)?;
        let refs = params.refs();
        let commit_sql = model.sql(sql::COMMIT);
        let written = async {
            let commit = client.prepare_cached(&commit_sql).await?;
            let (_, row, _) = try_join!(
                client.batch_execute("BEGIN"),
                client.query_one(&commit, &refs),
                client.batch_execute("COMMIT"),
            )?;
            Ok::<_, strata_store::tokio_postgres::Error>(row.get::<_, i64>(0))
        }
        .await
        .map_err(|e| model.db_error("committing a rebuild batch", e))?;
        Ok(written == 1)
    }
}

#[async_trait]
impl Generation for PgGeneration {
    fn id(&self) -> u64 {
        self.copy.id()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        self.copy.get(key)
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError> {
        self.copy.range(from, to, limit)
    }

    fn stored(&self) -> Result<Stored, ProjectionError> {
        self.copy.stored()
    }

    /// A live generation commits through the writer lock's connection
    /// (announcing the commit to the other processes), a generation being
    /// built through the rebuild lock's; either way the row's fence decides,
    /// and the copy follows what was written.
    async fn commit(&self, batch: Batch) -> Result<Commit, ProjectionError> {
        let building = self.building.lock().await;
        let outcome = match &*building {
            Some(rebuilding) => match self.commit_building(rebuilding, &batch).await? {
                true => Commit::Done,
                false => Commit::Stale,
            },
            None => match self.model.commit_live(self.copy.id(), &batch).await? {
                LiveCommit::Done => Commit::Done,
                LiveCommit::Fenced => Commit::Stale,
                // Whether the batch landed is learnt when this process
                // takes the lock again (`lead` refreshes first).
                LiveCommit::LeaseLost => Commit::LeaseLost,
            },
        };
        if outcome == Commit::Done {
            let stored = Stored::after(&batch);
            self.copy.apply(batch.changes, stored);
        }
        Ok(outcome)
    }

    async fn refresh(&self) -> Result<Refresh, ProjectionError> {
        let checkpoint = self.copy.stored()?.position;
        match self.model.changes(self.copy.id(), checkpoint).await? {
            Catchup::None => Ok(Refresh::Unchanged),
            Catchup::Incremental { state, changes } => {
                self.copy.apply(changes, state.stored);
                Ok(Refresh::Advanced {
                    checkpoint: state.stored.position,
                })
            }
            Catchup::Full { state, entries } if state.generation == self.copy.id() => {
                // Too far behind for changes: the same generation, reloaded.
                self.copy.replace(entries, state.stored);
                Ok(Refresh::Advanced {
                    checkpoint: state.stored.position,
                })
            }
            Catchup::Full { state, entries } => Ok(Refresh::Replaced {
                checkpoint: state.stored.position,
                generation: Arc::new(PgGeneration::live(self.model.clone(), state, entries)),
            }),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
