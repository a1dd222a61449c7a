//! [`Projections`]: the read models of a server over one store.

use std::sync::Arc;
use std::time::Duration;

use strata_store::{EventStore, SegmentStore};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::documents::{DOCUMENT_LISTING, DocumentListing, DocumentListingProjection};
use crate::error::ProjectionError;
use crate::model::store::ModelStore;
use crate::orders::{ORDER_SUMMARY, OrderSummaries, OrderSummaryProjection};
use crate::projection::Projection;
use crate::rebuild::{RebuildOptions, RebuildProgress, RebuildReport, rebuild_all_if};
use crate::runner::{ProjectionRunner, RunnerOptions};
use crate::stock::{STOCK_LEVELS, StockLevels, StockLevelsProjection};

/// The read models of a server over one store (the order summary, stock
/// levels and the document listing): start and stop their runners, read
/// them, wait for them, rebuild them.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use strata_aggregates::{Format, encode, domain::stock::StockEvent};
/// use strata_projections::Projections;
/// use strata_store::{EventStore, ExpectedVersion, SegmentStore, StreamId};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SegmentStore::open(dir.path()).unwrap();
/// let projections = Projections::open(&store).unwrap();
/// projections.start().await.unwrap();
///
/// let registered = StockEvent::StockItemRegistered { sku: "tea".into(), name: "Tea".into() };
/// let received = StockEvent::StockReceived { quantity: 3 };
/// let events = vec![encode(&registered, Format::Bincode).unwrap(), encode(&received, Format::Bincode).unwrap()];
/// let r = store.append(&StreamId::new("stock-tea").unwrap(), ExpectedVersion::NoStream, events).await.unwrap();
///
/// // Read your writes: wait until the read models have applied the append.
/// projections.wait_for(r.last_position, Duration::from_secs(5)).await.unwrap();
/// assert_eq!(projections.stock().get("tea").unwrap().unwrap().available(), 3);
/// assert_eq!(projections.stock().low_stock(5).unwrap().len(), 1);
/// projections.stop().await.unwrap();
/// # });
/// ```
pub struct Projections {
    store: Arc<dyn EventStore>,
    orders: OrderSummaries,
    stock: StockLevels,
    documents: DocumentListing,
    options: RunnerOptions,
    runners: Mutex<Vec<ProjectionRunner>>,
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections")
            .field("orders", self.orders.model())
            .field("stock", self.stock.model())
            .field("documents", self.documents.model())
            .finish_non_exhaustive()
    }
}

impl Projections {
    /// The read models in the tables beside the log of `store`
    /// ([`SegmentStore::tables`]).
    pub fn open(store: &SegmentStore) -> Result<Projections, ProjectionError> {
        Ok(Projections::with_models(
            Arc::new(store.clone()),
            ModelStore::open_sled(store, ORDER_SUMMARY)?,
            ModelStore::open_sled(store, STOCK_LEVELS)?,
            ModelStore::open_sled(store, DOCUMENT_LISTING)?,
        ))
    }

    /// The read models in the PostgreSQL database (and schema) of `store`,
    /// beside the log, loaded into memory for reading; see
    /// [`ModelStore::open_postgres`]. Several processes may open them: the
    /// runners of one write, the others stand by and follow its commits
    /// ([`RunState::Standby`](crate::RunState::Standby)), so every process
    /// serves reads and [`wait_for`](Self::wait_for).
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(store: &strata_store::PostgresStore) -> Result<Projections, ProjectionError> {
        Ok(Projections::with_models(
            Arc::new(store.clone()),
            ModelStore::open_postgres(store, ORDER_SUMMARY).await?,
            ModelStore::open_postgres(store, STOCK_LEVELS).await?,
            ModelStore::open_postgres(store, DOCUMENT_LISTING).await?,
        ))
    }

    /// The read models in memory, over any store (e.g. a `MemoryStore`).
    pub fn in_memory(store: Arc<dyn EventStore>) -> Result<Projections, ProjectionError> {
        Ok(Projections::with_models(
            store,
            ModelStore::memory(ORDER_SUMMARY)?,
            ModelStore::memory(STOCK_LEVELS)?,
            ModelStore::memory(DOCUMENT_LISTING)?,
        ))
    }

    fn with_models(
        store: Arc<dyn EventStore>,
        orders: ModelStore,
        stock: ModelStore,
        documents: ModelStore,
    ) -> Projections {
        Projections {
            store,
            orders: OrderSummaries::new(orders),
            stock: StockLevels::new(stock),
            documents: DocumentListing::new(documents),
            options: RunnerOptions::default(),
            runners: Mutex::new(Vec::new()),
        }
    }

    /// The same, with these runner options for [`start`](Self::start).
    pub fn with_options(mut self, options: RunnerOptions) -> Projections {
        self.options = options;
        self
    }

    fn parts(&self) -> [(ModelStore, Arc<dyn Projection>); 3] {
        [
            (self.orders.model().clone(), Arc::new(OrderSummaryProjection)),
            (self.stock.model().clone(), Arc::new(StockLevelsProjection)),
            (self.documents.model().clone(), Arc::new(DocumentListingProjection)),
        ]
    }

