//! Read models in PostgreSQL, beside a `PostgresStore`'s log (feature
//! `postgres`). See `docs/postgres.md` "Read models" for the decisions.
//!
//! # Tables (in the log's schema)
//!
//! | table                    | row                                                        |
//! |--------------------------|------------------------------------------------------------|
//! | `projection_models`      | `model` → `current`: the generation readers see            |
//! | `projection_checkpoints` | `(model, generation)` → `position`, `event_id` of the event there, `model_version` that wrote it, `refresh_from`, `retired` |
//! | `projection_entries`     | `(model, generation, key)` → `value` (NULL: deleted), `position` of the commit that wrote it |
//!
//! A batch is committed in one transaction: the checkpoint row moves from
//! the position the batch was applied on to the batch's last position (a
//! compare-and-set, refused once a rebuild retired the generation or
//! anyone else moved it) and the batch's entries are written only if it
//! did, in one statement. So a checkpoint never names changes that are
//! missing, nor the other way round, and no batch is applied twice,
//! whoever else tries.
//!
//! Every process keeps the current generation in memory (the projections'
//! `apply` and the read models' readers are synchronous) and refreshes it
//! from the committed rows: entries written after its checkpoint (deletes
//! are kept as NULL rows, "tombstones", so they show), read in one
//! snapshot with the checkpoint. Tombstones older than a window are purged
//! now and then; `refresh_from` records the oldest checkpoint from which
//! changes are still complete, and a process further behind reloads the
//! whole generation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, try_join};
use strata_store::deadpool_postgres::{ClientWrapper, Object, Pool};
use strata_store::pg::MigrationSet;
use strata_store::tokio_postgres::types::ToSql;
use strata_store::tokio_postgres::{self, AsyncMessage, NoTls, Row};
use strata_store::{EventId, PostgresStore, StoreError};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::model::Checkpoint;

/// The migrations of the read-model tables, in order; each runs once per
/// schema. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "read models: generation pointers, checkpoints, entries",
        r#"
CREATE TABLE {schema}.projection_models (
    model   text   COLLATE "C" NOT NULL,
    current bigint NOT NULL CHECK (current > 0),
    CONSTRAINT projection_models_pkey PRIMARY KEY (model)
);
CREATE TABLE {schema}.projection_checkpoints (
    model        text    COLLATE "C" NOT NULL,
    generation   bigint  NOT NULL CHECK (generation > 0),
    position     bigint  NOT NULL CHECK (position >= 0),
    event_id     uuid,
    refresh_from bigint  NOT NULL DEFAULT 0,
    retired      boolean NOT NULL DEFAULT false,
    CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (model, generation)
);
CREATE TABLE {schema}.projection_entries (
    model      text   COLLATE "C" NOT NULL,
    generation bigint NOT NULL,
    key        bytea  NOT NULL,
    value      bytea,
    position   bigint NOT NULL,
    CONSTRAINT projection_entries_pkey PRIMARY KEY (model, generation, key)
);
CREATE INDEX projection_entries_changes ON {schema}.projection_entries (model, generation, position);
COMMENT ON TABLE {schema}.projection_entries IS
    'strata read models: written only by the runner that holds the model''s advisory lock, in the same transaction as its checkpoint. value NULL = deleted at position.';
"#,
    ),
    (
        2,
        "read models: the model version of the projection that wrote each generation",
        r#"
ALTER TABLE {schema}.projection_checkpoints
    ADD COLUMN model_version bigint NOT NULL DEFAULT 0 CHECK (model_version >= 0);
"#,
    ),
    (
        3,
        "read models: the highest generation ever started, so that an id is never reused",
        r#"
ALTER TABLE {schema}.projection_models
    ADD COLUMN last_generation bigint NOT NULL DEFAULT 0 CHECK (last_generation >= 0);
"#,
    ),
];

/// The first key of the advisory lock that serialises these migrations ("STRP").
const MIGRATION_LOCK_CLASS: i32 = 0x5354_5250;

/// Purge tombstones once the checkpoint has moved this many positions past
/// the last purge...
const PURGE_EVERY: u64 = 8_192;
/// ...keeping those of the newest positions, so a follower a little behind
/// still refreshes by changes rather than reloading the whole model.
const PURGE_KEEP: u64 = 4_096;

/// The first wait before the listener reconnects; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A read-model key and its value (`None`: deleted).
pub(crate) type Change = (Vec<u8>, Option<Vec<u8>>);

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_db(projection: &str, what: &str, v: i64) -> Result<u64, ProjectionError> {
    u64::try_from(v).map_err(|_| ProjectionError::Corrupt {
        projection: projection.to_string(),
        key: what.to_string(),
        detail: format!("negative value {v}"),
    })
}

