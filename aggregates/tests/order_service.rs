//! The order service: placement, cancellation and shipment move the order
//! and every SKU's stock in one atomic append; refusals write nothing.

use std::sync::Arc;

use strata_aggregates::domain::order::{OrderError, OrderEvent, OrderLine, OrderStatus};
use strata_aggregates::domain::service::{OrderService, OrderServiceError};
use strata_aggregates::domain::stock::{StockCommand, StockError, StockEvent, StockItem};
use strata_aggregates::{Repository, RetryPolicy, is_snapshot_stream};
use strata_store::{ErrorKind, EventStore, MemoryStore, StreamId};

fn line(sku: &str, quantity: u32, unit_price_cents: u64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price_cents,
    }
}

/// A service over a fresh store with `tea` (10 units) and `cup` (4 units).
async fn stocked() -> (OrderService, MemoryStore) {
    let store = MemoryStore::new();
    let service = OrderService::new(Arc::new(store.clone()));
    for (sku, quantity) in [("tea", 10), ("cup", 4)] {
        let register = StockCommand::Register {
            sku: sku.into(),
            name: sku.to_uppercase(),
        };
        service.stock().execute(sku, register, None).await.unwrap();
        service
            .stock()
            .execute(sku, StockCommand::Receive { quantity }, None)
            .await
            .unwrap();
    }
    (service, store)
}

async fn item(service: &OrderService, sku: &str) -> StockItem {
    service.stock().load(sku).await.unwrap().state
}

#[tokio::test]
async fn placing_reserves_every_line_in_one_append() {
    let (service, store) = stocked().await;
    let head = store.head_position().await.unwrap();
    let placed = service
        .place("o-1", "ada", vec![line("tea", 3, 250), line("cup", 2, 900)])
        .await
        .unwrap();
    assert_eq!(
        (placed.version, placed.order.status(), placed.order.total_cents()),
        (1, OrderStatus::Placed, 2550)
    );
    assert_eq!(placed.retries, 0);
    // Order first, then each SKU, contiguous positions: one atomic append.
    assert_eq!(placed.append.first_position, head + 1);
    let stock: Vec<_> = placed
        .stock
        .iter()
        .map(|s| (s.sku.as_str(), s.version, s.append.first_position))
        .collect();
    assert_eq!(stock, vec![("tea", 3, head + 2), ("cup", 3, head + 3)]);
    assert_eq!(placed.position(), head + 3);
    assert_eq!(store.head_position().await.unwrap(), head + 3);
    assert_eq!(
        placed.stock[0].events,
        vec![StockEvent::StockReserved {
            order_id: "o-1".into(),
            quantity: 3
        }]
    );
    assert_eq!(item(&service, "tea").await.reservation("o-1"), Some(3));
    assert_eq!(item(&service, "cup").await.reservation("o-1"), Some(2));
}

