//! The decide/evolve contract of an aggregate.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::DomainEvent;

/// A consistency boundary whose state is the fold of its events.
///
/// - `handle` decides: from the current state and a command, the events to
///   append, or the aggregate's refusal. It is pure and synchronous: no I/O,
///   no clock, no randomness (put those in the command), so a conflicting
///   write can simply decide again on the newer state.
/// - `apply` evolves: it folds one event into the state. It is total and
///   holds no business rules: an event is a fact that already happened, and
///   replaying history must never fail.
///
/// The aggregate with id `id` lives in the stream `"{KIND}-{id}"`.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The kind, the prefix of the stream ids (`"order"` → `order-42`).
    const KIND: &'static str;
    /// What the aggregate is asked to do.
    type Command;
    /// What it records (serde + `event_type()` + `event_version()`).
    type Event: DomainEvent;
    /// How it refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides which events a command produces in the current state. An
    /// empty list means the command changes nothing (nothing is appended).
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The aggregate id a command names itself, if it names one (typically
    /// a create command: `Register { sku }`, `Place { order_id }`).
    /// [`Repository::execute`](crate::Repository::execute) refuses to run
    /// such a command on any other id, with
    /// [`RepositoryError::IdMismatch`](crate::RepositoryError::IdMismatch):
    /// the stream `"{KIND}-{id}"` would otherwise hold an aggregate calling
    /// itself by another id, which its readers cannot reconcile. The
    /// default names none.
    fn command_id(command: &Self::Command) -> Option<&str> {
        let _ = command;
        None
    }

    /// Whether `command` may run on its own, through
    /// [`Repository::execute`](crate::Repository::execute). A command that
    /// is only correct as part of a larger atomic write (one a domain
    /// service makes over several aggregates, deciding with
    /// [`handle`](Aggregate::handle) directly) returns the aggregate's
    /// refusal here, and the repository answers it as
    /// [`RepositoryError::Rejected`](crate::RepositoryError::Rejected)
    /// without loading anything. The default allows every command.
    fn check_direct(command: &Self::Command) -> Result<(), Self::Error> {
        let _ = command;
        Ok(())
    }
}

/// An aggregate whose state can be stored as a snapshot, so that loading a
/// long stream reads the newest snapshot plus the events after it.
///
/// The state is encoded with the repository's [`Format`](crate::Format).
/// Raise [`SNAPSHOT_VERSION`](Snapshottable::SNAPSHOT_VERSION) whenever the
/// state's shape (its fields, their types, their meaning) or the way `apply`
/// builds it changes: snapshots with another version are ignored, and the
/// state is rebuilt from the events, instead of being misread.
pub trait Snapshottable: Aggregate + Serialize + DeserializeOwned {
    /// The version of the state's shape.
    const SNAPSHOT_VERSION: u32;
}
