//! The [`Projection`] trait: a name and a fallible fold of one event.

use strata_store::RecordedEvent;

use crate::error::ProjectionError;
use crate::model::write_set::WriteSet;

/// Folds events of the log into a read model.
///
/// `apply` reads the model through `model` and stages its changes there;
/// it does not write anywhere else. The runner applies a batch of events
/// to one [`WriteSet`] and commits it together with the batch's last
/// position, in one atomic write, so a read model change and its checkpoint
/// are never apart: after a crash no event is applied twice and none is
/// skipped.
///
/// `apply` must be deterministic (the same model and event give the same
/// changes): when it fails on an event, the runner applies the events of
/// the batch before it again to commit them without the failed one. It sees
/// every event of the log, in position order; it ignores the ones it does
/// not project by returning `Ok(())`.
///
/// A rebuild of several models calls the `apply` of different projections
/// at the same time, on threads of its own (in the caller's Tokio runtime
/// context, tracing dispatcher and span; no other thread-locals); one
/// model's events are applied one after the other, never two at once.
/// `apply` must not block on the runtime (`Handle::block_on`): on the
/// caller's thread it panics, and on a lane beside a current-thread
/// runtime it can wait forever, since that runtime's thread is busy
/// folding.
///
/// ```
/// use strata_projections::{Projection, ProjectionError, WriteSet};
/// use strata_store::RecordedEvent;
///
/// /// Counts events per type.
/// struct TypeCounts;
///
/// impl Projection for TypeCounts {
///     fn name(&self) -> &str {
///         "type_counts"
///     }
///     fn apply(&self, event: &RecordedEvent, model: &mut WriteSet) -> Result<(), ProjectionError> {
///         let key = event.event_type.as_bytes();
///         let n: u64 = model.get_value(key)?.unwrap_or(0);
///         model.put_value(key, &(n + 1))
///     }
/// }
/// ```
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: it names the read model's storage (sled trees
    /// `projection.<name>.*`), so it must stay the same across restarts. 1..=64
    /// ASCII letters, digits, `_` or `-`.
    fn name(&self) -> &str;

    /// Applies one event to the read model, or says why it cannot. An error
    /// stops the runner at this event's position.
    fn apply(&self, event: &RecordedEvent, model: &mut WriteSet) -> Result<(), ProjectionError>;

    /// The version of the read model's layout this projection writes and
    /// reads (its keys and values); 0 by default. Raise it when `apply`
    /// changes what it stores for the same events, e.g. when it starts
    /// keeping an index its readers rely on: the model already stored was
    /// written without it.
    ///
    /// Every commit records the version of the projection that applied it.
    /// A [`ProjectionRunner`](crate::ProjectionRunner) refuses to follow a
    /// model that holds events (checkpoint above 0) and was recorded under
    /// another version ([`ProjectionError::ModelVersionMismatch`]): it
    /// must be rebuilt first, which [`Projections::start`](crate::Projections::start)
    /// does on its own. Models stored before versions were recorded read
    /// as version 0, so a projection that keeps the default is never
    /// rebuilt for it.
    fn model_version(&self) -> u64 {
        0
    }
}

/// The stream a delete removed, when `event` is the record of a soft or
/// hard delete (an event of a `$$` metadata stream, see strata-store's
/// `docs/retention.md`): a read model drops what it kept of that stream.
///
/// Truncations and retention (`$streamTruncated`, `$metadata`) are not
/// deletes: what a read model folded from the removed events stays.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use strata_projections::deleted_stream;
/// use strata_store::{DeleteMode, EventStore, ExpectedVersion, MemoryStore, NewEvent, StreamId};
/// let store = MemoryStore::new();
/// let s = StreamId::new("order-1").unwrap();
/// store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", "{}")]).await.unwrap();
/// store.delete_stream(&s, ExpectedVersion::Any, DeleteMode::Soft).await.unwrap();
/// let log = store.read_all(0, 10).await.unwrap();
/// assert_eq!(log.len(), 1, "the order's event is removed; the delete's record is not");
/// assert_eq!(deleted_stream(&log[0]), Some(s));
/// # });
/// ```
pub fn deleted_stream(event: &strata_store::RecordedEvent) -> Option<strata_store::StreamId> {
    if event.event_type != strata_store::EVENT_STREAM_DELETED
        && event.event_type != strata_store::EVENT_STREAM_TOMBSTONED
    {
        return None;
    }
    strata_store::described_stream(&event.stream_id)
}
