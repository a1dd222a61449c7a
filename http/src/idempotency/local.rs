//! Idempotency records in the tables beside the embedded log
//! ([`LocalTables`]): the sled tree `http.idempotency`, keyed by the key.
//!
//! One process owns the data directory, so another run's in-flight marker
//! is always a dead run's. A claim is a compare-and-swap on the key (two
//! concurrent requests with one key cannot both run); a completed record
//! is made as durable as the log's appends ([`LocalTables::sync`]) before
//! the response leaves.

use async_trait::async_trait;
use strata_store::{LocalTables, StoreError};

use super::backend::RecordStore;
use super::rules::{Begin, Fingerprint, Judged, Key, Record, Rules, StoredResponse};

/// The sled tree the records live in.
pub(crate) const TREE: &str = "http.idempotency";

/// The records in sled.
pub(crate) struct SledRecords {
    tables: LocalTables,
    tree: sled::Tree,
}

impl SledRecords {
    /// Opens (creating when absent) the records' tree in `tables`.
    pub(crate) fn open(tables: &LocalTables) -> Result<SledRecords, StoreError> {
        Ok(SledRecords {
            tree: tables.open_tree(TREE)?,
            tables: tables.clone(),
        })
    }

    /// Replaces this run's marker under `key` with `new`; true when it did
    /// or when the key already holds `new`, false when it holds anything
    /// else.
    fn replace_marker(&self, rules: &Rules, key: &Key, new: Option<Vec<u8>>) -> Result<bool, StoreError> {
        loop {
            let current = self.tree.get(key.as_str())?;
            if current.as_deref() == new.as_deref() {
                return Ok(true);
            }
            let Some(bytes) = current else {
                return Ok(false);
            };
            if !Record::decode(key.as_str(), &bytes)?.is_marker_of(rules.boot()) {
                return Ok(false);
            }
            if self
                .tree
                .compare_and_swap(key.as_str(), Some(bytes), new.clone())?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }
}

#[async_trait]
impl RecordStore for SledRecords {
    async fn claim(&self, rules: &Rules, key: &Key, fingerprint: Fingerprint) -> Result<Begin, StoreError> {
        let marker = rules.marker(fingerprint).encode()?;
        loop {
            let current = self.tree.get(key.as_str())?;
            let record = current
                .as_deref()
                .map(|b| Record::decode(key.as_str(), b))
                .transpose()?;
            // Another run's marker is a dead one's: one process owns the directory.
            match rules.judge(record.as_ref(), fingerprint, false) {
                Judged::Answer(answer) => return Ok(answer),
                Judged::Claim { after_crash } => {
                    if self
                        .tree
                        .compare_and_swap(key.as_str(), current, Some(marker.clone()))?
                        .is_ok()
                    {
                        return Ok(Begin::Proceed { after_crash });
                    }
                }
            }
        }
    }

    async fn complete(&self, rules: &Rules, key: &Key, response: &StoredResponse) -> Result<bool, StoreError> {
        let done = Record::Done(response.clone()).encode()?;
        if !self.replace_marker(rules, key, Some(done))? {
            return Ok(false);
        }
        // As durable as the log's appends before the response leaves.
        self.tables.sync().await?;
        Ok(true)
    }

    async fn release(&self, rules: &Rules, key: &Key) -> Result<(), StoreError> {
        self.replace_marker(rules, key, None).map(|_| ())
    }

    async fn purge(&self, rules: &Rules) -> Result<usize, StoreError> {
        // A scan of the whole tree: off the runtime's threads.
        let (tree, rules) = (self.tree.clone(), rules.clone());
        tokio::task::spawn_blocking(move || purge(&tree, &rules))
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("the idempotency purge did not finish: {e}"),
            })?
    }
}

/// The purge: what the rules call purgeable, and records that do not
/// decode (nothing could be replayed from them).
fn purge(tree: &sled::Tree, rules: &Rules) -> Result<usize, StoreError> {
    let mut removed = 0;
    for kv in tree.iter() {
        let (k, v) = kv?;
        let stale = match Record::decode(&String::from_utf8_lossy(&k), &v) {
            Ok(record) => rules.purgeable(&record),
            Err(e) => {
                tracing::warn!(error = %e, "removing an idempotency record that does not decode");
                true
            }
        };
        if stale && tree.compare_and_swap(&k, Some(v), None as Option<&[u8]>)?.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
