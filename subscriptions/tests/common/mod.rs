//! Fixtures of the subscription tests: the groups of a store, on each
//! backend (the embedded tables of a sled store, PostgreSQL beside its
//! log), with what it takes to restart them.
//!
//! PostgreSQL fixtures are ignored unless `STRATA_POSTGRES_URL` was set at
//! build time (see docs/testing.md); `scripts/test-postgres.sh` runs them.

#![allow(dead_code)]

pub mod ledger;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use strata_store::{Durability, EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamId};
use strata_subscriptions::{ConsumerName, GroupName, Subscriptions};
use tempfile::TempDir;

/// A store and its groups.
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    pub subs: Subscriptions,
    kind: Kind,
}

enum Kind {
    Sled(TempDir),
    #[cfg(feature = "postgres")]
    Postgres(Arc<strata_testkit::TestDatabase>),
}

impl Fixture {
    /// A sled store (buffered: the tests are about the groups' rules, the
    /// crash tests about durability) and its tables.
    pub fn sled() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture::open_sled(dir)
    }

    fn open_sled(dir: TempDir) -> Fixture {
        let options = SegmentOptions {
            durability: Durability::Buffered,
            ..SegmentOptions::default()
        };
        let store = SegmentStore::open_with(dir.path(), options).expect("open the store");
        let subs = Subscriptions::local(Arc::new(store.clone()), store.tables().expect("the tables"))
            .expect("open the groups");
        Fixture {
            store: Arc::new(store),
            subs,
            kind: Kind::Sled(dir),
        }
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Fixture {
        let db = Arc::new(strata_testkit::TestDatabase::new());
        Fixture::open_postgres(db, "main").await
    }

    #[cfg(not(feature = "postgres"))]
    pub async fn postgres() -> Fixture {
        panic!(
            "built without the `postgres` feature: scripts/test-postgres.sh cargo test -p strata-subscriptions --features postgres"
        )
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres(db: Arc<strata_testkit::TestDatabase>, who: &str) -> Fixture {
        let store = db.store(who).await;
        let subs = Subscriptions::postgres(store.clone()).await.expect("open the groups");
        Fixture {
            store: Arc::new(store),
            subs,
            kind: Kind::Postgres(db),
        }
    }

    /// Another process on the same PostgreSQL schema (`None` for sled: one
    /// process owns its directory).
    pub async fn another_process(&self, #[allow(unused_variables)] who: &str) -> Option<Fixture> {
        match &self.kind {
            Kind::Sled(_) => None,
            #[cfg(feature = "postgres")]
            Kind::Postgres(db) => Some(Fixture::open_postgres(db.clone(), who).await),
        }
    }

    /// Closes everything and opens it again (a restart).
    pub async fn restart(self) -> Fixture {
        let Fixture { store, subs, kind } = self;
        // The groups' tasks hold the store: stop them before the directory is reopened.
        subs.stop().await;
        drop(subs);
        drop(store);
        match kind {
            Kind::Sled(dir) => Fixture::open_sled(dir),
            #[cfg(feature = "postgres")]
            Kind::Postgres(db) => Fixture::open_postgres(db, "main").await,
        }
    }

    /// Appends one event of `event_type` to `stream`; its position.
    pub async fn append(&self, stream: &str, event_type: &str) -> u64 {
        self.store
            .append(
                &sid(stream),
                ExpectedVersion::Any,
                vec![NewEvent::new(event_type, "{}")],
            )
            .await
            .expect("append")
            .last_position
    }
}

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("a valid stream id")
}

pub fn group(s: &str) -> GroupName {
    GroupName::new(s).expect("a valid group name")
}

pub fn consumer(s: &str) -> ConsumerName {
    ConsumerName::new(s).expect("a valid consumer name")
}

/// Long enough to mean "it is not coming"; a test that waits this long
/// for something that should come fails instead.
pub const LONG: Duration = Duration::from_secs(30);
