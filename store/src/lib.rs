//! strata-store: the event log of strata.
//!
//! Streams of events with optimistic concurrency: every append names the
//! stream version it was decided on and is refused, writing nothing, when the
//! stream has moved on. Retries are recognised by event id and answered
//! from the log. The backends share one set of rules ([`EventStore`]):
//! [`MemoryStore`] for tests, [`SegmentStore`], the embedded default: a
//! log on segment files of strata's own format, durable group commit, and
//! a sled index derived from the segments (see `docs/log.md`), and (with
//! the `postgres` feature) `PostgresStore`, one log in a PostgreSQL
//! database shared by several processes.
//!
//! What other crates keep beside the log goes through the store too:
//! [`LocalTables`] (named sled trees beside the embedded log, with one
//! durable sync) and, with the `postgres` feature, the `pg` toolkit
//! (schema-qualified names, migrations, error mapping, a reconnecting
//! `LISTEN`) for tables beside a `PostgresStore`'s log.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentStore, StoreError, StreamId};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SegmentStore::open(dir.path())?;
//! let stream = StreamId::new("account-7")?;
//!
//! let opened = NewEvent::new("AccountOpened", r#"{"owner":"ada"}"#);
//! let r = store.append(&stream, ExpectedVersion::NoStream, vec![opened.clone()]).await?;
//! assert_eq!((r.stream_version, r.first_position), (1, 1));
//!
//! // A retry with the same event id is answered from the log: nothing is written twice.
//! let again = store.append(&stream, ExpectedVersion::NoStream, vec![opened]).await?;
//! assert_eq!(again, r);
//!
//! // A writer that decided on a stale version is refused with the current one.
//! let stale = store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Deposited", "{}")]).await;
//! assert!(matches!(stale, Err(StoreError::WrongExpectedVersion { actual: 1, .. })));
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

mod codec;
#[cfg(feature = "postgres")]
mod commit_stats;
mod decide;
mod durability;
mod error;
mod examples;
mod filter;
mod kind;
mod limits;
mod memory;
#[cfg(feature = "postgres")]
pub mod pg;
#[cfg(feature = "postgres")]
mod postgres;
mod retention;
mod segment;
mod store;
mod subscription;
mod tables;
mod types;

pub use codec::{bincode_len, from_bincode, to_bincode};
#[cfg(feature = "postgres")]
pub use commit_stats::CommitStats;
/// The connection pool of [`PostgresStore::pool`].
#[cfg(feature = "postgres")]
pub use deadpool_postgres;
pub use durability::Durability;
pub use error::StoreError;
pub use filter::{
    EventFilter, FILTER_SCAN_WINDOW, FilteredRead, MAX_FILTER_CONDITIONS, MAX_FILTER_TERM_BYTES, category_of,
};
#[doc(hidden)]
pub use kind::Example;
pub use kind::{Classify, ErrorKind};
pub use limits::Limits;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{
    PostgresOptions, PostgresScavengeOptions, PostgresScavengeProgress, PostgresScavengeReport, PostgresStore,
};
pub use retention::{
    DeleteMode, EVENT_METADATA, EVENT_STREAM_DELETED, EVENT_STREAM_TOMBSTONED, EVENT_STREAM_TRUNCATED,
    MAX_RETENTION_AGE_MS, MAX_RETENTION_COUNT, METADATA_STREAM_PREFIX, StreamInfo, StreamMetadata, StreamOperation,
    StreamOperationResult, StreamState, described_stream, is_metadata_stream, metadata_stream,
};
pub use segment::{
    DataLayout, DiskUsage, FileStorage, IndexProgress, ScavengeOptions, ScavengeProgress, ScavengeReport,
    SegmentOptions, SegmentStats, SegmentStore, Storage, StorageFile, VerifyReport,
};
#[cfg(feature = "sim")]
pub use segment::{PowerLoss, SimDisk, SimOp};
pub use store::EventStore;
pub use subscription::{EventSubscription, FilteredSubscription, SUBSCRIPTION_BATCH, SubscriptionItem};
pub use tables::LocalTables;
/// The PostgreSQL driver whose errors [`StoreError::Postgres`] carries.
#[cfg(feature = "postgres")]
pub use tokio_postgres;
pub use types::{
    AppendResult, Direction, EventId, ExpectedVersion, MAX_STREAM_ID_BYTES, Metadata, NewEvent, RecordedEvent,
    StreamAppend, StreamId, StreamSummary,
};
