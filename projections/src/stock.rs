//! The stock levels read model: per SKU on hand, reserved and available;
//! the SKUs at or below a low-stock threshold.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use strata_aggregates::decode;
use strata_aggregates::domain::stock::StockEvent;
use strata_store::RecordedEvent;
use tracing::warn;

use crate::error::ProjectionError;
use crate::model::{ModelStore, WriteSet};
use crate::projection::Projection;

/// The name of the stock levels projection (and of its sled trees).
pub const STOCK_LEVELS: &str = "stock_levels";

/// The stream id prefix of stock items.
const STOCK_PREFIX: &str = "stock-";

// Keys: `s` sku → StockLevel; `a` available (i64, order-preserving) sku → ()
// (the index behind `low_stock`).
const SKU: u8 = b's';
const AVAILABLE: u8 = b'a';

/// One stock item as the read model shows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StockLevel {
    /// The SKU (its stream is `stock-{sku}`).
    pub sku: String,
    /// Its display name.
    pub name: String,
    /// Units in the warehouse.
    pub on_hand: u64,
    /// Units of those promised to orders.
    pub reserved: u64,
    /// The version of its stream after the last event applied.
    pub version: u64,
    /// When its last event was committed.
    pub updated_at: SystemTime,
}

impl StockLevel {
    /// Units that can still be promised: on hand minus reserved, saturated
    /// into an `i64`. Exact for every item the stock aggregate keeps today
    /// (on hand ≤ `MAX_ON_HAND`); see [`available_exact`](Self::available_exact)
    /// for histories written before that limit.
    pub fn available(&self) -> i64 {
        i64::try_from(self.available_exact()).unwrap_or(if self.on_hand >= self.reserved {
            i64::MAX
        } else {
            i64::MIN
        })
    }

    /// Units that can still be promised, exactly: on hand minus reserved
    /// (negative only if the log says fewer units are on hand than reserved).
    pub fn available_exact(&self) -> i128 {
        i128::from(self.on_hand) - i128::from(self.reserved)
    }
}

fn sku_key(sku: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sku.len() + 1);
    k.push(SKU);
    k.extend_from_slice(sku.as_bytes());
    k
}

/// `i64` as bytes whose order is the numbers' order.
fn ordered(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

fn available_key(available: i64, sku: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sku.len() + 9);
    k.push(AVAILABLE);
    k.extend_from_slice(&ordered(available));
    k.extend_from_slice(sku.as_bytes());
    k
}

fn inconsistent(event: &RecordedEvent, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::Inconsistent {
        stream: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        reason: reason.into(),
    }
}

/// Projects `stock-*` streams into stock levels.
///
/// `StockReserved` adds to reserved, `StockReleased` removes from it,
/// `StockCommitted` removes from both on hand and reserved, `StockAdjusted`
/// sets on hand to the count. Like the aggregate's fold, additions saturate
/// at `u64::MAX` (only a history written before the aggregate's limits gets
/// near it). A SKU is keyed by its stream (`stock-{sku}`), whatever SKU its
/// registration event names. Strict otherwise: an event for a SKU never registered,
/// a SKU registered twice, or a release or commit of more than is there is
/// [`ProjectionError::Inconsistent`] and stops the runner.
#[derive(Clone, Copy, Debug, Default)]
pub struct StockLevelsProjection;

