//! strata-subscriptions: persistent subscriptions for strata.
//!
//! A **group** is a named, durable cursor on the log with competing
//! consumers behind it: it reads the events its filter selects (a stream,
//! a category, event types: any [`strata_store::EventFilter`]) and leases
//! them to whichever consumer asks ([`Subscriptions::read`]). A consumer
//! acknowledges what it handled ([`Subscriptions::ack`]) or refuses it
//! ([`Subscriptions::nack`]); what is neither acknowledged nor refused
//! within the group's ack timeout (a consumer that died, or hangs) is
//! delivered again. Failed events are retried with a doubling delay, and
//! parked once their retries are used up; parked events can be listed and
//! replayed. Delivery is **at least once**: a consumer must handle an
//! event twice as if once.
//!
//! Two strategies: [`Strategy::RoundRobin`] (any consumer, any event) and
//! [`Strategy::PinnedPerStream`] (a stream's events one at a time, in
//! order, while different streams go to different consumers).
//!
//! The group's state (how far it read, its leases and retries, its parked
//! events) is kept on the embedded tables ([`Subscriptions::local`]) or in
//! PostgreSQL beside the log (`Subscriptions::postgres`, feature
//! `postgres`), where every process on the database serves the same
//! groups. Consumers pull: a slow consumer is never sent more than it asks
//! for, and a group whose consumers fall behind stops reading the log once
//! its buffer is full, so memory stays bounded and writers never wait.
//!
//! Why a crate of its own: the groups are a consumer of the log, built
//! only on what `strata-store` offers every crate (`EventStore`, the
//! filtered subscription, `LocalTables`, the `pg` toolkit), like the read
//! models of `strata-projections`. A service that only appends and reads
//! does not compile them.
//!
//! See `docs/subscriptions.md` for the guarantees and how they compare
//! with KurrentDB's persistent subscriptions.

#![warn(missing_docs)]

mod backend;
mod engine;
mod error;
mod runtime;
mod settings;
mod state;

pub use backend::Created;
pub use engine::{GroupInfo, MAX_PARKED_PAGE, MAX_READ_BATCH, MAX_REPLAY, MAX_TOKENS, Settled, Subscriptions};
pub use error::SubscriptionError;
pub use runtime::{Delivery, FEED_CAPACITY};
pub use settings::{
    ConsumerName, GroupName, GroupSettings, MAX_BUFFER_SIZE, MAX_NAME_BYTES, MAX_RETRIES, MAX_TIMEOUT, NAME_PATTERN,
    StartFrom, Strategy,
};
pub use state::{DeliveryToken, GroupCounters, MAX_REASON_BYTES, NackAction, ParkedEvent, TOKEN_PATTERN};
