//! The single writer of a `SledStore`: pipelined group commit.
//!
//! Appends queue on a channel. Two threads work on them:
//!
//! - the **writer** takes every append that is waiting (up to a bound),
//!   judges each against the stream heads and the id index (including what
//!   earlier appends wrote), stages the accepted ones into one sled batch and
//!   applies it atomically; then hands the group to the syncer and goes on
//!   with the next group;
//! - the **syncer** takes every group the writer has handed over, makes them
//!   as durable as the configured [`Durability`] asks with one flush (and
//!   fsync) for all of them, publishes the new visible head, and only then
//!   answers their appends, in commit order.
//!
//! So the disk is flushing one set of groups while the writer prepares the
//! next, and every flush covers as many appends as were waiting. Readers see
//! nothing above the published head, so nothing is visible before it is
//! durable. If a write or a flush fails, the outcome of everything in flight
//! is unknown: the store refuses further appends until it is reopened.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::debug_span;

use super::Shared;
use super::keys::{id_key, id_value, stream_key, stream_value};
use crate::codec::{StoredEvent, seal, to_bincode};
use crate::decide::{IdEntry, Plan, StreamView, all_done, plan_multi};
use crate::durability::{Durability, SledFiles};
use crate::error::StoreError;
use crate::types::{AppendResult, EventId, StreamAppend, StreamId, now_micros};

/// Stop adding appends to a group once it holds this many events.
const MAX_GROUP_EVENTS: usize = 16_384;

/// The writer remembers this many stream heads; past it, it forgets them all
/// and reads them from sled again as needed.
const MAX_CACHED_HEADS: usize = 262_144;

type Reply = oneshot::Sender<Result<Vec<AppendResult>, StoreError>>;

/// One append waiting for the writer.
pub(super) struct Request {
    pub(super) appends: Vec<StreamAppend>,
    pub(super) reply: Reply,
}

/// A group the writer applied, waiting for the syncer.
pub(super) struct Applied {
    /// The newest position it wrote, if it wrote anything.
    last_position: Option<u64>,
    events: u64,
    outcomes: Vec<(Reply, Result<Vec<AppendResult>, StoreError>)>,
}

/// The writer loop; returns when every sender is gone and the queue is empty.
pub(super) fn run_writer(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Request>,
    synced: std_mpsc::Sender<Applied>,
    max_group: usize,
) {
    let mut next_position = shared.visible() + 1;
    // Exact: the writer is the only writer.
    let mut heads: HashMap<StreamId, u64> = HashMap::new();
    while let Some(first) = rx.blocking_recv() {
        let mut events = first.appends.iter().map(|a| a.events.len()).sum::<usize>();
        let mut group = vec![first];
        while group.len() < max_group && events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(req) => {
                    events += req.appends.iter().map(|a| a.events.len()).sum::<usize>();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        if let Some(reason) = shared.failure() {
            let outcomes = group
                .into_iter()
                .map(|req| (req.reply, Err(StoreError::Unavailable { reason: reason.clone() })))
                .collect();
            let _ = synced.send(Applied {
                last_position: None,
                events: 0,
                outcomes,
            });
            continue;
        }
        let started = Instant::now();
        let span = debug_span!("apply_group", appends = group.len(), events = tracing::field::Empty);
        let _enter = span.enter();
        if heads.len() > MAX_CACHED_HEADS {
            heads.clear();
        }
        let mut commit = Commit::new(&shared.tree, next_position, &mut heads);
        let mut outcomes: Vec<_> = group
            .into_iter()
            .map(|req| {
                let result = commit.add(req.appends);
                (req.reply, result)
            })
            .collect();
        let written = commit.next_position - next_position;
        span.record("events", written);
        let mut last_position = None;
        if written > 0 {
            match commit.apply() {
                Ok(()) => {
                    next_position += written;
                    last_position = Some(next_position - 1);
                }
                Err(e) => {
                    let reason = shared.fail(&e);
                    fail_outcomes(&mut outcomes, &reason);
                    heads.clear();
                }
            }
        }
        shared.stats.applied(started.elapsed());
        let _ = synced.send(Applied {
            last_position,
            events: written,
            outcomes,
        });
    }
}

fn fail_outcomes(outcomes: &mut [(Reply, Result<Vec<AppendResult>, StoreError>)], reason: &str) {
    for (_, result) in outcomes {
        if result.is_ok() {
            *result = Err(StoreError::Unavailable {
                reason: reason.to_string(),
            });
        }
    }
}

/// The syncer loop: one flush for every group waiting, then the answers.
pub(super) fn run_syncer(
    shared: Arc<Shared>,
    applied: std_mpsc::Receiver<Applied>,
    mut syncer: Option<SledFiles>,
    durability: Durability,
) {
    while let Ok(first) = applied.recv() {
        let mut groups = vec![first];
        groups.extend(applied.try_iter());
        let last = groups.iter().filter_map(|g| g.last_position).max();
        if let Some(last) = last {
            let span = debug_span!("sync", groups = groups.len(), last_position = last);
            let _enter = span.enter();
            let started = Instant::now();
            match make_durable(&shared.tree, durability, syncer.as_mut()) {
                Ok(()) if shared.failure().is_none() => {
                    let events = groups.iter().map(|g| g.events).sum();
                    let appends = groups.iter().map(|g| g.outcomes.len() as u64).sum();
                    shared.stats.committed(events, started.elapsed());
                    shared.stats.answered(appends);
                    shared.publish(last);
                }
                Ok(()) => {
                    // A later group failed to apply: nothing after the
                    // failure is trusted, these included.
                    let reason = shared.failure().unwrap_or_default();
                    groups.iter_mut().for_each(|g| fail_outcomes(&mut g.outcomes, &reason));
                }
                Err(e) => {
                    let reason = shared.fail(&e);
                    groups.iter_mut().for_each(|g| fail_outcomes(&mut g.outcomes, &reason));
                }
            }
        }
        for group in groups {
            for (reply, result) in group.outcomes {
                let _ = reply.send(result);
            }
        }
    }
}

/// Makes everything applied so far as durable as `durability` asks.
fn make_durable(tree: &sled::Tree, durability: Durability, syncer: Option<&mut SledFiles>) -> Result<(), StoreError> {
    match durability {
        Durability::Buffered => {}
        Durability::Flush => {
            tree.flush()?;
        }
        Durability::Fsync => {
            tree.flush()?;
            syncer
                .expect("a syncer exists in fsync mode")
                .sync()
                .map_err(|e| StoreError::io("fsyncing sled's files", e))?;
        }
    }
    Ok(())
}

/// One group's writes, staged into a sled batch, with an overlay of what
/// they change so later appends of the group are judged against them.
struct Commit<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    next_position: u64,
    recorded_at: u64,
    /// Stream heads: the writer's cache, updated as appends are staged.
    heads: &'a mut HashMap<StreamId, u64>,
    /// Ids staged by this group.
    ids: HashMap<(StreamId, EventId), IdEntry>,
}

