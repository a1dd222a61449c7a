//! Fixtures shared by the store's integration tests: one per backend, so
//! every rule is checked against every backend.
//!
//! The PostgreSQL fixture is strata-testkit's: a schema of its own on the
//! server `STRATA_POSTGRES_URL` names, dropped with the fixture. Tests that
//! use it are ignored unless the variable was set at build time (see
//! docs/testing.md); `scripts/test-postgres.sh` runs them.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use strata_store::{EventId, EventStore, MemoryStore, NewEvent, SegmentOptions, SegmentStore, StreamId};
#[cfg(feature = "postgres")]
use strata_store::{PostgresOptions, PostgresStore};
#[cfg(feature = "postgres")]
use strata_testkit::TestDatabase;
use tempfile::TempDir;

/// A store under test, with what it takes to reopen it.
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    kind: Kind,
}

enum Kind {
    Memory,
    Segment {
        dir: TempDir,
        options: SegmentOptions,
    },
    #[cfg(feature = "postgres")]
    Postgres {
        db: Arc<TestDatabase>,
        options: PostgresOptions,
    },
}

/// The backends, for tests that pick one at run time.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Segment,
    Postgres,
}

impl Fixture {
    /// A fresh store of `backend`.
    pub async fn new(backend: Backend) -> Fixture {
        match backend {
            Backend::Memory => Fixture::memory(),
            Backend::Segment => Fixture::segment(),
            Backend::Postgres => Fixture::postgres().await,
        }
    }

    pub fn memory() -> Fixture {
        Fixture {
            store: Arc::new(MemoryStore::new()),
            kind: Kind::Memory,
        }
    }

    /// A SegmentStore with small segments (64 KiB), so tests cross
    /// segment boundaries.
    pub fn segment() -> Fixture {
        Fixture::segment_with(SegmentOptions {
            segment_bytes: 64 * 1024,
            segment_growth_bytes: 8 * 1024,
            ..SegmentOptions::default()
        })
    }

    pub fn segment_with(options: SegmentOptions) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SegmentStore::open_with(dir.path(), options.clone()).expect("open segment store");
        Fixture {
            store: Arc::new(store),
            kind: Kind::Segment { dir, options },
        }
    }

    /// A PostgresStore on a schema of its own (dropped with the fixture),
    /// as process `main` of the test opens it.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Fixture {
        let db = Arc::new(TestDatabase::new());
        let options = db.options("main");
        Fixture::postgres_with(db, options).await
    }

    /// A PostgresStore that scavenges after every write (batches of 2 rows,
    /// retention not made permanent, so positions and metadata versions
    /// stay those of the other backends): every rule checked on it holds
    /// with the removed rows physically gone.
    #[cfg(feature = "postgres")]
    pub async fn postgres_scavenged() -> Fixture {
        let db = Arc::new(TestDatabase::new());
        let options = db.options("main");
        let store: PostgresStore = db.connect(options.clone()).await;
        Fixture {
            store: Arc::new(scavenged::ScavengedStore(store)),
            kind: Kind::Postgres { db, options },
        }
    }

    /// Without the `postgres` feature a PostgreSQL test is always ignored;
    /// run anyway (`--include-ignored`), it fails here.
    #[cfg(not(feature = "postgres"))]
    pub async fn postgres_scavenged() -> Fixture {
        Fixture::postgres().await
    }

    /// Without the `postgres` feature a PostgreSQL test is always ignored;
    /// run anyway (`--include-ignored`), it fails here.
    #[cfg(not(feature = "postgres"))]
    pub async fn postgres() -> Fixture {
        panic!(
            "built without the `postgres` feature: scripts/test-postgres.sh cargo test -p strata-store --features postgres"
        )
    }

    /// A PostgresStore on `db` with `options`.
    #[cfg(feature = "postgres")]
    pub async fn postgres_with(db: Arc<TestDatabase>, options: PostgresOptions) -> Fixture {
        let store = db.connect(options.clone()).await;
        Fixture {
            store: Arc::new(store),
            kind: Kind::Postgres { db, options },
        }
    }

    /// Closes and reopens a durable store (a restart); the memory store has
    /// no restart and stays as it is.
    pub async fn reopen(self) -> Fixture {
        match self.kind {
            Kind::Memory => self,
            Kind::Segment { dir, options } => {
                drop(self.store);
                let store = SegmentStore::open_with(dir.path(), options.clone()).expect("reopen segment store");
                Fixture {
                    store: Arc::new(store),
                    kind: Kind::Segment { dir, options },
                }
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres { db, options } => {
                drop(self.store);
                let store: PostgresStore = db.connect(options.clone()).await;
                Fixture {
                    store: Arc::new(store),
                    kind: Kind::Postgres { db, options },
                }
            }
        }
    }
}

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("valid stream id")
}

