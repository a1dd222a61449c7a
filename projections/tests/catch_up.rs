//! A runner that starts far behind the log catches up in large batches
//! (the rebuild's batched path on the live generation, see
//! `RunnerOptions::catch_up_keys`) and ends with models (on sled) equal,
//! byte for byte, to those of runners that followed the same log as it was
//! written, one small batch at a time (in memory); also when it catches up a second time, from
//! a checkpoint in the middle, on top of what it wrote the first time
//! (reads of keys it did not stage go to the committed model), and with
//! commits every few changed keys or one for everything.

mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use strata_projections::{Projections, RunnerOptions};
use strata_store::EventStore;
use support::world::{World, assert_models_match};
use support::{open_buffered, runtime};

const WAIT: Duration = Duration::from_secs(30);

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every model's entries.
fn entries(p: &Projections) -> Vec<Entries> {
    p.models().iter().map(|m| m.entries().unwrap()).collect()
}

async fn catch_up_equals_live(ops: Vec<(u8, u32, u32)>, split: usize, batch_size: usize, catch_up_keys: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_buffered(dir.path());
    // Live: in memory, running while the log is written, a batch of at
    // most 2 events per commit.
    let live = Projections::in_memory(Arc::new(store.clone()))
        .unwrap()
        .with_options(RunnerOptions {
            batch_size: 2,
            ..RunnerOptions::default()
        });
    live.start().await.unwrap();
    // Behind: on sled, started only after each half of the log is written.
    let behind = Projections::open(&store).unwrap().with_options(RunnerOptions {
        batch_size,
        catch_up_keys,
    });
    let mut world = World::default();
    let split = split % (ops.len() + 1);
    for half in [&ops[..split], &ops[split..]] {
        for &(kind, a, b) in half {
            if let Some(parts) = world.step(kind, a, b) {
                store.append_multi(parts).await.unwrap();
            }
        }
        let head = store.head_position().await.unwrap();
        assert!(behind.checkpoint() <= head);
        behind.start().await.unwrap();
        behind.wait_for(head, WAIT).await.unwrap();
        behind.stop().await.unwrap();
        live.wait_for(head, WAIT).await.unwrap();
        assert_models_match(&world, behind.orders(), behind.stock());
        assert_eq!(entries(&behind), entries(&live), "caught up vs live at {head}");
    }
    live.stop().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn a_runner_far_behind_catches_up_to_what_live_runners_hold(
        ops in proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 1..300),
        split in any::<usize>(),
        batch_size in 1usize..8,
        catch_up_keys in prop_oneof![1usize..6, Just(usize::MAX)],
    ) {
        runtime().block_on(catch_up_equals_live(ops, split, batch_size, catch_up_keys));
    }
}
