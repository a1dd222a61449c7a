//! A JSON document, one stream per document (`doc-{collection}/{id}`).
//!
//! Every event carries the whole document as it is after the change, the
//! fields the change touched (JSON Pointers, see [`super::fields`]), who
//! made it and when. A version is then one event: reading the document at
//! version `n` reads one event, and loading the current document reads the
//! last one; the price is log space, one copy of the document per change.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use strata_store::{Classify, ErrorKind};

use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::domain::document::fields::changed_fields;
use crate::domain::document::json::JsonObject;

/// The longest document id, in bytes.
pub const MAX_DOCUMENT_ID: usize = 128;

/// The events of a document's stream. Variants are only ever added at the end.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum DocumentEvent {
    /// The document was created (for the first time, or again after a delete).
    DocumentCreated {
        /// The document.
        body: JsonObject,
        /// Its fields (the top-level members).
        changed: Vec<String>,
        /// Who created it.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// The document was replaced (`PUT`).
    DocumentReplaced {
        /// The document after the change.
        body: JsonObject,
        /// The fields that changed.
        changed: Vec<String>,
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The version the writer started from, when it was merged onto a later one.
        merge_base: Option<u64>,
    },
    /// The document was patched (`PATCH`).
    DocumentPatched {
        /// The document after the change.
        body: JsonObject,
        /// The fields that changed.
        changed: Vec<String>,
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The version the writer started from, when it was merged onto a later one.
        merge_base: Option<u64>,
    },
    /// The document was deleted: a tombstone. Only a create (`If-None-Match: *`)
    /// brings it back.
    DocumentDeleted {
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

impl DomainEvent for DocumentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            DocumentEvent::DocumentCreated { .. } => "DocumentCreated",
            DocumentEvent::DocumentReplaced { .. } => "DocumentReplaced",
            DocumentEvent::DocumentPatched { .. } => "DocumentPatched",
            DocumentEvent::DocumentDeleted { .. } => "DocumentDeleted",
        }
    }
}

/// What kind of change an event was.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Created.
    Created,
    /// Replaced.
    Replaced,
    /// Patched.
    Patched,
    /// Deleted.
    Deleted,
}

impl ChangeKind {
    /// The lower-case name (`created`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Replaced => "replaced",
            ChangeKind::Patched => "patched",
            ChangeKind::Deleted => "deleted",
        }
    }
}

impl DocumentEvent {
    /// The kind of change.
    pub fn kind(&self) -> ChangeKind {
        match self {
            DocumentEvent::DocumentCreated { .. } => ChangeKind::Created,
            DocumentEvent::DocumentReplaced { .. } => ChangeKind::Replaced,
            DocumentEvent::DocumentPatched { .. } => ChangeKind::Patched,
            DocumentEvent::DocumentDeleted { .. } => ChangeKind::Deleted,
        }
    }

    /// The fields it changed (`[""]`, the whole document, for a delete).
    pub fn changed(&self) -> Vec<String> {
        match self {
            DocumentEvent::DocumentCreated { changed, .. }
            | DocumentEvent::DocumentReplaced { changed, .. }
            | DocumentEvent::DocumentPatched { changed, .. } => changed.clone(),
            DocumentEvent::DocumentDeleted { .. } => vec![String::new()],
        }
    }

    /// Who made it.
    pub fn actor(&self) -> Option<&str> {
        match self {
            DocumentEvent::DocumentCreated { actor, .. }
            | DocumentEvent::DocumentReplaced { actor, .. }
            | DocumentEvent::DocumentPatched { actor, .. }
            | DocumentEvent::DocumentDeleted { actor, .. } => actor.as_deref(),
        }
    }

    /// When, in milliseconds since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        match self {
            DocumentEvent::DocumentCreated { at_ms, .. }
            | DocumentEvent::DocumentReplaced { at_ms, .. }
            | DocumentEvent::DocumentPatched { at_ms, .. }
            | DocumentEvent::DocumentDeleted { at_ms, .. } => *at_ms,
        }
    }

    /// The merge base, for a write merged onto a later version.
    pub fn merge_base(&self) -> Option<u64> {
        match self {
            DocumentEvent::DocumentReplaced { merge_base, .. } | DocumentEvent::DocumentPatched { merge_base, .. } => {
                *merge_base
            }
            _ => None,
        }
    }

    /// The document after the change; `None` after a delete.
    pub fn body(&self) -> Option<&Map<String, Value>> {
        match self {
            DocumentEvent::DocumentCreated { body, .. }
            | DocumentEvent::DocumentReplaced { body, .. }
            | DocumentEvent::DocumentPatched { body, .. } => Some(&body.0),
            DocumentEvent::DocumentDeleted { .. } => None,
        }
    }
}

