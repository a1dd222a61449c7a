//! The seam under the records: where they live ([`RecordStore`]), and the
//! handle the service holds ([`Records`]: one run's rules over one
//! backend).

use std::sync::Arc;

use async_trait::async_trait;
use strata_store::StoreError;
use tracing::warn;

use super::rules::{Begin, Fingerprint, Key, Rules, StoredResponse};

/// Where idempotency records live: the sled tables beside the embedded log
/// ([`SledRecords`](super::sled::SledRecords)) or a table beside a
/// PostgreSQL log (`PgRecords`). The rules decide; a backend keeps one
/// record per key and makes each step atomic and durable as its methods
/// say. Every method is given the rules of the run calling it, whose boot
/// id is the one the backend was opened with.
///
/// Errors are the store's (the tables beside the log fail the way the log
/// does): `Sled`, `Io`, `Postgres`, `Unavailable` (retry), and `Corrupt`
/// for a record that does not decode.
#[async_trait]
pub(crate) trait RecordStore: Send + Sync + 'static {
    /// Claims `key` for a request with `fingerprint`, or says why not: reads
    /// the record under `key`, asks [`Rules::judge`] (for another run's
    /// marker, after finding out whether that run is alive; a backend that
    /// one process owns knows it is not), and when the rules say so writes
    /// [`Rules::marker`]. Atomic against every other claim of the key, in
    /// this process and in any other sharing the backend: of concurrent
    /// claims of a free key exactly one proceeds.
    ///
    /// The marker is durable no later than the log write the request makes
    /// next (a retry after a crash must find it): on PostgreSQL when this
    /// returns; in sled, whose tables share the embedded log's database
    /// today, with that write's own sync.
    async fn claim(&self, rules: &Rules, key: &Key, fingerprint: Fingerprint) -> Result<Begin, StoreError>;

    /// Replaces this run's in-flight marker under `key` with `response`,
    /// durably when it returns; true when it did, or when the key already
    /// holds this very response (a completion retried after a failure whose
    /// write may have landed is made durable again). When the key holds
    /// anything else (another run took it over, taking this one for dead,
    /// or it was purged), nothing is written and it is false: whoever holds
    /// the key now is not overwritten by a late answer.
    async fn complete(&self, rules: &Rules, key: &Key, response: &StoredResponse) -> Result<bool, StoreError>;

    /// Removes this run's in-flight marker under `key`, if it is there.
    async fn release(&self, rules: &Rules, key: &Key) -> Result<(), StoreError>;

    /// Removes every record the rules call [purgeable](Rules::purgeable)
    /// (and, in sled, records that do not decode); returns how many.
    async fn purge(&self, rules: &Rules) -> Result<usize, StoreError>;
}

/// The durable record of keys, as one run of the process uses it: its
/// rules over a backend. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Records {
    rules: Rules,
    store: Arc<dyn RecordStore>,
}

impl Records {
    /// The records of the run with `rules` in `store`, which was opened
    /// for that run's boot id.
    pub(crate) fn new(rules: Rules, store: Arc<dyn RecordStore>) -> Records {
        Records { rules, store }
    }

    /// This run's rules.
    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Claims `key` for a request with `fingerprint`, or says why not.
    pub(crate) async fn begin(&self, key: &Key, fingerprint: Fingerprint) -> Result<Begin, StoreError> {
        self.store.claim(&self.rules, key, fingerprint).await
    }

    /// Replaces this run's marker with the response; durable when this
    /// returns; true when recorded. A key that this run no longer holds is
    /// logged and left as it is, false (see [`RecordStore::complete`]).
    pub(crate) async fn complete(&self, key: &Key, response: &StoredResponse) -> Result<bool, StoreError> {
        let recorded = self.store.complete(&self.rules, key, response).await?;
        if !recorded {
            warn!(
                key = key.as_str(),
                "idempotency key no longer held by this process (taken over while its liveness lock was lost, or purged); its response is not recorded"
            );
        }
        Ok(recorded)
    }

    /// Removes this run's marker (the request failed without an answer
    /// worth keeping). A failure is logged: the marker then blocks the key
    /// until this process ends (or the retention passes).
    pub(crate) async fn abandon(&self, key: &Key) {
        if let Err(e) = self.store.release(&self.rules, key).await {
            warn!(error = %e, key = key.as_str(), "could not release an idempotency key");
        }
    }

    /// Removes expired records and the expired markers of other runs;
    /// returns how many.
    pub(crate) async fn purge(&self) -> Result<usize, StoreError> {
        self.store.purge(&self.rules).await
    }
}
