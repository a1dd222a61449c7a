//! The conformance suite: one named test per rule of the log, written once
//! (in `suite`) and run against every backend (the `conformance!` lines at
//! the bottom).

mod common;

/// The rules, each an async fn over a fresh [`Fixture`].
mod suite {
    use std::collections::HashSet;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use futures::StreamExt;
    use strata_store::{
        AppendResult, Direction, EventFilter, EventId, EventStore, ExpectedVersion, FILTER_SCAN_WINDOW, Limits,
        Metadata, NewEvent, StoreError, StreamAppend, StreamId, SubscriptionItem,
    };

    use crate::common::{Fixture, ev, evs, sid};

    async fn versions(store: &dyn EventStore, s: &StreamId) -> Vec<u64> {
        store
            .read_stream(s, 1, Direction::Forward, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect()
    }

    fn assert_conflict(r: Result<AppendResult, StoreError>, stream: &StreamId, expected: ExpectedVersion, actual: u64) {
        match r {
            Err(StoreError::WrongExpectedVersion {
                stream: s,
                expected: e,
                actual: a,
            }) => {
                assert_eq!(
                    (&s, e, a),
                    (stream, expected, actual),
                    "conflict carries stream, expected and actual"
                );
            }
            other => panic!("expected WrongExpectedVersion(actual {actual}), got {other:?}"),
        }
    }

    pub async fn no_stream_creates_the_stream(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let r = store.append(&s, ExpectedVersion::NoStream, evs("x", 3)).await.unwrap();
        assert_eq!(
            r,
            AppendResult {
                stream_version: 3,
                first_position: 1,
                last_position: 3
            }
        );
        assert_eq!(versions(store, &s).await, vec![1, 2, 3]);
        assert_eq!(store.stream_version(&s).await.unwrap(), 3);
        assert_eq!(store.head_position().await.unwrap(), 3);
    }

    pub async fn no_stream_conflicts_when_the_stream_has_events(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::Any, evs("x", 2)).await.unwrap();
        let r = store.append(&s, ExpectedVersion::NoStream, evs("y", 1)).await;
        assert_conflict(r, &s, ExpectedVersion::NoStream, 2);
    }

    pub async fn exact_zero_is_no_stream(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let r = store.append(&s, ExpectedVersion::Exact(0), evs("x", 1)).await.unwrap();
        assert_eq!(r.stream_version, 1);
        let r = store.append(&s, ExpectedVersion::Exact(0), evs("y", 1)).await;
        assert_conflict(r, &s, ExpectedVersion::Exact(0), 1);
    }

    pub async fn stream_exists_conflicts_on_an_absent_stream(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let r = store.append(&s, ExpectedVersion::StreamExists, evs("x", 1)).await;
        assert_conflict(r, &s, ExpectedVersion::StreamExists, 0);
        store.append(&s, ExpectedVersion::NoStream, evs("x", 1)).await.unwrap();
        let r = store
            .append(&s, ExpectedVersion::StreamExists, evs("y", 2))
            .await
            .unwrap();
        assert_eq!(r.stream_version, 3);
    }

