//! Erasing a document (an answer to an erasure request): its claims on
//! unique values given up, the unique values' streams cleared of the
//! values it held, and its own stream hard-deleted, so a scavenge erases
//! every byte of its bodies from disk.
//!
//! The steps, each an expected-version write, in an order that a crash or
//! a retry can resume from:
//!
//! 1. A live document is deleted as `DELETE` deletes it (one atomic
//!    append with the release of every unique value it holds), judged
//!    against the request's `If-Match`. A document already deleted skips it.
//! 2. Every unique value any version of the document ever held (its whole
//!    history is read) has its stream cleared: soft-deleted when the value
//!    is free (the next claim starts it afresh), truncated before its last
//!    event when another document holds it now (its claim stays, the
//!    erased document's older claims go). When part of the history no
//!    longer reads (removed by a retention or a truncation of the
//!    document's stream), the values its removed versions held are found
//!    the other way round: every unique value stream of the collection is
//!    read for the document's claims and releases.
//! 3. The document's stream is hard-deleted at the version step 1 left:
//!    if anyone wrote it meanwhile (a re-creation), the erasure starts
//!    again from step 1.
//!
//! A crash before step 3 leaves a deleted document whose history is still
//! readable: erasing it again finishes. After step 3 it is gone: reads
//! answer not found, writes `StreamDeleted`, forever.

use std::collections::BTreeSet;

use strata_store::{DeleteMode, Direction, ExpectedVersion, Metadata, StoreError, StreamId};

use crate::aggregate::Aggregate;
use crate::codec::decode;
use crate::domain::document::collection::CollectionSpec;
use crate::domain::document::doc::DocumentStatus;
use crate::domain::document::error::{ConflictReason, DocumentError, Expected};
use crate::domain::document::fields::get;
use crate::domain::document::request::{Change, IfMatch, Preconditions, WriteRequest};
use crate::domain::document::service::{DocumentService, decode_doc};
use crate::domain::document::unique::{UniqueEvent, UniqueValue, unique_id, unique_key};
use crate::repository::Repository;

/// How many events of a document's history are read at once while
/// collecting the unique values it held.
const HISTORY_PAGE: usize = 512;

/// How many unique value streams are listed at once while looking for a
/// document's claims (when its history is incomplete).
const UNIQUE_PAGE: usize = 256;

/// The length of the hash that ends a unique value's stream id
/// (`unique-{collection}-{hash}`): 128 bits in hex.
const UNIQUE_HASH_CHARS: usize = 32;

/// An erasure request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EraseRequest {
    /// The collection.
    pub collection: String,
    /// The document's id.
    pub id: String,
    /// `If-Match`: the version(s) the erasure was decided on, or `*`.
    pub if_match: Option<IfMatch>,
    /// Who erases it (recorded on the delete of step 1, erased with it).
    pub actor: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Refuse an erasure that names no version (the server's setting; a
    /// collection's own setting applies too).
    pub require_precondition: bool,
}

/// What an erasure did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DocumentErasure {
    /// The document's stream, now hard-deleted.
    pub stream: StreamId,
    /// The document's last version (the delete's), erased with the rest.
    pub version: u64,
    /// The position of the hard delete's record: a read model that reached
    /// it has dropped the document.
    pub position: u64,
    /// The document stream's metadata version after the hard delete.
    pub metadata_version: u64,
    /// How many unique values' streams were cleared of the document's values.
    pub unique_values_cleared: usize,
}

