//! The state machine against its rules, over random operations: events
//! offered from a few streams, claims by a few consumers, acks and nacks
//! (current and stale tokens), time passing (leases expiring), replays of
//! parked events. After every step: no event lost or in two places, the
//! changes written so far rebuild exactly the state in memory, the buffer
//! stays within its size, and with `PinnedPerStream` no stream has two
//! events in flight and each delivery is its stream's oldest event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::{
    Just, ProptestConfig, TestCaseError, any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest,
};
use proptest::strategy::Strategy as Generate;
use strata_store::{EventId, Metadata, RecordedEvent, StreamId, SubscriptionItem};

use super::*;

const STREAMS: [&str; 4] = ["a-1", "a-2", "b-1", "c"];

fn event(position: u64, stream: &str) -> SubscriptionItem {
    SubscriptionItem::Event(RecordedEvent {
        stream_id: StreamId::new(stream).unwrap(),
        version: 1,
        position,
        id: EventId::new(),
        event_type: "T".into(),
        payload: Bytes::new(),
        metadata: Metadata::default(),
        recorded_at: SystemTime::UNIX_EPOCH,
    })
}

fn state(strategy: Strategy, buffer_size: u32, max_retries: u32) -> GroupState {
    GroupState::new(
        Header {
            settings: GroupSettings {
                strategy,
                buffer_size,
                max_retries,
                ack_timeout: Duration::from_millis(100),
                retry_delay: Duration::from_millis(10),
                max_retry_delay: Duration::from_millis(40),
                ..GroupSettings::default()
            },
            version: 0,
            fill: 0,
            next_delivery: 1,
            counters: GroupCounters::default(),
            created_at: 0,
        },
        BTreeMap::new(),
    )
}

fn consumer(i: usize) -> ConsumerName {
    ConsumerName::new(format!("c{i}")).unwrap()
}

#[derive(Clone, Debug)]
enum Op {
    Offer(usize),
    Checkpoint(u64),
    Claim { consumer: usize, max: usize },
    Ack { pick: usize },
    AckStale { pick: usize },
    Nack { pick: usize, park: bool },
    Tick(u64),
    ReplayAll,
}

fn op_strategy() -> impl Generate<Value = Op> {
    prop_oneof![
        4 => (0..STREAMS.len()).prop_map(Op::Offer),
        1 => (0u64..4).prop_map(Op::Checkpoint),
        4 => (0usize..3, 1usize..4).prop_map(|(consumer, max)| Op::Claim { consumer, max }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => any::<usize>().prop_map(|pick| Op::AckStale { pick }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, park)| Op::Nack { pick, park }),
        2 => (1u64..120).prop_map(Op::Tick),
        1 => Just(Op::ReplayAll),
    ]
}

/// What a backend would hold after applying every change.
#[derive(Default)]
struct Stored {
    header: Option<Header>,
    rows: BTreeMap<u64, Row>,
    parked: BTreeMap<u64, ParkedEvent>,
}

impl Stored {
    fn apply(&mut self, changes: Changes) {
        self.header = changes.header;
        for (p, row) in changes.rows {
            match row {
                Some(r) => {
                    self.rows.insert(p, r);
                }
                None => {
                    self.rows.remove(&p);
                }
            }
        }
        for p in changes.park {
            assert!(self.parked.insert(p.position, p).is_none(), "parked twice");
        }
        for p in changes.flag_replay {
            self.parked
                .get_mut(&p)
                .expect("flagged a parked event")
                .replay_requested = true;
        }
        for p in changes.unpark {
            assert!(self.parked.remove(&p).is_some(), "unparked {p}, which was not parked");
        }
    }
}

fn in_flight(s: &GroupState) -> Vec<DeliveryToken> {
    s.rows
        .iter()
        .filter_map(|(&position, r)| match r.lease {
            Lease::InFlight { delivery, .. } => Some(DeliveryToken { position, delivery }),
            Lease::Pending { .. } => None,
        })
        .collect()
}

