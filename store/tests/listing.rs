//! `list_streams` over many streams, on every backend: paging through them
//! with `after` set to the last stream of the page before lists every
//! present stream exactly once, in id order, whatever the page size and
//! whatever lies between them (deleted, tombstoned, truncated streams,
//! `$$` metadata streams, other prefixes), and each page is the first
//! streams after `after`, never some other subset.
//!
//! The PostgreSQL tests are ignored unless built for a server:
//! `scripts/test-postgres.sh cargo test -p strata-store --features postgres --test listing`.

mod common;

use common::{Fixture, evs, sid};
use strata_store::{DeleteMode, EventStore, ExpectedVersion, StreamId};

/// Writes `n` streams `s-0000` .. in a scrambled order (so neither the
/// rows' physical order nor the positions follow the ids), each with 1 to
/// 3 events, then deletes, tombstones and truncates some, and writes a
/// few of another prefix; returns the streams that read as present, in id
/// order, with their versions.
async fn populate(store: &dyn EventStore, n: usize) -> Vec<(String, u64)> {
    let mut present = Vec::new();
    // 7919 is prime and does not divide any `n` used here: a permutation.
    let order: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
    for &i in &order {
        let id = format!("s-{i:04}");
        let events = 1 + i % 3;
        store
            .append(&sid(&id), ExpectedVersion::NoStream, evs(&id, events))
            .await
            .unwrap();
    }
    for i in 0..n {
        let id = format!("s-{i:04}");
        let version = (1 + i % 3) as u64;
        let at = ExpectedVersion::Exact(version);
        if i % 7 == 3 {
            store.delete_stream(&sid(&id), at, DeleteMode::Hard).await.unwrap();
        } else if i % 5 == 1 {
            store.delete_stream(&sid(&id), at, DeleteMode::Soft).await.unwrap();
        } else if i % 11 == 2 {
            // Every event removed; the stream stays, with its version.
            store.truncate_stream(&sid(&id), at, version + 1).await.unwrap();
            present.push((id, version));
        } else {
            present.push((id, version));
        }
    }
    for id in ["r-1", "t-1", "s.1"] {
        store
            .append(&sid(id), ExpectedVersion::NoStream, evs(id, 1))
            .await
            .unwrap();
    }
    present
}

/// Every page of `limit` streams of `prefix`, in turn.
async fn pages(store: &dyn EventStore, prefix: &str, limit: usize) -> Vec<Vec<(String, u64)>> {
    let mut pages = Vec::new();
    let mut after: Option<StreamId> = None;
    loop {
        let page: Vec<(String, u64)> = store
            .list_streams(prefix, after.as_ref(), limit)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.stream_id.to_string(), s.version))
            .collect();
        let Some((last, _)) = page.last() else { break };
        after = Some(sid(last));
        pages.push(page);
        assert!(pages.len() <= 10_000, "paging does not end");
    }
    pages
}

async fn paging_lists_every_stream_once_in_order(fx: Fixture, n: usize) {
    let store = &*fx.store;
    let expected = populate(store, n).await;
    for limit in [1, 3, 64, n + 10] {
        let got = pages(store, "s-", limit).await;
        for (i, page) in got.iter().enumerate() {
            // Each page is exactly the next `limit` streams: full until the last.
            let start = i * limit;
            let end = (start + limit).min(expected.len());
            assert_eq!(page[..], expected[start..end], "page {i} of {limit}");
        }
        assert_eq!(got.concat(), expected, "pages of {limit}");
    }
    // The empty prefix: the other prefixes around, the `$$` streams left out.
    let everything = pages(store, "", 17).await.concat();
    let mut all = vec![("r-1".to_string(), 1)];
    all.extend(expected.iter().cloned());
    all.extend([("s.1".to_string(), 1), ("t-1".to_string(), 1)]);
    assert_eq!(everything, all);
}

#[tokio::test]
async fn memory() {
    paging_lists_every_stream_once_in_order(Fixture::memory(), 400).await;
}

#[tokio::test]
async fn segment() {
    paging_lists_every_stream_once_in_order(Fixture::segment(), 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn postgres() {
    paging_lists_every_stream_once_in_order(Fixture::postgres().await, 400).await;
}

/// With a scavenge after every write, the truncated streams live only in
/// `erased_events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn postgres_scavenged() {
    paging_lists_every_stream_once_in_order(Fixture::postgres_scavenged().await, 150).await;
}
