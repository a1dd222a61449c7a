//! Repository: loads, appends, the two kinds of conflict handling, typed
//! refusals, formats and metadata.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Counter, CounterCommand, CounterError, CounterEvent, RacingStore};
use strata_aggregates::domain::stock::{StockCommand, StockError, StockEvent, StockItem};
use strata_aggregates::{FORMAT_KEY, Format, Repository, RepositoryError, RetryPolicy, encode};
use strata_store::{Direction, EventStore, MemoryStore, Metadata, SegmentStore, StoreError, StreamId};

fn register(sku: &str) -> StockCommand {
    StockCommand::Register {
        sku: sku.into(),
        name: format!("{sku} name"),
    }
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default().with_max_attempts(attempts).with_backoff(
        std::time::Duration::from_micros(10),
        std::time::Duration::from_micros(100),
    )
}

#[tokio::test]
async fn an_absent_aggregate_loads_as_default_at_version_zero() {
    let repo = Repository::<StockItem>::new(Arc::new(MemoryStore::new()));
    let loaded = repo.load("nothing").await.unwrap();
    assert_eq!((loaded.version, loaded.exists()), (0, false));
    assert_eq!(loaded.state, StockItem::default());
}

#[tokio::test]
async fn execute_appends_what_the_aggregate_decides() {
    let store = MemoryStore::new();
    let repo = Repository::<StockItem>::new(Arc::new(store.clone()));
    let done = repo.execute("tea", register("tea"), Some(0)).await.unwrap();
    assert_eq!((done.version, done.retries), (1, 0));
    let done = repo
        .execute("tea", StockCommand::Receive { quantity: 7 }, None)
        .await
        .unwrap();
    assert_eq!(done.version, 2);
    assert_eq!(done.events, vec![StockEvent::StockReceived { quantity: 7 }]);
    let append = done.append.unwrap();
    assert_eq!(
        (append.stream_version, append.first_position, append.last_position),
        (2, 2, 2)
    );

    let stored = store
        .read_stream(&StreamId::new("stock-tea").unwrap(), 1, Direction::Forward, 10)
        .await
        .unwrap();
    let types: Vec<_> = stored.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["StockItemRegistered", "StockReceived"]);
    let loaded = repo.load("tea").await.unwrap();
    assert_eq!((loaded.version, loaded.state.on_hand()), (2, 7));
    assert_eq!(loaded.state, done.state);
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_with_what_changed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SegmentStore::open(dir.path()).unwrap());
    let repo = Repository::<StockItem>::new(store.clone());
    repo.execute("tea", register("tea"), None).await.unwrap();
    repo.execute("tea", StockCommand::Receive { quantity: 5 }, None)
        .await
        .unwrap();

    // A client reads version 2; another writer moves the stream to 4.
    let read = repo.load("tea").await.unwrap();
    assert_eq!(read.version, 2);
    repo.execute("tea", StockCommand::Receive { quantity: 3 }, None)
        .await
        .unwrap();
    repo.execute("tea", StockCommand::Adjust { counted: 10 }, None)
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();

    let err = repo
        .execute("tea", StockCommand::Receive { quantity: 1 }, Some(read.version))
        .await
        .unwrap_err();
    let RepositoryError::Conflict(conflict) = err else {
        panic!("expected a conflict, got {err:?}")
    };
    assert_eq!(conflict.stream.as_str(), "stock-tea");
    assert_eq!((conflict.expected, conflict.current, conflict.attempts), (2, 4, 1));
    assert_eq!(conflict.state.on_hand(), 10);
    assert!(conflict.events_since_complete);
    let since: Vec<_> = conflict
        .events_since
        .iter()
        .map(|e| (e.version, e.event.clone()))
        .collect();
    assert_eq!(
        since,
        vec![
            (3, StockEvent::StockReceived { quantity: 3 }),
            (4, StockEvent::StockAdjusted { counted: 10, delta: 2 }),
        ]
    );
    assert_eq!(conflict.events_since[0].event_type, "StockReceived");

    // Nothing was written.
    let stream = StreamId::new("stock-tea").unwrap();
    assert_eq!(store.stream_version(&stream).await.unwrap(), 4);
    assert_eq!(store.head_position().await.unwrap(), head);
}

