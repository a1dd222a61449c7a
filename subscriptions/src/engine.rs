//! [`Subscriptions`]: the groups of one store, and every call a consumer
//! or an operator makes on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use strata_store::{EventStore, LocalTables};

use crate::backend::{Created, GroupBackend, LocalGroups};
use crate::error::SubscriptionError;
use crate::runtime::{Ctx, Delivery, Runtime};
use crate::settings::{ConsumerName, GroupName, GroupSettings, StartFrom};
use crate::state::{
    DeliveryToken, GroupCounters, Header, NackAction, ParkedEvent, clean_reason, from_millis, now_millis,
};

/// The most events one read hands out.
pub const MAX_READ_BATCH: usize = 1_000;

/// The most tokens one ack or nack takes.
pub const MAX_TOKENS: usize = 10_000;

/// The most parked events one replay call marks (call again for more).
pub const MAX_REPLAY: usize = 10_000;

/// The most parked events one listing returns.
pub const MAX_PARKED_PAGE: usize = 1_000;

/// What a group is doing, for operators and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Its name.
    pub name: GroupName,
    /// Its settings.
    pub settings: GroupSettings,
    /// Every event of the group up to this position is acknowledged or
    /// parked.
    pub checkpoint: u64,
    /// The log has been examined up to here (events past it are not in
    /// the group yet).
    pub examined: u64,
    /// The log's head when this was read.
    pub head: u64,
    /// How far the group is behind the log: `head - checkpoint`, in
    /// positions (events of the whole log, matching or not).
    pub lag: u64,
    /// Events waiting for a consumer (due now or after a retry delay).
    pub pending: u64,
    /// Events leased to consumers.
    pub in_flight: u64,
    /// Events parked.
    pub parked: u64,
    /// Events (and checkpoints) this process has read from the log ahead
    /// of the group's buffer, waiting for room: at most
    /// [`FEED_CAPACITY`](crate::FEED_CAPACITY) + 1.
    pub read_ahead: u64,
    /// Counters since the group was created.
    pub counters: GroupCounters,
    /// When it was created.
    pub created_at: SystemTime,
}

/// What an ack or nack did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// How many deliveries it settled.
    pub settled: usize,
    /// The tokens that were not current: their lease had timed out (the
    /// event was or will be delivered again), or they were settled before.
    pub stale: Vec<DeliveryToken>,
}

/// The persistent subscription groups of one store: create and delete
/// groups, read leased events as a consumer, acknowledge or refuse them,
/// list and replay parked events.
///
/// Groups are durable: their state is written, in one atomic step per
/// call, on the embedded tables ([`Subscriptions::local`], one process)
/// or in PostgreSQL beside the log (`Subscriptions::postgres`, shared by
/// every process on the database: consumers of one group may read from
/// any of them). See `docs/subscriptions.md` for the guarantees.
///
/// Cheap to clone; clones share the groups.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use strata_store::{EventFilter, EventStore, ExpectedVersion, NewEvent, SegmentStore, StreamId};
/// use strata_subscriptions::{ConsumerName, GroupName, GroupSettings, Strategy, Subscriptions};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SegmentStore::open(dir.path())?;
/// let subscriptions = Subscriptions::local(Arc::new(store.clone()), store.tables()?)?;
/// let group = GroupName::new("emails")?;
/// let settings = GroupSettings {
///     filter: EventFilter::all().category("order"),
///     strategy: Strategy::PinnedPerStream,
///     ..GroupSettings::default()
/// };
/// subscriptions.create_group(&group, settings).await?;
///
/// store.append(&StreamId::new("order-1")?, ExpectedVersion::Any, vec![NewEvent::new("OrderPlaced", "{}")]).await?;
/// let me = ConsumerName::new("worker-1")?;
/// let batch = subscriptions.read(&group, &me, 10, Duration::from_secs(5)).await?;
/// assert_eq!(batch[0].event.event_type, "OrderPlaced");
/// // ... handle it (idempotently: it may come again), then:
/// let settled = subscriptions.ack(&group, &[batch[0].token]).await?;
/// assert_eq!(settled.settled, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Subscriptions {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Ctx,
    runtimes: Mutex<HashMap<GroupName, Arc<Runtime>>>,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

fn check_tokens(tokens: &[DeliveryToken]) -> Result<(), SubscriptionError> {
    if tokens.len() > MAX_TOKENS {
        return Err(SubscriptionError::BatchTooLarge {
            what: "tokens",
            count: tokens.len(),
            limit: MAX_TOKENS,
        });
    }
    Ok(())
}

