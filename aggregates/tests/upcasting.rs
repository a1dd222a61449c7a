//! Events stored in an older shape are turned into the current one on load.

mod common;

use std::sync::Arc;

use common::{Counter, CounterEvent, CounterEventV1};
use strata_aggregates::{
    CodecError, EVENT_VERSION_KEY, EventEnvelope, Format, Repository, RepositoryError, decode, encode,
};
use strata_store::{Direction, EventStore, ExpectedVersion, MemoryStore, StreamId};

#[tokio::test]
async fn old_shapes_are_upcast_on_load_in_every_format() {
    for format in [Format::Bincode, Format::Json] {
        let store = MemoryStore::new();
        let stream = StreamId::new("counter-old").unwrap();
        // An older release wrote these: `Added` at shape version 1.
        let v1 = [CounterEventV1::Added { amount: 5 }, CounterEventV1::Added { amount: 7 }];
        let old: Vec<_> = v1.iter().map(|e| encode(e, format).unwrap()).collect();
        assert!(old.iter().all(|e| e.metadata.extra[EVENT_VERSION_KEY] == "1"));
        store.append(&stream, ExpectedVersion::NoStream, old).await.unwrap();

        // Today's code adds a v2 event and reads them all.
        let repo = Repository::<Counter>::new(Arc::new(store.clone())).with_format(format);
        let done = repo.execute("old", common::CounterCommand::Add(1), None).await.unwrap();
        assert_eq!((done.version, done.state.total, done.state.adds), (3, 13, 3));
        let loaded = repo.load("old").await.unwrap();
        assert_eq!(loaded.state, done.state);

        let events: Vec<_> = repo.read_events("old", 1, 10).await.unwrap();
        let shapes: Vec<_> = events
            .into_iter()
            .map(|e: EventEnvelope<CounterEvent>| e.event)
            .collect();
        assert_eq!(
            shapes,
            vec![
                CounterEvent::Added {
                    amount: 5,
                    note: "from v1".into()
                },
                CounterEvent::Added {
                    amount: 7,
                    note: "from v1".into()
                },
                CounterEvent::Added {
                    amount: 1,
                    note: String::new()
                },
            ]
        );
        let stored = store.read_stream(&stream, 3, Direction::Forward, 1).await.unwrap();
        assert_eq!(
            stored[0].metadata.extra[EVENT_VERSION_KEY], "2",
            "new events carry the new version"
        );
    }
}

#[tokio::test]
async fn a_shape_newer_than_the_code_is_an_error_not_a_guess() {
    let store = MemoryStore::new();
    let stream = StreamId::new("counter-new").unwrap();
    let mut newer = encode(
        &CounterEvent::Added {
            amount: 1,
            note: "n".into(),
        },
        Format::Bincode,
    )
    .unwrap();
    newer.metadata.extra.insert(EVENT_VERSION_KEY.into(), "3".into());
    store
        .append(&stream, ExpectedVersion::NoStream, vec![newer])
        .await
        .unwrap();

    let recorded = &store.read_stream(&stream, 1, Direction::Forward, 1).await.unwrap()[0];
    assert!(matches!(
        decode::<CounterEvent>(recorded),
        Err(CodecError::UnknownVersion { version: 3, .. })
    ));
    let repo = Repository::<Counter>::new(Arc::new(store));
    assert!(matches!(
        repo.load("new").await,
        Err(RepositoryError::Decode {
            version: 1,
            source: CodecError::UnknownVersion { .. },
            ..
        })
    ));
}
