//! The bodies and views of the persistent subscription routes, with the
//! bounds their schemas state (the same the server checks).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_store::{EventFilter, StreamId};
use strata_subscriptions::{
    Delivery, GroupCounters, GroupInfo, GroupSettings, MAX_BUFFER_SIZE, MAX_RETRIES, MAX_TIMEOUT, ParkedEvent, Settled,
    StartFrom, Strategy,
};
use utoipa::ToSchema;

use crate::error::HttpError;
use crate::model::{EventView, timestamp};

/// A delivery token as the API writes it: `<position>.<delivery>`.
pub(crate) const TOKEN: &str = r"^(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})$";

/// The longest ack timeout and retry delay, in milliseconds (24 h).
const MAX_MS: u64 = 86_400_000;

/// Which events a group delivers: every term may be repeated; an event
/// matches when its type is one of `event_types` or starts with one of
/// `event_type_prefixes` (no type term: any type) **and** its stream is
/// one of `streams`, starts with one of `stream_prefixes` or is in one of
/// `categories` (no stream term: any stream). At most 64 terms in all.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    /// Exact event types.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub event_types: Vec<String>,
    /// Event type prefixes.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub event_type_prefixes: Vec<String>,
    /// Exact stream ids.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub streams: Vec<String>,
    /// Stream id prefixes.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub stream_prefixes: Vec<String>,
    /// Categories: stream ids before their first `-`.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub categories: Vec<String>,
}

impl FilterBody {
    fn to_filter(&self) -> Result<EventFilter, HttpError> {
        let mut f = EventFilter::all();
        for t in &self.event_types {
            f = f.event_type(t.clone());
        }
        for t in &self.event_type_prefixes {
            f = f.event_type_prefix(t.clone());
        }
        for s in &self.streams {
            let s = StreamId::new(s.clone()).map_err(|e| HttpError::InvalidBody {
                reason: format!("filter.streams: {e}"),
            })?;
            f = f.stream(s);
        }
        for t in &self.stream_prefixes {
            f = f.stream_prefix(t.clone());
        }
        for t in &self.categories {
            f = f.category(t.clone());
        }
        f.check().map_err(|e| HttpError::InvalidBody {
            reason: format!("filter: {e}"),
        })?;
        Ok(f)
    }

    fn of(f: &EventFilter) -> FilterBody {
        FilterBody {
            event_types: f.event_types().to_vec(),
            event_type_prefixes: f.event_type_prefixes().to_vec(),
            streams: f.streams().iter().map(|s| s.to_string()).collect(),
            stream_prefixes: f.stream_prefixes().to_vec(),
            categories: f.categories().to_vec(),
        }
    }
}

/// How a group hands its events to competing consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrategyBody {
    /// Any consumer gets the next events that are due.
    RoundRobin,
    /// One event per stream in flight at a time: each stream in order.
    PinnedPerStream,
}

/// Where a new group starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartBody {
    /// With the first event of the log.
    Beginning,
    /// With the first event appended after the group is created.
    End,
}

/// `PUT /subscriptions/groups/{group}`: the group's settings; every field
/// has a default.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSettingsBody {
    /// Which events (default: every event).
    #[serde(default)]
    pub filter: FilterBody,
    /// Where it starts (default `beginning`); not with `start_after`.
    pub start: Option<StartBody>,
    /// Start with the first event after this position.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub start_after: Option<u64>,
    /// Default `round_robin`.
    pub strategy: Option<StrategyBody>,
    /// Deliveries after the first before an event is parked (default 10).
    #[schema(minimum = 0, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::json::integer::option_int32")]
    pub max_retries: Option<u32>,
    /// How long a consumer holds an event before it is delivered again
    /// (default 30,000).
    #[schema(minimum = 1, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub ack_timeout_ms: Option<u64>,
    /// The first retry's delay; it doubles per retry (default 100).
    #[schema(minimum = 0, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub retry_delay_ms: Option<u64>,
    /// The longest retry delay (default 30,000, or `retry_delay_ms` when
    /// that is longer); not below `retry_delay_ms`.
    #[schema(minimum = 0, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub max_retry_delay_ms: Option<u64>,
    /// Events held between the log and the consumers (default 1,000).
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::json::integer::option_int32")]
    pub buffer_size: Option<u32>,
}

fn bounded(field: &str, value: u64, min: u64, max: u64) -> Result<u64, HttpError> {
    if value < min || value > max {
        return Err(HttpError::InvalidBody {
            reason: format!("{field} {value} is not within {min}..={max}"),
        });
    }
    Ok(value)
}

