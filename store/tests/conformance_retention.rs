//! The conformance suite of the life of a stream (soft and hard delete,
//! truncation, retention by count and age, what readers see), written once
//! and run against every backend like `conformance.rs`. See
//! `docs/retention.md`.

mod common;

mod suite {
    use std::time::Duration;

    use futures::StreamExt;
    use strata_store::{
        DeleteMode, Direction, EVENT_STREAM_DELETED, EventFilter, EventStore, ExpectedVersion, StoreError,
        StreamMetadata, StreamOperation, StreamOperationResult, SubscriptionItem, metadata_stream,
    };

    use crate::common::{Fixture, evs, sid};

    async fn versions(store: &dyn EventStore, s: &str) -> Vec<u64> {
        let events = store
            .read_stream(&sid(s), 1, Direction::Forward, usize::MAX)
            .await
            .unwrap();
        events.iter().map(|e| e.version).collect()
    }

    async fn backward(store: &dyn EventStore, s: &str, limit: usize) -> Vec<u64> {
        let events = store
            .read_stream(&sid(s), u64::MAX, Direction::Backward, limit)
            .await
            .unwrap();
        events.iter().map(|e| e.version).collect()
    }

    async fn all_of(store: &dyn EventStore, s: &str) -> Vec<u64> {
        let events = store.read_all(0, usize::MAX).await.unwrap();
        events
            .iter()
            .filter(|e| e.stream_id.as_str() == s)
            .map(|e| e.version)
            .collect()
    }

    fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, actual: u64) {
        match r {
            Err(StoreError::WrongExpectedVersion { actual: a, .. }) => assert_eq!(a, actual),
            other => panic!("expected a conflict at {actual}, got {other:?}"),
        }
    }

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

    pub async fn subscriptions_skip_removed_events_without_gap_or_stall(fx: Fixture) {
        let store = fx.store.clone();
        store
            .append(&sid("a"), ExpectedVersion::NoStream, evs("a", 3))
            .await
            .unwrap();
        store
            .append(&sid("b"), ExpectedVersion::NoStream, evs("b", 1))
            .await
            .unwrap();
        store
            .delete_stream(&sid("a"), ExpectedVersion::Any, DeleteMode::Soft)
            .await
            .unwrap();
        let mut sub = store.subscribe_all(0);
        let mut seen = Vec::new();
        for _ in 0..2 {
            let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("the subscription moves past removed events")
                .unwrap()
                .unwrap();
            seen.push((e.stream_id.to_string(), e.position));
        }
        assert_eq!(seen, vec![("b".to_string(), 4), ("$$a".to_string(), 5)]);
        // A tail of removed events: the subscription waits for the next
        // event rather than stalling or spinning on them.
        store
            .append(&sid("c"), ExpectedVersion::NoStream, evs("c", 2))
            .await
            .unwrap();
        store
            .truncate_stream(&sid("c"), ExpectedVersion::Exact(2), 3)
            .await
            .unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((e.stream_id.as_str(), e.position), ("$$c", 8));
        store
            .append(&sid("d"), ExpectedVersion::NoStream, evs("d", 1))
            .await
            .unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((e.stream_id.as_str(), e.position), ("d", 9));
        // A subscription that starts inside removed events moves past them.
        let mut late = store.subscribe_all(1);
        let e = tokio::time::timeout(Duration::from_secs(10), late.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.position, 4);
    }

    pub async fn a_filtered_subscription_checkpoints_past_removed_events(fx: Fixture) {
        let store = fx.store.clone();
        store
            .append(&sid("x-1"), ExpectedVersion::NoStream, evs("x", 3))
            .await
            .unwrap();
        store
            .truncate_stream(&sid("x-1"), ExpectedVersion::Exact(3), 4)
            .await
            .unwrap();
        let mut sub = store.subscribe_filtered(0, EventFilter::all().category("x"));
        let item = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            matches!(item, SubscriptionItem::Checkpoint(p) if p >= 3),
            "a checkpoint moves past the removed events: {item:?}"
        );
        store
            .append(&sid("x-1"), ExpectedVersion::Exact(3), evs("y", 1))
            .await
            .unwrap();
        loop {
            let item = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let SubscriptionItem::Event(e) = item {
                assert_eq!((e.version, e.position), (4, 5));
                break;
            }
        }
        let read = store
            .read_filtered(0, 10, &EventFilter::all().stream(sid("x-1")))
            .await
            .unwrap();
        assert_eq!(read.events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![4]);
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

    /// `list_streams` lists the streams that read as present: no `$$`
    /// metadata stream, no deleted stream (a soft-deleted one again once
    /// written), a truncated one with its version; pages skip what is left
    /// out without coming up short; a prefix is a range.
    pub async fn list_streams_leaves_out_deleted_and_metadata_streams(fx: Fixture) {
        let store = &*fx.store;
        for s in ["a-1", "a-2", "a-3", "a-4", "a-5", "a.x", "b-1"] {
            store
                .append(&sid(s), ExpectedVersion::NoStream, evs(s, 2))
                .await
                .unwrap();
        }
        store
            .delete_stream(&sid("a-2"), ExpectedVersion::Exact(2), DeleteMode::Soft)
            .await
            .unwrap();
        store
            .delete_stream(&sid("a-3"), ExpectedVersion::Exact(2), DeleteMode::Hard)
            .await
            .unwrap();
        store
            .truncate_stream(&sid("a-4"), ExpectedVersion::Exact(2), 3)
            .await
            .unwrap();
        store
            .delete_stream(&sid("a-5"), ExpectedVersion::Exact(2), DeleteMode::Soft)
            .await
            .unwrap();
        store
            .append(&sid("a-5"), ExpectedVersion::NoStream, evs("again", 1))
            .await
            .unwrap();
        let listed = |page: Vec<strata_store::StreamSummary>| -> Vec<(String, u64)> {
            page.into_iter().map(|s| (s.stream_id.to_string(), s.version)).collect()
        };
        let all = listed(store.list_streams("", None, 100).await.unwrap());
        let expected: Vec<(String, u64)> = [("a-1", 2), ("a-4", 2), ("a-5", 3), ("a.x", 2), ("b-1", 2)]
            .iter()
            .map(|(s, v)| (s.to_string(), *v))
            .collect();
        assert_eq!(all, expected);
        let prefixed = listed(store.list_streams("a-", None, 100).await.unwrap());
        assert_eq!(prefixed, expected[..3].to_vec());
        // Pages of one: each is full until the end, whatever is left out.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_streams("", after.as_ref(), 1).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.stream_id.clone());
            paged.extend(listed(page));
        }
        assert_eq!(paged, expected);
        let from_a2 = listed(store.list_streams("a-", Some(&sid("a-2")), 1).await.unwrap());
        assert_eq!(from_a2, expected[1..2].to_vec());
        assert!(store.list_streams("$$", None, 10).await.unwrap().is_empty());
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:expr $(, $needs:ident)?) => {
        mod $backend {
            conformance!(@tests [$($needs)?] $fixture;
                a_soft_deleted_stream_reads_as_absent_until_written_again,
                old_event_ids_of_a_deleted_stream_are_still_known,
                a_delete_is_an_expected_version_write,
                a_tombstoned_stream_can_never_be_written_again,
                truncation_removes_earlier_events_and_the_version_keeps_counting,
                max_count_keeps_the_newest_events,
                metadata_has_its_own_expected_version,
                the_largest_retention_is_harmless_and_larger_is_refused,
                max_age_removes_old_events,
                subscriptions_skip_removed_events_without_gap_or_stall,
                a_filtered_subscription_checkpoints_past_removed_events,
                a_truncation_for_retention_is_judged_against_the_metadata_version,
                list_streams_leaves_out_deleted_and_metadata_streams,
            );
        }
    };
    (@tests [] $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::$name($fixture).await;
            }
        )*
    };
    (@tests [needs_postgres] $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
            async fn $name() {
                crate::suite::$name($fixture).await;
            }
        )*
    };
}

conformance!(memory, crate::common::Fixture::memory());
conformance!(segment, crate::common::Fixture::segment());
conformance!(postgres, crate::common::Fixture::postgres().await, needs_postgres);
// Every rule again with a scavenge after every write: the removed rows are
// physically deleted, and nothing a reader or a writer sees changes.
conformance!(
    postgres_scavenged,
    crate::common::Fixture::postgres_scavenged().await,
    needs_postgres
);
