//! Concurrency: with 16 writers appending at once, the projection applies
//! every position exactly once, in order, and each position holds the event
//! the store acknowledged there.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strata_projections::{ModelStore, ProjectionRunner, RunnerOptions};
use strata_store::{EventStore, ExpectedVersion, MemoryStore, NewEvent, SegmentStore, StreamAppend, StreamId};
use support::{Tally, assert_exactly_once, read_tally, runtime};

const WRITERS: usize = 16;
const APPENDS_PER_WRITER: usize = 40;

async fn sixteen_writers(store: Arc<dyn EventStore>, model: ModelStore, batch_size: usize) {
    // Started first, so it follows the log live while the writers append.
    let runner = ProjectionRunner::start(
        store.clone(),
        model.clone(),
        Arc::new(Tally::new(model.name())),
        RunnerOptions {
            batch_size,
            ..RunnerOptions::default()
        },
    )
    .await
    .unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..APPENDS_PER_WRITER {
                // Own streams and one shared by all (conflict-free with Any),
                // single and multi-stream appends of 1..=3 events.
                let own = StreamId::new(format!("w{w}-{}", i % 3)).unwrap();
                let shared = StreamId::new("shared").unwrap();
                let events = |n: usize| (0..n).map(|_| NewEvent::new("Tick", vec![w as u8])).collect::<Vec<_>>();
                let parts = if i % 4 == 0 {
                    vec![
                        StreamAppend::new(own, ExpectedVersion::Any, events(1 + i % 3)),
                        StreamAppend::new(shared, ExpectedVersion::Any, events(1)),
                    ]
                } else {
                    vec![StreamAppend::new(own, ExpectedVersion::Any, events(1 + i % 3))]
                };
                let ids: Vec<[u8; 16]> = parts
                    .iter()
                    .flat_map(|p| p.events.iter().map(|e| *e.id.as_bytes()))
                    .collect();
                let results = store.append_multi(parts).await.unwrap();
                let first = results[0].first_position;
                let last = results.last().unwrap().last_position;
                assert_eq!(last - first + 1, ids.len() as u64);
                for (offset, id) in ids.into_iter().enumerate() {
                    acknowledged.push((first + offset as u64, id));
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = BTreeMap::new();
    for w in writers {
        for (position, id) in w.await.unwrap() {
            assert!(
                acknowledged.insert(position, id).is_none(),
                "position {position} acknowledged twice"
            );
        }
    }
    let head = store.head_position().await.unwrap();
    assert_eq!(
        acknowledged.len() as u64,
        head,
        "every acknowledged event has its own position"
    );
    runner.wait_for(head, Duration::from_secs(60)).await.unwrap();
    runner.stop().await.unwrap();

    let state = read_tally(&model);
    // The tally itself refuses a position that is not the last one plus one.
    assert_exactly_once(&state, head);
    let projected: BTreeMap<u64, [u8; 16]> = state.positions.iter().map(|(p, _, id)| (*p, *id)).collect();
    assert_eq!(projected, acknowledged, "each position holds the acknowledged event");
}

#[test]
fn sixteen_durable_writers_on_sled() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path()).unwrap(); // Durability::Fsync: group commits
        let model = ModelStore::open_sled(&store, "tally").unwrap();
        sixteen_writers(Arc::new(store), model, 32).await;
    });
}

#[test]
fn sixteen_writers_on_memory() {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let model = ModelStore::memory("tally").unwrap();
        sixteen_writers(Arc::new(store), model, 5).await;
    });
}
