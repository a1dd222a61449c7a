//! The order summary read model: per order its status, customer, total,
//! version and update time; orders per status; the orders of a customer;
//! the orders in a status. Read whole or a page at a time.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use strata_aggregates::decode;
use strata_aggregates::domain::order::{OrderEvent, OrderStatus};
use strata_store::RecordedEvent;
use tracing::warn;

use crate::codec::{corrupt, decode_value, prefix_end};
use crate::error::ProjectionError;
use crate::model::reader::ModelReader;
use crate::model::store::ModelStore;
use crate::model::write_set::WriteSet;
use crate::projection::{Projection, deleted_stream};

mod keys;

use keys::{COUNT, ORDER, after_key, count_key, customer_key, customer_prefix, order_key, status_key, status_prefix};

/// The name of the order summary projection (and of its sled trees).
pub const ORDER_SUMMARY: &str = "order_summary";

/// The stream id prefix of orders.
const ORDER_PREFIX: &str = "order-";

/// The order summary's model version (see [`Projection::model_version`]):
/// 1 since it keeps the status index. A model stored before (version 0)
/// has no status index; it is rebuilt before a runner follows it, and
/// pages by status refuse to read it.
const MODEL_VERSION: u64 = 1;

/// With both a customer and a status, a page examines at most this many
/// times `limit` of the customer's orders (see [`OrderSummaries::page`]).
pub const CUSTOMER_STATUS_SCAN_FACTOR: usize = 10;

/// One order as the summary shows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderSummary {
    /// The order's id (its stream is `order-{order_id}`).
    pub order_id: String,
    /// Who placed it.
    pub customer: String,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Its total, in cents.
    pub total_cents: u64,
    /// How many lines it has.
    pub lines: usize,
    /// The version of its stream after the last event applied (an `ETag`).
    pub version: u64,
    /// When it was placed (the store's commit time of `OrderPlaced`).
    pub placed_at: SystemTime,
    /// When its last event was committed.
    pub updated_at: SystemTime,
}

/// Projects `order-*` streams into the order summary.
///
/// An order is keyed by its stream (`order-{id}`), whatever id its
/// `OrderPlaced` names. Strict: an order placed twice, or an event for an
/// order that was never placed, is [`ProjectionError::Inconsistent`] and stops the runner, since
/// the model would otherwise quietly disagree with the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderSummaryProjection;

impl OrderSummaryProjection {
    fn bump(ws: &mut WriteSet, status: OrderStatus, up: bool, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let key = count_key(status);
        let n: u64 = ws.get_value(key)?.unwrap_or(0);
        let n = if up {
            n + 1
        } else {
            n.checked_sub(1)
                .ok_or_else(|| inconsistent(event, "a status count would drop below zero"))?
        };
        if n == 0 {
            ws.delete(key);
            Ok(())
        } else {
            ws.put_value(key, &n)
        }
    }
}

impl OrderSummaryProjection {
    /// Removes everything the model keeps of `order_id` (nothing when it
    /// has nothing: a delete of an order never placed, or seen in a rebuild).
    fn forget(ws: &mut WriteSet, order_id: &str, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let key = order_key(order_id);
        let Some(summary) = ws.get_value::<OrderSummary>(&key)? else {
            return Ok(());
        };
        ws.delete(customer_key(&summary.customer, order_id));
        ws.delete(status_key(summary.status, order_id));
        ws.delete(key);
        Self::bump(ws, summary.status, false, event)
    }
}

fn inconsistent(event: &RecordedEvent, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::Inconsistent {
        stream: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        reason: reason.into(),
    }
}

impl Projection for OrderSummaryProjection {
    fn name(&self) -> &str {
        ORDER_SUMMARY
    }

    /// 1: the model keeps a status index (version 0 did not).
    fn model_version(&self) -> u64 {
        MODEL_VERSION
    }

