//! Stock items, one stream per SKU (`stock-{sku}`): on hand ≥ 0, reserved ≤
//! on hand, one reservation per order id.

use serde::{Deserialize, Serialize};

use crate::codec::DomainEvent;

/// The events of a stock item stream. Variants are only ever added at the
/// end (bincode identifies them by index).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StockEvent {
    /// The SKU was registered, with nothing on hand.
    StockItemRegistered {
        /// The SKU (the stream is `stock-{sku}`).
        sku: String,
        /// A display name.
        name: String,
    },
    /// Units arrived.
    StockReceived {
        /// How many (at least 1).
        quantity: u64,
    },
    /// Units were reserved for an order.
    StockReserved {
        /// The order.
        order_id: String,
        /// How many.
        quantity: u64,
    },
    /// An order's reservation was released (the order was cancelled).
    StockReleased {
        /// The order.
        order_id: String,
        /// How many units were released.
        quantity: u64,
    },
    /// An order's reservation left the warehouse (the order shipped): on hand
    /// and reserved both drop by the quantity.
    StockCommitted {
        /// The order.
        order_id: String,
        /// How many units.
        quantity: u64,
    },
    /// A count found a different number on hand.
    StockAdjusted {
        /// The number counted, now on hand.
        counted: u64,
        /// Counted minus the previous on-hand figure.
        delta: i64,
    },
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::StockItemRegistered { .. } => "StockItemRegistered",
            StockEvent::StockReceived { .. } => "StockReceived",
            StockEvent::StockReserved { .. } => "StockReserved",
            StockEvent::StockReleased { .. } => "StockReleased",
            StockEvent::StockCommitted { .. } => "StockCommitted",
            StockEvent::StockAdjusted { .. } => "StockAdjusted",
        }
    }
}
