//! The document service: collections, documents and their unique values,
//! each write one atomic multi-stream append.
//!
//! A write loads the document (its last event), checks the request's
//! preconditions against it, decides the document's event, loads the
//! unique values the write takes or gives up, and appends all of it in one
//! [`EventStore::append_multi`]: the document's stream and every unique
//! value's stream each at the version the decision read. If any of them
//! moved, nothing is written and the whole decision is made again on the
//! new state (a stale precondition then fails, a value another writer just
//! took is a unique violation), at most [`RetryPolicy::attempts`] times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use strata_store::{
    Direction, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError, StreamAppend, StreamId,
};

use crate::aggregate::Aggregate;
use crate::codec::{DomainEvent, Format, decode, encode_with};
use crate::domain::document::collection::{Collection, CollectionRefusal, validate_collection_name};
use crate::domain::document::doc::{
    Document, DocumentCommand, DocumentEvent, DocumentRefusal, DocumentStatus, MAX_DOCUMENT_ID,
};
use crate::domain::document::error::{ChangeRecord, ConflictReason, DocumentConflict, DocumentError, Expected};
use crate::domain::document::request::{
    ACTOR_KEY, Change, CollectionInfo, DocumentView, DocumentWrite, HistoryPage, IfMatch, VERSION_MEMBER, WriteRequest,
};
use crate::error::RepositoryError;
use crate::repository::Repository;
use crate::retry::RetryPolicy;

/// A loaded document: its state and version.
pub(super) struct LoadedDoc {
    pub(super) state: Document,
    pub(super) version: u64,
}

/// The document service: collections, documents, unique values.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use serde_json::json;
/// use strata_aggregates::domain::document::{
///     Change, CollectionSpec, DocumentError, DocumentService, Preconditions, UniqueField, WriteRequest,
/// };
/// use strata_store::{MemoryStore, Metadata};
///
/// let docs = DocumentService::new(Arc::new(MemoryStore::new()));
/// let spec = CollectionSpec { unique: vec![UniqueField::parse("email", true).unwrap()], require_precondition: false };
/// docs.declare("users", spec, None, None, 0, &Metadata::default()).await.unwrap();
///
/// let put = |id: &str, email: &str| WriteRequest {
///     collection: "users".into(),
///     id: id.into(),
///     change: Change::Put(json!({"email": email}).as_object().unwrap().clone()),
///     preconditions: Preconditions::default(),
///     actor: Some("ada".into()),
///     at_ms: 1,
///     require_precondition: false,
/// };
/// assert_eq!(docs.write(put("1", "ada@example.com"), &Metadata::default()).await.unwrap().version, 1);
/// let taken = docs.write(put("2", "ADA@example.com"), &Metadata::default()).await.unwrap_err();
/// assert!(matches!(taken, DocumentError::UniqueViolation { holder, .. } if holder == "1"));
/// # });
/// ```
pub struct DocumentService {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) collections: Repository<Collection>,
    pub(super) retry: RetryPolicy,
    pub(super) conflict_event_limit: usize,
    pub(super) cache: Mutex<HashMap<String, CollectionInfo>>,
}