/// What a document is asked to do. The body is the document as the write
/// leaves it (a patch is applied before the command is made).
#[derive(Clone, PartialEq, Debug)]
pub enum DocumentCommand {
    /// Create only (`If-None-Match: *`): refused when the document exists.
    Create {
        /// The document.
        body: Map<String, Value>,
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// Create or replace (`PUT`): refused when the document was deleted.
    Put {
        /// The document.
        body: Map<String, Value>,
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The version the writer started from, when merged onto a later one.
        merge_base: Option<u64>,
    },
    /// Change an existing document (`PATCH`), to `body`.
    Patch {
        /// The document after the patch.
        body: Map<String, Value>,
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
        /// The version the writer started from, when merged onto a later one.
        merge_base: Option<u64>,
    },
    /// Delete an existing document.
    Delete {
        /// Who.
        actor: Option<String>,
        /// When, in milliseconds since the Unix epoch.
        at_ms: u64,
    },
}

/// Why a document refused a command. Nothing was written.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentRefusal {
    /// The document was never created.
    ///
    /// Handling: create it first. Kind: [`ErrorKind::NotFound`].
    #[error("the document does not exist")]
    NotFound,
    /// The document was deleted; only a create brings it back.
    ///
    /// Handling: create it again (create only) if that is meant. Kind:
    /// [`ErrorKind::NotFound`].
    #[error("the document was deleted")]
    Deleted,
    /// A create-only write to a document that exists.
    ///
    /// Handling: read it; a failed precondition. Kind: [`ErrorKind::Conflict`].
    #[error("the document exists")]
    Exists,
}

impl Classify for DocumentRefusal {
    fn kind(&self) -> ErrorKind {
        match self {
            DocumentRefusal::NotFound | DocumentRefusal::Deleted => ErrorKind::NotFound,
            DocumentRefusal::Exists => ErrorKind::Conflict,
        }
    }
}

/// Where a document is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum DocumentStatus {
    /// No event yet.
    #[default]
    Absent,
    /// Created and not deleted.
    Live,
    /// Deleted (a tombstone).
    Deleted,
}

/// A document's state: the body, and who changed it last and when.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Document {
    status: DocumentStatus,
    body: Map<String, Value>,
    modified_ms: u64,
    modified_by: Option<String>,
}

impl Document {
    /// Where it is in its life.
    pub fn status(&self) -> DocumentStatus {
        self.status
    }

    /// The body (empty unless live).
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// When it last changed (created, changed or deleted), in milliseconds
    /// since the Unix epoch; 0 when absent.
    pub fn modified_ms(&self) -> u64 {
        self.modified_ms
    }

    /// Who changed it last.
    pub fn modified_by(&self) -> Option<&str> {
        self.modified_by.as_deref()
    }

    /// A change's time: the command's, or this document's last one when the
    /// clock is behind it (across processes), so times never go backwards.
    fn at(&self, at_ms: u64) -> u64 {
        at_ms.max(self.modified_ms)
    }

    fn changed_from_here(&self, body: &Map<String, Value>) -> Vec<String> {
        changed_fields(&self.body, body)
    }
}

impl Aggregate for Document {
    const KIND: &'static str = "doc";
    type Command = DocumentCommand;
    type Event = DocumentEvent;
    type Error = DocumentRefusal;

    fn handle(&self, command: &DocumentCommand) -> Result<Vec<DocumentEvent>, DocumentRefusal> {
        let created = |body: &Map<String, Value>, actor: &Option<String>, at_ms: u64| {
            vec![DocumentEvent::DocumentCreated {
                body: JsonObject(body.clone()),
                changed: changed_fields(&Map::new(), body),
                actor: actor.clone(),
                at_ms: self.at(at_ms),
            }]
        };
        match (command, self.status) {
            (DocumentCommand::Create { body, actor, at_ms }, DocumentStatus::Absent | DocumentStatus::Deleted) => {
                Ok(created(body, actor, *at_ms))
            }
            (DocumentCommand::Create { .. }, DocumentStatus::Live) => Err(DocumentRefusal::Exists),
            (DocumentCommand::Put { body, actor, at_ms, .. }, DocumentStatus::Absent) => {
                Ok(created(body, actor, *at_ms))
            }
            (
                command @ (DocumentCommand::Put {
                    body,
                    actor,
                    at_ms,
                    merge_base,
                }
                | DocumentCommand::Patch {
                    body,
                    actor,
                    at_ms,
                    merge_base,
                }),
                DocumentStatus::Live,
            ) => {
                let changed = self.changed_from_here(body);
                if changed.is_empty() {
                    return Ok(Vec::new());
                }
                let (body, actor, at_ms, merge_base) =
                    (JsonObject(body.clone()), actor.clone(), self.at(*at_ms), *merge_base);
                Ok(vec![if matches!(command, DocumentCommand::Put { .. }) {
                    DocumentEvent::DocumentReplaced {
                        body,
                        changed,
                        actor,
                        at_ms,
                        merge_base,
                    }
                } else {
                    DocumentEvent::DocumentPatched {
                        body,
                        changed,
                        actor,
                        at_ms,
                        merge_base,
                    }
                }])
            }
            (DocumentCommand::Delete { actor, at_ms }, DocumentStatus::Live) => {
                Ok(vec![DocumentEvent::DocumentDeleted {
                    actor: actor.clone(),
                    at_ms: self.at(*at_ms),
                }])
            }
            (DocumentCommand::Patch { .. } | DocumentCommand::Delete { .. }, DocumentStatus::Absent) => {
                Err(DocumentRefusal::NotFound)
            }
            (
                DocumentCommand::Put { .. } | DocumentCommand::Patch { .. } | DocumentCommand::Delete { .. },
                DocumentStatus::Deleted,
            ) => Err(DocumentRefusal::Deleted),
        }
    }

