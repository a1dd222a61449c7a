//! The subcommands of `strata`, one module each.

pub mod bench;
pub mod loadtest;
pub mod log;
pub mod logging;
pub mod rebuild;
pub mod serve;
pub mod subscribe;
pub mod verify;

/// An error a subcommand reports before exiting non-zero.
pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