impl DocumentService {
    /// A service over `store`: JSON events, the default retry policy, at
    /// most 100 changes in a conflict.
    pub fn new(store: Arc<dyn EventStore>) -> DocumentService {
        DocumentService {
            collections: Repository::new(store.clone()).with_format(Format::Json),
            store,
            retry: RetryPolicy::default(),
            conflict_event_limit: 100,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same service retrying unconditional (and racing) writes under `policy`.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> DocumentService {
        self.retry = policy;
        self
    }

    /// The same service listing at most `limit` changes in a conflict, and
    /// merging only across at most that many changes.
    pub fn with_conflict_event_limit(mut self, limit: usize) -> DocumentService {
        self.conflict_event_limit = limit.max(1);
        self
    }

    /// The stream of document `id` in `collection`: `doc-{collection}/{id}`.
    pub fn document_stream(collection: &str, id: &str) -> Result<StreamId, DocumentError> {
        check_collection(collection)?;
        check_id(id)?;
        Ok(Repository::<Document>::stream_id(&format!("{collection}/{id}"))?)
    }

    /// The stream of collection `name`: `collection-{name}`.
    pub fn collection_stream(name: &str) -> Result<StreamId, DocumentError> {
        check_collection(name)?;
        Ok(Repository::<Collection>::stream_id(name)?)
    }

    /// Document `id` of `collection`: the current version, or version
    /// `version` as it was then.
    pub async fn get(&self, collection: &str, id: &str, version: Option<u64>) -> Result<DocumentView, DocumentError> {
        let stream = Self::document_stream(collection, id)?;
        self.declared(collection).await?;
        let (state, at) = match version {
            None => {
                let loaded = self.load(&stream).await?;
                (loaded.state, loaded.version)
            }
            Some(n) => match self.read_at(&stream, n).await? {
                Some(event) => {
                    let mut state = Document::default();
                    state.apply(&event);
                    (state, n)
                }
                None => {
                    let current = self.store.stream_version(&stream).await?;
                    if current == 0 {
                        (Document::default(), 0)
                    } else {
                        return Err(DocumentError::VersionNotFound {
                            collection: collection.into(),
                            id: id.into(),
                            version: n,
                            current,
                        });
                    }
                }
            },
        };
        match state.status() {
            DocumentStatus::Absent => Err(DocumentError::NotFound {
                collection: collection.into(),
                id: id.into(),
            }),
            DocumentStatus::Deleted => Err(deleted(collection, id, &state, at)),
            DocumentStatus::Live => Ok(DocumentView {
                version: at,
                body: state.body().clone(),
                modified_ms: state.modified_ms(),
                modified_by: state.modified_by().map(str::to_string),
            }),
        }
    }

    /// Up to `limit` changes of document `id` from version `from` (1 for
    /// the first), oldest first.
    pub async fn history(
        &self,
        collection: &str,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<HistoryPage, DocumentError> {
        let stream = Self::document_stream(collection, id)?;
        self.declared(collection).await?;
        let from = from.max(1);
        let recorded = self
            .store
            .read_stream(&stream, from, Direction::Forward, limit.saturating_add(1))
            .await?;
        if recorded.is_empty() && self.store.stream_version(&stream).await? == 0 {
            return Err(DocumentError::NotFound {
                collection: collection.into(),
                id: id.into(),
            });
        }
        let more = recorded.len() > limit;
        let changes = recorded
            .iter()
            .take(limit)
            .map(|r| change_record(r, &decode_doc(r)?))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            changes.last().map(|c| c.version + 1)
        } else {
            None
        };
        Ok(HistoryPage { changes, next })
    }

    /// Writes a document: see the module docs.
    pub async fn write(&self, request: WriteRequest, metadata: &Metadata) -> Result<DocumentWrite, DocumentError> {
        let stream = Self::document_stream(&request.collection, &request.id)?;
        let spec = self.declared(&request.collection).await?.spec;
        let pre = &request.preconditions;
        pre.check(&request.change)
            .map_err(|reason| DocumentError::InvalidPreconditions { reason })?;
        if (spec.require_precondition || request.require_precondition) && !pre.names_a_version() {
            return Err(DocumentError::PreconditionRequired {
                collection: request.collection.clone(),
            });
        }
        let mut metadata = metadata.clone();
        if let Some(actor) = &request.actor {
            metadata.extra.insert(ACTOR_KEY.into(), actor.clone());
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let current = self.load(&stream).await?;
            let Some(decision) = self.decide(&request, &stream, &current).await? else {
                return Ok(unchanged(&current));
            };
            let Decision { event, merged_onto } = decision;
            let mut after = current.state.clone();
            after.apply(&event);
            let mut appends = vec![StreamAppend::new(
                stream.clone(),
                ExpectedVersion::Exact(current.version).normalized(),
                vec![self.encode(&stream, &event, &metadata)?],
            )];
            appends.extend(
                self.unique_appends(&request, &spec, &current.state, &after, &metadata)
                    .await?,
            );
            let appended = appends.iter().map(|a| a.events.len()).sum();
            match self.store.append_multi(appends).await {
                Ok(results) => {
                    let position = results.iter().map(|r| r.last_position).max();
                    return Ok(DocumentWrite {
                        kind: Some(event.kind()),
                        version: results[0].stream_version,
                        body: event.body().cloned(),
                        modified_ms: after.modified_ms(),
                        modified_by: after.modified_by().map(str::to_string),
                        merged_onto,
                        position,
                        appended,
                    });
                }
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

    /// Checks the preconditions against the document and decides its
    /// event; `None` when the write changes nothing.
    async fn decide(
        &self,
        request: &WriteRequest,
        stream: &StreamId,
        current: &LoadedDoc,
    ) -> Result<Option<Decision>, DocumentError> {
        let pre = &request.preconditions;
        let (state, v) = (&current.state, current.version);
        let actor = request.actor.clone();
        let at_ms = request.at_ms;
        let refusal = |r: DocumentRefusal| self.refusal(request, current, r);
        let stale = |expected: Expected, base: Option<u64>| {
            self.conflict(ConflictReason::Stale, expected, base, request, stream, current)
        };
        match state.status() {
            DocumentStatus::Absent | DocumentStatus::Deleted if pre.if_none_match => {
                let Change::Put(body) = &request.change else {
                    unreachable!("checked: If-None-Match is for PUT")
                };
                let body = valid_body(body.clone())?;
                return decided(state, DocumentCommand::Create { body, actor, at_ms }, None).map_err(refusal);
            }
            DocumentStatus::Deleted => return Err(refusal(DocumentRefusal::Deleted)),
            DocumentStatus::Absent => {
                let Change::Put(body) = &request.change else {
                    return Err(refusal(DocumentRefusal::NotFound));
                };
                let expected = match (
                    &pre.if_match,
                    pre.if_unmodified_since_ms,
                    pre.body_version,
                    pre.merge_base,
                ) {
                    (Some(IfMatch::Any), ..) => Some(Expected::Exists),
                    (Some(IfMatch::Versions(list)), ..) => Some(Expected::Versions(list.clone())),
                    (None, Some(t), ..) => Some(Expected::UnmodifiedSince(t)),
                    (None, None, Some(n), _) | (None, None, None, Some(n)) if n > 0 => {
                        Some(Expected::Versions(vec![n]))
                    }
                    _ => None,
                };
                if let Some(expected) = expected {
                    return Err(stale(expected, None).await);
                }
                let command = DocumentCommand::Put {
                    body: valid_body(body.clone())?,
                    actor,
                    at_ms,
                    merge_base: None,
                };
                return decided(state, command, None).map_err(refusal);
            }
            DocumentStatus::Live => {}
        }
        if pre.if_none_match {
            return Err(self
                .conflict(ConflictReason::Exists, Expected::Absent, None, request, stream, current)
                .await);
        }
        // RFC 9110 section 13.2.2: If-Match, else If-Unmodified-Since.
        match (&pre.if_match, pre.if_unmodified_since_ms) {
            (Some(IfMatch::Versions(list)), _) if !list.contains(&v) => {
                let base = list.iter().copied().filter(|n| *n <= v).max();
                return Err(stale(Expected::Versions(list.clone()), base).await);
            }
            (None, Some(t)) if state.modified_ms() > t => {
                let base = self.version_at(stream, t, v).await?;
                return Err(stale(Expected::UnmodifiedSince(t), base).await);
            }
            _ => {}
        }
        if let Some(n) = pre.body_version
            && n != v
        {
            return Err(stale(Expected::Versions(vec![n]), Some(n)).await);
        }
        if let Some(base) = pre.merge_base {
            if base > v {
                return Err(stale(Expected::Versions(vec![base]), None).await);
            }
            if base < v {
                return self.merge(request, stream, current, base).await;
            }
        }
        // A merge base that is the current version: applied as is, onto it.
        let merged_onto = pre.merge_base.map(|_| v);
        let command = match &request.change {
            Change::Put(body) => DocumentCommand::Put {
                body: valid_body(body.clone())?,
                actor,
                at_ms,
                merge_base: None,
            },
            Change::MergePatch(_) | Change::JsonPatch(_) => DocumentCommand::Patch {
                body: valid_body(self.patched(request, state.body())?)?,
                actor,
                at_ms,
                merge_base: None,
            },
            Change::Delete => DocumentCommand::Delete { actor, at_ms },
        };
        decided(state, command, merged_onto).map_err(refusal)
    }

    pub(super) fn refusal(
        &self,
        request: &WriteRequest,
        current: &LoadedDoc,
        refusal: DocumentRefusal,
    ) -> DocumentError {
        match refusal {
            DocumentRefusal::NotFound => DocumentError::NotFound {
                collection: request.collection.clone(),
                id: request.id.clone(),
            },
            DocumentRefusal::Deleted => deleted(&request.collection, &request.id, &current.state, current.version),
            DocumentRefusal::Exists => DocumentError::Conflict(Box::new(DocumentConflict {
                reason: ConflictReason::Exists,
                collection: request.collection.clone(),
                id: request.id.clone(),
                expected: Expected::Absent,
                current_version: current.version,
                current: Some(current.state.body().clone()),
                modified_ms: current.state.modified_ms(),
                changes_since: Vec::new(),
                changes_since_complete: false,
                conflicting_fields: None,
                merged: None,
            })),
        }
    }

    /// The document as its last event leaves it (every event carries the
    /// whole document).
    pub(super) async fn load(&self, stream: &StreamId) -> Result<LoadedDoc, DocumentError> {
        let last = self.store.read_stream(stream, u64::MAX, Direction::Backward, 1).await?;
        let mut state = Document::default();
        let mut version = 0;
        if let Some(r) = last.first() {
            state.apply(&decode_doc(r)?);
            version = r.version;
        }
        Ok(LoadedDoc { state, version })
    }

    /// The event that made version `n` of a document, if it has one.
    pub(super) async fn read_at(&self, stream: &StreamId, n: u64) -> Result<Option<DocumentEvent>, DocumentError> {
        if n == 0 {
            return Ok(None);
        }
        let found = self.store.read_stream(stream, n, Direction::Forward, 1).await?;
        match found.first() {
            Some(r) if r.version == n => Ok(Some(decode_doc(r)?)),
            _ => Ok(None),
        }
    }

    pub(super) fn encode<E: DomainEvent>(
        &self,
        stream: &StreamId,
        event: &E,
        metadata: &Metadata,
    ) -> Result<NewEvent, DocumentError> {
        encode_with(event, Format::Json, metadata).map_err(|source| DocumentError::Encode {
            stream: stream.clone(),
            source,
        })
    }
}

/// A decided write: the document's event, and the version a merge applied it onto.
pub(super) struct Decision {
    pub(super) event: DocumentEvent,
    pub(super) merged_onto: Option<u64>,
}

pub(super) fn decided(
    state: &Document,
    command: DocumentCommand,
    merged_onto: Option<u64>,
) -> Result<Option<Decision>, DocumentRefusal> {
    Ok(state
        .handle(&command)?
        .into_iter()
        .next()
        .map(|event| Decision { event, merged_onto }))
}

fn unchanged(current: &LoadedDoc) -> DocumentWrite {
    DocumentWrite {
        kind: None,
        version: current.version,
        body: Some(current.state.body().clone()),
        modified_ms: current.state.modified_ms(),
        modified_by: current.state.modified_by().map(str::to_string),
        merged_onto: None,
        position: None,
        appended: 0,
    }
}

fn deleted(collection: &str, id: &str, state: &Document, version: u64) -> DocumentError {
    DocumentError::Deleted {
        collection: collection.into(),
        id: id.into(),
        version,
        at_ms: state.modified_ms(),
        actor: state.modified_by().map(str::to_string),
    }
}

/// A body a document may have: no top-level `_version` (that is the
/// document's version, never stored).
pub(super) fn valid_body(body: Map<String, Value>) -> Result<Map<String, Value>, DocumentError> {
    if body.contains_key(VERSION_MEMBER) {
        return Err(DocumentError::InvalidDocument {
            reason: "`_version` is the document's version, not a field: send it as a precondition, not in the document"
                .into(),
        });
    }
    Ok(body)
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn decode_doc(r: &RecordedEvent) -> Result<DocumentEvent, DocumentError> {
    decode(r).map_err(|source| DocumentError::Decode {
        stream: r.stream_id.clone(),
        version: r.version,
        source,
    })
}

pub(super) fn change_record(r: &RecordedEvent, event: &DocumentEvent) -> Result<ChangeRecord, DocumentError> {
    Ok(ChangeRecord {
        version: r.version,
        kind: event.kind(),
        actor: event.actor().map(str::to_string),
        at_ms: event.at_ms(),
        changed: event.changed(),
        merge_base: event.merge_base(),
        position: r.position,
    })
}

pub(super) fn check_collection(name: &str) -> Result<(), DocumentError> {
    validate_collection_name(name).map_err(|r| collection_refusal(name, r))
}

/// Checks a document id: 1..=128 bytes, not blank, no control characters.
pub fn check_id(id: &str) -> Result<(), DocumentError> {
    let reason = if id.trim().is_empty() {
        Some("must not be empty or blank")
    } else if id.len() > MAX_DOCUMENT_ID {
        Some("must be at most 128 bytes")
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DocumentError::InvalidId {
            id: id.chars().filter(|c| !c.is_control()).take(64).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(super) fn collection_refusal(name: &str, refusal: CollectionRefusal) -> DocumentError {
    match refusal {
        CollectionRefusal::InvalidName { name, reason } => DocumentError::InvalidCollectionName { name, reason },
        CollectionRefusal::InvalidField { field, reason } => DocumentError::InvalidField { field, reason },
        CollectionRefusal::UniqueFieldsFixed { declared, requested } => DocumentError::UniqueFieldsFixed {
            collection: name.to_string(),
            declared,
            requested,
        },
    }
}

pub(super) fn repository_error<A: Aggregate>(e: RepositoryError<A>) -> DocumentError {
    match e {
        RepositoryError::Decode {
            stream,
            version,
            source,
        } => DocumentError::Decode {
            stream,
            version,
            source,
        },
        RepositoryError::Encode { stream, source } => DocumentError::Encode { stream, source },
        RepositoryError::Store(e) => DocumentError::Store(e),
        other => DocumentError::Store(StoreError::Corrupt {
            location: "document service".into(),
            detail: format!("unexpected: {other}"),
        }),
    }
}
