//! The stock levels read model: per SKU on hand, reserved and available;
//! the SKUs at or below a low-stock threshold.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use strata_aggregates::decode;
use strata_aggregates::domain::stock::StockEvent;
use strata_store::RecordedEvent;
use tracing::warn;

use crate::codec::{corrupt, decode_value};
use crate::error::ProjectionError;
use crate::model::reader::ModelReader;
use crate::model::store::ModelStore;
use crate::model::write_set::WriteSet;
use crate::projection::{Projection, deleted_stream};

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

/// The number [`ordered`] made these bytes of.
fn unordered(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
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

    /// Drops a deleted stock item (soft or hard): its level and its place
    /// in the low-stock index, so the model equals a rebuild.
    fn apply(&self, event: &RecordedEvent, ws: &mut WriteSet) -> Result<(), ProjectionError> {
        if let Some(deleted) = deleted_stream(event) {
            if let Some(sku) = deleted.as_str().strip_prefix(STOCK_PREFIX) {
                let key = sku_key(sku);
                if let Some(level) = ws.get_value::<StockLevel>(&key)? {
                    ws.delete(available_key(level.available(), sku));
                    ws.delete(key);
                }
            }
            return Ok(());
        }
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

/// One page of the stock levels, read from one generation of the model.
/// `C` is the cursor type of the walk: a SKU ([`StockLevels::page`]) or a
/// [`LowStockCursor`] ([`StockLevels::low_stock_page`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockPage<C = String> {
    /// The items, in the walk's order.
    pub items: Vec<StockLevel>,
    /// Where the next page starts: pass it as `after`. `None` on the last page.
    pub next: Option<C>,
    /// The generation the page was read from.
    pub generation: u64,
}

/// Where a page of low stock ends: the items come fewest available first,
/// then by SKU, so a cursor names both. Written and parsed as
/// `<available>:<sku>` (e.g. `3:tea`; the SKU may hold `:` itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LowStockCursor {
    /// The available units of the last item of the page, as its index
    /// holds them ([`StockLevel::available`], saturated into an `i64`).
    pub available: i64,
    /// Its SKU.
    pub sku: String,
}

impl fmt::Display for LowStockCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.available, self.sku)
    }
}

impl FromStr for LowStockCursor {
    type Err = ProjectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ProjectionError::InvalidCursor {
            cursor: s.to_string(),
            expected: "<available units>:<sku>, the next of the previous page",
        };
        let (available, sku) = s.split_once(':').ok_or_else(invalid)?;
        Ok(LowStockCursor {
            available: available.parse().map_err(|_| invalid())?,
            sku: sku.to_string(),
        })
    }
}

/// Reads stock levels (what the HTTP layer serves).
#[derive(Clone, Debug)]
pub struct StockLevels {
    model: ModelStore,
}

/// The key that bounds the low-stock index at `threshold` (exclusive).
fn low_stock_end(threshold: i64) -> Vec<u8> {
    match threshold.checked_add(1) {
        Some(t) => {
            let mut k = vec![AVAILABLE];
            k.extend_from_slice(&ordered(t));
            k
        }
        None => vec![AVAILABLE + 1],
    }
}

/// The available units and the SKU of a low-stock index key; a key too
/// short to hold the units is [`ProjectionError::Corrupt`].
fn low_stock_entry(key: &[u8]) -> Result<(i64, String), ProjectionError> {
    let units = key
        .get(1..9)
        .and_then(|units| <[u8; 8]>::try_from(units).ok())
        .ok_or_else(|| {
            corrupt(
                STOCK_LEVELS,
                key,
                format!(
                    "an availability index key holds 1 + 8 bytes and the SKU, found {} bytes",
                    key.len()
                ),
            )
        })?;
    Ok((unordered(units), String::from_utf8_lossy(&key[9..]).into_owned()))
}

