//! Why a document or collection operation did not succeed, and the
//! conflict a client needs to resolve a stale write.

use serde_json::{Map, Value};
use strata_store::{StoreError, StreamId};

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
    /// Handling: invalid input (HTTP 400).
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidCollectionName {
        /// The name (cleaned of control characters).
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A document id that cannot name one.
    ///
    /// Handling: invalid input (HTTP 400).
    #[error("invalid document id {id:?}: {reason}")]
    InvalidId {
        /// The id (cleaned of control characters).
        id: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A unique field in a declaration that cannot be one.
    ///
    /// Handling: invalid input (HTTP 422).
    #[error("invalid unique field {field:?}: {reason}")]
    InvalidField {
        /// The field as sent.
        field: String,
        /// Why.
        reason: String,
    },
    /// The collection was never declared.
    ///
    /// Handling: declare it first (HTTP 404).
    #[error("collection {collection} is not declared")]
    CollectionNotDeclared {
        /// The collection.
        collection: String,
    },
    /// A declaration with other unique fields than the collection has.
    ///
    /// Handling: a conflict with the collection's state (HTTP 409).
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
    /// Handling: HTTP 409 (or 412), with the declaration now.
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
    /// Handling: invalid input (HTTP 400).
    #[error("{reason}")]
    InvalidPreconditions {
        /// Which and why.
        reason: String,
    },
    /// The collection (or the server) requires every write to name its
    /// version, and this one names none.
    ///
    /// Handling: HTTP 428.
    #[error("collection {collection} requires writes to name the version they were decided on")]
    PreconditionRequired {
        /// The collection.
        collection: String,
    },
    /// The document was never created.
    ///
    /// Handling: HTTP 404.
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
    /// Handling: HTTP 404, saying at which version and when.
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
    /// Handling: HTTP 404.
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
    /// Handling: HTTP 409 (or 412 when configured) with the conflict.
    #[error("document {id} of {collection} is at version {current_version}: {reason:?}", id = .0.id, collection = .0.collection, current_version = .0.current_version, reason = .0.reason)]
    Conflict(Box<DocumentConflict>),
    /// The write would take a unique value another document holds.
    ///
    /// Handling: HTTP 409 `unique-violation` naming the field, the value
    /// and the holder.
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
    /// Handling: a conflict with the document's state (HTTP 409); nothing
    /// of the patch was applied.
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
    /// Handling: invalid input (HTTP 422).
    #[error("{reason}")]
    InvalidDocument {
        /// Why.
        reason: String,
    },
    /// A write that named no version lost its race on every retry.
    ///
    /// Handling: transient (HTTP 503 with `Retry-After`).
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
    /// Handling: HTTP 500.
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
    /// Handling: HTTP 500 (or 413 when the store refuses its size, which
    /// is [`DocumentError::Store`]).
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
    /// Handling: see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
}
