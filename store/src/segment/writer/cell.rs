//! The writer's state behind one lock ([`WriterCell`]), taken by the
//! writer thread ([`run_writer`]) or, when the writer is idle, by the
//! appending task itself ([`WriterCell::try_inline`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug_span, warn};

use super::super::Shared;
use super::super::grow::Grower;
use super::{Cursor, MAX_CACHED_HEADS, MAX_CACHED_IDS, MAX_GROUP_BYTES, Request, Writer, Written, unavailable};

/// Options of the writer thread.
pub(in crate::segment) struct WriterConfig {
    pub(in crate::segment) max_group_appends: usize,
    pub(in crate::segment) max_index_lag_events: usize,
    pub(in crate::segment) segment_bytes: u64,
    pub(in crate::segment) growth_bytes: u64,
    pub(in crate::segment) fsync: bool,
    pub(in crate::segment) prepare_spare: bool,
}

/// The writer's state, shared by the writer thread and by callers that
/// write their append themselves ([`WriterCell::try_inline`]): whoever
/// holds the lock is the one writer.
pub(in crate::segment) struct WriterCell {
    state: Mutex<Writer>,
    /// Set while the writer thread waits for the lock: callers then queue
    /// rather than take it first again.
    thread_waiting: AtomicBool,
    max_group_appends: usize,
    max_index_lag_events: usize,
    fsync: bool,
}

impl WriterCell {
    pub(in crate::segment) fn new(
        shared: Arc<Shared>,
        to_syncer: std_mpsc::Sender<Written>,
        cursor: Cursor,
        config: WriterConfig,
    ) -> WriterCell {
        let first_position = cursor.next_position;
        let group_start = cursor.offset;
        WriterCell {
            state: Mutex::new(Writer {
                shared,
                cursor,
                heads: HashMap::new(),
                ids: HashMap::new(),
                to_syncer: Some(to_syncer),
                sent: 0,
                segment_bytes: config.segment_bytes,
                fsync: config.fsync,
                group_start,
                buf: Vec::new(),
                outcomes: Vec::new(),
                first_position,
                spare: None,
                prepare_spare: config.prepare_spare,
                grower: Grower::new(config.growth_bytes),
                growth_bytes: config.growth_bytes,
            }),
            thread_waiting: AtomicBool::new(false),
            max_group_appends: config.max_group_appends,
            max_index_lag_events: config.max_index_lag_events,
            fsync: config.fsync,
        }
    }

