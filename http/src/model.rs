//! The JSON shapes of requests and responses.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use strata_aggregates::domain::order::{Order, OrderLine};
use strata_aggregates::domain::stock::{StockCommandKind, StockItem};
use strata_aggregates::{DomainEvent, EventEnvelope};
use strata_projections::{OrderSummary, StockLevel};
use strata_store::{AppendResult, Metadata, RecordedEvent};
use utoipa::ToSchema;
use uuid::Uuid;

/// RFC 3339 in UTC, microseconds.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

// ---------- requests ----------

/// `POST /orders`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The order's id; the server makes one up when absent.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Who places it (not empty).
    pub customer: String,
    /// 1 to 100 lines, one per SKU.
    pub lines: Vec<Line>,
}

/// One order line.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// A registered SKU.
    pub sku: String,
    /// Units, at least 1 (at most 1,000,000,000: a reservation's limit).
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "crate::json::integer::int32")]
    pub quantity: u32,
    /// Price of one unit, in cents.
    #[serde(deserialize_with = "crate::json::integer::int64")]
    pub unit_price_cents: u64,
}

/// `POST /orders/{id}/pay`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayOrder {
    /// The amount paid, equal to the order's total.
    #[serde(deserialize_with = "crate::json::integer::int64")]
    pub amount_cents: u64,
    /// The order version this was decided on (alternative to If-Match).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub expected_version: Option<u64>,
}

/// `POST /orders/{id}/ship` (body optional).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipOrder {
    /// The carrier's tracking reference.
    #[serde(default)]
    pub tracking: Option<String>,
    /// The order version this was decided on (alternative to If-Match).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub expected_version: Option<u64>,
}

/// `POST /orders/{id}/deliver` (body optional).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverOrder {
    /// The order version this was decided on (alternative to If-Match).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub expected_version: Option<u64>,
}

/// `POST /orders/{id}/cancel` (body optional).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// The order version this was decided on (alternative to If-Match).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub expected_version: Option<u64>,
}

/// `POST /stock`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStock {
    /// The SKU (the stream is `stock-{sku}`).
    pub sku: String,
    /// A display name (not empty).
    pub name: String,
}

/// `POST /stock/{sku}/receive`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveStock {
    /// Units received, 1 to 1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "crate::json::integer::int64")]
    pub quantity: u64,
    /// The item version this was decided on (alternative to If-Match).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub expected_version: Option<u64>,
}

/// `POST /stock/{sku}/adjust`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStock {
    /// Units counted: the new on-hand figure (not below the reserved units).
    #[serde(deserialize_with = "crate::json::integer::int64")]
    pub counted: u64,
    /// The item version this was decided on (alternative to If-Match).
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub expected_version: Option<u64>,
}

/// One event of `POST /streams/{stream}`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventBody {
    /// The event's id, chosen by the client: a retry with the same ids is
    /// answered from the log instead of appending again.
    pub event_id: Uuid,
    /// The type name, e.g. `NoteAdded`: 1..=256 bytes, no control characters.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub event_type: String,
    /// The payload, any JSON value.
    pub data: Value,
    /// Correlation, causation and extra values.
    #[serde(default)]
    pub metadata: Option<MetadataBody>,
}

/// Event metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataBody {
    /// The id shared by everything done for one request or flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of what caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Further string values (keys starting with `strata.` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl From<&Metadata> for MetadataBody {
    fn from(m: &Metadata) -> Self {
        MetadataBody {
            correlation_id: m.correlation_id.clone(),
            causation_id: m.causation_id.clone(),
            extra: m.extra.clone(),
        }
    }
}

// ---------- responses ----------

/// An order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// Its id.
    pub order_id: String,
    /// Who placed it.
    pub customer: String,
    /// `placed`, `paid`, `shipped`, `delivered` or `cancelled`.
    pub status: String,
    /// Its lines.
    pub lines: Vec<Line>,
    /// The total, in cents.
    pub total_cents: u64,
    /// What was paid.
    pub paid_cents: u64,
    /// The tracking reference, once shipped.
    pub tracking: Option<String>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// The order's version (also the ETag).
    pub version: u64,
    /// The commands the order accepts now.
    pub allowed_commands: Vec<String>,
}