    pub async fn exact_conflicts_unless_the_version_matches(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::NoStream, evs("x", 2)).await.unwrap();
        for stale in [1, 3, 7] {
            let r = store.append(&s, ExpectedVersion::Exact(stale), evs("y", 1)).await;
            assert_conflict(r, &s, ExpectedVersion::Exact(stale), 2);
        }
        let r = store.append(&s, ExpectedVersion::Exact(2), evs("z", 1)).await.unwrap();
        assert_eq!(r.stream_version, 3);
    }

    pub async fn any_never_conflicts(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        for i in 1..=3u64 {
            let r = store.append(&s, ExpectedVersion::Any, evs("x", 1)).await.unwrap();
            assert_eq!(r.stream_version, i);
        }
    }

    pub async fn a_conflict_writes_nothing(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::NoStream, evs("x", 2)).await.unwrap();
        let _ = store
            .append(&s, ExpectedVersion::Exact(1), evs("y", 5))
            .await
            .unwrap_err();
        assert_eq!(store.stream_version(&s).await.unwrap(), 2);
        assert_eq!(store.head_position().await.unwrap(), 2);
        assert_eq!(store.read_all(0, 100).await.unwrap().len(), 2);
    }

    pub async fn idempotent_retry_with_exact_returns_the_original_result(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::NoStream, evs("x", 2)).await.unwrap();
        let batch = evs("y", 3);
        let first = store
            .append(&s, ExpectedVersion::Exact(2), batch.clone())
            .await
            .unwrap();
        store.append(&s, ExpectedVersion::Any, evs("z", 1)).await.unwrap();
        let retry = store.append(&s, ExpectedVersion::Exact(2), batch).await.unwrap();
        assert_eq!(retry, first, "the retry returns the original result");
        assert_eq!(store.stream_version(&s).await.unwrap(), 6, "the retry wrote nothing");
        assert_eq!(store.head_position().await.unwrap(), 6);
    }

    pub async fn idempotent_retry_with_no_stream(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let batch = evs("x", 2);
        let first = store
            .append(&s, ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap();
        let retry = store.append(&s, ExpectedVersion::NoStream, batch).await.unwrap();
        assert_eq!(retry, first);
        assert_eq!(store.head_position().await.unwrap(), 2);
    }

    pub async fn idempotent_retry_with_any_matches_anywhere(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::Any, evs("w", 2)).await.unwrap();
        let batch = evs("x", 2);
        let first = store.append(&s, ExpectedVersion::Any, batch.clone()).await.unwrap();
        store.append(&s, ExpectedVersion::Any, evs("z", 3)).await.unwrap();
        let retry = store.append(&s, ExpectedVersion::Any, batch.clone()).await.unwrap();
        assert_eq!(retry, first);
        let retry = store.append(&s, ExpectedVersion::StreamExists, batch).await.unwrap();
        assert_eq!(retry, first);
        assert_eq!(store.stream_version(&s).await.unwrap(), 7);
    }

    pub async fn idempotent_retry_survives_a_restart_and_any_age(fx: Fixture) {
        let s = sid("a");
        let batch = evs("x", 2);
        let first = fx
            .store
            .append(&s, ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap();
        // Many later appends: the id index is not a cache of recent ids.
        for i in 0..50 {
            let other = sid(&format!("other-{i}"));
            fx.store
                .append(&other, ExpectedVersion::Any, evs("o", 20))
                .await
                .unwrap();
        }
        let head = fx.store.head_position().await.unwrap();
        let fx = fx.reopen().await;
        let retry = fx.store.append(&s, ExpectedVersion::NoStream, batch).await.unwrap();
        assert_eq!(retry, first);
        assert_eq!(fx.store.head_position().await.unwrap(), head);
    }

    pub async fn partial_id_match_is_a_conflict(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let batch = evs("x", 2);
        store
            .append(&s, ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap();
        let mut longer = batch.clone();
        longer.push(ev("new"));
        let r = store.append(&s, ExpectedVersion::NoStream, longer).await;
        assert_conflict(r, &s, ExpectedVersion::NoStream, 2);
        let mixed = vec![batch[1].clone(), ev("new")];
        let r = store.append(&s, ExpectedVersion::Any, mixed).await;
        assert_conflict(r, &s, ExpectedVersion::Any, 2);
        let reordered = vec![batch[1].clone(), batch[0].clone()];
        let r = store.append(&s, ExpectedVersion::Any, reordered).await;
        assert_conflict(r, &s, ExpectedVersion::Any, 2);
        assert_eq!(store.head_position().await.unwrap(), 2, "nothing written");
    }

    pub async fn an_id_reused_at_the_current_version_is_a_duplicate(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let batch = evs("x", 2);
        store
            .append(&s, ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap();
        let r = store
            .append(&s, ExpectedVersion::Exact(2), vec![batch[0].clone()])
            .await;
        match r {
            Err(StoreError::DuplicateEventId {
                stream,
                event_id,
                existing_version,
            }) => {
                assert_eq!((stream, event_id, existing_version), (s.clone(), batch[0].id, Some(1)));
            }
            other => panic!("expected DuplicateEventId, got {other:?}"),
        }
        assert_eq!(store.head_position().await.unwrap(), 2);
    }

    pub async fn the_same_id_is_allowed_in_another_stream(fx: Fixture) {
        let store = &*fx.store;
        let batch = evs("x", 2);
        let a = store
            .append(&sid("a"), ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap();
        let b = store.append(&sid("b"), ExpectedVersion::NoStream, batch).await.unwrap();
        assert_eq!((a.first_position, b.first_position), (1, 3));
        assert_eq!(store.stream_version(&sid("b")).await.unwrap(), 2);
    }

    pub async fn an_id_twice_in_one_append_is_refused(fx: Fixture) {
        let store = &*fx.store;
        let e = ev("x");
        let r = store
            .append(&sid("a"), ExpectedVersion::Any, vec![e.clone(), e.clone()])
            .await;
        assert!(
            matches!(r, Err(StoreError::DuplicateEventId { existing_version: None, event_id, .. }) if event_id == e.id),
            "{r:?}"
        );
        assert_eq!(store.head_position().await.unwrap(), 0);
    }

    pub async fn an_empty_append_is_refused(fx: Fixture) {
        let store = &*fx.store;
        let r = store.append(&sid("a"), ExpectedVersion::Any, vec![]).await;
        assert!(matches!(r, Err(StoreError::EmptyAppend { .. })), "{r:?}");
        assert_eq!(store.head_position().await.unwrap(), 0);
    }

    pub async fn limits_are_enforced_with_their_own_errors(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        let limits = Limits::default();
        let big = NewEvent::new("T", Bytes::from(vec![0u8; limits.max_payload_bytes + 1]));
        let r = store.append(&s, ExpectedVersion::Any, vec![ev("ok"), big]).await;
        assert!(
            matches!(r, Err(StoreError::PayloadTooLarge { size, limit, .. }) if size == limit + 1),
            "{r:?}"
        );
        let many = evs("m", limits.max_events_per_append + 1);
        let r = store.append(&s, ExpectedVersion::Any, many).await;
        assert!(
            matches!(
                r,
                Err(StoreError::TooManyEvents {
                    count: 10_001,
                    limit: 10_000,
                    ..
                })
            ),
            "{r:?}"
        );
        let long_type = NewEvent::new("T".repeat(limits.max_event_type_bytes + 1), "x");
        let r = store.append(&s, ExpectedVersion::Any, vec![long_type]).await;
        assert!(matches!(r, Err(StoreError::InvalidEventType { .. })), "{r:?}");
        let r = store
            .append(&s, ExpectedVersion::Any, vec![NewEvent::new("", "x")])
            .await;
        assert!(matches!(r, Err(StoreError::InvalidEventType { .. })), "{r:?}");
        let mut meta = Metadata::default();
        meta.extra.insert("k".into(), "v".repeat(limits.max_metadata_bytes));
        let r = store
            .append(&s, ExpectedVersion::Any, vec![ev("x").with_metadata(meta)])
            .await;
        assert!(matches!(r, Err(StoreError::MetadataTooLarge { .. })), "{r:?}");
        let near = |i: usize| NewEvent::new("T", Bytes::from(vec![i as u8; limits.max_payload_bytes]));
        let r = store
            .append(&s, ExpectedVersion::Any, (0..65).map(near).collect())
            .await;
        assert!(matches!(r, Err(StoreError::AppendTooLarge { .. })), "{r:?}");
        assert_eq!(store.head_position().await.unwrap(), 0, "nothing written");
        // At the limit is fine.
        let exact = NewEvent::new("T", Bytes::from(vec![7u8; limits.max_payload_bytes]));
        store.append(&s, ExpectedVersion::Any, vec![exact]).await.unwrap();
        let back = store.read_all(1, 1).await.unwrap();
        assert_eq!(back[0].payload.len(), limits.max_payload_bytes);
    }

    pub async fn invalid_stream_ids_are_refused(_fx: Fixture) {
        for bad in ["", "tab\there", "nul\0", &"x".repeat(257)] {
            let r = StreamId::new(bad);
            assert!(matches!(r, Err(StoreError::InvalidStreamId { .. })), "{bad:?}: {r:?}");
        }
        assert!(StreamId::new("x".repeat(256)).is_ok());
        assert!(StreamId::new("ünïcødé-stream/1 with spaces").is_ok());
    }

    pub async fn multi_stream_append_is_all_or_nothing(fx: Fixture) {
        let store = &*fx.store;
        let (a, b, c) = (sid("a"), sid("b"), sid("c"));
        store.append(&b, ExpectedVersion::NoStream, evs("b", 1)).await.unwrap();
        let r = store
            .append_multi(vec![
                StreamAppend::new(a.clone(), ExpectedVersion::NoStream, evs("a", 2)),
                StreamAppend::new(b.clone(), ExpectedVersion::Exact(0), evs("b", 1)),
                StreamAppend::new(c.clone(), ExpectedVersion::Any, evs("c", 1)),
            ])
            .await;
        match r {
            Err(StoreError::WrongExpectedVersion { stream, actual, .. }) => {
                assert_eq!((stream, actual), (b.clone(), 1))
            }
            other => panic!("expected a conflict on b, got {other:?}"),
        }
        assert_eq!(store.stream_version(&a).await.unwrap(), 0);
        assert_eq!(store.stream_version(&c).await.unwrap(), 0);
        assert_eq!(store.head_position().await.unwrap(), 1);
    }

    pub async fn multi_stream_append_results_follow_the_order_of_appends(fx: Fixture) {
        let store = &*fx.store;
        let (a, b) = (sid("a"), sid("b"));
        store.append(&b, ExpectedVersion::NoStream, evs("b", 3)).await.unwrap();
        let parts = vec![
            StreamAppend::new(a.clone(), ExpectedVersion::NoStream, evs("a", 2)),
            StreamAppend::new(b.clone(), ExpectedVersion::Exact(3), evs("b", 1)),
        ];
        let r = store.append_multi(parts.clone()).await.unwrap();
        assert_eq!(
            r,
            vec![
                AppendResult {
                    stream_version: 2,
                    first_position: 4,
                    last_position: 5
                },
                AppendResult {
                    stream_version: 4,
                    first_position: 6,
                    last_position: 6
                },
            ]
        );
        // The whole multi-append retried is recognised.
        assert_eq!(store.append_multi(parts).await.unwrap(), r);
        assert_eq!(store.head_position().await.unwrap(), 6);
    }

    pub async fn multi_stream_append_refuses_a_stream_twice(fx: Fixture) {
        let store = &*fx.store;
        let a = sid("a");
        let r = store
            .append_multi(vec![
                StreamAppend::new(a.clone(), ExpectedVersion::Any, evs("a", 1)),
                StreamAppend::new(a.clone(), ExpectedVersion::Any, evs("b", 1)),
            ])
            .await;
        assert!(matches!(r, Err(StoreError::DuplicateStream { .. })), "{r:?}");
        let r = store.append_multi(vec![]).await.unwrap();
        assert!(r.is_empty(), "an empty multi-append does nothing");
        assert_eq!(store.head_position().await.unwrap(), 0);
    }

    pub async fn read_stream_forward_with_from_and_limit(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::NoStream, evs("x", 10)).await.unwrap();
        store
            .append(&sid("b"), ExpectedVersion::NoStream, evs("y", 3))
            .await
            .unwrap();
        let got = store.read_stream(&s, 4, Direction::Forward, 3).await.unwrap();
        assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(&got[0].payload[..], b"x3");
        let got = store.read_stream(&s, 0, Direction::Forward, 100).await.unwrap();
        assert_eq!(got.len(), 10, "from 0 reads from the start; other streams excluded");
        assert!(
            store
                .read_stream(&s, 11, Direction::Forward, 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .read_stream(&s, 1, Direction::Forward, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn read_stream_backward_with_from_and_limit(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("a");
        store.append(&s, ExpectedVersion::NoStream, evs("x", 10)).await.unwrap();
        let got = store.read_stream(&s, 7, Direction::Backward, 3).await.unwrap();
        assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), vec![7, 6, 5]);
        let got = store.read_stream(&s, u64::MAX, Direction::Backward, 2).await.unwrap();
        assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), vec![10, 9]);
        let got = store.read_stream(&s, 2, Direction::Backward, 10).await.unwrap();
        assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 1]);
        assert!(
            store
                .read_stream(&s, 0, Direction::Backward, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn reading_an_absent_stream_is_empty(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("nothing-here");
        assert!(
            store
                .read_stream(&s, 1, Direction::Forward, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .read_stream(&s, u64::MAX, Direction::Backward, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.stream_version(&s).await.unwrap(), 0);
        // A stream whose id is a prefix of another's is its own stream.
        store
            .append(&sid("ab"), ExpectedVersion::Any, evs("x", 1))
            .await
            .unwrap();
        assert_eq!(store.stream_version(&sid("a")).await.unwrap(), 0);
    }

    pub async fn read_all_is_in_position_order_across_streams(fx: Fixture) {
        let store = &*fx.store;
        let mut expected = Vec::new();
        for round in 0..3 {
            for name in ["a", "b", "c"] {
                let batch = evs(&format!("{name}{round}-"), 2);
                expected.extend(batch.iter().map(|e| (name.to_string(), e.id)));
                store.append(&sid(name), ExpectedVersion::Any, batch).await.unwrap();
            }
        }
        let all = store.read_all(0, 1000).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.position).collect::<Vec<_>>(),
            (1..=18).collect::<Vec<_>>()
        );
        assert_eq!(
            all.iter().map(|e| (e.stream_id.to_string(), e.id)).collect::<Vec<_>>(),
            expected
        );
        let page = store.read_all(5, 4).await.unwrap();
        assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), vec![5, 6, 7, 8]);
        assert!(store.read_all(19, 10).await.unwrap().is_empty());
        assert_eq!(store.head_position().await.unwrap(), 18);
    }

    pub async fn recorded_events_keep_what_was_appended(fx: Fixture) {
        let store = &*fx.store;
        let s = sid("order-1");
        let before = SystemTime::now() - Duration::from_secs(1);
        let mut metadata = Metadata {
            correlation_id: Some("corr-1".into()),
            causation_id: Some("cause-1".into()),
            ..Metadata::default()
        };
        metadata.extra.insert("user".into(), "ada".into());
        let id = EventId::new();
        let e = NewEvent::new("OrderPlaced", Bytes::from_static(b"\x00\xffpayload"))
            .with_id(id)
            .with_metadata(metadata.clone());
        store.append(&s, ExpectedVersion::NoStream, vec![e]).await.unwrap();
        let fx = fx.reopen().await;
        let got = fx
            .store
            .read_stream(&s, 1, Direction::Forward, 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(got.stream_id, s);
        assert_eq!((got.version, got.position, got.id), (1, 1, id));
        assert_eq!(got.event_type, "OrderPlaced");
        assert_eq!(&got.payload[..], b"\x00\xffpayload");
        assert_eq!(got.metadata, metadata);
        assert!(got.recorded_at >= before && got.recorded_at <= SystemTime::now() + Duration::from_secs(1));
        assert_eq!(
            fx.store.read_all(1, 1).await.unwrap()[0],
            got,
            "read_all and read_stream agree"
        );
    }

    pub async fn subscription_hands_over_from_history_to_live_without_gap_or_duplicate(fx: Fixture) {
        let store = fx.store.clone();
        for i in 0..10 {
            store
                .append(&sid(&format!("s{}", i % 3)), ExpectedVersion::Any, evs("h", 10))
                .await
                .unwrap();
        }
        let mut sub = store.subscribe_all(50);
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    store
                        .append(&sid(&format!("s{}", i % 3)), ExpectedVersion::Any, evs("l", 2))
                        .await
                        .unwrap();
                    if i % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 150 {
            let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("subscription stalled")
                .expect("subscription ended")
                .unwrap();
            seen.push(e.position);
        }
        writer.await.unwrap();
        assert_eq!(seen, (51..=200).collect::<Vec<_>>());
        // Nothing more arrives until something is appended.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), sub.next())
                .await
                .is_err()
        );
        store
            .append(&sid("late"), ExpectedVersion::Any, evs("z", 1))
            .await
            .unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.position, 201);
    }

    pub async fn a_slow_subscriber_does_not_block_writers(fx: Fixture) {
        let store = fx.store.clone();
        let mut sub = store.subscribe_all(0);
        // Never polled while 3,000 events are appended: the writers finish.
        for i in 0..30 {
            store
                .append(&sid(&format!("s{i}")), ExpectedVersion::Any, evs("x", 100))
                .await
                .unwrap();
        }
        let mut n = 0u64;
        while n < 3000 {
            let e = sub.next().await.unwrap().unwrap();
            n += 1;
            assert_eq!(e.position, n);
        }
    }

    pub async fn concurrent_writers_with_the_same_expected_version_cannot_both_win(fx: Fixture) {
        let store = fx.store.clone();
        let s = sid("hot");
        store.append(&s, ExpectedVersion::NoStream, evs("x", 1)).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (store, s) = (store.clone(), s.clone());
                tokio::spawn(async move { store.append(&s, ExpectedVersion::Exact(1), evs("y", 1)).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    wins += 1;
                    assert_eq!(r.stream_version, 2);
                }
                Err(StoreError::WrongExpectedVersion { actual: 2, .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(wins, 1);
        assert_eq!(store.stream_version(&s).await.unwrap(), 2);
        let all = store.read_all(0, 100).await.unwrap();
        let unique: HashSet<_> = all.iter().map(|e| e.id).collect();
        assert_eq!(unique.len(), all.len());
    }

    /// Appends `n` events of type `Noise` spread over a few streams.
    async fn noise(store: &dyn EventStore, n: usize) {
        let mut left = n;
        let mut i = 0;
        while left > 0 {
            let k = left.min(1000);
            let events = (0..k).map(|_| NewEvent::new("Noise", "{}")).collect();
            store
                .append(&sid(&format!("noise-{}", i % 3)), ExpectedVersion::Any, events)
                .await
                .unwrap();
            left -= k;
            i += 1;
        }
    }

    async fn next_item(sub: &mut strata_store::FilteredSubscription) -> SubscriptionItem {
        tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("subscription stalled")
            .expect("subscription ended")
            .unwrap()
    }

    pub async fn a_filtered_read_moves_past_unrelated_events(fx: Fixture) {
        let store = &*fx.store;
        let window = FILTER_SCAN_WINDOW as u64;
        noise(store, 2 * FILTER_SCAN_WINDOW + 10).await;
        let signal = store
            .append(
                &sid("signal-1"),
                ExpectedVersion::Any,
                vec![NewEvent::new("Signal", "{}")],
            )
            .await
            .unwrap();
        let head = signal.last_position;
        let filter = EventFilter::all().event_type("Signal");
        let first = store.read_filtered(0, 10, &filter).await.unwrap();
        assert!(first.events.is_empty());
        assert_eq!(first.examined, window, "one window examined, though nothing matched");
        let second = store.read_filtered(first.examined + 1, 10, &filter).await.unwrap();
        assert_eq!((second.events.len(), second.examined), (0, 2 * window));
        let third = store.read_filtered(second.examined + 1, 10, &filter).await.unwrap();
        assert_eq!(third.examined, head, "stops at the head");
        assert_eq!(third.events.len(), 1);
        assert_eq!(
            (third.events[0].position, third.events[0].stream_id.as_str()),
            (head, "signal-1")
        );
        let past = store.read_filtered(head + 1, 10, &filter).await.unwrap();
        assert_eq!(
            (past.events.len(), past.examined),
            (0, head),
            "nothing to examine past the head"
        );
        // The limit cuts a read short at the last match it returns.
        let all = store.read_filtered(5, 3, &EventFilter::all()).await.unwrap();
        assert_eq!(all.events.iter().map(|e| e.position).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(all.examined, 7);
        // A subscription reports how far it looked before anything matched.
        let mut sub = store.subscribe_filtered(0, filter);
        assert_eq!(next_item(&mut sub).await, SubscriptionItem::Checkpoint(window));
        assert_eq!(next_item(&mut sub).await, SubscriptionItem::Checkpoint(2 * window));
        match next_item(&mut sub).await {
            SubscriptionItem::Event(e) => assert_eq!(e.position, head),
            other => panic!("expected the signal, got {other:?}"),
        }
    }

    pub async fn a_filtered_subscription_follows_live_events_with_checkpoints(fx: Fixture) {
        let store = fx.store.clone();
        let append = |stream: &'static str, t: &'static str| {
            let store = store.clone();
            async move {
                store
                    .append(&sid(stream), ExpectedVersion::Any, vec![NewEvent::new(t, "{}")])
                    .await
                    .unwrap()
                    .last_position
            }
        };
        append("a-1", "X").await;
        append("b-1", "Y").await;
        append("a-2", "X").await;
        let mut sub = store.subscribe_filtered(0, EventFilter::all().category("a"));
        let position = |item: SubscriptionItem| match item {
            SubscriptionItem::Event(e) => ("event", e.position),
            SubscriptionItem::Checkpoint(p) => ("checkpoint", p),
        };
        assert_eq!(position(next_item(&mut sub).await), ("event", 1));
        assert_eq!(position(next_item(&mut sub).await), ("event", 3));
        // Live: an unrelated event moves the checkpoint, a matching one comes as itself.
        append("b-2", "Y").await;
        assert_eq!(position(next_item(&mut sub).await), ("checkpoint", 4));
        append("a-3", "X").await;
        assert_eq!(position(next_item(&mut sub).await), ("event", 5));
        append("ab-1", "X").await;
        append("a", "X").await;
        append("a-4", "Z").await;
        let mut seen = Vec::new();
        while seen.last().is_none_or(|(_, p)| *p < 8) {
            seen.push(position(next_item(&mut sub).await));
        }
        assert_eq!(seen.last(), Some(&("event", 8)), "only a-4 matches: {seen:?}");
        assert!(
            seen[..seen.len() - 1].iter().all(|(kind, _)| *kind == "checkpoint"),
            "{seen:?}"
        );
    }

    pub async fn an_invalid_filter_is_refused(fx: Fixture) {
        let store = &*fx.store;
        store
            .append(&sid("a-1"), ExpectedVersion::Any, evs("x", 1))
            .await
            .unwrap();
        let bad = EventFilter::all().category("a-1");
        assert!(matches!(
            store.read_filtered(0, 10, &bad).await,
            Err(StoreError::InvalidFilter { .. })
        ));
        let mut sub = store.subscribe_filtered(0, bad);
        assert!(matches!(sub.next().await, Some(Err(StoreError::InvalidFilter { .. }))));
        assert!(sub.next().await.is_none(), "the subscription ends after its error");
    }

    pub async fn streams_are_listed_by_prefix_in_pages(fx: Fixture) {
        let list = |store: std::sync::Arc<dyn EventStore>, prefix: &'static str, after: Option<&'static str>, limit| async move {
            store
                .list_streams(prefix, after.map(sid).as_ref(), limit)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.stream_id.to_string(), s.version))
                .collect::<Vec<_>>()
        };
        let owned = |v: &[(&str, u64)]| v.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>();
        assert!(list(fx.store.clone(), "", None, 10).await.is_empty());
        for (s, n) in [
            ("order-2", 1),
            ("order-10", 2),
            ("orders", 1),
            ("sku-a", 3),
            ("order-1", 1),
            ("order-2", 2),
        ] {
            fx.store.append(&sid(s), ExpectedVersion::Any, evs(s, n)).await.unwrap();
        }
        let every = owned(&[
            ("order-1", 1),
            ("order-10", 2),
            ("order-2", 3),
            ("orders", 1),
            ("sku-a", 3),
        ]);
        assert_eq!(list(fx.store.clone(), "", None, 100).await, every);
        assert_eq!(list(fx.store.clone(), "order-", None, 100).await, every[..3]);
        assert_eq!(list(fx.store.clone(), "order-", None, 2).await, every[..2]);
        assert_eq!(list(fx.store.clone(), "order-", Some("order-10"), 2).await, every[2..3]);
        assert_eq!(list(fx.store.clone(), "", Some("order-2"), 100).await, every[3..]);
        assert_eq!(list(fx.store.clone(), "", Some("zzz"), 100).await, []);
        assert_eq!(list(fx.store.clone(), "", None, 0).await, []);
        // After a restart the stream index answers (the embedded log's tail is empty).
        let fx = fx.reopen().await;
        assert_eq!(list(fx.store.clone(), "", None, 100).await, every);
        assert_eq!(list(fx.store.clone(), "s", None, 100).await, every[4..]);
    }
}

/// Instantiates every rule of `suite` as a `#[tokio::test]` for one backend.
macro_rules! conformance {
    ($backend:ident, $fixture:expr $(, $needs:ident)?) => {
        mod $backend {
            conformance!(@tests [$($needs)?] $fixture;
                no_stream_creates_the_stream,
                no_stream_conflicts_when_the_stream_has_events,
                exact_zero_is_no_stream,
                stream_exists_conflicts_on_an_absent_stream,
                exact_conflicts_unless_the_version_matches,
                any_never_conflicts,
                a_conflict_writes_nothing,
                idempotent_retry_with_exact_returns_the_original_result,
                idempotent_retry_with_no_stream,
                idempotent_retry_with_any_matches_anywhere,
                idempotent_retry_survives_a_restart_and_any_age,
                partial_id_match_is_a_conflict,
                an_id_reused_at_the_current_version_is_a_duplicate,
                the_same_id_is_allowed_in_another_stream,
                an_id_twice_in_one_append_is_refused,
                an_empty_append_is_refused,
                limits_are_enforced_with_their_own_errors,
                invalid_stream_ids_are_refused,
                multi_stream_append_is_all_or_nothing,
                multi_stream_append_results_follow_the_order_of_appends,
                multi_stream_append_refuses_a_stream_twice,
                read_stream_forward_with_from_and_limit,
                read_stream_backward_with_from_and_limit,
                reading_an_absent_stream_is_empty,
                read_all_is_in_position_order_across_streams,
                recorded_events_keep_what_was_appended,
                subscription_hands_over_from_history_to_live_without_gap_or_duplicate,
                a_slow_subscriber_does_not_block_writers,
                concurrent_writers_with_the_same_expected_version_cannot_both_win,
                a_filtered_read_moves_past_unrelated_events,
                a_filtered_subscription_follows_live_events_with_checkpoints,
                an_invalid_filter_is_refused,
                streams_are_listed_by_prefix_in_pages,
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