/// The statements on one schema.
struct Sql {
    /// The NOTIFY channel that announces commits and swaps: payload
    /// `<generation> <position> <model>`.
    channel: String,
    ensure_model: String,
    ensure_checkpoint: String,
    state: String,
    all_entries: String,
    changed_entries: String,
    commit: String,
    purge: String,
    drop_other_generations: String,
    drop_other_checkpoints: String,
    drop_generation: String,
    drop_checkpoint: String,
    next_generation: String,
    new_checkpoint: String,
    lock_current: String,
    /// Locks the model's pointer row (`current`): every statement that
    /// creates, swaps in or deletes a generation runs under it, so none of
    /// them can act on a stale idea of which generation is current.
    lock_pointer: String,
    /// A generation's checkpoint position, if its row is there and not
    /// retired (locked until the swap commits).
    generation_live: String,
    set_current: String,
    retire: String,
    set_refresh_from: String,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let q = quote_ident(schema);
        let models = format!("{q}.projection_models");
        let cps = format!("{q}.projection_checkpoints");
        let entries = format!("{q}.projection_entries");
        Sql {
            channel: format!("strata.{schema}.models"),
            ensure_model: format!("INSERT INTO {models} (model, current) VALUES ($1, 1) ON CONFLICT DO NOTHING"),
            ensure_checkpoint: format!(
                "INSERT INTO {cps} (model, generation, position) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING"
            ),
            state: format!(
                "SELECT m.current, c.position, c.event_id, c.refresh_from, c.model_version FROM {models} m \
                 JOIN {cps} c ON c.model = m.model AND c.generation = m.current WHERE m.model = $1"
            ),
            all_entries: format!(
                "SELECT key, value FROM {entries} WHERE model = $1 AND generation = $2 AND value IS NOT NULL"
            ),
            changed_entries: format!(
                "SELECT key, value FROM {entries} WHERE model = $1 AND generation = $2 AND position > $3"
            ),
            // The checkpoint moves from $5 to $3 (recording the model
            // version $8 that applied the batch) only if nobody moved it and
            // no rebuild retired the generation; the entries are written
            // only if it did. (A concurrent update of the checkpoint row
            // makes this statement wait and re-check the row as committed.)
            commit: format!(
                "WITH fence AS ( \
                     UPDATE {cps} SET position = $3, event_id = $4, model_version = $8 \
                     WHERE model = $1 AND generation = $2 AND position = $5 AND $3 > position AND NOT retired RETURNING 1 \
                 ), written AS ( \
                     INSERT INTO {entries} (model, generation, key, value, position) \
                     SELECT $1, $2, k.key, k.value, $3 FROM unnest($6::bytea[], $7::bytea[]) AS k(key, value) \
                     WHERE EXISTS (SELECT 1 FROM fence) \
                     ON CONFLICT (model, generation, key) DO UPDATE SET value = EXCLUDED.value, position = EXCLUDED.position \
                 ) SELECT count(*) FROM fence"
            ),
            purge: format!(
                "WITH gone AS ( \
                     DELETE FROM {entries} WHERE model = $1 AND generation = $2 AND value IS NULL AND position <= $3 \
                 ) UPDATE {cps} SET refresh_from = GREATEST(refresh_from, $3) WHERE model = $1 AND generation = $2"
            ),
            drop_other_generations: format!(
                "DELETE FROM {entries} WHERE model = $1 AND generation <> (SELECT current FROM {models} WHERE model = $1)"
            ),
            drop_other_checkpoints: format!(
                "DELETE FROM {cps} WHERE model = $1 AND generation <> (SELECT current FROM {models} WHERE model = $1)"
            ),
            drop_generation: format!("DELETE FROM {entries} WHERE model = $1 AND generation = $2"),
            drop_checkpoint: format!("DELETE FROM {cps} WHERE model = $1 AND generation = $2"),
            // Never an id used before, even one whose rows are gone: a
            // rebuild that lost its lock must not find its id taken by the
            // one that replaced it.
            next_generation: format!(
                "UPDATE {models} m SET last_generation = GREATEST(m.current, m.last_generation, \
                     (SELECT max(generation) FROM {cps} WHERE model = $1)) + 1 \
                 WHERE m.model = $1 RETURNING m.last_generation"
            ),
            new_checkpoint: format!("INSERT INTO {cps} (model, generation, position) VALUES ($1, $2, 0)"),
            lock_current: format!(
                "SELECT m.current, c.position FROM {models} m \
                 JOIN {cps} c ON c.model = m.model AND c.generation = m.current WHERE m.model = $1 FOR UPDATE"
            ),
            lock_pointer: format!("SELECT current FROM {models} WHERE model = $1 FOR UPDATE"),
            generation_live: format!(
                "SELECT position FROM {cps} WHERE model = $1 AND generation = $2 AND NOT retired FOR UPDATE"
            ),
            set_current: format!("UPDATE {models} SET current = $2 WHERE model = $1"),
            retire: format!("UPDATE {cps} SET retired = true WHERE model = $1 AND generation = $2"),
            set_refresh_from: format!("UPDATE {cps} SET refresh_from = $3 WHERE model = $1 AND generation = $2"),
        }
    }
}

/// The committed state of a model's current generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) generation: u64,
    pub(crate) checkpoint: u64,
    pub(crate) event_id: Option<EventId>,
    /// The model version of the projection that last committed to it.
    pub(crate) model_version: u64,
    refresh_from: u64,
}

