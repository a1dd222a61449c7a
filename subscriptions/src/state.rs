//! The group's state machine: pure and synchronous, the same for every
//! backend. Each call changes the state in memory and records what it
//! changed; the engine hands those changes to the backend in one atomic
//! write (`take_changes`), with the version it started from, so two
//! processes that change one group at once cannot both win.
//!
//! The state is the group's *header* (settings, how far the log was read,
//! counters) and its *rows*: the events between the log and the
//! consumers, each pending (with the time it is due) or in flight (leased
//! to a consumer until a deadline), at most `buffer_size` of them. An
//! acknowledged event's row is deleted; a parked event's row moves to the
//! parked list (kept by the backend, not in memory). So every event the
//! group has read is in exactly one place: a row, the parked list, or done.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strata_store::{StreamId, SubscriptionItem};

use crate::error::SubscriptionError;
use crate::settings::{ConsumerName, GroupSettings, Strategy};

/// Milliseconds since the Unix epoch: the group's clock.
pub(crate) type Millis = u64;

/// The current time in [`Millis`].
pub(crate) fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_millis(ms: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The longest parking reason kept, in bytes.
pub const MAX_REASON_BYTES: usize = 1_000;

/// Cuts `reason` to [`MAX_REASON_BYTES`] on a character boundary, without
/// control characters.
pub(crate) fn clean_reason(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_REASON_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// What identifies one delivery of one event: acknowledge or refuse it by
/// this token. A token stops being current when its lease times out and
/// the event is delivered again (to this consumer or another), so a late
/// acknowledgement of an old delivery never settles a newer one.
///
/// Written as `<position>.<delivery>`.
///
/// ```
/// use strata_subscriptions::DeliveryToken;
/// let t: DeliveryToken = "42.7".parse()?;
/// assert_eq!((t.position, t.delivery), (42, 7));
/// assert_eq!(t.to_string(), "42.7");
/// assert!("42".parse::<DeliveryToken>().is_err());
/// # Ok::<(), strata_subscriptions::SubscriptionError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct DeliveryToken {
    /// The event's position in the log.
    pub position: u64,
    /// The group's number of this delivery (unique within the group).
    pub delivery: u64,
}

/// The pattern of a token's text form.
pub const TOKEN_PATTERN: &str = "^[0-9]{1,20}\\.[0-9]{1,20}$";

impl fmt::Display for DeliveryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.position, self.delivery)
    }
}

impl FromStr for DeliveryToken {
    type Err = SubscriptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| SubscriptionError::InvalidToken {
            token: s.chars().take(64).collect(),
            reason,
        };
        let (p, d) = s.split_once('.').ok_or_else(|| bad("expected <position>.<delivery>"))?;
        let number = |x: &str| {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("position and delivery are decimal numbers"));
            }
            x.parse::<u64>().map_err(|_| bad("a number is out of range"))
        };
        Ok(DeliveryToken {
            position: number(p)?,
            delivery: number(d)?,
        })
    }
}

/// What happens to an event a consumer refuses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NackAction {
    /// Deliver it again after the retry delay (parked once its retries are
    /// used up).
    #[default]
    Retry,
    /// Park it now.
    Park,
}

/// Counters of a group since it was created.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct GroupCounters {
    /// Deliveries made, first ones and retries.
    pub delivered: u64,
    /// Deliveries that were retries (after a nack or a timeout).
    pub redelivered: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Leases that timed out (consumers that died or were too slow).
    pub timed_out: u64,
    /// Events parked, ever.
    pub parked: u64,
    /// Events parked now.
    pub parked_now: u64,
    /// Parked events asked to be replayed that are not back yet.
    pub replay_pending: u64,
}

/// A group's header: what it is and how far it got.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) settings: GroupSettings,
    /// Counts the group's committed changes: a write names the version it
    /// started from and fails if another write came first.
    pub(crate) version: u64,
    /// The log is read (examined) up to this position.
    pub(crate) fill: u64,
    /// The number of the next delivery.
    pub(crate) next_delivery: u64,
    pub(crate) counters: GroupCounters,
    pub(crate) created_at: Millis,
}

