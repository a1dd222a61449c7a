//! Concurrent orders never oversell: 32 tasks place orders of 1 to 5 units
//! against one SKU with 100 units, on a durable SegmentStore.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_aggregates::domain::order::{OrderLine, OrderStatus};
use strata_aggregates::domain::service::{OrderService, OrderServiceError};
use strata_aggregates::domain::stock::{StockCommand, StockError, StockItem};
use strata_aggregates::{Repository, RetryPolicy};
use strata_store::{EventStore, SegmentStore};

const TASKS: u64 = 32;
const UNITS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SegmentStore::open(dir.path()).unwrap());
    // A placement attempt conflicts only when another placement reserved from
    // the SKU after it read; there can be at most UNITS of those, so this
    // many attempts never run out and every outcome is decided by stock.
    let policy = RetryPolicy::default()
        .with_max_attempts(UNITS as u32 + 2)
        .with_backoff(Duration::from_micros(100), Duration::from_millis(5));
    let service = OrderService::from_repositories(
        Repository::new(store.clone()).with_retry_policy(policy),
        Repository::new(store.clone()),
    );
    let register = StockCommand::Register {
        sku: "widget".into(),
        name: "Widget".into(),
    };
    service.stock().execute("widget", register, None).await.unwrap();
    service
        .stock()
        .execute("widget", StockCommand::Receive { quantity: UNITS }, None)
        .await
        .unwrap();

    // Each task places orders until one is refused.
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(task);
                let mut accepted = Vec::new();
                for n in 0.. {
                    let order_id = format!("t{task}-{n}");
                    let quantity: u32 = rng.random_range(1..=5);
                    let line = OrderLine {
                        sku: "widget".into(),
                        quantity,
                        unit_price_cents: 100,
                    };
                    match service.place(&order_id, "c", vec![line]).await {
                        Ok(_) => accepted.push((order_id, u64::from(quantity))),
                        Err(e) => return (accepted, (order_id, u64::from(quantity), e)),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let mut accepted = BTreeMap::new();
    let mut refused = Vec::new();
    for task in tasks {
        let (ok, refusal) = task.await.unwrap();
        accepted.extend(ok);
        refused.push(refusal);
    }

    let item: StockItem = service.stock().load("widget").await.unwrap().state;
    let accepted_units: u64 = accepted.values().sum();
    assert!(item.reserved() <= UNITS, "oversold: {} reserved", item.reserved());
    assert_eq!(item.on_hand(), UNITS);
    assert_eq!(accepted_units, item.reserved(), "sum of accepted orders == reserved");
    assert_eq!(item.reservations().values().sum::<u64>(), item.reserved());
    // Exactly the accepted orders hold a reservation, of their quantity.
    assert_eq!(item.reservations(), &accepted);
    for order_id in accepted.keys() {
        let order = service.orders().load(order_id).await.unwrap();
        assert_eq!(order.state.status(), OrderStatus::Placed, "{order_id}");
    }
    // Every refusal is insufficient stock, and left no trace.
    assert_eq!(refused.len() as u64, TASKS);
    for (order_id, quantity, err) in &refused {
        match err {
            OrderServiceError::StockRejected {
                sku,
                source: StockError::InsufficientStock { requested, available },
            } => {
                assert_eq!((sku.as_str(), *requested), ("widget", *quantity));
                assert!(available < requested);
            }
            other => panic!("order {order_id} failed otherwise: {other:?}"),
        }
        assert!(!service.orders().load(order_id).await.unwrap().exists());
        assert_eq!(item.reservation(order_id), None);
    }
    // The stream holds one reservation event per accepted order, no more.
    let version = service.stock().load("widget").await.unwrap().version;
    assert_eq!(version, 2 + accepted.len() as u64);
}
