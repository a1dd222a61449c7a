//! What is particular to `PostgresStore`, beyond the conformance suite and
//! the model test it shares with the other backends: global order under
//! concurrent writers on many connections, subscriptions that survive a
//! dropped listener connection, appends that stay all-or-nothing when their
//! connection is killed, concurrent migrations, damaged rows.
//!
//! Needs a server: without `STRATA_POSTGRES_URL` at build time (or without
//! the `postgres` feature) each test is reported as ignored; run them with
//! `scripts/test-postgres.sh cargo test -p strata-store --features postgres --test postgres`.

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
    subscribers_see_every_position_once_in_order_while_many_connections_append,
    a_subscription_resumes_after_its_listener_connection_is_killed,
    a_connection_killed_mid_append_leaves_nothing_and_the_retry_writes_once,
    appends_stay_all_or_nothing_while_connections_keep_being_killed,
    stores_that_start_at_once_migrate_once_and_share_the_log,
    a_damaged_row_is_reported_as_corrupt,
    a_schema_from_a_newer_strata_is_refused,
    dead_connections_are_noticed_in_seconds_unless_the_url_says_otherwise,
    the_toolkit_listener_reconnects_and_says_when_it_listens_again,
);

/// Needs the feature, not a server.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn bad_options_and_unreachable_servers_are_clear_errors() {
    imp::bad_options_and_unreachable_servers_are_clear_errors().await;
}

#[cfg(feature = "postgres")]
#[path = "postgres/connections.rs"]
mod connections;
#[cfg(feature = "postgres")]
#[path = "postgres/schema.rs"]
mod schema;

/// The tests (those of `postgres/*.rs` re-exported) and their helpers.
#[cfg(feature = "postgres")]
mod imp {
    pub use super::connections::*;
    pub use super::schema::*;

    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use strata_store::tokio_postgres::Client;
    use strata_store::{
        AppendResult, EventId, EventStore, ExpectedVersion, PostgresOptions, PostgresStore, RecordedEvent, StoreError,
        StreamAppend, StreamId,
    };
    use strata_testkit::TestDatabase;
    use tokio::sync::watch;

    use crate::common::{Fixture, evs, ids, sid};

    /// Generous bound on waiting for something that must happen; reaching
    /// it is a failure (a stall), not a measurement.
    pub(crate) const STALL: Duration = Duration::from_secs(60);

    /// A fixture, its database and its options, to open more stores on its schema.
    pub(crate) async fn setup() -> (Fixture, Arc<TestDatabase>, PostgresOptions) {
        let db = Arc::new(TestDatabase::new());
        let options = db.options("main");
        let fx = Fixture::postgres_with(db.clone(), options.clone()).await;
        (fx, db, options)
    }

    /// Another store on the same schema, as another process would open it,
    /// with its own application name.
    pub(crate) async fn another(url: &str, options: &PostgresOptions, name: &str) -> PostgresStore {
        let options = PostgresOptions {
            application_name: Some(format!("{}-{name}", options.schema)),
            ..options.clone()
        };
        PostgresStore::connect_with(url, options)
            .await
            .unwrap_or_else(|e| panic!("STRATA_POSTGRES_URL is set, but connecting to it failed: {e}"))
    }

