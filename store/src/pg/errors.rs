//! Errors of the PostgreSQL driver and its pool, as [`StoreError`]s.

use std::sync::Arc;

use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::error::SqlState;

use crate::error::{StoreError, describe_postgres};

/// Whether `e` means the connection is gone (or never came up), rather than
/// the server refusing a statement: then what the server did with anything
/// in flight is not known from this side.
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    // No server error: an I/O error, a failed connect or a timeout.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    e.to_string().contains("timeout")
}

/// Maps a driver error met while doing `context`: a lost connection is
/// [`StoreError::Unavailable`] (retry), anything the server refused is
/// [`StoreError::Postgres`] (with the driver's error, SQLSTATE and all).
pub fn error(context: impl Into<String>, e: tokio_postgres::Error) -> StoreError {
    let context = context.into();
    if is_connection_error(&e) {
        StoreError::Unavailable {
            reason: format!(
                "PostgreSQL connection failed while {context}: {}",
                describe_postgres(&e)
            ),
        }
    } else {
        StoreError::Postgres {
            context,
            source: Arc::new(e),
        }
    }
}

/// Maps an error of the connection pool: the server's refusal as
/// [`error`] does, no connection in time as [`StoreError::Unavailable`].
pub fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => error("opening a connection", e),
        PoolError::Timeout(kind) => StoreError::Unavailable {
            reason: format!("no PostgreSQL connection available in time ({kind:?})"),
        },
        other => StoreError::Unavailable {
            reason: format!("PostgreSQL connection pool: {other}"),
        },
    }
}

/// A connection from `pool` (e.g. [`PostgresStore::pool`](crate::PostgresStore::pool)),
/// its failures mapped by [`pool_error`].
pub async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(pool_error)
}

impl StoreError {
    /// Maps an error of the PostgreSQL driver the way the store does; the
    /// same as [`crate::pg::error`].
    pub fn from_postgres(context: impl Into<String>, source: tokio_postgres::Error) -> StoreError {
        error(context, source)
    }

    /// Whether a PostgreSQL driver error means the connection is gone; the
    /// same as [`crate::pg::is_connection_error`].
    pub fn is_postgres_connection_error(source: &tokio_postgres::Error) -> bool {
        is_connection_error(source)
    }
}
