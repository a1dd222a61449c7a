//! Idempotency records in PostgreSQL, beside the log, shared by every
//! process that serves the database.
//!
//! One row per key in `http_idempotency` (the record as in sled, plus the
//! columns the purge and the release need). Claiming a key is one
//! transaction: insert a marker if the key is free, else lock the row and
//! judge it by the same rules as sled ([`IdempotencyStore::judge`]). A
//! completed record is written by one autocommitted `UPDATE`, so it is
//! durable (with PostgreSQL's default `synchronous_commit = on`) before the
//! response leaves.
//!
//! **Markers of live and dead processes.** With one process per sled
//! directory, a marker of another run is a dead run's. Here another run
//! may be a live process serving the same key right now. So each run holds
//! a session-level advisory lock named after its boot id for as long as it
//! lives, on a connection of its own; a marker of another run blocks the
//! key (409) while that lock is held, and is treated as a dead run's (the
//! retry runs again, looking for its own write first) once the lock is
//! free: `pg_try_advisory_xact_lock` on it succeeds exactly when no session
//! holds it.

use std::sync::Arc;
use std::time::Duration;

use strata_store::deadpool_postgres::{ClientWrapper, Object, Pool};
use strata_store::pg::MigrationSet;
use strata_store::tokio_postgres;
use strata_store::{PostgresStore, StoreError};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::{IdempotencyStore, Judged, Record, StoredResponse, decode, encode, now_ms};
use crate::error::HttpError;
use crate::idempotency::Begin;

/// The migrations of the records' table, in order; each runs once per
/// schema. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "idempotency records",
    r#"
CREATE TABLE {schema}.http_idempotency (
    key    text    COLLATE "C" NOT NULL,
    record bytea   NOT NULL,
    done   boolean NOT NULL,
    boot   uuid,
    at_ms  bigint  NOT NULL,
    CONSTRAINT http_idempotency_pkey PRIMARY KEY (key)
);
CREATE INDEX http_idempotency_at ON {schema}.http_idempotency (at_ms);
COMMENT ON TABLE {schema}.http_idempotency IS
    'strata-http Idempotency-Key records: an in-flight marker (done = false, boot = the run holding it) or the response to replay.';
"#,
)];

/// The first key of the advisory lock that serialises these migrations ("STRH").
const MIGRATION_LOCK_CLASS: i32 = 0x5354_5248;

/// How often the connection that holds this run's liveness lock is checked.
const KEEPALIVE: Duration = Duration::from_secs(5);

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn db_error(context: &str, e: tokio_postgres::Error) -> HttpError {
    HttpError::Store(StoreError::from_postgres(context, e))
}

fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

struct Sql {
    claim_free: String,
    lock_row: String,
    replace: String,
    complete: String,
    abandon: String,
    purge: String,
}

/// The records of one PostgreSQL store.
pub(crate) struct PgRecords {
    pool: Pool,
    sql: Sql,
    schema: String,
    boot: uuid::Uuid,
    /// The connection holding this run's liveness lock (re-taken by a
    /// keeper task if it drops), kept here so it lives as long as the store.
    _liveness: Arc<Mutex<Option<ClientWrapper>>>,
    _keeper: KeeperHandle,
}

/// Stops the keeper task when the records are dropped.
struct KeeperHandle(tokio::task::JoinHandle<()>);

impl Drop for KeeperHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The name of a run's liveness lock (hashed by the server).
fn boot_lock(schema: &str, boot: &uuid::Uuid) -> String {
    format!("strata.{schema}.http-boot.{boot}")
}

impl PgRecords {
    pub(crate) async fn open(store: &PostgresStore, boot: [u8; 16]) -> Result<PgRecords, HttpError> {
        let schema = store.options().schema.clone();
        let q = quote_ident(&schema);
        let table = format!("{q}.http_idempotency");
        let pool = store.pool().clone();
        let mut client = connection(&pool).await?;
        migrate(&mut client, &schema).await?;
        drop(client);
        let boot = uuid::Uuid::from_bytes(boot);
        let liveness = Arc::new(Mutex::new(Some(hold_liveness(&pool, &schema, &boot).await?)));
        let keeper = tokio::spawn(keep_liveness(pool.clone(), schema.clone(), boot, liveness.clone()));
        Ok(PgRecords {
            sql: Sql {
                claim_free: format!(
                    "INSERT INTO {table} (key, record, done, boot, at_ms) VALUES ($1, $2, false, $3, $4) \
                     ON CONFLICT (key) DO NOTHING"
                ),
                lock_row: format!("SELECT record FROM {table} WHERE key = $1 FOR UPDATE"),
                replace: format!("UPDATE {table} SET record = $2, done = false, boot = $3, at_ms = $4 WHERE key = $1"),
                complete: format!(
                    "UPDATE {table} SET record = $2, done = true, boot = NULL, at_ms = $3 \
                     WHERE key = $1 AND NOT done AND boot = $4"
                ),
                abandon: format!("DELETE FROM {table} WHERE key = $1 AND NOT done AND boot = $2"),
                purge: format!("DELETE FROM {table} WHERE at_ms < $1 AND (done OR boot IS DISTINCT FROM $2)"),
            },
            pool,
            schema,
            boot,
            _liveness: liveness,
            _keeper: KeeperHandle(keeper),
        })
    }