impl Subscriptions {
    /// The groups of `store`, kept on the embedded `tables` (in a tree
    /// named `subscriptions`): the store's own ([`strata_store::SegmentStore::tables`]),
    /// so they live and are synced with the log. One process.
    pub fn local(store: Arc<dyn EventStore>, tables: LocalTables) -> Result<Subscriptions, SubscriptionError> {
        Ok(Subscriptions::with_backend(store, Arc::new(LocalGroups::open(tables)?)))
    }

    /// The groups of a [`strata_store::PostgresStore`], in tables beside
    /// its log (created or migrated here), shared by every process on
    /// that database and schema.
    #[cfg(feature = "postgres")]
    pub async fn postgres(store: strata_store::PostgresStore) -> Result<Subscriptions, SubscriptionError> {
        let backend = crate::backend::PostgresGroups::open(&store).await?;
        Ok(Subscriptions::with_backend(Arc::new(store), Arc::new(backend)))
    }

    fn with_backend(store: Arc<dyn EventStore>, backend: Arc<dyn GroupBackend>) -> Subscriptions {
        Subscriptions {
            inner: Arc::new(Inner {
                ctx: Ctx { store, backend },
                runtimes: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn ctx(&self) -> &Ctx {
        &self.inner.ctx
    }

    fn runtime(&self, name: &GroupName) -> Arc<Runtime> {
        let mut runtimes = self.inner.runtimes.lock().unwrap_or_else(|p| p.into_inner());
        runtimes
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Runtime::new(name.clone())))
            .clone()
    }

    fn forget(&self, name: &GroupName) {
        let mut runtimes = self.inner.runtimes.lock().unwrap_or_else(|p| p.into_inner());
        runtimes.remove(name);
    }

    /// Stops every group's feed in this process and waits until none holds
    /// the store (so a store about to close is let go): their state is
    /// durable already. Groups used afterwards start their feeds again.
    pub async fn stop(&self) {
        let runtimes: Vec<Arc<Runtime>> = {
            let runtimes = self.inner.runtimes.lock().unwrap_or_else(|p| p.into_inner());
            runtimes.values().cloned().collect()
        };
        for runtime in runtimes {
            runtime.stop().await;
        }
    }

    /// Creates a group. Creating it again with the same settings is not an
    /// error ([`Created::Existed`]); with other settings it is
    /// [`SubscriptionError::GroupExists`]. Errors:
    /// [`SubscriptionError::InvalidSettings`] for settings out of range.
    pub async fn create_group(&self, name: &GroupName, settings: GroupSettings) -> Result<Created, SubscriptionError> {
        settings.check()?;
        let fill = match settings.start {
            StartFrom::Beginning => 0,
            StartFrom::After(p) => p,
            StartFrom::End => self.ctx().store.head_position().await?,
        };
        let header = Header {
            settings,
            version: 0,
            fill,
            next_delivery: 1,
            counters: GroupCounters::default(),
            created_at: now_millis(),
        };
        let created = self.ctx().backend.create(name, &header).await?;
        if created == Created::New {
            // A group of this name deleted and made again (here or by
            // another process) starts from nothing.
            self.forget(name);
        }
        Ok(created)
    }

    /// Deletes a group with its state and parked events; false when there
    /// was none. Its consumers' next calls fail with
    /// [`SubscriptionError::GroupNotFound`].
    pub async fn delete_group(&self, name: &GroupName) -> Result<bool, SubscriptionError> {
        let deleted = self.ctx().backend.delete(name).await?;
        self.forget(name);
        Ok(deleted)
    }

    /// Every group, in name order, with its progress.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, SubscriptionError> {
        let mut out = Vec::new();
        for name in self.ctx().backend.names().await? {
            match self.group(&name).await {
                Ok(info) => out.push(info),
                // Deleted in between.
                Err(SubscriptionError::GroupNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One group's progress. Errors: [`SubscriptionError::GroupNotFound`].
    pub async fn group(&self, name: &GroupName) -> Result<GroupInfo, SubscriptionError> {
        let head = self.ctx().store.head_position().await?;
        let runtime = self.runtime(name);
        let cache = match runtime.current(self.ctx()).await {
            Ok(cache) => cache,
            Err(e) => {
                if matches!(e, SubscriptionError::GroupNotFound { .. }) {
                    self.forget(name);
                }
                return Err(e);
            }
        };
        let state = cache.state();
        let (pending, in_flight) = state.counts();
        let checkpoint = state.checkpoint();
        Ok(GroupInfo {
            name: name.clone(),
            settings: state.header.settings.clone(),
            checkpoint,
            examined: state.header.fill,
            head,
            lag: head.saturating_sub(checkpoint),
            pending,
            in_flight,
            parked: state.header.counters.parked_now,
            read_ahead: cache.read_ahead() as u64,
            counters: state.header.counters,
            created_at: from_millis(state.header.created_at),
        })
    }

    /// Leases up to `max` (1..=[`MAX_READ_BATCH`]) events of the group to
    /// `consumer`, oldest first as the group's strategy allows, waiting up
    /// to `wait` for some to be due; an empty batch when none came in time.
    ///
    /// Each delivery must be acknowledged ([`Subscriptions::ack`]) or
    /// refused ([`Subscriptions::nack`]) within the group's `ack_timeout`,
    /// or it is delivered again. Errors:
    /// [`SubscriptionError::GroupNotFound`], [`SubscriptionError::BatchTooLarge`].
    pub async fn read(
        &self,
        group: &GroupName,
        consumer: &ConsumerName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, SubscriptionError> {
        if max == 0 || max > MAX_READ_BATCH {
            return Err(SubscriptionError::BatchTooLarge {
                what: "events",
                count: max,
                limit: MAX_READ_BATCH,
            });
        }
        self.runtime(group).read(self.ctx(), consumer, max, wait).await
    }

    /// Acknowledges deliveries: their events are done. Tokens that are no
    /// longer current are returned as [`Settled::stale`] (not an error:
    /// the event is or will be delivered again, and handled again).
    pub async fn ack(&self, group: &GroupName, tokens: &[DeliveryToken]) -> Result<Settled, SubscriptionError> {
        check_tokens(tokens)?;
        self.runtime(group)
            .change(self.ctx(), true, |state, _| {
                let stale = state.ack(tokens);
                Settled {
                    settled: tokens.len() - stale.len(),
                    stale,
                }
            })
            .await
    }

    /// Refuses deliveries: retried after the group's retry delay (parked
    /// once its retries are used up), or parked now, as `action` says.
    /// `reason` (at most 1,000 bytes are kept) is stored with a parked event.
    pub async fn nack(
        &self,
        group: &GroupName,
        tokens: &[DeliveryToken],
        action: NackAction,
        reason: &str,
    ) -> Result<Settled, SubscriptionError> {
        check_tokens(tokens)?;
        let reason = clean_reason(reason);
        self.runtime(group)
            .change(self.ctx(), true, |state, now| {
                let stale = state.nack(tokens, action, &reason, now);
                Settled {
                    settled: tokens.len() - stale.len(),
                    stale,
                }
            })
            .await
    }

    /// Up to `limit` (at most [`MAX_PARKED_PAGE`]) parked events of the
    /// group after position `after`, in position order.
    pub async fn parked(
        &self,
        group: &GroupName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ParkedEvent>, SubscriptionError> {
        if limit > MAX_PARKED_PAGE {
            return Err(SubscriptionError::BatchTooLarge {
                what: "parked events",
                count: limit,
                limit: MAX_PARKED_PAGE,
            });
        }
        if self.ctx().backend.version(group).await?.is_none() {
            return Err(SubscriptionError::GroupNotFound { group: group.clone() });
        }
        self.ctx().backend.parked(group, after, limit, false).await
    }

    /// Asks for parked events to be delivered again: those at `positions`,
    /// or (`None`) every parked event, up to [`MAX_REPLAY`] per call. They
    /// come back, with their retries counted afresh, as the group's buffer
    /// has room. Returns how many were marked (call again while it is
    /// [`MAX_REPLAY`]).
    pub async fn replay_parked(&self, group: &GroupName, positions: Option<&[u64]>) -> Result<u64, SubscriptionError> {
        if let Some(p) = positions
            && p.len() > MAX_REPLAY
        {
            return Err(SubscriptionError::BatchTooLarge {
                what: "positions",
                count: p.len(),
                limit: MAX_REPLAY,
            });
        }
        let runtime = self.runtime(group);
        loop {
            // Which parked events to mark, read at the version the change is made from.
            let version = self
                .ctx()
                .backend
                .version(group)
                .await?
                .ok_or_else(|| SubscriptionError::GroupNotFound { group: group.clone() })?;
            let mut marked = Vec::new();
            let mut after = 0;
            'pages: loop {
                let page = self.ctx().backend.parked(group, after, MAX_PARKED_PAGE, false).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                for p in page {
                    if marked.len() == MAX_REPLAY {
                        break 'pages;
                    }
                    if !p.replay_requested && positions.is_none_or(|want| want.contains(&p.position)) {
                        marked.push(p.position);
                    }
                }
            }
            let n = marked.len() as u64;
            let done = runtime
                .change(self.ctx(), true, |state, _| {
                    if state.header.version != version {
                        return false;
                    }
                    state.flag_replay(marked.clone());
                    true
                })
                .await?;
            if done {
                return Ok(n);
            }
        }
    }
}