impl DocumentService {
    /// Erases a document: see the module docs.
    ///
    /// Errors: `NotFound` (no such document, or never written),
    /// `Store(StreamDeleted)` (already erased), `Conflict` (the version
    /// named is not the current one), `PreconditionRequired`, `Contention`
    /// (it was re-created under the erasure every attempt), and the
    /// store's.
    pub async fn erase(&self, request: EraseRequest, metadata: &Metadata) -> Result<DocumentErasure, DocumentError> {
        let stream = Self::document_stream(&request.collection, &request.id)?;
        let spec = self.declared(&request.collection).await?.spec;
        let write = WriteRequest {
            collection: request.collection.clone(),
            id: request.id.clone(),
            change: Change::Delete,
            preconditions: Preconditions {
                if_match: request.if_match.clone(),
                ..Preconditions::default()
            },
            actor: request.actor.clone(),
            at_ms: request.at_ms,
            require_precondition: request.require_precondition,
        };
        if (spec.require_precondition || request.require_precondition) && !write.preconditions.names_a_version() {
            return Err(DocumentError::PreconditionRequired {
                collection: request.collection.clone(),
            });
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if self.store.stream_info(&stream).await?.state.tombstoned {
                return Err(DocumentError::Store(StoreError::StreamDeleted { stream }));
            }
            let current = self.load(&stream).await?;
            let version = match current.state.status() {
                DocumentStatus::Absent => {
                    return Err(DocumentError::NotFound {
                        collection: request.collection.clone(),
                        id: request.id.clone(),
                    });
                }
                DocumentStatus::Live => self.write(write.clone(), metadata).await?.version,
                DocumentStatus::Deleted => {
                    if let Some(IfMatch::Versions(list)) = &request.if_match
                        && !list.contains(&current.version)
                    {
                        let base = list.iter().copied().filter(|n| *n <= current.version).max();
                        let expected = Expected::Versions(list.clone());
                        return Err(self
                            .conflict(ConflictReason::Stale, expected, base, &write, &stream, &current)
                            .await);
                    }
                    current.version
                }
            };
            let mut cleared = 0;
            let (mut values, complete) = self.values_held(&request.collection, &spec, &stream, version).await?;
            if !complete {
                values.extend(self.values_named_by(&request.collection, &request.id).await?);
            }
            for value in values {
                if self.clear_unique(&value, &request.id).await? {
                    cleared += 1;
                }
            }
            match self
                .store
                .delete_stream(&stream, ExpectedVersion::Exact(version), DeleteMode::Hard)
                .await
            {
                Ok(done) => {
                    return Ok(DocumentErasure {
                        stream,
                        version,
                        position: done.position,
                        metadata_version: done.metadata_version,
                        unique_values_cleared: cleared,
                    });
                }
                // Written meanwhile (re-created): erase what it is now. A
                // request naming a version is then refused at step 1.
                Err(StoreError::WrongExpectedVersion { .. }) if attempt < self.retry.attempts() => {
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    return Err(DocumentError::Contention {
                        collection: request.collection.clone(),
                        id: request.id.clone(),
                        attempts: attempt,
                    });
                }
                Err(e) => return Err(DocumentError::Store(e)),
            }
        }
    }

    /// The streams of every unique value versions 1 to `last` of the
    /// document held, as far as they read, and whether every version from
    /// 1 read (false when a retention or a truncation removed the first
    /// ones: the values only they held are not in the set).
    async fn values_held(
        &self,
        collection: &str,
        spec: &CollectionSpec,
        stream: &StreamId,
        last: u64,
    ) -> Result<(BTreeSet<StreamId>, bool), DocumentError> {
        let mut held = BTreeSet::new();
        if spec.unique.is_empty() {
            return Ok((held, true));
        }
        let mut complete = last == 0;
        let mut from = 1;
        while from <= last {
            let page = self
                .store
                .read_stream(stream, from, Direction::Forward, HISTORY_PAGE)
                .await?;
            let Some(end) = page.last().map(|r| r.version) else {
                break;
            };
            if from == 1 {
                complete = page.first().is_some_and(|r| r.version == 1);
            }
            for r in page.iter().filter(|r| r.version <= last) {
                let event = decode_doc(r)?;
                let Some(body) = event.body() else { continue };
                for field in &spec.unique {
                    if let Ok(Some(key)) = unique_key(field, get(body, &field.field)) {
                        held.insert(Repository::<UniqueValue>::stream_id(&unique_id(
                            collection, field, &key,
                        ))?);
                    }
                }
            }
            from = end + 1;
        }
        Ok((held, complete))
    }

    /// The streams of every unique value of `collection` whose stream
    /// still names the document `id` in a claim or a release: every
    /// unique value stream of the collection is read, so this is for a
    /// document whose own history no longer tells (see [`Self::values_held`]).
    async fn values_named_by(&self, collection: &str, id: &str) -> Result<BTreeSet<StreamId>, DocumentError> {
        let prefix = format!("{}-{collection}-", UniqueValue::KIND);
        let mut named = BTreeSet::new();
        let mut after: Option<StreamId> = None;
        loop {
            let page = self.store.list_streams(&prefix, after.as_ref(), UNIQUE_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.stream_id.clone());
            for summary in &page {
                // Another collection's, whose name goes on past this one's.
                let hash = &summary.stream_id.as_str()[prefix.len()..];
                if hash.len() != UNIQUE_HASH_CHARS || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                if self.names(&summary.stream_id, id).await? {
                    named.insert(summary.stream_id.clone());
                }
            }
            if page.len() < UNIQUE_PAGE {
                break;
            }
        }
        Ok(named)
    }

