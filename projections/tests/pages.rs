//! Pages of the read models and the order summary's status index: pages
//! cover every order once in id order, the index follows every transition
//! (cancel included) and leaves nothing behind, a page of customer and
//! status keeps to its bound, and a model stored before the index existed
//! is rebuilt rather than answered from.

mod support;

use std::sync::Arc;
use std::time::Duration;

use strata_aggregates::domain::order::{OrderEvent, OrderLine, OrderStatus};
use strata_aggregates::{DomainEvent, Format, encode};
use strata_projections::{
    CUSTOMER_STATUS_SCAN_FACTOR, ModelStore, ORDER_SUMMARY, OrderFilter, OrderSummaryProjection, Projection,
    ProjectionError, ProjectionRunner, Projections, RebuildOptions, RunnerOptions, STOCK_LEVELS, WriteSet, rebuild,
};
use strata_store::{EventStore, ExpectedVersion, MemoryStore, RecordedEvent, SledStore, StreamId};
use support::world::{World, assert_models_match, walk_orders};

const WAIT: Duration = Duration::from_secs(30);

async fn append<E: DomainEvent>(store: &dyn EventStore, stream: &str, events: &[E]) -> u64 {
    let events = events.iter().map(|e| encode(e, Format::Bincode).unwrap()).collect();
    store
        .append(&StreamId::new(stream).unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap()
        .last_position
}

fn placed(id: &str, customer: &str) -> OrderEvent {
    OrderEvent::OrderPlaced {
        order_id: id.into(),
        customer: customer.into(),
        lines: vec![OrderLine {
            sku: "tea".into(),
            quantity: 1,
            unit_price_cents: 5,
        }],
        total_cents: 5,
    }
}

fn status(s: OrderStatus) -> OrderFilter {
    OrderFilter {
        status: Some(s),
        customer: None,
    }
}

/// The status index as stored: (status name, order id), in key order.
fn status_index(model: &ModelStore) -> Vec<(String, String)> {
    model
        .scan_prefix(b"t")
        .unwrap()
        .into_iter()
        .map(|(k, _)| {
            let k = String::from_utf8(k[1..].to_vec()).unwrap();
            let (s, id) = k.split_once('\0').unwrap();
            (s.to_string(), id.to_string())
        })
        .collect()
}

fn index(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries.iter().map(|(s, id)| (s.to_string(), id.to_string())).collect()
}

/// Every transition moves the order's one index entry, cancel from placed
/// and from paid included; nothing stale stays behind, and a rebuild gives
/// the same index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_index_follows_every_transition() {
    let store = MemoryStore::new();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let projections = Projections::in_memory(shared.clone()).unwrap();
    projections.start().await.unwrap();
    let orders = projections.orders();
    let model = orders.model();
    let ids = |s: OrderStatus| walk_orders(orders, &status(s), 2);

    for id in ["o1", "o2", "o3", "o4"] {
        append(&store, &format!("order-{id}"), &[placed(id, "ada")]).await;
    }
    let mut head = append(&store, "order-o1", &[OrderEvent::OrderPaid { amount_cents: 5 }]).await;
    projections.wait_for(head, WAIT).await.unwrap();
    assert_eq!(
        status_index(model),
        index(&[("paid", "o1"), ("placed", "o2"), ("placed", "o3"), ("placed", "o4")])
    );
    assert_eq!(ids(OrderStatus::Placed), ["o2", "o3", "o4"]);
    assert_eq!(ids(OrderStatus::Paid), ["o1"]);

    // Cancel from placed, and from paid.
    append(&store, "order-o2", &[OrderEvent::OrderCancelled { reason: None }]).await;
    append(&store, "order-o3", &[OrderEvent::OrderPaid { amount_cents: 5 }]).await;
    head = append(
        &store,
        "order-o3",
        &[OrderEvent::OrderCancelled {
            reason: Some("changed my mind".into()),
        }],
    )
    .await;
    projections.wait_for(head, WAIT).await.unwrap();
    assert_eq!(
        status_index(model),
        index(&[
            ("cancelled", "o2"),
            ("cancelled", "o3"),
            ("paid", "o1"),
            ("placed", "o4")
        ])
    );
    assert_eq!(ids(OrderStatus::Cancelled), ["o2", "o3"]);
    assert_eq!(ids(OrderStatus::Placed), ["o4"]);

    // Ship and deliver, in one batch with a payment.
    append(
        &store,
        "order-o1",
        &[OrderEvent::OrderShipped { tracking: None }, OrderEvent::OrderDelivered],
    )
    .await;
    head = append(&store, "order-o4", &[OrderEvent::OrderPaid { amount_cents: 5 }]).await;
    projections.wait_for(head, WAIT).await.unwrap();
    assert_eq!(
        status_index(model),
        index(&[
            ("cancelled", "o2"),
            ("cancelled", "o3"),
            ("delivered", "o1"),
            ("paid", "o4")
        ])
    );
    for s in OrderStatus::ALL {
        let expected: Vec<String> = orders
            .all()
            .unwrap()
            .into_iter()
            .filter(|o| o.status == s)
            .map(|o| o.order_id)
            .collect();
        assert_eq!(ids(s), expected, "{s:?}");
        assert_eq!(orders.count(s).unwrap(), expected.len() as u64, "{s:?}");
    }

    let live = model.entries().unwrap();
    let rebuilt = ModelStore::memory(ORDER_SUMMARY).unwrap();
    rebuild(
        &*shared,
        &rebuilt,
        &OrderSummaryProjection,
        RebuildOptions {
            batch_size: 3,
            ..RebuildOptions::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(rebuilt.entries().unwrap(), live, "rebuild equals live, index included");
    assert_eq!(rebuilt.model_version().unwrap(), model.model_version().unwrap());
    assert_eq!(model.model_version().unwrap(), OrderSummaryProjection.model_version());
    projections.stop().await.unwrap();
}

/// Pages walk every order once, in id order, whatever the limit, on sled
/// and in memory, for every filter (see `walk_orders` for what each page
/// must be).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cover_every_order_once_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    let stores: [(Arc<dyn EventStore>, Projections); 2] = [
        (Arc::new(sled.clone()), Projections::open(&sled).unwrap()),
        (
            Arc::new(memory.clone()),
            Projections::in_memory(Arc::new(memory)).unwrap(),
        ),
    ];
    for (store, projections) in stores {
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
        assert!(
            world.expected_orders().len() > 20,
            "a history with orders to page through"
        );
        assert_models_match(&world, projections.orders(), projections.stock());
        // Ids of different lengths sort by bytes ("o10" < "o9"), as keys do.
        let ids = walk_orders(projections.orders(), &OrderFilter::default(), 7);
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        // The extremes of limit: 0 is taken as 1, usize::MAX as everything.
        let orders = projections.orders();
        let everything = orders.page(&OrderFilter::default(), None, usize::MAX).unwrap();
        assert_eq!((everything.orders, everything.next), (orders.all().unwrap(), None));
        assert_eq!(orders.page(&OrderFilter::default(), None, 0).unwrap().orders.len(), 1);
        let stock = projections.stock();
        let everything = stock.page(None, usize::MAX).unwrap();
        assert_eq!((everything.items, everything.next), (stock.all().unwrap(), None));
        let low = stock.low_stock_page(i64::MAX, None, usize::MAX).unwrap();
        assert_eq!((low.items, low.next), (stock.low_stock(i64::MAX).unwrap(), None));
        projections.stop().await.unwrap();
    }
}

