//! Fixtures shared by the store's integration tests: one per backend, so
//! every rule is checked against every backend.
//!
//! The PostgreSQL fixture needs a server: `STRATA_POSTGRES_URL` names it
//! (`scripts/test-postgres.sh` starts a throwaway one and sets it). Without
//! it, or without the `postgres` feature, a PostgreSQL test prints a
//! `SKIPPED` line to stderr and checks nothing; with the variable set, a
//! failure to connect fails the test.

#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use strata_store::{
    EventId, EventStore, MemoryStore, NewEvent, SegmentOptions, SegmentStore, SledOptions, SledStore, StreamId,
};
#[cfg(feature = "postgres")]
use strata_store::{PostgresOptions, PostgresStore};
use tempfile::TempDir;

/// A store under test, with what it takes to reopen it.
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    kind: Kind,
}

enum Kind {
    Memory,
    Sled {
        dir: TempDir,
        options: SledOptions,
    },
    Segment {
        dir: TempDir,
        options: SegmentOptions,
    },
    #[cfg(feature = "postgres")]
    Postgres {
        url: String,
        options: PostgresOptions,
        _schema: TestSchema,
    },
}

/// The backends, for tests that pick one at run time.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Sled,
    Segment,
    Postgres,
}

impl Fixture {
    /// A fresh store of `backend`, or `None` when the backend is PostgreSQL
    /// and its tests are skipped (the reason is printed).
    pub async fn new(backend: Backend) -> Option<Fixture> {
        match backend {
            Backend::Memory => Some(Fixture::memory()),
            Backend::Sled => Some(Fixture::sled()),
            Backend::Segment => Some(Fixture::segment()),
            Backend::Postgres => Fixture::postgres().await,
        }
    }

    pub fn memory() -> Fixture {
        Fixture {
            store: Arc::new(MemoryStore::new()),
            kind: Kind::Memory,
        }
    }

    pub fn sled() -> Fixture {
        Fixture::sled_with(SledOptions::default())
    }

    pub fn sled_with(options: SledOptions) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open_with(dir.path(), options.clone()).expect("open sled store");
        Fixture {
            store: Arc::new(store),
            kind: Kind::Sled { dir, options },
        }
    }

    /// A SegmentStore with small segments (64 KiB), so tests cross
    /// segment boundaries.
    pub fn segment() -> Fixture {
        Fixture::segment_with(SegmentOptions {
            segment_bytes: 64 * 1024,
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
    /// or `None` when the PostgreSQL tests are skipped.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Option<Fixture> {
        Fixture::postgres_with(test_postgres_options()?).await
    }

    /// Without the `postgres` feature: prints that the test is skipped.
    #[cfg(not(feature = "postgres"))]
    pub async fn postgres() -> Option<Fixture> {
        let skipped = postgres_url();
        debug_assert!(skipped.is_none(), "without the feature the tests are always skipped");
        None
    }

    /// A PostgresStore with `options` (from [`test_postgres_options`]: their
    /// schema is dropped with the fixture).
    #[cfg(feature = "postgres")]
    pub async fn postgres_with(options: PostgresOptions) -> Option<Fixture> {
        let url = postgres_url()?;
        let store = connect(&url, &options).await;
        Some(Fixture {
            store: Arc::new(store),
            kind: Kind::Postgres {
                _schema: TestSchema {
                    url: url.clone(),
                    schema: options.schema.clone(),
                },
                url,
                options,
            },
        })
    }

    /// Closes and reopens a durable store (a restart); the memory store has
    /// no restart and stays as it is.
    pub async fn reopen(self) -> Fixture {
        match self.kind {
            Kind::Memory => self,
            Kind::Sled { dir, options } => {
                drop(self.store);
                let store = SledStore::open_with(dir.path(), options.clone()).expect("reopen sled store");
                Fixture {
                    store: Arc::new(store),
                    kind: Kind::Sled { dir, options },
                }
            }
            Kind::Segment { dir, options } => {
                drop(self.store);
                let store = SegmentStore::open_with(dir.path(), options.clone()).expect("reopen segment store");
                Fixture {
                    store: Arc::new(store),
                    kind: Kind::Segment { dir, options },
                }
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres { url, options, _schema } => {
                drop(self.store);
                let store = connect(&url, &options).await;
                Fixture {
                    store: Arc::new(store),
                    kind: Kind::Postgres { url, options, _schema },
                }
            }
        }
    }
}

/// The URL of the test database, or `None` after printing (to the real
/// stderr, past the test harness's capture) that the calling test is skipped
/// and how to run it.
pub fn postgres_url() -> Option<String> {
    let why = if !cfg!(feature = "postgres") {
        "built without the `postgres` feature"
    } else {
        match std::env::var("STRATA_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => return Some(url),
            _ => "STRATA_POSTGRES_URL is not set",
        }
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a PostgreSQL test");
    // One write, so the line is not interleaved with the harness's output.
    let line = format!("SKIPPED {test}: {why}; run scripts/test-postgres.sh to run the PostgreSQL tests\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    None
}

/// Options for a test store: a schema no other test uses, a pool sized for
/// tests, and an application name naming the schema (so a test can find
/// and terminate exactly this store's connections).
#[cfg(feature = "postgres")]
pub fn test_postgres_options() -> Option<PostgresOptions> {
    postgres_url()?;
    let schema = format!("strata_test_{:016x}", rand::random::<u64>());
    Some(PostgresOptions {
        application_name: Some(schema.clone()),
        schema,
        pool_size: 4,
        ..PostgresOptions::default()
    })
}

#[cfg(feature = "postgres")]
pub async fn connect(url: &str, options: &PostgresOptions) -> PostgresStore {
    PostgresStore::connect_with(url, options.clone())
        .await
        .unwrap_or_else(|e| panic!("STRATA_POSTGRES_URL is set, but connecting to it failed: {e}"))
}

/// A plain client for a test's own SQL (terminating backends, holding locks).
#[cfg(feature = "postgres")]
pub async fn admin_client(url: &str) -> strata_store::tokio_postgres::Client {
    use strata_store::tokio_postgres;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connection to the test database");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A test's schema, dropped (from a thread of its own, since drop is sync)
/// when the fixture goes, so a database used for tests does not fill up.
#[cfg(feature = "postgres")]
pub struct TestSchema {
    pub url: String,
    pub schema: String,
}

#[cfg(feature = "postgres")]
impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let client = admin_client(&url).await;
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            });
            let _ = done.send(());
        });
        // Waiting keeps the number of schemas bounded; a test that left a
        // transaction open must not hang here, though.
        let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
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