impl OrderView {
    pub(crate) fn new(order: &Order, version: u64) -> OrderView {
        OrderView {
            order_id: order.id().to_string(),
            customer: order.customer().to_string(),
            status: order.status().to_string(),
            lines: order.lines().iter().map(Line::from).collect(),
            total_cents: order.total_cents(),
            paid_cents: order.paid_cents(),
            tracking: order.tracking().map(str::to_string),
            cancel_reason: order.cancel_reason().map(str::to_string),
            version,
            allowed_commands: order.allowed_commands().iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl From<&OrderLine> for Line {
    fn from(l: &OrderLine) -> Self {
        Line {
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price_cents: l.unit_price_cents,
        }
    }
}

/// A stock item.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StockView {
    /// The SKU.
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Units in the warehouse.
    pub on_hand: u64,
    /// Units promised to orders.
    pub reserved: u64,
    /// On hand minus reserved.
    pub available: u64,
    /// Open reservations by order id.
    pub reservations: BTreeMap<String, u64>,
    /// The item's version (also the ETag).
    pub version: u64,
    /// The commands of this resource's routes that can succeed now
    /// (reservations move only through orders).
    pub allowed_commands: Vec<String>,
}

impl StockView {
    pub(crate) fn new(item: &StockItem, version: u64) -> StockView {
        StockView {
            sku: item.sku().to_string(),
            name: item.name().to_string(),
            on_hand: item.on_hand(),
            reserved: item.reserved(),
            available: item.available(),
            reservations: item.reservations().clone(),
            version,
            allowed_commands: item
                .allowed_commands()
                .iter()
                .filter(|c| {
                    matches!(
                        c,
                        StockCommandKind::Register | StockCommandKind::Receive | StockCommandKind::Adjust
                    )
                })
                .map(|c| c.to_string())
                .collect(),
        }
    }
}

/// An event as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Its id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// When it was committed (RFC 3339).
    pub recorded_at: String,
    /// The payload, when it is JSON (passed through as it is stored): any
    /// JSON value, as `data` on append takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value, required = false)]
    pub data: Option<Box<RawValue>>,
    /// The payload, base64, when it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Its metadata (absent on decoded domain events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataBody>,
}

impl EventView {
    /// A log event: JSON payloads as they are, others base64.
    pub(crate) fn from_recorded(e: &RecordedEvent) -> EventView {
        // Checked as JSON without building a tree of it.
        let (data, data_base64) = match serde_json::from_slice::<Box<RawValue>>(&e.payload) {
            Ok(v) => (Some(v), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&e.payload))),
        };
        EventView {
            event_id: e.id.to_string(),
            event_type: e.event_type.clone(),
            stream: e.stream_id.to_string(),
            version: e.version,
            position: e.position,
            recorded_at: timestamp(e.recorded_at),
            data,
            data_base64,
            metadata: Some(MetadataBody::from(&e.metadata)),
        }
    }

    /// A decoded domain event: `data` holds the variant's fields.
    pub(crate) fn from_envelope<E: DomainEvent>(e: &EventEnvelope<E>) -> EventView {
        let value = serde_json::to_value(&e.event).unwrap_or(Value::Null);
        let data = match value {
            Value::Object(mut map) if map.len() == 1 && map.contains_key(&e.event_type) => {
                map.remove(&e.event_type).unwrap_or(Value::Null)
            }
            Value::String(s) if s == e.event_type => Value::Object(Default::default()),
            other => other,
        };
        EventView {
            event_id: e.id.to_string(),
            event_type: e.event_type.clone(),
            stream: e.stream_id.to_string(),
            version: e.version,
            position: e.position,
            recorded_at: timestamp(e.recorded_at),
            data: serde_json::value::to_raw_value(&data).ok(),
            data_base64: None,
            metadata: None,
        }
    }
}

/// Events of one stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    /// The stream.
    pub stream: String,
    /// The stream's version (also the ETag): its number of events.
    pub version: u64,
    /// The events read.
    pub events: Vec<EventView>,
    /// The `from` of the next page, when there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_from: Option<u64>,
}

/// What an append to the log did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AppendView {
    /// The stream.
    pub stream: String,
    /// The stream's version after the append (also the ETag).
    pub stream_version: u64,
    /// The position of its first event.
    pub first_position: u64,
    /// The position of its last event (also `Strata-Position`).
    pub last_position: u64,
}

impl AppendView {
    pub(crate) fn new(stream: &str, r: &AppendResult) -> AppendView {
        AppendView {
            stream: stream.to_string(),
            stream_version: r.stream_version,
            first_position: r.first_position,
            last_position: r.last_position,
        }
    }
}

/// One order of the order summary read model.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderSummaryView {
    /// The order's id.
    pub order_id: String,
    /// Who placed it.
    pub customer: String,
    /// Its status.
    pub status: String,
    /// Its total, in cents.
    pub total_cents: u64,
    /// How many lines.
    pub lines: usize,
    /// Its version as applied.
    pub version: u64,
    /// When it was placed.
    pub placed_at: String,
    /// When it last changed.
    pub updated_at: String,
}

impl From<&OrderSummary> for OrderSummaryView {
    fn from(s: &OrderSummary) -> Self {
        OrderSummaryView {
            order_id: s.order_id.clone(),
            customer: s.customer.clone(),
            status: s.status.to_string(),
            total_cents: s.total_cents,
            lines: s.lines,
            version: s.version,
            placed_at: timestamp(s.placed_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

/// `GET /views/orders`: one page.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrdersView {
    /// The position the read model had applied when read (also `Strata-Position`).
    pub position: u64,
    /// The orders of this page, by id.
    pub orders: Vec<OrderSummaryView>,
    /// Orders per status, over all orders (not only this page's or the filter's).
    pub counts: BTreeMap<String, u64>,
    /// The `after` of the next page (the last order id this page looked
    /// at); absent on the last page. With both `customer` and `status` a
    /// page may hold fewer than `limit` orders, even none, and still have
    /// a `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One item of the stock levels read model.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StockLevelView {
    /// The SKU.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Units on hand.
    pub on_hand: u64,
    /// Units reserved.
    pub reserved: u64,
    /// On hand minus reserved (negative if a count found fewer than reserved).
    pub available: i64,
    /// Its version as applied.
    pub version: u64,
    /// When it last changed.
    pub updated_at: String,
}

impl From<&StockLevel> for StockLevelView {
    fn from(s: &StockLevel) -> Self {
        StockLevelView {
            sku: s.sku.clone(),
            name: s.name.clone(),
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available(),
            version: s.version,
            updated_at: timestamp(s.updated_at),
        }
    }
}

/// `GET /views/stock`: one page.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StockLevelsView {
    /// The position the read model had applied when read (also `Strata-Position`).
    pub position: u64,
    /// The items of this page, by SKU (with `low`: those at or below it,
    /// fewest available first, then by SKU).
    pub items: Vec<StockLevelView>,
    /// The `after` of the next page: the last SKU of this page, or with
    /// `low` `<available>:<sku>` of its last item; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The log's newest position.
    pub head_position: u64,
    /// The position every read model has applied.
    pub read_model_position: u64,
    /// Events not yet applied.
    pub lag: u64,
}
