//! The PostgreSQL toolkit (feature `postgres`): what every crate that keeps
//! tables beside a [`PostgresStore`](crate::PostgresStore)'s log needs, written
//! once. The log itself uses it too.
//!
//! - **Names**: [`quote_ident`], and [`Schema`], a checked schema name that
//!   qualifies table names, fills `{schema}` in SQL templates and names
//!   `NOTIFY` channels.
//! - **Numbers**: [`to_db`] (a `u64` as `bigint`, [`StoreError::OutOfRange`]
//!   past `i64::MAX`), [`to_db_saturating`] (for bounds such as "up to the
//!   newest") and [`from_db`] (a negative `bigint` is
//!   [`StoreError::Corrupt`]).
//! - **Errors**: [`error`] maps a driver error the way the store does (a
//!   lost connection is [`StoreError::Unavailable`], a refused statement
//!   [`StoreError::Postgres`]); [`connection`] takes a pooled connection
//!   with the same mapping; [`describe`] and [`is_connection_error`].
//! - **Migrations**: [`MigrationSet`], versioned and serialised across
//!   processes by an advisory lock.
//! - **Notifications**: [`Listener`], `LISTEN` on a connection of its own
//!   that reconnects with [`Backoff`] and says when it (re)starts listening.
//!
//! ```
//! use strata_store::pg::{Schema, quote_ident, to_db};
//!
//! let schema = Schema::new("shop")?;
//! assert_eq!(schema.table("http_idempotency"), r#""shop"."http_idempotency""#);
//! assert_eq!(schema.render("SELECT 1 FROM {schema}.events"), r#"SELECT 1 FROM "shop".events"#);
//! assert_eq!(schema.channel("models")?, "strata.shop.models");
//! assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
//! assert_eq!(to_db(42, "a position")?, 42);
//! assert!(to_db(u64::MAX, "a position").is_err());
//! # Ok::<(), strata_store::StoreError>(())
//! ```

#[cfg(doc)]
use crate::StoreError;

mod errors;
mod ident;
mod listen;
mod migrate;
mod numbers;

pub use self::errors::{connection, error, is_connection_error, pool_error};
pub use self::ident::{Schema, quote_ident};
pub use self::listen::{Backoff, Heard, Listener};
pub use self::migrate::MigrationSet;
pub use self::numbers::{from_db, to_db, to_db_saturating};
pub use crate::error::describe_postgres as describe;