impl StreamView for Commit<'_> {
    fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        if let Some(v) = self.heads.get(stream) {
            return Ok(*v);
        }
        // The writer is the only writer and each group is applied before the
        // next starts, so the tree's newest key is the stream's version.
        let v = super::newest_version(self.tree, stream, u64::MAX)?;
        self.heads.insert(stream.clone(), v);
        Ok(v)
    }

    fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
        if let Some(e) = self.ids.get(&(stream.clone(), *id)) {
            return Ok(Some(*e));
        }
        super::find_id(self.tree, stream, id)
    }
}

impl<'a> Commit<'a> {
    fn new(tree: &'a sled::Tree, next_position: u64, heads: &'a mut HashMap<StreamId, u64>) -> Self {
        Commit {
            tree,
            batch: sled::Batch::default(),
            next_position,
            recorded_at: now_micros(),
            heads,
            ids: HashMap::new(),
        }
    }

    /// Judges one append and, when accepted, stages its events. A refused
    /// append stages nothing.
    fn add(&mut self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let plans = plan_multi(self, &appends)?;
        if let Some(results) = all_done(&plans) {
            return Ok(results);
        }
        // Encode everything first: only when all of it succeeded does it
        // enter the batch and the overlay.
        let mut staged: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut overlay_ids = Vec::new();
        let mut new_heads = Vec::with_capacity(appends.len());
        let mut results = Vec::with_capacity(appends.len());
        let mut position = self.next_position;
        for (append, plan) in appends.into_iter().zip(plans) {
            let Plan::Write { current } = plan else {
                unreachable!("plan_multi refuses mixed plans")
            };
            let first_position = position;
            let mut version = current;
            for event in append.events {
                version += 1;
                let record = StoredEvent {
                    stream: append.stream.clone(),
                    version,
                    id: event.id,
                    event_type: event.event_type,
                    recorded_at: self.recorded_at,
                    metadata: event.metadata,
                    payload: event.payload,
                };
                let ekey = super::keys::event_key(position);
                staged.push((ekey.to_vec(), seal(&ekey, &to_bincode(&record)?)));
                let skey = stream_key(&append.stream, version);
                let svalue = stream_value(&skey, position);
                staged.push((skey, svalue));
                let entry = IdEntry { version, position };
                let ikey = id_key(&append.stream, &event.id);
                let ivalue = id_value(&ikey, entry);
                staged.push((ikey, ivalue));
                overlay_ids.push(((append.stream.clone(), event.id), entry));
                position += 1;
            }
            results.push(AppendResult {
                stream_version: version,
                first_position,
                last_position: position - 1,
            });
            new_heads.push((append.stream, version));
        }
        for (k, v) in staged {
            self.batch.insert(k, v);
        }
        self.ids.extend(overlay_ids);
        self.heads.extend(new_heads);
        self.next_position = position;
        Ok(results)
    }

    /// Applies the staged batch atomically (to sled's memory; durability is
    /// the syncer's job).
    fn apply(self) -> Result<(), StoreError> {
        self.tree.apply_batch(self.batch)?;
        Ok(())
    }
}