/// What a process must do to catch up with the committed model.
pub(crate) enum Changes {
    /// Nothing was committed since.
    None,
    /// Apply these changes to the same generation.
    Incremental { state: State, changes: Vec<Change> },
    /// Replace the model by these entries (another generation, or too far behind).
    Full {
        state: State,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// How a live commit went.
pub(crate) enum LiveCommit {
    /// Written, with the checkpoint.
    Done,
    /// Refused by the fence: the generation was retired by a rebuild (or the
    /// checkpoint moved). Nothing was written.
    Fenced,
    /// The connection holding the model's lock is gone (and with it the
    /// lock): whether the commit landed is unknown. Refresh and lead again.
    LeaseLost,
}

/// One model's PostgreSQL side.
pub(crate) struct PgModel {
    name: String,
    schema: String,
    pool: Pool,
    config: tokio_postgres::Config,
    sql: Arc<Sql>,
    /// The connection that holds the model's session-level advisory lock
    /// while a runner of this process writes the model; commits go through
    /// it, so a commit cannot outlive the lock.
    lease: Mutex<Option<Arc<ClientWrapper>>>,
    /// How often a standby tries the lock, and followers poll for commits.
    pub(crate) poll_interval: Duration,
    /// The newest position up to which tombstones were purged.
    purged: AtomicU64,
}

impl std::fmt::Debug for PgModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A generation being rebuilt: holds the model's rebuild lock (a
/// session-level advisory lock on a connection of its own) until dropped.
pub(crate) struct Rebuilding {
    model: Arc<PgModel>,
    generation: u64,
    lock: Option<ClientWrapper>,
}

impl PgModel {
    fn db_error(&self, context: &str, e: tokio_postgres::Error) -> ProjectionError {
        ProjectionError::Database {
            projection: self.name.clone(),
            source: StoreError::from_postgres(context, e),
        }
    }

    async fn connection(&self) -> Result<Object, ProjectionError> {
        self.pool.get().await.map_err(|e| ProjectionError::Database {
            projection: self.name.clone(),
            source: StoreError::Unavailable {
                reason: format!("no PostgreSQL connection for read model {}: {e}", self.name),
            },
        })
    }

    /// The key of one of the model's advisory locks, hashed by the server
    /// (so every process agrees on it).
    fn lock_name(&self, what: &str) -> String {
        format!("strata.{}.{what}.{}", self.schema, self.name)
    }

    /// Opens the model `name` in `store`'s database: migrates the tables,
    /// creates the model's rows if absent, removes generations left by a
    /// rebuild that died (unless a rebuild is running), and loads the
    /// current generation.
    pub(crate) async fn open(
        store: &PostgresStore,
        name: &str,
    ) -> Result<(Arc<PgModel>, State, Vec<(Vec<u8>, Vec<u8>)>), ProjectionError> {
        let schema = store.options().schema.clone();
        let model = Arc::new(PgModel {
            name: name.to_string(),
            schema: schema.clone(),
            pool: store.pool().clone(),
            config: store.connection_config().clone(),
            sql: Arc::new(Sql::new(&schema)),
            lease: Mutex::new(None),
            poll_interval: store.options().poll_interval,
            purged: AtomicU64::new(0),
        });
        let mut client = model.connection().await?;
        model.migrate(&mut client, &schema).await?;
        {
            let tx = client
                .transaction()
                .await
                .map_err(|e| model.db_error("starting to open a read model", e))?;
            tx.execute(&model.sql.ensure_model, &[&name])
                .await
                .map_err(|e| model.db_error("creating a read model", e))?;
            tx.execute(&model.sql.ensure_checkpoint, &[&name, &1i64])
                .await
                .map_err(|e| model.db_error("creating a read model", e))?;
            // Generations other than the current one are the remains of a
            // rebuild that died, unless a rebuild (which holds this lock) is
            // running now.
            let free: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&model.lock_name("rebuild")],
                )
                .await
                .map_err(|e| model.db_error("taking the rebuild lock", e))?
                .get(0);
            if free {
                // Under the pointer lock, as every creation, swap and
                // removal of a generation: never the one a swap in flight
                // is making current.
                tx.execute(&model.sql.lock_pointer, &[&name])
                    .await
                    .map_err(|e| model.db_error("removing an unfinished rebuild", e))?;
                let dropped = tx
                    .execute(&model.sql.drop_other_generations, &[&name])
                    .await
                    .map_err(|e| model.db_error("removing an unfinished rebuild", e))?;
                tx.execute(&model.sql.drop_other_checkpoints, &[&name])
                    .await
                    .map_err(|e| model.db_error("removing an unfinished rebuild", e))?;
                if dropped > 0 {
                    warn!(
                        projection = name,
                        rows = dropped,
                        "removed generations left by an unfinished rebuild"
                    );
                }
            }
            tx.commit()
                .await
                .map_err(|e| model.db_error("opening a read model", e))?;
        }
        drop(client);
        let (state, entries) = match model.changes(0, 0).await? {
            Changes::Full { state, entries } => (state, entries),
            _ => unreachable!("generation 0 never exists: a full load"),
        };
        model.purged.store(state.refresh_from, Ordering::Relaxed);
        info!(
            projection = name,
            generation = state.generation,
            checkpoint = state.checkpoint,
            entries = entries.len(),
            "opened read model in PostgreSQL"
        );
        Ok((model, state, entries))
    }

    /// Creates the tables and applies the migrations they lack.
    async fn migrate(&self, client: &mut Object, schema: &str) -> Result<(), ProjectionError> {
        MigrationSet {
            table: "projection_migrations",
            label: "read models",
            lock_class: MIGRATION_LOCK_CLASS,
            migrations: MIGRATIONS,
        }
        .apply(client, schema)
        .await
        .map_err(|source| ProjectionError::Database {
            projection: self.name.clone(),
            source,
        })
    }

    fn decode_state(&self, row: &Row) -> Result<State, ProjectionError> {
        Ok(State {
            generation: from_db(&self.name, "current generation", row.get(0))?,
            checkpoint: from_db(&self.name, "checkpoint", row.get(1))?,
            event_id: row.get::<_, Option<Uuid>>(2).map(EventId::from_uuid),
            refresh_from: from_db(&self.name, "refresh_from", row.get(3))?,
            model_version: from_db(&self.name, "model_version", row.get(4))?,
        })
    }