/// With customer and status, a page examines at most
/// `CUSTOMER_STATUS_SCAN_FACTOR` × limit of the customer's orders: a page
/// may then be empty and still lead on, and the walk still finds them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_customer_and_status_keeps_to_its_bound() {
    let store = MemoryStore::new();
    let projections = Projections::in_memory(Arc::new(store.clone())).unwrap();
    projections.start().await.unwrap();
    let orders = projections.orders();
    let mut head = 0;
    for i in 0..25 {
        let id = format!("o{i:02}");
        head = append(&store, &format!("order-{id}"), &[placed(&id, "ada")]).await;
    }
    append(&store, "order-x", &[placed("x", "bob")]).await;
    for id in ["o07", "o24"] {
        head = append(
            &store,
            &format!("order-{id}"),
            &[OrderEvent::OrderPaid { amount_cents: 5 }],
        )
        .await;
    }
    projections.wait_for(head, WAIT).await.unwrap();
    let filter = OrderFilter {
        status: Some(OrderStatus::Paid),
        customer: Some("ada".into()),
    };
    let first = orders.page(&filter, None, 1).unwrap();
    assert_eq!(first.orders.len(), 1);
    assert_eq!(first.orders[0].order_id, "o07");
    assert_eq!(first.next.as_deref(), Some("o07"));
    // o08..=o17 are placed: the next page stops after examining ten of them.
    let second = orders.page(&filter, first.next.as_deref(), 1).unwrap();
    assert!(second.orders.is_empty());
    assert_eq!(
        second.next.as_deref(),
        Some("o17"),
        "{} per order asked for",
        CUSTOMER_STATUS_SCAN_FACTOR
    );
    let third = orders.page(&filter, second.next.as_deref(), 1).unwrap();
    assert_eq!(
        third.orders.iter().map(|o| o.order_id.as_str()).collect::<Vec<_>>(),
        ["o24"]
    );
    assert_eq!(third.next, None, "o24 was the customer's last order");
    assert_eq!(walk_orders(orders, &filter, 1), ["o07", "o24"]);
    assert_eq!(walk_orders(orders, &filter, 2), ["o07", "o24"]);
    // A cursor past the end, or before the start, is just a position.
    assert!(orders.page(&filter, Some("zzz"), 5).unwrap().orders.is_empty());
    assert_eq!(
        orders
            .page(&status(OrderStatus::Paid), Some(""), 5)
            .unwrap()
            .orders
            .len(),
        2
    );
    projections.stop().await.unwrap();
}