impl Projection for StockLevelsProjection {
    fn name(&self) -> &str {
        STOCK_LEVELS
    }

    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        let Some(sku) = event.stream_id.as_str().strip_prefix(STOCK_PREFIX) else {
            return Ok(());
        };
        let decoded: StockEvent = decode(event).map_err(|source| ProjectionError::Decode {
            stream: event.stream_id.clone(),
            event_type: event.event_type.clone(),
            source,
        })?;
        let key = sku_key(sku);
        let existing: Option<StockLevel> = ws.get_value(&key)?;
        let mut level = match (&decoded, existing) {
            (StockEvent::StockItemRegistered { sku: named, name }, None) => {
                if named != sku {
                    // Written before the repository checked `command_id`:
                    // the stream is the item, whatever the event calls it.
                    warn!(stream = %event.stream_id, named = %named, "a registration names another SKU than its stream; keyed by the stream");
                }
                StockLevel {
                    sku: sku.to_string(),
                    name: name.clone(),
                    on_hand: 0,
                    reserved: 0,
                    version: event.version,
                    updated_at: event.recorded_at,
                }
            }
            (StockEvent::StockItemRegistered { .. }, Some(_)) => {
                return Err(inconsistent(event, "the SKU was already registered"));
            }
            (_, None) => return Err(inconsistent(event, "the SKU was never registered")),
            (_, Some(level)) => {
                ws.delete(available_key(level.available(), sku));
                level
            }
        };
        let short = |what: &str, quantity: u64, have: u64| {
            inconsistent(event, format!("{what} {quantity} units with only {have}"))
        };
        match decoded {
            StockEvent::StockItemRegistered { .. } => {}
            // Saturating, as the stock aggregate's own fold: a history
            // written before its limits may reach u64::MAX.
            StockEvent::StockReceived { quantity } => level.on_hand = level.on_hand.saturating_add(quantity),
            StockEvent::StockReserved { quantity, .. } => level.reserved = level.reserved.saturating_add(quantity),
            StockEvent::StockReleased { quantity, .. } => {
                level.reserved = level
                    .reserved
                    .checked_sub(quantity)
                    .ok_or_else(|| short("releases", quantity, level.reserved))?;
            }
            StockEvent::StockCommitted { quantity, .. } => {
                level.reserved = level
                    .reserved
                    .checked_sub(quantity)
                    .ok_or_else(|| short("commits", quantity, level.reserved))?;
                level.on_hand = level
                    .on_hand
                    .checked_sub(quantity)
                    .ok_or_else(|| short("ships", quantity, level.on_hand))?;
            }
            StockEvent::StockAdjusted { counted, .. } => level.on_hand = counted,
        }
        level.version = event.version;
        level.updated_at = event.recorded_at;
        ws.put(available_key(level.available(), sku), Vec::new());
        ws.put_value(key, &level)
    }
}

/// Reads stock levels (what the HTTP layer serves).
#[derive(Clone, Debug)]
pub struct StockLevels {
    model: ModelStore,
}

impl StockLevels {
    /// Reads the levels kept in `model` (opened under [`STOCK_LEVELS`]).
    pub fn new(model: ModelStore) -> StockLevels {
        StockLevels { model }
    }

    /// The storage underneath (checkpoint, `wait_for`).
    pub fn model(&self) -> &ModelStore {
        &self.model
    }

    /// One SKU's level, if it was registered.
    pub fn get(&self, sku: &str) -> Result<Option<StockLevel>, ProjectionError> {
        self.model.get_value(&sku_key(sku))
    }

    /// The SKUs whose available units are at or below `threshold`, lowest
    /// first, from an index (no scan of all SKUs).
    pub fn low_stock(&self, threshold: i64) -> Result<Vec<StockLevel>, ProjectionError> {
        let from = [AVAILABLE];
        let to = match threshold.checked_add(1) {
            Some(t) => {
                let mut k = vec![AVAILABLE];
                k.extend_from_slice(&ordered(t));
                k
            }
            None => vec![AVAILABLE + 1],
        };
        let mut levels = Vec::new();
        for (key, _) in self.model.range(&from, Some(&to))? {
            let sku = String::from_utf8_lossy(&key[9..]).into_owned();
            // A rebuild swapped in between the two reads may have moved it;
            // the index holds `available()` saturated, so compare exactly.
            if let Some(level) = self.get(&sku)?
                && level.available_exact() <= i128::from(threshold)
            {
                levels.push(level);
            }
        }
        Ok(levels)
    }

    /// Every SKU, in SKU order (for small models, tests and exports).
    pub fn all(&self) -> Result<Vec<StockLevel>, ProjectionError> {
        Ok(self
            .model
            .scan_prefix_values(&[SKU])?
            .into_iter()
            .map(|(_, level)| level)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bytes_sort_like_the_numbers() {
        let mut ns = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let mut keys: Vec<_> = ns.iter().map(|n| ordered(*n)).collect();
        keys.sort();
        ns.sort();
        assert_eq!(keys, ns.iter().map(|n| ordered(*n)).collect::<Vec<_>>());
        assert!(ordered(-1) < ordered(0));
    }
}
