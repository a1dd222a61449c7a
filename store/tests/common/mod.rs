//! Fixtures shared by the store's integration tests: one per backend, so
//! every rule is checked against every backend.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use strata_store::{EventId, EventStore, MemoryStore, NewEvent, SledOptions, SledStore, StreamId};
use tempfile::TempDir;

/// A store under test, with what it takes to reopen it.
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    kind: Kind,
}

enum Kind {
    Memory,
    Sled { dir: TempDir, options: SledOptions },
}

impl Fixture {
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

    /// Closes and reopens a durable store (a restart); the memory store has
    /// no restart and stays as it is.
    pub fn reopen(self) -> Fixture {
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
