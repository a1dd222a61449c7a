//! The subcommands of `strata`, one module each.

pub mod bench;
pub mod loadtest;
pub mod log;
pub mod logging;
pub mod rebuild;
pub mod scavenge;
pub mod serve;
pub mod subscribe;
pub mod token;
pub mod verify;
// Some re-exports serve only the benches and tests/cli.rs, which compile
// this module tree with `#[path]`.
#[allow(unused_imports)]
pub mod workload;

/// An error a subcommand reports before exiting non-zero.
pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
