//! Property: for random command sequences, replaying the stored events
//! rebuilds exactly the state the repository returned, with and without
//! snapshots, and the stock invariants hold throughout.

use std::sync::Arc;

use proptest::prelude::*;
use strata_aggregates::domain::order::{Order, OrderCommand, OrderLine};
use strata_aggregates::domain::stock::{StockCommand, StockItem};
use strata_aggregates::{Aggregate, Repository, RepositoryError, decode};
use strata_store::{Direction, EventStore, MemoryStore};

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

fn stock_command() -> impl Strategy<Value = StockCommand> {
    prop_oneof![
        1 => Just(StockCommand::Register { sku: "x".into(), name: "X".into() }),
        3 => (0..20u64).prop_map(|quantity| StockCommand::Receive { quantity }),
        4 => (order_id(), 0..10u64).prop_map(|(order_id, quantity)| StockCommand::Reserve { order_id, quantity }),
        2 => order_id().prop_map(|order_id| StockCommand::Release { order_id }),
        2 => order_id().prop_map(|order_id| StockCommand::Commit { order_id }),
        1 => (0..40u64).prop_map(|counted| StockCommand::Adjust { counted }),
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

/// Runs `commands` against a fresh repository and checks, after each one,
/// that the state it returned (or put in a conflict) is the replayed state.
async fn check<A>(commands: Vec<(A::Command, Expect)>, every: Option<u64>, invariant: impl Fn(&A))
where
    A: strata_aggregates::Snapshottable + PartialEq + std::fmt::Debug,
{
    let store = MemoryStore::new();
    let mut repo = Repository::<A>::new(Arc::new(store.clone()));
    if let Some(every) = every {
        repo = repo.with_snapshots(every);
    }
    let id = "x";
    let mut version = 0u64;
    for (command, expect) in commands {
        let expected = match expect {
            Expect::None => None,
            Expect::Current => Some(version),
            Expect::Behind(n) if version >= n => Some(version - n),
            Expect::Behind(_) => None,
        };
        let stale = matches!(expected, Some(v) if v != version);
        match repo.execute(id, command, expected).await {
            Ok(done) => {
                assert!(!stale, "a stale version must not succeed");
                let (replayed, stored) = replay::<A>(&store, id).await;
                assert_eq!(done.version, stored);
                assert_eq!(done.state, replayed);
                invariant(&done.state);
                version = done.version;
            }
            Err(RepositoryError::Conflict(c)) => {
                assert!(stale, "a conflict only for a stale version");
                let (replayed, stored) = replay::<A>(&store, id).await;
                assert_eq!((c.current, c.state.clone()), (stored, replayed));
                assert_eq!(c.events_since.len() as u64, version - expected.unwrap());
            }
            Err(RepositoryError::Rejected(_)) => {
                let (_, stored) = replay::<A>(&store, id).await;
                assert_eq!(stored, version, "a refusal writes nothing");
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
        // A fresh load (through the snapshots, if any) agrees as well.
        let loaded = repo.load(id).await.unwrap();
        let (replayed, _) = replay::<A>(&store, id).await;
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
        commands in prop::collection::vec((stock_command(), expect()), 1..40),
        every in snapshots(),
    ) {
        runtime().block_on(check::<StockItem>(commands, every, |item| {
            assert!(item.reserved() <= item.on_hand(), "reserved ≤ on hand: {item:?}");
            assert_eq!(item.reserved(), item.reservations().values().sum::<u64>());
        }));
    }

    #[test]
    fn order_replay_equals_repository_state(
        commands in prop::collection::vec((order_command(), expect()), 1..20),
        every in snapshots(),
    ) {
        runtime().block_on(check::<Order>(commands, every, |order| {
            assert_eq!(order.total_cents(), order.lines().iter().map(|l| u64::from(l.quantity) * l.unit_price_cents).sum::<u64>());
        }));
    }
}
