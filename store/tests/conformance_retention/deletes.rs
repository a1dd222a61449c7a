//! Rules of `conformance_retention.rs`: soft and hard deletes, judged
//! like appends, and the ids and versions a deleted stream keeps.

use strata_store::{
    DeleteMode, Direction, EVENT_STREAM_DELETED, EventStore, ExpectedVersion, StoreError, StreamMetadata,
    StreamOperationResult, metadata_stream,
};

use crate::common::{Fixture, evs, sid};
use crate::suite::{all_of, backward, is_conflict, versions};

pub async fn a_soft_deleted_stream_reads_as_absent_until_written_again(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 3))
        .await
        .unwrap();
    store
        .append(&sid("b"), ExpectedVersion::NoStream, evs("b", 1))
        .await
        .unwrap();
    let r = store
        .delete_stream(&sid("a"), ExpectedVersion::Exact(3), DeleteMode::Soft)
        .await
        .unwrap();
    assert_eq!(
        r,
        StreamOperationResult {
            position: 5,
            metadata_version: 1
        }
    );
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 0);
    assert!(versions(store, "a").await.is_empty() && backward(store, "a", 10).await.is_empty());
    assert!(all_of(store, "a").await.is_empty(), "read_all skips the deleted events");
    assert_eq!(all_of(store, "b").await, vec![1]);
    assert_eq!(store.head_position().await.unwrap(), 5, "positions are never reused");
    // The metadata stream records the delete, and read_all shows it.
    let meta = store
        .read_stream(&metadata_stream(&sid("a")), 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(
        (meta.len(), meta[0].event_type.as_str(), meta[0].position),
        (1, EVENT_STREAM_DELETED, 5)
    );
    let info = store.stream_info(&sid("a")).await.unwrap();
    assert!(info.state.deleted && info.version == 0 && info.metadata_version == 1);
    // Written again: NoStream is accepted, versions go on from the old one.
    let r = store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("new", 2))
        .await
        .unwrap();
    assert_eq!((r.stream_version, r.first_position), (5, 6));
    assert_eq!(versions(store, "a").await, vec![4, 5]);
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 5);
    assert_eq!(all_of(store, "a").await, vec![4, 5]);
    let fx = fx.reopen().await;
    let store = &*fx.store;
    assert_eq!(versions(store, "a").await, vec![4, 5], "the delete survives a restart");
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 5);
}

pub async fn old_event_ids_of_a_deleted_stream_are_still_known(fx: Fixture) {
    let store = &*fx.store;
    let first = evs("a", 2);
    let original = store
        .append(&sid("a"), ExpectedVersion::NoStream, first.clone())
        .await
        .unwrap();
    store
        .delete_stream(&sid("a"), ExpectedVersion::Exact(2), DeleteMode::Soft)
        .await
        .unwrap();
    // A late retry of the append made before the delete is answered
    // with its original result and writes nothing: it does not bring
    // the deleted events back.
    let retry = store
        .append(&sid("a"), ExpectedVersion::NoStream, first.clone())
        .await
        .unwrap();
    assert_eq!(retry, original);
    assert!(versions(store, "a").await.is_empty());
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 0);
    // A new event with an old id is refused.
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("n", 1))
        .await
        .unwrap();
    let reuse = store
        .append(&sid("a"), ExpectedVersion::Exact(3), vec![first[0].clone()])
        .await;
    assert!(matches!(reuse, Err(StoreError::DuplicateEventId { .. })), "{reuse:?}");
}

pub async fn a_delete_is_an_expected_version_write(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 2))
        .await
        .unwrap();
    is_conflict(
        store
            .delete_stream(&sid("a"), ExpectedVersion::Exact(1), DeleteMode::Soft)
            .await,
        2,
    );
    is_conflict(
        store
            .delete_stream(&sid("a"), ExpectedVersion::NoStream, DeleteMode::Hard)
            .await,
        2,
    );
    is_conflict(store.truncate_stream(&sid("a"), ExpectedVersion::Exact(5), 2).await, 2);
    assert_eq!(
        versions(store, "a").await,
        vec![1, 2],
        "a refused operation changes nothing"
    );
    assert_eq!(store.stream_info(&sid("a")).await.unwrap().metadata_version, 0);
    store
        .delete_stream(&sid("a"), ExpectedVersion::StreamExists, DeleteMode::Soft)
        .await
        .unwrap();
    // A writer that decided on the version before the delete is refused.
    is_conflict(
        store.append(&sid("a"), ExpectedVersion::Exact(2), evs("late", 1)).await,
        0,
    );
    is_conflict(
        store
            .append(&sid("a"), ExpectedVersion::StreamExists, evs("late", 1))
            .await,
        0,
    );
}

pub async fn a_tombstoned_stream_can_never_be_written_again(fx: Fixture) {
    let store = &*fx.store;
    store
        .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 2))
        .await
        .unwrap();
    store
        .delete_stream(&sid("a"), ExpectedVersion::Exact(2), DeleteMode::Hard)
        .await
        .unwrap();
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(2),
    ] {
        let r = store.append(&sid("a"), expected, evs("x", 1)).await;
        assert!(
            matches!(r, Err(StoreError::StreamDeleted { .. })),
            "{expected:?}: {r:?}"
        );
    }
    let again = store
        .delete_stream(&sid("a"), ExpectedVersion::Any, DeleteMode::Soft)
        .await;
    assert!(matches!(again, Err(StoreError::StreamDeleted { .. })));
    let meta = store
        .set_stream_metadata(&sid("a"), ExpectedVersion::Any, StreamMetadata::default())
        .await;
    assert!(matches!(meta, Err(StoreError::StreamDeleted { .. })));
    assert!(versions(store, "a").await.is_empty() && all_of(store, "a").await.is_empty());
    assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 0);
    // A stream never written can be tombstoned too.
    store
        .delete_stream(&sid("never"), ExpectedVersion::NoStream, DeleteMode::Hard)
        .await
        .unwrap();
    let r = store
        .append(&sid("never"), ExpectedVersion::NoStream, evs("x", 1))
        .await;
    assert!(matches!(r, Err(StoreError::StreamDeleted { .. })));
    let fx = fx.reopen().await;
    let r = fx.store.append(&sid("a"), ExpectedVersion::Any, evs("x", 1)).await;
    assert!(
        matches!(r, Err(StoreError::StreamDeleted { .. })),
        "the tombstone survives a restart"
    );
}
