//! The options and counters of a `SegmentStore`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::durability::Durability;
use crate::limits::Limits;

/// How a [`SegmentStore`](super::SegmentStore) is opened.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// What an acknowledged append survives (default [`Durability::Fsync`]).
    pub durability: Durability,
    /// Limits on appends.
    pub limits: Limits,
    /// Size of a segment file (default 256 MiB): the writer rolls to the
    /// next once this is full. An append larger than this gets a segment
    /// of its own size.
    pub segment_bytes: u64,
    /// How much of a segment file is zero-filled at a time, ahead of the
    /// writer (default 16 MiB, at least 512 bytes): a fresh store takes
    /// this much disk, not a whole segment, and records still land in
    /// blocks already written.
    pub segment_growth_bytes: u64,
    /// Prepare the next segment file in the background once the current
    /// one is half full, so a roll does not stall appends while a segment
    /// is zero-filled (default true).
    pub prepare_next_segment: bool,
    /// The most appends one group commit takes (default 1,024).
    pub max_group_appends: usize,
    /// How many appends may wait for the writer before `append` waits for room (default 4,096).
    pub queue_capacity: usize,
    /// The most events written but not yet in the sled index; past it,
    /// appends wait for the indexer (default 262,144). This bounds the
    /// memory of the in-memory tail and the work of an open after a crash.
    pub max_index_lag_events: usize,
    /// Events the indexer writes to sled in one batch at most (default 65,536).
    pub index_batch_events: usize,
    /// Where the sled index lives (default: `index/` in the data directory).
    /// Always a directory of the real file system, whatever the [`Storage`](super::Storage).
    pub index_dir: Option<PathBuf>,
    /// Where the tables beside the log live (default: `tables/` in the data
    /// directory). Always a directory of the real file system.
    pub tables_dir: Option<PathBuf>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            durability: Durability::default(),
            limits: Limits::default(),
            segment_bytes: 256 * 1024 * 1024,
            segment_growth_bytes: 16 * 1024 * 1024,
            prepare_next_segment: true,
            max_group_appends: 1024,
            queue_capacity: 4096,
            max_index_lag_events: 262_144,
            index_batch_events: 65_536,
            index_dir: None,
            tables_dir: None,
        }
    }
}

/// Progress of indexing the log while a store opens (after a crash, or
/// when the index directory was deleted).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexProgress {
    /// Segments scanned so far.
    pub segments_done: u64,
    /// Segments to scan.
    pub segments: u64,
    /// Events indexed so far.
    pub events: u64,
}

/// Counters of the group commit and the indexer since the store was opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SegmentStats {
    /// `fdatasync`s that made appends durable (one per commit of one or more groups).
    pub commits: u64,
    /// Appends answered by those commits (including refused ones).
    pub appends: u64,
    /// Events written.
    pub events: u64,
    /// Appends written, synced and answered on their caller's thread
    /// because the writer was idle (no thread hop; see `writer.rs`).
    pub inline_appends: u64,
    /// Time the writer spent judging, encoding and writing groups.
    pub write_time: Duration,
    /// Time the syncer spent in `fdatasync`.
    pub sync_time: Duration,
    /// The newest visible position.
    pub head: u64,
    /// The newest position in the sled index.
    pub indexed: u64,
}

impl SegmentStats {
    /// Average events written per commit (per `fdatasync` in the default mode).
    pub fn events_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.events as f64 / self.commits as f64
        }
    }

    /// Average time of one `fdatasync`, zero before the first.
    pub fn mean_sync_time(&self) -> Duration {
        if self.commits == 0 {
            Duration::ZERO
        } else {
            self.sync_time / self.commits as u32
        }
    }

    /// Events visible but not yet in the sled index.
    pub fn index_lag(&self) -> u64 {
        self.head.saturating_sub(self.indexed)
    }
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) commits: AtomicU64,
    pub(super) appends: AtomicU64,
    pub(super) events: AtomicU64,
    pub(super) inline_appends: AtomicU64,
    pub(super) write_nanos: AtomicU64,
    pub(super) sync_nanos: AtomicU64,
}

impl Stats {
    pub(super) fn record_write(&self, took: Duration) {
        self.write_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(super) fn record_commit(&self, appends: u64, events: u64, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.appends.fetch_add(appends, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.sync_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// What a [`SegmentStore`](super::SegmentStore) takes on disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DiskUsage {
    /// Bytes of records written to the segments.
    pub log_bytes: u64,
    /// Bytes the segment files take, preallocated space included.
    pub log_allocated: u64,
    /// Bytes of the sled index (as sled counts them).
    pub index_bytes: u64,
}
