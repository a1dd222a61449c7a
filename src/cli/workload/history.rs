//! A mixed log of orders and stock, and the plain fold of it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use strata_aggregates::domain::order::{OrderEvent, OrderLine, OrderStatus};
use strata_aggregates::domain::stock::StockEvent;
use strata_aggregates::{CodecError, DomainEvent, Format, decode, encode};
use strata_store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend, StreamId};

/// SKUs of the history written by [`write_history`].
pub const HISTORY_SKUS: usize = 500;
const ORDERS_PER_WAVE: usize = 100;

/// What [`plain_fold`] saw.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fold {
    /// Events read.
    pub events: u64,
    /// Orders folded.
    pub orders: usize,
    /// SKUs folded.
    pub skus: usize,
}

/// Why [`plain_fold`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event did not decode.
    #[error(transparent)]
    Decode(#[from] CodecError),
    /// An order event came before the order was placed.
    #[error("order event at position {0} before its OrderPlaced")]
    Inconsistent(u64),
}

/// Reads the whole log with `read_all` in pages of `page` events; returns
/// the events read and the time it took.
pub async fn scan_log(store: &dyn EventStore, page: usize) -> Result<(u64, Duration), StoreError> {
    let start = Instant::now();
    let (mut next, mut n) = (1, 0u64);
    loop {
        let batch = store.read_all(next, page).await?;
        let Some(last) = batch.last() else { break };
        next = last.position + 1;
        n += batch.len() as u64;
        std::hint::black_box(&batch);
    }
    Ok((n, start.elapsed()))
}

/// A fixed-seed xorshift, so every run writes the same log.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn ev<E: DomainEvent>(e: &E) -> NewEvent {
    encode(e, Format::Bincode).expect("domain events encode")
}

/// One atomic append of every stream's events of a wave.
#[derive(Default)]
struct Wave {
    parts: Vec<(String, Vec<NewEvent>)>,
    index: HashMap<String, usize>,
    events: usize,
}

impl Wave {
    fn push(&mut self, stream: String, event: NewEvent) {
        self.events += 1;
        let i = *self.index.entry(stream.clone()).or_insert_with(|| {
            self.parts.push((stream, Vec::new()));
            self.parts.len() - 1
        });
        self.parts[i].1.push(event);
    }

    fn into_append(self) -> Result<Vec<StreamAppend>, StoreError> {
        self.parts
            .into_iter()
            .map(|(s, events)| Ok(StreamAppend::new(StreamId::new(s)?, ExpectedVersion::Any, events)))
            .collect()
    }
}

/// An order id and its lines as (sku index, quantity).
type PlacedOrder = (String, Vec<(usize, u64)>);

/// Writes a valid mixed history of at least `target` events (always the
/// same, from a fixed seed): [`HISTORY_SKUS`] SKUs registered and stocked,
/// then waves of orders placed (with reservations), paid, shipped (stock
/// committed) or cancelled (released), and delivered, each wave one atomic
/// multi-stream append. Returns the events written.
pub async fn write_history(store: &dyn EventStore, target: u64) -> Result<u64, StoreError> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut wave = Wave::default();
    for s in 0..HISTORY_SKUS {
        let sku = format!("sku{s}");
        wave.push(
            format!("stock-{sku}"),
            ev(&StockEvent::StockItemRegistered {
                sku: sku.clone(),
                name: format!("Item {s}"),
            }),
        );
        wave.push(
            format!("stock-{sku}"),
            ev(&StockEvent::StockReceived { quantity: 1 << 40 }),
        );
    }
    let mut written = wave.events as u64;
    store.append_multi(wave.into_append()?).await?;
    // Orders of every wave so far: (id, lines as (sku, quantity)).
    let mut waves: Vec<Vec<PlacedOrder>> = Vec::new();
    let mut next_order = 0u64;
    while written < target {
        let mut wave = Wave::default();
        let mut placed = Vec::with_capacity(ORDERS_PER_WAVE);
        for _ in 0..ORDERS_PER_WAVE {
            let id = format!("{next_order}");
            next_order += 1;
            let n = 1 + (rng.next() % 2) as usize;
            let lines: Vec<(usize, u64)> = (0..n)
                .map(|_| ((rng.next() % HISTORY_SKUS as u64) as usize, 1 + rng.next() % 5))
                .collect();
            let order_lines = lines
                .iter()
                .map(|(s, q)| OrderLine {
                    sku: format!("sku{s}"),
                    quantity: *q as u32,
                    unit_price_cents: 100 + *s as u64,
                })
                .collect::<Vec<_>>();
            let total = order_lines
                .iter()
                .map(|l| u64::from(l.quantity) * l.unit_price_cents)
                .sum();
            wave.push(
                format!("order-{id}"),
                ev(&OrderEvent::OrderPlaced {
                    order_id: id.clone(),
                    customer: format!("customer{}", rng.next() % 10_000),
                    lines: order_lines,
                    total_cents: total,
                }),
            );
            for (s, q) in &lines {
                wave.push(
                    format!("stock-sku{s}"),
                    ev(&StockEvent::StockReserved {
                        order_id: id.clone(),
                        quantity: *q,
                    }),
                );
            }
            placed.push((id, lines));
        }
        let w = waves.len();
        if w >= 1 {
            for (id, _) in &waves[w - 1] {
                wave.push(format!("order-{id}"), ev(&OrderEvent::OrderPaid { amount_cents: 0 }));
            }
        }
        if w >= 2 {
            for (i, (id, lines)) in waves[w - 2].iter().enumerate() {
                let cancel = i % 10 == 0;
                wave.push(
                    format!("order-{id}"),
                    if cancel {
                        ev(&OrderEvent::OrderCancelled { reason: None })
                    } else {
                        ev(&OrderEvent::OrderShipped { tracking: None })
                    },
                );
                for (s, q) in lines {
                    let order_id = id.clone();
                    let e = if cancel {
                        StockEvent::StockReleased { order_id, quantity: *q }
                    } else {
                        StockEvent::StockCommitted { order_id, quantity: *q }
                    };
                    wave.push(format!("stock-sku{s}"), ev(&e));
                }
            }
        }
        if w >= 3 {
            for (i, (id, _)) in waves[w - 3].iter().enumerate() {
                if i % 10 != 0 {
                    wave.push(format!("order-{id}"), ev(&OrderEvent::OrderDelivered));
                }
            }
        }
        written += wave.events as u64;
        store.append_multi(wave.into_append()?).await?;
        waves.push(placed);
    }
    Ok(written)
}

