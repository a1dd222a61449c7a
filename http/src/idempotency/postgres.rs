//! Idempotency records in PostgreSQL, beside the log, shared by every
//! process that serves the database.
//!
//! One row per key in `http_idempotency` (the record as in sled, plus the
//! columns the purge and the release need). Claiming a key is one
//! transaction: insert a marker if the key is free, else lock the row and
//! judge it by the rules ([`Rules::judge`]). A completed record is written
//! by one autocommitted `UPDATE`, so it is durable (with PostgreSQL's
//! default `synchronous_commit = on`) before the response leaves.
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

use async_trait::async_trait;
use strata_store::deadpool_postgres::{ClientWrapper, Object, Pool};
use strata_store::pg::{MigrationSet, Schema, connection, error, to_db};
use strata_store::{PostgresStore, StoreError};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::backend::RecordStore;
use super::rules::{Begin, Boot, Fingerprint, Judged, Key, Record, Rules, StoredResponse};

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

/// Claims a free key: `$1` key, `$2` marker, `$3` boot, `$4` time.
const CLAIM_FREE: &str = "INSERT INTO {schema}.http_idempotency (key, record, done, boot, at_ms) \
                          VALUES ($1, $2, false, $3, $4) ON CONFLICT (key) DO NOTHING";
/// Locks a taken key's row and reads its record.
const LOCK_ROW: &str = "SELECT record FROM {schema}.http_idempotency WHERE key = $1 FOR UPDATE";
/// Whether run `$1`'s liveness lock is free (then the run is dead).
const HOLDER_GONE: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))";
/// Writes this run's marker over a locked row.
const REPLACE: &str =
    "UPDATE {schema}.http_idempotency SET record = $2, done = false, boot = $3, at_ms = $4 WHERE key = $1";
/// Replaces this run's marker (`$4`) with the response `$2` of time `$3`
/// (or finds that response there already: a retried completion).
const COMPLETE: &str = "UPDATE {schema}.http_idempotency SET record = $2, done = true, boot = NULL, at_ms = $3 \
                        WHERE key = $1 AND ((NOT done AND boot = $4) OR (done AND record = $2))";
/// Removes this run's marker.
const RELEASE: &str = "DELETE FROM {schema}.http_idempotency WHERE key = $1 AND NOT done AND boot = $2";
/// Removes responses and other runs' markers older than `$1`.
const PURGE: &str = "DELETE FROM {schema}.http_idempotency WHERE at_ms < $1 AND (done OR boot IS DISTINCT FROM $2)";

/// How many times a claim tries again when the row it found taken is gone
/// when it comes to lock it.
const CLAIM_ATTEMPTS: usize = 3;

/// The records of one PostgreSQL store, as one run of the process uses them.
pub(crate) struct PgRecords {
    pool: Pool,
    schema: Schema,
    boot: Boot,
    /// The connection holding this run's liveness lock (re-taken by a
    /// keeper task if it drops), kept here so it lives as long as the records.
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

/// The name of a run's liveness lock (hashed by the server). Processes of
/// different versions sharing one database must agree on it.
fn boot_lock(schema: &Schema, boot: Boot) -> String {
    format!("strata.{schema}.http-boot.{}", boot.uuid())
}

impl PgRecords {
    /// Opens (creating or migrating) the records' table in the database and
    /// schema of `store`, for the run `boot`, and takes that run's liveness
    /// lock.
    pub(crate) async fn open(store: &PostgresStore, boot: Boot) -> Result<PgRecords, StoreError> {
        let schema = store.schema().clone();
        let pool = store.pool().clone();
        let mut client = connection(&pool).await?;
        MigrationSet {
            table: "http_migrations",
            label: "http",
            lock_class: MIGRATION_LOCK_CLASS,
            migrations: MIGRATIONS,
        }
        .apply(&mut client, schema.name())
        .await?;
        drop(client);
        let liveness = Arc::new(Mutex::new(Some(hold_liveness(&pool, &schema, boot).await?)));
        let keeper = tokio::spawn(keep_liveness(pool.clone(), schema.clone(), boot, liveness.clone()));
        Ok(PgRecords {
            pool,
            schema,
            boot,
            _liveness: liveness,
            _keeper: KeeperHandle(keeper),
        })
    }

