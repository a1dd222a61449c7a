//! A stalled consumer: it takes what the group gives and never answers.
//! Writers append 20,000 events meanwhile. The group holds at most its
//! buffer (pending and in flight) and its feed at most its channel: what
//! the group keeps in memory stays bounded, however far the log runs
//! ahead. The writers' speed with the stalled group is measured against
//! the same writes with no group and printed (`--nocapture`), not asserted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_store::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use strata_subscriptions::{FEED_CAPACITY, GroupSettings};

use common::{Fixture, consumer, group, sid};

const BUFFER: u32 = 100;
const APPENDS: usize = 200;
const PER_APPEND: usize = 100;

async fn write(store: &Arc<dyn EventStore>, tag: &str) -> Duration {
    let started = Instant::now();
    for i in 0..APPENDS {
        let events = (0..PER_APPEND).map(|_| NewEvent::new("E", "{}")).collect();
        store
            .append(&sid(&format!("{tag}-{}", i % 10)), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_keeps_the_group_bounded_and_costs_writers_nothing() {
    let fx = Fixture::sled();
    let alone = write(&fx.store, "warmup").await;

    let g = group("stalled");
    let settings = GroupSettings {
        filter: EventFilter::all(),
        buffer_size: BUFFER,
        ack_timeout: Duration::from_secs(3600),
        ..GroupSettings::default()
    };
    fx.subs.create_group(&g, settings).await.unwrap();
    // The stalled consumer: reads whatever it is given, answers nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let stalled = {
        let (subs, g, stop) = (fx.subs.clone(), g.clone(), stop.clone());
        tokio::spawn(async move {
            let me = consumer("stalled");
            let mut held = 0usize;
            while !stop.load(Ordering::SeqCst) {
                held += subs.read(&g, &me, 50, Duration::from_millis(50)).await.unwrap().len();
            }
            held
        })
    };
    // A watcher samples what the group holds while the writers run.
    let watcher = {
        let (subs, g, stop) = (fx.subs.clone(), g.clone(), stop.clone());
        tokio::spawn(async move {
            let mut most = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let info = subs.group(&g).await.unwrap();
                most.0 = most.0.max(info.pending + info.in_flight);
                most.1 = most.1.max(info.read_ahead);
                // A sampling period (the watcher must not eat the writers' CPU), not a wait.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let with_group = write(&fx.store, "load").await;
    stop.store(true, Ordering::SeqCst);
    let held = stalled.await.unwrap();
    let (most_buffered, most_read_ahead) = watcher.await.unwrap();
    let info = fx.subs.group(&g).await.unwrap();

    assert_eq!(held, BUFFER as usize, "the consumer got exactly the buffer's worth");
    assert!(most_buffered <= BUFFER as u64, "buffered {most_buffered}");
    assert!(
        most_read_ahead <= FEED_CAPACITY as u64 + 1,
        "read ahead {most_read_ahead}"
    );
    assert_eq!(info.in_flight, BUFFER as u64);
    let head = fx.store.head_position().await.unwrap();
    assert_eq!(
        info.examined, BUFFER as u64,
        "the group stopped reading the log at its buffer"
    );
    assert_eq!(
        info.lag, head,
        "nothing done: the stalled consumer holds the first events"
    );
    // Alone again, on a log as long as the one the group saw.
    assert!(fx.subs.delete_group(&g).await.unwrap());
    let after = write(&fx.store, "after").await;
    let rate = |d: Duration| (APPENDS * PER_APPEND) as f64 / d.as_secs_f64();
    println!(
        "writers: {:.0} events/s alone before, {:.0} beside a stalled group, {:.0} alone after; group held {most_buffered}, read ahead {most_read_ahead}",
        rate(alone),
        rate(with_group),
        rate(after),
    );
}