    /// The writer's state for the writer thread. A panic of an earlier
    /// holder left it half-done: the store is failed then (every later
    /// append refused, reopening recovers), never written on from there.
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.state.lock().unwrap_or_else(|p| self.after_panic(p))
    }

    /// The state a panic left poisoned: the store is failed and the
    /// poison cleared (the failure answers every later append).
    fn after_panic<'a>(&'a self, p: PoisonError<MutexGuard<'a, Writer>>) -> MutexGuard<'a, Writer> {
        let w = p.into_inner();
        w.shared.fail(&unavailable("the writer panicked"));
        self.state.clear_poison();
        w
    }

    /// Writes `req` on the calling thread when the writer is idle: nothing
    /// queued or being taken off the queue, the lock free, the index not
    /// lagging (so nothing here waits for it), the durable mode (where the
    /// append is synced and answered right here when the syncer is idle
    /// too). One append then costs the disk's write and `fdatasync`, and
    /// neither the hop to the writer thread nor the wake back: on a small
    /// virtual machine each wake of a parked thread on another CPU cost
    /// about as much as the write. Only on tokio's multi-thread runtime,
    /// through `block_in_place`, so that the worker's other tasks move to
    /// another thread meanwhile. Gives `req` back when it must be queued.
    pub(in crate::segment) fn try_inline(&self, req: Request, queue: &mpsc::Sender<Request>) -> Result<(), Request> {
        let queue_empty = || queue.capacity() == queue.max_capacity();
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !self.fsync
            || !multi_thread
            || queue.is_closed()
            || !queue_empty()
            || self.thread_waiting.load(Ordering::Acquire)
        {
            return Err(req);
        }
        let mut w = match self.state.try_lock() {
            Ok(w) => w,
            // A panic left the state half-done: fail the store, and let the
            // queue answer (with the failure).
            Err(TryLockError::Poisoned(p)) => {
                drop(self.after_panic(p));
                return Err(req);
            }
            Err(TryLockError::WouldBlock) => return Err(req),
        };
        if w.tail().events() > self.max_index_lag_events {
            return Err(req);
        }
        let synced_here = tokio::task::block_in_place(|| {
            // The writer thread may have taken requests off the queue and
            // be waiting for the lock: then hand this group to the syncer
            // (which syncs both in one go) rather than sync it alone.
            let alone = queue_empty() && !self.thread_waiting.load(Ordering::Acquire);
            w.run_group(vec![req], self.max_index_lag_events, alone)
        });
        if synced_here {
            w.shared.stats.inline_appends.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Writer {
    /// Judges, encodes and writes one group of requests, then syncs it here
    /// (`queue_empty` and the syncer idle) or hands it to the syncer.
    /// Returns whether it was synced and answered here.
    fn run_group(&mut self, group: Vec<Request>, max_index_lag_events: usize, queue_empty: bool) -> bool {
        let span = debug_span!("write_group", appends = group.len());
        let _enter = span.enter();
        let started = Instant::now();
        let ready = match self.shared.failure() {
            Some(reason) => Err(unavailable(&reason)),
            None => self.wait_for_index(max_index_lag_events),
        };
        if self.heads.len() > MAX_CACHED_HEADS {
            self.heads.clear();
        }
        // Id lookups are kept across groups: the index changes only when the
        // indexer moves the tail epoch on, and a lookup made at an older
        // epoch is made again (`View::find_id`). Rebuilding them for every
        // group made one writer of 100-event appends spend most of its CPU
        // refilling the same map. Memory stays bounded.
        if self.ids.len() + self.ids.values().map(|(_, ids)| ids.len()).sum::<usize>() > MAX_CACHED_IDS {
            self.ids.clear();
        }
        for req in group {
            let result = match &ready {
                Err(e) => Err(unavailable(&e.to_string())),
                Ok(()) => match self.shared.failure() {
                    Some(reason) => Err(unavailable(&reason)),
                    None if req.roll => self.roll_now().map(|()| Vec::new()),
                    None => match req.op {
                        Some(op) => self.add_op(op),
                        None => self.add(req.appends),
                    },
                },
            };
            self.outcomes.push((req.reply, result));
            if self.buf.len() >= MAX_GROUP_BYTES {
                self.flush();
            }
        }
        self.shared.stats.record_write(started.elapsed());
        self.finish(queue_empty)
    }
}

/// The writer loop; at the end (every handle dropped) it waits for the
/// syncer, then seals the log.
pub(in crate::segment) fn run_writer(
    cell: Arc<WriterCell>,
    mut rx: mpsc::Receiver<Request>,
    syncer: std::thread::JoinHandle<()>,
) {
    while let Some(first) = rx.blocking_recv() {
        // Callers that see it set queue rather than take the lock ahead of
        // the requests taken off the queue here (it narrows that window; no
        // order between different tasks is promised anyway).
        cell.thread_waiting.store(true, Ordering::Release);
        let mut group = vec![first];
        while group.len() < cell.max_group_appends {
            match rx.try_recv() {
                Ok(req) => group.push(req),
                Err(_) => break,
            }
        }
        let mut w = cell.lock();
        cell.thread_waiting.store(false, Ordering::Release);
        w.run_group(group, cell.max_index_lag_events, rx.is_empty());
    }
    let mut w = cell.lock();
    drop(w.to_syncer.take());
    w.grower.finish();
    if syncer.join().is_err() {
        warn!("the strata syncer thread panicked");
    }
    if w.shared.failure().is_none()
        && let Err(e) = w.seal()
    {
        warn!(error = %e, "could not seal the log at close; the next open checks its tail");
    }
    w.discard_spare();
}