    /// Every read model's storage (run state, checkpoint), in the order
    /// they are started.
    pub fn models(&self) -> [&ModelStore; 3] {
        [self.orders.model(), self.stock.model(), self.documents.model()]
    }

    /// The order summary.
    pub fn orders(&self) -> &OrderSummaries {
        &self.orders
    }

    /// The stock levels.
    pub fn stock(&self) -> &StockLevels {
        &self.stock
    }

    /// The document listing.
    pub fn documents(&self) -> &DocumentListing {
        &self.documents
    }

    /// Starts the runners in the background (inside a tokio runtime). If
    /// one cannot start, those started are stopped again.
    ///
    /// A read model written by another [model version](Projection::model_version)
    /// of its projection (e.g. an order summary stored before it kept its
    /// status index) is rebuilt first, in one pass for those that need it,
    /// before `start` returns: on a large log that takes a while (it is
    /// logged), once.
    pub async fn start(&self) -> Result<(), ProjectionError> {
        let mut runners = self.runners.lock().await;
        if let Some(running) = runners.iter().find(|r| r.is_running()) {
            return Err(ProjectionError::AlreadyRunning {
                projection: running.name().to_string(),
            });
        }
        runners.clear();
        self.rebuild_other_versions().await?;
        for (model, projection) in self.parts() {
            match ProjectionRunner::start(self.store.clone(), model, projection, self.options).await {
                Ok(runner) => runners.push(runner),
                Err(e) => {
                    for runner in runners.drain(..) {
                        let _ = runner.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the read models that hold events applied by another model
    /// version of their projection than the one this code has.
    async fn rebuild_other_versions(&self) -> Result<(), ProjectionError> {
        let parts = self.parts();
        let mut targets: Vec<(&ModelStore, &dyn Projection)> = Vec::new();
        for (model, projection) in &parts {
            match model.check_model_version(projection.model_version()) {
                Ok(()) => {}
                Err(ProjectionError::ModelVersionMismatch { stored, expected, .. }) => {
                    warn!(
                        projection = model.name(),
                        stored,
                        expected,
                        checkpoint = model.checkpoint(),
                        "read model written by another version of its projection; rebuilding it before starting"
                    );
                    targets.push((model, &**projection));
                }
                Err(e) => return Err(e),
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let mut last_logged = Instant::now();
        // Several processes starting at once (PostgreSQL) queue on the
        // rebuild locks: the ones after the first find the models rebuilt.
        let still_other = |model: &ModelStore, projection: &dyn Projection| {
            model.check_model_version(projection.model_version()).is_err()
        };
        let progress = |p: RebuildProgress| {
            if last_logged.elapsed() >= Duration::from_secs(5) {
                last_logged = Instant::now();
                info!(
                    done = p.done,
                    total = p.total,
                    events_per_sec = p.events_per_sec().round(),
                    remaining = ?p.remaining(),
                    "rebuilding read models"
                );
            }
        };
        let reports = rebuild_all_if(
            &*self.store,
            &targets,
            RebuildOptions::default(),
            progress,
            Some(&still_other),
            Some(self.store.clone()),
        )
        .await?;
        for ((model, projection), report) in targets.iter().zip(reports) {
            info!(
                projection = model.name(),
                model_version = projection.model_version(),
                events = report.events,
                elapsed = ?report.elapsed,
                "read model rebuilt under its projection's model version"
            );
        }
        Ok(())
    }

    /// Stops the runners; returns the first failure one had.
    pub async fn stop(&self) -> Result<(), ProjectionError> {
        let mut first = Ok(());
        for runner in self.runners.lock().await.drain(..) {
            let result = runner.stop().await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    /// The largest lag of the read models: head position minus checkpoint.
    pub async fn lag(&self) -> Result<u64, ProjectionError> {
        let head = self
            .store
            .head_position()
            .await
            .map_err(|e| ProjectionError::store(ORDER_SUMMARY, e))?;
        Ok(head.saturating_sub(self.checkpoint()))
    }

    /// The smallest checkpoint of the read models: all have applied every
    /// event up to it.
    pub fn checkpoint(&self) -> u64 {
        self.models().iter().map(|m| m.checkpoint()).min().unwrap_or(0)
    }

    /// Waits until every read model has applied `position`, within one
    /// `timeout` overall; see [`ModelStore::wait_for`].
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let deadline = Instant::now() + timeout;
        for model in self.models() {
            let left = deadline.saturating_duration_since(Instant::now());
            model.wait_for(position, left).await?;
        }
        Ok(())
    }

    /// Rebuilds every read model from the log in one pass, while the
    /// runners (if started) keep serving the old ones; see
    /// [`rebuild_all`](crate::rebuild_all). The log is read on a task of
    /// its own, a few pages ahead of the fold.
    pub async fn rebuild(
        &self,
        progress: impl FnMut(RebuildProgress) + Send,
    ) -> Result<Vec<RebuildReport>, ProjectionError> {
        let parts = self.parts();
        let targets: Vec<(&ModelStore, &dyn Projection)> = parts.iter().map(|(m, p)| (m, &**p)).collect();
        rebuild_all_if(
            &*self.store,
            &targets,
            RebuildOptions::default(),
            progress,
            None,
            Some(self.store.clone()),
        )
        .await
    }
}
