//! How fast the log is consumed, in one run on one segment store: `read_all`,
//! a filtered subscription matching 1% of the events, and a persistent
//! subscription group drained by 1, 4 and 16 consumers (events/s handled,
//! p99 of a read call, redeliveries).
//!
//! Not a criterion bench: each figure is one pass over a large log, as the
//! issue asks ("on 1M events in one run"). Run:
//!
//! ```text
//! STRATA_BENCH_EVENTS=1000000 STRATA_BENCH_GROUP_EVENTS=100000 cargo bench --bench consumers
//! ```
//!
//! (defaults: 200,000 and 20,000). Figures are printed, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_store::{EventFilter, EventStore, ExpectedVersion, NewEvent, SegmentStore, StreamId, SubscriptionItem};
use strata_subscriptions::{ConsumerName, GroupName, GroupSettings, StartFrom, Subscriptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rate(n: u64, d: Duration) -> String {
    format!(
        "{:>10.0} events/s ({n} in {:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

/// Appends `n` events in batches of 1,000, one stream per batch; every
/// 100th event is of type `Rare`, the others `Common`.
async fn fill(store: &SegmentStore, n: u64, first_stream: u64) {
    let payload = br#"{"order":"o-1","amount":1234,"note":"a payload of some sixty bytes"}"#.to_vec();
    let mut written = 0;
    let mut s = first_stream;
    while written < n {
        let size = (n - written).min(1_000);
        let events = (0..size)
            .map(|i| {
                let t = if (written + i) % 100 == 99 { "Rare" } else { "Common" };
                NewEvent::new(t, payload.clone())
            })
            .collect();
        let stream = StreamId::new(format!("batch-{s}")).unwrap();
        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
        written += size;
        s += 1;
    }
}

async fn drain(subscriptions: &Subscriptions, consumers: usize, events: u64, after: u64) {
    let group = GroupName::new(format!("bench-{consumers}")).unwrap();
    let settings = GroupSettings {
        start: StartFrom::After(after),
        buffer_size: 10_000,
        ..GroupSettings::default()
    };
    subscriptions.create_group(&group, settings).await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..consumers {
        let (subscriptions, group) = (subscriptions.clone(), group.clone());
        tasks.push(tokio::spawn(async move {
            let me = ConsumerName::new(format!("c{c}")).unwrap();
            let mut latencies = Vec::new();
            loop {
                let t = Instant::now();
                let batch = subscriptions
                    .read(&group, &me, 100, Duration::from_millis(200))
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
                if batch.is_empty() {
                    let info = subscriptions.group(&group).await.unwrap();
                    if info.counters.acked >= events {
                        return latencies;
                    }
                    continue;
                }
                let tokens: Vec<_> = batch.iter().map(|d| d.token).collect();
                subscriptions.ack(&group, &tokens).await.unwrap();
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let info = subscriptions.group(&group).await.unwrap();
    println!(
        "group, {consumers:>2} consumers    {}  p99 read {:>7.2} ms  redelivered {}",
        rate(info.counters.acked, elapsed),
        p99.as_secs_f64() * 1000.0,
        info.counters.redelivered
    );
    subscriptions.delete_group(&group).await.unwrap();
}

fn main() {
    let events = env("STRATA_BENCH_EVENTS", 200_000);
    let group_events = env("STRATA_BENCH_GROUP_EVENTS", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open(dir.path()).unwrap();
        let t = Instant::now();
        fill(&store, events, 0).await;
        println!("append (batches of 1,000)   {}", rate(events, t.elapsed()));

        let t = Instant::now();
        let mut from = 1;
        let mut read = 0;
        loop {
            let page = store.read_all(from, 10_000).await.unwrap();
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            read += page.len() as u64;
        }
        println!("read_all (pages of 10,000)  {}", rate(read, t.elapsed()));

        let t = Instant::now();
        let mut items = store.subscribe_filtered(0, EventFilter::all().event_type("Rare"));
        let (mut matched, mut examined) = (0u64, 0u64);
        while examined < events {
            match items.next().await.unwrap().unwrap() {
                SubscriptionItem::Event(e) => {
                    matched += 1;
                    examined = e.position;
                }
                SubscriptionItem::Checkpoint(p) => examined = p,
            }
        }
        println!(
            "filtered subscription, 1%   {} examined, {matched} matched",
            rate(examined, t.elapsed())
        );

        let subscriptions = Subscriptions::local(Arc::new(store.clone()), store.tables().unwrap()).unwrap();
        for consumers in [1, 4, 16] {
            // Each group drains its own stretch of fresh events.
            let head = store.head_position().await.unwrap();
            fill(&store, group_events, 1_000_000 + head).await;
            drain(&subscriptions, consumers, group_events, head).await;
        }
        subscriptions.stop().await;
    });
}
