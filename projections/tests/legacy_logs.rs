//! Logs the aggregates no longer write but a store may hold (written before
//! a rule existed, or by another writer): the read models take every event
//! an aggregate's `apply` takes, and the runners keep running.

use std::sync::Arc;
use std::time::Duration;

use strata_aggregates::domain::order::{OrderEvent, OrderLine, OrderStatus};
use strata_aggregates::domain::stock::StockEvent;
use strata_aggregates::{DomainEvent, Format, encode};
use strata_projections::{Projections, RunState};
use strata_store::{EventStore, ExpectedVersion, MemoryStore, StreamId};

const WAIT: Duration = Duration::from_secs(30);

async fn append<E: DomainEvent>(store: &dyn EventStore, stream: &str, events: &[E]) -> u64 {
    let events = events.iter().map(|e| encode(e, Format::Bincode).unwrap()).collect();
    store
        .append(&StreamId::new(stream).unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap()
        .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_figures_beyond_i64_do_not_stop_the_runner() {
    let store = MemoryStore::new();
    let projections = Projections::in_memory(Arc::new(store.clone())).unwrap();
    projections.start().await.unwrap();
    // Quantities the aggregate accepted before MAX_QUANTITY and MAX_ON_HAND.
    let head = append(
        &store,
        "stock-bulk",
        &[
            StockEvent::StockItemRegistered {
                sku: "bulk".into(),
                name: "Bulk".into(),
            },
            StockEvent::StockReceived { quantity: u64::MAX - 5 },
            StockEvent::StockReceived { quantity: 10 },
            StockEvent::StockReserved {
                order_id: "o-1".into(),
                quantity: 3,
            },
        ],
    )
    .await;
    projections.wait_for(head, WAIT).await.unwrap();
    let level = projections.stock().get("bulk").unwrap().unwrap();
    // The aggregate's fold saturates; the read model agrees with it.
    assert_eq!((level.on_hand, level.reserved), (u64::MAX, 3));
    assert_eq!(level.available_exact(), i128::from(u64::MAX) - 3);
    assert_eq!(level.available(), i64::MAX, "saturated into an i64");
    assert!(projections.stock().low_stock(0).unwrap().is_empty());
    assert!(
        projections.stock().low_stock(i64::MAX).unwrap().is_empty(),
        "more than i64::MAX available is above every threshold"
    );
    assert_eq!(projections.stock().model().run_state(), RunState::Running);
    projections.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_naming_another_id_than_its_stream_is_keyed_by_the_stream() {
    let store = MemoryStore::new();
    let projections = Projections::in_memory(Arc::new(store.clone())).unwrap();
    projections.start().await.unwrap();
    // What the repositories accepted before they checked `command_id`.
    append(
        &store,
        "stock-tea",
        &[
            StockEvent::StockItemRegistered {
                sku: "coffee".into(),
                name: "Tea".into(),
            },
            StockEvent::StockReceived { quantity: 4 },
        ],
    )
    .await;
    let head = append(
        &store,
        "order-o-1",
        &[
            OrderEvent::OrderPlaced {
                order_id: "o-2".into(),
                customer: "ada".into(),
                lines: vec![OrderLine {
                    sku: "tea".into(),
                    quantity: 1,
                    unit_price_cents: 5,
                }],
                total_cents: 5,
            },
            OrderEvent::OrderPaid { amount_cents: 5 },
        ],
    )
    .await;
    projections.wait_for(head, WAIT).await.unwrap();
    let level = projections.stock().get("tea").unwrap().expect("keyed by the stream");
    assert_eq!((level.sku.as_str(), level.on_hand), ("tea", 4));
    assert_eq!(projections.stock().get("coffee").unwrap(), None);
    let order = projections.orders().get("o-1").unwrap().expect("keyed by the stream");
    assert_eq!((order.order_id.as_str(), order.status), ("o-1", OrderStatus::Paid));
    assert_eq!(projections.orders().get("o-2").unwrap(), None);
    assert_eq!(projections.orders().model().run_state(), RunState::Running);
    assert_eq!(projections.stock().model().run_state(), RunState::Running);
    projections.stop().await.unwrap();
}
