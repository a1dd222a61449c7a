//! Documents: collections of JSON documents, each document an aggregate
//! with its own stream, written with preconditions, patches, merges of
//! changes that do not overlap, and unique values claimed atomically with
//! the write that takes them.
//!
//! - [`Collection`] (`collection-{name}`): declared before use, with its
//!   unique fields and whether writes must name their version.
//! - [`Document`] (`doc-{collection}/{id}`): every event carries the whole
//!   document after the change, the fields it changed (JSON Pointers; see
//!   [`fields`] for what a field is), the actor and the time.
//! - [`UniqueValue`] (`unique-{collection}-{hash}`): which document holds a
//!   value of a unique field.
//! - [`DocumentService`]: reads and writes, one atomic multi-stream append
//!   per write.

mod catalog;
mod claims;
mod collection;
mod doc;
mod erase;
mod error;
pub mod fields;
mod json;
mod merge;
mod patch;
mod request;
mod service;
mod unique;

pub use collection::{
    Collection, CollectionCommand, CollectionEvent, CollectionRefusal, CollectionSpec, MAX_COLLECTION_NAME,
    MAX_UNIQUE_FIELDS, UniqueField, validate_collection_name,
};
pub use doc::{ChangeKind, Document, DocumentCommand, DocumentEvent, DocumentRefusal, DocumentStatus, MAX_DOCUMENT_ID};
pub use erase::{DocumentErasure, EraseRequest};
pub use error::{ChangeRecord, ConflictReason, DocumentConflict, DocumentError, Expected};
pub use json::{JsonObject, JsonValue};
pub use patch::{JsonPatch, PatchFailure, json_equal, merge_patch};
pub use request::{
    ACTOR_KEY, Change, CollectionInfo, CollectionWrite, DocumentView, DocumentWrite, HistoryPage, IfMatch,
    Preconditions, VERSION_MEMBER, WriteRequest,
};
pub use service::{DocumentService, check_id};
pub use unique::{UniqueCommand, UniqueEvent, UniqueRefusal, UniqueValue, unique_id, unique_key};

#[cfg(test)]
mod tests;
