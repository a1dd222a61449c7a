//! Where read models are stored: the seam between the read-model core
//! ([`ModelStore`](crate::ModelStore), the runner, rebuilds) and the
//! storage underneath.
//!
//! Two traits: a [`ModelBackend`] per model (generations, the writer
//! lease, swaps, commit hints) and a [`Generation`] per stored copy of the
//! model (reads, the atomic commit of a batch and its checkpoint,
//! refresh); their contract is written on them. Three implementations
//! ship, each in a module of its own that knows nothing of the others,
//! opened through [`ModelStore`](crate::ModelStore)'s constructors:
//!
//! | backend | opened by | a generation is | lease | shared by processes |
//! |---|---|---|---|---|
//! | memory | `ModelStore::memory` | a map ([`MemoryGeneration`]) | in-process claim | no |
//! | sled | `ModelStore::open_sled`, `open_in_tables` | a tree of [`LocalTables`](strata_store::LocalTables) | in-process claim | no (one process owns the directory) |
//! | PostgreSQL | `ModelStore::open_postgres` | rows beside the log, copied into a [`MemoryGeneration`] | advisory lock | yes |
//!
//! Another backend implements both traits and is opened with
//! [`ModelStore::from_backend`](crate::ModelStore::from_backend). The crate's
//! conformance suite (`backend/conformance`, tests only) checks every
//! backend against the contract.
//!
//! A public module rather than flat re-exports (a departure from
//! STYLE.md, as `strata_store::pg`): these are the parts of a backend, not
//! what a read model's users touch.

mod contract;
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod sled;

#[cfg(test)]
mod conformance;

pub use self::contract::{
    Batch, Changes, Checkpoint, Commit, Generation, GenerationRef, Hint, ModelBackend, Opened, Refresh, Stored,
    Swapped, own_generations,
};
pub(crate) use self::memory::MemoryBackend;
pub use self::memory::MemoryGeneration;