/// The upper bound of a projection rebuild: `read_all` folded into plain
/// maps (both read models' figures), nothing written, no checkpoint.
pub async fn plain_fold(store: &dyn EventStore) -> Result<Fold, FoldError> {
    #[derive(Default)]
    struct Order {
        customer: String,
        status: OrderStatus,
        total: u64,
        version: u64,
    }
    let mut orders: HashMap<String, Order> = HashMap::new();
    let mut counts: HashMap<OrderStatus, u64> = HashMap::new();
    let mut by_customer: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut stock: HashMap<String, (u64, u64, u64)> = HashMap::new();
    let mut next = 1;
    let mut n = 0;
    loop {
        let batch = store.read_all(next, 4096).await?;
        let Some(last) = batch.last() else { break };
        next = last.position + 1;
        for e in &batch {
            n += 1;
            if let Some(id) = e.stream_id.as_str().strip_prefix("order-") {
                match decode::<OrderEvent>(e)? {
                    OrderEvent::OrderPlaced {
                        customer, total_cents, ..
                    } => {
                        by_customer.entry(customer.clone()).or_default().insert(id.to_string());
                        *counts.entry(OrderStatus::Placed).or_default() += 1;
                        orders.insert(
                            id.to_string(),
                            Order {
                                customer,
                                status: OrderStatus::Placed,
                                total: total_cents,
                                version: e.version,
                            },
                        );
                    }
                    other => {
                        let o = orders.get_mut(id).ok_or_else(|| FoldError::Inconsistent(e.position))?;
                        *counts.entry(o.status).or_default() -= 1;
                        o.status = match other {
                            OrderEvent::OrderPaid { .. } => OrderStatus::Paid,
                            OrderEvent::OrderShipped { .. } => OrderStatus::Shipped,
                            OrderEvent::OrderDelivered => OrderStatus::Delivered,
                            _ => OrderStatus::Cancelled,
                        };
                        *counts.entry(o.status).or_default() += 1;
                        o.version = e.version;
                    }
                }
            } else if let Some(sku) = e.stream_id.as_str().strip_prefix("stock-") {
                let s = stock.entry(sku.to_string()).or_default();
                match decode::<StockEvent>(e)? {
                    StockEvent::StockItemRegistered { .. } => {}
                    StockEvent::StockReceived { quantity } => s.0 += quantity,
                    StockEvent::StockReserved { quantity, .. } => s.1 += quantity,
                    StockEvent::StockReleased { quantity, .. } => s.1 = s.1.saturating_sub(quantity),
                    StockEvent::StockCommitted { quantity, .. } => {
                        s.0 = s.0.saturating_sub(quantity);
                        s.1 = s.1.saturating_sub(quantity);
                    }
                    StockEvent::StockAdjusted { counted, .. } => s.0 = counted,
                }
                s.2 = e.version;
            }
        }
    }
    let check: u64 = orders
        .values()
        .map(|o| o.total + o.version + o.customer.len() as u64)
        .sum();
    std::hint::black_box(check);
    Ok(Fold {
        events: n,
        orders: orders.len(),
        skus: stock.len(),
    })
}
