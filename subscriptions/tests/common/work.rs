//! The workload of the competing-consumer tests, shared by the task and
//! the process versions: the group's settings, a writer of jobs (some
//! poison) among unrelated events, and a consumer that answers at random.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_store::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use strata_subscriptions::{ConsumerName, GroupName, GroupSettings, NackAction, Strategy, Subscriptions};

use super::ledger::{End, Handling, micros};
use super::sid;

pub const MAX_RETRIES: u32 = 3;
pub const ACK_TIMEOUT: Duration = Duration::from_millis(1500);

pub fn settings(strategy: Strategy) -> GroupSettings {
    GroupSettings {
        filter: EventFilter::all().category("job"),
        strategy,
        max_retries: MAX_RETRIES,
        ack_timeout: ACK_TIMEOUT,
        retry_delay: Duration::from_millis(2),
        max_retry_delay: Duration::from_millis(20),
        buffer_size: 64,
        ..GroupSettings::default()
    }
}

/// `STRATA_COMPETING_SEED`, or a fresh one.
pub fn seed() -> u64 {
    std::env::var("STRATA_COMPETING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// `STRATA_COMPETING_JOBS`, or 400.
pub fn jobs() -> usize {
    std::env::var("STRATA_COMPETING_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

/// Appends `n` jobs on 12 streams (1 in 50 of type `Poison`), with
/// unrelated events between them; the jobs' positions and the poison's.
pub async fn write_jobs(store: Arc<dyn EventStore>, n: usize, seed: u64) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut events, mut poison) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..n {
        let stream = sid(&format!("job-{}", rng.random_range(0..12)));
        let t = if i % 50 == 7 { "Poison" } else { "Job" };
        let r = store
            .append(&stream, ExpectedVersion::Any, vec![NewEvent::new(t, "{}")])
            .await
            .unwrap();
        events.insert(r.last_position);
        if t == "Poison" {
            poison.insert(r.last_position);
        }
        if rng.random_bool(0.2) {
            store
                .append(
                    &sid("noise-1"),
                    ExpectedVersion::Any,
                    vec![NewEvent::new("Noise", "{}")],
                )
                .await
                .unwrap();
        }
        if i % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    (events, poison)
}

/// Every parked event of the group, as (position, deliveries).
pub async fn parked(subs: &Subscriptions, g: &GroupName) -> BTreeMap<u64, u32> {
    let mut parked = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = subs.parked(g, after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        parked.extend(page.iter().map(|p| (p.position, p.attempts)));
    }
    parked
}

/// One consumer: reads, handles, answers at random (poison is always
/// refused); returns when told to stop, or when it "dies", abandoning what
/// it holds, while `deaths_left` allows. `record(handling, done)` is
/// called when a handling starts (`done` false, as if it died) and when it
/// ends.
pub async fn consume(
    subs: Subscriptions,
    g: GroupName,
    me: ConsumerName,
    seed: u64,
    deaths_left: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    record: impl Fn(&Handling, bool),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::SeqCst) {
        let read_started = micros();
        let max = rng.random_range(1..=8);
        let batch = subs.read(&g, &me, max, Duration::from_millis(100)).await.expect("read");
        let lease_until = read_started + ACK_TIMEOUT.as_micros() as u64;
        for d in batch {
            let mut h = Handling {
                stream: d.event.stream_id.to_string(),
                position: d.token.position,
                started: micros(),
                finished: None,
                lease_until,
                end: End::Died,
            };
            record(&h, false);
            let roll: f64 = rng.random();
            if roll < 0.03
                && deaths_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                record(&h, true);
                return;
            }
            tokio::task::yield_now().await;
            h.finished = Some(micros());
            // Each answer is recorded as in doubt before it is sent: a
            // process killed before it records the outcome leaves that.
            if d.event.event_type == "Poison" || roll < 0.10 {
                h.end = End::Retrying;
                record(&h, false);
                let s = subs
                    .nack(&g, &[d.token], NackAction::Retry, "cannot handle")
                    .await
                    .expect("nack");
                h.end = if s.settled == 1 { End::Retried } else { End::Stale };
            } else if roll < 0.13 {
                h.end = End::Parking;
                record(&h, false);
                let s = subs
                    .nack(&g, &[d.token], NackAction::Park, "refused")
                    .await
                    .expect("nack");
                h.end = if s.settled == 1 { End::Parked } else { End::Stale };
            } else {
                h.end = End::Acking;
                record(&h, false);
                let s = subs.ack(&g, &[d.token]).await.expect("ack");
                h.end = if s.settled == 1 { End::Acked } else { End::Stale };
            }
            record(&h, true);
        }
    }
}
