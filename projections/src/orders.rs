//! The order summary read model: per order its status, customer, total,
//! version and update time; orders per status; the orders of a customer.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use strata_aggregates::decode;
use strata_aggregates::domain::order::{OrderEvent, OrderStatus};
use strata_store::RecordedEvent;
use tracing::warn;

use crate::error::ProjectionError;
use crate::model::{ModelStore, WriteSet};
use crate::projection::Projection;

/// The name of the order summary projection (and of its sled trees).
pub const ORDER_SUMMARY: &str = "order_summary";

/// The stream id prefix of orders.
const ORDER_PREFIX: &str = "order-";

// Keys: `o` order id → OrderSummary; `c` len(customer) u32 BE, customer,
// order id → (); `n` status name → count u64 BE.
const ORDER: u8 = b'o';
const CUSTOMER: u8 = b'c';
const COUNT: u8 = b'n';

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

fn order_key(order_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(order_id.len() + 1);
    k.push(ORDER);
    k.extend_from_slice(order_id.as_bytes());
    k
}

fn customer_prefix(customer: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(customer.len() + 5);
    k.push(CUSTOMER);
    k.extend_from_slice(&(customer.len() as u32).to_be_bytes());
    k.extend_from_slice(customer.as_bytes());
    k
}

fn customer_key(customer: &str, order_id: &str) -> Vec<u8> {
    let mut k = customer_prefix(customer);
    k.extend_from_slice(order_id.as_bytes());
    k
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::New => "new",
        OrderStatus::Placed => "placed",
        OrderStatus::Paid => "paid",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
        OrderStatus::Cancelled => "cancelled",
    }
}

const STATUSES: [OrderStatus; 6] = [
    OrderStatus::New,
    OrderStatus::Placed,
    OrderStatus::Paid,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::Cancelled,
];

fn count_key(status: OrderStatus) -> Vec<u8> {
    let mut k = vec![COUNT];
    k.extend_from_slice(status_name(status).as_bytes());
    k
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
        let n: u64 = ws.get_value(&key)?.unwrap_or(0);
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

    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
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
        summary.status = status;
        summary.version = event.version;
        summary.updated_at = event.recorded_at;
        ws.put_value(key, &summary)
    }
}

/// Reads the order summary (what the HTTP layer serves).
///
/// Every read sees one committed state of the model: never part of a batch,
/// never a half-built rebuild.
#[derive(Clone, Debug)]
pub struct OrderSummaries {
    model: ModelStore,
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
        let mut counts = BTreeMap::new();
        for (key, n) in self.model.scan_prefix_values::<u64>(&[COUNT])? {
            let status = STATUSES
                .into_iter()
                .find(|s| status_name(*s).as_bytes() == &key[1..])
                .ok_or_else(|| ProjectionError::Corrupt {
                    projection: ORDER_SUMMARY.into(),
                    key: String::from_utf8_lossy(&key).into_owned(),
                    detail: "unknown status".into(),
                })?;
            counts.insert(status, n);
        }
        Ok(counts)
    }

    /// How many orders are in `status`.
    pub fn count(&self, status: OrderStatus) -> Result<u64, ProjectionError> {
        Ok(self.model.get_value(&count_key(status))?.unwrap_or(0))
    }

    /// The ids of `customer`'s orders, in id order, from an index (no scan
    /// of all orders).
    pub fn order_ids_of_customer(&self, customer: &str) -> Result<Vec<String>, ProjectionError> {
        let prefix = customer_prefix(customer);
        self.model
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(key, _)| {
                String::from_utf8(key[prefix.len()..].to_vec()).map_err(|_| ProjectionError::Corrupt {
                    projection: ORDER_SUMMARY.into(),
                    key: String::from_utf8_lossy(&key).into_owned(),
                    detail: "order id is not UTF-8".into(),
                })
            })
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

    /// Every order, in id order (for small models, tests and exports).
    pub fn all(&self) -> Result<Vec<OrderSummary>, ProjectionError> {
        Ok(self
            .model
            .scan_prefix_values(&[ORDER])?
            .into_iter()
            .map(|(_, order)| order)
            .collect())
    }
}