#[tokio::test]
async fn a_version_ahead_of_the_stream_is_a_conflict_too() {
    let repo = Repository::<StockItem>::new(Arc::new(MemoryStore::new()));
    repo.execute("tea", register("tea"), None).await.unwrap();
    let err = repo
        .execute("tea", StockCommand::Receive { quantity: 1 }, Some(9))
        .await
        .unwrap_err();
    let conflict = err.conflict().expect("a conflict");
    assert_eq!((conflict.expected, conflict.current), (9, 1));
    assert!(conflict.events_since.is_empty());
}

#[tokio::test]
async fn a_named_version_that_loses_the_race_at_append_is_not_retried() {
    // The stream is at the caller's version when read, but another writer
    // appends between the read and the append.
    let memory = MemoryStore::new();
    let setup = Repository::<StockItem>::new(Arc::new(memory.clone()));
    setup.execute("tea", register("tea"), None).await.unwrap();

    let racing = RacingStore::new(memory.clone(), "stock-tea", 1, || {
        encode(&StockEvent::StockReceived { quantity: 100 }, Format::Bincode).unwrap()
    });
    let repo = Repository::<StockItem>::new(Arc::new(racing.clone()));
    let err = repo
        .execute("tea", StockCommand::Receive { quantity: 1 }, Some(1))
        .await
        .unwrap_err();
    let conflict = err.conflict().expect("a conflict");
    assert_eq!((conflict.expected, conflict.current, conflict.attempts), (1, 2, 1));
    assert_eq!(conflict.state.on_hand(), 100);
    assert_eq!(conflict.events_since.len(), 1);
    assert_eq!(racing.interlopers.load(Ordering::SeqCst), 1);
    let stream = StreamId::new("stock-tea").unwrap();
    assert_eq!(
        memory.stream_version(&stream).await.unwrap(),
        2,
        "only the other writer's event"
    );
}

#[tokio::test]
async fn without_a_version_the_command_is_decided_again_on_the_new_state() {
    let memory = MemoryStore::new();
    let setup = Repository::<StockItem>::new(Arc::new(memory.clone()));
    setup.execute("tea", register("tea"), None).await.unwrap();
    setup
        .execute("tea", StockCommand::Receive { quantity: 5 }, None)
        .await
        .unwrap();

    // Another writer reserves 4 of the 5 units just before our append.
    let racing = RacingStore::new(memory.clone(), "stock-tea", 1, || {
        encode(
            &StockEvent::StockReserved {
                order_id: "other".into(),
                quantity: 4,
            },
            Format::Bincode,
        )
        .unwrap()
    });
    let repo = Repository::<StockItem>::new(Arc::new(racing.clone())).with_retry_policy(fast_retries(5));
    // Deciding again on the new state refuses what was fine before: a count
    // of 3 is below the 4 units now reserved.
    let err = repo
        .execute("tea", StockCommand::Adjust { counted: 3 }, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepositoryError::Rejected(StockError::BelowReserved {
                counted: 3,
                reserved: 4
            })
        ),
        "{err:?}"
    );

    // And a command that still fits lands after one retry.
    let racing = RacingStore::new(memory.clone(), "stock-tea", 1, || {
        encode(&StockEvent::StockReceived { quantity: 1 }, Format::Bincode).unwrap()
    });
    let repo = Repository::<StockItem>::new(Arc::new(racing.clone())).with_retry_policy(fast_retries(5));
    let done = repo
        .execute("tea", StockCommand::Adjust { counted: 10 }, None)
        .await
        .unwrap();
    assert_eq!(done.retries, 1);
    assert_eq!(done.version, 5);
    assert_eq!(
        done.events,
        vec![StockEvent::StockAdjusted { counted: 10, delta: 4 }],
        "decided on the 6 units on hand after the other receive"
    );
    assert_eq!((done.state.on_hand(), done.state.reserved()), (10, 4));
}

