//! Rules of `conformance_retention.rs`: what readers see of removed
//! events: live and filtered subscriptions, and stream listings.

use std::time::Duration;

use futures::StreamExt;
use strata_store::{DeleteMode, EventFilter, EventStore, ExpectedVersion, SubscriptionItem};

use crate::common::{Fixture, evs, sid};

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
