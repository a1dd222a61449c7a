//! Valid order and stock histories, generated from random numbers, and the
//! read models they should give, kept by a plain fold.

use std::collections::BTreeMap;

use strata_aggregates::domain::order::{OrderEvent, OrderLine, OrderStatus};
use strata_aggregates::domain::stock::StockEvent;
use strata_aggregates::{DomainEvent, Format, encode};
use strata_projections::{LowStockCursor, OrderFilter, OrderSummaries, StockLevels};
use strata_store::{ExpectedVersion, NewEvent, StreamAppend, StreamId};

#[derive(Clone, Debug)]
struct Sku {
    id: String,
    on_hand: u64,
    reserved: u64,
    version: u64,
}

#[derive(Clone, Debug)]
struct Order {
    id: String,
    customer: String,
    /// (sku index, quantity)
    lines: Vec<(usize, u64)>,
    total: u64,
    status: OrderStatus,
    version: u64,
}

/// The domain as the aggregates would keep it, for one writer at a time.
#[derive(Default, Debug)]
pub struct World {
    skus: Vec<Sku>,
    orders: Vec<Order>,
}

fn new_event<E: DomainEvent>(event: &E) -> NewEvent {
    encode(event, Format::Bincode).unwrap()
}

fn part(stream: &str, version: u64, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend::new(StreamId::new(stream).unwrap(), ExpectedVersion::Exact(version), events)
}

/// What an order summary shows, without the times.
pub type OrderRow = (String, String, OrderStatus, u64, u64);
/// What a stock level shows, without name and time: sku, on hand, reserved, version.
pub type StockRow = (String, u64, u64, u64);

impl World {
    /// Turns three random numbers into the next command's events, if the
    /// command they pick is valid now (`None` otherwise), and applies them
    /// to the world. The result is one atomic multi-stream append.
    pub fn step(&mut self, kind: u8, a: u32, b: u32) -> Option<Vec<StreamAppend>> {
        let a = a as usize;
        match kind % 8 {
            0 if self.skus.len() < 6 => {
                let id = format!("sku{}", self.skus.len());
                let e = StockEvent::StockItemRegistered {
                    sku: id.clone(),
                    name: format!("Item {id}"),
                };
                self.skus.push(Sku {
                    id: id.clone(),
                    on_hand: 0,
                    reserved: 0,
                    version: 1,
                });
                Some(vec![part(&format!("stock-{id}"), 0, vec![new_event(&e)])])
            }
            1 if !self.skus.is_empty() => {
                let n = self.skus.len();
                let s = &mut self.skus[a % n];
                let quantity = u64::from(b % 20 + 1);
                let e = StockEvent::StockReceived { quantity };
                s.on_hand += quantity;
                s.version += 1;
                Some(vec![part(
                    &format!("stock-{}", s.id),
                    s.version - 1,
                    vec![new_event(&e)],
                )])
            }
            2 if !self.skus.is_empty() => {
                let n = self.skus.len();
                let mut lines = vec![(a % n, u64::from(b % 3 + 1))];
                let second = (a / 7) % n;
                if b.is_multiple_of(2) && second != lines[0].0 {
                    lines.push((second, u64::from(b % 5 + 1)));
                }
                if lines
                    .iter()
                    .any(|(s, q)| self.skus[*s].on_hand - self.skus[*s].reserved < *q)
                {
                    return None;
                }
                let id = format!("o{}", self.orders.len());
                let customer = format!("customer{}", a % 4);
                let order_lines: Vec<OrderLine> = lines
                    .iter()
                    .map(|(s, q)| OrderLine {
                        sku: self.skus[*s].id.clone(),
                        quantity: *q as u32,
                        unit_price_cents: 100 + *s as u64 * 25,
                    })
                    .collect();
                let total = order_lines
                    .iter()
                    .map(|l| u64::from(l.quantity) * l.unit_price_cents)
                    .sum();
                let placed = OrderEvent::OrderPlaced {
                    order_id: id.clone(),
                    customer: customer.clone(),
                    lines: order_lines,
                    total_cents: total,
                };
                let mut parts = vec![part(&format!("order-{id}"), 0, vec![new_event(&placed)])];
                for (s, q) in &lines {
                    let sku = &mut self.skus[*s];
                    let e = StockEvent::StockReserved {
                        order_id: id.clone(),
                        quantity: *q,
                    };
                    parts.push(part(&format!("stock-{}", sku.id), sku.version, vec![new_event(&e)]));
                    sku.reserved += q;
                    sku.version += 1;
                }
                self.orders.push(Order {
                    id,
                    customer,
                    lines,
                    total,
                    status: OrderStatus::Placed,
                    version: 1,
                });
                Some(parts)
            }
            3 => self.transition(a, &[OrderStatus::Placed], OrderStatus::Paid),
            4 => self.transition(a, &[OrderStatus::Paid], OrderStatus::Shipped),
            5 => self.transition(a, &[OrderStatus::Shipped], OrderStatus::Delivered),
            6 => self.transition(a, &[OrderStatus::Placed, OrderStatus::Paid], OrderStatus::Cancelled),
            7 if !self.skus.is_empty() => {
                let n = self.skus.len();
                let s = &mut self.skus[a % n];
                let counted = u64::from(b % 30).max(s.reserved);
                let e = StockEvent::StockAdjusted {
                    counted,
                    delta: counted as i64 - s.on_hand as i64,
                };
                s.on_hand = counted;
                s.version += 1;
                Some(vec![part(
                    &format!("stock-{}", s.id),
                    s.version - 1,
                    vec![new_event(&e)],
                )])
            }
            _ => None,
        }
    }