fn run(strategy: Strategy, buffer_size: u32, max_retries: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut s = state(strategy, buffer_size, max_retries);
    let mut stored = Stored::default();
    let mut now: Millis = 1_000;
    let mut next_position = 1u64;
    let mut offered = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut old_tokens: Vec<DeliveryToken> = Vec::new();
    for op in ops {
        match op {
            Op::Offer(i) => {
                let item = event(next_position, STREAMS[i]);
                let room = s.room() > 0;
                prop_assert_eq!(
                    s.offer(&item, now),
                    room,
                    "an event is taken exactly when there is room"
                );
                if room {
                    offered.insert(next_position);
                    next_position += 1;
                }
            }
            Op::Checkpoint(skip) => {
                // Positions no event of the group holds (filtered out).
                let to = next_position - 1 + skip;
                prop_assert!(s.offer(&SubscriptionItem::Checkpoint(to), now));
                next_position = to + 1;
                prop_assert_eq!(s.header.fill, to);
            }
            Op::Claim { consumer: c, max } => {
                s.expire(now);
                let before: Vec<(u64, StreamId)> = s.rows.iter().map(|(&p, r)| (p, r.stream.clone())).collect();
                let claimed = s.claim(&consumer(c), max, now);
                prop_assert!(claimed.len() <= max);
                for d in &claimed {
                    let row = &s.rows[&d.token.position];
                    prop_assert_eq!(row.attempts, d.attempt);
                    if strategy == Strategy::PinnedPerStream {
                        let oldest = before.iter().find(|(_, st)| *st == row.stream).map(|(p, _)| *p);
                        prop_assert_eq!(oldest, Some(d.token.position), "pinned: only a stream's oldest event");
                    }
                }
            }
            Op::Ack { pick } => {
                let tokens = in_flight(&s);
                if !tokens.is_empty() {
                    let t = tokens[pick % tokens.len()];
                    prop_assert!(s.ack(&[t]).is_empty());
                    acked.insert(t.position);
                    old_tokens.push(t);
                    prop_assert_eq!(s.ack(&[t]), vec![t], "a second ack of one delivery is stale");
                }
            }
            Op::AckStale { pick } => {
                if !old_tokens.is_empty() {
                    let t = old_tokens[pick % old_tokens.len()];
                    let before = s.rows.clone();
                    prop_assert_eq!(s.ack(&[t]), vec![t]);
                    prop_assert_eq!(&s.rows, &before, "a stale token settles nothing");
                }
            }
            Op::Nack { pick, park } => {
                let tokens = in_flight(&s);
                if !tokens.is_empty() {
                    let t = tokens[pick % tokens.len()];
                    let action = if park { NackAction::Park } else { NackAction::Retry };
                    prop_assert!(s.nack(&[t], action, "test", now).is_empty());
                    old_tokens.push(t);
                    if park {
                        prop_assert!(!s.rows.contains_key(&t.position));
                    }
                }
            }
            Op::Tick(ms) => {
                now += ms;
                let timed_out: Vec<DeliveryToken> = s
                    .rows
                    .iter()
                    .filter_map(|(&position, r)| match r.lease {
                        Lease::InFlight { delivery, deadline, .. } if deadline <= now => {
                            Some(DeliveryToken { position, delivery })
                        }
                        _ => None,
                    })
                    .collect();
                s.expire(now);
                for t in timed_out {
                    old_tokens.push(t);
                    prop_assert!(!s.current(&t), "an expired lease is no longer current");
                }
            }
            Op::ReplayAll => {
                let parked: Vec<ParkedEvent> = stored.parked.values().cloned().collect();
                s.flag_replay(
                    parked
                        .iter()
                        .filter(|p| !p.replay_requested)
                        .map(|p| p.position)
                        .collect(),
                );
                let room = s.room();
                let n = s.unpark(parked.clone(), now);
                prop_assert_eq!(n, parked.len().min(room));
            }
        }
        if let Some(changes) = s.take_changes() {
            stored.apply(changes);
            s.committed();
        }
        // The writes rebuild the state.
        prop_assert_eq!(&stored.rows, &s.rows);
        if let Some(h) = &stored.header {
            prop_assert_eq!(h, &s.header);
        }
        // Every offered event is in exactly one place.
        let rows: BTreeSet<u64> = s.rows.keys().copied().collect();
        let parked: BTreeSet<u64> = stored.parked.keys().copied().collect();
        // An acknowledged event never comes back: only parked ones do.
        prop_assert!(rows.is_disjoint(&parked));
        prop_assert!(acked.is_disjoint(&parked) && acked.is_disjoint(&rows));
        let all: BTreeSet<u64> = rows.union(&parked).chain(acked.iter()).copied().collect();
        prop_assert_eq!(&all, &offered, "no event lost");
        prop_assert!(s.rows.len() <= buffer_size as usize);
        prop_assert_eq!(s.header.counters.parked_now, stored.parked.len() as u64);
        prop_assert_eq!(
            s.header.counters.replay_pending,
            stored.parked.values().filter(|p| p.replay_requested).count() as u64
        );
        // Parked by exhausted retries only after max_retries + 1 deliveries.
        for p in stored.parked.values() {
            if p.reason.starts_with("nacked") || p.reason.starts_with("not acknowledged") {
                prop_assert_eq!(p.attempts, max_retries + 1, "{:?}", p);
            }
        }
        // Everything up to the checkpoint is done.
        let checkpoint = s.checkpoint();
        prop_assert!(checkpoint <= s.header.fill);
        prop_assert!(rows.iter().all(|&p| p > checkpoint));
        if strategy == Strategy::PinnedPerStream {
            let mut busy = BTreeSet::new();
            for r in s.rows.values() {
                if matches!(r.lease, Lease::InFlight { .. }) {
                    prop_assert!(
                        busy.insert(r.stream.as_str().to_string()),
                        "two events of {} in flight",
                        r.stream
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_robin_keeps_every_event(ops in prop::collection::vec(op_strategy(), 1..80), buffer in 1u32..6, retries in 0u32..3) {
        run(Strategy::RoundRobin, buffer, retries, ops)?;
    }

    #[test]
    fn pinned_keeps_every_event_and_each_stream_in_order(ops in prop::collection::vec(op_strategy(), 1..80), buffer in 1u32..6, retries in 0u32..3) {
        run(Strategy::PinnedPerStream, buffer, retries, ops)?;
    }
}

#[test]
fn a_timed_out_event_is_retried_after_the_delay_then_parked() {
    let mut s = state(Strategy::RoundRobin, 10, 1);
    let c = consumer(0);
    assert!(s.offer(&event(1, "a-1"), 0));
    let first = s.claim(&c, 10, 0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    // Lease 100 ms: nothing at 99, timed out at 100, due again 10 ms later.
    assert!(s.claim(&c, 10, 99).is_empty());
    assert!(s.claim(&c, 10, 100).is_empty(), "retry delay not passed");
    assert_eq!(s.next_wake(100), Some(110));
    let second = s.claim(&c, 10, 110);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(
        s.ack(&[first[0].token]),
        vec![first[0].token],
        "the first lease is stale"
    );
    assert_eq!(s.nack(&[second[0].token], NackAction::Retry, "boom", 120), vec![]);
    assert!(s.rows.is_empty(), "max_retries 1: parked after two deliveries");
    let changes = s.take_changes().unwrap();
    assert_eq!(changes.park.len(), 1);
    assert_eq!(changes.park[0].attempts, 2);
    assert!(changes.park[0].reason.contains("boom"), "{}", changes.park[0].reason);
    assert_eq!(s.header.counters.timed_out, 1);
    assert_eq!(s.header.counters.redelivered, 1);
    assert_eq!(s.checkpoint(), 1);
}

#[test]
fn a_full_buffer_refuses_events_but_takes_checkpoints() {
    let mut s = state(Strategy::RoundRobin, 2, 1);
    assert!(s.offer(&event(1, "a-1"), 0));
    assert!(s.offer(&event(2, "a-1"), 0));
    assert!(!s.offer(&event(3, "a-1"), 0));
    assert_eq!(s.header.fill, 2);
    assert!(s.offer(&event(2, "a-1"), 0), "an event already read is skipped");
    let claimed = s.claim(&consumer(0), 1, 0);
    assert!(s.ack(&[claimed[0].token]).is_empty());
    assert!(s.offer(&event(3, "a-1"), 0));
    assert!(s.offer(&SubscriptionItem::Checkpoint(9), 0));
    assert_eq!((s.header.fill, s.checkpoint()), (9, 1));
}

#[test]
fn reasons_are_cut_and_cleaned() {
    let long = "é".repeat(MAX_REASON_BYTES);
    let cut = clean_reason(&long);
    assert!(cut.len() <= MAX_REASON_BYTES && cut.len() > MAX_REASON_BYTES - 2);
    assert_eq!(clean_reason("a\nb"), "ab");
}

#[test]
fn tokens_parse_strictly() {
    for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "-1.2", "99999999999999999999999.1"] {
        assert!(bad.parse::<DeliveryToken>().is_err(), "{bad}");
    }
    let t = DeliveryToken {
        position: u64::MAX,
        delivery: 0,
    };
    assert_eq!(t.to_string().parse::<DeliveryToken>().unwrap(), t);
}
