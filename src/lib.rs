//! strata: an event-sourced aggregate store.
//!
//! This facade re-exports the crates of the workspace. A service that only
//! needs the log can depend on `strata-store` directly.

pub use strata_projections as projections;
pub use strata_store as store;