    fn transition(&mut self, a: usize, from: &[OrderStatus], to: OrderStatus) -> Option<Vec<StreamAppend>> {
        let candidates: Vec<usize> = (0..self.orders.len())
            .filter(|i| from.contains(&self.orders[*i].status))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = candidates[a % candidates.len()];
        let order = self.orders[i].clone();
        let event = match to {
            OrderStatus::Paid => OrderEvent::OrderPaid {
                amount_cents: order.total,
            },
            OrderStatus::Shipped => OrderEvent::OrderShipped {
                tracking: Some(format!("track-{}", order.id)),
            },
            OrderStatus::Delivered => OrderEvent::OrderDelivered,
            _ => OrderEvent::OrderCancelled { reason: None },
        };
        let mut parts = vec![part(
            &format!("order-{}", order.id),
            order.version,
            vec![new_event(&event)],
        )];
        for (s, q) in &order.lines {
            let sku = &mut self.skus[*s];
            let e = match to {
                OrderStatus::Shipped => {
                    sku.on_hand -= q;
                    sku.reserved -= q;
                    StockEvent::StockCommitted {
                        order_id: order.id.clone(),
                        quantity: *q,
                    }
                }
                OrderStatus::Cancelled => {
                    sku.reserved -= q;
                    StockEvent::StockReleased {
                        order_id: order.id.clone(),
                        quantity: *q,
                    }
                }
                _ => continue,
            };
            parts.push(part(&format!("stock-{}", sku.id), sku.version, vec![new_event(&e)]));
            sku.version += 1;
        }
        let o = &mut self.orders[i];
        o.status = to;
        o.version += 1;
        Some(parts)
    }

    /// The orders as the summary should show them, by id.
    pub fn expected_orders(&self) -> Vec<OrderRow> {
        let mut rows: Vec<OrderRow> = self
            .orders
            .iter()
            .map(|o| (o.id.clone(), o.customer.clone(), o.status, o.total, o.version))
            .collect();
        rows.sort();
        rows
    }

    /// Orders per status, statuses with none left out.
    pub fn expected_counts(&self) -> BTreeMap<OrderStatus, u64> {
        let mut counts = BTreeMap::new();
        for o in &self.orders {
            *counts.entry(o.status).or_insert(0) += 1;
        }
        counts
    }

