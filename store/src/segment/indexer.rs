//! The background indexer: moves durable records from the in-memory tail
//! into the sled index in large batches, with the checkpoint in the same
//! atomic batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::debug_span;

use super::Shared;
use super::index::Checkpoint;

/// Index at least this often while records wait, even in a small batch.
const INDEX_INTERVAL: Duration = Duration::from_millis(200);

/// The indexer loop: runs until `Shared::stopping` is set and everything
/// durable is indexed.
pub(super) fn run_indexer(shared: Arc<Shared>, batch_events: usize) {
    let mut last_pass = Instant::now();
    loop {
        let wakes = shared.indexer_wakes();
        let stopping = shared.stopping.load(Ordering::Acquire);
        if shared.failure().is_some() {
            return;
        }
        let waiting = shared.tail().events();
        let due = stopping
            || shared.lagging.load(Ordering::Acquire)
            || waiting >= batch_events
            || (waiting > 0 && last_pass.elapsed() >= INDEX_INTERVAL);
        if due {
            let upto = shared.durable_position.load(Ordering::Acquire).min(shared.visible());
            let records = shared.tail().indexable(upto, batch_events);
            if let Some(last) = records.last() {
                let span = debug_span!("index_batch", records = records.len());
                let _enter = span.enter();
                let checkpoint = Checkpoint {
                    next_position: last.last_position() + 1,
                    next_address: last.address + last.len as u64,
                };
                if let Err(e) = shared.index.apply(&records, checkpoint) {
                    shared.fail(&e);
                    return;
                }
                shared.tail().pop_indexed(records.len());
                shared.indexed.store(checkpoint.next_position - 1, Ordering::Release);
                shared.notify();
                last_pass = Instant::now();
                continue;
            }
            if stopping {
                return;
            }
        }
        shared.indexer_sleep(wakes);
    }
}
