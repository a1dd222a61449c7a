//! Why a document or collection operation did not succeed, and the
//! conflict a client needs to resolve a stale write.

use serde_json::{Map, Value};
use strata_store::{Classify, ErrorKind, StoreError, StreamId};

use crate::codec::CodecError;
use crate::domain::document::collection::{CollectionSpec, UniqueField};
use crate::domain::document::doc::ChangeKind;
use crate::domain::document::patch::PatchFailure;

/// One change of a document, as its history and a conflict show it.
#[derive(Clone, PartialEq, Debug)]
pub struct ChangeRecord {
    /// The document's version after the change.
    pub version: u64,
    /// What kind of change.
    pub kind: ChangeKind,
    /// Who made it (the actor header of its request).
    pub actor: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The fields it changed (JSON Pointers; `""` is the whole document).
    pub changed: Vec<String>,
    /// The version its writer started from, when it was merged onto a later one.
    pub merge_base: Option<u64>,
    /// Its position in the log.
    pub position: u64,
}

/// What a refused write expected of the document.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Expected {
    /// One of these versions (`If-Match`, `_version`, a merge base from the future).
    Versions(Vec<u64>),
    /// That it exists (`If-Match: *`).
    Exists,
    /// That it does not exist (`If-None-Match: *`).
    Absent,
    /// That it did not change after this time, in milliseconds since the
    /// Unix epoch (`If-Unmodified-Since`).
    UnmodifiedSince(u64),
}

/// Why a conditional write was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConflictReason {
    /// The precondition named a version (or time) the document moved past.
    Stale,
    /// A create-only write (`If-None-Match: *`) to a document that exists.
    Exists,
    /// A write with a merge base changes fields that were also changed
    /// since that base (`conflicting_fields`), or the base cannot be merged
    /// from (too far behind, deleted since).
    Overlap,
}

/// A refused conditional write: what a client needs to show a diff, merge
/// and retry.
#[derive(Clone, PartialEq, Debug)]
pub struct DocumentConflict {
    /// Why.
    pub reason: ConflictReason,
    /// The collection.
    pub collection: String,
    /// The document's id.
    pub id: String,
    /// What the write expected.
    pub expected: Expected,
    /// The document's version now (0: it never existed).
    pub current_version: u64,
    /// The document now (`None` when absent or deleted).
    pub current: Option<Map<String, Value>>,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// The changes after the version the write started from, oldest first.
    pub changes_since: Vec<ChangeRecord>,
    /// Whether `changes_since` is every such change.
    pub changes_since_complete: bool,
    /// The fields the write changes that were also changed since its
    /// version (`None` when that cannot be told: the base is unknown, too
    /// far behind, or the patch does not apply to it).
    pub conflicting_fields: Option<Vec<String>>,
    /// When no field overlaps: the document the merge would produce (the
    /// write's changes carried onto the current version).
    pub merged: Option<Map<String, Value>>,
}

