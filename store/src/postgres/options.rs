//! What a [`PostgresStore`] is opened with: its schema, limits, pool and
//! timings.

use std::time::Duration;

#[cfg(doc)]
use super::PostgresStore;
#[cfg(doc)]
use crate::error::StoreError;
use crate::limits::Limits;

/// How a [`PostgresStore`] connects and behaves.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema that holds the log's tables (default `strata`). It is
    /// created, and migrated, when the store connects. Lower-case letters,
    /// digits and `_`, starting with a letter or `_`, at most 40 bytes.
    /// Stores on different schemas of one database are independent logs.
    pub schema: String,
    /// Limits on appends.
    pub limits: Limits,
    /// Connections in the pool (default 16, at least 2): one is held by the
    /// writer, the rest serve reads. The listener for live subscriptions has one more
    /// of its own.
    pub pool_size: usize,
    /// The most appends one group commit (one transaction) takes (default 1,024).
    pub max_group_appends: usize,
    /// How many appends may wait for the writer before `append` waits for room (default 4,096).
    pub queue_capacity: usize,
    /// The `application_name` of the store's connections, as
    /// `pg_stat_activity` shows it; the listener's is this plus `-listen`.
    /// `None` keeps the one in the URL, or else uses `strata`.
    pub application_name: Option<String>,
    /// How often live subscriptions check the head position in case a
    /// notification was lost (default 1 s). Notifications normally wake
    /// them at once.
    pub poll_interval: Duration,
    /// How long opening a connection, or waiting for a free one in the
    /// pool, may take before the call fails with
    /// [`StoreError::Unavailable`] (default 10 s).
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "strata".into(),
            limits: Limits::default(),
            pool_size: 16,
            max_group_appends: 1024,
            queue_capacity: 4096,
            application_name: None,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
        }
    }
}