#[tokio::test]
async fn a_refused_line_writes_nothing_anywhere() {
    let (service, store) = stocked().await;
    let head = store.head_position().await.unwrap();
    // tea is fine, cup is short: neither is reserved, no order exists.
    let err = service
        .place("o-1", "ada", vec![line("tea", 3, 250), line("cup", 5, 900)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OrderServiceError::StockRejected { sku, source: StockError::InsufficientStock { requested: 5, available: 4 } } if sku == "cup"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = service
        .place("o-1", "ada", vec![line("tea", 1, 250), line("mug", 1, 900)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OrderServiceError::UnknownSku { sku } if sku == "mug"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = service.place("o-1", "ada", vec![]).await.unwrap_err();
    assert!(matches!(err, OrderServiceError::Rejected(OrderError::NoLines)));
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    assert_eq!(store.head_position().await.unwrap(), head);
    assert!(!service.orders().load("o-1").await.unwrap().exists());
    assert_eq!(item(&service, "tea").await.reserved(), 0);
}

#[tokio::test]
async fn placing_an_existing_order_is_a_duplicate() {
    let (service, store) = stocked().await;
    service.place("o-1", "ada", vec![line("tea", 1, 250)]).await.unwrap();
    let head = store.head_position().await.unwrap();
    let err = service
        .place("o-1", "bob", vec![line("tea", 1, 250)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OrderServiceError::Rejected(OrderError::AlreadyExists { order_id, status: OrderStatus::Placed }) if order_id == "o-1"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(store.head_position().await.unwrap(), head);
    assert_eq!(item(&service, "tea").await.reserved(), 1);
}

#[tokio::test]
async fn a_place_command_for_another_id_is_refused() {
    let (service, _) = stocked().await;
    let command = strata_aggregates::domain::order::OrderCommand::Place {
        order_id: "o-2".into(),
        customer: "ada".into(),
        lines: vec![line("tea", 1, 1)],
    };
    let err = service
        .execute("o-1", &command, None, &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        OrderServiceError::Rejected(OrderError::InvalidOrderId { .. })
    ));
}

#[tokio::test]
async fn cancel_releases_and_ship_commits_atomically() {
    let (service, _) = stocked().await;
    service
        .place("keep", "ada", vec![line("tea", 2, 100), line("cup", 1, 300)])
        .await
        .unwrap();
    service.place("drop", "bob", vec![line("tea", 5, 100)]).await.unwrap();
    assert_eq!(item(&service, "tea").await.reserved(), 7);

    let cancelled = service.cancel("drop", Some("no longer".into()), None).await.unwrap();
    assert_eq!(cancelled.order.status(), OrderStatus::Cancelled);
    assert_eq!(cancelled.stock.len(), 1);
    assert_eq!(
        cancelled.stock[0].events,
        vec![StockEvent::StockReleased {
            order_id: "drop".into(),
            quantity: 5
        }]
    );
    let tea = item(&service, "tea").await;
    assert_eq!((tea.on_hand(), tea.reserved(), tea.reservation("drop")), (10, 2, None));

    let paid = service.pay("keep", 500, Some(1)).await.unwrap();
    assert_eq!((paid.version, paid.stock.len()), (2, 0));
    let err = service.pay("keep", 1, None).await.unwrap_err();
    assert!(matches!(
        err,
        OrderServiceError::Rejected(OrderError::InvalidTransition { .. })
    ));

    let shipped = service.ship("keep", Some("trk".into()), Some(2)).await.unwrap();
    assert_eq!(shipped.order.status(), OrderStatus::Shipped);
    assert_eq!(
        shipped.events,
        vec![OrderEvent::OrderShipped {
            tracking: Some("trk".into())
        }]
    );
    let tea = item(&service, "tea").await;
    let cup = item(&service, "cup").await;
    assert_eq!((tea.on_hand(), tea.reserved()), (8, 0));
    assert_eq!((cup.on_hand(), cup.reserved()), (3, 0));

    let delivered = service.deliver("keep", Some(3)).await.unwrap();
    assert_eq!(delivered.order.status(), OrderStatus::Delivered);
    let err = service.cancel("keep", None, None).await.unwrap_err();
    assert!(matches!(
        err,
        OrderServiceError::Rejected(OrderError::InvalidTransition {
            from: OrderStatus::Delivered,
            ..
        })
    ));
}

#[tokio::test]
async fn a_stale_order_version_is_a_conflict_and_releases_nothing() {
    let (service, store) = stocked().await;
    service.place("o-1", "ada", vec![line("tea", 2, 100)]).await.unwrap();
    service.pay("o-1", 200, Some(1)).await.unwrap();
    let head = store.head_position().await.unwrap();
    let err = service.cancel("o-1", None, Some(1)).await.unwrap_err();
    let OrderServiceError::Conflict(conflict) = &err else {
        panic!("expected a conflict, got {err:?}")
    };
    assert_eq!((conflict.expected, conflict.current), (1, 2));
    assert_eq!(conflict.state.status(), OrderStatus::Paid);
    assert_eq!(conflict.events_since.len(), 1);
    assert_eq!(
        conflict.events_since[0].event,
        OrderEvent::OrderPaid { amount_cents: 200 }
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(store.head_position().await.unwrap(), head);
    assert_eq!(item(&service, "tea").await.reserved(), 2);
}

#[tokio::test]
async fn snapshots_follow_the_repositories_of_the_service() {
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn EventStore> = Arc::new(store.clone());
    let service = OrderService::from_repositories(
        Repository::new(dyn_store.clone()),
        Repository::new(dyn_store.clone())
            .with_snapshots(5)
            .with_retry_policy(RetryPolicy::no_retry()),
    );
    let register = StockCommand::Register {
        sku: "tea".into(),
        name: "Tea".into(),
    };
    service.stock().execute("tea", register, None).await.unwrap();
    service
        .stock()
        .execute("tea", StockCommand::Receive { quantity: 100 }, None)
        .await
        .unwrap();
    for i in 0..12 {
        service
            .place(&format!("o-{i}"), "ada", vec![line("tea", 1, 1)])
            .await
            .unwrap();
    }
    let loaded = service.stock().load("tea").await.unwrap();
    assert_eq!((loaded.version, loaded.state.reserved()), (14, 12));
    assert!(
        loaded.snapshot_version.is_some(),
        "the stock item was snapshotted by placements"
    );
    let plain = Repository::<StockItem>::new(dyn_store).load("tea").await.unwrap();
    assert_eq!(plain.state, loaded.state);
    // Order streams have no snapshots (their repository has none).
    let all = store.read_all(1, usize::MAX).await.unwrap();
    assert!(
        all.iter()
            .filter(|e| is_snapshot_stream(&e.stream_id))
            .all(|e| e.metadata.extra["strata.snapshot.of"] == "stock-tea")
    );
    assert!(
        all.iter()
            .any(|e| e.stream_id == StreamId::new("$snapshot-stock-tea").unwrap())
    );
}

/// Reservations belong to an order's life: through the public repositories
/// `service.stock()` and `service.orders()`, the commands that reserve,
/// release or commit stock (or place, ship or cancel an order without its
/// stock) are refused, so they cannot strand or double a reservation.
#[tokio::test]
async fn commands_with_stock_effects_run_only_through_the_service() {
    use strata_aggregates::RepositoryError;
    use strata_aggregates::domain::order::{OrderCommand, OrderCommandKind};

    let (service, store) = stocked().await;
    service.place("o-1", "ada", vec![line("tea", 3, 250)]).await.unwrap();
    let head = store.head_position().await.unwrap();

    let stock_commands = [
        StockCommand::Reserve {
            order_id: "o-2".into(),
            quantity: 1,
        },
        StockCommand::Release { order_id: "o-1".into() },
        StockCommand::Commit { order_id: "o-1".into() },
    ];
    for command in stock_commands {
        let kind = command.kind();
        let err = service.stock().execute("tea", command, None).await.unwrap_err();
        assert!(
            matches!(&err, RepositoryError::Rejected(StockError::ServiceOnly { command }) if *command == kind),
            "{kind}: {err:?}"
        );
        assert_eq!(err.rejection().unwrap().kind(), ErrorKind::InvalidInput);
    }
    let order_commands = [
        OrderCommand::Place {
            order_id: "o-3".into(),
            customer: "bob".into(),
            lines: vec![line("tea", 1, 250)],
        },
        OrderCommand::Cancel { reason: None },
        OrderCommand::Ship { tracking: None },
    ];
    for command in order_commands {
        let kind = command.kind();
        let id = if kind == OrderCommandKind::Place { "o-3" } else { "o-1" };
        let err = service.orders().execute(id, command, None).await.unwrap_err();
        assert!(
            matches!(&err, RepositoryError::Rejected(OrderError::ServiceOnly { command }) if *command == kind),
            "{kind}: {err:?}"
        );
        assert_eq!(err.rejection().unwrap().kind(), ErrorKind::InvalidInput);
    }
    assert_eq!(store.head_position().await.unwrap(), head, "nothing was written");
    assert_eq!(item(&service, "tea").await.reservation("o-1"), Some(3));

    // The commands without stock effects still run on the repositories.
    let paid = service
        .orders()
        .execute("o-1", OrderCommand::Pay { amount_cents: 750 }, None)
        .await
        .unwrap();
    assert_eq!(paid.state.status(), OrderStatus::Paid);
    service
        .stock()
        .execute("tea", StockCommand::Adjust { counted: 12 }, None)
        .await
        .unwrap();
    // And the service still runs the others, with their stock effects.
    let cancelled = service.cancel("o-1", None, None).await.unwrap();
    assert_eq!(cancelled.stock[0].item.reservation("o-1"), None);
}

/// Store errors keep the store's own kind: an event over the payload limit
/// is too large, not merely invalid input.
#[tokio::test]
async fn a_store_limit_keeps_its_kind() {
    let limits = strata_store::Limits {
        max_payload_bytes: 256,
        ..strata_store::Limits::default()
    };
    let service = OrderService::new(Arc::new(MemoryStore::with_limits(limits).unwrap()));
    let register = StockCommand::Register {
        sku: "tea".into(),
        name: "Tea".into(),
    };
    service.stock().execute("tea", register, None).await.unwrap();
    service
        .stock()
        .execute("tea", StockCommand::Receive { quantity: 5 }, None)
        .await
        .unwrap();
    let err = service
        .place("o-1", &"a very long customer name ".repeat(20), vec![line("tea", 1, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            OrderServiceError::Store(strata_store::StoreError::PayloadTooLarge { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::TooLarge);
}
