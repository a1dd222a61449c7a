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
