#![doc = include_str!("../README.md")]
//!
//! This facade re-exports the crates of the workspace: a service that only
//! needs the log can depend on `strata-store` directly.

/// The event log: [`strata_store`].
pub use strata_store as store;

pub mod workload;
