//! The aggregates and the projections together: random commands through
//! the order service and the stock repositories (snapshots on, Bincode and
//! JSON mixed, quantities up to and past the limits, every direct stock
//! command the API has, refused ones included), both projections following
//! live, the odd rebuild in place meanwhile. At the end both runners are
//! still running, the live models equal a rebuild from scratch byte for
//! byte, and they show what the aggregates hold.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use strata_aggregates::domain::order::{Order, OrderLine};
use strata_aggregates::domain::service::{OrderService, OrderServiceError};
use strata_aggregates::domain::stock::{MAX_ON_HAND, MAX_QUANTITY, StockCommand, StockItem};
use strata_aggregates::{Format, Repository, RepositoryError};
use strata_projections::{
    ModelStore, ORDER_SUMMARY, OrderSummaryProjection, Projection, Projections, RebuildOptions, RunState,
    RunnerOptions, STOCK_LEVELS, StockLevelsProjection, rebuild_all,
};
use strata_store::{Durability, EventStore, SegmentOptions, SegmentStore};

const WAIT: Duration = Duration::from_secs(30);
const SKUS: u8 = 3;
const ORDERS: u8 = 6;

#[derive(Clone, Debug)]
enum Op {
    /// Register SKU `sku` (`named` is the SKU the command names: another one
    /// is refused), through stock repository `repo` (0 or 1).
    Register {
        repo: u8,
        sku: u8,
        named: u8,
    },
    Receive {
        repo: u8,
        sku: u8,
        quantity: u64,
    },
    Adjust {
        repo: u8,
        sku: u8,
        counted: u64,
    },
    /// A direct reserve: refused by the repository (only the service reserves).
    DirectReserve {
        sku: u8,
        order: u8,
    },
    Place {
        order: u8,
        customer: u8,
        lines: Vec<(u8, u32, u64)>,
    },
    /// Pay the order's total, or one cent more (refused).
    Pay {
        order: u8,
        exact: bool,
    },
    Ship {
        order: u8,
    },
    Deliver {
        order: u8,
    },
    Cancel {
        order: u8,
    },
    /// Rebuild both models in place while the runners follow.
    Rebuild,
}

fn quantity() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 1..20u64,
        1 => Just(MAX_QUANTITY),
        1 => Just(MAX_QUANTITY + 1),
        1 => Just(u64::MAX),
    ]
}

fn counted() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..30u64,
        1 => (0..3u64).prop_map(|d| MAX_ON_HAND - d),
        1 => Just(MAX_ON_HAND + 1),
    ]
}

fn line() -> impl Strategy<Value = (u8, u32, u64)> {
    let quantity = prop_oneof![
        6 => 1..6u32,
        1 => Just(1_000_000_000u32),
        1 => Just(u32::MAX),
    ];
    (0..SKUS, quantity, 0..1000u64)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2u8, 0..SKUS, prop_oneof![4 => Just(None), 1 => (0..SKUS).prop_map(Some)])
            .prop_map(|(repo, sku, other)| Op::Register { repo, sku, named: other.unwrap_or(sku) }),
        4 => (0..2u8, 0..SKUS, quantity()).prop_map(|(repo, sku, quantity)| Op::Receive { repo, sku, quantity }),
        2 => (0..2u8, 0..SKUS, counted()).prop_map(|(repo, sku, counted)| Op::Adjust { repo, sku, counted }),
        1 => (0..SKUS, 0..ORDERS).prop_map(|(sku, order)| Op::DirectReserve { sku, order }),
        5 => (0..ORDERS, 0..3u8, prop::collection::vec(line(), 1..3))
            .prop_map(|(order, customer, lines)| Op::Place { order, customer, lines }),
        3 => (0..ORDERS, prop_oneof![4 => Just(true), 1 => Just(false)]).prop_map(|(order, exact)| Op::Pay { order, exact }),
        2 => (0..ORDERS).prop_map(|order| Op::Ship { order }),
        1 => (0..ORDERS).prop_map(|order| Op::Deliver { order }),
        2 => (0..ORDERS).prop_map(|order| Op::Cancel { order }),
        1 => Just(Op::Rebuild),
    ]
}

fn format(json: bool) -> Format {
    if json { Format::Json } else { Format::Bincode }
}

fn sku(i: u8) -> String {
    format!("sku-{i}")
}

fn order(i: u8) -> String {
    format!("o-{i}")
}

/// A stock repository's outcome: a refusal is fine, anything else is a bug.
fn stock_outcome(result: Result<impl Sized, RepositoryError<StockItem>>) {
    match result {
        Ok(_) | Err(RepositoryError::Rejected(_) | RepositoryError::IdMismatch { .. }) => {}
        Err(e) => panic!("unexpected stock error: {e:?}"),
    }
}

/// An order service's outcome: a refusal is fine, anything else is a bug.
fn service_outcome(result: Result<impl Sized, OrderServiceError>) {
    match result {
        Ok(_)
        | Err(
            OrderServiceError::Rejected(_)
            | OrderServiceError::StockRejected { .. }
            | OrderServiceError::UnknownSku { .. },
        ) => {}
        Err(e) => panic!("unexpected order service error: {e:?}"),
    }
}

