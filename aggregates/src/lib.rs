//! strata-aggregates: aggregates on the strata log.
//!
//! An [`Aggregate`] decides (`handle`: pure, sync) and evolves (`apply`:
//! total). A [`Repository`] loads it from its stream `"{KIND}-{id}"` and
//! appends what a command decides at the version the decision read, so a
//! lost update cannot happen: a caller that names its version gets a
//! [`Conflict`] with what changed; one that does not is retried under a
//! [`RetryPolicy`]. Snapshots ([`Snapshottable`]) keep long streams fast to
//! load; older event shapes are upcast on load ([`DomainEvent::upcast`]);
//! [`given`] replays history in tests. The [`domain`] module holds the order
//! state machine, stock per SKU, and the order service that reserves stock
//! for a whole order in one atomic multi-stream append.

mod aggregate;
mod codec;
pub mod domain;
mod error;
mod examples;
mod harness;
mod repository;
mod retry;
mod snapshot;

pub use aggregate::{Aggregate, Snapshottable};
pub use codec::{CodecError, DomainEvent, EVENT_VERSION_KEY, FORMAT_KEY, Format, StoredShape, decode, encode};
pub use error::{Conflict, EventEnvelope, RepositoryError};
pub use harness::{Given, When, given, given_no_events};
pub use repository::{Executed, Loaded, Repository};
pub use retry::RetryPolicy;
pub use snapshot::{SNAPSHOT_EVENT_TYPE, SNAPSHOT_STREAM_PREFIX, is_snapshot_stream, snapshot_stream};
