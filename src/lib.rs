#![doc = include_str!("../README.md")]
//!
//! This facade re-exports the crates of the workspace. A service that only
//! needs the log can depend on `strata-store` directly, one that runs
//! aggregates on `strata-aggregates`.

#![warn(missing_docs)]

/// Aggregates, the repository and the order and stock domain: [`strata_aggregates`].
pub use strata_aggregates as aggregates;
/// The HTTP service: [`strata_http`] (feature `http`, on with the default `cli`).
#[cfg(feature = "http")]
pub use strata_http as http;
/// Read models folded from the log, with checkpoints: [`strata_projections`].
pub use strata_projections as projections;
/// The event log: [`strata_store`].
pub use strata_store as store;
