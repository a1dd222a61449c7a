//! Scavenging a `PostgresStore` (`PostgresStore::scavenge`), the
//! PostgreSQL versions of `scavenge.rs`:
//!
//! - after a scavenge the payloads of deleted, truncated and expired events
//!   are absent from the `events` table (a `SELECT` searches every row for
//!   a marker written in them), what is kept is intact, their ids are in
//!   `erased_events`, stream versions go on and a late retry of an erased
//!   append is still answered idempotently;
//! - a scavenge that dies halfway (its task panics after the first page of
//!   streams) leaves every batch it committed erased and nothing else
//!   changed, and running it again finishes the work;
//! - a scavenge asked to stop (`scavenge_until`, as a server's shutdown
//!   does) ends between two batches, says so, and the next one finishes;
//! - a scavenge under concurrent appends, reads and a live subscription
//!   skips and duplicates nothing for the subscriber.
//!
//! (The rules of `conformance_retention.rs` also run with a scavenge after
//! every write: its `postgres_scavenged` backend.)
//!
//! Needs a server: run with
//! `scripts/test-postgres.sh cargo test -p strata-store --features postgres --test postgres_scavenge`.

mod common;

/// Declares each test, ignored unless built for a server.
macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
            async fn $name() {
                #[cfg(feature = "postgres")]
                imp::$name().await;
            }
        )*
    };
}

postgres_tests!(
    a_scavenge_deletes_removed_rows_and_keeps_only_their_ids,
    a_scavenge_that_dies_halfway_is_finished_by_the_next,
    a_scavenge_asked_to_stop_ends_between_batches_and_the_next_finishes,
    a_scavenge_under_load_skips_and_duplicates_nothing_for_a_subscriber,
);

/// Measures a PostgreSQL scavenge (docs/retention.md): `STRATA_PG_SCAVENGE_EVENTS`
/// events of 200 bytes in streams of 100, every tenth stream deleted, then
/// the scavenge's events/s and MB/s, and the appends per second of 4
/// writers alone and during a scavenge. Run with
/// `STRATA_PG_SCAVENGE_EVENTS=200000 scripts/test-postgres.sh cargo test --release -p strata-store --features postgres --test postgres_scavenge -- --ignored --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: set STRATA_PG_SCAVENGE_EVENTS and run with scripts/test-postgres.sh and --ignored"]
async fn measure_a_postgres_scavenge() {
    #[cfg(feature = "postgres")]
    imp::measure().await;
}

#[cfg(feature = "postgres")]
mod imp {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use strata_store::tokio_postgres::Client;
    use strata_store::{
        DeleteMode, Direction, EventStore, ExpectedVersion, NewEvent, PostgresScavengeOptions, PostgresStore,
        StoreError, StreamMetadata,
    };
    use strata_testkit::TestDatabase;

    use crate::common::sid;

    const GONE: &[u8] = b"ERASE-ME-7f3a";
    const KEPT: &[u8] = b"KEEP-ME-41c2";

