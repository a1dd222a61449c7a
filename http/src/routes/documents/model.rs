//! The JSON shapes of the document and collection routes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use strata_aggregates::domain::document::{CollectionSpec, UniqueField, VERSION_MEMBER};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// A document as sent: its members, plus `_version`.
pub(crate) fn document_json(body: &Map<String, Value>, version: u64) -> Value {
    let mut out = body.clone();
    out.insert(VERSION_MEMBER.into(), version.into());
    Value::Object(out)
}

/// A unique field as shown.
pub(crate) fn unique_json(field: &UniqueField) -> Value {
    json!({"field": field.field, "case_insensitive": field.case_insensitive})
}

fn version_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .minimum(Some(0))
        .description(Some(description))
}

/// A JSON document: any JSON object. `_version` is the document's
/// version: sent by the server on reads and writes, and when a client
/// sends it in a `PUT` body it is a precondition (the write applies only
/// to that version), never stored.
pub struct DocumentBody;

impl PartialSchema for DocumentBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .description(Some(
                "Any JSON object. `_version` is the document's version (a precondition when sent in a PUT; never stored).",
            ))
            .property(
                VERSION_MEMBER,
                version_schema("The document's version (the ETag's number)."),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for DocumentBody {}

/// A JSON Merge Patch (RFC 7396) of a document: an object whose members
/// replace the document's, `null` removing one; a top-level `_version` is a
/// precondition.
pub struct MergePatchBody;

impl PartialSchema for MergePatchBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .description(Some(
                "RFC 7396: members replace the document's, null removes one, objects merge recursively. A top-level `_version` is a precondition.",
            ))
            .property(VERSION_MEMBER, version_schema("The version the patch was decided on (a precondition)."))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for MergePatchBody {}

/// A JSON Patch (RFC 6902) of a document: an array of operations; a
/// `test` of `/_version` is a precondition.
pub struct JsonPatchBody;

impl PartialSchema for JsonPatchBody {
    fn schema() -> RefOr<Schema> {
        let op = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .property(
                "op",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some(["add", "remove", "replace", "move", "copy", "test"])),
            )
            .required("op")
            .property(
                "path",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .description(Some("A JSON Pointer (RFC 6901): empty, or starting with `/`"))
                    .pattern(Some("^(/.*)?$")),
            )
            .required("path")
            .property(
                "from",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .pattern(Some("^(/.*)?$")),
            )
            .property("value", ObjectBuilder::new())
            .additional_properties(Some(AdditionalProperties::FreeForm(true)));
        ArrayBuilder::new()
            .items(op)
            .description(Some(
                "RFC 6902 operations, applied in order, all or none. `{\"op\":\"test\",\"path\":\"/_version\",\"value\":n}` is a precondition.",
            ))
            .into()
    }
}

impl ToSchema for JsonPatchBody {}

/// One unique field of a declaration: a member name (`email`) or a JSON
/// Pointer (`/contact/email`), alone or with its comparison.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UniqueFieldSpec {
    /// A member name or a JSON Pointer, compared exactly.
    Name(String),
    /// A field with its comparison.
    Field {
        /// A member name or a JSON Pointer.
        field: String,
        /// Compare strings case-insensitively (default false).
        #[serde(default)]
        case_insensitive: bool,
    },
}

/// `PUT /collections/{name}`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareCollection {
    /// The unique fields (at most 16; fixed once declared).
    #[serde(default)]
    #[schema(max_items = 16)]
    pub unique: Vec<UniqueFieldSpec>,
    /// Whether every write must name the version it was decided on (428
    /// otherwise; default false).
    #[serde(default)]
    pub require_precondition: bool,
}

/// A unique field as declared.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UniqueFieldView {
    /// Its JSON Pointer.
    pub field: String,
    /// Whether strings compare case-insensitively.
    pub case_insensitive: bool,
}

