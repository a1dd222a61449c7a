//! Orders: `Place → Placed → Pay → Paid → Ship → Shipped → Deliver →
//! Delivered`, and `Cancel` from Placed or Paid.

use serde::{Deserialize, Serialize};

use crate::codec::DomainEvent;

/// One line of an order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderLine {
    /// The stock item ordered.
    pub sku: String,
    /// How many units (at least 1).
    pub quantity: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Where an order is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not placed yet (the stream has no events).
    #[default]
    New,
    /// Placed; stock reserved; awaiting payment.
    Placed,
    /// Paid in full.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Cancelled before shipment; its reservations were released.
    Cancelled,
}

/// The events of an order stream (`order-{id}`). Variants are only ever
/// added at the end (bincode identifies them by index).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The order was placed.
    OrderPlaced {
        /// The order's id (the stream is `order-{order_id}`).
        order_id: String,
        /// Who placed it.
        customer: String,
        /// What was ordered.
        lines: Vec<OrderLine>,
        /// Sum of quantity × unit price over the lines, in cents.
        total_cents: u64,
    },
    /// The order was paid in full.
    OrderPaid {
        /// The amount paid, equal to the total.
        amount_cents: u64,
    },
    /// The order was shipped.
    OrderShipped {
        /// The carrier's tracking reference, if any.
        tracking: Option<String>,
    },
    /// The order was delivered.
    OrderDelivered,
    /// The order was cancelled.
    OrderCancelled {
        /// Why, if said.
        reason: Option<String>,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderPaid { .. } => "OrderPaid",
            OrderEvent::OrderShipped { .. } => "OrderShipped",
            OrderEvent::OrderDelivered => "OrderDelivered",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}
