//! Workloads of `strata bench`, private to the CLI (not the library's
//! API). The criterion benches (`benches/`) and `tests/cli.rs` compile this
//! same module tree with `#[path]`, so both measure exactly the same thing
//! and the figures of one run can be compared side by side as ratios.
//!
//! - appends: strata (the embedded log, memory), the naive sled append (the
//!   baseline) and the disk's `fdatasync` ceiling, by 1..N writers;
//! - history: a valid mixed log of orders and stock, and a plain fold of it
//!   (the upper bound for projections);
//! - aggregates: one long stock stream, with a snapshot near its end.

mod aggregate;
mod appends;
mod history;
#[cfg(feature = "postgres")]
mod postgres;

pub use aggregate::{long_stock_stream, receive_raw};
pub use appends::{
    AppendSpec, Budget, FileMode, RunStats, Streams, payload, run_appends, run_disk_ceiling, run_naive_sled,
};
pub use history::{Fold, FoldError, HISTORY_SKUS, plain_fold, scan_log, write_history};
#[cfg(feature = "postgres")]
pub use postgres::NaivePostgres;
