//! What strata's tests share (not published): one PostgreSQL fixture and
//! waiting on a condition.
//!
//! # PostgreSQL tests: run, or reported as ignored
//!
//! A test that needs a server is marked, in a crate whose `build.rs` sets
//! `cfg(strata_postgres)` when `STRATA_POSTGRES_URL` is set at build time
//! (and the crate's `postgres` feature is on):
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
//! async fn a_test() {
//!     let db = strata_testkit::TestDatabase::new();
//!     // ...
//! }
//! ```
//!
//! So plain `cargo test` lists it as ignored, with the command that runs
//! it; `scripts/test-postgres.sh` (which starts a throwaway server and sets
//! the variable) runs it, and then a server that cannot be reached fails
//! it. Nothing is ever counted as passed without having run.
//!
//! # Waiting
//!
//! Tests never sleep a fixed time to let something happen: they wait for
//! the condition itself with [`until`] ([`until_async`] for a condition that
//! is a query; [`until_blocking`] off a
//! runtime), which fails loudly, naming what it waited for, when a
//! generous deadline passes.

#![warn(missing_docs)]

mod pg;
mod wait;

pub use pg::{TestDatabase, postgres_url};
pub use wait::{STALL, until, until_async, until_blocking};

/// The files under `dir` (recursively) whose bytes contain `needle`: what
/// an erasure test checks is empty after a scavenge.
pub fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
