//! The backends under test, and the steps every test of the suite takes.

use async_trait::async_trait;
use strata_store::{Durability, EventId, LocalTables};
use tokio::sync::watch;

use crate::backend::{Checkpoint, Commit};
use crate::model::building::Building;
use crate::model::store::ModelStore;

/// One backend, as the suite drives it.
#[async_trait]
pub(super) trait Fixture: Send + Sync {
    /// Opens (or opens again) model `name`, as this process.
    async fn open(&self, name: &str) -> ModelStore;

    /// Whether a model opened again holds what was committed (false:
    /// memory, where each open starts empty).
    fn durable(&self) -> bool {
        true
    }

    /// The ids of the generations of `name` the backend stores, in order
    /// (`None`: it stores nothing beyond the generations' objects).
    async fn stored_generations(&self, name: &str) -> Option<Vec<u64>>;

    /// A rebuild that dies with its process: nothing of it is cleaned up
    /// but what the storage itself releases (a database session's locks).
    async fn die(&self, building: Building) {
        std::mem::forget(building);
    }

    /// Makes commits of a batch holding the key [`POISON`] to model `name`
    /// fail inside the storage (`true`), or no longer (`false`); false
    /// when the backend's commits cannot fail (memory).
    async fn fail_commits(&self, _name: &str, _fail: bool) -> bool {
        false
    }
}

/// A key whose commit fails while [`Fixture::fail_commits`] says so.
pub(super) const POISON: &[u8] = b"poison";

/// Models in memory.
pub(super) struct MemoryFixture;

#[async_trait]
impl Fixture for MemoryFixture {
    async fn open(&self, name: &str) -> ModelStore {
        ModelStore::memory(name).unwrap()
    }

    fn durable(&self) -> bool {
        false
    }

    async fn stored_generations(&self, _name: &str) -> Option<Vec<u64>> {
        None
    }
}

/// Models in the sled trees of tables of their own.
pub(super) struct SledFixture {
    _dir: tempfile::TempDir,
    tables: LocalTables,
}

impl SledFixture {
    pub(super) fn new() -> SledFixture {
        let dir = tempfile::tempdir().unwrap();
        let tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
        SledFixture { _dir: dir, tables }
    }
}

#[async_trait]
impl Fixture for SledFixture {
    async fn open(&self, name: &str) -> ModelStore {
        ModelStore::open_in_tables(&self.tables, name).unwrap()
    }

    async fn stored_generations(&self, name: &str) -> Option<Vec<u64>> {
        let prefix = format!("projection.{name}.gen.");
        let mut ids: Vec<u64> = self
            .tables
            .tree_names()
            .iter()
            .filter_map(|t| t.strip_prefix(&prefix)?.parse().ok())
            .collect();
        ids.sort();
        Some(ids)
    }

    async fn fail_commits(&self, name: &str, fail: bool) -> bool {
        crate::backend::sled::failpoint::fail_commits(name, fail);
        true
    }
}

/// Models in PostgreSQL: a throwaway schema, process `a` and, for the
/// tests of several processes, process `b`.
#[cfg(feature = "postgres")]
pub(super) struct PgFixture {
    pub(super) db: strata_testkit::TestDatabase,
    a: strata_store::PostgresStore,
}

#[cfg(feature = "postgres")]
impl PgFixture {
    pub(super) async fn new() -> PgFixture {
        let db = strata_testkit::TestDatabase::new();
        let a = Self::process(&db, "a").await;
        PgFixture { db, a }
    }

    /// A store as process `who` opens it, polling every 100 ms.
    pub(super) async fn process(db: &strata_testkit::TestDatabase, who: &str) -> strata_store::PostgresStore {
        db.connect(strata_store::PostgresOptions {
            poll_interval: std::time::Duration::from_millis(100),
            ..db.options(who)
        })
        .await
    }

    /// Terminates the sessions of process `a` that hold advisory locks
    /// (the writer lease, a rebuild lock); returns how many.
    pub(super) async fn kill_lock_holders(&self) -> i64 {
        self.db
            .admin()
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(l.pid, 10000)) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                 AND (s.application_name = $1 OR s.application_name LIKE $1 || '-%')",
                &[&self.db.application_name("a")],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[cfg(feature = "postgres")]
#[async_trait]
impl Fixture for PgFixture {
    async fn open(&self, name: &str) -> ModelStore {
        ModelStore::open_postgres(&self.a, name).await.unwrap()
    }