#[tokio::test]
async fn retries_run_out_with_the_last_conflict() {
    let memory = MemoryStore::new();
    let racing = RacingStore::new(memory.clone(), "counter-c", usize::MAX, || {
        encode(
            &CounterEvent::Added {
                amount: 1,
                note: "other".into(),
            },
            Format::Bincode,
        )
        .unwrap()
    });
    let repo = Repository::<Counter>::new(Arc::new(racing.clone())).with_retry_policy(fast_retries(3));
    let err = repo.execute("c", CounterCommand::Add(10), None).await.unwrap_err();
    let conflict = err.conflict().expect("a conflict");
    assert_eq!(conflict.attempts, 3);
    assert_eq!(racing.interlopers.load(Ordering::SeqCst), 3);
    assert_eq!((conflict.expected, conflict.current), (2, 3));
    assert_eq!(conflict.state.total, 3, "only the other writer's adds");
    let stream = StreamId::new("counter-c").unwrap();
    assert_eq!(memory.stream_version(&stream).await.unwrap(), 3);

    let once = Repository::<Counter>::new(Arc::new(racing.clone())).with_retry_policy(RetryPolicy::no_retry());
    let err = once.execute("c", CounterCommand::Add(10), None).await.unwrap_err();
    assert_eq!(err.conflict().unwrap().attempts, 1);
}

#[tokio::test]
async fn a_refusal_is_the_aggregates_own_error() {
    let repo = Repository::<StockItem>::new(Arc::new(MemoryStore::new()));
    let err = repo
        .execute("tea", StockCommand::Receive { quantity: 1 }, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.rejection(),
        Some(&StockError::NotRegistered {
            command: strata_aggregates::domain::stock::StockCommandKind::Receive
        })
    );
    let counter = Repository::<Counter>::new(Arc::new(MemoryStore::new()));
    let err = counter.execute("c", CounterCommand::Reset, None).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Rejected(CounterError::NothingToReset)));
    // The message is the domain's own.
    assert_eq!(err.to_string(), "nothing to reset");
}

#[tokio::test]
async fn a_command_that_decides_nothing_appends_nothing() {
    let store = MemoryStore::new();
    let repo = Repository::<Counter>::new(Arc::new(store.clone()));
    let first = repo.execute("c", CounterCommand::Add(2), Some(0)).await.unwrap();
    let nothing = repo.execute("c", CounterCommand::Nothing, Some(1)).await.unwrap();
    assert!(first.append.is_some());
    assert_eq!((nothing.version, nothing.append, nothing.events.len()), (1, None, 0));
    assert_eq!(nothing.state.total, 2);
    assert_eq!(store.head_position().await.unwrap(), 1);
}

#[tokio::test]
async fn an_invalid_id_is_a_store_input_error() {
    let repo = Repository::<StockItem>::new(Arc::new(MemoryStore::new()));
    let err = repo.execute("bad\nid", register("x"), None).await.unwrap_err();
    assert!(
        matches!(&err, RepositoryError::Store(e @ StoreError::InvalidStreamId { .. }) if e.is_invalid_input()),
        "{err:?}"
    );
    assert!(matches!(
        repo.load(&"x".repeat(300)).await,
        Err(RepositoryError::Store(StoreError::InvalidStreamId { .. }))
    ));
}

