//! The service's state, and the substates handlers and middleware take
//! from it.
//!
//! The router's state is [`Shared`]; a handler names only what it uses
//! (`State<OrderService>`, `State<Arc<Config>>`, ...), each a substate
//! taken from it by [`FromRef`]. Substates are defined where they are used
//! (the store, the domain, the read models, the metrics and the
//! configuration are the crates' and this crate's own types; the
//! middleware's [`KeyedRequests`] is the idempotency module's), so no
//! module but the server and the router knows this one.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use strata_aggregates::Repository;
use strata_aggregates::domain::document::DocumentService;
use strata_aggregates::domain::order::Order;
use strata_aggregates::domain::service::OrderService;
use strata_aggregates::domain::stock::StockItem;
use strata_projections::Projections;
use strata_store::{EventStore, SegmentStore};
use strata_subscriptions::Subscriptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::access::Access;
use crate::config::Config;
use crate::idempotency::{KeyedRequests, Records};
use crate::metrics::Metrics;
use crate::routes::live::Closing;

/// The service's parts: the store, the domain, the read models, the
/// idempotency records and the metrics.
pub(crate) struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn EventStore>,
    /// The same store when it is the segment log (what a scavenge needs);
    /// `None` on PostgreSQL.
    pub segments: Option<SegmentStore>,
    /// The same store when it is PostgreSQL (what a scavenge needs there).
    #[cfg(feature = "postgres")]
    pub postgres: Option<strata_store::PostgresStore>,
    pub service: OrderService,
    /// Collections and documents.
    pub documents: Arc<DocumentService>,
    pub projections: Arc<Projections>,
    /// The persistent subscription groups.
    pub subscriptions: Subscriptions,
    pub idempotency: Records,
    pub metrics: Arc<Metrics>,
    /// Handlers detached from their connection (idempotent writes):
    /// shutdown waits for them.
    pub tasks: TaskTracker,
    /// Cancelled when the service stops accepting: background work still
    /// running (a retried Idempotency-Key record) makes a last attempt.
    pub stopping: CancellationToken,
    /// Cancelled as the service stops accepting: the live streams end.
    pub closing: Closing,
    /// Who may do what (open until the server decides at start).
    pub access: Access,
}

/// The router's state: the service's parts, shared by every request.
#[derive(Clone)]
pub(crate) struct Shared(Arc<AppState>);

impl Deref for Shared {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl AppState {
    /// Builds the state over an open store, its read models (not started),
    /// its subscription groups and its idempotency records.
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        projections: Projections,
        subscriptions: Subscriptions,
        idempotency: Records,
        config: Config,
    ) -> AppState {
        let log = store.clone();
        let mut orders = Repository::<Order>::new(log.clone())
            .with_format(config.event_format)
            .with_conflict_event_limit(config.conflict_event_limit);
        let mut stock = Repository::<StockItem>::new(log)
            .with_format(config.event_format)
            .with_conflict_event_limit(config.conflict_event_limit);
        if let Some(every) = config.snapshot_every {
            orders = orders.with_snapshots(every);
            stock = stock.with_snapshots(every);
        }
        AppState {
            service: OrderService::from_repositories(orders, stock),
            documents: Arc::new(
                DocumentService::new(store.clone()).with_conflict_event_limit(config.conflict_event_limit),
            ),
            projections: Arc::new(projections),
            subscriptions,
            idempotency,
            metrics: Arc::new(Metrics::new()),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            closing: Closing::default(),
            access: Access::default(),
            segments: None,
            #[cfg(feature = "postgres")]
            postgres: None,
            store,
            config: Arc::new(config),
        }
    }

    /// The state, shared.
    pub(crate) fn shared(self) -> Shared {
        Shared(Arc::new(self))
    }
}

impl FromRef<Shared> for Arc<Config> {
    fn from_ref(s: &Shared) -> Self {
        s.config.clone()
    }
}

impl FromRef<Shared> for Arc<dyn EventStore> {
    fn from_ref(s: &Shared) -> Self {
        s.store.clone()
    }
}

impl FromRef<Shared> for OrderService {
    fn from_ref(s: &Shared) -> Self {
        s.service.clone()
    }
}

impl FromRef<Shared> for Arc<DocumentService> {
    fn from_ref(s: &Shared) -> Self {
        s.documents.clone()
    }
}

impl FromRef<Shared> for Arc<Projections> {
    fn from_ref(s: &Shared) -> Self {
        s.projections.clone()
    }
}

impl FromRef<Shared> for Arc<Metrics> {
    fn from_ref(s: &Shared) -> Self {
        s.metrics.clone()
    }
}

impl FromRef<Shared> for Subscriptions {
    fn from_ref(s: &Shared) -> Self {
        s.subscriptions.clone()
    }
}

impl FromRef<Shared> for Closing {
    fn from_ref(s: &Shared) -> Self {
        s.closing.clone()
    }
}

impl FromRef<Shared> for Access {
    fn from_ref(s: &Shared) -> Self {
        s.access.clone()
    }
}

impl FromRef<Shared> for KeyedRequests {
    fn from_ref(s: &Shared) -> Self {
        KeyedRequests {
            records: s.idempotency.clone(),
            body_limit: s.config.body_limit,
            tasks: s.tasks.clone(),
            stopping: s.stopping.clone(),
        }
    }
}
