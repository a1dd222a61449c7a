//! The storage seam under the groups: where a group's header, rows and
//! parked events are kept, and the one atomic write per change.
//!
//! The rules of a group live in [`crate::state`], written once; a backend
//! only stores what the state machine decided, with optimistic concurrency
//! on the group's version: [`GroupBackend::commit`] writes a group's
//! changes only if its stored version is still the one they were made
//! from. On the embedded tables one process owns the data and the check
//! never fails; on PostgreSQL it is what lets several processes serve one
//! group.

mod codec;
mod local;
#[cfg(feature = "postgres")]
mod postgres;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub(crate) use self::local::LocalGroups;
#[cfg(feature = "postgres")]
pub(crate) use self::postgres::PostgresGroups;
use crate::error::SubscriptionError;
use crate::settings::GroupName;
use crate::state::{Changes, Header, ParkedEvent, Row};

/// What a create found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Created {
    /// The group is new.
    New,
    /// A group of that name was there already, with the same settings.
    Existed,
}

/// What a commit did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Commit {
    /// The changes are written.
    Done,
    /// Another change came first: reload the group and try again.
    Conflict,
    /// The group is gone.
    Gone,
}

/// A group as stored.
pub(crate) struct Stored {
    pub(crate) header: Header,
    pub(crate) rows: BTreeMap<u64, Row>,
}

/// Where groups are kept. Every method is one atomic step.
#[async_trait]
pub(crate) trait GroupBackend: Send + Sync + 'static {
    /// Creates the group with `header`, or finds it there with the same
    /// settings; a group of that name with other settings is
    /// [`SubscriptionError::GroupExists`].
    async fn create(&self, name: &GroupName, header: &Header) -> Result<Created, SubscriptionError>;

    /// Deletes the group with its rows and parked events; false when there
    /// was none.
    async fn delete(&self, name: &GroupName) -> Result<bool, SubscriptionError>;

    /// The names of every group, in order.
    async fn names(&self) -> Result<Vec<GroupName>, SubscriptionError>;

    /// The group's header and rows, `None` when there is no such group.
    async fn load(&self, name: &GroupName) -> Result<Option<Stored>, SubscriptionError>;

    /// The group's stored version, `None` when there is no such group.
    async fn version(&self, name: &GroupName) -> Result<Option<u64>, SubscriptionError>;

    /// Writes `changes` (their header's version is `base + 1`) if the
    /// group's stored version is `base`. Durable as [`GroupBackend::sync`]
    /// says.
    async fn commit(&self, name: &GroupName, base: u64, changes: &Changes) -> Result<Commit, SubscriptionError>;

    /// Makes every commit so far as durable as the log's appends (the
    /// embedded tables sync; PostgreSQL's commits are durable already).
    /// Called after the group's lock is released, so concurrent callers
    /// share one flush.
    async fn sync(&self) -> Result<(), SubscriptionError>;

    /// Up to `limit` parked events of the group after position `after`, in
    /// position order; only those waiting for a replay when `replay_only`.
    async fn parked(
        &self,
        name: &GroupName,
        after: u64,
        limit: usize,
        replay_only: bool,
    ) -> Result<Vec<ParkedEvent>, SubscriptionError>;

    /// How often a consumer waiting for events checks whether another
    /// process changed the group: `None` when no other process can.
    fn poll_interval(&self) -> Option<Duration>;
}
