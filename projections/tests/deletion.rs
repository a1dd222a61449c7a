//! Read models after deletes: an order or a stock item whose stream is
//! deleted (soft or hard) leaves the order summary and the stock levels,
//! a soft-deleted order placed again comes back with its new events only,
//! and a rebuild after the deletes equals the live models. On the memory
//! store and on the segment log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use strata_aggregates::domain::order::{OrderEvent, OrderLine, OrderStatus};
use strata_aggregates::{Format, encode};
use strata_projections::{
    ModelStore, ORDER_SUMMARY, OrderSummaryProjection, Projections, RebuildOptions, STOCK_LEVELS,
    StockLevelsProjection, rebuild,
};
use strata_store::{DeleteMode, EventStore, ExpectedVersion, StreamId};
use support::world::World;
use support::{open_buffered, runtime};

const WAIT: Duration = Duration::from_secs(30);

async fn deletes_then_rebuild(store: Arc<dyn EventStore>, projections: Projections) {
    projections.start().await.unwrap();
    let mut world = World::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..600 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if let Some(parts) = world.step(seed as u8, (seed >> 8) as u32, (seed >> 40) as u32) {
            store.append_multi(parts).await.unwrap();
        }
    }
    let head = store.head_position().await.unwrap();
    projections.wait_for(head, WAIT).await.unwrap();
    let orders = projections.orders().all().unwrap();
    assert!(orders.len() >= 6, "the history placed orders: {}", orders.len());
    let stock = projections.stock().all().unwrap();
    assert!(!stock.is_empty());

    // Erase three orders (two soft, one hard) and one stock item.
    let soft: Vec<&str> = vec![&orders[0].order_id, &orders[2].order_id];
    let hard = &orders[4].order_id;
    for id in &soft {
        let s = StreamId::new(format!("order-{id}")).unwrap();
        let version = store.stream_version(&s).await.unwrap();
        store
            .delete_stream(&s, ExpectedVersion::Exact(version), DeleteMode::Soft)
            .await
            .unwrap();
    }
    store
        .delete_stream(
            &StreamId::new(format!("order-{hard}")).unwrap(),
            ExpectedVersion::Any,
            DeleteMode::Soft,
        )
        .await
        .unwrap();
    store
        .delete_stream(
            &StreamId::new(format!("order-{hard}")).unwrap(),
            ExpectedVersion::Any,
            DeleteMode::Hard,
        )
        .await
        .unwrap();
    let sku = &stock[0].sku;
    store
        .delete_stream(
            &StreamId::new(format!("stock-{sku}")).unwrap(),
            ExpectedVersion::Any,
            DeleteMode::Soft,
        )
        .await
        .unwrap();
    // The first soft-deleted order is placed again: its stream goes on
    // from its old version, the model shows the new order only.
    let again = StreamId::new(format!("order-{}", soft[0])).unwrap();
    let placed = OrderEvent::OrderPlaced {
        order_id: soft[0].to_string(),
        customer: "returning".into(),
        lines: vec![OrderLine {
            sku: "sku-none".into(),
            quantity: 1,
            unit_price_cents: 7,
        }],
        total_cents: 7,
    };
    let r = store
        .append(
            &again,
            ExpectedVersion::NoStream,
            vec![encode(&placed, Format::Bincode).unwrap()],
        )
        .await
        .unwrap();
    assert!(r.stream_version > 1, "versions go on after a soft delete");

    let head = store.head_position().await.unwrap();
    projections.wait_for(head, WAIT).await.unwrap();
    let summaries = projections.orders();
    assert!(
        summaries.get(soft[1]).unwrap().is_none(),
        "a deleted order leaves the summary"
    );
    assert!(
        summaries.get(hard).unwrap().is_none(),
        "a tombstoned order leaves the summary"
    );
    let back = summaries.get(soft[0]).unwrap().expect("the order placed again");
    assert_eq!(
        (back.customer.as_str(), back.status, back.total_cents, back.version),
        ("returning", OrderStatus::Placed, 7, r.stream_version)
    );
    assert!(
        projections.stock().get(sku).unwrap().is_none(),
        "a deleted stock item leaves the levels"
    );
    let all = summaries.all().unwrap();
    assert_eq!(all.len(), orders.len() - 2);
    let counted: u64 = summaries.counts().unwrap().values().sum();
    assert_eq!(counted, all.len() as u64, "the counts per status follow the deletes");
    for id in [soft[1], hard.as_str()] {
        let by_customer: Vec<String> = ["customer0", "customer1", "customer2", "customer3"]
            .iter()
            .flat_map(|c| summaries.order_ids_of_customer(c).unwrap())
            .collect();
        assert!(!by_customer.iter().any(|o| o == id), "the customer index drops {id}");
    }

    let live_orders = summaries.model().entries().unwrap();
    let live_stock = projections.stock().model().entries().unwrap();
    let orders_model = ModelStore::memory(ORDER_SUMMARY).unwrap();
    let stock_model = ModelStore::memory(STOCK_LEVELS).unwrap();
    let options = RebuildOptions {
        batch_size: 5,
        flush_keys: 3,
        ..RebuildOptions::default()
    };
    rebuild(&*store, &orders_model, &OrderSummaryProjection, options, |_| {})
        .await
        .unwrap();
    rebuild(&*store, &stock_model, &StockLevelsProjection, options, |_| {})
        .await
        .unwrap();
    assert_eq!(
        orders_model.entries().unwrap(),
        live_orders,
        "order summary: rebuilt vs live"
    );
    assert_eq!(
        stock_model.entries().unwrap(),
        live_stock,
        "stock levels: rebuilt vs live"
    );
    // And in place, with the runners going.
    projections.rebuild(|_| {}).await.unwrap();
    assert_eq!(projections.orders().model().entries().unwrap(), live_orders);
    assert_eq!(projections.stock().model().entries().unwrap(), live_stock);
    projections.stop().await.unwrap();
}

#[test]
fn deleted_streams_leave_the_read_models_in_memory() {
    runtime().block_on(async {
        let store: Arc<dyn EventStore> = Arc::new(strata_store::MemoryStore::new());
        let projections = Projections::in_memory(store.clone()).unwrap();
        deletes_then_rebuild(store, projections).await;
    });
}

#[test]
fn deleted_streams_leave_the_read_models_on_the_segment_log() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open_buffered(dir.path());
        let projections = Projections::open(&store).unwrap();
        deletes_then_rebuild(Arc::new(store), projections).await;
    });
}