    /// The order ids of `customer`, sorted.
    pub fn expected_orders_of(&self, customer: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .orders
            .iter()
            .filter(|o| o.customer == customer)
            .map(|o| o.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The ids of the orders in `status` (of `customer`, if given), sorted.
    pub fn expected_in_status(&self, status: OrderStatus, customer: Option<&str>) -> Vec<String> {
        let mut ids: Vec<String> = self
            .orders
            .iter()
            .filter(|o| o.status == status && customer.is_none_or(|c| o.customer == c))
            .map(|o| o.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The stock levels as the model should show them, by SKU.
    pub fn expected_stock(&self) -> Vec<StockRow> {
        let mut rows: Vec<StockRow> = self
            .skus
            .iter()
            .map(|s| (s.id.clone(), s.on_hand, s.reserved, s.version))
            .collect();
        rows.sort();
        rows
    }

    /// The SKUs with at most `threshold` available, sorted.
    pub fn expected_low_stock(&self, threshold: i64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .skus
            .iter()
            .filter(|s| s.on_hand as i64 - s.reserved as i64 <= threshold)
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// The order summary's rows, comparable with [`World::expected_orders`].
pub fn order_rows(orders: &OrderSummaries) -> Vec<OrderRow> {
    orders
        .all()
        .unwrap()
        .into_iter()
        .map(|o| (o.order_id, o.customer, o.status, o.total_cents, o.version))
        .collect()
}

/// The stock levels' rows, comparable with [`World::expected_stock`].
pub fn stock_rows(stock: &StockLevels) -> Vec<StockRow> {
    stock
        .all()
        .unwrap()
        .into_iter()
        .map(|s| (s.sku, s.on_hand, s.reserved, s.version))
        .collect()
}

/// Walks every page of `filter`, `limit` orders at a time, and returns the
/// ids in the order the pages gave them. Checks each page: at most `limit`
/// orders, all matching the filter, the counts of the whole model; and,
/// for the filters served by one index (all but customer with status),
/// full pages whose `next` is their last id (the model must be quiet).
#[track_caller]
pub fn walk_orders(orders: &OrderSummaries, filter: &OrderFilter, limit: usize) -> Vec<String> {
    let exact = filter.customer.is_none() || filter.status.is_none();
    let counts = orders.counts().unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    for pages in 1.. {
        assert!(pages <= 100_000, "the walk does not end");
        let page = orders.page(filter, after.as_deref(), limit).unwrap();
        assert!(
            page.orders.len() <= limit,
            "a page of {} for limit {limit}",
            page.orders.len()
        );
        assert_eq!(page.counts, counts, "every page carries the counts of all orders");
        for o in &page.orders {
            assert!(filter.status.is_none_or(|s| o.status == s), "{o:?} for {filter:?}");
            assert!(
                filter.customer.as_ref().is_none_or(|c| &o.customer == c),
                "{o:?} for {filter:?}"
            );
        }
        ids.extend(page.orders.iter().map(|o| o.order_id.clone()));
        match page.next {
            None => break,
            Some(next) => {
                if exact {
                    assert_eq!(page.orders.len(), limit, "only the last page is short ({filter:?})");
                    assert_eq!(Some(&next), ids.last(), "next names the page's last order");
                }
                assert!(after.as_ref().is_none_or(|a| &next > a), "the cursor moves on");
                after = Some(next);
            }
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "pages in id order, none twice: {ids:?}"
    );
    ids
}

/// Walks every page of stock, `limit` items at a time; returns the SKUs.
#[track_caller]
pub fn walk_stock(stock: &StockLevels, limit: usize) -> Vec<String> {
    let mut skus: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = stock.page(after.as_deref(), limit).unwrap();
        assert!(page.items.len() <= limit);
        skus.extend(page.items.iter().map(|l| l.sku.clone()));
        match page.next {
            None => break,
            Some(next) => {
                assert_eq!(page.items.len(), limit, "only the last page is short");
                assert_eq!(Some(&next), skus.last());
                after = Some(next);
            }
        }
    }
    assert!(skus.windows(2).all(|w| w[0] < w[1]), "pages in SKU order: {skus:?}");
    skus
}

/// Walks every page of low stock at `threshold`, `limit` items at a time;
/// returns the items as (available, SKU), in the pages' order.
#[track_caller]
pub fn walk_low_stock(stock: &StockLevels, threshold: i64, limit: usize) -> Vec<(i64, String)> {
    let mut items: Vec<(i64, String)> = Vec::new();
    let mut after: Option<LowStockCursor> = None;
    loop {
        let page = stock.low_stock_page(threshold, after.as_ref(), limit).unwrap();
        assert!(page.items.len() <= limit);
        items.extend(page.items.iter().map(|l| (l.available(), l.sku.clone())));
        match page.next {
            None => break,
            Some(next) => {
                assert_eq!(page.items.len(), limit, "only the last page is short");
                assert_eq!(Some((next.available, next.sku.clone())).as_ref(), items.last());
                // A cursor survives its text form (what the HTTP API hands out).
                after = Some(next.to_string().parse().unwrap());
            }
        }
    }
    assert!(
        items.windows(2).all(|w| w[0] < w[1]),
        "fewest available first, then by SKU: {items:?}"
    );
    assert!(items.iter().all(|(a, _)| *a <= threshold));
    items
}

/// Asserts that both read models show what `world` says, through every
/// reader method, and every page walk.
#[track_caller]
pub fn assert_models_match(world: &World, orders: &OrderSummaries, stock: &StockLevels) {
    assert_eq!(order_rows(orders), world.expected_orders(), "order summaries");
    let all: Vec<String> = world.expected_orders().into_iter().map(|o| o.0).collect();
    for limit in [1, 4, 1000] {
        assert_eq!(
            walk_orders(orders, &OrderFilter::default(), limit),
            all,
            "pages of all orders"
        );
        for status in OrderStatus::ALL {
            let filter = OrderFilter {
                status: Some(status),
                customer: None,
            };
            assert_eq!(
                walk_orders(orders, &filter, limit),
                world.expected_in_status(status, None),
                "pages of {status:?} at {limit}"
            );
        }
        for c in 0..4 {
            let customer = format!("customer{c}");
            let filter = OrderFilter {
                status: None,
                customer: Some(customer.clone()),
            };
            assert_eq!(
                walk_orders(orders, &filter, limit),
                world.expected_orders_of(&customer),
                "pages of {customer} at {limit}"
            );
            for status in OrderStatus::ALL {
                let filter = OrderFilter {
                    status: Some(status),
                    customer: Some(customer.clone()),
                };
                assert_eq!(
                    walk_orders(orders, &filter, limit),
                    world.expected_in_status(status, Some(&customer)),
                    "pages of {customer} in {status:?} at {limit}"
                );
            }
        }
        let skus: Vec<String> = world.expected_stock().into_iter().map(|s| s.0).collect();
        assert_eq!(walk_stock(stock, limit), skus, "pages of stock at {limit}");
        for threshold in [-1, 0, 3, 10] {
            let mut low: Vec<String> = walk_low_stock(stock, threshold, limit)
                .into_iter()
                .map(|(_, sku)| sku)
                .collect();
            low.sort();
            assert_eq!(
                low,
                world.expected_low_stock(threshold),
                "pages of low stock at {threshold}"
            );
        }
    }
    assert_eq!(orders.counts().unwrap(), world.expected_counts(), "counts per status");
    for c in 0..4 {
        let customer = format!("customer{c}");
        assert_eq!(
            orders.order_ids_of_customer(&customer).unwrap(),
            world.expected_orders_of(&customer),
            "orders of {customer}"
        );
    }
    assert_eq!(stock_rows(stock), world.expected_stock(), "stock levels");
    for threshold in [-1, 0, 3, 10] {
        let low: Vec<String> = stock.low_stock(threshold).unwrap().into_iter().map(|s| s.sku).collect();
        let mut sorted = low.clone();
        sorted.sort();
        assert_eq!(sorted, world.expected_low_stock(threshold), "low stock at {threshold}");
    }
}
