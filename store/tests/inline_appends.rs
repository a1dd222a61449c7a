//! An append made while the segment log's writer is idle is written,
//! synced and answered on the caller's thread (no hop to the writer
//! thread and back); on a current-thread runtime, in the buffered mode and
//! under concurrent appends the queue to the writer thread serves instead.
//! Whichever path an append takes, the log's rules hold: the conformance,
//! model, lost-update and power-loss tests run on multi-thread runtimes and
//! so take both.

use std::sync::Arc;

use strata_store::{Durability, EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamId};

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

async fn sequential(store: &SegmentStore, n: u64) {
    for v in 0..n {
        let expected = if v == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(v)
        };
        let r = store
            .append(&sid("s"), expected, vec![NewEvent::new("E", format!("{v}"))])
            .await
            .unwrap();
        assert_eq!(r.stream_version, v + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_writer_lets_the_caller_write_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    sequential(&store, 20).await;
    let stats = store.stats();
    assert_eq!(stats.inline_appends, 20, "{stats:?}");
    assert_eq!(stats.appends, 20, "every one synced: {stats:?}");
    drop(store);
    let store = SegmentStore::open(dir.path()).unwrap();
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 20);
}

#[test]
fn a_current_thread_runtime_queues_to_the_writer_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path()).unwrap();
        sequential(&store, 5).await;
        assert_eq!(store.stats().inline_appends, 0);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffered_mode_queues_to_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions {
        durability: Durability::Buffered,
        ..SegmentOptions::default()
    };
    let store = SegmentStore::open_with(dir.path(), options).unwrap();
    sequential(&store, 5).await;
    assert_eq!(store.stats().inline_appends, 0);
}

/// Many writers at once: some appends go inline, the rest queue, and every
/// stream's versions are gapless with no event twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_mix_both_paths_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SegmentStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                // Half the tasks share one stream and race for its versions.
                let stream = if t % 2 == 0 {
                    sid("shared")
                } else {
                    sid(&format!("own-{t}"))
                };
                let e = NewEvent::new("E", format!("{t}-{i}"));
                loop {
                    let current = store.stream_version(&stream).await.unwrap();
                    let expected = if current == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(current)
                    };
                    match store.append(&stream, expected, vec![e.clone()]).await {
                        Ok(_) => break,
                        Err(err) if err.is_conflict() => continue,
                        Err(err) => panic!("{err}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.read_all(0, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 16 * 25);
    let mut payloads: Vec<_> = all.iter().map(|e| e.payload.to_vec()).collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 16 * 25, "no event twice");
    let shared: Vec<u64> = all
        .iter()
        .filter(|e| e.stream_id.as_str() == "shared")
        .map(|e| e.version)
        .collect();
    assert_eq!(shared, (1..=8 * 25).collect::<Vec<_>>());
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    // Refused appends (conflicts) are answered by commits too.
    assert!(store.stats().appends >= 16 * 25);
}
