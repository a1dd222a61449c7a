//! `SegmentStore` reads racing the indexer: a reader takes the visible
//! head, then the head moves and the indexer moves the records it
//! uncovered from the in-memory tail into sled. Reads must answer for the
//! head they took, whatever the indexer did meanwhile. (Found by the HTTP
//! load test: `read_stream` asked for the stream's newest version in sled,
//! which was already past the reader's head, and reported the index as
//! corrupt.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_store::{
    Direction, Durability, EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamId,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_racing_the_indexer_see_a_gapless_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SegmentStore::open_with(
            dir.path(),
            SegmentOptions {
                durability: Durability::Buffered,
                // Index every record as soon as it is visible.
                index_batch_events: 1,
                ..SegmentOptions::default()
            },
        )
        .unwrap(),
    );
    let hot = StreamId::new("hot-1").unwrap();
    const APPENDS: u64 = 3_000;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..3 {
        let (store, hot, done) = (store.clone(), hot.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) {
                let version = store.stream_version(&hot).await.unwrap();
                let events = if r == 0 {
                    store.read_stream(&hot, 1, Direction::Forward, usize::MAX).await
                } else {
                    store.read_stream(&hot, u64::MAX, Direction::Backward, 5).await
                }
                .unwrap_or_else(|e| panic!("read {reads} (reader {r}): {e}"));
                let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
                if r == 0 {
                    let n = versions.len() as u64;
                    assert_eq!(versions, (1..=n).collect::<Vec<_>>(), "a gapless prefix");
                    assert!(n >= version, "read after stream_version {version}: {n}");
                } else if let Some(&newest) = versions.first() {
                    assert!(newest >= version, "newest {newest} after stream_version {version}");
                    assert!(versions.windows(2).all(|w| w[0] == w[1] + 1), "{versions:?}");
                }
                reads += 1;
            }
            reads
        }));
    }
    for _ in 0..APPENDS {
        store
            .append(&hot, ExpectedVersion::Any, vec![NewEvent::new("Tick", "{}")])
            .await
            .unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.await.unwrap() > 0, "every reader read");
    }
    assert_eq!(store.stream_version(&hot).await.unwrap(), APPENDS);
    assert_eq!(
        store
            .read_stream(&hot, 1, Direction::Forward, usize::MAX)
            .await
            .unwrap()
            .len() as u64,
        APPENDS
    );
}
