//! Groups on the embedded tables ([`LocalTables`]): one sled tree,
//! `subscriptions`, one process.
//!
//! | key                              | value (sealed bincode)  |
//! |----------------------------------|-------------------------|
//! | `g` name                         | the group's [`Header`]  |
//! | `r` name `\0` position (u64 BE)  | a [`Row`]               |
//! | `p` name `\0` position (u64 BE)  | a [`ParkedEvent`]       |
//!
//! Names hold no `\0`, so one group's keys never run into another's. A
//! commit is one atomic sled batch; [`LocalTables::sync`] after it makes
//! it as durable as the log's appends.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use strata_store::LocalTables;
use tokio::sync::Mutex;

use super::codec::{seal, unseal};
use super::{Commit, Created, GroupBackend, Stored};
use crate::error::SubscriptionError;
use crate::settings::GroupName;
use crate::state::{Changes, Header, ParkedEvent, Row};

/// The tree that holds every group.
const TREE: &str = "subscriptions";

pub(crate) struct LocalGroups {
    tables: LocalTables,
    tree: sled::Tree,
    /// Commits, creates and deletes one at a time (the version check and
    /// the batch together).
    write: Mutex<()>,
}

fn header_key(name: &GroupName) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.as_str().len() + 1);
    k.push(b'g');
    k.extend_from_slice(name.as_str().as_bytes());
    k
}

fn prefix(kind: u8, name: &GroupName) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.as_str().len() + 10);
    k.push(kind);
    k.extend_from_slice(name.as_str().as_bytes());
    k.push(0);
    k
}

fn entry_key(kind: u8, name: &GroupName, position: u64) -> Vec<u8> {
    let mut k = prefix(kind, name);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn key_position(key: &[u8]) -> Result<u64, SubscriptionError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key.get(at..))
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| SubscriptionError::Corrupt {
            location: format!("subscription key {}", String::from_utf8_lossy(key)),
            detail: "the key is too short".into(),
        })
}

fn store_error(e: sled::Error) -> SubscriptionError {
    SubscriptionError::Store(e.into())
}

impl LocalGroups {
    pub(crate) fn open(tables: LocalTables) -> Result<LocalGroups, SubscriptionError> {
        let tree = tables.open_tree(TREE)?;
        Ok(LocalGroups {
            tables,
            tree,
            write: Mutex::new(()),
        })
    }

    fn header(&self, name: &GroupName) -> Result<Option<Header>, SubscriptionError> {
        let key = header_key(name);
        match self.tree.get(&key).map_err(store_error)? {
            Some(v) => Ok(Some(unseal(&key, &v, || format!("group {name}"))?)),
            None => Ok(None),
        }
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        kind: u8,
        name: &GroupName,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, T), SubscriptionError>> + '_ {
        let start = entry_key(kind, name, after.saturating_add(1));
        let end = entry_key(kind, name, u64::MAX);
        let name = name.clone();
        let range = if after == u64::MAX {
            None
        } else {
            Some(self.tree.range(start..=end))
        };
        range.into_iter().flatten().map(move |kv| {
            let (k, v) = kv.map_err(store_error)?;
            let position = key_position(&k)?;
            let value = unseal(&k, &v, || format!("group {name} at position {position}"))?;
            Ok((position, value))
        })
    }
}

#[async_trait]
impl GroupBackend for LocalGroups {
    async fn create(&self, name: &GroupName, header: &Header) -> Result<Created, SubscriptionError> {
        let _write = self.write.lock().await;
        if let Some(existing) = self.header(name)? {
            return if existing.settings == header.settings {
                Ok(Created::Existed)
            } else {
                Err(SubscriptionError::GroupExists { group: name.clone() })
            };
        }
        let key = header_key(name);
        self.tree.insert(&key, seal(&key, header)?).map_err(store_error)?;
        drop(_write);
        self.sync().await?;
        Ok(Created::New)
    }

