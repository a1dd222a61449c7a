//! Filtered reads and subscriptions against a model: random logs over a
//! few streams and types (with and without `-`, prefixes of each other),
//! random filters, and every backend's `read_filtered` and
//! `subscribe_filtered` compared with a plain filter written here, apart
//! from the store's code. Checks the examined position too: every match up
//! to it is returned, and it stops only at the limit, the scan window or
//! the head.
//!
//! `PROPTEST_CASES` raises the case count (default 32 per backend).

mod common;

use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use strata_store::{
    EventFilter, EventStore, ExpectedVersion, FILTER_SCAN_WINDOW, NewEvent, StreamAppend, SubscriptionItem,
};

use common::{Backend, Fixture, sid};

const STREAMS: [&str; 7] = ["order-1", "order-2", "orders-1", "sku-a", "sku", "cart-x-1", "o"];
const TYPES: [&str; 5] = ["OrderPlaced", "OrderPaid", "StockReserved", "Other", "O"];
const TYPE_TERMS: [&str; 5] = ["OrderPlaced", "Order", "Stock", "O", "Missing"];
const STREAM_PREFIXES: [&str; 4] = ["order", "orders-", "sku-", "c"];
const CATEGORIES: [&str; 5] = ["order", "orders", "sku", "cart", "o"];

/// A filter as plain data, matched here without the store's code.
#[derive(Clone, Debug, Default)]
struct Terms {
    types: Vec<&'static str>,
    type_prefixes: Vec<&'static str>,
    streams: Vec<&'static str>,
    stream_prefixes: Vec<&'static str>,
    categories: Vec<&'static str>,
}

impl Terms {
    fn filter(&self) -> EventFilter {
        let mut f = EventFilter::all();
        for t in &self.types {
            f = f.event_type(*t);
        }
        for p in &self.type_prefixes {
            f = f.event_type_prefix(*p);
        }
        for s in &self.streams {
            f = f.stream(sid(s));
        }
        for p in &self.stream_prefixes {
            f = f.stream_prefix(*p);
        }
        for c in &self.categories {
            f = f.category(*c);
        }
        f
    }

    fn matches(&self, stream: &str, event_type: &str) -> bool {
        let any_type = self.types.is_empty() && self.type_prefixes.is_empty();
        let type_ok = any_type
            || self.types.contains(&event_type)
            || self.type_prefixes.iter().any(|p| event_type.starts_with(p));
        let any_stream = self.streams.is_empty() && self.stream_prefixes.is_empty() && self.categories.is_empty();
        let category = stream.find('-').map(|i| &stream[..i]);
        let stream_ok = any_stream
            || self.streams.contains(&stream)
            || self.stream_prefixes.iter().any(|p| stream.starts_with(p))
            || category.is_some_and(|c| self.categories.contains(&c));
        type_ok && stream_ok
    }
}

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(pool), 0..3)
}

fn terms_strategy() -> impl Strategy<Value = Terms> {
    (
        subset(&TYPE_TERMS),
        subset(&TYPE_TERMS),
        subset(&STREAMS),
        subset(&STREAM_PREFIXES),
        subset(&CATEGORIES),
    )
        .prop_map(|(types, type_prefixes, streams, stream_prefixes, categories)| Terms {
            types,
            type_prefixes,
            streams,
            stream_prefixes,
            categories,
        })
}

/// An append: (stream, type) of each of its events, as one or two streams.
type Batch = Vec<(usize, usize)>;

fn batch_strategy() -> impl Strategy<Value = Batch> {
    prop::collection::vec((0..STREAMS.len(), 0..TYPES.len()), 1..6)
}

#[derive(Clone, Debug)]
struct Read {
    from: u64,
    limit: usize,
}

fn read_strategy() -> impl Strategy<Value = Read> {
    (0u64..90, prop_oneof![Just(1usize), 1usize..5, Just(1000)]).prop_map(|(from, limit)| Read { from, limit })
}

