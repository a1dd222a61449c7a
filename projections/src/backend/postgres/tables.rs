//! One model's rows: opening them, reading what changed, the writer's
//! lease, live commits, and removing generations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, try_join};
use strata_store::deadpool_postgres::{ClientWrapper, Object, Pool};
use strata_store::pg::{self, Schema};
use strata_store::tokio_postgres::types::ToSql;
use strata_store::tokio_postgres::{self, IsolationLevel, Row};
use strata_store::{EventId, PostgresStore, StoreError};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::sql;
use crate::backend::contract::{Batch, Changes, Stored};
use crate::codec::Entry;
use crate::error::ProjectionError;

/// Purge tombstones once the checkpoint has moved this many positions past
/// the last purge...
const PURGE_EVERY: u64 = 8_192;
/// ...keeping those of the newest positions, so a follower a little behind
/// still refreshes by changes rather than reloading the whole model.
pub(super) const PURGE_KEEP: u64 = 4_096;

/// The committed state of a model's current generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct State {
    pub(super) generation: u64,
    pub(super) stored: Stored,
    /// The oldest checkpoint from which the changes are complete (older
    /// tombstones were purged).
    refresh_from: u64,
}

/// What a process must do to catch up with the committed model.
pub(super) enum Catchup {
    /// Nothing was committed since.
    None,
    /// Apply these changes to the same generation.
    Incremental { state: State, changes: Changes },
    /// Replace the model by these entries (another generation, or too far behind).
    Full { state: State, entries: Vec<Entry> },
}

/// How a live commit went.
pub(super) enum LiveCommit {
    /// Written, with the checkpoint.
    Done,
    /// Refused by the fence: the generation was retired by a rebuild (or the
    /// checkpoint moved). Nothing was written.
    Fenced,
    /// This process does not hold the lease, or the connection holding it
    /// is gone (and with it the lock): whether the commit landed is unknown.
    LeaseLost,
}

/// One model's PostgreSQL side.
pub(crate) struct PgModel {
    pub(super) name: String,
    pub(super) schema: Schema,
    pub(super) pool: Pool,
    pub(super) config: tokio_postgres::Config,
    /// The `NOTIFY` channel of commits and swaps.
    pub(super) channel: String,
    /// The connection that holds the model's session-level advisory lock
    /// while a runner of this process writes the model; commits go through
    /// it, so a commit cannot outlive the lock.
    lease: Mutex<Option<Arc<ClientWrapper>>>,
    /// How often a standby tries the lock, and followers poll for commits.
    pub(super) poll_interval: Duration,
    /// The newest position up to which tombstones were purged.
    purged: AtomicU64,
}

impl PgModel {
    /// `template` with the schema filled in.
    pub(super) fn sql(&self, template: &str) -> String {
        self.schema.render(template)
    }

    pub(super) fn db_error(&self, context: &str, e: tokio_postgres::Error) -> ProjectionError {
        self.store_error(pg::error(context, e))
    }

    /// A toolkit error as this model's: damage as [`ProjectionError::Corrupt`],
    /// the rest as [`ProjectionError::Database`].
    pub(super) fn store_error(&self, source: StoreError) -> ProjectionError {
        match source {
            StoreError::Corrupt { location, detail } => ProjectionError::Corrupt {
                projection: self.name.clone(),
                key: location,
                detail,
            },
            source => ProjectionError::Database {
                projection: self.name.clone(),
                source,
            },
        }
    }

    pub(super) fn bigint(&self, value: u64, what: &str) -> Result<i64, ProjectionError> {
        pg::to_db(value, what).map_err(|e| self.store_error(e))
    }

    pub(super) fn stored_number(&self, value: i64, what: &str) -> Result<u64, ProjectionError> {
        pg::from_db(value, what).map_err(|e| self.store_error(e))
    }

    pub(super) async fn connection(&self) -> Result<Object, ProjectionError> {
        pg::connection(&self.pool).await.map_err(|e| self.store_error(e))
    }

    /// The name of one of the model's advisory locks (hashed by the server,
    /// so every process agrees on it).
    pub(super) fn lock_name(&self, what: &str) -> String {
        format!("strata.{}.{what}.{}", self.schema.name(), self.name)
    }

