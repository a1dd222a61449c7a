//! The order service: order commands together with their effect on stock,
//! in one atomic multi-stream append.
//!
//! Placing an order reserves every line's units, cancelling releases them,
//! shipping commits them. Each of these appends the order's event and every
//! stock item's event in one [`EventStore::append_multi`]: the order stream
//! at the version its decision read (`NoStream` for a new order) and every
//! SKU stream at the exact version its reservation was decided on. If any
//! SKU moved meanwhile the whole append is refused and decided again on the
//! new state, so two concurrent orders can never reserve the same unit.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::try_join_all;
use strata_store::{
    AppendResult, Classify, ErrorKind, EventStore, ExpectedVersion, Metadata, StoreError, StreamAppend, StreamId,
};
use tracing::{Instrument, field, warn};

use crate::aggregate::Aggregate;
use crate::codec::CodecError;
use crate::domain::order::{Order, OrderCommand, OrderError, OrderEvent, OrderLine};
use crate::domain::stock::{StockCommand, StockError, StockEvent, StockItem};
use crate::error::{Conflict, RepositoryError};
use crate::repository::{Loaded, Progress, Repository};
use crate::retry::RetryPolicy;

/// Why an order service command did not land. Nothing was appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderServiceError {
    /// The order stream is not at the version the caller named (stale
    /// `If-Match`), or every retry lost its race on the order stream.
    ///
    /// Handling: show the caller the current order, its version and the
    /// events since its version. Kind: [`ErrorKind::Conflict`].
    #[error(
        "conflict on order stream {}: decided on version {}, the stream is at {}",
        .0.stream, .0.expected, .0.current
    )]
    Conflict(Box<Conflict<Order>>),

    /// The order refused the command.
    ///
    /// Handling: as [`OrderError`] says. Kind: the refusal's
    /// ([`OrderError::kind`]: a conflict for a duplicate or a refused
    /// transition, invalid input for a wrong payment or bad values).
    #[error(transparent)]
    Rejected(OrderError),

    /// A line names a SKU that is not registered.
    ///
    /// Handling: bad input; nothing was reserved. Kind:
    /// [`ErrorKind::InvalidInput`].
    #[error("unknown SKU {sku}")]
    UnknownSku {
        /// The SKU.
        sku: String,
    },

    /// A stock item refused its part, e.g.
    /// [`StockError::InsufficientStock`].
    ///
    /// Handling: as [`StockError`] says. Kind: the refusal's
    /// ([`StockError::kind`]: a conflict for insufficient stock), except
    /// that a SKU nobody registered is [`ErrorKind::InvalidInput`] here:
    /// the order names it.
    #[error("stock item {sku} refused: {source}")]
    StockRejected {
        /// The SKU.
        sku: String,
        /// Its refusal.
        #[source]
        source: StockError,
    },

    /// Every attempt lost its race on a stock item's stream (a very hot
    /// SKU); the retry policy ran out.
    ///
    /// Handling: transient; the client may send the same request again.
    /// Kind: [`ErrorKind::Unavailable`].
    #[error("stock item {sku} kept changing: gave up after {attempts} attempts")]
    StockContention {
        /// The SKU whose stream kept moving.
        sku: String,
        /// Attempts made.
        attempts: u32,
    },

    /// A stored event cannot be decoded.
    ///
    /// Handling: see [`RepositoryError::Decode`]. Kind: the codec's.
    #[error("cannot decode event {version} of stream {stream}: {source}")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version.
        version: u64,
        /// What failed.
        #[source]
        source: CodecError,
    },

    /// A new event cannot be encoded.
    ///
    /// Handling: a bug. Kind: [`ErrorKind::Internal`].
    #[error("cannot encode an event for stream {stream}: {source}")]
    Encode {
        /// The stream.
        stream: StreamId,
        /// What failed.
        #[source]
        source: CodecError,
    },

    /// The store failed or refused the input (never a version conflict).
    ///
    /// Handling: see [`StoreError`]. Kind: the store error's.
    #[error(transparent)]
    Store(StoreError),
}