impl GroupSettingsBody {
    /// The settings, each field checked against its bounds.
    pub(crate) fn to_settings(&self) -> Result<GroupSettings, HttpError> {
        let d = GroupSettings::default();
        let start = match (self.start, self.start_after) {
            (Some(_), Some(_)) => {
                return Err(HttpError::InvalidBody {
                    reason: "start and start_after both name where the group starts: send one".into(),
                });
            }
            (None, Some(p)) => StartFrom::After(p),
            (Some(StartBody::End), None) => StartFrom::End,
            (Some(StartBody::Beginning) | None, None) => StartFrom::Beginning,
        };
        let ms = |field, v: Option<u64>, min, default: Duration| -> Result<Duration, HttpError> {
            match v {
                None => Ok(default),
                Some(v) => Ok(Duration::from_millis(bounded(field, v, min, MAX_MS)?)),
            }
        };
        let retry_delay = ms("retry_delay_ms", self.retry_delay_ms, 0, d.retry_delay)?;
        let max_retry_delay = ms(
            "max_retry_delay_ms",
            self.max_retry_delay_ms,
            0,
            d.max_retry_delay.max(retry_delay),
        )?;
        if max_retry_delay < retry_delay {
            return Err(HttpError::InvalidBody {
                reason: "max_retry_delay_ms is below retry_delay_ms".into(),
            });
        }
        let max_retries = match self.max_retries {
            None => d.max_retries,
            Some(v) => bounded("max_retries", v.into(), 0, MAX_RETRIES.into())? as u32,
        };
        let buffer_size = match self.buffer_size {
            None => d.buffer_size,
            Some(v) => bounded("buffer_size", v.into(), 1, MAX_BUFFER_SIZE.into())? as u32,
        };
        debug_assert_eq!(MAX_TIMEOUT.as_millis(), u128::from(MAX_MS));
        Ok(GroupSettings {
            filter: self.filter.to_filter()?,
            start,
            strategy: match self.strategy {
                Some(StrategyBody::PinnedPerStream) => Strategy::PinnedPerStream,
                Some(StrategyBody::RoundRobin) | None => Strategy::RoundRobin,
            },
            max_retries,
            ack_timeout: ms("ack_timeout_ms", self.ack_timeout_ms, 1, d.ack_timeout)?,
            retry_delay,
            max_retry_delay,
            buffer_size,
        })
    }
}

/// A group's settings as it holds them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupSettingsView {
    /// Which events.
    pub filter: FilterBody,
    /// Where it started, when created with `start` (or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartBody>,
    /// Where it started, when created with `start_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<u64>,
    /// How events are shared.
    pub strategy: StrategyBody,
    /// Retries before parking.
    pub max_retries: u32,
    /// The ack timeout.
    pub ack_timeout_ms: u64,
    /// The first retry's delay.
    pub retry_delay_ms: u64,
    /// The longest retry delay.
    pub max_retry_delay_ms: u64,
    /// The buffer between the log and the consumers.
    pub buffer_size: u32,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Counters since the group was created.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CountersView {
    /// Deliveries, first ones and retries.
    pub delivered: u64,
    /// Deliveries that were retries.
    pub redelivered: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Leases that timed out.
    pub timed_out: u64,
    /// Events parked, ever.
    pub parked: u64,
}

impl From<GroupCounters> for CountersView {
    fn from(c: GroupCounters) -> Self {
        CountersView {
            delivered: c.delivered,
            redelivered: c.redelivered,
            acked: c.acked,
            timed_out: c.timed_out,
            parked: c.parked,
        }
    }
}

/// A group and its progress.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub settings: GroupSettingsView,
    /// Every event of the group up to here is acknowledged or parked.
    pub checkpoint: u64,
    /// The log has been examined up to here.
    pub examined: u64,
    /// The log's head.
    pub head: u64,
    /// `head - checkpoint`, in positions of the whole log.
    pub lag: u64,
    /// Events waiting for a consumer.
    pub pending: u64,
    /// Events leased to consumers.
    pub in_flight: u64,
    /// Events parked now.
    pub parked: u64,
    /// Counters since it was created.
    pub counters: CountersView,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