    fn sql(&self, template: &str) -> String {
        self.schema.render(template)
    }
}

/// A record's time as stored.
fn at(ms: u64) -> Result<i64, StoreError> {
    to_db(ms, "an idempotency record's time")
}

#[async_trait]
impl RecordStore for PgRecords {
    async fn claim(&self, rules: &Rules, key: &Key, fingerprint: Fingerprint) -> Result<Begin, StoreError> {
        debug_assert_eq!(rules.boot(), self.boot);
        let marker = rules.marker(fingerprint).encode()?;
        let (boot, now) = (self.boot.uuid(), at(rules.now_ms())?);
        let mut client = connection(&self.pool).await?;
        let claiming = |e| error("claiming an idempotency key", e);
        let mut attempts = 0;
        let (tx, record) = loop {
            attempts += 1;
            let tx = client.transaction().await.map_err(claiming)?;
            let claimed = tx
                .execute(&self.sql(CLAIM_FREE), &[&key.as_str(), &marker, &boot, &now])
                .await
                .map_err(claiming)?;
            if claimed == 1 {
                tx.commit().await.map_err(claiming)?;
                return Ok(Begin::Proceed { after_crash: false });
            }
            // Taken: lock the row (a concurrent claim of the same key waits
            // here until the first commits) and judge what it holds. It
            // may be gone by then (released or purged): claim again.
            let row = tx
                .query_opt(&self.sql(LOCK_ROW), &[&key.as_str()])
                .await
                .map_err(|e| error("reading an idempotency key", e))?;
            match row {
                Some(row) => break (tx, Record::decode(key.as_str(), row.get(0))?),
                None if attempts < CLAIM_ATTEMPTS => continue,
                None => {
                    return Err(StoreError::Unavailable {
                        reason: format!("idempotency key {:?} kept changing hands; retry", key.as_str()),
                    });
                }
            }
        };
        let holder_alive = match rules.holder(&record) {
            Some(holder) => {
                let gone: bool = tx
                    .query_one(HOLDER_GONE, &[&boot_lock(&self.schema, holder)])
                    .await
                    .map_err(|e| error("asking whether a process is alive", e))?
                    .get(0);
                !gone
            }
            None => false,
        };
        let answer = match rules.judge(Some(&record), fingerprint, holder_alive) {
            Judged::Answer(answer) => answer,
            Judged::Claim { after_crash } => {
                tx.execute(&self.sql(REPLACE), &[&key.as_str(), &marker, &boot, &now])
                    .await
                    .map_err(claiming)?;
                Begin::Proceed { after_crash }
            }
        };
        tx.commit().await.map_err(claiming)?;
        Ok(answer)
    }

    async fn complete(&self, _rules: &Rules, key: &Key, response: &StoredResponse) -> Result<bool, StoreError> {
        let time = at(response.created_ms)?;
        let record = Record::Done(response.clone()).encode()?;
        let updated = connection(&self.pool)
            .await?
            .execute(&self.sql(COMPLETE), &[&key.as_str(), &record, &time, &self.boot.uuid()])
            .await
            .map_err(|e| error("recording an idempotent response", e))?;
        Ok(updated == 1)
    }

    async fn release(&self, _rules: &Rules, key: &Key) -> Result<(), StoreError> {
        connection(&self.pool)
            .await?
            .execute(&self.sql(RELEASE), &[&key.as_str(), &self.boot.uuid()])
            .await
            .map_err(|e| error("releasing an idempotency key", e))?;
        Ok(())
    }

    async fn purge(&self, rules: &Rules) -> Result<usize, StoreError> {
        let removed = connection(&self.pool)
            .await?
            .execute(&self.sql(PURGE), &[&at(rules.cutoff_ms())?, &self.boot.uuid()])
            .await
            .map_err(|e| error("purging idempotency keys", e))?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}

/// Takes run `boot`'s liveness lock on a connection of its own.
async fn hold_liveness(pool: &Pool, schema: &Schema, boot: Boot) -> Result<ClientWrapper, StoreError> {
    let client = Object::take(connection(pool).await?);
    client
        .execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))",
            &[&boot_lock(schema, boot)],
        )
        .await
        .map_err(|e| error("taking this process's liveness lock", e))?;
    Ok(client)
}