async fn run(ops: Vec<Op>, orders_json: bool, stock_json: bool, every: u64, batch_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open_with(
        dir.path(),
        SegmentOptions {
            durability: Durability::Buffered,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let projections = Projections::open(&store).unwrap().with_options(RunnerOptions {
        batch_size,
        ..RunnerOptions::default()
    });
    projections.start().await.unwrap();

    let service = OrderService::from_repositories(
        Repository::<Order>::new(shared.clone())
            .with_format(format(orders_json))
            .with_snapshots(every),
        Repository::<StockItem>::new(shared.clone())
            .with_format(format(stock_json))
            .with_snapshots(every),
    );
    // A second stock repository in the other format, without snapshots.
    let other_stock = Repository::<StockItem>::new(shared.clone()).with_format(format(!stock_json));
    let stock = |repo: u8| if repo == 0 { service.stock() } else { &other_stock };

    for op in ops {
        match op {
            Op::Register { repo, sku: s, named } => {
                let register = StockCommand::Register {
                    sku: sku(named),
                    name: format!("Item {named}"),
                };
                stock_outcome(stock(repo).execute(&sku(s), register, None).await);
            }
            Op::Receive { repo, sku: s, quantity } => {
                let receive = StockCommand::Receive { quantity };
                stock_outcome(stock(repo).execute(&sku(s), receive, None).await);
            }
            Op::Adjust { repo, sku: s, counted } => {
                let adjust = StockCommand::Adjust { counted };
                stock_outcome(stock(repo).execute(&sku(s), adjust, None).await);
            }
            Op::DirectReserve { sku: s, order: o } => {
                let reserve = StockCommand::Reserve {
                    order_id: order(o),
                    quantity: 1,
                };
                let result = service.stock().execute(&sku(s), reserve, None).await;
                assert!(matches!(result, Err(RepositoryError::Rejected(_))), "{result:?}");
            }
            Op::Place {
                order: o,
                customer,
                lines,
            } => {
                let lines = lines
                    .into_iter()
                    .map(|(s, quantity, unit_price_cents)| OrderLine {
                        sku: sku(s),
                        quantity,
                        unit_price_cents,
                    })
                    .collect();
                service_outcome(service.place(&order(o), &format!("c{customer}"), lines).await);
            }
            Op::Pay { order: o, exact } => {
                let total = service.orders().load(&order(o)).await.unwrap().state.total_cents();
                let amount = if exact { total } else { total + 1 };
                service_outcome(service.pay(&order(o), amount, None).await);
            }
            Op::Ship { order: o } => service_outcome(service.ship(&order(o), Some("t".into()), None).await),
            Op::Deliver { order: o } => service_outcome(service.deliver(&order(o), None).await),
            Op::Cancel { order: o } => service_outcome(service.cancel(&order(o), None, None).await),
            Op::Rebuild => {
                projections.rebuild(|_| {}).await.unwrap();
            }
        }
    }

    let head = store.head_position().await.unwrap();
    projections.wait_for(head, WAIT).await.unwrap();
    assert_eq!(projections.orders().model().run_state(), RunState::Running);
    assert_eq!(projections.stock().model().run_state(), RunState::Running);

    // The read models show what the aggregates hold.
    for i in 0..SKUS {
        let item = service.stock().load(&sku(i)).await.unwrap();
        match projections.stock().get(&sku(i)).unwrap() {
            Some(level) => {
                assert!(item.state.is_registered());
                assert_eq!(
                    (level.on_hand, level.reserved, level.version),
                    (item.state.on_hand(), item.state.reserved(), item.version),
                    "{}",
                    sku(i)
                );
                assert_eq!(level.available_exact(), i128::from(item.state.available()));
            }
            None => assert!(!item.state.is_registered(), "{} is registered", sku(i)),
        }
    }
    for i in 0..ORDERS {
        let loaded = service.orders().load(&order(i)).await.unwrap();
        match projections.orders().get(&order(i)).unwrap() {
            Some(summary) => assert_eq!(
                (summary.status, summary.total_cents, summary.version),
                (loaded.state.status(), loaded.state.total_cents(), loaded.version),
                "{}",
                order(i)
            ),
            None => assert!(!loaded.exists(), "{} exists", order(i)),
        }
    }

    // Live equals a rebuild from scratch, byte for byte.
    let orders = ModelStore::memory(ORDER_SUMMARY).unwrap();
    let stock_levels = ModelStore::memory(STOCK_LEVELS).unwrap();
    let targets: [(&ModelStore, &dyn Projection); 2] = [
        (&orders, &OrderSummaryProjection),
        (&stock_levels, &StockLevelsProjection),
    ];
    rebuild_all(
        &*shared,
        &targets,
        RebuildOptions {
            batch_size: 7,
            flush_keys: 3,
            ..RebuildOptions::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        orders.entries().unwrap(),
        projections.orders().model().entries().unwrap(),
        "order summary: rebuilt vs live"
    );
    assert_eq!(
        stock_levels.entries().unwrap(),
        projections.stock().model().entries().unwrap(),
        "stock levels: rebuilt vs live"
    );
    projections.stop().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn live_read_models_follow_the_aggregates_and_equal_a_rebuild(
        ops in prop::collection::vec(op(), 1..60),
        orders_json in any::<bool>(),
        stock_json in any::<bool>(),
        every in 1..6u64,
        batch_size in prop_oneof![Just(1usize), Just(3), Just(512)],
    ) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops, orders_json, stock_json, every, batch_size));
    }
}