    /// Opens the model `name` in `store`'s database: migrates the tables,
    /// creates the model's rows if absent, removes generations left by a
    /// rebuild that died (unless a rebuild is running), and loads the
    /// current generation.
    pub(super) async fn open(
        store: &PostgresStore,
        name: &str,
    ) -> Result<(Arc<PgModel>, State, Vec<Entry>), ProjectionError> {
        let schema = store.schema().clone();
        let database = |source| ProjectionError::Database {
            projection: name.to_string(),
            source,
        };
        let model = Arc::new(PgModel {
            name: name.to_string(),
            channel: schema.channel(sql::CHANNEL_TOPIC).map_err(database)?,
            schema,
            pool: store.pool().clone(),
            config: store.connection_config().clone(),
            lease: Mutex::new(None),
            poll_interval: store.options().poll_interval,
            purged: AtomicU64::new(0),
        });
        let mut client = model.connection().await?;
        sql::MODELS
            .apply(&mut client, model.schema.name())
            .await
            .map_err(database)?;
        {
            let step = |e| model.db_error("opening a read model", e);
            let tx = client.transaction().await.map_err(step)?;
            tx.execute(&model.sql(sql::ENSURE_MODEL), &[&name])
                .await
                .map_err(step)?;
            tx.execute(&model.sql(sql::ENSURE_CHECKPOINT), &[&name, &1i64])
                .await
                .map_err(step)?;
            // Generations other than the current one are the remains of a
            // rebuild that died, unless a rebuild (which holds this lock) is
            // running now.
            let free: bool = tx
                .query_one(sql::TRY_XACT_LOCK, &[&model.lock_name("rebuild")])
                .await
                .map_err(step)?
                .get(0);
            if free {
                // Under the pointer lock, as every creation, swap and
                // removal of a generation: never the one a swap in flight
                // is making current.
                tx.execute(&model.sql(sql::LOCK_POINTER), &[&name])
                    .await
                    .map_err(step)?;
                let dropped = tx
                    .execute(&model.sql(sql::DROP_OTHER_GENERATIONS), &[&name])
                    .await
                    .map_err(step)?;
                tx.execute(&model.sql(sql::DROP_OTHER_CHECKPOINTS), &[&name])
                    .await
                    .map_err(step)?;
                if dropped > 0 {
                    warn!(
                        projection = name,
                        rows = dropped,
                        "removed generations left by an unfinished rebuild"
                    );
                }
            }
            tx.commit().await.map_err(step)?;
        }
        drop(client);
        let (state, entries) = model.load().await?;
        model.purged.store(state.refresh_from, Ordering::Relaxed);
        info!(
            projection = name,
            generation = state.generation,
            checkpoint = state.stored.position,
            entries = entries.len(),
            "opened read model in PostgreSQL"
        );
        Ok((model, state, entries))
    }

    /// The current generation, whole.
    pub(super) async fn load(&self) -> Result<(State, Vec<Entry>), ProjectionError> {
        match self.changes(0, 0).await? {
            Catchup::Full { state, entries } => Ok((state, entries)),
            // Generation 0 never exists.
            Catchup::None | Catchup::Incremental { .. } => Err(ProjectionError::Corrupt {
                projection: self.name.clone(),
                key: "projection_models".into(),
                detail: "the model's current generation is 0".into(),
            }),
        }
    }

    fn decode_state(&self, row: &Row) -> Result<State, ProjectionError> {
        Ok(State {
            generation: self.stored_number(row.get(0), "current generation")?,
            stored: Stored {
                position: self.stored_number(row.get(1), "checkpoint")?,
                event_id: row.get::<_, Option<Uuid>>(2).map(EventId::from_uuid),
                model_version: self.stored_number(row.get(4), "model_version")?,
            },
            refresh_from: self.stored_number(row.get(3), "refresh_from")?,
        })
    }

    /// What changed since `checkpoint` of `generation` (0: nothing loaded
    /// yet), read in one snapshot with the checkpoint it leads to. A read:
    /// on a connection found broken (the pool may hold dead ones after a
    /// server restart or a network cut) it is tried again on another, once
    /// per pooled connection plus one.
    pub(super) async fn changes(&self, generation: u64, checkpoint: u64) -> Result<Catchup, ProjectionError> {
        let mut retries = 0;
        loop {
            let mut client = self.connection().await?;
            match self.changes_on(&mut client, generation, checkpoint).await {
                Err((e, true)) if retries <= self.pool.status().max_size => {
                    drop(Object::take(client));
                    debug!(projection = %self.name, error = %e, "read-model refresh: connection lost; retrying on another");
                    retries += 1;
                }
                Err((e, broken)) => {
                    if broken {
                        drop(Object::take(client));
                    }
                    return Err(e);
                }
                Ok(changes) => return Ok(changes),
            }
        }
    }