#[tokio::test]
async fn formats_mix_in_one_stream_and_metadata_is_recorded() {
    let store = MemoryStore::new();
    let json = Repository::<StockItem>::new(Arc::new(store.clone())).with_format(Format::Json);
    let bincode = Repository::<StockItem>::new(Arc::new(store.clone()));
    json.execute("tea", register("tea"), None).await.unwrap();
    let mut metadata = Metadata {
        correlation_id: Some("req-7".into()),
        causation_id: Some("cmd-7".into()),
        ..Metadata::default()
    };
    metadata.extra.insert("user".into(), "ada".into());
    bincode
        .execute_with("tea", &StockCommand::Receive { quantity: 4 }, None, &metadata)
        .await
        .unwrap();

    let stored = store
        .read_stream(&StreamId::new("stock-tea").unwrap(), 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(stored[0].metadata.extra[FORMAT_KEY], "json");
    let json_payload: serde_json::Value = serde_json::from_slice(&stored[0].payload).unwrap();
    assert_eq!(json_payload["StockItemRegistered"]["sku"], "tea");
    assert_eq!(stored[1].metadata.extra[FORMAT_KEY], "bincode");
    assert_eq!(stored[1].metadata.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(stored[1].metadata.causation_id.as_deref(), Some("cmd-7"));
    assert_eq!(stored[1].metadata.extra["user"], "ada");

    for repo in [&json, &bincode] {
        let loaded = repo.load("tea").await.unwrap();
        assert_eq!(
            (loaded.version, loaded.state.on_hand(), loaded.state.name()),
            (2, 4, "tea name")
        );
    }
    let events = json.read_events("tea", 2, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, StockEvent::StockReceived { quantity: 4 });
}

#[tokio::test]
async fn conflict_events_are_capped() {
    let repo = Repository::<Counter>::new(Arc::new(MemoryStore::new())).with_conflict_event_limit(3);
    for _ in 0..10 {
        repo.execute("c", CounterCommand::Add(1), None).await.unwrap();
    }
    let err = repo.execute("c", CounterCommand::Add(1), Some(2)).await.unwrap_err();
    let conflict = err.conflict().unwrap();
    assert_eq!((conflict.expected, conflict.current), (2, 10));
    assert!(!conflict.events_since_complete);
    let versions: Vec<_> = conflict.events_since.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![3, 4, 5], "the oldest events after the caller's version");
}

#[tokio::test]
async fn undecodable_events_are_reported_with_their_place() {
    let store = MemoryStore::new();
    let stream = StreamId::new("counter-c").unwrap();
    let future_shape = {
        let mut e = encode(&CounterEvent::Reset, Format::Json).unwrap();
        e.metadata
            .extra
            .insert(strata_aggregates::EVENT_VERSION_KEY.into(), "9".into());
        e
    };
    store
        .append(&stream, strata_store::ExpectedVersion::Any, vec![future_shape])
        .await
        .unwrap();
    let repo = Repository::<Counter>::new(Arc::new(store));
    let err = repo.load("c").await.unwrap_err();
    assert!(
        matches!(&err, RepositoryError::Decode { stream, version: 1, .. } if stream.as_str() == "counter-c"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_command_naming_another_id_is_refused() {
    let store = MemoryStore::new();
    let repo = Repository::<StockItem>::new(Arc::new(store.clone()));
    let err = repo.execute("tea", register("coffee"), None).await.unwrap_err();
    match &err {
        RepositoryError::IdMismatch { stream, id, named } => {
            assert_eq!(
                (stream.as_str(), id.as_str(), named.as_str()),
                ("stock-tea", "tea", "coffee")
            );
        }
        other => panic!("expected IdMismatch, got {other:?}"),
    }
    assert_eq!(store.head_position().await.unwrap(), 0, "nothing was written");
    // With a version named, too, and the matching id still works.
    assert!(matches!(
        repo.execute("tea", register("coffee"), Some(0)).await,
        Err(RepositoryError::IdMismatch { .. })
    ));
    assert_eq!(repo.execute("tea", register("tea"), Some(0)).await.unwrap().version, 1);
}