/// The level of `sku`, if it is still at or below `threshold`: a commit may
/// fall between the read of the index and this one, and the index holds
/// `available()` saturated, so compare exactly.
fn low_level(reader: &ModelReader, sku: &str, threshold: i64) -> Result<Option<StockLevel>, ProjectionError> {
    Ok(reader
        .get_value::<StockLevel>(&sku_key(sku))?
        .filter(|level| level.available_exact() <= i128::from(threshold)))
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
        let reader = self.model.reader();
        let mut levels = Vec::new();
        for (key, _) in reader.range_limit(&[AVAILABLE], Some(&low_stock_end(threshold)), usize::MAX)? {
            let (_, sku) = low_stock_entry(&key)?;
            if let Some(level) = low_level(&reader, &sku, threshold)? {
                levels.push(level);
            }
        }
        Ok(levels)
    }

    /// Every SKU, in SKU order (for small models, tests and exports; a
    /// server pages with [`page`](Self::page)).
    pub fn all(&self) -> Result<Vec<StockLevel>, ProjectionError> {
        Ok(self
            .model
            .scan_prefix_values(&[SKU])?
            .into_iter()
            .map(|(_, level)| level)
            .collect())
    }

    /// One page of every SKU, in SKU order (the byte order of their UTF-8):
    /// at most `limit` (at least 1) items with a SKU greater than `after`,
    /// and the SKU to pass as `after` for the next page. Reads at most
    /// `limit` + 1 items, from one generation.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Result<StockPage, ProjectionError> {
        let limit = limit.max(1);
        let reader = self.model.reader();
        let from = match after {
            Some(sku) => {
                let mut k = sku_key(sku);
                k.push(0);
                k
            }
            None => vec![SKU],
        };
        let mut entries = reader.range_limit(&from, Some(&[SKU + 1]), limit.saturating_add(1))?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let items = entries
            .iter()
            .map(|(k, v)| decode_value::<StockLevel>(STOCK_LEVELS, k, v))
            .collect::<Result<Vec<_>, _>>()?;
        let last = entries
            .last()
            .map(|(k, _)| String::from_utf8_lossy(&k[1..]).into_owned());
        Ok(StockPage {
            next: if more { last } else { None },
            items,
            generation: reader.generation(),
        })
    }

    /// One page of [`low_stock`](Self::low_stock): the SKUs with at most
    /// `threshold` units available, fewest first, then by SKU, after the
    /// cursor `after`; at most `limit` (at least 1) of them, and the cursor
    /// of the next page. Reads at most `limit` + 1 keys of the availability
    /// index, and the items they name, from one generation.
    ///
    /// An item whose availability changes between two pages moves in the
    /// index: it may be missed or shown twice. (For the same reason a
    /// page may hold fewer than `limit` items and still have a `next`.)
    pub fn low_stock_page(
        &self,
        threshold: i64,
        after: Option<&LowStockCursor>,
        limit: usize,
    ) -> Result<StockPage<LowStockCursor>, ProjectionError> {
        let limit = limit.max(1);
        let reader = self.model.reader();
        let from = match after {
            Some(c) => {
                let mut k = available_key(c.available, &c.sku);
                k.push(0);
                k
            }
            None => vec![AVAILABLE],
        };
        let mut entries = reader.range_limit(&from, Some(&low_stock_end(threshold)), limit.saturating_add(1))?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let mut items = Vec::with_capacity(entries.len());
        let mut last = None;
        for (key, _) in &entries {
            let (available, sku) = low_stock_entry(key)?;
            if let Some(level) = low_level(&reader, &sku, threshold)? {
                items.push(level);
            }
            last = Some(LowStockCursor { available, sku });
        }
        Ok(StockPage {
            items,
            next: if more { last } else { None },
            generation: reader.generation(),
        })
    }
}

#[cfg(test)]
mod tests {
    use strata_store::EventId;
    use tokio::sync::watch;

    use super::*;
    use crate::backend::{Checkpoint, Commit};

    /// Stock levels whose model holds these keys (empty values).
    async fn stored(keys: &[&[u8]]) -> StockLevels {
        let model = ModelStore::memory(STOCK_LEVELS).unwrap();
        assert!(model.claim());
        let (_stop, mut stop) = watch::channel(false);
        assert!(model.lead(&mut stop).await.unwrap());
        let mut ws = model.write_set_on(model.generation(), 0, 0).unwrap();
        for key in keys {
            ws.put(key.to_vec(), Vec::new());
        }
        let at = Checkpoint {
            position: 1,
            event_id: EventId::new(),
        };
        assert_eq!(model.commit(ws, at).await.unwrap(), Commit::Done);
        StockLevels::new(model)
    }

    /// An availability index key holds its marker, 8 bytes of units and the
    /// SKU: one too short to hold the units is a damaged model, answered as
    /// such, never a panic.
    #[tokio::test]
    async fn an_index_key_too_short_for_its_units_is_corrupt() {
        for key in [
            &[AVAILABLE][..],
            &[AVAILABLE, 1, 2, 3],
            &[AVAILABLE, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let levels = stored(&[key]).await;
            let corrupt = |r: Result<_, ProjectionError>| {
                matches!(r, Err(ProjectionError::Corrupt { projection, detail, .. })
                    if projection == STOCK_LEVELS && detail.contains(&format!("found {} bytes", key.len())))
            };
            assert!(corrupt(levels.low_stock(i64::MAX).map(|_| ())), "{key:?}");
            assert!(
                corrupt(levels.low_stock_page(i64::MAX, None, 10).map(|_| ())),
                "{key:?}"
            );
        }
        // Marker and units with an empty SKU: the right length, naming no item.
        let levels = stored(&[&available_key(0, "")]).await;
        assert_eq!(levels.low_stock(i64::MAX).unwrap(), vec![]);
        assert_eq!(levels.low_stock_page(i64::MAX, None, 10).unwrap().items, vec![]);
    }

    #[test]
    fn ordered_bytes_sort_like_the_numbers() {
        let mut ns = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let mut keys: Vec<_> = ns.iter().map(|n| ordered(*n)).collect();
        keys.sort();
        ns.sort();
        assert_eq!(keys, ns.iter().map(|n| ordered(*n)).collect::<Vec<_>>());
        assert!(ordered(-1) < ordered(0));
        for n in ns {
            assert_eq!(unordered(ordered(n)), n);
        }
    }

    #[test]
    fn low_stock_cursors_read_back_what_they_write() {
        for (available, sku) in [(3, "tea"), (-7, "a:b"), (i64::MIN, ""), (i64::MAX, "x")] {
            let cursor = LowStockCursor {
                available,
                sku: sku.to_string(),
            };
            assert_eq!(cursor.to_string().parse::<LowStockCursor>().unwrap(), cursor);
        }
        for bad in ["", "tea", "x:tea", "1.5:tea", "99999999999999999999:tea"] {
            assert!(
                matches!(
                    bad.parse::<LowStockCursor>(),
                    Err(ProjectionError::InvalidCursor { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
