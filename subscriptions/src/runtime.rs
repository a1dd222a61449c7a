//! One group in this process: its state as last loaded, the feed that
//! reads the log for it, the events of its rows, and the loop that runs a
//! change and writes it (again, after a reload, when another process
//! changed the group first).
//!
//! The feed is a task following the log with the group's filter
//! (`subscribe_filtered` from where the group has read to) into a bounded
//! channel. Reads take items from the channel only while the group's
//! buffer has room, so a group whose consumers do not keep up stops
//! reading the log: the channel fills and the feed task waits. Memory per
//! group is the buffer (`buffer_size` rows and their events), the channel
//! ([`FEED_CAPACITY`] items) and one read batch of the subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_store::{EventFilter, EventStore, RecordedEvent, StoreError, SubscriptionItem};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::backend::{Commit, GroupBackend};
use crate::error::SubscriptionError;
use crate::settings::{ConsumerName, GroupName};
use crate::state::{Claimed, DeliveryToken, GroupState, Millis, now_millis};

/// Items the feed may have read ahead of the group.
pub const FEED_CAPACITY: usize = 256;

/// A call that keeps losing to other processes changing the group gives
/// up after this many conflicts in a row, and no sooner than
/// [`CONTENTION_BUDGET`] after the first: on a loaded machine a process
/// can be descheduled between reading the group and writing it for long
/// enough to lose many times over.
const MAX_ATTEMPTS: u32 = 64;
/// See [`MAX_ATTEMPTS`].
const CONTENTION_BUDGET: Duration = Duration::from_secs(10);

/// Conflicts in a row, and since when.
#[derive(Default)]
struct Conflicts {
    count: u32,
    since: Option<Instant>,
}

impl Conflicts {
    /// Counts a conflict; true when it is time to give up.
    fn give_up(&mut self) -> bool {
        self.count += 1;
        let since = *self.since.get_or_insert_with(Instant::now);
        self.count >= MAX_ATTEMPTS && since.elapsed() >= CONTENTION_BUDGET
    }

    fn reset(&mut self) {
        *self = Conflicts::default();
    }
}

/// One delivery of one event to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Acknowledge or refuse the delivery with this.
    pub token: DeliveryToken,
    /// Which delivery of this event it is: 1 the first, more for retries.
    pub attempt: u32,
    /// The event.
    pub event: RecordedEvent,
}

/// What the log and the groups' storage are, for one call.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) backend: Arc<dyn GroupBackend>,
}

pub(crate) struct Runtime {
    name: GroupName,
    cache: Mutex<Cache>,
    /// Woken when the group may have something new for a waiting reader:
    /// items from the feed, acks and nacks.
    changed: Arc<Notify>,
}

#[derive(Default)]
pub(crate) struct Cache {
    pub(crate) state: Option<GroupState>,
    /// The events of the rows (a subset: others are read from the log as
    /// they are delivered). Kept over reloads: events never change.
    events: HashMap<u64, RecordedEvent>,
    feed: Option<Feed>,
}

impl Cache {
    fn reset(&mut self) {
        self.state = None;
        self.feed = None;
    }

    /// Items the feed has read from the log that the group has not taken
    /// yet: at most [`FEED_CAPACITY`] in the channel and one held.
    pub(crate) fn read_ahead(&self) -> usize {
        self.feed
            .as_ref()
            .map_or(0, |f| f.rx.len() + usize::from(f.held.is_some()))
    }

    pub(crate) fn state(&self) -> &GroupState {
        self.state.as_ref().expect("a loaded group")
    }

    fn state_mut(&mut self) -> &mut GroupState {
        self.state.as_mut().expect("a loaded group")
    }
}

struct Feed {
    rx: mpsc::Receiver<Result<SubscriptionItem, StoreError>>,
    /// An item the group had no room for yet.
    held: Option<SubscriptionItem>,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    fn start(store: Arc<dyn EventStore>, after: u64, filter: EventFilter, changed: Arc<Notify>) -> Feed {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let task = tokio::spawn(async move {
            let mut items = store.subscribe_filtered(after, filter);
            while let Some(item) = items.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() {
                    return;
                }
                changed.notify_waiters();
                if failed {
                    return;
                }
            }
        });
        Feed { rx, held: None, task }
    }
}

