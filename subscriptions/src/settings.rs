//! What a group is: its name, where it reads, how it hands events out,
//! and the names of its consumers; each value checked where it is made.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_store::EventFilter;

use crate::error::SubscriptionError;

/// The longest group or consumer name, in bytes.
pub const MAX_NAME_BYTES: usize = 100;

/// The rule names follow: 1..=100 bytes of ASCII letters, digits, `.`, `_`
/// and `-`, starting with a letter or a digit (as a regular expression,
/// [`NAME_PATTERN`]). Safe in a URL path, a sled key and a metrics label.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$";

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.len() > MAX_NAME_BYTES {
        Err("must be at most 100 bytes")
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Err("must start with a letter or a digit")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Err("may hold only ASCII letters, digits, `.`, `_` and `-`")
    } else {
        Ok(())
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Checks `name` as a ", $what, " name (see [`NAME_PATTERN`]).")]
            pub fn new(name: impl Into<String>) -> Result<$name, SubscriptionError> {
                let name = name.into();
                match check_name(&name) {
                    Ok(()) => Ok($name(name)),
                    Err(reason) => Err(SubscriptionError::InvalidName {
                        what: $what,
                        name: name.chars().take(64).filter(|c| !c.is_control()).collect(),
                        reason,
                    }),
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = SubscriptionError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = SubscriptionError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
    };
}

name_type!(
    /// The name of a persistent subscription group, unique per store.
    ///
    /// ```
    /// use strata_subscriptions::GroupName;
    /// assert!(GroupName::new("billing.orders-v2").is_ok());
    /// assert!(GroupName::new("").is_err());
    /// assert!(GroupName::new("a/b").is_err());
    /// ```
    GroupName,
    "group"
);

name_type!(
    /// The name a consumer gives itself when it reads from a group: the
    /// events it holds are leased to this name (several connections may
    /// share one name; they are then one consumer to the group).
    ConsumerName,
    "consumer"
);

/// How a group hands its events to competing consumers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Any consumer gets the next events that are due, oldest first;
    /// several events of one stream may be in flight at once, at different
    /// consumers. The most parallel; no order between a stream's events.
    #[default]
    RoundRobin,
    /// One event per stream in flight at a time: a stream's next event is
    /// handed out only once the one before it was acknowledged or parked,
    /// so each stream is handled in order by one consumer at a time, while
    /// different streams go to different consumers in parallel.
    PinnedPerStream,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::PinnedPerStream => "pinned_per_stream",
        })
    }
}

/// Where a new group starts in the log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// With the first event of the log.
    #[default]
    Beginning,
    /// With the first event appended after the group is created.
    End,
    /// With the first event after this position.
    After(u64),
}

/// The most events one group may hold between the log and its consumers
/// (pending and in flight together).
pub const MAX_BUFFER_SIZE: u32 = 100_000;

/// The most retries of one event before it is parked.
pub const MAX_RETRIES: u32 = 1_000;

/// The longest ack timeout and retry delay.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How a persistent subscription group works. Checked when the group is
/// created ([`GroupSettings::check`]).
///
/// ```
/// use std::time::Duration;
/// use strata_store::EventFilter;
/// use strata_subscriptions::{GroupSettings, Strategy};
///
/// let settings = GroupSettings {
///     filter: EventFilter::all().category("order"),
///     strategy: Strategy::PinnedPerStream,
///     ack_timeout: Duration::from_secs(10),
///     ..GroupSettings::default()
/// };
/// assert!(settings.check().is_ok());
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Which events of the log the group delivers: a stream
    /// (`EventFilter::all().stream(..)`), a category, event types, or any
    /// combination (see [`EventFilter`]).
    pub filter: EventFilter,
    /// Where the group starts.
    pub start: StartFrom,
    /// How events are shared among consumers.
    pub strategy: Strategy,
    /// How many times an event is delivered again after a nack or a
    /// timeout before it is parked (default 10, at most 1,000; 0 parks it
    /// at its first failure).
    pub max_retries: u32,
    /// How long a consumer holds an event it received before the group
    /// counts it as failed and delivers it again (default 30 s; 1 ms to
    /// 24 h). A consumer that dies mid-event loses its events this way.
    pub ack_timeout: Duration,
    /// The delay before the first retry of a failed event (default 100 ms,
    /// at most 24 h); it doubles with each retry, up to `max_retry_delay`.
    pub retry_delay: Duration,
    /// The longest delay between retries (default 30 s, at least
    /// `retry_delay`, at most 24 h).
    pub max_retry_delay: Duration,
    /// The most events the group holds between the log and its consumers,
    /// pending and in flight together (default 1,000; 1 to 100,000). A
    /// full buffer stops the group reading the log until consumers
    /// acknowledge: slow consumers are backpressured, memory is bounded.
    pub buffer_size: u32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            filter: EventFilter::all(),
            start: StartFrom::Beginning,
            strategy: Strategy::RoundRobin,
            max_retries: 10,
            ack_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(30),
            buffer_size: 1_000,
        }
    }
}