/// Why a document or collection operation did not succeed. Nothing was
/// appended in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// A collection name that cannot name one.
    ///
    /// Handling: fix the name. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidCollectionName {
        /// The name (cleaned of control characters).
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A document id that cannot name one.
    ///
    /// Handling: fix the id. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid document id {id:?}: {reason}")]
    InvalidId {
        /// The id (cleaned of control characters).
        id: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A unique field in a declaration that cannot be one.
    ///
    /// Handling: fix the field. Kind: [`ErrorKind::InvalidInput`].
    #[error("invalid unique field {field:?}: {reason}")]
    InvalidField {
        /// The field as sent.
        field: String,
        /// Why.
        reason: String,
    },
    /// The collection was never declared.
    ///
    /// Handling: declare it first. Kind: [`ErrorKind::NotFound`].
    #[error("collection {collection} is not declared")]
    CollectionNotDeclared {
        /// The collection.
        collection: String,
    },
    /// A declaration with other unique fields than the collection has.
    ///
    /// Handling: declare a new collection. Kind: [`ErrorKind::Conflict`].
    #[error("collection {collection} is declared with other unique fields; they are fixed")]
    UniqueFieldsFixed {
        /// The collection.
        collection: String,
        /// Its unique fields.
        declared: Vec<UniqueField>,
        /// The ones asked for.
        requested: Vec<UniqueField>,
    },
    /// A collection declaration decided on a stale version.
    ///
    /// Handling: read the declaration again. Kind: [`ErrorKind::Conflict`].
    #[error("collection {collection} is at version {current_version}, the request expected {expected}")]
    CollectionStale {
        /// The collection.
        collection: String,
        /// The version expected.
        expected: u64,
        /// Its version now.
        current_version: u64,
        /// Its declaration now.
        current: Option<CollectionSpec>,
    },
    /// Preconditions that contradict each other or the method.
    ///
    /// Handling: send one consistent set. Kind: [`ErrorKind::InvalidInput`].
    #[error("{reason}")]
    InvalidPreconditions {
        /// Which and why.
        reason: String,
    },
    /// The collection (or the server) requires every write to name its
    /// version, and this one names none.
    ///
    /// Handling: name the version read. Kind: [`ErrorKind::InvalidInput`].
    #[error("collection {collection} requires writes to name the version they were decided on")]
    PreconditionRequired {
        /// The collection.
        collection: String,
    },
    /// The document was never created.
    ///
    /// Handling: create it. Kind: [`ErrorKind::NotFound`].
    #[error("document {id} does not exist in {collection}")]
    NotFound {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
    },
    /// The document was deleted (a tombstone); only a create with
    /// `If-None-Match: *` brings it back.
    ///
    /// Handling: create it again if that is meant. Kind: [`ErrorKind::NotFound`].
    #[error("document {id} of {collection} was deleted at version {version}")]
    Deleted {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// The tombstone's version.
        version: u64,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// By whom.
        actor: Option<String>,
    },
    /// A version the document does not have (`?version=` past the current one, or 0).
    ///
    /// Handling: read an existing version. Kind: [`ErrorKind::NotFound`].
    #[error("document {id} of {collection} has no version {version} (it is at {current})")]
    VersionNotFound {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// The version asked for.
        version: u64,
        /// The current version.
        current: u64,
    },
    /// A conditional write refused: see [`DocumentConflict`].
    ///
    /// Handling: show the changes, merge or decide again on `current`.
    /// Kind: [`ErrorKind::Conflict`].
    #[error("document {id} of {collection} is at version {current_version}: {reason:?}", id = .0.id, collection = .0.collection, current_version = .0.current_version, reason = .0.reason)]
    Conflict(Box<DocumentConflict>),
    /// The write would take a unique value another document holds.
    ///
    /// Handling: choose another value, or free it first. Kind:
    /// [`ErrorKind::Conflict`].
    #[error("{field} {value} of collection {collection} is held by document {holder}")]
    UniqueViolation {
        /// The collection.
        collection: String,
        /// The unique field's pointer.
        field: String,
        /// The value as the write has it.
        value: Value,
        /// The id of the document holding it.
        holder: String,
    },
    /// A JSON Patch operation does not apply to the document.
    ///
    /// Handling: read the document and patch what it is now; nothing of
    /// the patch was applied. Kind: [`ErrorKind::Conflict`].
    #[error("the patch does not apply to document {id} of {collection}: {failure}")]
    PatchFailed {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// Which operation and why.
        failure: PatchFailure,
    },
    /// The document the write would leave is not one: not an object, a
    /// top-level `_version`, a unique field holding an object or array.
    ///
    /// Handling: fix the document. Kind: [`ErrorKind::InvalidInput`].
    #[error("{reason}")]
    InvalidDocument {
        /// Why.
        reason: String,
    },
    /// A write that named no version lost its race on every retry.
    ///
    /// Handling: send it again later. Kind: [`ErrorKind::Unavailable`].
    #[error("document {id} of {collection} kept changing: gave up after {attempts} attempts")]
    Contention {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A stored event cannot be decoded.
    ///
    /// Handling: see the source. Kind: the codec error's.
    #[error("cannot decode event {version} of stream {stream}: {source}")]
    Decode {
        /// The stream.
        stream: StreamId,
        /// The event's version.
        version: u64,
        /// What failed.
        #[source]
        source: CodecError,
    },
    /// A new event cannot be encoded.
    ///
    /// Handling: a bug. Kind: [`ErrorKind::Internal`].
    #[error("cannot encode an event for stream {stream}: {source}")]
    Encode {
        /// The stream.
        stream: StreamId,
        /// What failed.
        #[source]
        source: CodecError,
    },
    /// The store failed or refused the input (never a version conflict).
    ///
    /// Handling: see [`StoreError`]. Kind: the store error's.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DocumentError {
    /// What kind of failure this is (strata-http answers each variant with
    /// a problem of its own, in `routes/documents/problem.rs`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DocumentError::InvalidCollectionName { .. }
            | DocumentError::InvalidId { .. }
            | DocumentError::InvalidField { .. }
            | DocumentError::InvalidPreconditions { .. }
            | DocumentError::PreconditionRequired { .. }
            | DocumentError::InvalidDocument { .. } => ErrorKind::InvalidInput,
            DocumentError::CollectionNotDeclared { .. }
            | DocumentError::NotFound { .. }
            | DocumentError::Deleted { .. }
            | DocumentError::VersionNotFound { .. } => ErrorKind::NotFound,
            DocumentError::UniqueFieldsFixed { .. }
            | DocumentError::CollectionStale { .. }
            | DocumentError::Conflict(_)
            | DocumentError::UniqueViolation { .. }
            | DocumentError::PatchFailed { .. } => ErrorKind::Conflict,
            DocumentError::Contention { .. } => ErrorKind::Unavailable,
            DocumentError::Decode { source, .. } => source.kind(),
            DocumentError::Encode { .. } => ErrorKind::Internal,
            DocumentError::Store(e) => e.kind(),
        }
    }
}

impl Classify for DocumentError {
    fn kind(&self) -> ErrorKind {
        DocumentError::kind(self)
    }
}
