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
mod imp {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use rand::Rng;
    use strata_store::tokio_postgres::Client;
    use strata_store::{
        AppendResult, Direction, EventId, EventStore, ExpectedVersion, PostgresOptions, PostgresStore, RecordedEvent,
        StoreError, StreamAppend, StreamId,
    };
    use tokio::sync::watch;

    use strata_store::pg::{Heard, Listener, Schema};
    use strata_testkit::{TestDatabase, until_async};

    use crate::common::{Fixture, evs, ids, sid};

    /// Generous bound on waiting for something that must happen; reaching
    /// it is a failure (a stall), not a measurement.
    const STALL: Duration = Duration::from_secs(60);

    /// A fixture, its database and its options, to open more stores on its schema.
    async fn setup() -> (Fixture, Arc<TestDatabase>, PostgresOptions) {
        let db = Arc::new(TestDatabase::new());
        let options = db.options("main");
        let fx = Fixture::postgres_with(db.clone(), options.clone()).await;
        (fx, db, options)
    }

    /// Another store on the same schema, as another process would open it,
    /// with its own application name.
    async fn another(url: &str, options: &PostgresOptions, name: &str) -> PostgresStore {
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
    async fn terminate(admin: &Client, name: &str) -> Vec<i32> {
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

    async fn pids(admin: &Client, name: &str) -> Vec<i32> {
        admin
            .query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", &[&name])
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Backends named `name` that are listening (their last statement was LISTEN).
    async fn listening(admin: &Client, name: &str) -> Vec<i32> {
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

    /// The writer's connection is terminated while its INSERT waits on a
    /// row lock (another transaction holds an uncommitted row with the same
    /// stream and version). The append fails with `Unavailable`, nothing of
    /// it is in the log, and a retry with the same ids writes it once; the
    /// retry of that is answered from the log. Killing the idle pooled
    /// connections between appends is invisible to the caller.
    pub async fn a_connection_killed_mid_append_leaves_nothing_and_the_retry_writes_once() {
        let (fx, db, options) = setup().await;
        let store = fx.store.clone();
        let admin = db.admin().await;
        let name = options.application_name.clone().unwrap();
        let s = sid("order-1");
        store.append(&s, ExpectedVersion::NoStream, evs("a", 2)).await.unwrap();

        // Between appends: every pooled connection is killed (and gone:
        // pg_terminate_backend only signals); the next append and read find
        // their connections dead and use new ones.
        let killed = terminate(&admin, &name).await;
        assert!(!killed.is_empty());
        tokio::time::timeout(STALL, async {
            while pids(&admin, &name).await.iter().any(|p| killed.contains(p)) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("terminated backends did not exit");
        let r = store.append(&s, ExpectedVersion::Exact(2), evs("b", 1)).await.unwrap();
        assert_eq!(r.stream_version, 3);
        assert_eq!(store.stream_version(&s).await.unwrap(), 3);

        // During an append.
        let blocker = db.admin().await;
        blocker
            .batch_execute(&format!(
                "BEGIN; INSERT INTO \"{}\".events VALUES (1000000, 'order-1', 4, gen_random_uuid(), 'Blocker', \
                 '\\x00', '\\x00', now(), 0)",
                options.schema
            ))
            .await
            .unwrap();
        let batch = evs("c", 2);
        let append = tokio::spawn({
            let (store, s, batch) = (store.clone(), s.clone(), batch.clone());
            async move { store.append(&s, ExpectedVersion::Exact(3), batch).await }
        });
        let waiting = tokio::time::timeout(STALL, async {
            loop {
                let rows = admin
                    .query(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        &[&name],
                    )
                    .await
                    .unwrap();
                if let Some(row) = rows.first() {
                    return row.get::<_, i32>(0);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the append never waited on the blocker's row");
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&waiting])
            .await
            .unwrap();
        let r = append.await.unwrap();
        match &r {
            Err(StoreError::Unavailable { reason }) => {
                assert!(
                    reason.contains("same event ids"),
                    "the error says how to recover: {reason}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        blocker.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(
            store.stream_version(&s).await.unwrap(),
            3,
            "none of the append is there"
        );
        assert_eq!(store.head_position().await.unwrap(), 3);

        let retry = store
            .append(&s, ExpectedVersion::Exact(3), batch.clone())
            .await
            .unwrap();
        assert_eq!(
            retry,
            AppendResult {
                stream_version: 5,
                first_position: 4,
                last_position: 5
            }
        );
        let again = store
            .append(&s, ExpectedVersion::Exact(3), batch.clone())
            .await
            .unwrap();
        assert_eq!(again, retry, "a retry of the retry is answered from the log");
        let events = store.read_stream(&s, 1, Direction::Forward, 100).await.unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(events[3..].iter().map(|e| e.id).collect::<Vec<_>>(), ids(&batch));
    }

    /// While a task keeps terminating the store's connections at random
    /// moments, 100 appends of 2 events each go to one stream with `Exact`
    /// versions; each failure is retried with the same ids and expected
    /// version until it succeeds. Whether a killed attempt had committed
    /// or not, the log ends with every append exactly once, in order, and
    /// each acknowledgement matches it.
    pub async fn appends_stay_all_or_nothing_while_connections_keep_being_killed() {
        let (fx, db, options) = setup().await;
        let store = fx.store.clone();
        let name = options.application_name.clone().unwrap();
        let admin = db.admin().await;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let killer = tokio::spawn(async move {
            let mut kills = 0usize;
            loop {
                let pause = rand::rng().random_range(1..15);
                tokio::select! {
                    _ = stop_rx.changed() => return kills,
                    _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                }
                kills += terminate(&admin, &name).await.len();
            }
        });
        let s = sid("account-1");
        let mut batches = Vec::new();
        let mut failures = 0usize;
        for i in 0..100u64 {
            let batch = evs(&format!("e{i}-"), 2);
            let mut attempts = 0;
            let r = loop {
                attempts += 1;
                match store.append(&s, ExpectedVersion::Exact(2 * i), batch.clone()).await {
                    Ok(r) => break r,
                    Err(StoreError::Unavailable { .. }) if attempts < 200 => failures += 1,
                    Err(e) => panic!("append {i}, attempt {attempts}: {e}"),
                }
            };
            assert_eq!(
                r,
                AppendResult {
                    stream_version: 2 * i + 2,
                    first_position: 2 * i + 1,
                    last_position: 2 * i + 2
                }
            );
            batches.push(batch);
        }
        stop_tx.send(true).unwrap();
        let kills = killer.await.unwrap();
        eprintln!("{kills} connections terminated, {failures} appends failed and were retried");
        let events = fx.store.read_all(0, usize::MAX).await.unwrap();
        let want: Vec<EventId> = batches.iter().flat_map(|b| ids(b)).collect();
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), want);
        assert_eq!(
            events.iter().map(|e| (e.position, e.version)).collect::<Vec<_>>(),
            (1..=200).map(|p| (p, p)).collect::<Vec<_>>()
        );
    }

    /// Eight stores connect to one new schema at once: the migration runs
    /// once (under its advisory lock), and they all share one log.
    pub async fn stores_that_start_at_once_migrate_once_and_share_the_log() {
        let (fx, db, options) = setup().await;
        let url = db.url();
        let _first_schema = fx;
        // A second schema that nobody has created yet.
        let fresh_db = TestDatabase::new();
        let fresh = PostgresOptions {
            schema: fresh_db.schema().to_string(),
            ..options.clone()
        };
        let stores = futures::future::join_all((0..8).map(|i| {
            let options = fresh.clone();
            async move { another(url, &options, &format!("m{i}")).await }
        }))
        .await;
        let admin = db.admin().await;
        let migrations: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".strata_migrations", fresh.schema),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            migrations, 3,
            "each of the log's three migrations (the log, stream states, erased ids) once"
        );
        let s = sid("shared");
        for (i, store) in stores.iter().enumerate() {
            store
                .append(&s, ExpectedVersion::Exact(i as u64), evs("x", 1))
                .await
                .unwrap();
        }
        for store in &stores {
            assert_eq!(store.stream_version(&s).await.unwrap(), 8);
        }
        let positions: HashSet<u64> = stores[0]
            .read_all(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(positions, (1..=8).collect());
    }

    /// A row changed behind the store's back fails its checksum: reads
    /// report `Corrupt` instead of serving it.
    pub async fn a_damaged_row_is_reported_as_corrupt() {
        let (fx, db, options) = setup().await;
        let s = sid("order-9");
        fx.store
            .append(&s, ExpectedVersion::NoStream, evs("p", 3))
            .await
            .unwrap();
        let admin = db.admin().await;
        let table = format!("\"{}\".events", options.schema);
        for damage in [
            "payload = '\\x01'",
            "event_type = 'Other'",
            "recorded_at = recorded_at + interval '1 second'",
            "metadata = '\\xff'",
            "crc = crc + 1",
        ] {
            let (sql, undo) = (
                format!("UPDATE {table} SET {damage} WHERE position = 2 RETURNING *"),
                format!(
                    "UPDATE {table} SET (payload, event_type, recorded_at, metadata, crc) = (SELECT payload, event_type, recorded_at, metadata, crc FROM saved) WHERE position = 2"
                ),
            );
            admin
                .batch_execute(&format!(
                    "CREATE TEMP TABLE saved AS SELECT * FROM {table} WHERE position = 2"
                ))
                .await
                .unwrap();
            admin.batch_execute(&sql).await.unwrap();
            let r = fx.store.read_all(1, 10).await;
            assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{damage}: {r:?}");
            let r = fx.store.read_stream(&s, 2, Direction::Forward, 1).await;
            assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{damage}: {r:?}");
            admin.batch_execute(&undo).await.unwrap();
            admin.batch_execute("DROP TABLE saved").await.unwrap();
            assert_eq!(fx.store.read_all(1, 10).await.unwrap().len(), 3, "{damage} undone");
        }
    }

    /// A schema whose migrations table names a migration this build does not
    /// know is refused rather than written with an older layout.
    pub async fn a_schema_from_a_newer_strata_is_refused() {
        let (_fx, db, options) = setup().await;
        let url = db.url();
        let admin = db.admin().await;
        admin
            .execute(
                &format!(
                    "INSERT INTO \"{}\".strata_migrations (version, description) VALUES (999, 'from the future')",
                    options.schema
                ),
                &[],
            )
            .await
            .unwrap();
        match PostgresStore::connect_with(url, options.clone()).await {
            Err(StoreError::IncompatibleSchema { schema, found, .. }) => {
                assert_eq!((schema, found), (options.schema.clone(), 999))
            }
            other => panic!("expected IncompatibleSchema, got {other:?}"),
        }
    }

    /// TCP keepalives and `tcp_user_timeout` default to seconds, not libpq's
    /// two hours; settings in the URL win.
    pub async fn dead_connections_are_noticed_in_seconds_unless_the_url_says_otherwise() {
        let (fx, db, options) = setup().await;
        let url = db.url();
        let store = another(url, &options, "keepalive").await;
        let config = store.connection_config();
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(config.get_keepalives_interval(), Some(Duration::from_secs(5)));
        assert_eq!(config.get_keepalives_retries(), Some(3));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
        drop(store);
        let sep = if url.contains('?') { '&' } else { '?' };
        let own = format!("{url}{sep}keepalives_idle=600&tcp_user_timeout=90");
        let store = another(&own, &options, "keepalive-url").await;
        let config = store.connection_config();
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(600));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(90)));
        drop(store);
        drop(fx);
    }

    /// The toolkit's `LISTEN` loop (the store's subscriptions and the
    /// crates' own tables use it): `Listening` once in place, every
    /// notification, and when its connection is killed, `Listening` again
    /// on a new one and notifications go on; dropped, its connection ends.
    pub async fn the_toolkit_listener_reconnects_and_says_when_it_listens_again() {
        let db = TestDatabase::new();
        let channel = Schema::new(db.schema()).unwrap().channel("probe").unwrap();
        let mut config: strata_store::tokio_postgres::Config = db.url().parse().unwrap();
        config.application_name(db.application_name("probe"));
        let mut listener = Listener::start(config, vec![channel.clone()]);
        let mut next = async || {
            tokio::time::timeout(STALL, listener.recv())
                .await
                .expect("the listener heard nothing")
        };
        assert_eq!(next().await, Heard::Listening);
        let admin = db.admin().await;
        let notify = |payload: &'static str| {
            let (admin, channel) = (&admin, channel.clone());
            async move {
                admin
                    .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                    .await
                    .unwrap();
            }
        };
        notify("one").await;
        let heard = |payload: &str| Heard::Notification {
            channel: channel.clone(),
            payload: payload.into(),
        };
        assert_eq!(next().await, heard("one"));

        assert_eq!(db.kill_connections("probe").await, 1);
        assert_eq!(next().await, Heard::Listening, "listening again on a new connection");
        notify("two").await;
        assert_eq!(next().await, heard("two"));

        drop(listener);
        let probe = db.application_name("probe");
        until_async("the dropped listener's connection to end", || async {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&probe],
                )
                .await
                .unwrap()
                .get(0);
            left == 0
        })
        .await;
    }

    /// Needs no server.
    pub async fn bad_options_and_unreachable_servers_are_clear_errors() {
        let url = "postgres://strata@127.0.0.1:1/postgres";
        for bad in ["", "Upper", "1digit", "has-dash", "quote\"", &"x".repeat(41)] {
            let options = PostgresOptions {
                schema: bad.to_string(),
                ..PostgresOptions::default()
            };
            let r = PostgresStore::connect_with(url, options).await;
            assert!(matches!(r, Err(StoreError::InvalidLimits { .. })), "{bad:?}: {r:?}");
        }
        // Nothing listens on port 1 of the loopback.
        let options = PostgresOptions {
            connect_timeout: Duration::from_secs(5),
            ..PostgresOptions::default()
        };
        let r = PostgresStore::connect_with(url, options).await;
        assert!(matches!(r, Err(StoreError::Unavailable { .. })), "{r:?}");
        let r = PostgresStore::connect("postgres://strata@127.0.0.1:not-a-port/x").await;
        assert!(matches!(r, Err(StoreError::Postgres { .. })), "{r:?}");
    }
}