    fn payload(marker: &[u8], i: usize) -> Vec<u8> {
        let mut p = marker.to_vec();
        p.extend_from_slice(format!("-{i}-").as_bytes());
        p.extend_from_slice(&[b'.'; 200]);
        p
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Options with small batches, so a scavenge takes many transactions.
    fn batches_of(n: usize) -> PostgresScavengeOptions {
        PostgresScavengeOptions {
            batch_events: n,
            ..PostgresScavengeOptions::default()
        }
    }

    async fn store() -> (Arc<TestDatabase>, PostgresStore) {
        let db = Arc::new(TestDatabase::new());
        let store = db.connect(db.options("main")).await;
        (db, store)
    }

    /// Rows of the events table whose payload holds `marker`.
    async fn rows_holding(admin: &Client, schema: &str, marker: &[u8]) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{schema}\".events WHERE position($1::bytea IN payload) > 0");
        admin.query_one(&sql, &[&marker]).await.unwrap().get(0)
    }

    async fn count(admin: &Client, schema: &str, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{schema}\".{table}");
        admin.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// The history of `scavenge.rs`: a soft-deleted stream, a hard-deleted
    /// one, a truncated one and one with `max_count` 2 (`GONE` in what they
    /// remove), and kept streams (`KEPT`). Returns the events of the
    /// soft-deleted stream, one append each (for late retries).
    async fn history(store: &dyn EventStore, rounds: usize) -> Vec<NewEvent> {
        let mut deleted = Vec::new();
        for i in 0..rounds {
            let e = NewEvent::new("Gone", payload(GONE, i));
            deleted.push(e.clone());
            store
                .append(&sid("del-soft"), ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
            let e = NewEvent::new("Gone", payload(GONE, i));
            store
                .append(&sid("del-hard"), ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
            let e = NewEvent::new("Kept", payload(KEPT, i));
            let keep = sid(&format!("keep-{}", i % 3));
            store.append(&keep, ExpectedVersion::Any, vec![e]).await.unwrap();
            let trunc = if i < rounds - 2 { GONE } else { KEPT };
            let e = NewEvent::new("T", payload(trunc, i));
            store
                .append(&sid("trunc"), ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
            let e = NewEvent::new("C", payload(trunc, i));
            store
                .append(&sid("capped"), ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
        }
        store
            .delete_stream(&sid("del-soft"), ExpectedVersion::Any, DeleteMode::Soft)
            .await
            .unwrap();
        store
            .delete_stream(&sid("del-hard"), ExpectedVersion::Any, DeleteMode::Hard)
            .await
            .unwrap();
        store
            .truncate_stream(&sid("trunc"), ExpectedVersion::Exact(rounds as u64), rounds as u64 - 1)
            .await
            .unwrap();
        let keep2 = StreamMetadata {
            max_count: Some(2),
            max_age: None,
        };
        store
            .set_stream_metadata(&sid("capped"), ExpectedVersion::NoStream, keep2)
            .await
            .unwrap();
        deleted
    }

    /// What a reader sees of the log, `$$` streams left out: (stream,
    /// version, position, payload) of every event.
    async fn visible(store: &dyn EventStore) -> Vec<(String, u64, u64, Vec<u8>)> {
        let events = store.read_all(0, usize::MAX).await.unwrap();
        events
            .into_iter()
            .filter(|e| !e.stream_id.as_str().starts_with("$$"))
            .map(|e| (e.stream_id.to_string(), e.version, e.position, e.payload.to_vec()))
            .collect()
    }

    pub async fn a_scavenge_deletes_removed_rows_and_keeps_only_their_ids() {
        let (db, store) = store().await;
        let deleted = history(&store, 60).await;
        let admin = db.admin().await;
        let schema = db.schema();
        assert_eq!(rows_holding(&admin, schema, GONE).await, 60 + 60 + 58 + 58, "before");
        let before = visible(&store).await;
        let mut calls = 0;
        let report = store.scavenge(batches_of(7), &mut |_| calls += 1).await.unwrap();
        assert_eq!(report.events_erased, 60 + 60 + 58 + 58, "{report:?}");
        assert_eq!(report.streams_truncated, 1, "max_count made permanent: {report:?}");
        assert!(report.batches >= (60 + 60 + 58 + 58) / 7, "bounded batches: {report:?}");
        assert!(report.bytes_erased >= report.events_erased * 200, "{report:?}");
        assert!(calls >= 2, "progress reported");
        assert_eq!(
            rows_holding(&admin, schema, GONE).await,
            0,
            "no erased payload left in the table"
        );
        assert!(
            rows_holding(&admin, schema, KEPT).await > 0,
            "the search finds what is kept"
        );
        assert_eq!(count(&admin, schema, "erased_events").await, 60 + 60 + 58 + 58);
        // Readers see exactly what they saw before (the truncation that
        // made max_count permanent is a `$$` event).
        assert_eq!(visible(&store).await, before);
        // Versions go on: the soft-deleted stream reads as absent, a writer
        // that decided on its old version is refused, a new one goes on
        // from its last version ever.
        assert_eq!(store.stream_version(&sid("del-soft")).await.unwrap(), 0);
        assert_eq!(store.stream_version(&sid("trunc")).await.unwrap(), 60);
        let stale = store
            .append(
                &sid("del-soft"),
                ExpectedVersion::Exact(60),
                vec![NewEvent::new("X", "x")],
            )
            .await;
        assert!(
            matches!(stale, Err(StoreError::WrongExpectedVersion { actual: 0, .. })),
            "{stale:?}"
        );
        // A late retry of an erased append is answered with its original
        // result and writes nothing, however it names the version.
        for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
            let retry = store
                .append(&sid("del-soft"), expected, vec![deleted[0].clone()])
                .await
                .unwrap();
            assert_eq!(retry.stream_version, 1, "answered with the original result");
        }
        let retry = store
            .append(&sid("del-soft"), ExpectedVersion::Exact(4), vec![deleted[4].clone()])
            .await
            .unwrap();
        assert_eq!(retry.stream_version, 5);
        assert!(
            store
                .read_stream(&sid("del-soft"), 1, Direction::Forward, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(rows_holding(&admin, schema, GONE).await, 0, "the retries wrote nothing");
        let again = store
            .append(
                &sid("del-soft"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("New", "n")],
            )
            .await
            .unwrap();
        assert_eq!(again.stream_version, 61, "the version goes on after the erased ones");
        let hard = store
            .append(&sid("del-hard"), ExpectedVersion::Any, vec![NewEvent::new("X", "x")])
            .await;
        assert!(matches!(hard, Err(StoreError::StreamDeleted { .. })), "{hard:?}");
        // A second scavenge erases nothing more; another process sees the same.
        let second = store.scavenge(batches_of(7), &mut |_| {}).await.unwrap();
        assert_eq!((second.events_erased, second.streams_truncated), (0, 0), "{second:?}");
        let other = db.store("other").await;
        assert_eq!(other.stream_version(&sid("del-soft")).await.unwrap(), 61);
        assert_eq!(other.stream_version(&sid("del-hard")).await.unwrap(), 0);
    }

    /// 300 soft-deleted streams of 3 events each (more than one page of
    /// 256 streams), and one kept.
    async fn three_hundred_deleted_streams(store: &PostgresStore) {
        for i in 0..300 {
            let s = sid(&format!("gone-{i:03}"));
            let events = (0..3).map(|j| NewEvent::new("Gone", payload(GONE, j))).collect();
            store.append(&s, ExpectedVersion::NoStream, events).await.unwrap();
            store
                .delete_stream(&s, ExpectedVersion::Exact(3), DeleteMode::Soft)
                .await
                .unwrap();
        }
        store
            .append(
                &sid("kept"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("K", payload(KEPT, 0))],
            )
            .await
            .unwrap();
    }

    pub async fn a_scavenge_that_dies_halfway_is_finished_by_the_next() {
        let (db, store) = store().await;
        three_hundred_deleted_streams(&store).await;
        let before = visible(&store).await;
        let admin = db.admin().await;
        let schema = db.schema().to_string();
        // The scavenge dies after its first page of streams, its batches
        // committed: as a crash of its process would leave it.
        let dying = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .scavenge(batches_of(50), &mut |p| {
                        if p.streams_done > 0 {
                            panic!("the scavenge dies here (a simulated crash)");
                        }
                    })
                    .await
            })
        };
        assert!(dying.await.is_err(), "the scavenge died");
        let left = rows_holding(&admin, &schema, GONE).await;
        let erased = count(&admin, &schema, "erased_events").await;
        assert_eq!(erased, 256 * 3, "the first page of streams was erased");
        assert_eq!(left, 900 - erased, "the rest untouched");
        assert_eq!(visible(&store).await, before, "readers see the same");
        let report = store.scavenge(batches_of(50), &mut |_| {}).await.unwrap();
        assert_eq!(report.events_erased, (900 - erased) as u64, "{report:?}");
        assert_eq!(rows_holding(&admin, &schema, GONE).await, 0);
        assert_eq!(count(&admin, &schema, "erased_events").await, 900);
        assert_eq!(visible(&store).await, before);
        for i in [0, 299] {
            let s = sid(&format!("gone-{i:03}"));
            let r = store
                .append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("N", "n")])
                .await
                .unwrap();
            assert_eq!(r.stream_version, 4, "{s}: the version goes on");
        }
    }

    pub async fn a_scavenge_asked_to_stop_ends_between_batches_and_the_next_finishes() {
        let (db, store) = store().await;
        three_hundred_deleted_streams(&store).await;
        let before = visible(&store).await;
        let admin = db.admin().await;
        let schema = db.schema().to_string();
        // Stopped before it starts: nothing erased.
        let report = store
            .scavenge_until(batches_of(50), &mut |_| {}, std::future::ready(()))
            .await
            .unwrap();
        assert!(report.stopped, "{report:?}");
        assert_eq!((report.events_erased, report.batches), (0, 0), "{report:?}");
        assert_eq!(count(&admin, &schema, "erased_events").await, 0);
        // Stopped once its first page of streams is done (as a shutdown
        // would, at any moment): it ends before the next batch.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stop = Some(stop);
        let report = store
            .scavenge_until(
                batches_of(50),
                &mut |p| {
                    if p.streams_done > 0
                        && let Some(stop) = stop.take()
                    {
                        let _ = stop.send(());
                    }
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        assert!(report.stopped, "{report:?}");
        assert_eq!(report.events_erased, 256 * 3, "the first page only: {report:?}");
        assert_eq!(count(&admin, &schema, "erased_events").await, 256 * 3);
        assert_eq!(
            rows_holding(&admin, &schema, GONE).await,
            900 - 256 * 3,
            "the rest untouched"
        );
        assert_eq!(visible(&store).await, before, "readers see the same");
        // The next one finishes, and is not stopped.
        let report = store.scavenge(batches_of(50), &mut |_| {}).await.unwrap();
        assert!(!report.stopped, "{report:?}");
        assert_eq!(report.events_erased, 900 - 256 * 3, "{report:?}");
        assert_eq!(rows_holding(&admin, &schema, GONE).await, 0);
        assert_eq!(visible(&store).await, before);
    }

    pub async fn a_scavenge_under_load_skips_and_duplicates_nothing_for_a_subscriber() {
        let (db, store) = store().await;
        history(&store, 40).await;
        let mut sub = store.subscribe_all(0);
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..150 {
                        let e = NewEvent::new("Live", payload(KEPT, i));
                        let s = sid(&format!("live-{w}"));
                        store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
                        if i % 10 == 0 {
                            let read = store.read_all(0, 50).await.unwrap();
                            assert!(read.windows(2).all(|p| p[0].position < p[1].position));
                        }
                    }
                })
            })
            .collect();
        let scavenger = {
            let store = store.clone();
            tokio::spawn(async move { store.scavenge(batches_of(3), &mut |_| {}).await })
        };
        for w in writers {
            w.await.unwrap();
        }
        let report = scavenger.await.unwrap().unwrap();
        assert!(report.events_erased > 0, "{report:?}");
        let head = store.head_position().await.unwrap();
        let mut seen = Vec::new();
        while seen.last().is_none_or(|p| *p < head) {
            let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
                .await
                .expect("the subscriber keeps up")
                .unwrap()
                .unwrap();
            assert!(!contains(&e.payload, GONE), "a removed event reached the subscriber");
            seen.push(e.position);
        }
        let all: Vec<u64> = store
            .read_all(0, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(seen, all, "every visible event once, in order");
        let admin = db.admin().await;
        assert_eq!(rows_holding(&admin, db.schema(), GONE).await, 0);
        assert_eq!(
            store
                .read_stream(&sid("live-0"), 1, Direction::Forward, usize::MAX)
                .await
                .unwrap()
                .len(),
            150
        );
    }

    /// Appends of 10 events by 4 writers until `stop`; returns appends per second.
    async fn append_rate(store: &PostgresStore, stop: tokio::sync::watch::Receiver<bool>) -> f64 {
        let started = std::time::Instant::now();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !*stop.borrow() {
                        let events = (0..10).map(|i| NewEvent::new("B", payload(KEPT, i))).collect();
                        let s = sid(&format!("bench-{w}"));
                        store.append(&s, ExpectedVersion::Any, events).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for w in writers {
            total += w.await.unwrap();
        }
        total as f64 / started.elapsed().as_secs_f64()
    }

    pub async fn measure() {
        let Some(events) = std::env::var("STRATA_PG_SCAVENGE_EVENTS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        else {
            panic!("set STRATA_PG_SCAVENGE_EVENTS to the number of events");
        };
        let (_db, store) = store().await;
        let streams = events.div_ceil(100);
        for s in 0..streams {
            let id = sid(&format!("m-{s:07}"));
            let marker = if s % 10 == 0 { GONE } else { KEPT };
            let batch = (0..100).map(|i| NewEvent::new("M", payload(marker, i))).collect();
            store.append(&id, ExpectedVersion::NoStream, batch).await.unwrap();
            if s % 10 == 0 {
                store
                    .delete_stream(&id, ExpectedVersion::Exact(100), DeleteMode::Soft)
                    .await
                    .unwrap();
            }
        }
        // Appends alone, for 5 s.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let alone = {
            let store = store.clone();
            tokio::spawn(async move { append_rate(&store, rx).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(true).unwrap();
        let alone = alone.await.unwrap();
        // The scavenge, with appends beside it for as long as it runs.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let beside = {
            let store = store.clone();
            tokio::spawn(async move { append_rate(&store, rx).await })
        };
        let report = store
            .scavenge(PostgresScavengeOptions::default(), &mut |_| {})
            .await
            .unwrap();
        tx.send(true).unwrap();
        let beside = beside.await.unwrap();
        let secs = report.elapsed.as_secs_f64();
        eprintln!(
            "scavenge of {events} events ({} erased, {} batches) in {secs:.2} s: {:.0} events/s erased, {:.2} MB/s of payload erased",
            report.events_erased,
            report.batches,
            report.events_erased as f64 / secs,
            report.bytes_erased as f64 / secs / 1e6
        );
        eprintln!(
            "appends of 10 events by 4 writers: {alone:.0}/s alone, {beside:.0}/s during the scavenge (ratio {:.2})",
            beside / alone
        );
    }
}