impl From<&GroupInfo> for GroupView {
    fn from(g: &GroupInfo) -> Self {
        let s = &g.settings;
        GroupView {
            name: g.name.to_string(),
            settings: GroupSettingsView {
                filter: FilterBody::of(&s.filter),
                start: match s.start {
                    StartFrom::Beginning => Some(StartBody::Beginning),
                    StartFrom::End => Some(StartBody::End),
                    StartFrom::After(_) => None,
                },
                start_after: match s.start {
                    StartFrom::After(p) => Some(p),
                    StartFrom::Beginning | StartFrom::End => None,
                },
                strategy: match s.strategy {
                    Strategy::PinnedPerStream => StrategyBody::PinnedPerStream,
                    Strategy::RoundRobin => StrategyBody::RoundRobin,
                },
                max_retries: s.max_retries,
                ack_timeout_ms: millis(s.ack_timeout),
                retry_delay_ms: millis(s.retry_delay),
                max_retry_delay_ms: millis(s.max_retry_delay),
                buffer_size: s.buffer_size,
            },
            checkpoint: g.checkpoint,
            examined: g.examined,
            head: g.head,
            lag: g.lag,
            pending: g.pending,
            in_flight: g.in_flight,
            parked: g.parked,
            counters: g.counters.into(),
            created_at: timestamp(g.created_at),
        }
    }
}

/// `GET /subscriptions/groups`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupsView {
    /// Every group, in name order.
    pub groups: Vec<GroupView>,
}

/// `POST /subscriptions/groups/{group}/read`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// Who reads: the events are leased to this name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
    pub consumer: String,
    /// The most events to lease (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::json::integer::option_int32")]
    pub max_events: Option<u32>,
    /// How long to wait for events when none is due (default 0: answer at
    /// once; at most 30,000). The server's shutdown answers sooner.
    #[schema(minimum = 0, maximum = 30_000)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    pub wait_ms: Option<u64>,
}

/// One delivery: acknowledge or refuse it by its token.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// `<position>.<delivery>`.
    #[schema(pattern = r"^(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})$")]
    pub token: String,
    /// 1 for the first delivery of the event, more for retries.
    pub attempt: u32,
    /// The event.
    pub event: EventView,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            token: d.token.to_string(),
            attempt: d.attempt,
            event: EventView::from_recorded(&d.event),
        }
    }
}

/// What a read leased.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    /// Oldest first; empty when nothing was due within the wait.
    pub deliveries: Vec<DeliveryView>,
}

/// `POST /subscriptions/groups/{group}/ack`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// The deliveries' tokens, as received.
    #[schema(min_items = 1, max_items = 10_000)]
    pub tokens: Vec<String>,
}

/// What happens to refused events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NackActionBody {
    /// Deliver again after the retry delay (parked once the retries are used up).
    Retry,
    /// Park now.
    Park,
}

/// `POST /subscriptions/groups/{group}/nack`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    /// The deliveries' tokens, as received.
    #[schema(min_items = 1, max_items = 10_000)]
    pub tokens: Vec<String>,
    /// Default `retry`.
    pub action: Option<NackActionBody>,
    /// Why: kept with a parked event.
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// What an ack or a nack settled.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SettledView {
    /// Deliveries settled.
    pub settled: u64,
    /// Tokens no longer current (their lease timed out and the event was
    /// or will be delivered again, or they were settled before).
    pub stale: Vec<String>,
}

impl From<Settled> for SettledView {
    fn from(s: Settled) -> Self {
        SettledView {
            settled: s.settled as u64,
            stale: s.stale.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// A parked event.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParkedView {
    /// Its position in the log.
    pub position: u64,
    /// Its stream.
    pub stream: String,
    /// How many times it was delivered.
    pub attempts: u32,
    /// Why it was parked.
    pub reason: String,
    /// When (RFC 3339).
    pub parked_at: String,
    /// Whether a replay is asked for and waiting for room.
    pub replay_requested: bool,
}

impl From<&ParkedEvent> for ParkedView {
    fn from(p: &ParkedEvent) -> Self {
        ParkedView {
            position: p.position,
            stream: p.stream_id.to_string(),
            attempts: p.attempts,
            reason: p.reason.clone(),
            parked_at: timestamp(p.parked_at),
            replay_requested: p.replay_requested,
        }
    }
}

/// A page of parked events.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParkedPage {
    /// In position order.
    pub events: Vec<ParkedView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// `POST /subscriptions/groups/{group}/parked/replay`: which parked events
/// to deliver again.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Their positions; absent (or an empty body): every parked event, up
    /// to 10,000 per call.
    #[schema(max_items = 10_000)]
    #[serde(default, deserialize_with = "crate::json::integer::option_vec")]
    pub positions: Option<Vec<u64>>,
}

/// What a replay marked.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplayView {
    /// Parked events marked for delivery (call again while it is 10,000).
    pub marked: u64,
}
