//! Rules of `conformance_retention.rs`: truncation, retention by count
//! and age, the metadata's own expected version, and a truncation made
//! for retention.

use std::time::Duration;

use strata_store::{Direction, ExpectedVersion, StoreError, StreamMetadata, StreamOperation, metadata_stream};

use crate::common::{Fixture, evs, sid};
use crate::suite::{all_of, backward, versions};

pub async fn truncation_removes_earlier_events_and_the_version_keeps_counting(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 5))
        .await
        .unwrap();
    store
        .truncate_stream(&sid("a"), ExpectedVersion::Exact(5), 4)
        .await
        .unwrap();
    assert_eq!(versions(store, "a").await, vec![4, 5]);
    assert_eq!(backward(store, "a", 10).await, vec![5, 4]);
    assert_eq!(all_of(store, "a").await, vec![4, 5]);
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 5);
    let from_two = store.read_stream(&sid("a"), 2, Direction::Forward, 1).await.unwrap();
    assert_eq!(
        from_two[0].version, 4,
        "a read from a removed version starts at the first kept one"
    );
    store
        .append(&sid("a"), ExpectedVersion::Exact(5), evs("b", 1))
        .await
        .unwrap();
    assert_eq!(versions(store, "a").await, vec![4, 5, 6]);
    // Truncation never moves back, and cannot pass the next version.
    store.truncate_stream(&sid("a"), ExpectedVersion::Any, 2).await.unwrap();
    assert_eq!(versions(store, "a").await, vec![4, 5, 6]);
    let past = store.truncate_stream(&sid("a"), ExpectedVersion::Any, 8).await;
    assert!(
        matches!(past, Err(StoreError::InvalidStreamOperation { .. })),
        "{past:?}"
    );
    // Truncating before the next version empties the stream; it still exists.
    store
        .truncate_stream(&sid("a"), ExpectedVersion::Exact(6), 7)
        .await
        .unwrap();
    assert!(versions(store, "a").await.is_empty());
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 6);
    store
        .append(&sid("a"), ExpectedVersion::Exact(6), evs("c", 1))
        .await
        .unwrap();
    let fx = fx.reopen().await;
    assert_eq!(versions(&*fx.store, "a").await, vec![7]);
}

pub async fn max_count_keeps_the_newest_events(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 5))
        .await
        .unwrap();
    let keep3 = StreamMetadata {
        max_count: Some(3),
        max_age: None,
    };
    let r = store
        .set_stream_metadata(&sid("a"), ExpectedVersion::NoStream, keep3)
        .await
        .unwrap();
    assert_eq!(r.metadata_version, 1);
    assert_eq!(versions(store, "a").await, vec![3, 4, 5]);
    assert_eq!(backward(store, "a", 2).await, vec![5, 4]);
    store
        .append(&sid("a"), ExpectedVersion::Exact(5), evs("b", 2))
        .await
        .unwrap();
    assert_eq!(versions(store, "a").await, vec![5, 6, 7]);
    assert_eq!(all_of(store, "a").await, vec![5, 6, 7]);
    let info = store.stream_info(&sid("a")).await.unwrap();
    assert_eq!(
        (info.version, info.metadata_version, info.state.metadata),
        (7, 1, keep3)
    );
    let zero = store
        .set_stream_metadata(
            &sid("a"),
            ExpectedVersion::Exact(1),
            StreamMetadata {
                max_count: Some(0),
                max_age: None,
            },
        )
        .await;
    assert!(matches!(zero, Err(StoreError::InvalidStreamOperation { .. })));
    let fx = fx.reopen().await;
    assert_eq!(versions(&*fx.store, "a").await, vec![5, 6, 7]);
}

pub async fn metadata_has_its_own_expected_version(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 2))
        .await
        .unwrap();
    let m = |c| StreamMetadata {
        max_count: Some(c),
        max_age: None,
    };
    store
        .set_stream_metadata(&sid("a"), ExpectedVersion::NoStream, m(5))
        .await
        .unwrap();
    // Two admins who read metadata version 1: the second one is refused.
    store
        .set_stream_metadata(&sid("a"), ExpectedVersion::Exact(1), m(4))
        .await
        .unwrap();
    let stale = store
        .set_stream_metadata(&sid("a"), ExpectedVersion::Exact(1), m(1))
        .await;
    match stale {
        Err(StoreError::WrongExpectedVersion { stream, actual: 2, .. }) => {
            assert_eq!(stream, metadata_stream(&sid("a")));
        }
        other => panic!("expected a metadata conflict, got {other:?}"),
    }
    // The stream's own version is not the metadata version.
    store
        .append(&sid("a"), ExpectedVersion::Exact(2), evs("b", 1))
        .await
        .unwrap();
    assert_eq!(store.stream_info(&sid("a")).await.unwrap().state.metadata, m(4));
    // Nobody appends to a metadata stream directly.
    let direct = store
        .append(&metadata_stream(&sid("a")), ExpectedVersion::Any, evs("x", 1))
        .await;
    assert!(matches!(direct, Err(StoreError::InvalidStreamId { .. })), "{direct:?}");
}