    async fn stored_generations(&self, name: &str) -> Option<Vec<u64>> {
        let rows = self
            .db
            .admin()
            .await
            .query(
                &format!(
                    "SELECT generation FROM \"{0}\".projection_checkpoints WHERE model = $1 \
                     UNION SELECT generation FROM \"{0}\".projection_entries WHERE model = $1 ORDER BY 1",
                    self.db.schema()
                ),
                &[&name],
            )
            .await
            .unwrap();
        Some(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    async fn die(&self, building: Building) {
        // The rebuild lock's session (and the writer lease's, if held).
        assert!(self.kill_lock_holders().await >= 1);
        std::mem::forget(building);
    }

    async fn fail_commits(&self, name: &str, fail: bool) -> bool {
        let table = format!("\"{}\".projection_entries", self.db.schema());
        let constraint = format!("fail_{name}");
        let sql = if fail {
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK (model <> '{name}' OR key <> 'poison'::bytea)"
            )
        } else {
            format!("ALTER TABLE {table} DROP CONSTRAINT {constraint}")
        };
        self.db.admin().await.batch_execute(&sql).await.unwrap();
        true
    }
}

/// Claims the model for a writer of this process and takes its lease.
pub(super) async fn lead(model: &ModelStore) {
    assert!(model.claim(), "nothing else owns {}", model.name());
    let (_stop, mut stop) = watch::channel(false);
    assert!(model.lead(&mut stop).await.unwrap());
}

/// A checkpoint at `position` with a fresh event id.
pub(super) fn at(position: u64) -> Checkpoint {
    Checkpoint {
        position,
        event_id: EventId::new(),
    }
}

/// Commits `puts` (key, value; `None` deletes) to the current generation,
/// on its checkpoint, up to `position`, as model version `version`.
pub(super) async fn commit(model: &ModelStore, puts: &[(&[u8], Option<&[u8]>)], position: u64, version: u64) -> Commit {
    let mut ws = model
        .write_set_on(model.generation(), model.checkpoint(), version)
        .unwrap();
    for (k, v) in puts {
        match v {
            Some(v) => ws.put(k.to_vec(), v.to_vec()),
            None => ws.delete(k.to_vec()),
        }
    }
    model.commit(ws, at(position)).await.unwrap()
}

/// Starts a rebuild of `model` and commits `puts` to it up to `position`.
pub(super) async fn build(model: &ModelStore, puts: &[(&[u8], &[u8])], position: u64, version: u64) -> Building {
    let mut building = model.begin_generation().await.unwrap();
    let mut ws = building.write_set(version);
    for (k, v) in puts {
        ws.put(k.to_vec(), v.to_vec());
    }
    building.commit(ws, at(position)).await.unwrap();
    building
}

/// Swaps `building` in at `checkpoint`, as a rebuild does (under the
/// model's commit lock).
pub(super) async fn swap(model: &ModelStore, building: &mut Building, checkpoint: u64) {
    let _commits = model.lock_commits().await;
    assert_eq!(Building::swap_in_all(vec![building], checkpoint).await.unwrap(), None);
}

/// The model's entries as (key, value) strings, for readable asserts.
pub(super) fn entries(model: &ModelStore) -> Vec<(String, String)> {
    model
        .entries()
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// Owned pairs of strings, for comparing with [`entries`].
pub(super) fn pairs(of: &[(&str, &str)]) -> Vec<(String, String)> {
    of.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Waits until the backend stores exactly the generations `ids` of `name`
/// (at once for those that remove them at once; PostgreSQL removes a
/// retired generation's rows in the background).
pub(super) async fn until_stored(fixture: &impl Fixture, name: &str, ids: &[u64]) {
    strata_testkit::until_async(&format!("generations {ids:?} of {name} stored"), || async {
        fixture.stored_generations(name).await.is_none_or(|s| s == ids)
    })
    .await;
}
