//! The contract between the read-model core and its storage: the traits
//! [`ModelBackend`] and [`Generation`] and what they exchange.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_store::{EventId, RecordedEvent};
use tokio::sync::mpsc;

use crate::codec::Entry;
use crate::error::ProjectionError;

/// The changes of one batch: a read-model key and its new value (`None`:
/// deleted), in key order.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A generation as the core holds it: shared by the model's handle, its
/// readers and the write sets staged on it.
pub type GenerationRef = Arc<dyn Generation>;

/// A checkpoint as committed: the position of the last event applied and
/// that event's id (so a log that holds another event there is noticed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Checkpoint {
    /// The position of the last event applied.
    pub position: u64,
    /// That event's id.
    pub event_id: EventId,
}

impl Checkpoint {
    /// The checkpoint after applying `event`.
    pub fn of(event: &RecordedEvent) -> Checkpoint {
        Checkpoint {
            position: event.position,
            event_id: event.id,
        }
    }
}

/// What a generation records beside its entries, written by every commit.
/// A backend that keeps none of it yet (a new generation) reads as the
/// default: checkpoint 0, no event, model version 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stored {
    /// The checkpoint: the position of the last event applied (0: none).
    pub position: u64,
    /// The id of the event at `position`; `None` before the first commit,
    /// or in a model written before strata recorded it.
    pub event_id: Option<EventId>,
    /// The model version of the projection that last committed (0: none
    /// recorded).
    pub model_version: u64,
}

impl Stored {
    /// What a commit of `batch` records.
    pub fn after(batch: &Batch) -> Stored {
        Stored {
            position: batch.at.position,
            event_id: Some(batch.at.event_id),
            model_version: batch.model_version,
        }
    }
}

/// One batch of events' changes, for [`Generation::commit`]. Made by the
/// core from a [`WriteSet`](crate::WriteSet).
///
/// A batch may hold the changes of one event or of a million: its cost to
/// a backend is its changes, not its events, so a rebuild can fold many
/// events in memory and write them as a few large batches.
#[derive(Debug)]
#[non_exhaustive]
pub struct Batch {
    /// The read model's changes.
    pub changes: Changes,
    /// The checkpoint the batch was staged on (the position before its
    /// first event): the commit is refused unless the generation is still
    /// there.
    pub base: u64,
    /// The checkpoint after the batch: greater than `base`.
    pub at: Checkpoint,
    /// The model version of the projection that applied the batch.
    pub model_version: u64,
}

/// How a commit went.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Commit {
    /// The changes and the checkpoint are written, together.
    Done,
    /// Nothing was written: the generation's checkpoint is no longer the
    /// batch's base (another commit came first), or the generation was
    /// replaced by a rebuild. Follow on from what is committed.
    Stale,
    /// Nothing was written, or (PostgreSQL: the connection holding the
    /// lease broke mid-commit) it is not known whether the batch landed:
    /// this writer does not hold the model's lease. Take it again, and
    /// refresh, before writing.
    LeaseLost,
}

/// What [`Generation::refresh`] found.
#[non_exhaustive]
pub enum Refresh {
    /// The copy is what is committed.
    Unchanged,
    /// The copy moved up to the committed checkpoint, in place.
    Advanced {
        /// The checkpoint now.
        checkpoint: u64,
    },
    /// Another process swapped in another generation: read this one now.
    Replaced {
        /// The generation now current.
        generation: GenerationRef,
        /// Its checkpoint.
        checkpoint: u64,
    },
}

/// What [`ModelBackend::swap`] did.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Swapped {
    /// The new generations are current, durably.
    Done,
    /// Nothing was swapped: another process's writer has committed up to
    /// `live`, past the rebuild's checkpoint. Replay up to there and try
    /// again (a reader must never see its model go back).
    Behind {
        /// The live generation's checkpoint.
        live: u64,
    },
}

/// A wake-up for the follower of a shared model: something may have been
/// committed by another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// Anything may have changed (the poll interval passed, or the
    /// notification channel reconnected and may have missed some).
    Check,
    /// A commit or swap made `generation` current at `position`.
    Committed {
        /// The generation committed to.
        generation: u64,
        /// Its checkpoint after the commit.
        position: u64,
    },
}