/// Where one event of the group is.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) enum Lease {
    /// Waiting for a consumer, from `due` on.
    Pending { due: Millis },
    /// Leased to `consumer` by delivery `delivery` until `deadline`.
    InFlight {
        consumer: ConsumerName,
        delivery: u64,
        deadline: Millis,
    },
}

/// One event between the log and the consumers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) stream: StreamId,
    /// Deliveries so far.
    pub(crate) attempts: u32,
    pub(crate) lease: Lease,
}

/// An event that failed too often, or that a consumer parked.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ParkedEvent {
    /// Its position in the log.
    pub position: u64,
    /// Its stream.
    pub stream_id: StreamId,
    /// How many times it was delivered.
    pub attempts: u32,
    /// Why it was parked: the consumer's reason, or the timeout.
    pub reason: String,
    /// When it was parked (millisecond precision).
    #[serde(with = "system_time_millis")]
    pub parked_at: SystemTime,
    /// Whether a replay was asked for and it is waiting for room in the
    /// group's buffer.
    pub replay_requested: bool,
}

mod system_time_millis {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        s.serialize_u64(ms)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(super::from_millis(u64::deserialize(d)?))
    }
}

/// One delivery the state made: the engine attaches the event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Claimed {
    pub(crate) token: DeliveryToken,
    pub(crate) attempt: u32,
}

/// What a call changed, for one atomic write.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// The header as it is after the change (its version one more).
    pub(crate) header: Option<Header>,
    /// Rows written (`Some`) or deleted (`None`).
    pub(crate) rows: Vec<(u64, Option<Row>)>,
    /// Events parked.
    pub(crate) park: Vec<ParkedEvent>,
    /// Parked events taken back (replayed).
    pub(crate) unpark: Vec<u64>,
    /// Parked events to mark as waiting for a replay.
    pub(crate) flag_replay: Vec<u64>,
}

/// A group's state in memory.
#[derive(Debug)]
pub(crate) struct GroupState {
    pub(crate) header: Header,
    pub(crate) rows: BTreeMap<u64, Row>,
    dirty: BTreeSet<u64>,
    header_dirty: bool,
    parked: Vec<ParkedEvent>,
    unparked: Vec<u64>,
    flagged: Vec<u64>,
}

impl GroupState {
    pub(crate) fn new(header: Header, rows: BTreeMap<u64, Row>) -> GroupState {
        GroupState {
            header,
            rows,
            dirty: BTreeSet::new(),
            header_dirty: false,
            parked: Vec::new(),
            unparked: Vec::new(),
            flagged: Vec::new(),
        }
    }

    fn settings(&self) -> &GroupSettings {
        &self.header.settings
    }

    /// Whether anything changed since the last `take_changes`.
    pub(crate) fn is_dirty(&self) -> bool {
        self.header_dirty || !self.dirty.is_empty()
    }