    /// Drops a deleted order (soft or hard): its summary, its index
    /// entries and its count, so the model equals a rebuild, which never
    /// sees the order's removed events.
    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        if let Some(deleted) = deleted_stream(event) {
            return match deleted.as_str().strip_prefix(ORDER_PREFIX) {
                Some(order_id) => Self::forget(ws, order_id, event),
                None => Ok(()),
            };
        }
        let Some(order_id) = event.stream_id.as_str().strip_prefix(ORDER_PREFIX) else {
            return Ok(());
        };
        let decoded: OrderEvent = decode(event).map_err(|source| ProjectionError::Decode {
            stream: event.stream_id.clone(),
            event_type: event.event_type.clone(),
            source,
        })?;
        let key = order_key(order_id);
        let existing: Option<OrderSummary> = ws.get_value(&key)?;
        let status = match decoded {
            OrderEvent::OrderPlaced {
                order_id: placed_id,
                customer,
                lines,
                total_cents,
            } => {
                if placed_id != order_id {
                    // Written before the repository checked `command_id`:
                    // the stream is the order, whatever the event calls it.
                    warn!(stream = %event.stream_id, named = %placed_id, "an order placed under another id than its stream; keyed by the stream");
                }
                if existing.is_some() {
                    return Err(inconsistent(event, "the order was already placed"));
                }
                let summary = OrderSummary {
                    order_id: order_id.to_string(),
                    customer,
                    status: OrderStatus::Placed,
                    total_cents,
                    lines: lines.len(),
                    version: event.version,
                    placed_at: event.recorded_at,
                    updated_at: event.recorded_at,
                };
                ws.put(customer_key(&summary.customer, order_id), Vec::new());
                ws.put(status_key(OrderStatus::Placed, order_id), Vec::new());
                ws.put_value(key, &summary)?;
                return Self::bump(ws, OrderStatus::Placed, true, event);
            }
            OrderEvent::OrderPaid { .. } => OrderStatus::Paid,
            OrderEvent::OrderShipped { .. } => OrderStatus::Shipped,
            OrderEvent::OrderDelivered => OrderStatus::Delivered,
            OrderEvent::OrderCancelled { .. } => OrderStatus::Cancelled,
        };
        let mut summary = existing.ok_or_else(|| inconsistent(event, "the order was never placed"))?;
        Self::bump(ws, summary.status, false, event)?;
        Self::bump(ws, status, true, event)?;
        ws.delete(status_key(summary.status, order_id));
        ws.put(status_key(status, order_id), Vec::new());
        summary.status = status;
        summary.version = event.version;
        summary.updated_at = event.recorded_at;
        ws.put_value(key, &summary)
    }
}

/// Which orders a page of the order summary holds (see
/// [`OrderSummaries::page`]); the default holds every order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only this customer's orders.
    pub customer: Option<String>,
}

/// One page of the order summary, read from one generation of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderPage {
    /// The orders, in id order (the byte order of their UTF-8).
    pub orders: Vec<OrderSummary>,
    /// Where the next page starts: pass it as `after` with the same
    /// filter. `None` on the last page.
    pub next: Option<String>,
    /// How many orders are in each status, over all orders (statuses with
    /// none are absent), from the same generation as the page.
    pub counts: BTreeMap<OrderStatus, u64>,
    /// The generation the page was read from.
    pub generation: u64,
}

/// Reads the order summary (what the HTTP layer serves).
///
/// Every read sees one committed state of the model: never part of a batch,
/// never a half-built rebuild.
#[derive(Clone, Debug)]
pub struct OrderSummaries {
    model: ModelStore,
}

fn order_id_of(key: &[u8], prefix_len: usize) -> Result<String, ProjectionError> {
    let id = key.get(prefix_len..).ok_or_else(|| {
        corrupt(
            ORDER_SUMMARY,
            key,
            format!("a key shorter than its {prefix_len}-byte prefix"),
        )
    })?;
    String::from_utf8(id.to_vec()).map_err(|_| corrupt(ORDER_SUMMARY, key, "order id is not UTF-8"))
}

fn counts_of(reader: &ModelReader) -> Result<BTreeMap<OrderStatus, u64>, ProjectionError> {
    let mut counts = BTreeMap::new();
    // At most one key per status.
    for (key, value) in reader.range_limit(&[COUNT], Some(&[COUNT + 1]), usize::MAX)? {
        let status = OrderStatus::ALL
            .into_iter()
            .find(|s| key.get(1..) == Some(s.as_str().as_bytes()))
            .ok_or_else(|| corrupt(ORDER_SUMMARY, &key, "unknown status"))?;
        counts.insert(status, decode_value(ORDER_SUMMARY, &key, &value)?);
    }
    Ok(counts)
}

impl OrderSummaries {
    /// Reads the summary kept in `model` (opened under [`ORDER_SUMMARY`]).
    pub fn new(model: ModelStore) -> OrderSummaries {
        OrderSummaries { model }
    }

    /// The storage underneath (checkpoint, `wait_for`).
    pub fn model(&self) -> &ModelStore {
        &self.model
    }

    /// One order, if it was placed.
    pub fn get(&self, order_id: &str) -> Result<Option<OrderSummary>, ProjectionError> {
        self.model.get_value(&order_key(order_id))
    }

    /// How many orders are in each status (statuses with none are absent).
    pub fn counts(&self) -> Result<BTreeMap<OrderStatus, u64>, ProjectionError> {
        counts_of(&self.model.reader())
    }

    /// How many orders are in `status`.
    pub fn count(&self, status: OrderStatus) -> Result<u64, ProjectionError> {
        Ok(self.model.get_value(count_key(status))?.unwrap_or(0))
    }