/// The order summary as a version of strata before the status index wrote
/// it: the same fold without the `t` keys, recorded as model version 0.
struct WithoutStatusIndex;

impl Projection for WithoutStatusIndex {
    fn name(&self) -> &str {
        ORDER_SUMMARY
    }

    fn apply(&self, event: &RecordedEvent, model: &mut WriteSet) -> Result<(), ProjectionError> {
        OrderSummaryProjection.apply(event, model)?;
        if let Some(id) = event.stream_id.as_str().strip_prefix("order-") {
            for s in OrderStatus::ALL {
                model.delete([b"t", s.as_str().as_bytes(), b"\0", id.as_bytes()].concat());
            }
        }
        Ok(())
    }
}

/// A model stored before the status index existed is not answered from as
/// if no order had a status: a page by status refuses it, a runner refuses
/// to follow it, and `Projections::start` rebuilds it (and only it) first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_stored_before_the_status_index_is_rebuilt_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    for id in ["o1", "o2", "o3"] {
        append(&store, &format!("order-{id}"), &[placed(id, "ada")]).await;
    }
    let head = append(&store, "order-o2", &[OrderEvent::OrderPaid { amount_cents: 5 }]).await;

    // The old version of the projection writes the model (stock levels too,
    // whose version has not changed).
    {
        let old = ModelStore::open_sled(&store, ORDER_SUMMARY).unwrap();
        let runner = ProjectionRunner::start(
            shared.clone(),
            old.clone(),
            Arc::new(WithoutStatusIndex),
            RunnerOptions::default(),
        )
        .await
        .unwrap();
        runner.wait_for(head, WAIT).await.unwrap();
        runner.stop().await.unwrap();
        assert!(status_index(&old).is_empty(), "no index, as before it existed");
        let stock = ModelStore::open_sled(&store, STOCK_LEVELS).unwrap();
        let runner = ProjectionRunner::start(
            shared.clone(),
            stock,
            Arc::new(strata_projections::StockLevelsProjection),
            RunnerOptions::default(),
        )
        .await
        .unwrap();
        runner.wait_for(head, WAIT).await.unwrap();
        runner.stop().await.unwrap();
    }

    let projections = Projections::open(&store).unwrap();
    let orders = projections.orders();
    assert_eq!(orders.model().model_version().unwrap(), 0);
    match orders.page(&status(OrderStatus::Paid), None, 10) {
        Err(ProjectionError::ModelVersionMismatch {
            stored: 0, expected: 1, ..
        }) => {}
        other => panic!("a page by status of a model without the index: {other:?}"),
    }
    // Pages that need no status index still read it.
    assert_eq!(orders.page(&OrderFilter::default(), None, 10).unwrap().orders.len(), 3);
    match ProjectionRunner::start(
        shared.clone(),
        orders.model().clone(),
        Arc::new(OrderSummaryProjection),
        RunnerOptions::default(),
    )
    .await
    {
        Err(ProjectionError::ModelVersionMismatch {
            stored: 0, expected: 1, ..
        }) => {}
        other => panic!("a runner on a model of another version: {other:?}"),
    }

    let (orders_generation, stock_generation) = (orders.model().generation(), projections.stock().model().generation());
    projections.start().await.unwrap();
    assert_ne!(orders.model().generation(), orders_generation, "rebuilt");
    assert_eq!(
        projections.stock().model().generation(),
        stock_generation,
        "stock levels kept their version: not rebuilt"
    );
    assert_eq!(orders.model().model_version().unwrap(), 1);
    assert_eq!(orders.model().checkpoint(), head);
    assert_eq!(walk_orders(orders, &status(OrderStatus::Paid), 10), ["o2"]);
    assert_eq!(walk_orders(orders, &status(OrderStatus::Placed), 1), ["o1", "o3"]);

    // The same as a rebuild from scratch, and followed live from there.
    let fresh = ModelStore::memory(ORDER_SUMMARY).unwrap();
    rebuild(
        &*shared,
        &fresh,
        &OrderSummaryProjection,
        RebuildOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(orders.model().entries().unwrap(), fresh.entries().unwrap());
    let head = append(&store, "order-o1", &[OrderEvent::OrderCancelled { reason: None }]).await;
    projections.wait_for(head, WAIT).await.unwrap();
    assert_eq!(walk_orders(orders, &status(OrderStatus::Cancelled), 10), ["o1"]);
    projections.stop().await.unwrap();
    drop(projections);

    // Reopened: the recorded version stands, nothing is rebuilt again.
    let projections = Projections::open(&store).unwrap();
    let generation = projections.orders().model().generation();
    projections.start().await.unwrap();
    assert_eq!(projections.orders().model().generation(), generation);
    projections.stop().await.unwrap();
}
