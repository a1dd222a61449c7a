//! The read-model core: [`ModelStore`](store::ModelStore), the handle of
//! one projection's read model over any backend (see `crate::backend`),
//! with its readers, write sets, the runner's lease and rebuilds'
//! generations.
//!
//! The handle holds the generation readers see and moves it only when a
//! rebuild is swapped in (or, for a model shared with other processes,
//! when a refresh finds another process swapped one in). Every commit to
//! the current generation, and every swap, happens under the handle's
//! commit lock, so a commit never lands on a generation that was replaced
//! while it was being staged, and `wait_for` watches one checkpoint.
//!
//! The files depend one way: `store` (the handle, its reads, `wait_for`)
//! on `reader` and `run_state`; `writer` (lease, commits, refresh) on
//! `store` and `write_set`; `building` (rebuilds' generations, the swap)
//! and `open` (the constructors, the follower of other processes'
//! commits) on those.

pub(crate) mod building;
pub(crate) mod open;
pub(crate) mod reader;
pub(crate) mod run_state;
pub(crate) mod staged;
pub(crate) mod store;
pub(crate) mod write_set;
pub(crate) mod writer;