/// Appends every batch (a batch of several streams as one multi-stream
/// append), returning the (stream, type) of each position, 1-based at index 1.
async fn write(store: &dyn EventStore, batches: &[Batch]) -> Vec<(&'static str, &'static str)> {
    let mut log = vec![("", "")];
    for batch in batches {
        let mut parts: Vec<StreamAppend> = Vec::new();
        for &(s, t) in batch {
            let stream = sid(STREAMS[s]);
            let event = NewEvent::new(TYPES[t], "{}");
            match parts.iter_mut().find(|p| p.stream == stream) {
                Some(part) => part.events.push(event),
                None => parts.push(StreamAppend::new(stream, ExpectedVersion::Any, vec![event])),
            }
        }
        for part in &parts {
            for e in &part.events {
                let s = STREAMS.iter().find(|s| **s == part.stream.as_str()).unwrap();
                let t = TYPES.iter().find(|t| **t == e.event_type).unwrap();
                log.push((*s, *t));
            }
        }
        store.append_multi(parts).await.unwrap();
    }
    log
}

async fn run(fx: Fixture, batches: Vec<Batch>, terms: Terms, reads: Vec<Read>) -> Result<(), TestCaseError> {
    let store = &*fx.store;
    let log = write(store, &batches).await;
    let head = log.len() as u64 - 1;
    let filter = terms.filter();
    prop_assert!(filter.check().is_ok());
    for read in reads {
        let got = store.read_filtered(read.from, read.limit, &filter).await.unwrap();
        let from = read.from.max(1);
        let wanted: Vec<u64> = (from..=head)
            .filter(|&p| terms.matches(log[p as usize].0, log[p as usize].1))
            .take(read.limit)
            .collect();
        let positions: Vec<u64> = got.events.iter().map(|e| e.position).collect();
        // It stops at the limit, the window or the head, whichever comes first.
        let window_end = (from + FILTER_SCAN_WINDOW as u64 - 1).min(head);
        let expected_examined = if wanted.len() == read.limit && wanted.last().is_some_and(|&p| p <= window_end) {
            *wanted.last().unwrap()
        } else {
            window_end.max(from - 1)
        };
        let wanted: Vec<u64> = wanted.into_iter().filter(|&p| p <= expected_examined).collect();
        prop_assert_eq!(&positions, &wanted, "read {:?} with {:?}", read, terms);
        prop_assert_eq!(got.examined, expected_examined, "examined of read {:?}", read);
        for e in &got.events {
            let (s, t) = log[e.position as usize];
            prop_assert_eq!((e.stream_id.as_str(), e.event_type.as_str()), (s, t));
        }
    }
    // The subscription from a random point: exactly the matches after it,
    // then a checkpoint at the head unless the last match is the head.
    let after = head / 3;
    let mut sub = store.subscribe_filtered(after, filter.clone());
    let mut events = Vec::new();
    let mut last = after;
    while last < head {
        let item = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("the subscription stalled")
            .expect("the subscription ended")
            .unwrap();
        prop_assert!(item.position() > last, "positions increase: {:?} after {}", item, last);
        last = item.position();
        if let SubscriptionItem::Event(e) = item {
            events.push(e.position);
        }
    }
    prop_assert_eq!(last, head);
    let wanted: Vec<u64> = (after + 1..=head)
        .filter(|&p| terms.matches(log[p as usize].0, log[p as usize].1))
        .collect();
    prop_assert_eq!(events, wanted);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

fn check(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        batches in prop::collection::vec(batch_strategy(), 1..20),
        terms in terms_strategy(),
        reads in prop::collection::vec(read_strategy(), 1..8),
    )| {
        rt.block_on(async { run(Fixture::new(backend).await, batches, terms, reads).await })?;
    });
}

#[test]
fn memory_filters_follow_the_model() {
    check(Backend::Memory);
}

#[test]
fn segment_filters_follow_the_model() {
    check(Backend::Segment);
}

#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn postgres_filters_follow_the_model() {
    check(Backend::Postgres);
}
