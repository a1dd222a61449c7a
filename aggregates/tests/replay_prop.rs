//! Property: for random command sequences, replaying the stored events
//! rebuilds exactly the state the repository (or, for commands that move
//! stock, the order service) returned, with and without snapshots, and the
//! stock invariants hold throughout.

use std::sync::Arc;

use proptest::prelude::*;
use strata_aggregates::domain::order::{Order, OrderCommand, OrderLine, OrderStatus};
use strata_aggregates::domain::service::{OrderService, OrderServiceError};
use strata_aggregates::domain::stock::{StockCommand, StockItem};
use strata_aggregates::{Aggregate, Executed, Loaded, Repository, RepositoryError, decode};
use strata_store::{Direction, EventStore, MemoryStore, Metadata};

/// How the caller names the version it decided on.
#[derive(Clone, Debug)]
enum Expect {
    /// Let the repository read and retry.
    None,
    /// The current version.
    Current,
    /// A version `n` behind the current one (a stale client).
    Behind(u64),
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::None),
        2 => Just(Expect::Current),
        1 => (1..3u64).prop_map(Expect::Behind),
    ]
}

fn order_id() -> impl Strategy<Value = String> {
    (0..4u8).prop_map(|i| format!("o-{i}"))
}

/// A stock command, or an order command that moves this item's stock
/// (reservations run only through the order service).
#[derive(Clone, Debug)]
enum StockOp {
    /// Through the stock repository.
    Direct(StockCommand),
    /// Place an order with one line of this SKU (reserves).
    Place { order_id: String, quantity: u32 },
    /// Cancel the order (releases).
    Cancel { order_id: String },
    /// Pay the order if it is only placed, then ship it (commits).
    Ship { order_id: String },
}

fn stock_op() -> impl Strategy<Value = (StockOp, Expect)> {
    let direct = prop_oneof![
        1 => Just(StockCommand::Register { sku: "x".into(), name: "X".into() }),
        3 => (0..20u64).prop_map(|quantity| StockCommand::Receive { quantity }),
        1 => (0..40u64).prop_map(|counted| StockCommand::Adjust { counted }),
        // Refused on the repository: they belong to the order service.
        1 => (order_id(), 0..10u64).prop_map(|(order_id, quantity)| StockCommand::Reserve { order_id, quantity }),
        1 => order_id().prop_map(|order_id| StockCommand::Release { order_id }),
    ];
    prop_oneof![
        5 => (direct, expect()).prop_map(|(c, e)| (StockOp::Direct(c), e)),
        // The order service decides on the stock it reads: no expected version.
        4 => (order_id(), 0..10u32).prop_map(|(order_id, quantity)| (StockOp::Place { order_id, quantity }, Expect::None)),
        2 => order_id().prop_map(|order_id| (StockOp::Cancel { order_id }, Expect::None)),
        2 => order_id().prop_map(|order_id| (StockOp::Ship { order_id }, Expect::None)),
    ]
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    let line = (0..3u8, 0..4u32, 0..500u64).prop_map(|(s, quantity, unit_price_cents)| OrderLine {
        sku: format!("s{s}"),
        quantity,
        unit_price_cents,
    });
    prop_oneof![
        2 => prop::collection::vec(line, 0..3).prop_map(|lines| OrderCommand::Place {
            order_id: "x".into(),
            customer: "c".into(),
            lines,
        }),
        2 => prop_oneof![Just(0u64), 0..2000u64].prop_map(|amount_cents| OrderCommand::Pay { amount_cents }),
        1 => Just(OrderCommand::Ship { tracking: Some("t".into()) }),
        1 => Just(OrderCommand::Deliver),
        1 => Just(OrderCommand::Cancel { reason: None }),
    ]
}

fn snapshots() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (1..5u64).prop_map(Some)]
}

/// The state folded from every stored event of `A`'s stream `id`.
async fn replay<A: Aggregate>(store: &MemoryStore, id: &str) -> (A, u64) {
    let stream = Repository::<A>::stream_id(id).unwrap();
    let events = store
        .read_stream(&stream, 1, Direction::Forward, usize::MAX)
        .await
        .unwrap();
    let mut state = A::default();
    for e in &events {
        state.apply(&decode::<A::Event>(e).unwrap());
    }
    (state, events.len() as u64)
}

/// What a command did to the aggregate under test, whichever way it went.
enum Outcome<A> {
    Done { state: A, version: u64 },
    Conflict { current: u64, state: A, events_since: u64 },
    Refused,
}