/// Checks the liveness lock's connection every [`KEEPALIVE`] and takes the
/// lock again on a new one when it dropped. While it is down, other
/// processes take this run's in-flight keys for a dead run's (see
/// docs/postgres.md).
async fn keep_liveness(pool: Pool, schema: Schema, boot: Boot, held: Arc<Mutex<Option<ClientWrapper>>>) {
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
        match hold_liveness(&pool, &schema, boot).await {
            Ok(client) => {
                *held = Some(client);
                info!("idempotency liveness lock taken again");
            }
            Err(e) => warn!(error = %e, "cannot take the idempotency liveness lock; trying again"),
        }
    }
}

/// What only a database shared by live processes shows; the rest is the
/// conformance suite's (`conformance.rs`). Need a server: ignored unless
/// `STRATA_POSTGRES_URL` was set at build time; `scripts/test-postgres.sh
/// cargo test -p strata-http --features postgres` runs them.
#[cfg(test)]
mod tests {
    use strata_testkit::{TestDatabase, until_async};

    use super::*;
    use crate::idempotency::backend::Records;
    use crate::idempotency::conformance::{PROCEED, key, once_not_in_flight, race, response};
    use crate::idempotency::middleware::retry_complete;

    const HOUR: Duration = Duration::from_secs(3600);

    /// The records as a process of its own opens them on `db`.
    async fn open(db: &TestDatabase, who: &str) -> Records {
        let store = db.store(who).await;
        let rules = Rules::new(HOUR);
        let records = PgRecords::open(&store, rules.boot()).await.unwrap();
        Records::new(rules, Arc::new(records))
    }

    /// Two processes on one database: a key in flight in one is 409 in the
    /// other (422 with another payload), its answer is replayed by both;
    /// once the process that holds a marker dies, the same request runs
    /// again in the other, told to look for its write first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_marker_blocks_other_processes_while_its_process_lives() {
        let db = TestDatabase::new();
        let a = open(&db, "a").await;
        let b = open(&db, "b").await;
        let (k, f, g) = (key("k"), Fingerprint::test(1), Fingerprint::test(2));
        assert_eq!(a.begin(&k, f).await.unwrap(), PROCEED);
        assert_eq!(b.begin(&k, f).await.unwrap(), Begin::InFlight);
        assert_eq!(b.begin(&k, g).await.unwrap(), Begin::Mismatch);
        let stored = response(&a, f, "{}");
        a.complete(&k, &stored).await.unwrap();
        assert_eq!(b.begin(&k, f).await.unwrap(), Begin::Replay(stored.clone()));
        assert_eq!(a.begin(&k, f).await.unwrap(), Begin::Replay(stored));