impl GroupSettings {
    /// Checks every field against its range (and the filter against its
    /// rules). Errors: [`SubscriptionError::InvalidSettings`] naming the
    /// field.
    pub fn check(&self) -> Result<(), SubscriptionError> {
        let bad = |reason: String| Err(SubscriptionError::InvalidSettings { reason });
        if let Err(e) = self.filter.check() {
            return bad(format!("filter: {e}"));
        }
        if self.max_retries > MAX_RETRIES {
            return bad(format!("max_retries {} is more than {MAX_RETRIES}", self.max_retries));
        }
        if self.ack_timeout < Duration::from_millis(1) || self.ack_timeout > MAX_TIMEOUT {
            return bad(format!("ack_timeout {:?} is not within 1 ms..=24 h", self.ack_timeout));
        }
        if self.retry_delay > MAX_TIMEOUT {
            return bad(format!("retry_delay {:?} is more than 24 h", self.retry_delay));
        }
        if self.max_retry_delay < self.retry_delay || self.max_retry_delay > MAX_TIMEOUT {
            return bad(format!(
                "max_retry_delay {:?} is not within retry_delay ({:?})..=24 h",
                self.max_retry_delay, self.retry_delay
            ));
        }
        if self.buffer_size == 0 || self.buffer_size > MAX_BUFFER_SIZE {
            return bad(format!(
                "buffer_size {} is not within 1..={MAX_BUFFER_SIZE}",
                self.buffer_size
            ));
        }
        Ok(())
    }

    /// The delay before the retry that follows delivery number `attempts`
    /// (1 for the first delivery): `retry_delay` doubled per earlier
    /// retry, at most `max_retry_delay`.
    pub fn retry_delay_after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        self.retry_delay
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_retry_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_pattern() {
        for good in ["a", "A-1", "orders.v2_b", &"x".repeat(100)] {
            assert!(GroupName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"x".repeat(101)] {
            assert!(
                matches!(GroupName::new(bad), Err(SubscriptionError::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn settings_ranges_are_checked() {
        assert!(GroupSettings::default().check().is_ok());
        let cases = [
            GroupSettings {
                max_retries: MAX_RETRIES + 1,
                ..GroupSettings::default()
            },
            GroupSettings {
                ack_timeout: Duration::ZERO,
                ..GroupSettings::default()
            },
            GroupSettings {
                retry_delay: Duration::from_secs(60),
                max_retry_delay: Duration::from_secs(1),
                ..GroupSettings::default()
            },
            GroupSettings {
                buffer_size: 0,
                ..GroupSettings::default()
            },
            GroupSettings {
                filter: EventFilter::all().category("a-b"),
                ..GroupSettings::default()
            },
        ];
        for bad in cases {
            assert!(
                matches!(bad.check(), Err(SubscriptionError::InvalidSettings { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn retry_delays_double_up_to_the_bound() {
        let s = GroupSettings {
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(500),
            ..GroupSettings::default()
        };
        let delays: Vec<u128> = (1..=5).map(|a| s.retry_delay_after(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(s.retry_delay_after(u32::MAX).as_millis(), 500);
    }
}
