//! Competing consumers as tasks: a writer appends jobs (some of them
//! poison, which every consumer refuses) among unrelated events, while
//! consumers read batches and at random acknowledge, ask for a retry, park,
//! or die mid-batch (a replacement takes their place). When the group has
//! drained, every job was handled and acknowledged at least once or is
//! parked, parked only after its retries (or by a consumer), nothing was
//! lost; with the pinned strategy, no stream had two events handled under
//! current leases at once and each stream was acknowledged in order.
//!
//! On the embedded tables and on PostgreSQL (its version with processes
//! is `competing_processes.rs`). `STRATA_COMPETING_SEED` replays a run
//! (the seed is printed); `STRATA_COMPETING_JOBS` makes it longer.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_subscriptions::{ConsumerName, Strategy};
use strata_testkit::until_async;

use common::ledger::{End, Handling, check};
use common::work::{MAX_RETRIES, consume, jobs, parked, seed, settings, write_jobs};
use common::{Fixture, group};

const CONSUMERS: usize = 4;
const DEATHS: u32 = 4;

async fn run(fx: Fixture, strategy: Strategy) {
    let seed = seed();
    println!("STRATA_COMPETING_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let g = group("work");
    fx.subs.create_group(&g, settings(strategy)).await.unwrap();
    let ledger = Arc::new(Mutex::new(Vec::<Handling>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let deaths_left = Arc::new(AtomicU32::new(DEATHS));
    let writer = tokio::spawn(write_jobs(fx.store.clone(), jobs(), rng.random()));

    // The consumers, and a replacement for each that dies.
    let supervisor = {
        let (subs, g, ledger, stop, deaths_left) = (
            fx.subs.clone(),
            g.clone(),
            ledger.clone(),
            stop.clone(),
            deaths_left.clone(),
        );
        let seed = rng.random::<u64>();
        tokio::spawn(async move {
            let mut next = 0u64;
            let mut running = tokio::task::JoinSet::new();
            let spawn = |running: &mut tokio::task::JoinSet<()>, next: &mut u64| {
                let ledger = ledger.clone();
                let me = ConsumerName::new(format!("consumer-{next}")).unwrap();
                running.spawn(consume(
                    subs.clone(),
                    g.clone(),
                    me,
                    seed ^ *next,
                    deaths_left.clone(),
                    stop.clone(),
                    move |h, done| {
                        if done {
                            ledger.lock().unwrap().push(h.clone());
                        }
                    },
                ));
                *next += 1;
            };
            for _ in 0..CONSUMERS {
                spawn(&mut running, &mut next);
            }
            while let Some(done) = running.join_next().await {
                done.expect("a consumer panicked");
                if !stop.load(Ordering::SeqCst) {
                    spawn(&mut running, &mut next);
                }
            }
        })
    };

    let (events, poison) = writer.await.unwrap();
    let head = fx.store.head_position().await.unwrap();
    until_async("the group to drain", || async {
        let info = fx.subs.group(&g).await.unwrap();
        info.examined == head && info.pending == 0 && info.in_flight == 0
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    supervisor.await.unwrap();

    let parked = parked(&fx.subs, &g).await;
    let handlings = ledger.lock().unwrap().clone();
    let info = fx.subs.group(&g).await.unwrap();
    check(
        &handlings,
        &events,
        &poison,
        &parked,
        MAX_RETRIES,
        strategy == Strategy::PinnedPerStream,
        info.counters.acked,
    );
    assert_eq!(info.checkpoint, head, "everything handled or parked");
    assert_eq!(info.parked, parked.len() as u64);
    let died = handlings.iter().filter(|h| h.end == End::Died).count();
    assert_eq!(died as u32, DEATHS - deaths_left.load(Ordering::SeqCst));
    println!(
        "{} jobs, {} handlings, {} deaths, {} timed out, {} redelivered, {} parked",
        events.len(),
        handlings.len(),
        died,
        info.counters.timed_out,
        info.counters.redelivered,
        parked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_consumers_on_sled_lose_nothing() {
    run(Fixture::sled(), Strategy::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_consumers_on_sled_keep_each_stream_in_order() {
    run(Fixture::sled(), Strategy::PinnedPerStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn round_robin_consumers_on_postgres_lose_nothing() {
    run(Fixture::postgres().await, Strategy::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn pinned_consumers_on_postgres_keep_each_stream_in_order() {
    run(Fixture::postgres().await, Strategy::PinnedPerStream).await;
}