/// One stored copy of a read model (a "generation") with its checkpoint.
///
/// # Contract
///
/// - **Reads** see whole commits only, never part of one. Keys are the
///   read model's own; what the backend records beside them (the
///   checkpoint, the event id, the model version) is never an entry.
///   [`range`](Self::range) returns the entries with keys in `from..to`
///   (`to` exclusive, `None`: to the last key) in key order, at most
///   `limit` of them, reading no more than that; a range that ends before
///   it starts is empty.
/// - **Commit** writes a batch's changes and its checkpoint (position,
///   event id, model version) in **one atomic step**: after a crash, a
///   failed statement or a refused commit, either both are there or
///   neither. It is a compare-and-set on the checkpoint: refused
///   ([`Commit::Stale`], nothing written) unless the stored checkpoint is
///   still `batch.base` and `batch.at` is past it, and once the generation
///   was retired by a swap. So a batch is never applied twice, whoever
///   else writes. A live generation of a shared backend also refuses a
///   commit without the model's lease ([`Commit::LeaseLost`]). What is
///   durable when `commit` returns is the backend's (sled: in sled's log,
///   made durable by the store's next sync; PostgreSQL: committed).
///   One exception: a generation **being built**, which nobody reads and
///   which is removed if its rebuild fails or dies, may write a large
///   batch in several steps, the checkpoint with the last (sled writes it
///   as a packed run in steps of 64 blocks); a commit that fails there
///   fails the rebuild.
/// - **Refresh** brings a copy of a shared model up to what other
///   processes committed ([`Refresh`]); the others are the committed
///   model and stay [`Refresh::Unchanged`].
/// - **Lifetime**: a generation being built that is dropped without being
///   swapped in is removed (or, after a crash, by the next open of the
///   model). A generation [`retire`](Self::retire)d by a swap is removed
///   once the last holder drops it, so a reader that took it before the
///   swap finishes its reads.
#[async_trait]
pub trait Generation: Send + Sync + 'static {
    /// The generation's id: unique within the model, growing with each rebuild.
    fn id(&self) -> u64;

    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError>;

    /// At most `limit` entries with keys in `from..to`, in key order.
    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, ProjectionError>;

    /// The checkpoint, its event and the model version, as committed.
    fn stored(&self) -> Result<Stored, ProjectionError>;

    /// Writes `batch` and its checkpoint in one atomic step, if the
    /// checkpoint is still `batch.base`.
    async fn commit(&self, batch: Batch) -> Result<Commit, ProjectionError>;

    /// Brings this copy up to what is committed (shared backends).
    async fn refresh(&self) -> Result<Refresh, ProjectionError> {
        Ok(Refresh::Unchanged)
    }

    /// The generation is no longer current: remove its storage once the
    /// last holder drops it (where it is not already removed by the swap).
    fn retire(&self) {}

    /// For a backend's [`ModelBackend::swap`], which gets its own
    /// generations back and needs their concrete type.
    fn as_any(&self) -> &dyn Any;
}

/// The storage of one read model: its generations, which one is current,
/// and who may write it.
///
/// # Contract
///
/// - **Opening** (each backend's own constructor) returns the backend and
///   the current generation, and removes what a rebuild that died left
///   behind (generations that were never swapped in).
/// - **Generations and the swap**: [`begin_generation`](Self::begin_generation)
///   starts an empty generation readers do not see (one rebuild of a model
///   at a time across processes: PostgreSQL waits for the model's rebuild
///   lock; in one process the core serialises rebuilds). [`swap`](Self::swap)
///   makes built generations current, all of them or none, durably: on
///   sled one transaction over the models' pointers (models in different
///   databases one database at a time), in PostgreSQL one transaction,
///   refused with [`Swapped::Behind`] when another process's writer has
///   committed past the rebuild. The core moves its own pointer after a
///   swap and [`retire`](Generation::retire)s the old generation.
/// - **Lease**: one writer per model. [`try_lease`](Self::try_lease) takes
///   it without waiting: PostgreSQL's is a session advisory lock held on a
///   connection of its own, lost with that connection (a commit then
///   answers [`Commit::LeaseLost`]); the others are owned by one process,
///   and the core's in-process claim is their lease.
/// - **Paging and reads** are the generation's ([`Generation`]).
/// - **Read your writes**: the core publishes each commit's checkpoint;
///   a shared backend also sends [`Hint`]s when other processes commit
///   ([`commit_hints`](Self::commit_hints)), and the core then refreshes the
///   current generation, so every process's `wait_for` sees every writer.
#[async_trait]
pub trait ModelBackend: Send + Sync + 'static {
    /// The model's name.
    fn name(&self) -> &str;

    /// What kind of storage it is (`memory`, `sled`, `postgres`). Models of
    /// one kind are swapped together by one [`swap`](Self::swap).
    fn kind(&self) -> &'static str;

    /// Whether other processes write and read this model too: a runner
    /// then waits for the lease in standby, following their commits.
    fn shared(&self) -> bool {
        false
    }

    /// How long a standby waits before trying the lease again.
    fn retry_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// Takes the model's writer lease if it is free (or already ours);
    /// true when this process now holds it.
    async fn try_lease(&self) -> Result<bool, ProjectionError> {
        Ok(true)
    }

    /// Gives the lease up.
    fn drop_lease(&self) {}

    /// Starts a new, empty generation that readers do not see.
    async fn begin_generation(&self) -> Result<GenerationRef, ProjectionError>;

    /// Makes `built` (generations of this kind, from
    /// [`begin_generation`](Self::begin_generation) of their models, each
    /// committed up to `checkpoint`) current, all or none.
    async fn swap(&self, built: &[&GenerationRef], checkpoint: u64) -> Result<Swapped, ProjectionError>;

    /// Wake-ups when other processes commit (shared backends), until the
    /// receiver is dropped.
    fn commit_hints(&self) -> Option<mpsc::Receiver<Hint>> {
        None
    }
}

/// A backend and its current generation, as opened: what each backend's
/// constructor returns, for [`ModelStore::from_backend`](crate::ModelStore::from_backend).
pub struct Opened {
    /// The model's storage.
    pub backend: Arc<dyn ModelBackend>,
    /// The generation readers see.
    pub current: GenerationRef,
}

/// The generations of `built` as `G`, the backend's own type, for a
/// [`ModelBackend::swap`]: the core hands a swap only generations of its
/// own kind, so another type is a bug, reported as an internal storage
/// error rather than a panic.
pub fn own_generations<'a, G: 'static>(name: &str, built: &[&'a GenerationRef]) -> Result<Vec<&'a G>, ProjectionError> {
    built
        .iter()
        .map(|g| {
            g.as_any().downcast_ref::<G>().ok_or_else(|| ProjectionError::Storage {
                projection: name.to_string(),
                source: ::sled::Error::Unsupported(format!(
                    "generation {} was handed to a swap of another kind of backend",
                    g.id()
                )),
            })
        })
        .collect()
}