impl OrderServiceError {
    /// What kind of failure this is: a conflict on the order stream is
    /// [`ErrorKind::Conflict`]; a refusal has the order's or the stock
    /// item's kind, except that a SKU an order names but nobody registered
    /// is the order's [`ErrorKind::InvalidInput`]; contention on a stock
    /// item is [`ErrorKind::Unavailable`] (the same request may succeed
    /// later); a store error has the store's kind; an event that does not
    /// decode has the codec's kind; one that does not encode is
    /// [`ErrorKind::Internal`] (a bug).
    pub fn kind(&self) -> ErrorKind {
        match self {
            OrderServiceError::Conflict(_) => ErrorKind::Conflict,
            OrderServiceError::Rejected(e) => e.kind(),
            OrderServiceError::UnknownSku { .. } => ErrorKind::InvalidInput,
            OrderServiceError::StockRejected {
                source: StockError::NotRegistered { .. },
                ..
            } => ErrorKind::InvalidInput,
            OrderServiceError::StockRejected { source, .. } => source.kind(),
            OrderServiceError::StockContention { .. } => ErrorKind::Unavailable,
            OrderServiceError::Decode { source, .. } => source.kind(),
            OrderServiceError::Encode { .. } => ErrorKind::Internal,
            OrderServiceError::Store(e) => e.kind(),
        }
    }
}

impl Classify for OrderServiceError {
    fn kind(&self) -> ErrorKind {
        OrderServiceError::kind(self)
    }
}

impl From<RepositoryError<Order>> for OrderServiceError {
    fn from(e: RepositoryError<Order>) -> Self {
        match e {
            RepositoryError::Conflict(c) => OrderServiceError::Conflict(c),
            RepositoryError::Rejected(e) => OrderServiceError::Rejected(e),
            other => from_load_error(other),
        }
    }
}

/// A load error of either repository (loads never reject or conflict).
fn from_load_error<A: Aggregate>(e: RepositoryError<A>) -> OrderServiceError {
    match e {
        RepositoryError::Decode {
            stream,
            version,
            source,
        } => OrderServiceError::Decode {
            stream,
            version,
            source,
        },
        RepositoryError::Encode { stream, source } => OrderServiceError::Encode { stream, source },
        RepositoryError::Store(e) => OrderServiceError::Store(e),
        RepositoryError::Conflict(c) => OrderServiceError::Store(StoreError::WrongExpectedVersion {
            stream: c.stream.clone(),
            expected: ExpectedVersion::Exact(c.expected),
            actual: c.current,
        }),
        RepositoryError::Rejected(e) => OrderServiceError::Store(StoreError::Corrupt {
            location: "order service".into(),
            detail: format!("unexpected refusal while loading: {e}"),
        }),
        e @ RepositoryError::IdMismatch { .. } => OrderServiceError::Store(StoreError::Corrupt {
            location: "order service".into(),
            detail: format!("unexpected refusal while loading: {e}"),
        }),
    }
}

/// What a stock item's part of an order command did.
#[derive(Clone, Debug)]
pub struct StockWrite {
    /// The SKU.
    pub sku: String,
    /// The item after the command.
    pub item: StockItem,
    /// The item's stream version after the command.
    pub version: u64,
    /// The events appended to it.
    pub events: Vec<StockEvent>,
    /// Where they landed.
    pub append: AppendResult,
}

/// What a successful order service command did: everything the HTTP layer
/// needs for `ETag` (the order's `version`) and `Strata-Position`
/// ([`position`](OrderWrite::position)).
#[derive(Clone, Debug)]
pub struct OrderWrite {
    /// The order after the command.
    pub order: Order,
    /// The order stream's version after the command.
    pub version: u64,
    /// The events appended to the order stream.
    pub events: Vec<OrderEvent>,
    /// Where they landed.
    pub append: AppendResult,
    /// The stock items the command changed, in the order of the order's lines.
    pub stock: Vec<StockWrite>,
    /// How many times the command was decided again after a conflict.
    pub retries: u32,
}

impl OrderWrite {
    /// The global position of the last event the command appended, in any
    /// stream: wait for a projection to reach it to read your own write.
    pub fn position(&self) -> u64 {
        self.stock
            .iter()
            .map(|s| s.append.last_position)
            .chain([self.append.last_position])
            .max()
            .unwrap_or(0)
    }
}

/// Order commands with their stock effects, appended atomically.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use strata_aggregates::domain::order::{OrderLine, OrderStatus};
/// use strata_aggregates::domain::service::{OrderService, OrderServiceError};
/// use strata_aggregates::domain::stock::{StockCommand, StockError};
/// use strata_store::MemoryStore;
///
/// let service = OrderService::new(Arc::new(MemoryStore::new()));
/// let stock = service.stock();
/// stock.execute("tea", StockCommand::Register { sku: "tea".into(), name: "Tea".into() }, None).await.unwrap();
/// stock.execute("tea", StockCommand::Receive { quantity: 3 }, None).await.unwrap();
///
/// let line = |quantity| vec![OrderLine { sku: "tea".into(), quantity, unit_price_cents: 250 }];
/// let placed = service.place("o-1", "ada", line(2)).await.unwrap();
/// assert_eq!((placed.order.status(), placed.version), (OrderStatus::Placed, 1));
/// assert_eq!(placed.stock[0].item.reserved(), 2);
///
/// let refused = service.place("o-2", "bob", line(2)).await.unwrap_err();
/// assert!(matches!(refused, OrderServiceError::StockRejected {
///     source: StockError::InsufficientStock { requested: 2, available: 1 }, ..
/// }));
/// # });
/// ```
#[derive(Clone)]
pub struct OrderService {
    orders: Repository<Order>,
    stock: Repository<StockItem>,
}

