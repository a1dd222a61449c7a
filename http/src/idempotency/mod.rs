//! `Idempotency-Key` (IETF httpapi draft): an unsafe request (POST, PUT,
//! PATCH, DELETE) retried with the same key gets the first response
//! instead of being applied again.
//!
//! - [`rules`]: which keys are valid, the request's fingerprint, the
//!   records (in flight, completed), retention, and what a request does
//!   about the record under its key (run, replay, in flight, mismatch, run
//!   again after a crash). Pure.
//! - [`backend`]: `RecordStore`, where records live, and [`Records`],
//!   one run's rules over a backend, which the service holds.
//! - [`local`]: records in the sled tables beside the embedded log;
//!   `postgres`: in a table beside a PostgreSQL log, shared by processes.
//! - [`middleware`]: the axum middleware.
//!
//! A request first writes an in-flight marker (atomically, so two
//! concurrent requests with one key cannot both run); when its handler has
//! answered, the marker is replaced by the response (status, headers,
//! body), durably, before the response leaves. A retry after a crash or
//! restart is therefore answered from the record.
//!
//! In-flight markers carry the id of the process run ("boot") that wrote
//! them. A marker of a run that died does not block the key: the same
//! request runs again, told to look for its own write first (see
//! docs/http.md for what that means for requests without `If-Match`).

use std::time::Duration;

use strata_store::{LocalTables, StoreError};

mod backend;
mod local;
mod middleware;
#[cfg(feature = "postgres")]
mod postgres;
mod rules;

#[cfg(test)]
mod conformance;

pub(crate) use backend::Records;
pub(crate) use middleware::{INTERNAL_AFTER_CRASH, INTERNAL_FINGERPRINT, KeyedRequests, middleware};
pub(crate) use rules::parse_key;
pub use rules::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED};

impl Records {
    /// The records in the tables beside an embedded log, for a new run of
    /// the process.
    pub(crate) fn open_local(tables: &LocalTables, retention: Duration) -> Result<Records, StoreError> {
        let store = local::SledRecords::open(tables)?;
        Ok(Records::new(rules::Rules::new(retention), std::sync::Arc::new(store)))
    }

    /// The records in the database and schema of a PostgreSQL log (the
    /// table created or migrated), for a new run of the process, which
    /// holds its liveness lock while they are open (see `postgres.rs`).
    #[cfg(feature = "postgres")]
    pub(crate) async fn open_postgres(
        store: &strata_store::PostgresStore,
        retention: Duration,
    ) -> Result<Records, StoreError> {
        let rules = rules::Rules::new(retention);
        let records = postgres::PgRecords::open(store, rules.boot()).await?;
        Ok(Records::new(rules, std::sync::Arc::new(records)))
    }
}