    fn apply(&mut self, event: &DocumentEvent) {
        match event.body() {
            Some(body) => {
                self.status = DocumentStatus::Live;
                self.body = body.clone();
            }
            None => {
                self.status = DocumentStatus::Deleted;
                self.body = Map::new();
            }
        }
        self.modified_ms = event.at_ms();
        self.modified_by = event.actor().map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::harness::given;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn created(v: Value, at_ms: u64) -> DocumentEvent {
        let body = obj(v);
        DocumentEvent::DocumentCreated {
            changed: changed_fields(&Map::new(), &body),
            body: JsonObject(body),
            actor: Some("ada".into()),
            at_ms,
        }
    }

    #[test]
    fn put_creates_then_replaces_with_the_changed_fields() {
        given::<Document>([])
            .when(DocumentCommand::Put {
                body: obj(json!({"name": "a", "tags": []})),
                actor: Some("ada".into()),
                at_ms: 10,
                merge_base: None,
            })
            .then_expect([created(json!({"name": "a", "tags": []}), 10)]);
        given::<Document>([created(json!({"name": "a", "n": 1}), 10)])
            .when(DocumentCommand::Put {
                body: obj(json!({"name": "b", "n": 1})),
                actor: None,
                at_ms: 5,
                merge_base: Some(1),
            })
            .then_expect([DocumentEvent::DocumentReplaced {
                body: JsonObject(obj(json!({"name": "b", "n": 1}))),
                changed: vec!["/name".into()],
                actor: None,
                at_ms: 10,
                merge_base: Some(1),
            }]);
    }

    #[test]
    fn an_unchanged_document_appends_nothing() {
        given::<Document>([created(json!({"a": 1}), 10)])
            .when(DocumentCommand::Patch {
                body: obj(json!({"a": 1})),
                actor: None,
                at_ms: 11,
                merge_base: None,
            })
            .then_expect([]);
    }

    #[test]
    fn a_deleted_document_comes_back_only_through_a_create() {
        let deleted = DocumentEvent::DocumentDeleted { actor: None, at_ms: 12 };
        let history = [created(json!({"a": 1}), 10), deleted.clone()];
        let put = DocumentCommand::Put {
            body: obj(json!({"a": 2})),
            actor: None,
            at_ms: 13,
            merge_base: None,
        };
        given::<Document>(history.clone())
            .when(put)
            .then_error(DocumentRefusal::Deleted);
        given::<Document>(history.clone())
            .when(DocumentCommand::Delete { actor: None, at_ms: 13 })
            .then_error(DocumentRefusal::Deleted);
        given::<Document>(history)
            .when(DocumentCommand::Create {
                body: obj(json!({"a": 2})),
                actor: Some("ada".into()),
                at_ms: 13,
            })
            .then_expect([created(json!({"a": 2}), 13)]);
        given::<Document>([created(json!({"a": 1}), 10)])
            .when(DocumentCommand::Create {
                body: obj(json!({"a": 2})),
                actor: None,
                at_ms: 13,
            })
            .then_error(DocumentRefusal::Exists);
        given::<Document>([])
            .when(DocumentCommand::Delete { actor: None, at_ms: 1 })
            .then_error(DocumentRefusal::NotFound);
    }

    #[test]
    fn the_state_is_the_last_event() {
        let mut doc = Document::default();
        doc.apply(&created(json!({"a": 1}), 10));
        assert_eq!(
            (doc.status(), doc.modified_ms(), doc.modified_by()),
            (DocumentStatus::Live, 10, Some("ada"))
        );
        doc.apply(&DocumentEvent::DocumentDeleted { actor: None, at_ms: 11 });
        assert_eq!(doc.status(), DocumentStatus::Deleted);
        assert!(doc.body().is_empty());
    }
}