    /// Whether an event of the unique value stream `stream` names the
    /// document `id` (its claim or its release).
    async fn names(&self, stream: &StreamId, id: &str) -> Result<bool, DocumentError> {
        let mut from = 1;
        loop {
            let page = self
                .store
                .read_stream(stream, from, Direction::Forward, HISTORY_PAGE)
                .await?;
            let Some(end) = page.last().map(|r| r.version) else {
                return Ok(false);
            };
            for r in &page {
                let event: UniqueEvent = decode(r).map_err(|source| DocumentError::Decode {
                    stream: stream.clone(),
                    version: r.version,
                    source,
                })?;
                let holder = match &event {
                    UniqueEvent::ValueClaimed { holder, .. } | UniqueEvent::ValueReleased { holder } => holder,
                };
                if holder == id {
                    return Ok(true);
                }
            }
            from = end + 1;
        }
    }

    /// Clears a unique value's stream of what `id` left there; true when
    /// something was removed. A value nobody holds is soft-deleted (a
    /// claim starts it again from nothing); one another document holds is
    /// truncated before its last event, that document's claim. One `id`
    /// holds again (it was re-created under the erasure) is left: the
    /// erasure starts again.
    async fn clear_unique(&self, stream: &StreamId, id: &str) -> Result<bool, DocumentError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (value, version) = self.unique_at(stream).await?;
            let expected = ExpectedVersion::Exact(version);
            let done = match value.holder() {
                _ if version == 0 => return Ok(false),
                Some(holder) if holder == id => return Ok(false),
                None => self.store.delete_stream(stream, expected, DeleteMode::Soft).await,
                Some(_) => {
                    if self.store.stream_info(stream).await?.state.truncate_before >= version {
                        return Ok(false);
                    }
                    self.store.truncate_stream(stream, expected, version).await
                }
            };
            match done {
                Ok(_) => return Ok(true),
                // Claimed or released meanwhile: judge it again.
                Err(StoreError::WrongExpectedVersion { .. }) if attempt < self.retry.attempts() => {
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
                Err(e) => return Err(DocumentError::Store(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use strata_store::{EventStore, MemoryStore, StreamMetadata};

    use super::*;
    use crate::domain::document::collection::UniqueField;
    use crate::domain::document::request::Change;

    async fn put(docs: &DocumentService, collection: &str, id: &str, email: &str) {
        let request = WriteRequest {
            collection: collection.into(),
            id: id.into(),
            change: Change::Put(json!({"email": email}).as_object().unwrap().clone()),
            preconditions: Preconditions::default(),
            actor: None,
            at_ms: 1_000,
            require_precondition: false,
        };
        docs.write(request, &Metadata::default()).await.unwrap();
    }

    /// Every payload the log still serves, as text.
    async fn served(store: &MemoryStore) -> String {
        let events = store.read_all(0, usize::MAX).await.unwrap();
        events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A value the document held only in versions a retention removed
    /// from its stream is cleared too: its stream no longer serves it.
    #[tokio::test]
    async fn values_held_only_in_removed_history_are_cleared() {
        let store = Arc::new(MemoryStore::new());
        let docs = DocumentService::new(store.clone());
        let spec = CollectionSpec {
            unique: vec![UniqueField::parse("email", true).unwrap()],
            require_precondition: false,
        };
        for collection in ["users", "users-x"] {
            docs.declare(collection, spec.clone(), None, None, 0, &Metadata::default())
                .await
                .unwrap();
        }
        // u1 held `old@` (version 1), then `new@` (version 2); `other`
        // shares no value with it, nor does the u1 of a collection whose
        // name goes on past `users` (its values' streams start alike).
        put(&docs, "users", "u1", "old@example.com").await;
        put(&docs, "users", "u1", "new@example.com").await;
        put(&docs, "users", "other", "kept@example.com").await;
        put(&docs, "users-x", "u1", "twin@example.com").await;
        let stream = DocumentService::document_stream("users", "u1").unwrap();
        let retention = StreamMetadata {
            max_count: Some(1),
            max_age: None,
        };
        store
            .set_stream_metadata(&stream, ExpectedVersion::NoStream, retention)
            .await
            .unwrap();
        assert!(
            served(&store).await.contains("old@example.com"),
            "its value's stream serves it"
        );

        let request = EraseRequest {
            collection: "users".into(),
            id: "u1".into(),
            if_match: None,
            actor: None,
            at_ms: 2_000,
            require_precondition: false,
        };
        let done = docs.erase(request, &Metadata::default()).await.unwrap();
        assert_eq!(done.unique_values_cleared, 2, "{done:?}");
        let left = served(&store).await;
        assert!(!left.contains("old@example.com"), "{left}");
        assert!(!left.contains("new@example.com"), "{left}");
        assert!(
            left.contains("kept@example.com"),
            "another document's value stays: {left}"
        );
        assert!(
            left.contains("twin@example.com"),
            "another collection's value stays: {left}"
        );
    }
}
