//! What competing consumers did, and the checks over it: every event
//! handled at least once or parked, parked only after its retries, and
//! with the pinned strategy no two current leases of one stream handled
//! at once and each stream's events handled in order.
//!
//! Consumers write *handlings*: the stream and position, when the handler
//! started (wall clock, microseconds, comparable across processes on one
//! machine), until when its lease held at the latest, and how it ended (an
//! ack the group settled, a nack, or nothing: the consumer died).

use std::collections::{BTreeMap, BTreeSet};

/// How one handling ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    /// Acknowledged, and the group settled it.
    Acked,
    /// Acknowledged too late: the token was stale.
    Stale,
    /// Refused, to be retried.
    Retried,
    /// Refused and parked.
    Parked,
    /// The consumer died before it answered.
    Died,
    /// The consumer sent an ack and died before it saw the answer: the
    /// group may or may not have settled it.
    Acking,
    /// The consumer sent a nack to retry and died before it saw the
    /// answer.
    Retrying,
    /// The consumer sent a nack to park and died before it saw the answer.
    Parking,
}

/// One handling of one delivery.
#[derive(Clone, Debug)]
pub struct Handling {
    pub stream: String,
    pub position: u64,
    /// When the handler started (µs since the epoch).
    pub started: u64,
    /// When it answered, if it did (µs since the epoch).
    pub finished: Option<u64>,
    /// The latest its lease can have held: the read's start plus the ack timeout (µs).
    pub lease_until: u64,
    pub end: End,
}

impl Handling {
    /// Encoded on one line (for a child process's stdout).
    pub fn line(&self) -> String {
        format!(
            "H {} {} {} {} {} {:?}",
            self.stream,
            self.position,
            self.started,
            self.finished.unwrap_or(0),
            self.lease_until,
            self.end
        )
    }

    /// Decodes [`Handling::line`]; `None` for any other line.
    pub fn parse(line: &str) -> Option<Handling> {
        let mut parts = line.split(' ');
        if parts.next()? != "H" {
            return None;
        }
        let stream = parts.next()?.to_string();
        let position = parts.next()?.parse().ok()?;
        let started = parts.next()?.parse().ok()?;
        let finished: u64 = parts.next()?.parse().ok()?;
        let lease_until = parts.next()?.parse().ok()?;
        let end = match parts.next()? {
            "Acked" => End::Acked,
            "Stale" => End::Stale,
            "Retried" => End::Retried,
            "Parked" => End::Parked,
            "Died" => End::Died,
            "Acking" => End::Acking,
            "Retrying" => End::Retrying,
            "Parking" => End::Parking,
            _ => return None,
        };
        Some(Handling {
            stream,
            position,
            started,
            finished: (finished > 0).then_some(finished),
            lease_until,
            end,
        })
    }
}

/// The current time in µs since the epoch.
pub fn micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Checks the handlings against the group's guarantees. `events` are the
/// positions the group must deliver, `poison` those every consumer
/// refuses, `parked` the group's parked events as (position, deliveries),
/// `group_acked` the group's own count of the acks it settled.
///
/// A consumer killed between sending an answer and recording how it ended
/// leaves a handling in doubt ([`End::Acking`], [`End::Retrying`],
/// [`End::Parking`]), which held its stream until it answered at the
/// latest. An ack in doubt: the group may have settled it
/// (then the event is never delivered again) or not (then its lease times
/// out and it is delivered again). The group's counter says how many such
/// acks were settled; every event covered by nothing but an in-doubt ack
/// must be one of them.
pub fn check(
    handlings: &[Handling],
    events: &BTreeSet<u64>,
    poison: &BTreeSet<u64>,
    parked: &BTreeMap<u64, u32>,
    max_retries: u32,
    pinned: bool,
    group_acked: u64,
) {
    let acked: BTreeSet<u64> = handlings
        .iter()
        .filter(|h| h.end == End::Acked)
        .map(|h| h.position)
        .collect();
    let acked_handlings = handlings.iter().filter(|h| h.end == End::Acked).count() as u64;
    let in_doubt: BTreeSet<u64> = handlings
        .iter()
        .filter(|h| h.end == End::Acking)
        .map(|h| h.position)
        .collect();
    assert!(
        group_acked >= acked_handlings,
        "the group counts {group_acked} settled acks, the consumers saw {acked_handlings}"
    );
    let settled_in_doubt = group_acked - acked_handlings;
    let mut covered_by_doubt = 0u64;
    let parked_by_consumer: BTreeSet<u64> = handlings
        .iter()
        .filter(|h| matches!(h.end, End::Parked | End::Parking))
        .map(|h| h.position)
        .collect();
    for p in events {
        if acked.contains(p) || parked.contains_key(p) {
            continue;
        }
        assert!(
            in_doubt.contains(p),
            "event {p} was lost: neither handled and acknowledged nor parked"
        );
        covered_by_doubt += 1;
    }
    assert!(
        covered_by_doubt <= settled_in_doubt,
        "{covered_by_doubt} events were acknowledged only by a consumer killed while acking, \
         but the group settled {settled_in_doubt} such acks: an event was lost"
    );
    for (p, attempts) in parked {
        assert!(events.contains(p), "parked {p}, which the group does not deliver");
        assert!(!acked.contains(p), "event {p} is acknowledged and parked");
        if parked_by_consumer.contains(p) {
            assert!(*attempts <= max_retries + 1, "event {p}: {attempts} deliveries");
        } else {
            assert_eq!(
                *attempts,
                max_retries + 1,
                "event {p} parked before its retries were used up"
            );
        }
    }
    for p in poison {
        assert!(parked.contains_key(p), "poison event {p} is not parked");
    }
    let delivered: BTreeSet<u64> = handlings.iter().map(|h| h.position).collect();
    assert!(
        delivered.is_subset(events),
        "delivered events the group does not select"
    );
    if pinned {
        let mut by_stream: BTreeMap<&str, Vec<&Handling>> = BTreeMap::new();
        for h in handlings {
            by_stream.entry(&h.stream).or_default().push(h);
        }
        for (stream, mut hs) in by_stream {
            hs.sort_by_key(|h| h.started);
            // No handling starts while another of the stream still holds a
            // current lease and has not answered.
            for pair in hs.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let a_held_until = a.finished.unwrap_or(u64::MAX).min(a.lease_until);
                assert!(
                    b.started >= a_held_until,
                    "stream {stream}: {} started at {} while {} was in flight until {}",
                    b.position,
                    b.started,
                    a.position,
                    a_held_until
                );
            }
            // Acknowledged in position order.
            let order: Vec<u64> = hs.iter().filter(|h| h.end == End::Acked).map(|h| h.position).collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "stream {stream} acknowledged out of order: {order:?}"
            );
        }
    }
}