    /// What changed since `checkpoint` of `generation` (0: nothing loaded
    /// yet), read in one snapshot with the checkpoint it leads to. A read:
    /// on a connection found broken (the pool may hold dead ones after a
    /// server restart or a network cut) it is tried again on another, once
    /// per pooled connection plus one.
    pub(crate) async fn changes(&self, generation: u64, checkpoint: u64) -> Result<Changes, ProjectionError> {
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
    ) -> Result<Changes, (ProjectionError, bool)> {
        let fail = |context: &'static str| {
            move |e: tokio_postgres::Error| {
                let broken = StoreError::is_postgres_connection_error(&e);
                (self.db_error(context, e), broken)
            }
        };
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(fail("starting a read-model refresh"))?;
        let row = tx
            .query_opt(&self.sql.state, &[&self.name])
            .await
            .map_err(fail("reading a read model's checkpoint"))?
            .ok_or_else(|| {
                let e = ProjectionError::Corrupt {
                    projection: self.name.clone(),
                    key: "projection_models".into(),
                    detail: "the model's generation pointer or its checkpoint row is missing".into(),
                };
                (e, false)
            })?;
        let state = self.decode_state(&row).map_err(|e| (e, false))?;
        let gen_db = to_db(state.generation);
        let changes = if state.generation != generation || checkpoint < state.refresh_from {
            // Streamed: the rows are decoded as they arrive, so a load holds
            // the entries once rather than every raw row and then the entries.
            let params: [&(dyn ToSql + Sync); 2] = [&self.name, &gen_db];
            let rows = tx
                .query_raw(&self.sql.all_entries, params)
                .await
                .map_err(fail("loading a read model"))?;
            futures::pin_mut!(rows);
            let mut entries = Vec::new();
            while let Some(row) = rows.next().await {
                let row = row.map_err(fail("loading a read model"))?;
                entries.push((row.get(0), row.get(1)));
            }
            Changes::Full { state, entries }
        } else if state.checkpoint == checkpoint {
            Changes::None
        } else {
            let rows = tx
                .query(&self.sql.changed_entries, &[&self.name, &gen_db, &to_db(checkpoint)])
                .await
                .map_err(fail("reading a read model's changes"))?;
            Changes::Incremental {
                state,
                changes: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            }
        };
        tx.commit().await.map_err(fail("ending a read-model refresh"))?;
        Ok(changes)
    }

    /// Tries to take the model's writer lock on a connection of its own;
    /// true when this process now holds it.
    pub(crate) async fn try_lease(&self) -> Result<bool, ProjectionError> {
        if self.lease.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(true);
        }
        // Tried on a pooled connection, which goes back to the pool when
        // the lock is held elsewhere (a standby asks every poll interval:
        // no new connection each time); taken out of the pool only when
        // won, or when the answer was lost (the lock may be held by the
        // session, which must then end rather than be reused).
        let client = self.connection().await?;
        let got = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&self.lock_name("writer")],
            )
            .await;
        match got {
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
    pub(crate) fn drop_lease(&self) {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn staged_columns(staged: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> (Vec<&[u8]>, Vec<Option<&[u8]>>) {
        staged.iter().map(|(k, v)| (&k[..], v.as_deref())).unzip()
    }

    /// Commits a live batch through the writer lock's connection.
    pub(crate) async fn commit_live(
        &self,
        generation: u64,
        from: u64,
        at: Checkpoint,
        model_version: u64,
        staged: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<LiveCommit, ProjectionError> {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(client) = lease else {
            return Ok(LiveCommit::LeaseLost);
        };
        let (keys, values) = Self::staged_columns(staged);
        let (name, gen_db, pos, from_db_) = (&self.name, to_db(generation), to_db(at.position), to_db(from));
        let id = at.event_id.as_uuid();
        let payload = format!("{generation} {} {name}", at.position);
        let version = to_db(model_version);
        let params: [&(dyn ToSql + Sync); 8] = [name, &gen_db, &pos, &id, &from_db_, &keys, &values, &version];
        let notify_params: [&(dyn ToSql + Sync); 2] = [&self.sql.channel, &payload];
        let result = async {
            let (commit, notify) = try_join!(
                client.prepare_cached(&self.sql.commit),
                client.prepare_cached("SELECT pg_notify($1, $2)"),
            )?;
            let (_, row, _, _) = try_join!(
                client.batch_execute("BEGIN"),
                client.query_one(&commit, &params),
                client.execute(&notify, &notify_params),
                client.batch_execute("COMMIT"),
            )?;
            Ok::<_, tokio_postgres::Error>(row.get::<_, i64>(0))
        }
        .await;
        match result {
            Ok(1) => {
                self.maybe_purge(&client, generation, at.position).await;
                Ok(LiveCommit::Done)
            }
            Ok(_) => Ok(LiveCommit::Fenced),
            Err(e) if StoreError::is_postgres_connection_error(&e) => {
                warn!(projection = %self.name, error = %StoreError::from_postgres("committing", e), "lost the read model's writer connection");
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
        match client
            .execute(&self.sql.purge, &[&self.name, &to_db(generation), &to_db(horizon)])
            .await
        {
            Ok(_) => {
                self.purged.store(horizon, Ordering::Relaxed);
                debug!(projection = %self.name, horizon, "purged read-model tombstones");
            }
            Err(e) => {
                warn!(projection = %self.name, error = %StoreError::from_postgres("purging", e), "could not purge read-model tombstones")
            }
        }
    }

    /// Starts a new generation: waits for the model's rebuild lock, removes
    /// what an earlier rebuild left, and creates the generation's
    /// checkpoint row.
    pub(crate) async fn begin_generation(self: &Arc<Self>) -> Result<Rebuilding, ProjectionError> {
        let client = Object::take(self.connection().await?);
        client
            .execute(
                "SELECT pg_advisory_lock(hashtextextended($1, 0))",
                &[&self.lock_name("rebuild")],
            )
            .await
            .map_err(|e| self.db_error("taking the rebuild lock", e))?;
        let name = &self.name;
        let step = |e| self.db_error("starting a generation", e);
        // Under the pointer lock: a swap in flight (of an earlier rebuild
        // that lost this lock with its connection) either committed first,
        // and its generation is current and kept, or waits and then finds
        // its generation gone and refuses.
        let mut client = client;
        let id: i64 = {
            let tx = client.transaction().await.map_err(step)?;
            tx.execute(&self.sql.lock_pointer, &[name]).await.map_err(step)?;
            tx.execute(&self.sql.drop_other_generations, &[name])
                .await
                .map_err(step)?;
            tx.execute(&self.sql.drop_other_checkpoints, &[name])
                .await
                .map_err(step)?;
            let id: i64 = tx
                .query_one(&self.sql.next_generation, &[name])
                .await
                .map_err(step)?
                .get(0);
            tx.execute(&self.sql.new_checkpoint, &[name, &id]).await.map_err(step)?;
            tx.commit().await.map_err(step)?;
            id
        };
        Ok(Rebuilding {
            model: self.clone(),
            generation: from_db(name, "generation", id)?,
            lock: Some(client),
        })
    }

    /// Deletes `generation`'s rows and checkpoint unless it is the current
    /// generation, deciding under the pointer lock: a swap whose commit
    /// landed although its caller saw an error (a lost reply, a cancelled
    /// future) must not have its generation deleted from under every
    /// reader. Returns the entry rows deleted.
    async fn drop_unless_current(
        &self,
        client: &mut ClientWrapper,
        generation: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let name = &self.name;
        let tx = client.transaction().await?;
        let current: Option<i64> = tx.query_opt(&self.sql.lock_pointer, &[name]).await?.map(|r| r.get(0));
        if current == Some(generation) {
            tx.rollback().await?;
            warn!(projection = %name, generation, "not removing the current generation: its swap committed");
            return Ok(0);
        }
        let rows = tx.execute(&self.sql.drop_generation, &[name, &generation]).await?;
        tx.execute(&self.sql.drop_checkpoint, &[name, &generation]).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Announces a swap to every process (after its commit).
    fn notify_params(&self, generation: u64, checkpoint: u64) -> String {
        format!("{generation} {checkpoint} {}", self.name)
    }
}

impl Rebuilding {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation was swapped in: release the rebuild lock, keep the rows.
    pub(crate) fn swapped(mut self) {
        self.lock.take();
    }

    /// Commits a batch to the generation being built (nobody reads it yet).
    pub(crate) async fn commit(
        &self,
        from: u64,
        at: Checkpoint,
        model_version: u64,
        staged: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<(), ProjectionError> {
        let model = &self.model;
        let client = self.lock.as_ref().expect("held until dropped");
        let (keys, values) = PgModel::staged_columns(staged);
        let (gen_db, pos, from_db_) = (to_db(self.generation), to_db(at.position), to_db(from));
        let id = at.event_id.as_uuid();
        let version = to_db(model_version);
        let params: [&(dyn ToSql + Sync); 8] = [&model.name, &gen_db, &pos, &id, &from_db_, &keys, &values, &version];
        let result = async {
            let commit = client.prepare_cached(&model.sql.commit).await?;
            let (_, row, _) = try_join!(
                client.batch_execute("BEGIN"),
                client.query_one(&commit, &params),
                client.batch_execute("COMMIT"),
            )?;
            Ok::<_, tokio_postgres::Error>(row.get::<_, i64>(0))
        }
        .await
        .map_err(|e| model.db_error("committing a rebuild batch", e))?;
        if result != 1 {
            return Err(ProjectionError::Corrupt {
                projection: model.name.clone(),
                key: format!("generation {}", self.generation),
                detail: format!("the checkpoint of the generation being rebuilt is no longer at {from}"),
            });
        }
        Ok(())
    }
}

impl Drop for Rebuilding {
    /// A rebuild that was not swapped in: its rows are deleted before the
    /// rebuild lock is released (when a runtime is there to do it; otherwise
    /// the next open or rebuild removes them).
    fn drop(&mut self) {
        let Some(client) = self.lock.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (model, generation) = (self.model.clone(), to_db(self.generation));
        runtime.spawn(async move {
            let mut client = client;
            if let Err(e) = model.drop_unless_current(&mut client, generation).await {
                warn!(projection = %model.name, error = %StoreError::from_postgres("removing", e), "could not remove an abandoned rebuild; the next rebuild or open removes it");
            }
        });
    }
}

/// Makes each `(generation being built, checkpoint)` current, in one
/// transaction over every model (all share one database). Refused, writing
/// nothing, when a model's live generation has already moved past
/// `checkpoint` (another process's runner kept committing): returns that
/// position, to replay up to before trying again. On success, retires the
/// old generations (their writers' next commit is fenced off), announces
/// the swap, and deletes the old generations' rows in the background.
pub(crate) async fn swap(targets: &[&Rebuilding], checkpoint: u64) -> Result<Option<u64>, ProjectionError> {
    let Some(first) = targets.first() else {
        return Ok(None);
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
    let mut old = Vec::with_capacity(targets.len());
    let mut behind = None;
    for t in &targets {
        let m = &t.model;
        let row = tx
            .query_one(&m.sql.lock_current, &[&m.name])
            .await
            .map_err(|e| m.db_error("locking a read model's pointer", e))?;
        let current: i64 = row.get(0);
        let live = from_db(&m.name, "checkpoint", row.get(1))?;
        // A rebuild that lost its lock (its connection dropped) may have
        // had its generation removed by the rebuild that took over: then
        // there is nothing to swap in.
        // Its checkpoint must be where this rebuild left it: a row at
        // another position is not this rebuild's work.
        let built: Option<i64> = tx
            .query_opt(&m.sql.generation_live, &[&m.name, &to_db(t.generation)])
            .await
            .map_err(|e| m.db_error("checking the rebuilt generation", e))?
            .map(|row| row.get(0));
        if built != Some(to_db(checkpoint)) || current == to_db(t.generation) {
            return Err(ProjectionError::Corrupt {
                projection: m.name.clone(),
                key: format!("generation {}", t.generation),
                detail: "the generation being rebuilt is gone: this rebuild lost its lock and another one took over; nothing was swapped in".into(),
            });
        }
        if live > checkpoint {
            behind = Some(behind.unwrap_or(0).max(live));
        }
        old.push(current);
    }
    if let Some(live) = behind {
        tx.rollback()
            .await
            .map_err(|e| model.db_error("abandoning a swap", e))?;
        return Ok(Some(live));
    }
    let cp = to_db(checkpoint);
    for (t, old_gen) in targets.iter().zip(&old) {
        let m = &t.model;
        let new_gen = to_db(t.generation);
        let step = |e| m.db_error("swapping a generation in", e);
        tx.execute(&m.sql.set_current, &[&m.name, &new_gen])
            .await
            .map_err(step)?;
        tx.execute(&m.sql.retire, &[&m.name, old_gen]).await.map_err(step)?;
        tx.execute(&m.sql.set_refresh_from, &[&m.name, &new_gen, &cp])
            .await
            .map_err(step)?;
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&m.sql.channel, &m.notify_params(t.generation, checkpoint)],
        )
        .await
        .map_err(step)?;
    }
    tx.commit().await.map_err(|e| model.db_error("committing a swap", e))?;
    drop(client);
    for (t, old_gen) in targets.iter().zip(old) {
        let m = t.model.clone();
        tokio::spawn(async move {
            let name = &m.name;
            let dropped = async {
                let mut client = m.connection().await?;
                m.drop_unless_current(&mut client, old_gen)
                    .await
                    .map_err(|e| m.db_error("dropping a retired generation", e))
            }
            .await;
            match dropped {
                Ok(rows) => debug!(projection = %name, generation = old_gen, rows, "dropped a retired generation"),
                Err(e) => {
                    warn!(projection = %name, error = %e, "could not drop a retired generation; the next rebuild drops it")
                }
            }
        });
    }
    Ok(None)
}

/// What the listener heard: a commit or swap of `(generation, position)`,
/// or `None` after (re)connecting, when anything may have been missed.
pub(crate) type Announcement = Option<(u64, u64)>;

/// Listens for the model's commits and swaps on a connection of its own,
/// reconnecting with backoff, until aborted. Notifications only wake the
/// follower; it reads the committed rows, so a lost one costs latency (up
/// to the poll interval), never a change.
pub(crate) async fn listen(model: Arc<PgModel>, tx: mpsc::UnboundedSender<Announcement>) {
    let mut config = model.config.clone();
    let app = format!("{}-models", config.get_application_name().unwrap_or("strata"));
    config.application_name(app);
    let mut backoff = MIN_BACKOFF;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let forward = tx.clone();
                let name = model.name.clone();
                let driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let mut parts = n.payload().splitn(3, ' ');
                                let (g, p, m) = (parts.next(), parts.next(), parts.next());
                                if m == Some(name.as_str()) {
                                    let parsed = g.and_then(|g| g.parse().ok()).zip(p.and_then(|p| p.parse().ok()));
                                    if forward.send(parsed).is_err() {
                                        return;
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %StoreError::from_postgres("listening", e), "the read-model listener connection failed");
                                return;
                            }
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {}", quote_ident(&model.sql.channel)))
                    .await
                {
                    Ok(()) => {
                        backoff = MIN_BACKOFF;
                        // Whatever was committed while nobody listened.
                        if tx.send(None).is_err() {
                            driver.abort();
                            return;
                        }
                        let _ = driver.await;
                    }
                    Err(e) => {
                        warn!(error = %StoreError::from_postgres("LISTEN", e), "LISTEN failed");
                        driver.abort();
                    }
                }
            }
            Err(e) => {
                warn!(error = %StoreError::from_postgres("connecting", e), "cannot connect the read-model listener")
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Need a server: ignored unless `STRATA_POSTGRES_URL` was set at build
/// time; `scripts/test-postgres.sh cargo test -p strata-projections
/// --features postgres` runs them.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
    use strata_testkit::{TestDatabase, until};

    use super::*;
    use crate::model::{ModelStore, WriteSet};
    use crate::projection::Projection;

    /// A store on a schema of its own, dropped with the fixture.
    async fn store() -> (TestDatabase, PostgresStore) {
        let db = TestDatabase::new();
        let store = db.store("unit").await;
        (db, store)
    }

    /// Keeps one key per stream, `s<stream>` → the last position, and
    /// deletes the key of the position before (`p<position>`): every event
    /// puts one key and deletes another.
    struct Moving;

    impl Projection for Moving {
        fn name(&self) -> &str {
            "moving"
        }
        fn apply(&self, event: &RecordedEvent, model: &mut WriteSet) -> Result<(), ProjectionError> {
            let key = |p: u64| format!("p{p:08}").into_bytes();
            model.delete(key(event.position - 1));
            model.put(key(event.position), event.id.as_bytes().to_vec());
            model.put_value(format!("s{}", event.stream_id).into_bytes(), &event.position)
        }
    }

    async fn append(store: &PostgresStore, n: usize) -> u64 {
        let stream = StreamId::new("s").unwrap();
        let events = (0..n).map(|_| NewEvent::new("Tick", "{}")).collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap()
            .last_position
    }

    /// A rebuild whose checkpoint is behind what the live writer has
    /// committed is not swapped in (readers would see the model go back):
    /// the swap names the live position, and succeeds once the rebuild has
    /// replayed up to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_swap_behind_the_live_writer_is_refused_until_the_rebuild_catches_up() {
        let (_db, store) = store().await;
        let model = ModelStore::open_postgres(&store, "moving").await.unwrap();
        let runner = crate::ProjectionRunner::start(
            std::sync::Arc::new(store.clone()),
            model.clone(),
            std::sync::Arc::new(Moving),
            crate::RunnerOptions::default(),
        )
        .await
        .unwrap();
        let head = append(&store, 10).await;
        runner.wait_for(head, Duration::from_secs(30)).await.unwrap();
        let live = model.entries().unwrap();

        let mut building = model.begin_generation().await.unwrap();
        let events = store.read_all(1, 10).await.unwrap();
        let mut ws = building.write_set(0);
        for e in &events[..5] {
            Moving.apply(e, &mut ws).unwrap();
        }
        building.commit(ws, Checkpoint::of(&events[4])).await.unwrap();
        let swapped = crate::model::Building::swap_in_all(vec![&mut building], 5)
            .await
            .unwrap();
        assert_eq!(swapped, Some(10), "refused, naming the live checkpoint");
        assert_eq!((model.generation(), model.checkpoint()), (1, 10), "nothing moved");

        let mut ws = building.write_set(0);
        for e in &events[5..] {
            Moving.apply(e, &mut ws).unwrap();
        }
        building.commit(ws, Checkpoint::of(&events[9])).await.unwrap();
        let swapped = crate::model::Building::swap_in_all(vec![&mut building], 10)
            .await
            .unwrap();
        assert_eq!(swapped, None);
        assert_eq!((model.generation(), model.checkpoint()), (2, 10));
        assert_eq!(model.entries().unwrap(), live);

        // The runner, whose generation was retired, follows on in the new one.
        let head = append(&store, 3).await;
        runner.wait_for(head, Duration::from_secs(30)).await.unwrap();
        assert_eq!(model.generation(), 2);
        runner.stop().await.unwrap();
        drop(building);
        drop(model);
    }

    /// A store (see [`store`]) with the `moving` model opened and `n`
    /// events appended, and those events.
    async fn moving_with_events(n: usize) -> (TestDatabase, PostgresStore, ModelStore, Vec<RecordedEvent>) {
        let (db, store) = store().await;
        let model = ModelStore::open_postgres(&store, "moving").await.unwrap();
        append(&store, n).await;
        let events = store.read_all(1, n).await.unwrap();
        assert_eq!(events.len(), n);
        (db, store, model, events)
    }

    /// A rebuild whose generation was removed under it (it lost its lock
    /// with its connection, and the rebuild that took over cleaned up) is
    /// refused at the swap, leaving the live model as it was; and removing
    /// an abandoned rebuild never deletes the current generation, even when
    /// asked to (a swap whose commit landed although its caller saw an
    /// error).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_lost_rebuild_is_not_swapped_in_and_the_current_generation_is_never_dropped() {
        let (_db, store, model, events) = moving_with_events(6).await;
        let head = events[5].position;
        let build = |building: &crate::model::Building| {
            let mut ws = building.write_set(0);
            for e in &events {
                Moving.apply(e, &mut ws).unwrap();
            }
            ws
        };

        // A first rebuild is swapped in: generation 2 is current.
        let mut first = model.begin_generation().await.unwrap();
        first.commit(build(&first), Checkpoint::of(&events[5])).await.unwrap();
        assert_eq!(
            crate::model::Building::swap_in_all(vec![&mut first], head)
                .await
                .unwrap(),
            None
        );
        drop(first);
        assert_eq!((model.generation(), model.checkpoint()), (2, head));
        let live = model.entries().unwrap();
        assert!(!live.is_empty());

        // A second rebuild (generation 3) loses its rebuild lock with its
        // connection before its swap, and a third takes over: it removes
        // generation 3's rows and starts a generation of its own.
        let mut lost = model.begin_generation().await.unwrap();
        lost.commit(build(&lost), Checkpoint::of(&events[5])).await.unwrap();
        let (pg, _, _) = PgModel::open(&store, "moving").await.unwrap();
        let client = pg.connection().await.unwrap();
        let killed = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            killed.len(),
            1,
            "the lost rebuild's lock connection, the only advisory lock"
        );
        drop(client);
        let mut took_over = tokio::time::timeout(Duration::from_secs(60), model.begin_generation())
            .await
            .expect("the rebuild lock was released with its connection")
            .unwrap();
        assert_eq!(took_over.id(), 4, "a generation id is never reused");
        let refused = crate::model::Building::swap_in_all(vec![&mut lost], head).await;
        assert!(
            matches!(refused, Err(ProjectionError::Corrupt { .. })),
            "a generation that is gone is not swapped in: {refused:?}"
        );
        drop(lost);
        assert_eq!(model.generation(), 2, "the live generation stays current");
        assert_eq!(model.entries().unwrap(), live);
        // The rebuild that took over swaps in its own work.
        took_over
            .commit(build(&took_over), Checkpoint::of(&events[5]))
            .await
            .unwrap();
        assert_eq!(
            crate::model::Building::swap_in_all(vec![&mut took_over], head)
                .await
                .unwrap(),
            None
        );
        drop(took_over);
        assert_eq!(model.generation(), 4);
        assert_eq!(model.entries().unwrap(), live);

        // Asked to drop the current generation, nothing is deleted.
        let mut client = Object::take(pg.connection().await.unwrap());
        assert_eq!(pg.drop_unless_current(&mut client, 4).await.unwrap(), 0);
        match pg.changes(0, 0).await.unwrap() {
            Changes::Full { state, entries } => {
                assert_eq!((state.generation, state.checkpoint), (4, head));
                let mut entries = entries;
                entries.sort();
                assert_eq!(entries, live, "every entry of the current generation is still there");
            }
            _ => panic!("a copy at generation 0 is loaded whole"),
        }
        drop(client);
        drop(model);
    }

    /// A batch staged on a checkpoint that another writer has since moved
    /// past is fenced off, even when this process's copy has meanwhile
    /// caught up with that writer: the fence is the batch's own base, not
    /// whatever the copy holds at commit time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_batch_staged_before_another_writers_commit_is_fenced_off() {
        let (_db, _store, model, events) = moving_with_events(10).await;
        let generation = model.generation();
        // This process takes the model's writer lock, as a runner would.
        let (_stop, mut stop_rx) = tokio::sync::watch::channel(false);
        assert!(model.lead(&mut stop_rx).await.unwrap());

        // Staged on checkpoint 0 (events 1..=8) but not committed yet.
        let mut late = model.write_set_on(generation, 0, 0).unwrap();
        for e in &events[..8] {
            Moving.apply(e, &mut late).unwrap();
        }
        // Another writer commits events 1..=5 first.
        let mut first = model.write_set_on(generation, 0, 0).unwrap();
        for e in &events[..5] {
            Moving.apply(e, &mut first).unwrap();
        }
        assert_eq!(
            model.commit(first, Checkpoint::of(&events[4])).await.unwrap(),
            crate::model::Commit::Done
        );
        let after_first = model.entries().unwrap();
        // The late batch would apply 1..=5 a second time: refused.
        assert_eq!(
            model.commit(late, Checkpoint::of(&events[7])).await.unwrap(),
            crate::model::Commit::Stale
        );
        assert_eq!(model.checkpoint(), 5);
        assert_eq!(
            model.entries().unwrap(),
            after_first,
            "nothing of the late batch landed"
        );
        drop(model);
    }

    /// A copy that cannot be brought up to the committed model counts its
    /// failed refreshes (what `/healthz` reports), and the count goes back
    /// to 0 once a refresh succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_copy_that_cannot_refresh_counts_its_failures() {
        let (db, store) = store().await;
        let model = ModelStore::open_postgres(&store, "moving").await.unwrap();
        assert_eq!(model.refresh_failures(), 0);
        let client = db.admin().await;
        let rename = |from: &str, to: &str| format!("ALTER TABLE \"{}\".{from} RENAME TO {to}", db.schema());
        client
            .batch_execute(&rename("projection_checkpoints", "projection_checkpoints_away"))
            .await
            .unwrap();
        until("three failed refreshes", || model.refresh_failures() >= 3).await;
        client
            .batch_execute(&rename("projection_checkpoints_away", "projection_checkpoints"))
            .await
            .unwrap();
        until("the copy to refresh again", || model.refresh_failures() == 0).await;
        drop(model);
    }

    /// Refreshing by changes sees deletes (tombstones); once old tombstones
    /// are purged, a copy from before the purge is reloaded whole instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_copy_behind_purged_tombstones_is_reloaded_whole() {
        let (_db, store) = store().await;
        let model = ModelStore::open_postgres(&store, "moving").await.unwrap();
        let runner = crate::ProjectionRunner::start(
            std::sync::Arc::new(store.clone()),
            model.clone(),
            std::sync::Arc::new(Moving),
            crate::RunnerOptions { batch_size: 4 },
        )
        .await
        .unwrap();
        let first = append(&store, 6).await;
        runner.wait_for(first, Duration::from_secs(30)).await.unwrap();
        // A copy as a process that stopped following at `first` holds it.
        let at_first: BTreeMap<Vec<u8>, Vec<u8>> = model.entries().unwrap().into_iter().collect();
        let head = append(&store, 20).await;
        runner.wait_for(head, Duration::from_secs(30)).await.unwrap();
        let live: BTreeMap<Vec<u8>, Vec<u8>> = model.entries().unwrap().into_iter().collect();
        let (pg, _, _) = PgModel::open(&store, "moving").await.unwrap();

        let apply = |mut copy: BTreeMap<Vec<u8>, Vec<u8>>, changes: Changes| match changes {
            Changes::Incremental { state, changes } => {
                for (k, v) in changes {
                    match v {
                        Some(v) => copy.insert(k, v),
                        None => copy.remove(&k),
                    };
                }
                (false, state.checkpoint, copy)
            }
            Changes::Full { state, entries } => (true, state.checkpoint, entries.into_iter().collect()),
            Changes::None => panic!("changes were committed"),
        };
        let (full, checkpoint, copy) = apply(at_first.clone(), pg.changes(1, first).await.unwrap());
        assert!(!full, "changes since {first} are complete");
        assert_eq!((checkpoint, &copy), (head, &live));

        // Purge every tombstone up to the head: a copy at `first` is now
        // reloaded whole, and still ends equal.
        let client = pg.connection().await.unwrap();
        client
            .execute(&pg.sql.purge, &[&"moving", &1i64, &to_db(head)])
            .await
            .unwrap();
        let (full, checkpoint, copy) = apply(at_first, pg.changes(1, first).await.unwrap());
        assert!(full, "tombstones after {first} are gone: a full reload");
        assert_eq!((checkpoint, &copy), (head, &live));
        assert!(matches!(pg.changes(1, head).await.unwrap(), Changes::None));
        runner.stop().await.unwrap();
        drop(client);
        drop(model);
    }
}