    /// Claims `key`: see the module doc.
    pub(crate) async fn begin(
        &self,
        rules: &IdempotencyStore,
        key: &str,
        fingerprint: [u8; 32],
    ) -> Result<Begin, HttpError> {
        let marker = encode(&rules.marker(fingerprint))?;
        let at = to_db(now_ms());
        let mut client = connection(&self.pool).await?;
        let mut attempts = 0;
        let (tx, record) = loop {
            attempts += 1;
            let tx = client
                .transaction()
                .await
                .map_err(|e| db_error("starting an idempotency claim", e))?;
            let claimed = tx
                .execute(&self.sql.claim_free, &[&key, &marker, &self.boot, &at])
                .await
                .map_err(|e| db_error("claiming an idempotency key", e))?;
            if claimed == 1 {
                tx.commit()
                    .await
                    .map_err(|e| db_error("claiming an idempotency key", e))?;
                return Ok(Begin::Proceed { after_crash: false });
            }
            // Taken: lock the row (a concurrent claim of the same key waits
            // here until the first commits) and judge what it holds. It
            // may be gone by then (released or purged): claim again.
            let row = tx
                .query_opt(&self.sql.lock_row, &[&key])
                .await
                .map_err(|e| db_error("reading an idempotency key", e))?;
            match row {
                Some(row) => break (tx, decode(key, row.get(0))?),
                None if attempts < 3 => continue,
                None => {
                    return Err(HttpError::Store(StoreError::Unavailable {
                        reason: format!("idempotency key {key:?} kept changing hands; retry"),
                    }));
                }
            }
        };
        let other_alive = match rules.other_boot(Some(&record)) {
            Some(other) => {
                let free: bool = tx
                    .query_one(
                        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                        &[&boot_lock(&self.schema, &uuid::Uuid::from_bytes(other))],
                    )
                    .await
                    .map_err(|e| db_error("asking whether a process is alive", e))?
                    .get(0);
                !free
            }
            None => false,
        };
        let answer = match rules.judge(Some(&record), fingerprint, other_alive) {
            Judged::Answer(answer) => answer,
            Judged::Claim { after_crash } => {
                tx.execute(&self.sql.replace, &[&key, &marker, &self.boot, &at])
                    .await
                    .map_err(|e| db_error("claiming an idempotency key", e))?;
                Begin::Proceed { after_crash }
            }
        };
        tx.commit()
            .await
            .map_err(|e| db_error("claiming an idempotency key", e))?;
        Ok(answer)
    }

    pub(crate) async fn complete(&self, key: &str, response: StoredResponse) -> Result<(), HttpError> {
        let at = to_db(response.created_ms);
        let record = encode(&Record::Done(response))?;
        let updated = connection(&self.pool)
            .await?
            .execute(&self.sql.complete, &[&key, &record, &at, &self.boot])
            .await
            .map_err(|e| db_error("recording an idempotent response", e))?;
        if updated == 0 {
            // Only this run's in-flight marker is replaced: when another
            // process took the key over (this run's liveness lock looked
            // lost) or it was purged, the record there is kept rather than
            // overwritten by whichever run finishes last.
            warn!(
                key,
                "idempotency key no longer held by this process (taken over while its liveness lock was lost); its response is not recorded"
            );
        }
        Ok(())
    }

    pub(crate) async fn abandon(&self, key: &str) -> Result<(), HttpError> {
        connection(&self.pool)
            .await?
            .execute(&self.sql.abandon, &[&key, &self.boot])
            .await
            .map_err(|e| db_error("releasing an idempotency key", e))?;
        Ok(())
    }

    /// Removes records and markers of other runs older than `cutoff_ms`.
    pub(crate) async fn purge(&self, cutoff_ms: u64) -> Result<usize, HttpError> {
        let n = connection(&self.pool)
            .await?
            .execute(&self.sql.purge, &[&to_db(cutoff_ms), &self.boot])
            .await
            .map_err(|e| db_error("purging idempotency keys", e))?;
        Ok(n as usize)
    }
}

async fn connection(pool: &Pool) -> Result<Object, HttpError> {
    pool.get().await.map_err(|e| {
        HttpError::Store(StoreError::Unavailable {
            reason: format!("no PostgreSQL connection for the idempotency records: {e}"),
        })
    })
}

