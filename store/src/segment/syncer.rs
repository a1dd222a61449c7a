//! The syncer of a `SegmentStore`: one `fdatasync` for every group the
//! writer handed over, then the visible head moves and the callers hear,
//! in commit order. See `writer.rs` for the pipeline as a whole.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use super::Shared;
use super::format::address;
use super::log::Segment;
use super::writer::{Outcome, WAKE, Written, unavailable};
use crate::error::StoreError;

pub(super) fn fail_outcomes(outcomes: &mut [Outcome], reason: &str) {
    for (_, result) in outcomes {
        if result.is_ok() {
            *result = Err(unavailable(reason));
        }
    }
}

/// The syncer loop: one `fdatasync` for every group waiting, then the answers.
pub(super) fn run_syncer(shared: Arc<Shared>, rx: std_mpsc::Receiver<Written>, fsync: bool) {
    // In the buffered mode: the newest segment written and not yet synced.
    let mut unsynced: Option<(Arc<Segment>, u64, u64)> = None;
    let mut last_sync = Instant::now();
    loop {
        let first = match rx.recv_timeout(WAKE) {
            Ok(g) => g,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if let Some((segment, end, last)) = unsynced.take() {
                    background_sync(&shared, &segment, end, last);
                    last_sync = Instant::now();
                }
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut groups = vec![first];
        groups.extend(rx.try_iter());
        let n = groups.len() as u64;
        if let Some(written) = commit(&shared, groups, fsync) {
            unsynced = Some(written);
            if last_sync.elapsed() >= WAKE
                && let Some((segment, end, last)) = unsynced.take()
            {
                background_sync(&shared, &segment, end, last);
                last_sync = Instant::now();
            }
        }
        shared.handled.fetch_add(n, Ordering::AcqRel);
        shared.notify();
    }
    if let Some((segment, end, last)) = unsynced.take() {
        background_sync(&shared, &segment, end, last);
    }
}

/// Makes `groups` durable with one `fdatasync` per segment they wrote to
/// (none in the buffered mode), moves the visible head, then answers
/// their callers in order; after a failure, answers every append that
/// succeeded with `Unavailable` instead. In the buffered mode, returns
/// what is left to sync: (segment, end address, last position).
pub(super) fn commit(shared: &Shared, mut groups: Vec<Written>, fsync: bool) -> Option<(Arc<Segment>, u64, u64)> {
    let mut unsynced = None;
    let last = groups.iter().filter_map(|g| g.last_position).max();
    if let Some(last) = last
        && shared.failure().is_none()
    {
        let end = groups
            .iter()
            .filter(|g| g.segment.is_some())
            .map(|g| g.end)
            .max()
            .unwrap_or(0);
        let started = Instant::now();
        let mut segments: Vec<&Arc<Segment>> = groups.iter().filter_map(|g| g.segment.as_ref()).collect();
        segments.dedup_by_key(|s| s.seq);
        let synced = if fsync {
            segments.iter().try_for_each(|s| {
                s.file
                    .sync_data()
                    .map_err(|e| StoreError::io(format!("syncing {}", shared.log.describe(address(s.seq, 0))), e))
            })
        } else {
            Ok(())
        };
        match synced {
            Ok(()) => {
                let events = groups.iter().map(|g| g.events).sum();
                let appends = groups.iter().map(|g| g.outcomes.len() as u64).sum();
                shared.stats.record_commit(appends, events, started.elapsed());
                if fsync {
                    shared.durable.fetch_max(end, Ordering::AcqRel);
                    shared.durable_position.fetch_max(last, Ordering::AcqRel);
                } else {
                    unsynced = segments.last().map(|s| ((*s).clone(), end, last));
                }
                shared.publish(last);
            }
            Err(e) => {
                shared.fail(&e);
            }
        }
    }
    if let Some(reason) = shared.failure() {
        groups.iter_mut().for_each(|g| fail_outcomes(&mut g.outcomes, &reason));
    }
    for group in groups {
        for (reply, result) in group.outcomes {
            let _ = reply.send(result);
        }
    }
    unsynced
}

/// The buffered mode's periodic `fdatasync`, which lets the index follow.
fn background_sync(shared: &Shared, segment: &Segment, end: u64, last: u64) {
    match segment.file.sync_data() {
        Ok(()) => {
            shared.durable.fetch_max(end, Ordering::AcqRel);
            shared.durable_position.fetch_max(last, Ordering::AcqRel);
            shared.notify();
            shared.nudge_indexer();
        }
        Err(e) => {
            shared.fail(&StoreError::io("syncing the log in the background", e));
        }
    }
}