        let dies = key("dies");
        assert_eq!(a.begin(&dies, f).await.unwrap(), PROCEED);
        drop(a); // the process ends: its liveness lock goes with its connection
        assert_eq!(
            once_not_in_flight(&b, &dies, f).await,
            Begin::Proceed { after_crash: true }
        );
        assert_eq!(b.begin(&dies, f).await.unwrap(), Begin::InFlight, "now b's own marker");
        assert_eq!(b.begin(&dies, g).await.unwrap(), Begin::Mismatch);
    }

    /// A process that finishes a key another process took over (its
    /// liveness lock looked lost) records nothing: the claim there now is
    /// not overwritten by the late answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_late_answer_does_not_overwrite_a_key_taken_over() {
        let db = TestDatabase::new();
        let a = open(&db, "a").await;
        let b = open(&db, "b").await;
        let (k, f) = (key("theirs"), Fingerprint::test(4));
        assert_eq!(a.begin(&k, f).await.unwrap(), PROCEED);
        // b takes the key over, as it does when a's liveness lock is lost.
        let admin = db.admin().await;
        let replaced = admin
            .execute(
                &db_table_update(db.schema()),
                &[
                    &k.as_str(),
                    &b.rules().marker(f).encode().unwrap(),
                    &b.rules().boot().uuid(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(replaced, 1);
        a.complete(&k, &response(&a, f, "{}")).await.unwrap();
        assert_eq!(b.begin(&k, f).await.unwrap(), Begin::InFlight, "still b's claim");
        let stored = response(&b, f, "{}");
        b.complete(&k, &stored).await.unwrap();
        assert_eq!(a.begin(&k, f).await.unwrap(), Begin::Replay(stored), "b's answer");
    }

    fn db_table_update(schema: &str) -> String {
        Schema::new(schema)
            .unwrap()
            .render("UPDATE {schema}.http_idempotency SET record = $2, boot = $3 WHERE key = $1")
    }

    /// A response whose recording failed (the table out of reach) keeps
    /// its key in flight, and the background retry records it once the
    /// database answers again; at shutdown it makes one last attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_failed_record_is_retried_until_it_lands() {
        let db = TestDatabase::new();
        let ids = open(&db, "a").await;
        let (late, f) = (key("late"), Fingerprint::test(5));
        assert_eq!(ids.begin(&late, f).await.unwrap(), PROCEED);
        let client = db.admin().await;
        let rename = |from: &str, to: &str| format!("ALTER TABLE \"{}\".{from} RENAME TO {to}", db.schema());
        client
            .batch_execute(&rename("http_idempotency", "http_idempotency_away"))
            .await
            .unwrap();
        let stored = response(&ids, f, "{}");
        assert!(ids.complete(&late, &stored).await.is_err(), "the table is out of reach");

        let stopping = tokio_util::sync::CancellationToken::new();
        let pauses = [Duration::from_millis(100); 50];
        let retry = retry_complete(&ids, &stopping, &pauses, &late, stored.clone());
        let back = async {
            // Some attempts fail first: the table comes back while it retries.
            until_async("a failed attempt to record", || async {
                ids.begin(&late, f).await.is_err()
            })
            .await;
            client
                .batch_execute(&rename("http_idempotency_away", "http_idempotency"))
                .await
                .unwrap();
        };
        let (landed, ()) = tokio::join!(retry, back);
        assert!(landed, "recorded once the table was back");
        assert_eq!(ids.begin(&late, f).await.unwrap(), Begin::Replay(stored.clone()));

        // Stopping: one attempt at once, then no more.
        let stop = key("stop");
        assert_eq!(ids.begin(&stop, f).await.unwrap(), PROCEED);
        client
            .batch_execute(&rename("http_idempotency", "http_idempotency_away"))
            .await
            .unwrap();
        stopping.cancel();
        let slow = [HOUR; 3];
        let gave_up = tokio::time::timeout(
            Duration::from_secs(30),
            retry_complete(&ids, &stopping, &slow, &stop, stored),
        )
        .await
        .expect("a stopping retry does not wait out its pauses");
        assert!(!gave_up);
        client
            .batch_execute(&rename("http_idempotency_away", "http_idempotency"))
            .await
            .unwrap();
        assert_eq!(
            ids.begin(&stop, f).await.unwrap(),
            Begin::InFlight,
            "still this run's marker"
        );
    }

    /// Many requests with one key at once, through two processes: exactly
    /// one runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn concurrent_claims_across_processes_let_exactly_one_run() {
        let db = TestDatabase::new();
        race(&[open(&db, "a").await, open(&db, "b").await], 20).await;
    }

    /// The purge of one process removes another's expired markers but not
    /// a live process's recent ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn purge_keeps_other_processes_recent_markers() {
        let db = TestDatabase::new();
        let a = open(&db, "a").await;
        let b = open(&db, "b").await;
        assert_eq!(b.begin(&key("theirs"), Fingerprint::test(4)).await.unwrap(), PROCEED);
        assert_eq!(a.purge().await.unwrap(), 0);
        assert_eq!(
            a.begin(&key("theirs"), Fingerprint::test(4)).await.unwrap(),
            Begin::InFlight
        );
    }
}