/// Takes this run's liveness lock on a connection of its own.
async fn hold_liveness(pool: &Pool, schema: &str, boot: &uuid::Uuid) -> Result<ClientWrapper, HttpError> {
    let client = Object::take(connection(pool).await?);
    client
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&boot_lock(schema, boot)],
        )
        .await
        .map_err(|e| db_error("taking this process's liveness lock", e))?;
    Ok(client)
}

/// Checks the liveness lock's connection every [`KEEPALIVE`] and takes the
/// lock again on a new one when it dropped. While it is down, other
/// processes take this run's in-flight keys for a dead run's (see
/// docs/postgres.md).
async fn keep_liveness(pool: Pool, schema: String, boot: uuid::Uuid, held: Arc<Mutex<Option<ClientWrapper>>>) {
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let mut held = held.lock().await;
        let alive = match held.as_ref() {
            // Bounded: a connection the network black-holed must not hang
            // the check (and this lock) for the kernel's keepalive time.
            Some(client) => matches!(
                tokio::time::timeout(KEEPALIVE, client.simple_query("")).await,
                Ok(Ok(_))
            ),
            None => false,
        };
        if alive {
            continue;
        }
        warn!("the connection holding this process's idempotency liveness lock dropped; taking it again");
        *held = None;
        match hold_liveness(&pool, &schema, &boot).await {
            Ok(client) => {
                *held = Some(client);
                info!("idempotency liveness lock taken again");
            }
            Err(e) => warn!(error = %e, "cannot take the idempotency liveness lock; trying again"),
        }
    }
}

/// Creates the table and applies the migrations it lacks.
async fn migrate(client: &mut Object, schema: &str) -> Result<(), HttpError> {
    MigrationSet {
        table: "http_migrations",
        label: "http",
        lock_class: MIGRATION_LOCK_CLASS,
        migrations: MIGRATIONS,
    }
    .apply(client, schema)
    .await
    .map_err(HttpError::Store)
}

/// Need a server: ignored unless `STRATA_POSTGRES_URL` was set at build
/// time; `scripts/test-postgres.sh cargo test -p strata-http --features
/// postgres` runs them.
#[cfg(test)]
mod tests {
    use strata_testkit::{TestDatabase, until_async};

    use super::*;
    use crate::idempotency::tests::{response, runs_once_then_replays};

    /// The records as a process of its own opens them on `db`.
    async fn open(db: &TestDatabase, retention: Duration) -> IdempotencyStore {
        let store = db.store("records").await;
        IdempotencyStore::open_postgres(&store, retention).await.unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_key_runs_once_then_replays_and_refuses_other_payloads() {
        let db = TestDatabase::new();
        runs_once_then_replays(&open(&db, HOUR).await).await;
    }

    /// Two processes on one database: a key in flight in one is 409 in the
    /// other (422 with another payload), its answer is replayed by both;
    /// once the process that holds a marker dies, the same request runs
    /// again in the other, told to look for its write first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_marker_blocks_other_processes_while_its_process_lives() {
        let db = TestDatabase::new();
        let a = open(&db, HOUR).await;
        let b = open(&db, HOUR).await;
        let (f, g) = ([1; 32], [2; 32]);
        assert_eq!(a.begin("k", f).await.unwrap(), Begin::Proceed { after_crash: false });
        assert_eq!(b.begin("k", f).await.unwrap(), Begin::InFlight);
        assert_eq!(b.begin("k", g).await.unwrap(), Begin::Mismatch);
        let stored = response(f);
        a.complete("k", stored.clone()).await.unwrap();
        assert_eq!(b.begin("k", f).await.unwrap(), Begin::Replay(stored.clone()));
        assert_eq!(a.begin("k", f).await.unwrap(), Begin::Replay(stored));

        assert_eq!(a.begin("dies", f).await.unwrap(), Begin::Proceed { after_crash: false });
        drop(a); // the process ends: its liveness lock goes with its connection
        let answer = std::sync::Mutex::new(None);
        until_async("the dead process's marker to stop blocking", || async {
            match b.begin("dies", f).await.unwrap() {
                Begin::InFlight => false,
                other => {
                    *answer.lock().unwrap() = Some(other);
                    true
                }
            }
        })
        .await;
        assert_eq!(answer.into_inner().unwrap(), Some(Begin::Proceed { after_crash: true }));
        assert_eq!(b.begin("dies", f).await.unwrap(), Begin::InFlight, "now b's own marker");
        assert_eq!(b.begin("dies", g).await.unwrap(), Begin::Mismatch);
        drop(b);
    }