    /// What changed since the last call, with the header's next version;
    /// `None` when nothing did. The state's own version moves on only when
    /// the write succeeds ([`GroupState::committed`]).
    pub(crate) fn take_changes(&mut self) -> Option<Changes> {
        if !self.is_dirty() {
            return None;
        }
        let mut header = self.header.clone();
        header.version += 1;
        let rows = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|p| (p, self.rows.get(&p).cloned()))
            .collect();
        self.header_dirty = false;
        Some(Changes {
            header: Some(header),
            rows,
            park: std::mem::take(&mut self.parked),
            unpark: std::mem::take(&mut self.unparked),
            flag_replay: std::mem::take(&mut self.flagged),
        })
    }

    /// The write of the last changes succeeded.
    pub(crate) fn committed(&mut self) {
        self.header.version += 1;
    }

    /// Room for more rows.
    pub(crate) fn room(&self) -> usize {
        (self.settings().buffer_size as usize).saturating_sub(self.rows.len())
    }

    /// Every event up to here is done (acknowledged or parked).
    pub(crate) fn checkpoint(&self) -> u64 {
        match self.rows.keys().next() {
            Some(&first) => (first - 1).min(self.header.fill),
            None => self.header.fill,
        }
    }

    /// (pending, in flight)
    pub(crate) fn counts(&self) -> (u64, u64) {
        let in_flight = self
            .rows
            .values()
            .filter(|r| matches!(r.lease, Lease::InFlight { .. }))
            .count() as u64;
        (self.rows.len() as u64 - in_flight, in_flight)
    }

    /// Takes one item of the group's filtered subscription: an event
    /// becomes a pending row (when there is room; `false` when there is
    /// not, and the item must be offered again later), a checkpoint moves
    /// how far the log was read. Items at or below that are skipped.
    pub(crate) fn offer(&mut self, item: &SubscriptionItem, now: Millis) -> bool {
        match item {
            SubscriptionItem::Checkpoint(p) => {
                if *p > self.header.fill {
                    self.header.fill = *p;
                    self.header_dirty = true;
                }
                true
            }
            SubscriptionItem::Event(e) => {
                if e.position <= self.header.fill {
                    return true;
                }
                if self.room() == 0 {
                    return false;
                }
                self.rows.insert(
                    e.position,
                    Row {
                        stream: e.stream_id.clone(),
                        attempts: 0,
                        lease: Lease::Pending { due: now },
                    },
                );
                self.dirty.insert(e.position);
                self.header.fill = e.position;
                self.header_dirty = true;
                true
            }
        }
    }

    /// Takes parked events back as pending rows (a replay), as many as
    /// there is room for; returns how many.
    pub(crate) fn unpark(&mut self, parked: Vec<ParkedEvent>, now: Millis) -> usize {
        let mut taken = 0;
        for p in parked {
            if self.room() == 0 {
                break;
            }
            if self.rows.contains_key(&p.position) {
                continue;
            }
            self.rows.insert(
                p.position,
                Row {
                    stream: p.stream_id,
                    attempts: 0,
                    lease: Lease::Pending { due: now },
                },
            );
            self.dirty.insert(p.position);
            self.unparked.push(p.position);
            let c = &mut self.header.counters;
            c.parked_now = c.parked_now.saturating_sub(1);
            c.replay_pending = c.replay_pending.saturating_sub(1);
            self.header_dirty = true;
            taken += 1;
        }
        taken
    }

    /// Marks parked events (not marked yet) as waiting for a replay: they
    /// come back as the buffer has room ([`GroupState::unpark`]).
    pub(crate) fn flag_replay(&mut self, positions: Vec<u64>) {
        if !positions.is_empty() {
            self.header.counters.replay_pending += positions.len() as u64;
            self.header_dirty = true;
            self.flagged.extend(positions);
        }
    }

    /// Parks the row at `position` (which must exist).
    fn park(&mut self, position: u64, reason: String, now: Millis) {
        let row = self.rows.remove(&position).expect("parking a row that exists");
        self.dirty.insert(position);
        self.parked.push(ParkedEvent {
            position,
            stream_id: row.stream,
            attempts: row.attempts,
            reason: clean_reason(&reason),
            parked_at: from_millis(now),
            replay_requested: false,
        });
        let c = &mut self.header.counters;
        c.parked += 1;
        c.parked_now += 1;
        self.header_dirty = true;
    }

    /// A delivery of the row at `position` failed (nack or timeout): retry
    /// it after the delay, or park it when its retries are used up.
    fn fail(&mut self, position: u64, reason: &str, now: Millis) {
        let attempts = self.rows[&position].attempts;
        if attempts > self.settings().max_retries {
            let reason = format!("{reason} (after {attempts} deliveries)");
            self.park(position, reason, now);
        } else {
            let due = now.saturating_add(millis(self.settings().retry_delay_after(attempts)));
            self.rows.get_mut(&position).expect("a row that exists").lease = Lease::Pending { due };
            self.dirty.insert(position);
        }
    }

    /// Leases whose deadline passed fail: retried or parked.
    pub(crate) fn expire(&mut self, now: Millis) {
        let expired: Vec<u64> = self
            .rows
            .iter()
            .filter(|(_, r)| matches!(r.lease, Lease::InFlight { deadline, .. } if deadline <= now))
            .map(|(&p, _)| p)
            .collect();
        for position in expired {
            self.header.counters.timed_out += 1;
            self.header_dirty = true;
            self.fail(position, "not acknowledged within the ack timeout", now);
        }
    }

    /// Leases up to `max` due events to `consumer`, oldest first, as the
    /// strategy allows: with `PinnedPerStream` only a stream's oldest row,
    /// and only when none of the stream is in flight.
    pub(crate) fn claim(&mut self, consumer: &ConsumerName, max: usize, now: Millis) -> Vec<Claimed> {
        self.expire(now);
        let pinned = self.settings().strategy == Strategy::PinnedPerStream;
        // A stream with an event in flight is busy, whichever of its
        // events that is (a replayed event may be older than one in flight).
        let mut blocked: HashSet<StreamId> = if pinned {
            self.rows
                .values()
                .filter(|r| matches!(r.lease, Lease::InFlight { .. }))
                .map(|r| r.stream.clone())
                .collect()
        } else {
            HashSet::new()
        };
        let mut picked = Vec::new();
        for (&position, row) in &self.rows {
            if picked.len() == max {
                break;
            }
            if pinned && !blocked.insert(row.stream.clone()) {
                continue;
            }
            if let Lease::Pending { due } = row.lease
                && due <= now
            {
                picked.push(position);
            }
        }
        let deadline = now.saturating_add(millis(self.settings().ack_timeout));
        let mut out = Vec::with_capacity(picked.len());
        for position in picked {
            let delivery = self.header.next_delivery;
            self.header.next_delivery += 1;
            let row = self.rows.get_mut(&position).expect("a picked row");
            row.attempts = row.attempts.saturating_add(1);
            row.lease = Lease::InFlight {
                consumer: consumer.clone(),
                delivery,
                deadline,
            };
            let attempt = row.attempts;
            self.dirty.insert(position);
            let c = &mut self.header.counters;
            c.delivered += 1;
            if attempt > 1 {
                c.redelivered += 1;
            }
            self.header_dirty = true;
            out.push(Claimed {
                token: DeliveryToken { position, delivery },
                attempt,
            });
        }
        out
    }

    /// Whether `token` names the current delivery of its row.
    fn current(&self, token: &DeliveryToken) -> bool {
        matches!(
            self.rows.get(&token.position),
            Some(Row { lease: Lease::InFlight { delivery, .. }, .. }) if *delivery == token.delivery
        )
    }

    /// Acknowledges deliveries; returns the tokens that were not current
    /// (their lease timed out, or they were settled already).
    pub(crate) fn ack(&mut self, tokens: &[DeliveryToken]) -> Vec<DeliveryToken> {
        let mut stale = Vec::new();
        for token in tokens {
            if self.current(token) {
                self.rows.remove(&token.position);
                self.dirty.insert(token.position);
                self.header.counters.acked += 1;
                self.header_dirty = true;
            } else {
                stale.push(*token);
            }
        }
        stale
    }

    /// Refuses deliveries: retried after the delay or parked, as `action`
    /// says; returns the tokens that were not current.
    pub(crate) fn nack(
        &mut self,
        tokens: &[DeliveryToken],
        action: NackAction,
        reason: &str,
        now: Millis,
    ) -> Vec<DeliveryToken> {
        let mut stale = Vec::new();
        for token in tokens {
            if !self.current(token) {
                stale.push(*token);
                continue;
            }
            match action {
                NackAction::Retry => self.fail(token.position, &format!("nacked: {reason}"), now),
                NackAction::Park => self.park(token.position, format!("parked by the consumer: {reason}"), now),
            }
        }
        stale
    }

    /// The earliest time after `now` at which a row becomes due or a lease
    /// times out, if any. (A row due already but held back by its busy
    /// stream waits for that stream's ack, or its lease's deadline.)
    pub(crate) fn next_wake(&self, now: Millis) -> Option<Millis> {
        self.rows
            .values()
            .map(|r| match r.lease {
                Lease::Pending { due } => due,
                Lease::InFlight { deadline, .. } => deadline,
            })
            .filter(|&t| t > now)
            .min()
    }
}

#[cfg(test)]
mod tests;
