//! Shared by the integration tests: a projection where double application
//! shows (a tally per position), and a generator of valid order and stock
//! histories with a plain in-memory model of what they should project to.

#![allow(dead_code)]

pub mod docs;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_projections::{ModelStore, Projection, ProjectionError, WriteSet};
use strata_store::{Durability, RecordedEvent, SegmentOptions, SegmentStore};

/// A runtime of two worker threads (the CI machine's cores), for tests
/// that are not `#[tokio::test]` (proptest bodies, PostgreSQL fixtures).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A segment store in `dir` that does not fsync each append: the tests that
/// use it check what the projections do, not the log's durability.
pub fn open_buffered(dir: &std::path::Path) -> SegmentStore {
    SegmentStore::open_with(
        dir,
        SegmentOptions {
            durability: Durability::Buffered,
            ..SegmentOptions::default()
        },
    )
    .unwrap()
}

/// Counts how often each position was applied, with the event id it had,
/// and checks it sees positions in order. Double application shows as a
/// count of 2, a skip as a missing position or an order error.
///
/// Fails on events of type `Poison` while `poisoned` is set.
pub struct Tally {
    name: String,
    poisoned: Arc<AtomicBool>,
}

pub const POISON: &str = "Poison";

impl Tally {
    pub fn new(name: &str) -> Tally {
        Tally {
            name: name.to_string(),
            poisoned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A tally that fails on `Poison` events until the flag is cleared.
    pub fn poisoned(name: &str) -> (Tally, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(true));
        (
            Tally {
                name: name.to_string(),
                poisoned: flag.clone(),
            },
            flag,
        )
    }
}

fn position_key(position: u64) -> Vec<u8> {
    let mut k = b"p".to_vec();
    k.extend_from_slice(&position.to_be_bytes());
    k
}

impl Projection for Tally {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, event: &RecordedEvent, model: &mut WriteSet) -> Result<(), ProjectionError> {
        let key = position_key(event.position);
        let (count, _): (u64, [u8; 16]) = model.get_value(&key)?.unwrap_or((0, [0; 16]));
        // Stage part of the change first, so a failure below leaves a
        // half-applied event in the write set that must not be committed.
        model.put_value(key, &(count + 1, *event.id.as_bytes()))?;
        if event.event_type == POISON && self.poisoned.load(Ordering::SeqCst) {
            return Err(ProjectionError::Inconsistent {
                stream: event.stream_id.clone(),
                event_type: event.event_type.clone(),
                reason: "poisoned".into(),
            });
        }
        let last: u64 = model.get_value(b"last")?.unwrap_or(0);
        if event.position != last + 1 {
            return Err(ProjectionError::Inconsistent {
                stream: event.stream_id.clone(),
                event_type: event.event_type.clone(),
                reason: format!("position {} after {last}", event.position),
            });
        }
        model.put_value(b"last".to_vec(), &event.position)?;
        let applied: u64 = model.get_value(b"applied")?.unwrap_or(0);
        model.put_value(b"applied".to_vec(), &(applied + 1))?;
        let sum: u64 = model.get_value(b"sum")?.unwrap_or(0);
        model.put_value(b"sum".to_vec(), &(sum + event.position))
    }
}

/// What a tally model holds, read back.
#[derive(Debug, PartialEq, Eq)]
pub struct TallyState {
    /// (position, times applied, event id bytes), in position order.
    pub positions: Vec<(u64, u64, [u8; 16])>,
    pub last: u64,
    pub applied: u64,
    pub sum: u64,
}

pub fn read_tally(model: &ModelStore) -> TallyState {
    let positions = model
        .scan_prefix_values::<(u64, [u8; 16])>(b"p")
        .unwrap()
        .into_iter()
        .map(|(k, (n, id))| (u64::from_be_bytes(k[1..].try_into().unwrap()), n, id))
        .collect();
    TallyState {
        positions,
        last: model.get_value(b"last").unwrap().unwrap_or(0),
        applied: model.get_value(b"applied").unwrap().unwrap_or(0),
        sum: model.get_value(b"sum").unwrap().unwrap_or(0),
    }
}

/// Asserts that every position `1..=upto` was applied exactly once, in
/// order, and nothing beyond it.
#[track_caller]
pub fn assert_exactly_once(state: &TallyState, upto: u64) {
    let twice: Vec<_> = state.positions.iter().filter(|(_, n, _)| *n != 1).collect();
    assert!(twice.is_empty(), "positions applied other than once: {twice:?}");
    let positions: Vec<u64> = state.positions.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(positions, (1..=upto).collect::<Vec<_>>(), "applied positions");
    assert_eq!(state.last, upto);
    assert_eq!(state.applied, upto);
    assert_eq!(state.sum, upto * (upto + 1) / 2);
}