    /// A response whose recording failed (the table out of reach) keeps
    /// its key in flight, and the background retry records it once the
    /// database answers again; at shutdown it makes one last attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_failed_record_is_retried_until_it_lands() {
        let db = TestDatabase::new();
        let ids = open(&db, HOUR).await;
        let f = [5; 32];
        assert_eq!(
            ids.begin("late", f).await.unwrap(),
            Begin::Proceed { after_crash: false }
        );
        let client = db.admin().await;
        let rename = |from: &str, to: &str| format!("ALTER TABLE \"{}\".{from} RENAME TO {to}", db.schema());
        client
            .batch_execute(&rename("http_idempotency", "http_idempotency_away"))
            .await
            .unwrap();
        let stored = response(f);
        assert!(
            ids.complete("late", stored.clone()).await.is_err(),
            "the table is out of reach"
        );

        let stopping = tokio_util::sync::CancellationToken::new();
        let pauses = [Duration::from_millis(100); 50];
        let retry = super::super::retry_complete_with(&ids, &stopping, &pauses, "late", stored.clone());
        let back = async {
            tokio::time::sleep(Duration::from_millis(350)).await;
            client
                .batch_execute(&rename("http_idempotency_away", "http_idempotency"))
                .await
                .unwrap();
        };
        let (landed, ()) = tokio::join!(retry, back);
        assert!(landed, "recorded once the table was back");
        assert_eq!(ids.begin("late", f).await.unwrap(), Begin::Replay(stored.clone()));

        // Stopping: one attempt at once, then no more.
        assert_eq!(
            ids.begin("stop", f).await.unwrap(),
            Begin::Proceed { after_crash: false }
        );
        client
            .batch_execute(&rename("http_idempotency", "http_idempotency_away"))
            .await
            .unwrap();
        stopping.cancel();
        let slow = [Duration::from_secs(3600); 3];
        let gave_up = tokio::time::timeout(
            Duration::from_secs(30),
            super::super::retry_complete_with(&ids, &stopping, &slow, "stop", stored),
        )
        .await
        .expect("a stopping retry does not wait out its pauses");
        assert!(!gave_up);
        client
            .batch_execute(&rename("http_idempotency_away", "http_idempotency"))
            .await
            .unwrap();
        assert_eq!(
            ids.begin("stop", f).await.unwrap(),
            Begin::InFlight,
            "still this run's marker"
        );
        drop(ids);
    }

    /// Many requests with one key at once, through two processes: exactly
    /// one runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn concurrent_claims_across_processes_let_exactly_one_run() {
        let db = TestDatabase::new();
        let stores = [Arc::new(open(&db, HOUR).await), Arc::new(open(&db, HOUR).await)];
        for round in 0..20 {
            let key = format!("race-{round}");
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let (store, key) = (stores[i % 2].clone(), key.clone());
                    tokio::spawn(async move { store.begin(&key, [9; 32]).await.unwrap() })
                })
                .collect();
            let mut proceeded = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Begin::Proceed { after_crash: false } => proceeded += 1,
                    Begin::InFlight => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(proceeded, 1, "round {round}");
        }
        drop(stores);
    }

    /// The purge removes expired answers and expired markers of other
    /// runs, and keeps this run's markers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn purge_removes_expired_records_and_keeps_this_runs_markers() {
        let db = TestDatabase::new();
        let ids = open(&db, Duration::ZERO).await;
        assert_eq!(
            ids.begin("mine", [3; 32]).await.unwrap(),
            Begin::Proceed { after_crash: false }
        );
        let mut old = response([2; 32]);
        old.created_ms = 0;
        ids.begin("expired", [2; 32]).await.unwrap();
        ids.complete("expired", old).await.unwrap();
        let other = open(&db, HOUR).await;
        other.begin("theirs", [4; 32]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            ids.purge().await.unwrap(),
            2,
            "the expired answer and the other run's expired marker"
        );
        assert_eq!(
            ids.begin("mine", [3; 32]).await.unwrap(),
            Begin::InFlight,
            "a live marker of this run stays"
        );
        assert_eq!(
            ids.begin("expired", [9; 32]).await.unwrap(),
            Begin::Proceed { after_crash: false }
        );
        // The other run finishing a key it no longer holds records nothing:
        // whoever holds the key now is not overwritten by a late answer.
        other.complete("theirs", response([4; 32])).await.unwrap();
        assert_eq!(
            ids.begin("theirs", [4; 32]).await.unwrap(),
            Begin::Proceed { after_crash: false },
            "no record was resurrected by the late completion"
        );
        other.complete("theirs", response([4; 32])).await.unwrap();
        assert_eq!(
            ids.begin("theirs", [4; 32]).await.unwrap(),
            Begin::InFlight,
            "this run's claim was not replaced by the other run's answer"
        );
        drop((ids, other));
    }
}
