//! Group commit counters of the PostgreSQL backend: the snapshot callers read, [`CommitStats`], and the
//! atomic counters a writer adds to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of the group commit since the store was opened: where an
/// append's time goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CommitStats {
    /// Commits that made appends durable (one per transaction of one or
    /// more groups).
    pub commits: u64,
    /// Groups the writer applied (each one batch or transaction).
    pub groups: u64,
    /// Appends answered by those commits (including refused ones).
    pub appends: u64,
    /// Events written.
    pub events: u64,
    /// Time the writer spent judging appends and applying batches.
    pub apply_time: Duration,
    /// Time spent making them durable (PostgreSQL's insert and `COMMIT`).
    pub sync_time: Duration,
}

impl CommitStats {
    /// Average events written per commit.
    pub fn events_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.events as f64 / self.commits as f64
        }
    }

    /// Average time of one commit, zero before the first.
    pub fn mean_sync_time(&self) -> Duration {
        if self.commits == 0 {
            Duration::ZERO
        } else {
            self.sync_time / self.commits as u32
        }
    }
}

/// What a writer adds to as it goes; [`CommitCounters::snapshot`] reads it.
#[derive(Default)]
pub(crate) struct CommitCounters {
    commits: AtomicU64,
    groups: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    apply_nanos: AtomicU64,
    sync_nanos: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl CommitCounters {
    /// One group judged and applied in `took`.
    pub(crate) fn applied(&self, took: Duration) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.apply_nanos.fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// One commit of `events` events, made durable in `took`.
    pub(crate) fn committed(&self, events: u64, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.sync_nanos.fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// `appends` appends answered.
    pub(crate) fn answered(&self, appends: u64) {
        self.appends.fetch_add(appends, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            apply_time: Duration::from_nanos(self.apply_nanos.load(Ordering::Relaxed)),
            sync_time: Duration::from_nanos(self.sync_nanos.load(Ordering::Relaxed)),
        }
    }
}
