//! What a document write asks for and what the service answers.

use serde_json::{Map, Value};

use crate::domain::document::collection::CollectionSpec;
use crate::domain::document::doc::ChangeKind;
use crate::domain::document::error::ChangeRecord;
use crate::domain::document::patch::JsonPatch;

/// The metadata key under which every document event records its actor.
pub const ACTOR_KEY: &str = "actor";

/// The member of a document body that carries its version (never stored).
pub const VERSION_MEMBER: &str = "_version";

/// `If-Match` as a document write uses it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IfMatch {
    /// `*`: the document must exist.
    Any,
    /// One of these versions (strong comparison).
    Versions(Vec<u64>),
}

/// The preconditions of a write, as the request states them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Preconditions {
    /// `If-Match`.
    pub if_match: Option<IfMatch>,
    /// `If-None-Match: *`: create only.
    pub if_none_match: bool,
    /// `If-Unmodified-Since`, in milliseconds since the Unix epoch (ignored
    /// when `If-Match` is present, as RFC 9110 says).
    pub if_unmodified_since_ms: Option<u64>,
    /// `_version` in the body (or a JSON Patch `test` of `/_version`).
    pub body_version: Option<u64>,
    /// The version the write started from, to be merged onto the current
    /// one when the fields it changes were not changed since.
    pub merge_base: Option<u64>,
}

impl Preconditions {
    /// Whether the write names the state it was decided on (what a
    /// collection that requires preconditions asks for): a version, a
    /// time, create-only, or a merge base. `If-Match: *` names none.
    pub fn names_a_version(&self) -> bool {
        matches!(self.if_match, Some(IfMatch::Versions(_)))
            || self.if_unmodified_since_ms.is_some()
            || self.body_version.is_some()
            || self.if_none_match
            || self.merge_base.is_some()
    }

    pub(super) fn check(&self, change: &Change) -> Result<(), String> {
        if self.if_none_match {
            if !matches!(change, Change::Put(_)) {
                return Err("If-None-Match: * (create only) is for PUT".into());
            }
            if self.if_match.is_some() || self.merge_base.is_some() || self.body_version.is_some_and(|v| v > 0) {
                return Err("If-None-Match: * (create only) cannot be combined with a version to match".into());
            }
        }
        if let Some(base) = self.merge_base {
            if self.if_match.is_some() {
                return Err("a merge base cannot be combined with If-Match, which stays strict; send one".into());
            }
            if self.body_version.is_some_and(|v| v != base) {
                return Err(format!(
                    "_version ({}) and the merge base ({base}) disagree",
                    self.body_version.unwrap_or_default()
                ));
            }
        }
        match (&self.if_match, self.body_version) {
            (Some(IfMatch::Versions(list)), Some(v)) if list.as_slice() != [v] => Err(format!(
                "If-Match ({}) and _version ({v}) disagree",
                list.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
            )),
            (Some(IfMatch::Any), Some(0)) => Err("If-Match: * and _version 0 contradict each other".into()),
            _ => Ok(()),
        }
    }
}

/// What a write does to the document.
#[derive(Clone, PartialEq, Debug)]
pub enum Change {
    /// Replace it with this body (or create it).
    Put(Map<String, Value>),
    /// Apply a JSON Merge Patch (RFC 7396).
    MergePatch(Value),
    /// Apply a JSON Patch (RFC 6902).
    JsonPatch(JsonPatch),
    /// Delete it.
    Delete,
}

/// A write to a document.
#[derive(Clone, PartialEq, Debug)]
pub struct WriteRequest {
    /// The collection.
    pub collection: String,
    /// The document's id.
    pub id: String,
    /// What to do.
    pub change: Change,
    /// Under which preconditions.
    pub preconditions: Preconditions,
    /// Who asks (recorded in the event and its metadata).
    pub actor: Option<String>,
    /// Now, in milliseconds since the Unix epoch (a document's times never go backwards).
    pub at_ms: u64,
    /// Require a precondition whatever the collection says (the server's setting).
    pub require_precondition: bool,
}

/// A document as read.
#[derive(Clone, PartialEq, Debug)]
pub struct DocumentView {
    /// Its version.
    pub version: u64,
    /// Its body.
    pub body: Map<String, Value>,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Who changed it last.
    pub modified_by: Option<String>,
}

/// What a successful write did.
#[derive(Clone, PartialEq, Debug)]
pub struct DocumentWrite {
    /// The change made; `None` when the document already was as asked
    /// (nothing was appended).
    pub kind: Option<ChangeKind>,
    /// The document's version after the write.
    pub version: u64,
    /// The document after the write; `None` after a delete.
    pub body: Option<Map<String, Value>>,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Who changed it last.
    pub modified_by: Option<String>,
    /// For a write with a merge base: the version it was applied onto.
    pub merged_onto: Option<u64>,
    /// The log position of the write's last event (`None` when nothing was appended).
    pub position: Option<u64>,
    /// How many events the write appended (the document's and its unique values').
    pub appended: usize,
}

/// A page of a document's history.
#[derive(Clone, PartialEq, Debug)]
pub struct HistoryPage {
    /// The changes, oldest first.
    pub changes: Vec<ChangeRecord>,
    /// The version to read the next page from, when there is more.
    pub next: Option<u64>,
}

/// A collection as declared.
#[derive(Clone, PartialEq, Debug)]
pub struct CollectionInfo {
    /// The declaration.
    pub spec: CollectionSpec,
    /// The version of the collection's stream.
    pub version: u64,
}

/// What declaring a collection did.
#[derive(Clone, PartialEq, Debug)]
pub struct CollectionWrite {
    /// The collection now.
    pub info: CollectionInfo,
    /// Whether this declared it (rather than finding it declared).
    pub created: bool,
    /// The log position of the write (`None` when nothing changed).
    pub position: Option<u64>,
}
