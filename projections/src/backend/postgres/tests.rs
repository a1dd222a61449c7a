//! PostgreSQL-only unit tests of the backend (the contract every backend
//! keeps is checked by the conformance suite). They need a server: ignored
//! unless `STRATA_POSTGRES_URL` was set at build time;
//! `scripts/test-postgres.sh cargo test -p strata-projections --features
//! postgres` runs them.

use std::time::Duration;

use std::collections::BTreeMap;

use strata_store::deadpool_postgres::Object;
use strata_store::{EventStore, ExpectedVersion, NewEvent, PostgresStore, RecordedEvent, StreamId};
use strata_testkit::{TestDatabase, until};

use super::sql;
use super::tables::{Catchup, PgModel};
use crate::backend::contract::Checkpoint;
use crate::error::ProjectionError;
use crate::model::building::Building;
use crate::model::store::ModelStore;
use crate::model::write_set::WriteSet;
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
    let swapped = Building::swap_in_all(vec![&mut building], 5).await.unwrap();
    assert_eq!(swapped, Some(10), "refused, naming the live checkpoint");
    assert_eq!((model.generation(), model.checkpoint()), (1, 10), "nothing moved");

    let mut ws = building.write_set(0);
    for e in &events[5..] {
        Moving.apply(e, &mut ws).unwrap();
    }
    building.commit(ws, Checkpoint::of(&events[9])).await.unwrap();
    let swapped = Building::swap_in_all(vec![&mut building], 10).await.unwrap();
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
    let (db, store, model, events) = moving_with_events(6).await;
    let head = events[5].position;
    let build = |building: &Building| {
        let mut ws = building.write_set(0);
        for e in &events {
            Moving.apply(e, &mut ws).unwrap();
        }
        ws
    };

    // A first rebuild is swapped in: generation 2 is current.
    let mut first = model.begin_generation().await.unwrap();
    first.commit(build(&first), Checkpoint::of(&events[5])).await.unwrap();
    assert_eq!(Building::swap_in_all(vec![&mut first], head).await.unwrap(), None);
    drop(first);
    assert_eq!((model.generation(), model.checkpoint()), (2, head));
    let live = model.entries().unwrap();
    assert!(!live.is_empty());

    // A second rebuild (generation 3) loses its rebuild lock with its
    // connection before its swap, and a third (of another handle, as
    // another process) takes over: it removes generation 3's rows and
    // starts a generation of its own.
    let mut lost = model.begin_generation().await.unwrap();
    lost.commit(build(&lost), Checkpoint::of(&events[5])).await.unwrap();
    let (pg, _, _) = PgModel::open(&store, "moving").await.unwrap();
    let killed: i64 = db
        .admin()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid, 10000)) FROM pg_locks l \
             JOIN pg_stat_activity s ON s.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND s.application_name = $1",
            &[&db.application_name("unit")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the lost rebuild's lock connection, the only advisory lock");
    let other = ModelStore::open_postgres(&store, "moving").await.unwrap();
    let mut took_over = tokio::time::timeout(Duration::from_secs(60), other.begin_generation())
        .await
        .expect("the rebuild lock was released with its connection")
        .unwrap();
    assert_eq!(took_over.id(), 4, "a generation id is never reused");
    let refused = Building::swap_in_all(vec![&mut lost], head).await;
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
    assert_eq!(Building::swap_in_all(vec![&mut took_over], head).await.unwrap(), None);
    drop(took_over);
    assert_eq!(other.generation(), 4);
    until("the first handle to follow the swap", || model.generation() == 4).await;
    assert_eq!(model.entries().unwrap(), live);

    // Asked to drop the current generation, nothing is deleted.
    let mut client = Object::take(pg.connection().await.unwrap());
    assert_eq!(pg.drop_unless_current(&mut client, 4).await.unwrap(), 0);
    match pg.changes(0, 0).await.unwrap() {
        Catchup::Full { state, entries } => {
            assert_eq!((state.generation, state.stored.position), (4, head));
            let mut entries = entries;
            entries.sort();
            assert_eq!(entries, live, "every entry of the current generation is still there");
        }
        _ => panic!("a copy at generation 0 is loaded whole"),
    }
    drop(client);
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
        crate::RunnerOptions {
            batch_size: 4,
            ..crate::RunnerOptions::default()
        },
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

    let apply = |mut copy: BTreeMap<Vec<u8>, Vec<u8>>, changes: Catchup| match changes {
        Catchup::Incremental { state, changes } => {
            for (k, v) in changes {
                match v {
                    Some(v) => copy.insert(k, v),
                    None => copy.remove(&k),
                };
            }
            (false, state.stored.position, copy)
        }
        Catchup::Full { state, entries } => (true, state.stored.position, entries.into_iter().collect()),
        Catchup::None => panic!("changes were committed"),
    };
    let (full, checkpoint, copy) = apply(at_first.clone(), pg.changes(1, first).await.unwrap());
    assert!(!full, "changes since {first} are complete");
    assert_eq!((checkpoint, &copy), (head, &live));

    // Purge every tombstone up to the head: a copy at `first` is now
    // reloaded whole, and still ends equal.
    let client = pg.connection().await.unwrap();
    client
        .execute(&pg.sql(sql::PURGE), &[&"moving", &1i64, &(head as i64)])
        .await
        .unwrap();
    let (full, checkpoint, copy) = apply(at_first, pg.changes(1, first).await.unwrap());
    assert!(full, "tombstones after {first} are gone: a full reload");
    assert_eq!((checkpoint, &copy), (head, &live));
    assert!(matches!(pg.changes(1, head).await.unwrap(), Catchup::None));
    runner.stop().await.unwrap();
    drop(client);
    drop(model);
}
