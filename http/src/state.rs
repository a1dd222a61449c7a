//! What every handler shares.

use std::sync::Arc;

use strata_aggregates::Repository;
use strata_aggregates::domain::document::DocumentService;
use strata_aggregates::domain::order::Order;
use strata_aggregates::domain::service::OrderService;
use strata_aggregates::domain::stock::StockItem;
use strata_projections::Projections;
use strata_store::EventStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::HttpError;
use crate::idempotency::IdempotencyStore;
use crate::metrics::Metrics;

/// The service's state: the store, the domain, the read models, the
/// idempotency records and the metrics.
pub(crate) struct AppState {
    pub config: Config,
    pub store: Arc<dyn EventStore>,
    pub service: OrderService,
    /// Collections and documents.
    pub documents: DocumentService,
    pub projections: Projections,
    pub idempotency: IdempotencyStore,
    pub metrics: Metrics,
    /// Handlers detached from their connection (idempotent POSTs): shutdown waits for them.
    pub tasks: TaskTracker,
    /// Cancelled when the service stops accepting: background work still
    /// running (a retried Idempotency-Key record) makes a last attempt.
    pub stopping: CancellationToken,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    /// Builds the state over an open store, its read models (not started)
    /// and its idempotency records.
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        projections: Projections,
        idempotency: IdempotencyStore,
        config: Config,
    ) -> Result<AppState, HttpError> {
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
        Ok(AppState {
            service: OrderService::from_repositories(orders, stock),
            documents: DocumentService::new(store.clone()).with_conflict_event_limit(config.conflict_event_limit),
            projections,
            idempotency,
            metrics: Metrics::new(),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            store,
            config,
        })
    }
}
