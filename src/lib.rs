//! strata: an event-sourced aggregate store.
//!
//! This facade re-exports the crates of the workspace. A service that only
//! needs the log can depend on `strata-store` directly, one that runs
//! aggregates on `strata-aggregates`.

pub use strata_aggregates as aggregates;
pub use strata_store as store;