/// The largest retention a stream may have keeps every event and every
/// read working (no backend overflows on it); one past it is refused.
pub async fn the_largest_retention_is_harmless_and_larger_is_refused(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 3))
        .await
        .unwrap();
    let largest = StreamMetadata {
        max_count: Some(strata_store::MAX_RETENTION_COUNT),
        max_age: Some(std::time::Duration::from_millis(strata_store::MAX_RETENTION_AGE_MS)),
    };
    store
        .set_stream_metadata(&sid("a"), ExpectedVersion::NoStream, largest)
        .await
        .unwrap();
    assert_eq!(versions(store, "a").await, vec![1, 2, 3]);
    assert_eq!(backward(store, "a", 2).await, vec![3, 2]);
    assert_eq!(all_of(store, "a").await, vec![1, 2, 3]);
    for too_large in [
        StreamMetadata {
            max_count: Some(strata_store::MAX_RETENTION_COUNT + 1),
            max_age: None,
        },
        StreamMetadata {
            max_count: None,
            max_age: Some(std::time::Duration::from_millis(strata_store::MAX_RETENTION_AGE_MS + 1)),
        },
    ] {
        let refused = store
            .set_stream_metadata(&sid("a"), ExpectedVersion::Exact(1), too_large)
            .await;
        assert!(
            matches!(refused, Err(StoreError::InvalidStreamOperation { .. })),
            "{too_large:?}: {refused:?}"
        );
    }
    assert_eq!(store.stream_info(&sid("a")).await.unwrap().state.metadata, largest);
}

pub async fn max_age_removes_old_events(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("old", 2))
        .await
        .unwrap();
    let meta = StreamMetadata {
        max_count: None,
        max_age: Some(Duration::from_millis(300)),
    };
    store
        .set_stream_metadata(&sid("a"), ExpectedVersion::Any, meta)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    store
        .append(&sid("a"), ExpectedVersion::Exact(2), evs("new", 1))
        .await
        .unwrap();
    assert_eq!(versions(store, "a").await, vec![3]);
    assert_eq!(backward(store, "a", 5).await, vec![3]);
    assert_eq!(all_of(store, "a").await, vec![3]);
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 3);
}

/// A truncation that makes a retention permanent (what a scavenge does
/// first) is judged against the metadata version it read: appends to
/// the stream meanwhile do not refuse it, an administrator's metadata
/// change does, and then nothing is truncated.
pub async fn a_truncation_for_retention_is_judged_against_the_metadata_version(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 5))
        .await
        .unwrap();
    let m = |c| StreamMetadata {
        max_count: Some(c),
        max_age: None,
    };
    store
        .set_stream_metadata(&sid("a"), ExpectedVersion::NoStream, m(2))
        .await
        .unwrap();
    // The administrator widens the retention after a scavenge read it.
    store
        .set_stream_metadata(&sid("a"), ExpectedVersion::Exact(1), m(10))
        .await
        .unwrap();
    let stale = store
        .modify_stream(StreamOperation::TruncateForRetention {
            stream: sid("a"),
            metadata_expected: ExpectedVersion::Exact(1),
            before: 4,
        })
        .await;
    match stale {
        Err(StoreError::WrongExpectedVersion { stream, actual: 2, .. }) => {
            assert_eq!(stream, metadata_stream(&sid("a")));
        }
        other => panic!("expected a metadata conflict, got {other:?}"),
    }
    assert_eq!(versions(store, "a").await, vec![1, 2, 3, 4, 5], "nothing truncated");
    // Appends meanwhile do not matter: only the metadata version does.
    store
        .append(&sid("a"), ExpectedVersion::Exact(5), evs("b", 1))
        .await
        .unwrap();
    let r = store
        .modify_stream(StreamOperation::TruncateForRetention {
            stream: sid("a"),
            metadata_expected: ExpectedVersion::Exact(2),
            before: 4,
        })
        .await
        .unwrap();
    assert_eq!(r.metadata_version, 3);
    assert_eq!(versions(store, "a").await, vec![4, 5, 6]);
    let info = store.stream_info(&sid("a")).await.unwrap();
    assert_eq!((info.state.truncate_before, info.state.metadata), (4, m(10)));
}