impl OrderService {
    /// A service over `store` with default repositories (bincode, default
    /// retry policy, no snapshots).
    pub fn new(store: Arc<dyn EventStore>) -> OrderService {
        OrderService {
            orders: Repository::new(store.clone()),
            stock: Repository::new(store),
        }
    }

    /// A service over two repositories that share one store. Retries follow
    /// the order repository's policy; each repository's format and
    /// snapshots apply to its streams.
    pub fn from_repositories(orders: Repository<Order>, stock: Repository<StockItem>) -> OrderService {
        OrderService { orders, stock }
    }

    /// The orders' repository: loads, reads, and the commands without stock
    /// effects (pay, deliver). Place, ship and cancel are refused there
    /// (`OrderError::ServiceOnly`): send them through this service.
    pub fn orders(&self) -> &Repository<Order> {
        &self.orders
    }

    /// The stock items' repository: register, receive, adjust, loads.
    /// Reserve, release and commit are refused there
    /// (`StockError::ServiceOnly`): they happen when this service places,
    /// cancels or ships an order.
    pub fn stock(&self) -> &Repository<StockItem> {
        &self.stock
    }

    fn retry(&self) -> RetryPolicy {
        self.orders.retry_policy()
    }

    /// Places order `order_id` and reserves every line's units, atomically.
    pub async fn place(
        &self,
        order_id: &str,
        customer: &str,
        lines: Vec<OrderLine>,
    ) -> Result<OrderWrite, OrderServiceError> {
        let command = OrderCommand::Place {
            order_id: order_id.to_string(),
            customer: customer.to_string(),
            lines,
        };
        self.execute(order_id, &command, None, &Metadata::default()).await
    }

    /// Pays order `order_id`.
    pub async fn pay(
        &self,
        order_id: &str,
        amount_cents: u64,
        expected: Option<u64>,
    ) -> Result<OrderWrite, OrderServiceError> {
        let command = OrderCommand::Pay { amount_cents };
        self.execute(order_id, &command, expected, &Metadata::default()).await
    }

    /// Ships order `order_id` and commits its reservations, atomically.
    pub async fn ship(
        &self,
        order_id: &str,
        tracking: Option<String>,
        expected: Option<u64>,
    ) -> Result<OrderWrite, OrderServiceError> {
        let command = OrderCommand::Ship { tracking };
        self.execute(order_id, &command, expected, &Metadata::default()).await
    }

    /// Records the delivery of order `order_id`.
    pub async fn deliver(&self, order_id: &str, expected: Option<u64>) -> Result<OrderWrite, OrderServiceError> {
        self.execute(order_id, &OrderCommand::Deliver, expected, &Metadata::default())
            .await
    }

    /// Cancels order `order_id` and releases its reservations, atomically.
    pub async fn cancel(
        &self,
        order_id: &str,
        reason: Option<String>,
        expected: Option<u64>,
    ) -> Result<OrderWrite, OrderServiceError> {
        let command = OrderCommand::Cancel { reason };
        self.execute(order_id, &command, expected, &Metadata::default()).await
    }