/// An event of type `T` whose payload is `payload`.
pub fn ev(payload: &str) -> NewEvent {
    NewEvent::new("T", Bytes::copy_from_slice(payload.as_bytes()))
}

/// `n` events with payloads `prefix0`, `prefix1`, ...
pub fn evs(prefix: &str, n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| ev(&format!("{prefix}{i}"))).collect()
}

pub fn ids(events: &[NewEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// A PostgreSQL store that scavenges after every write.
#[cfg(feature = "postgres")]
pub mod scavenged {
    use async_trait::async_trait;
    use strata_store::{
        AppendResult, Direction, EventFilter, EventStore, EventSubscription, FilteredRead, FilteredSubscription,
        PostgresScavengeOptions, PostgresStore, RecordedEvent, StoreError, StreamAppend, StreamId, StreamInfo,
        StreamOperation, StreamOperationResult, StreamSummary,
    };

    /// Every append and stream operation is followed by a scavenge (batches
    /// of 2 rows, retention not made permanent); reads go to the store.
    pub struct ScavengedStore(pub PostgresStore);

    impl ScavengedStore {
        async fn scavenge(&self) {
            let options = PostgresScavengeOptions {
                batch_events: 2,
                make_retention_permanent: false,
                ..PostgresScavengeOptions::default()
            };
            self.0.scavenge(options, &mut |_| {}).await.expect("scavenge");
        }
    }

    #[async_trait]
    impl EventStore for ScavengedStore {
        async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
            let r = self.0.append_multi(appends).await;
            self.scavenge().await;
            r
        }
        async fn modify_stream(&self, op: StreamOperation) -> Result<StreamOperationResult, StoreError> {
            let r = self.0.modify_stream(op).await;
            self.scavenge().await;
            r
        }
        async fn read_stream(
            &self,
            stream: &StreamId,
            from_version: u64,
            direction: Direction,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            self.0.read_stream(stream, from_version, direction, limit).await
        }
        async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            self.0.read_all(from_position, limit).await
        }
        async fn read_filtered(
            &self,
            from_position: u64,
            limit: usize,
            filter: &EventFilter,
        ) -> Result<FilteredRead, StoreError> {
            self.0.read_filtered(from_position, limit, filter).await
        }
        async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
            self.0.stream_version(stream).await
        }
        async fn head_position(&self) -> Result<u64, StoreError> {
            self.0.head_position().await
        }
        async fn list_streams(
            &self,
            prefix: &str,
            after: Option<&StreamId>,
            limit: usize,
        ) -> Result<Vec<StreamSummary>, StoreError> {
            self.0.list_streams(prefix, after, limit).await
        }
        async fn stream_info(&self, stream: &StreamId) -> Result<StreamInfo, StoreError> {
            self.0.stream_info(stream).await
        }
        fn subscribe_all(&self, after: u64) -> EventSubscription {
            self.0.subscribe_all(after)
        }
        fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
            self.0.subscribe_filtered(after, filter)
        }
    }
}