/// A pause before trying again after a conflict: growing with the
/// conflicts in a row (200 µs doubling up to 50 ms), and random within the
/// upper half of that, so that processes that collided do not collide again.
async fn pause(attempt: u32) {
    use std::hash::{BuildHasher, Hasher};
    let cap = (200u64 << attempt.min(8)).min(50_000);
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let micros = cap / 2 + random % (cap / 2 + 1);
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

impl Runtime {
    pub(crate) fn new(name: GroupName) -> Runtime {
        Runtime {
            name,
            cache: Mutex::new(Cache::default()),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Stops the feed (if it runs) and waits until its task has let go of
    /// the store.
    pub(crate) async fn stop(&self) {
        let mut cache = self.cache.lock().await;
        if let Some(mut feed) = cache.feed.take() {
            feed.task.abort();
            let _ = (&mut feed.task).await;
        }
    }

    fn not_found(&self) -> SubscriptionError {
        SubscriptionError::GroupNotFound {
            group: self.name.clone(),
        }
    }

    /// The group's cache, locked, with the state loaded and (when other
    /// processes may change the group) checked against the stored version.
    pub(crate) async fn current(&self, ctx: &Ctx) -> Result<MutexGuard<'_, Cache>, SubscriptionError> {
        let mut cache = self.cache.lock().await;
        if let Some(state) = &cache.state
            && ctx.backend.poll_interval().is_some()
        {
            match ctx.backend.version(&self.name).await? {
                Some(v) if v == state.header.version => {}
                Some(_) => cache.reset(),
                None => {
                    cache.reset();
                    return Err(self.not_found());
                }
            }
        }
        if cache.state.is_none() {
            let stored = ctx.backend.load(&self.name).await?.ok_or_else(|| self.not_found())?;
            cache.events.retain(|p, _| stored.rows.contains_key(p));
            cache.state = Some(GroupState::new(stored.header, stored.rows));
        }
        Ok(cache)
    }

    /// Takes what the feed has read into the group while it has room
    /// (replays asked for first).
    async fn fill(&self, cache: &mut Cache, ctx: &Ctx, now: Millis) -> Result<(), SubscriptionError> {
        let state = cache.state.as_mut().expect("a loaded group");
        if state.header.counters.replay_pending > 0 && state.room() > 0 {
            let parked = ctx.backend.parked(&self.name, 0, state.room(), true).await?;
            state.unpark(parked, now);
        }
        let Cache {
            state, events, feed, ..
        } = cache;
        let state = state.as_mut().expect("a loaded group");
        let feed = feed.get_or_insert_with(|| {
            Feed::start(
                ctx.store.clone(),
                state.header.fill,
                state.header.settings.filter.clone(),
                self.changed.clone(),
            )
        });
        let mut failure = None;
        let mut closed = false;
        loop {
            let item = match feed.held.take() {
                Some(item) => item,
                None => match feed.rx.try_recv() {
                    Ok(Ok(item)) => item,
                    Ok(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                },
            };
            if state.offer(&item, now) {
                if let SubscriptionItem::Event(e) = item
                    && state.rows.contains_key(&e.position)
                {
                    events.insert(e.position, e);
                }
            } else {
                feed.held = Some(item);
                break;
            }
        }
        if failure.is_some() || closed {
            // Started again, from where the group has read to, next time.
            cache.feed = None;
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes what the state changed, if anything.
    async fn commit(&self, cache: &mut Cache, ctx: &Ctx) -> Result<Commit, SubscriptionError> {
        let state = cache.state_mut();
        let Some(changes) = state.take_changes() else {
            return Ok(Commit::Done);
        };
        let base = state.header.version;
        match ctx.backend.commit(&self.name, base, &changes).await {
            Ok(Commit::Done) => {
                cache.state_mut().committed();
                for (position, row) in &changes.rows {
                    if row.is_none() {
                        cache.events.remove(position);
                    }
                }
                Ok(Commit::Done)
            }
            Ok(other) => {
                cache.reset();
                Ok(other)
            }
            Err(e) => {
                // Written or not, the next call reloads.
                cache.reset();
                Err(e)
            }
        }
    }

    /// Runs `step` on the current state and writes what it changed; on a
    /// conflict reloads and runs it again. `wake` wakes waiting readers
    /// afterwards (an ack may free a stream or room in the buffer).
    pub(crate) async fn change<R>(
        &self,
        ctx: &Ctx,
        wake: bool,
        mut step: impl FnMut(&mut GroupState, Millis) -> R,
    ) -> Result<R, SubscriptionError> {
        let mut conflicts = Conflicts::default();
        loop {
            let mut cache = self.current(ctx).await?;
            let out = step(cache.state_mut(), now_millis());
            match self.commit(&mut cache, ctx).await? {
                Commit::Done => {
                    drop(cache);
                    ctx.backend.sync().await?;
                    if wake {
                        self.changed.notify_waiters();
                    }
                    return Ok(out);
                }
                Commit::Gone => return Err(self.not_found()),
                Commit::Conflict => {
                    drop(cache);
                    if conflicts.give_up() {
                        return Err(SubscriptionError::Contention {
                            group: self.name.clone(),
                            attempts: conflicts.count,
                        });
                    }
                    debug!(group = %self.name, attempt = conflicts.count, "group changed by another process; retrying");
                    pause(conflicts.count).await;
                }
            }
        }
    }

    /// Leases up to `max` events to `consumer`, waiting up to `wait` for
    /// some to be due.
    pub(crate) async fn read(
        &self,
        ctx: &Ctx,
        consumer: &ConsumerName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, SubscriptionError> {
        let deadline = Instant::now() + wait;
        let mut conflicts = Conflicts::default();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut cache = self.current(ctx).await?;
            let now = now_millis();
            self.fill(&mut cache, ctx, now).await?;
            let claimed = cache.state_mut().claim(consumer, max, now);
            match self.commit(&mut cache, ctx).await? {
                // Contention is conflicts in a row: a reader that waits
                // long while others commit must not run out of attempts.
                Commit::Done => conflicts.reset(),
                Commit::Gone => return Err(self.not_found()),
                Commit::Conflict => {
                    drop(cache);
                    if conflicts.give_up() {
                        return Err(SubscriptionError::Contention {
                            group: self.name.clone(),
                            attempts: conflicts.count,
                        });
                    }
                    // A read past its wait answers "nothing yet" rather
                    // than go on contending.
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                    pause(conflicts.count).await;
                    continue;
                }
            }
            if !claimed.is_empty() {
                let deliveries = self.resolve(&mut cache, ctx, claimed).await?;
                drop(cache);
                ctx.backend.sync().await?;
                return Ok(deliveries);
            }
            let wake = cache.state().next_wake(now);
            drop(cache);
            let started = Instant::now();
            if started >= deadline {
                return Ok(Vec::new());
            }
            let mut until = deadline;
            if let Some(at) = wake {
                until = until.min(started + Duration::from_millis(at.saturating_sub(now_millis())));
            }
            if let Some(poll) = ctx.backend.poll_interval() {
                until = until.min(started + poll);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Attaches each claimed delivery's event: from the cache, else from the log.
    async fn resolve(
        &self,
        cache: &mut Cache,
        ctx: &Ctx,
        claimed: Vec<Claimed>,
    ) -> Result<Vec<Delivery>, SubscriptionError> {
        let mut out = Vec::with_capacity(claimed.len());
        for c in claimed {
            let position = c.token.position;
            let event = match cache.events.get(&position) {
                Some(e) => e.clone(),
                None => {
                    let e = read_event(&*ctx.store, position).await?;
                    cache.events.insert(position, e.clone());
                    e
                }
            };
            out.push(Delivery {
                token: c.token,
                attempt: c.attempt,
                event,
            });
        }
        Ok(out)
    }
}

/// The event at `position`, which a row of the group names.
async fn read_event(store: &dyn EventStore, position: u64) -> Result<RecordedEvent, SubscriptionError> {
    let mut events = store.read_all(position, 1).await?;
    match events.pop() {
        Some(e) if e.position == position => Ok(e),
        other => {
            warn!(position, "a subscription row names an event the log does not hold");
            Err(SubscriptionError::Corrupt {
                location: format!("subscription row at position {position}"),
                detail: match other {
                    Some(e) => format!("the log returned position {} instead", e.position),
                    None => "the log has no event there".into(),
                },
            })
        }
    }
}