    /// Executes any order command with its stock effects, in one atomic
    /// append over the order stream and the stock streams it touches.
    ///
    /// `expected` is the order stream's version the caller decided on (an
    /// `If-Match`): `Some(v)` is never retried when the order stream moved,
    /// `None` retries under the order repository's [`RetryPolicy`]. A
    /// conflict on a stock stream is always retried under that policy (the
    /// caller did not read the stock). `metadata` is recorded on every event.
    pub async fn execute(
        &self,
        order_id: &str,
        command: &OrderCommand,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<OrderWrite, OrderServiceError> {
        if let Some(named) = Order::command_id(command)
            && named != order_id
        {
            return Err(OrderServiceError::Rejected(OrderError::InvalidOrderId {
                order_id: named.to_string(),
                reason: "differs from the order the command is sent to",
            }));
        }
        let stream = Repository::<Order>::stream_id(order_id).map_err(OrderServiceError::Store)?;
        let span = tracing::info_span!(
            "strata.order_service",
            stream = %stream,
            command = %command.kind(),
            expected = field::Empty,
            version = field::Empty,
            retries = field::Empty,
            position = field::Empty,
            outcome = field::Empty,
        );
        if let Some(v) = expected {
            span.record("expected", v);
        }
        let mut progress = Progress::default();
        let result = self
            .execute_in(order_id, &stream, command, expected, metadata, &mut progress)
            .instrument(span.clone())
            .await;
        // Whatever the outcome, what is known: the order stream's version
        // (after the append, or as the last decision read it) and the retries.
        let (outcome, version) = match &result {
            Ok(done) => {
                span.record("position", done.position());
                ("appended", Some(done.version))
            }
            Err(OrderServiceError::Conflict(c)) => ("conflict", Some(c.current)),
            Err(
                OrderServiceError::Rejected(_)
                | OrderServiceError::StockRejected { .. }
                | OrderServiceError::UnknownSku { .. },
            ) => ("rejected", progress.version),
            Err(OrderServiceError::StockContention { .. }) => ("stock_contention", progress.version),
            Err(_) => ("error", progress.version),
        };
        span.record("outcome", outcome);
        span.record("retries", progress.attempts.saturating_sub(1));
        if let Some(v) = version {
            span.record("version", v);
        }
        result
    }

    async fn execute_in(
        &self,
        order_id: &str,
        stream: &StreamId,
        command: &OrderCommand,
        expected: Option<u64>,
        metadata: &Metadata,
        progress: &mut Progress,
    ) -> Result<OrderWrite, OrderServiceError> {
        let mut attempt = 0u32;
        let mut order: Option<Loaded<Order>> = None;
        let mut items: HashMap<String, Loaded<StockItem>> = HashMap::new();
        loop {
            attempt += 1;
            progress.attempts = attempt;
            let current = match order.take() {
                Some(mut loaded) => {
                    self.orders.catch_up(stream, &mut loaded).await?;
                    loaded
                }
                None => self.orders.load_stream(stream).await?,
            };
            progress.version = Some(current.version);
            if let Some(v) = expected
                && current.version != v
            {
                return Err(self.orders.conflict(stream, v, current, attempt).await.into());
            }
            let order_events = current.state.handle(command).map_err(OrderServiceError::Rejected)?;
            let mut order_after = current.state.clone();
            for e in &order_events {
                order_after.apply(e);
            }
            let effects = stock_effects(order_id, command, &current.state);
            self.refresh_items(&effects, &mut items).await?;

            // Decide every stock item's part on its current state.
            let mut parts = Vec::with_capacity(effects.len());
            for (sku, stock_command) in &effects {
                let loaded = &items[sku];
                if !loaded.state.is_registered() && matches!(command, OrderCommand::Place { .. }) {
                    return Err(OrderServiceError::UnknownSku { sku: sku.clone() });
                }
                let events = loaded
                    .state
                    .handle(stock_command)
                    .map_err(|source| OrderServiceError::StockRejected {
                        sku: sku.clone(),
                        source,
                    })?;
                if !events.is_empty() {
                    parts.push((sku.clone(), events));
                }
            }

            // One atomic append: the order, then each stock item.
            let mut appends = Vec::with_capacity(1 + parts.len());
            let mut snapshots = Vec::new();
            let order_new = self
                .orders
                .encode_events(stream, &order_events, metadata)
                .map_err(from_load_error)?;
            let order_version = current.version + order_events.len() as u64;
            if let Some(last) = order_new.last() {
                snapshots.extend(
                    self.orders
                        .snapshot_append(stream, &current, &order_after, order_version, last.id),
                );
            }
            appends.push(StreamAppend::new(
                stream.clone(),
                ExpectedVersion::Exact(current.version).normalized(),
                order_new,
            ));
            let mut stock_after = Vec::with_capacity(parts.len());
            for (sku, events) in &parts {
                let loaded = &items[sku];
                let item_stream = Repository::<StockItem>::stream_id(sku).map_err(OrderServiceError::Store)?;
                let new = self
                    .stock
                    .encode_events(&item_stream, events, metadata)
                    .map_err(from_load_error)?;
                let mut item = loaded.state.clone();
                for e in events {
                    item.apply(e);
                }
                let version = loaded.version + events.len() as u64;
                if let Some(last) = new.last() {
                    snapshots.extend(
                        self.stock
                            .snapshot_append(&item_stream, loaded, &item, version, last.id),
                    );
                }
                appends.push(StreamAppend::new(
                    item_stream,
                    ExpectedVersion::Exact(loaded.version).normalized(),
                    new,
                ));
                stock_after.push((sku.clone(), item, version, events.clone()));
            }

            match self.append(appends, snapshots).await {
                Ok(results) => {
                    let mut results = results.into_iter();
                    let append = results.next().expect("one result per stream");
                    let stock = stock_after
                        .into_iter()
                        .zip(results)
                        .map(|((sku, item, version, events), append)| StockWrite {
                            sku,
                            item,
                            version,
                            events,
                            append,
                        })
                        .collect();
                    return Ok(OrderWrite {
                        order: order_after,
                        version: append.stream_version,
                        events: order_events,
                        append,
                        stock,
                        retries: attempt - 1,
                    });
                }
                Err(StoreError::WrongExpectedVersion { stream: moved, .. }) => {
                    let exhausted = attempt >= self.retry().attempts();
                    if &moved == stream {
                        if expected.is_some() || exhausted {
                            return Err(self
                                .orders
                                .conflict(stream, current.version, current, attempt)
                                .await
                                .into());
                        }
                    } else if exhausted {
                        let sku = moved
                            .as_str()
                            .strip_prefix("stock-")
                            .unwrap_or(moved.as_str())
                            .to_string();
                        return Err(OrderServiceError::StockContention { sku, attempts: attempt });
                    }
                    tokio::time::sleep(self.retry().backoff(attempt)).await;
                    order = Some(current);
                }
                Err(e) => return Err(OrderServiceError::Store(e)),
            }
        }
    }

    /// Loads the stock items of `effects` not loaded yet, and brings the
    /// others up to date, concurrently.
    async fn refresh_items(
        &self,
        effects: &[(String, StockCommand)],
        items: &mut HashMap<String, Loaded<StockItem>>,
    ) -> Result<(), OrderServiceError> {
        let previous: Vec<_> = effects.iter().map(|(sku, _)| (sku, items.remove(sku))).collect();
        let work = previous.into_iter().map(|(sku, previous)| async move {
            let stream = Repository::<StockItem>::stream_id(sku).map_err(OrderServiceError::Store)?;
            let loaded = match previous {
                Some(mut loaded) => {
                    self.stock
                        .catch_up(&stream, &mut loaded)
                        .await
                        .map_err(from_load_error)?;
                    loaded
                }
                None => self.stock.load_stream(&stream).await.map_err(from_load_error)?,
            };
            Ok::<_, OrderServiceError>((sku.clone(), loaded))
        });
        items.extend(try_join_all(work).await?);
        Ok(())
    }

    /// Appends every part in one atomic write, with the snapshots that are
    /// due; a snapshot the store refuses as input is dropped and the parts
    /// are appended alone.
    async fn append(
        &self,
        appends: Vec<StreamAppend>,
        snapshots: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let store = self.orders.store();
        if snapshots.is_empty() {
            return store.append_multi(appends).await;
        }
        let parts = appends.len();
        let mut all = appends.clone();
        all.extend(snapshots);
        match store.append_multi(all).await {
            Ok(mut results) => {
                results.truncate(parts);
                Ok(results)
            }
            Err(e) if e.is_invalid_input() => {
                warn!(error = %e, "the store refused a snapshot; appending without it");
                store.append_multi(appends).await
            }
            Err(e) => Err(e),
        }
    }
}

/// The stock commands an order command implies, one per line's SKU, in the
/// order of the lines. `order` is the order's state before the command.
fn stock_effects(order_id: &str, command: &OrderCommand, order: &Order) -> Vec<(String, StockCommand)> {
    let per_line = |make: &dyn Fn(&OrderLine) -> StockCommand, lines: &[OrderLine]| {
        lines.iter().map(|l| (l.sku.clone(), make(l))).collect()
    };
    match command {
        OrderCommand::Place { lines, .. } => per_line(
            &|l| StockCommand::Reserve {
                order_id: order_id.to_string(),
                quantity: u64::from(l.quantity),
            },
            lines,
        ),
        OrderCommand::Cancel { .. } => per_line(
            &|_| StockCommand::Release {
                order_id: order_id.to_string(),
            },
            order.lines(),
        ),
        OrderCommand::Ship { .. } => per_line(
            &|_| StockCommand::Commit {
                order_id: order_id.to_string(),
            },
            order.lines(),
        ),
        OrderCommand::Pay { .. } | OrderCommand::Deliver => Vec::new(),
    }
}
