//! `PostgresStore` when connections die: an append whose connection is
//! killed mid-statement or over and over, keepalive settings that notice a
//! dead server in seconds, and the toolkit's `LISTEN` loop reconnecting.
//! Declared and run by `postgres.rs`.

use std::time::Duration;

use rand::Rng;
use strata_store::pg::{Heard, Listener, Schema};
use strata_store::{AppendResult, Direction, EventId, EventStore, ExpectedVersion, StoreError};
use strata_testkit::{TestDatabase, until_async};
use tokio::sync::watch;

use crate::common::{evs, ids, sid};
use crate::imp::{STALL, another, pids, setup, terminate};

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
