//! The single writer of a `SledStore`: group commit.
//!
//! Appends queue on a channel. The writer takes every append that is waiting
//! (up to a bound), judges each against the stream heads and the id index
//! (including what earlier appends of the same group wrote), stages the
//! accepted ones into one sled batch, applies it atomically, makes it as
//! durable as the configured [`Durability`] asks with one flush for the whole
//! group, publishes the new head, and only then answers every append.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug_span, error};

use super::keys::{id_key, id_value, stream_key, stream_value};
use super::{Durability, Shared};
use crate::codec::{StoredEvent, seal, to_bincode};
use crate::decide::{IdEntry, Plan, StreamView, all_done, plan_multi};
use crate::error::StoreError;
use crate::types::{AppendResult, EventId, StreamAppend, StreamId, now_micros};

/// Stop adding appends to a group once it holds this many events.
const MAX_GROUP_EVENTS: usize = 16_384;

/// One append waiting for the writer.
pub(super) struct Request {
    pub(super) appends: Vec<StreamAppend>,
    pub(super) reply: oneshot::Sender<Result<Vec<AppendResult>, StoreError>>,
}

/// The writer loop; returns when every sender is gone and the queue is empty.
pub(super) fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Request>,
    mut syncer: Option<Syncer>,
    durability: Durability,
    max_group: usize,
) {
    let mut next_position = shared.visible() + 1;
    let mut failure: Option<String> = None;
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
        if let Some(reason) = &failure {
            for req in group {
                let _ = req.reply.send(Err(StoreError::Unavailable { reason: reason.clone() }));
            }
            continue;
        }
        let span = debug_span!("group_commit", appends = group.len(), events = tracing::field::Empty);
        let _enter = span.enter();
        let mut commit = Commit::new(&shared.tree, next_position);
        let mut outcomes: Vec<_> = group
            .into_iter()
            .map(|req| {
                let result = commit.add(req.appends);
                (req.reply, result)
            })
            .collect();
        let written = commit.next_position - next_position;
        span.record("events", written);
        if written > 0 {
            match commit.finish(durability, syncer.as_mut()) {
                Ok(()) => {
                    next_position += written;
                    shared.stats.record(outcomes.len() as u64, written);
                    shared.publish(next_position - 1);
                }
                Err(e) => {
                    let reason = format!(
                        "a commit failed, the outcome of its appends is unknown until the store is reopened: {e}"
                    );
                    error!(error = %e, "group commit failed; refusing further appends");
                    for (_, result) in &mut outcomes {
                        if result.is_ok() {
                            *result = Err(StoreError::Unavailable { reason: reason.clone() });
                        }
                    }
                    failure = Some(reason);
                }
            }
        }
        for (reply, result) in outcomes {
            let _ = reply.send(result);
        }
    }
}

/// One group's writes, staged into a sled batch, with an overlay of what
/// they change so later appends of the group are judged against them.
struct Commit<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    next_position: u64,
    recorded_at: u64,
    versions: HashMap<StreamId, u64>,
    ids: HashMap<(StreamId, EventId), IdEntry>,
}

impl StreamView for Commit<'_> {
    fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        if let Some(v) = self.versions.get(stream) {
            return Ok(*v);
        }
        // The writer is the only writer and each group is applied before the
        // next starts, so the tree's newest key is the stream's version.
        super::newest_version(self.tree, stream, u64::MAX)
    }

    fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
        if let Some(e) = self.ids.get(&(stream.clone(), *id)) {
            return Ok(Some(*e));
        }
        super::find_id(self.tree, stream, id)
    }
}

impl<'a> Commit<'a> {
    fn new(tree: &'a sled::Tree, next_position: u64) -> Self {
        Commit {
            tree,
            batch: sled::Batch::default(),
            next_position,
            recorded_at: now_micros(),
            versions: HashMap::new(),
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
            self.versions.insert(append.stream, version);
        }
        for (k, v) in staged {
            self.batch.insert(k, v);
        }
        self.ids.extend(overlay_ids);
        self.next_position = position;
        Ok(results)
    }

    /// Applies the batch atomically and makes it durable per `durability`.
    fn finish(self, durability: Durability, syncer: Option<&mut Syncer>) -> Result<(), StoreError> {
        self.tree.apply_batch(self.batch)?;
        match durability {
            Durability::Buffered => {}
            Durability::Flush => {
                self.tree.flush()?;
            }
            Durability::Fsync => {
                self.tree.flush()?;
                syncer
                    .expect("a syncer exists in fsync mode")
                    .sync()
                    .map_err(|e| StoreError::io("fsyncing sled's files", e))?;
            }
        }
        Ok(())
    }
}

/// Makes what sled's `flush()` wrote survive a power loss.
///
/// sled 0.34's flush ends in `sync_file_range`, which does not flush the
/// disk's write cache, and writes large values to files under `blobs/`
/// without any sync. This `fdatasync`s those blob files (once each, and the
/// directory when new ones appeared), then sled's main file.
pub(super) struct Syncer {
    db_file: File,
    blobs: PathBuf,
    synced: HashSet<OsString>,
}

impl Syncer {
    pub(super) fn open(dir: &Path) -> io::Result<Syncer> {
        let syncer = Syncer {
            db_file: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced: HashSet::new(),
        };
        // The files sled created must be reachable after a power loss too.
        File::open(dir)?.sync_all()?;
        Ok(syncer)
    }

    pub(super) fn sync(&mut self) -> io::Result<()> {
        match fs::read_dir(&self.blobs) {
            Ok(entries) => {
                let mut present = HashSet::new();
                let mut new = false;
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    if !self.synced.contains(&name) {
                        match File::open(entry.path()) {
                            Ok(f) => f.sync_data()?,
                            // Collected by sled between the listing and the open.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        }
                        new = true;
                    }
                    present.insert(name);
                }
                if new {
                    File::open(&self.blobs)?.sync_all()?;
                }
                self.synced = present;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.db_file.sync_data()
    }
}