/// A collection as declared.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionView {
    /// Its name.
    pub name: String,
    /// Its unique fields.
    pub unique: Vec<UniqueFieldView>,
    /// Whether writes must name their version.
    pub require_precondition: bool,
    /// The declaration's version (the ETag).
    #[schema(minimum = 1)]
    pub version: u64,
}

impl CollectionView {
    /// The view of a declaration.
    pub fn new(name: &str, spec: &CollectionSpec, version: u64) -> CollectionView {
        CollectionView {
            name: name.to_string(),
            unique: spec
                .unique
                .iter()
                .map(|f| UniqueFieldView {
                    field: f.field.clone(),
                    case_insensitive: f.case_insensitive,
                })
                .collect(),
            require_precondition: spec.require_precondition,
            version,
        }
    }
}

/// One change of a document.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// The version it made.
    #[schema(minimum = 1)]
    pub version: u64,
    /// `created`, `replaced`, `patched` or `deleted`.
    #[schema(pattern = "^(created|replaced|patched|deleted)$")]
    pub kind: String,
    /// Who made it (the `Strata-Actor` header of its request), or null.
    pub actor: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// The fields it changed, as JSON Pointers (`""`: the whole document).
    pub changed: Vec<String>,
    /// Its position in the log.
    pub position: u64,
    /// For a write merged onto a later version: the version it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_base: Option<u64>,
}

/// `GET /docs/{collection}/{id}/history`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The collection.
    pub collection: String,
    /// The document's id.
    pub id: String,
    /// The changes, oldest first.
    pub changes: Vec<ChangeView>,
    /// The version the next page starts at, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_from: Option<u64>,
}

/// What `DELETE` answers.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedView {
    /// The collection.
    pub collection: String,
    /// The document's id.
    pub id: String,
    /// Always true.
    pub deleted: bool,
    /// The tombstone's version.
    #[serde(rename = "_version")]
    pub version: u64,
}

/// One document of a page of `GET /docs/{collection}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ListedDocumentView {
    /// The document's id.
    #[schema(min_length = 1, max_length = 128)]
    pub id: String,
    /// Its version (the `ETag` of `GET /docs/{collection}/{id}`; also
    /// `_version` in the document).
    #[schema(minimum = 1)]
    pub version: u64,
    /// When it last changed (RFC 3339, in milliseconds; `Last-Modified`
    /// of the document, to the second).
    #[schema(format = DateTime)]
    pub last_modified: String,
    /// Who changed it last (`Strata-Actor`), or null.
    #[schema(required = true)]
    pub modified_by: Option<String>,
    /// The log position of the change that made this version.
    #[schema(minimum = 1)]
    pub position: u64,
    /// The document at that version, with `_version`: what `GET` of the
    /// document answered then, so it can be sent back in a `PUT` as is.
    #[schema(value_type = DocumentBody)]
    pub document: Value,
}

/// `GET /docs/{collection}`: one page of a collection's documents.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentListView {
    /// The collection.
    pub collection: String,
    /// The position the listing had applied when read (also
    /// `Strata-Position`): every write up to it is in the page.
    pub position: u64,
    /// The documents of this page, in id order (the bytes of their UTF-8).
    pub documents: Vec<ListedDocumentView>,
    /// The `after` of the next page (the last id of this one); absent on
    /// the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, min_length = 1, max_length = 128)]
    pub next: Option<String>,
}

/// What `POST /docs/{collection}/{id}/erase` answers.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasedView {
    /// The collection.
    pub collection: String,
    /// The document's id.
    pub id: String,
    /// Always true.
    pub erased: bool,
    /// The document's stream, hard-deleted: it can never be written again.
    pub stream: String,
    /// The document's last version (erased with the rest).
    #[serde(rename = "_version")]
    pub version: u64,
    /// The position of the hard delete's record: wait for a read model to
    /// reach it with `min_position`.
    pub position: u64,
    /// How many unique values' streams were cleared of the document's
    /// values (each value is free for another document).
    pub unique_values_cleared: usize,
}
