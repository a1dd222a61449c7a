//! Snapshots: loads read the newest snapshot plus the events after it; a
//! snapshot that is not exactly of this stream, history and state shape is
//! ignored; a snapshot the store refuses never fails a command.

mod common;

use std::sync::Arc;

use common::{Counter, CounterCommand, CounterReshaped, CountingStore};
use strata_aggregates::domain::order::OrderLine;
use strata_aggregates::domain::service::OrderService;
use strata_aggregates::domain::stock::{StockCommand, StockItem};
use strata_aggregates::{Format, Repository, SNAPSHOT_EVENT_TYPE, snapshot_stream};
use strata_store::{Direction, EventStore, ExpectedVersion, Limits, MemoryStore, NewEvent, StreamId};

async fn add_many(repo: &Repository<Counter>, id: &str, n: u64) {
    for i in 0..n {
        repo.execute(id, CounterCommand::Add(i % 7 + 1), None).await.unwrap();
    }
}

fn expected_total(n: u64) -> u64 {
    (0..n).map(|i| i % 7 + 1).sum()
}

#[tokio::test]
async fn a_load_reads_the_snapshot_and_the_tail_only() {
    let counting = CountingStore::new(MemoryStore::new());
    let store: Arc<dyn EventStore> = Arc::new(counting.clone());
    let repo = Repository::<Counter>::new(store.clone()).with_snapshots(100);
    let n = 1234;
    add_many(&repo, "long", n).await;

    counting.reset();
    let loaded = repo.load("long").await.unwrap();
    let snapshot_at = loaded.snapshot_version.expect("loaded from a snapshot");
    assert_eq!(loaded.version, n);
    assert_eq!(loaded.state.total, expected_total(n));
    assert!(
        n - snapshot_at < 100,
        "the newest snapshot is at most 99 events old: {snapshot_at}"
    );
    assert_eq!(loaded.replayed, n - snapshot_at);
    // The snapshot's own event (to check it) plus the tail; nothing before.
    assert_eq!(counting.events_read("counter-long") as u64, 1 + loaded.replayed);
    assert_eq!(counting.events_read("$snapshot-counter-long"), 1);

    // A repository without snapshots reads everything and agrees.
    counting.reset();
    let plain = Repository::<Counter>::new(store).load("long").await.unwrap();
    assert_eq!(plain.state, loaded.state);
    assert_eq!((plain.snapshot_version, plain.replayed), (None, n));
    assert_eq!(counting.events_read("counter-long") as u64, n);
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_in_the_same_append() {
    let memory = MemoryStore::new();
    let repo = Repository::<Counter>::new(Arc::new(memory.clone())).with_snapshots(10);
    add_many(&repo, "c", 35).await;
    let snapshots = memory
        .read_stream(
            &snapshot_stream(&StreamId::new("counter-c").unwrap()),
            1,
            Direction::Forward,
            100,
        )
        .await
        .unwrap();
    let at: Vec<_> = snapshots
        .iter()
        .map(|s| s.metadata.extra["strata.snapshot.version"].clone())
        .collect();
    assert_eq!(at, ["10", "20", "30"]);
    // Each snapshot was committed with the event it was taken at.
    let events = memory
        .read_stream(&StreamId::new("counter-c").unwrap(), 10, Direction::Forward, 1)
        .await
        .unwrap();
    assert_eq!(snapshots[0].position, events[0].position + 1);
    assert_eq!(snapshots[0].event_type, SNAPSHOT_EVENT_TYPE);
}

#[tokio::test]
async fn a_snapshot_of_an_older_state_shape_is_ignored_not_misread() {
    let memory = MemoryStore::new();
    let store: Arc<dyn EventStore> = Arc::new(memory.clone());
    let old = Repository::<Counter>::new(store.clone()).with_snapshots(5);
    add_many(&old, "c", 12).await;
    assert_eq!(old.load("c").await.unwrap().snapshot_version, Some(10));

    // The next release reordered the state's fields (bincode would read the
    // old bytes without error, swapping them) and raised SNAPSHOT_VERSION.
    let new = Repository::<CounterReshaped>::new(store.clone()).with_snapshots(5);
    let loaded = new.load("c").await.unwrap();
    assert_eq!(loaded.snapshot_version, None, "the v1 snapshot is not used");
    assert_eq!(loaded.replayed, 12);
    assert_eq!((loaded.state.total, loaded.state.adds), (expected_total(12), 12));

    // Its next write takes a snapshot of the new shape, which it then uses.
    let done = new.execute("c", CounterCommand::Add(1), None).await.unwrap();
    let loaded = new.load("c").await.unwrap();
    assert_eq!(loaded.snapshot_version, Some(13));
    assert_eq!(loaded.state, done.state);
    // And the old code, in turn, ignores the new shape.
    let back = old.load("c").await.unwrap();
    assert_eq!(back.snapshot_version, None);
    assert_eq!((back.state.total, back.state.adds), (done.state.total, done.state.adds));
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_the_history_is_ignored() {
    let memory = MemoryStore::new();
    let store: Arc<dyn EventStore> = Arc::new(memory.clone());
    let repo = Repository::<Counter>::new(store.clone()).with_snapshots(5);
    add_many(&repo, "c", 7).await;
    let stream = StreamId::new("counter-c").unwrap();
    let snapshots = snapshot_stream(&stream);
    let genuine = memory
        .read_stream(&snapshots, u64::MAX, Direction::Backward, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let forge = |edit: &dyn Fn(&mut NewEvent)| {
        let mut e = NewEvent::new(SNAPSHOT_EVENT_TYPE, genuine.payload.clone()).with_metadata(genuine.metadata.clone());
        edit(&mut e);
        e
    };
    let forgeries = [
        // Names an event id the stream does not hold at that version.
        forge(&|e| {
            e.metadata.extra.insert(
                "strata.snapshot.event_id".into(),
                strata_store::EventId::new().to_string(),
            );
        }),
        // Claims to be of another stream.
        forge(&|e| {
            e.metadata.extra.insert("strata.snapshot.of".into(), "counter-x".into());
        }),
        // A version the stream has not reached.
        forge(&|e| {
            e.metadata.extra.insert("strata.snapshot.version".into(), "99".into());
        }),
        // A payload that does not decode.
        forge(&|e| e.payload = vec![0xff; 3].into()),
        // Another format than the bytes.
        forge(&|e| {
            e.metadata.extra.insert("strata.format".into(), "json".into());
        }),
        // No metadata at all.
        forge(&|e| e.metadata = Default::default()),
    ];
    for forged in forgeries {
        memory
            .append(&snapshots, ExpectedVersion::Any, vec![forged])
            .await
            .unwrap();
        let loaded = repo.load("c").await.unwrap();
        assert_eq!(loaded.snapshot_version, None);
        assert_eq!((loaded.version, loaded.state.total), (7, expected_total(7)));
    }
}

#[tokio::test]
async fn a_snapshot_too_large_for_the_store_is_dropped_not_the_command() {
    let limits = Limits {
        max_payload_bytes: 200,
        ..Limits::default()
    };
    let memory = MemoryStore::with_limits(limits).unwrap();
    let store: Arc<dyn EventStore> = Arc::new(memory.clone());
    let repo = Repository::<StockItem>::new(store.clone()).with_snapshots(3);
    let register = StockCommand::Register {
        sku: "tea".into(),
        name: "Tea".into(),
    };
    repo.execute("tea", register, None).await.unwrap();
    repo.execute("tea", StockCommand::Receive { quantity: 100 }, None)
        .await
        .unwrap();
    // Reservations (made by placing orders) grow the stock item's state.
    let service = OrderService::from_repositories(Repository::new(store), repo.clone());
    for i in 0..20 {
        let line = OrderLine {
            sku: "tea".into(),
            quantity: 1,
            unit_price_cents: 1,
        };
        service
            .place(&format!("order-with-a-long-identifier-{i:04}"), "c", vec![line])
            .await
            .unwrap();
    }
    let loaded = repo.load("tea").await.unwrap();
    assert_eq!((loaded.version, loaded.state.reserved()), (22, 20));
    // Early snapshots fit; once the state outgrew the limit none were added.
    let snapshots = memory
        .read_stream(
            &snapshot_stream(&StreamId::new("stock-tea").unwrap()),
            1,
            Direction::Forward,
            100,
        )
        .await
        .unwrap();
    assert!(!snapshots.is_empty(), "the small early states were snapshotted");
    assert!(snapshots.iter().all(|s| s.payload.len() <= 200));
    assert!(loaded.snapshot_version.unwrap_or(0) < 22);
}

#[tokio::test]
async fn json_snapshots_load_too() {
    let memory = MemoryStore::new();
    let repo = Repository::<Counter>::new(Arc::new(memory.clone()))
        .with_format(Format::Json)
        .with_snapshots(4);
    add_many(&repo, "j", 9).await;
    let snapshot = memory
        .read_stream(
            &snapshot_stream(&StreamId::new("counter-j").unwrap()),
            u64::MAX,
            Direction::Backward,
            1,
        )
        .await
        .unwrap()
        .pop()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&snapshot.payload).unwrap();
    assert_eq!(state["adds"], 8);
    let loaded = repo.load("j").await.unwrap();
    assert_eq!(
        (loaded.snapshot_version, loaded.state.total),
        (Some(8), expected_total(9))
    );
}