impl<A: Aggregate> Outcome<A> {
    fn of(result: Result<Executed<A>, RepositoryError<A>>) -> Outcome<A> {
        match result {
            Ok(done) => Outcome::Done {
                state: done.state,
                version: done.version,
            },
            Err(RepositoryError::Conflict(c)) => Outcome::Conflict {
                current: c.current,
                events_since: c.events_since.len() as u64,
                state: c.state,
            },
            Err(RepositoryError::Rejected(_)) => Outcome::Refused,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

/// How the commands of a test reach the aggregate `A` with id `x`.
trait Driver<A: Aggregate> {
    type Op;
    async fn run(&self, op: Self::Op, expected: Option<u64>) -> Outcome<A>;
    async fn load(&self) -> Loaded<A>;
}

struct StockDriver(OrderService);

impl Driver<StockItem> for StockDriver {
    type Op = StockOp;

    async fn run(&self, op: StockOp, expected: Option<u64>) -> Outcome<StockItem> {
        let service = &self.0;
        let written = match op {
            StockOp::Direct(command) => return Outcome::of(service.stock().execute("x", command, expected).await),
            StockOp::Place { order_id, quantity } => {
                let line = OrderLine {
                    sku: "x".into(),
                    quantity,
                    unit_price_cents: 3,
                };
                service.place(&order_id, "c", vec![line]).await
            }
            StockOp::Cancel { order_id } => service.cancel(&order_id, None, None).await,
            StockOp::Ship { order_id } => {
                let order = service.orders().load(&order_id).await.unwrap().state;
                if order.status() == OrderStatus::Placed {
                    service.pay(&order_id, order.total_cents(), None).await.unwrap();
                }
                service.ship(&order_id, None, None).await
            }
        };
        match written {
            Ok(write) => {
                let part = write.stock.into_iter().find(|s| s.sku == "x").expect("the line's SKU");
                Outcome::Done {
                    state: part.item,
                    version: part.version,
                }
            }
            Err(
                OrderServiceError::Rejected(_)
                | OrderServiceError::StockRejected { .. }
                | OrderServiceError::UnknownSku { .. },
            ) => Outcome::Refused,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    async fn load(&self) -> Loaded<StockItem> {
        self.0.stock().load("x").await.unwrap()
    }
}

struct OrderDriver(OrderService);

impl Driver<Order> for OrderDriver {
    type Op = OrderCommand;

    async fn run(&self, command: OrderCommand, expected: Option<u64>) -> Outcome<Order> {
        match self.0.execute("x", &command, expected, &Metadata::default()).await {
            Ok(write) => Outcome::Done {
                state: write.order,
                version: write.version,
            },
            Err(OrderServiceError::Conflict(c)) => Outcome::Conflict {
                current: c.current,
                events_since: c.events_since.len() as u64,
                state: c.state,
            },
            Err(
                OrderServiceError::Rejected(_)
                | OrderServiceError::StockRejected { .. }
                | OrderServiceError::UnknownSku { .. },
            ) => Outcome::Refused,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    async fn load(&self) -> Loaded<Order> {
        self.0.orders().load("x").await.unwrap()
    }
}

/// A service over `store`; the repository of `A` takes snapshots every
/// `every` events, when given.
fn service(store: &MemoryStore, every: Option<u64>, snapshots_on_stock: bool) -> OrderService {
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let mut orders = Repository::<Order>::new(shared.clone());
    let mut stock = Repository::<StockItem>::new(shared);
    if let Some(every) = every {
        if snapshots_on_stock {
            stock = stock.with_snapshots(every);
        } else {
            orders = orders.with_snapshots(every);
        }
    }
    OrderService::from_repositories(orders, stock)
}

/// Runs `ops` through `driver` and checks, after each one, that the state it
/// returned (or put in a conflict) is the replayed state of the stream `x`.
async fn check<A, D>(store: &MemoryStore, driver: D, ops: Vec<(D::Op, Expect)>, invariant: impl Fn(&A))
where
    A: Aggregate + PartialEq + std::fmt::Debug,
    D: Driver<A>,
{
    let mut version = 0u64;
    for (op, expect) in ops {
        let expected = match expect {
            Expect::None => None,
            Expect::Current => Some(version),
            Expect::Behind(n) if version >= n => Some(version - n),
            Expect::Behind(_) => None,
        };
        let stale = matches!(expected, Some(v) if v != version);
        match driver.run(op, expected).await {
            Outcome::Done { state, version: after } => {
                assert!(!stale, "a stale version must not succeed");
                let (replayed, stored) = replay::<A>(store, "x").await;
                assert_eq!(after, stored);
                assert_eq!(state, replayed);
                invariant(&state);
                version = after;
            }
            Outcome::Conflict {
                current,
                state,
                events_since,
            } => {
                assert!(stale, "a conflict only for a stale version");
                let (replayed, stored) = replay::<A>(store, "x").await;
                assert_eq!((current, state), (stored, replayed));
                assert_eq!(events_since, version - expected.unwrap());
            }
            Outcome::Refused => {
                let (_, stored) = replay::<A>(store, "x").await;
                assert_eq!(stored, version, "a refusal writes nothing");
            }
        }
        // A fresh load (through the snapshots, if any) agrees as well.
        let loaded = driver.load().await;
        let (replayed, _) = replay::<A>(store, "x").await;
        assert_eq!(loaded.state, replayed);
        assert_eq!(loaded.version, version);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn stock_replay_equals_repository_state(
        ops in prop::collection::vec(stock_op(), 1..40),
        every in snapshots(),
    ) {
        runtime().block_on(async {
            let store = MemoryStore::new();
            let driver = StockDriver(service(&store, every, true));
            check::<StockItem, _>(&store, driver, ops, |item| {
                assert!(item.reserved() <= item.on_hand(), "reserved ≤ on hand: {item:?}");
                assert_eq!(item.reserved(), item.reservations().values().sum::<u64>());
            })
            .await;
        });
    }

    #[test]
    fn order_replay_equals_repository_state(
        commands in prop::collection::vec((order_command(), expect()), 1..20),
        every in snapshots(),
    ) {
        runtime().block_on(async {
            let store = MemoryStore::new();
            let service = service(&store, every, false);
            for sku in ["s0", "s1", "s2"] {
                let register = StockCommand::Register { sku: sku.into(), name: sku.into() };
                service.stock().execute(sku, register, None).await.unwrap();
                service.stock().execute(sku, StockCommand::Receive { quantity: 1000 }, None).await.unwrap();
            }
            check::<Order, _>(&store, OrderDriver(service), commands, |order| {
                assert_eq!(order.total_cents(), order.lines().iter().map(|l| u64::from(l.quantity) * l.unit_price_cents).sum::<u64>());
            })
            .await;
        });
    }
}