    /// The ids of `customer`'s orders, in id order, from an index (no scan
    /// of all orders).
    pub fn order_ids_of_customer(&self, customer: &str) -> Result<Vec<String>, ProjectionError> {
        let prefix = customer_prefix(customer);
        self.model
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(key, _)| order_id_of(&key, prefix.len()))
            .collect()
    }

    /// `customer`'s orders, in id order.
    pub fn orders_of_customer(&self, customer: &str) -> Result<Vec<OrderSummary>, ProjectionError> {
        let mut orders = Vec::new();
        for id in self.order_ids_of_customer(customer)? {
            // A rebuild swapped in between the two reads may have dropped it.
            if let Some(order) = self.get(&id)? {
                orders.push(order);
            }
        }
        Ok(orders)
    }

    /// Every order, in id order (for small models, tests and exports; a
    /// server pages with [`page`](Self::page)).
    pub fn all(&self) -> Result<Vec<OrderSummary>, ProjectionError> {
        Ok(self
            .model
            .scan_prefix_values(&[ORDER])?
            .into_iter()
            .map(|(_, order)| order)
            .collect())
    }

    /// One page of the orders that `filter` selects, in id order: at most
    /// `limit` (at least 1) orders with an id greater than `after`, with
    /// the cursor of the next page and the counts per status, all read
    /// from one generation of the model.
    ///
    /// Each filter reads one ordered key range, from just after `after`,
    /// however large the model:
    ///
    /// - no filter: the orders themselves, at most `limit` + 1;
    /// - `status`: the status index, at most `limit` + 1 keys, and each
    ///   order they name;
    /// - `customer`: the customer index, the same way;
    /// - `customer` and `status`: the customer index, keeping the orders
    ///   in `status`. Such a page examines at most
    ///   [`CUSTOMER_STATUS_SCAN_FACTOR`] × `limit` of the customer's
    ///   orders, so it may hold fewer than `limit` orders (none, even) and
    ///   still have a `next`: keep paging until `next` is `None`.
    ///
    /// A page is not a snapshot of the whole walk: an order that changes
    /// status between two pages of a `status` filter may be missed or
    /// shown twice. Every order placed before the walk and not moved out
    /// of the filter meanwhile is on exactly one page.
    ///
    /// Errors with [`ProjectionError::ModelVersionMismatch`] for a
    /// `status` filter (without `customer`) on a model stored before the
    /// status index existed (a rebuild adds it; `Projections::start`
    /// rebuilds such a model on its own), rather than answer with no
    /// orders.
    pub fn page(&self, filter: &OrderFilter, after: Option<&str>, limit: usize) -> Result<OrderPage, ProjectionError> {
        let limit = limit.max(1);
        let reader = self.model.reader();
        let (prefix, budget) = match (&filter.customer, filter.status) {
            (Some(customer), Some(_)) => (
                customer_prefix(customer),
                limit.saturating_mul(CUSTOMER_STATUS_SCAN_FACTOR),
            ),
            (Some(customer), None) => (customer_prefix(customer), limit),
            (None, Some(status)) => {
                let stored = reader.model_version()?;
                if stored < MODEL_VERSION && reader.checkpoint()? > 0 {
                    return Err(ProjectionError::ModelVersionMismatch {
                        projection: ORDER_SUMMARY.into(),
                        stored,
                        expected: MODEL_VERSION,
                    });
                }
                (status_prefix(status), limit)
            }
            (None, None) => (vec![ORDER], limit),
        };
        let index = prefix[0] != ORDER;
        let end = prefix_end(&prefix);
        let mut from = match after {
            Some(after) => after_key([&prefix[..], after.as_bytes()].concat()),
            None => prefix.clone(),
        };
        let mut orders = Vec::new();
        let mut examined = 0;
        let mut last = None;
        let next = 'walk: loop {
            // Read no more keys than could still go on the page, plus the
            // one that says whether another page follows.
            let want = (budget - examined).min(limit - orders.len()).saturating_add(1);
            let chunk = reader.range_limit(&from, end.as_deref(), want)?;
            for (key, value) in &chunk {
                if orders.len() == limit || examined == budget {
                    break 'walk last;
                }
                examined += 1;
                let id = order_id_of(key, prefix.len())?;
                let order: Option<OrderSummary> = if index {
                    // The index and the order are committed together, but
                    // a commit may fall between the two reads: check again.
                    reader.get_value(&order_key(&id))?
                } else {
                    Some(decode_value(ORDER_SUMMARY, key, value)?)
                };
                if let Some(order) = order
                    && filter.status.is_none_or(|s| order.status == s)
                {
                    orders.push(order);
                }
                last = Some(id);
            }
            match chunk.last() {
                Some((key, _)) if chunk.len() == want => from = after_key(key.clone()),
                _ => break None,
            }
        };
        Ok(OrderPage {
            orders,
            next,
            counts: counts_of(&reader)?,
            generation: reader.generation(),
        })
    }
}