    /// Terminates every backend whose application name is `name`; returns
    /// the pids terminated.
    pub(crate) async fn terminate(admin: &Client, name: &str) -> Vec<i32> {
        admin
            .query(
                // In the select list, so it runs only for the rows the WHERE keeps.
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .expect("terminate backends")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub(crate) async fn pids(admin: &Client, name: &str) -> Vec<i32> {
        admin
            .query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", &[&name])
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Backends named `name` that are listening (their last statement was LISTEN).
    pub(crate) async fn listening(admin: &Client, name: &str) -> Vec<i32> {
        admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'",
                &[&name],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn next_event(sub: &mut strata_store::EventSubscription) -> RecordedEvent {
        tokio::time::timeout(STALL, sub.next())
            .await
            .expect("subscription stalled")
            .expect("subscription ended")
            .expect("subscription error")
    }

    /// One acknowledged part of an append: its stream, ids and result.
    type Acked = (StreamId, Vec<EventId>, AppendResult);

    /// Writers on 5 stores (5 pools, 5 writer connections: as 5 processes
    /// would) append concurrently, to streams of their own, to 3 shared
    /// streams with `Exact` and retries on conflict, and across streams,
    /// while a subscriber on a sixth store follows the log live and a
    /// reader polls `read_all`. A log whose positions are not assigned in
    /// commit order (a sequence read without care: Marten #1629, #3122)
    /// lets a reader pass a position that commits later, and these checks
    /// catch it: every position exactly once, in order, each the event
    /// that was acknowledged at it.
    pub async fn subscribers_see_every_position_once_in_order_while_many_connections_append() {
        let (fx, db, options) = setup().await;
        let url = db.url();
        const STORES: usize = 5;
        const TASKS: usize = 6;
        const APPENDS: usize = 30;

        let observer = another(url, &options, "observer").await;
        let mut sub = observer.subscribe_all(0);
        let (target_tx, target_rx) = watch::channel(0u64);

        let subscriber = tokio::spawn({
            let mut target = target_rx.clone();
            async move {
                let mut seen: Vec<RecordedEvent> = Vec::new();
                loop {
                    let t = *target.borrow();
                    if t != 0 && seen.len() as u64 >= t {
                        return seen;
                    }
                    tokio::select! {
                        e = tokio::time::timeout(STALL, sub.next()) => {
                            seen.push(e.expect("subscription stalled").expect("subscription ended").expect("subscription error"));
                        }
                        _ = target.changed() => {}
                    }
                }
            }
        });
        let poller = tokio::spawn({
            let observer = observer.clone();
            let mut target = target_rx.clone();
            async move {
                let mut next = 1u64;
                let mut batches = 0u64;
                loop {
                    let t = *target.borrow_and_update();
                    if t != 0 && next > t {
                        return batches;
                    }
                    let batch = observer.read_all(next, 97).await.expect("read_all");
                    for (i, e) in batch.iter().enumerate() {
                        assert_eq!(e.position, next + i as u64, "read_all skipped or repeated a position");
                    }
                    next += batch.len() as u64;
                    batches += 1;
                    if batch.is_empty() {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                            _ = target.changed() => {}
                        }
                    }
                }
            }
        });

        let mut stores: Vec<Arc<dyn EventStore>> = vec![fx.store.clone()];
        for i in 1..STORES {
            stores.push(Arc::new(another(url, &options, &format!("w{i}")).await));
        }
        let mut writers = Vec::new();
        for (s, store) in stores.iter().enumerate() {
            for t in 0..TASKS {
                let store = store.clone();
                writers.push(tokio::spawn(async move {
                    let mut acked: Vec<Acked> = Vec::new();
                    let own = sid(&format!("own-{s}-{t}"));
                    for i in 0..APPENDS {
                        match (t + i) % 3 {
                            0 => {
                                let batch = evs("o", 1 + i % 3);
                                let r = store.append(&own, ExpectedVersion::Any, batch.clone()).await.unwrap();
                                acked.push((own.clone(), ids(&batch), r));
                            }
                            1 => {
                                let hot = sid(&format!("hot-{}", i % 3));
                                loop {
                                    let v = store.stream_version(&hot).await.unwrap();
                                    let batch = evs("h", 1);
                                    match store.append(&hot, ExpectedVersion::Exact(v), batch.clone()).await {
                                        Ok(r) => {
                                            assert_eq!(r.stream_version, v + 1);
                                            acked.push((hot, ids(&batch), r));
                                            break;
                                        }
                                        Err(StoreError::WrongExpectedVersion { actual, .. }) => assert!(actual > v),
                                        Err(e) => panic!("append failed: {e}"),
                                    }
                                }
                            }
                            _ => {
                                let other = sid(&format!("multi-{}", i % 2));
                                let parts = vec![
                                    StreamAppend::new(own.clone(), ExpectedVersion::Any, evs("m", 1)),
                                    StreamAppend::new(other, ExpectedVersion::Any, evs("n", 2)),
                                ];
                                let results = store.append_multi(parts.clone()).await.unwrap();
                                for (p, r) in parts.iter().zip(results) {
                                    acked.push((p.stream.clone(), ids(&p.events), r));
                                }
                            }
                        }
                    }
                    acked
                }));
            }
        }
        let mut acked: Vec<Acked> = Vec::new();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        // What was acknowledged, by position.
        let mut expected: HashMap<u64, (StreamId, EventId)> = HashMap::new();
        for (stream, ids, r) in &acked {
            assert_eq!(r.last_position - r.first_position + 1, ids.len() as u64);
            for (i, id) in ids.iter().enumerate() {
                let previous = expected.insert(r.first_position + i as u64, (stream.clone(), *id));
                assert!(previous.is_none(), "two appends acknowledged at one position");
            }
        }
        let total = expected.len() as u64;
        assert_eq!(fx.store.head_position().await.unwrap(), total);
        target_tx.send(total).unwrap();

        let seen = subscriber.await.unwrap();
        let batches = poller.await.unwrap();
        assert!(batches > 0);
        assert_eq!(
            seen.iter().map(|e| e.position).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>(),
            "the subscriber saw every position once, in order"
        );
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        for e in &seen {
            assert_eq!(
                expected.get(&e.position),
                Some(&(e.stream_id.clone(), e.id)),
                "position {} holds the event acknowledged there",
                e.position
            );
            let v = versions.entry(e.stream_id.clone()).or_default();
            *v += 1;
            assert_eq!(e.version, *v, "stream versions are gapless in position order");
        }
    }

    /// The listener connection of a subscriber's store is terminated; events
    /// appended by another store meanwhile and afterwards still arrive. The
    /// fallback poll is set to an hour, so they arrive through the
    /// reconnected listener (which reads the head when it is back), not by
    /// polling.
    pub async fn a_subscription_resumes_after_its_listener_connection_is_killed() {
        let (fx, db, options) = setup().await;
        let url = db.url();
        let admin = db.admin().await;
        let follower_options = PostgresOptions {
            poll_interval: Duration::from_secs(3600),
            ..options.clone()
        };
        let follower = another(url, &follower_options, "follower").await;
        let listener_name = format!("{}-follower-listen", options.schema);
        let writer = fx.store.clone();
        let mut sub = follower.subscribe_all(0);

        let wait_for_listener = |except: Vec<i32>| {
            let (admin, name) = (&admin, listener_name.clone());
            async move {
                tokio::time::timeout(STALL, async {
                    loop {
                        let now = listening(admin, &name).await;
                        if now.iter().any(|p| !except.contains(p)) {
                            return now;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await
                .expect("the listener did not come (back)")
            }
        };
        let first = wait_for_listener(Vec::new()).await;

        let mut expected = Vec::new();
        for round in 0..3 {
            if round == 1 {
                let killed = terminate(&admin, &listener_name).await;
                assert_eq!(killed, first, "the follower's listener connection was terminated");
            }
            for i in 0..5 {
                let batch = evs(&format!("r{round}-"), 2);
                writer
                    .append(&sid(&format!("s{i}")), ExpectedVersion::Any, batch.clone())
                    .await
                    .unwrap();
                expected.extend(ids(&batch));
            }
            if round == 1 {
                let back = wait_for_listener(first.clone()).await;
                assert!(back.iter().all(|p| !first.contains(p)), "a new listener connection");
            }
            let mut got = Vec::new();
            while got.len() < 10 {
                got.push(next_event(&mut sub).await);
            }
            let offset = round * 10;
            assert_eq!(
                got.iter().map(|e| e.position).collect::<Vec<_>>(),
                (offset as u64 + 1..=offset as u64 + 10).collect::<Vec<_>>()
            );
            assert_eq!(
                got.iter().map(|e| e.id).collect::<Vec<_>>(),
                expected[offset..offset + 10].to_vec()
            );
        }
    }
}