    async fn delete(&self, name: &GroupName) -> Result<bool, SubscriptionError> {
        let _write = self.write.lock().await;
        if self.header(name)?.is_none() {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.remove(header_key(name));
        for kind in [b'r', b'p'] {
            for kv in self.tree.scan_prefix(prefix(kind, name)) {
                batch.remove(kv.map_err(store_error)?.0);
            }
        }
        self.tree.apply_batch(batch).map_err(store_error)?;
        drop(_write);
        self.sync().await?;
        Ok(true)
    }

    async fn names(&self) -> Result<Vec<GroupName>, SubscriptionError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(b"g") {
            let (k, _) = kv.map_err(store_error)?;
            let name = String::from_utf8(k[1..].to_vec()).map_err(|_| SubscriptionError::Corrupt {
                location: format!("group key {:?}", &k[..]),
                detail: "the name is not UTF-8".into(),
            })?;
            out.push(GroupName::new(name).map_err(|e| SubscriptionError::Corrupt {
                location: "a group key".into(),
                detail: e.to_string(),
            })?);
        }
        Ok(out)
    }

    async fn load(&self, name: &GroupName) -> Result<Option<Stored>, SubscriptionError> {
        let Some(header) = self.header(name)? else {
            return Ok(None);
        };
        let mut rows = BTreeMap::new();
        for entry in self.scan::<Row>(b'r', name, 0) {
            let (position, row) = entry?;
            rows.insert(position, row);
        }
        Ok(Some(Stored { header, rows }))
    }

    async fn version(&self, name: &GroupName) -> Result<Option<u64>, SubscriptionError> {
        Ok(self.header(name)?.map(|h| h.version))
    }

    async fn commit(&self, name: &GroupName, base: u64, changes: &Changes) -> Result<Commit, SubscriptionError> {
        let _write = self.write.lock().await;
        match self.header(name)? {
            None => return Ok(Commit::Gone),
            Some(h) if h.version != base => return Ok(Commit::Conflict),
            Some(_) => {}
        }
        let mut batch = sled::Batch::default();
        if let Some(header) = &changes.header {
            let key = header_key(name);
            batch.insert(key.clone(), seal(&key, header)?);
        }
        for (position, row) in &changes.rows {
            let key = entry_key(b'r', name, *position);
            match row {
                Some(row) => batch.insert(key.clone(), seal(&key, row)?),
                None => batch.remove(key),
            }
        }
        for parked in &changes.park {
            let key = entry_key(b'p', name, parked.position);
            batch.insert(key.clone(), seal(&key, parked)?);
        }
        for position in &changes.flag_replay {
            let key = entry_key(b'p', name, *position);
            if let Some(v) = self.tree.get(&key).map_err(store_error)? {
                let mut parked: ParkedEvent = unseal(&key, &v, || format!("group {name} at position {position}"))?;
                parked.replay_requested = true;
                batch.insert(key.clone(), seal(&key, &parked)?);
            }
        }
        for position in &changes.unpark {
            batch.remove(entry_key(b'p', name, *position));
        }
        self.tree.apply_batch(batch).map_err(store_error)?;
        Ok(Commit::Done)
    }

    async fn sync(&self) -> Result<(), SubscriptionError> {
        Ok(self.tables.sync().await?)
    }

    async fn parked(
        &self,
        name: &GroupName,
        after: u64,
        limit: usize,
        replay_only: bool,
    ) -> Result<Vec<ParkedEvent>, SubscriptionError> {
        let mut out = Vec::new();
        for entry in self.scan::<ParkedEvent>(b'p', name, after) {
            if out.len() == limit {
                break;
            }
            let (position, parked) = entry?;
            if parked.position != position {
                return Err(SubscriptionError::Corrupt {
                    location: format!("group {name} parked at position {position}"),
                    detail: format!("the record names position {}", parked.position),
                });
            }
            if !replay_only || parked.replay_requested {
                out.push(parked);
            }
        }
        Ok(out)
    }

    fn poll_interval(&self) -> Option<Duration> {
        None
    }
}