    /// One attempt of [`PgModel::changes`]; an error says whether the
    /// connection is broken.
    async fn changes_on(
        &self,
        client: &mut Object,
        generation: u64,
        checkpoint: u64,
    ) -> Result<Catchup, (ProjectionError, bool)> {
        let fail = |context: &'static str| {
            move |e: tokio_postgres::Error| {
                let broken = pg::is_connection_error(&e);
                (self.db_error(context, e), broken)
            }
        };
        let not_broken = |e| (e, false);
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(fail("starting a read-model refresh"))?;
        let row = tx
            .query_opt(&self.sql(sql::STATE), &[&self.name])
            .await
            .map_err(fail("reading a read model's checkpoint"))?
            .ok_or_else(|| {
                not_broken(ProjectionError::Corrupt {
                    projection: self.name.clone(),
                    key: "projection_models".into(),
                    detail: "the model's generation pointer or its checkpoint row is missing".into(),
                })
            })?;
        let state = self.decode_state(&row).map_err(not_broken)?;
        let gen_db = self.bigint(state.generation, "generation").map_err(not_broken)?;
        let changes = if state.generation != generation || checkpoint < state.refresh_from {
            // Streamed: the rows are decoded as they arrive, so a load holds
            // the entries once rather than every raw row and then the entries.
            let params: [&(dyn ToSql + Sync); 2] = [&self.name, &gen_db];
            let rows = tx
                .query_raw(&self.sql(sql::ALL_ENTRIES), params)
                .await
                .map_err(fail("loading a read model"))?;
            futures::pin_mut!(rows);
            let mut entries = Vec::new();
            while let Some(row) = rows.next().await {
                let row = row.map_err(fail("loading a read model"))?;
                entries.push((row.get(0), row.get(1)));
            }
            Catchup::Full { state, entries }
        } else if state.stored.position == checkpoint {
            Catchup::None
        } else {
            let since = self.bigint(checkpoint, "checkpoint").map_err(not_broken)?;
            let rows = tx
                .query(&self.sql(sql::CHANGED_ENTRIES), &[&self.name, &gen_db, &since])
                .await
                .map_err(fail("reading a read model's changes"))?;
            Catchup::Incremental {
                state,
                changes: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            }
        };
        tx.commit().await.map_err(fail("ending a read-model refresh"))?;
        Ok(changes)
    }

    /// Tries to take the model's writer lock on a connection of its own;
    /// true when this process now holds it.
    pub(super) async fn try_lease(&self) -> Result<bool, ProjectionError> {
        if self.lease.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(true);
        }
        // Tried on a pooled connection, which goes back to the pool when
        // the lock is held elsewhere (a standby asks every poll interval:
        // no new connection each time); taken out of the pool only when
        // won, or when the answer was lost (the lock may be held by the
        // session, which must then end rather than be reused).
        let client = self.connection().await?;
        match client.query_one(sql::TRY_LOCK, &[&self.lock_name("writer")]).await {
            Ok(row) if row.get::<_, bool>(0) => {
                *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Object::take(client)));
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => {
                drop(Object::take(client));
                Err(self.db_error("taking the read model's writer lock", e))
            }
        }
    }

    /// Gives up the writer lock: its connection is closed (once no commit
    /// uses it), which releases the lock on the server.
    pub(super) fn drop_lease(&self) {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Commits a live batch to `generation` through the writer lock's
    /// connection, and announces it.
    pub(super) async fn commit_live(&self, generation: u64, batch: &Batch) -> Result<LiveCommit, ProjectionError> {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(client) = lease else {
            return Ok(LiveCommit::LeaseLost);
        };
        let params = CommitParams::new(self, generation, batch)?;
        let refs = params.refs();
        let payload = format!("{generation} {} {}", batch.at.position, self.name);
        let notify_params: [&(dyn ToSql + Sync); 2] = [&self.channel, &payload];
        let commit_sql = self.sql(sql::COMMIT);
        let result = async {
            let (commit, notify) = try_join!(client.prepare_cached(&commit_sql), client.prepare_cached(sql::NOTIFY))?;
            let (_, row, _, _) = try_join!(
                client.batch_execute("BEGIN"),
                client.query_one(&commit, &refs),
                client.execute(&notify, &notify_params),
                client.batch_execute("COMMIT"),
            )?;
            Ok::<_, tokio_postgres::Error>(row.get::<_, i64>(0))
        }
        .await;
        match result {
            Ok(1) => {
                self.maybe_purge(&client, generation, batch.at.position).await;
                Ok(LiveCommit::Done)
            }
            Ok(_) => Ok(LiveCommit::Fenced),
            Err(e) if pg::is_connection_error(&e) => {
                warn!(projection = %self.name, error = %pg::describe(&e), "lost the read model's writer connection");
                self.drop_lease();
                Ok(LiveCommit::LeaseLost)
            }
            Err(e) => {
                // Whatever state the connection is in, it is not used again.
                self.drop_lease();
                Err(self.db_error("committing a read-model batch", e))
            }
        }
    }

    /// Purges old tombstones now and then (see [`PURGE_EVERY`]); a failure
    /// only costs space, so it is logged.
    async fn maybe_purge(&self, client: &ClientWrapper, generation: u64, position: u64) {
        let horizon = position.saturating_sub(PURGE_KEEP);
        if horizon < self.purged.load(Ordering::Relaxed) + PURGE_EVERY {
            return;
        }
        let purged = async {
            let params = [
                self.bigint(generation, "generation")?,
                self.bigint(horizon, "position")?,
            ];
            client
                .execute(&self.sql(sql::PURGE), &[&self.name, &params[0], &params[1]])
                .await
                .map_err(|e| self.db_error("purging tombstones", e))
        }
        .await;
        match purged {
            Ok(_) => {
                self.purged.store(horizon, Ordering::Relaxed);
                debug!(projection = %self.name, horizon, "purged read-model tombstones");
            }
            Err(e) => warn!(projection = %self.name, error = %e, "could not purge read-model tombstones"),
        }
    }

    /// Deletes `generation`'s rows and checkpoint unless it is the current
    /// generation, deciding under the pointer lock: a swap whose commit
    /// landed although its caller saw an error (a lost reply, a cancelled
    /// future) must not have its generation deleted from under every
    /// reader. Returns the entry rows deleted.
    pub(super) async fn drop_unless_current(
        &self,
        client: &mut ClientWrapper,
        generation: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let name = &self.name;
        let tx = client.transaction().await?;
        let current: Option<i64> = tx
            .query_opt(&self.sql(sql::LOCK_POINTER), &[name])
            .await?
            .map(|r| r.get(0));
        if current == Some(generation) {
            tx.rollback().await?;
            warn!(projection = %name, generation, "not removing the current generation: its swap committed");
            return Ok(0);
        }
        let rows = tx
            .execute(&self.sql(sql::DROP_GENERATION), &[name, &generation])
            .await?;
        tx.execute(&self.sql(sql::DROP_CHECKPOINT), &[name, &generation])
            .await?;
        tx.commit().await?;
        Ok(rows)
    }
}

/// The parameters of [`sql::COMMIT`] for a batch.
pub(super) struct CommitParams<'a> {
    name: &'a str,
    generation: i64,
    position: i64,
    event_id: Uuid,
    base: i64,
    keys: Vec<&'a [u8]>,
    values: Vec<Option<&'a [u8]>>,
    model_version: i64,
}

impl<'a> CommitParams<'a> {
    pub(super) fn new(
        model: &'a PgModel,
        generation: u64,
        batch: &'a Batch,
    ) -> Result<CommitParams<'a>, ProjectionError> {
        let (keys, values) = batch.changes.iter().map(|(k, v)| (&k[..], v.as_deref())).unzip();
        Ok(CommitParams {
            name: &model.name,
            generation: model.bigint(generation, "generation")?,
            position: model.bigint(batch.at.position, "checkpoint")?,
            event_id: batch.at.event_id.as_uuid(),
            base: model.bigint(batch.base, "checkpoint")?,
            keys,
            values,
            model_version: model.bigint(batch.model_version, "model version")?,
        })
    }

    pub(super) fn refs(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.name,
            &self.generation,
            &self.position,
            &self.event_id,
            &self.base,
            &self.keys,
            &self.values,
            &self.model_version,
        ]
    }
}
