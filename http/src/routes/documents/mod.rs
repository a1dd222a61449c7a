//! `/docs/{collection}/{id}`: JSON documents with `GET`, `PUT`, `PATCH`
//! (RFC 7396 and RFC 6902) and `DELETE`, preconditions, conflicts that
//! name their fields, merges on request, and unique values;
//! `/docs/{collection}`, their listing; and `/collections/{name}`, their
//! declarations. Decisions: `docs/documents.md`.

pub(crate) mod collections;
pub(crate) mod erase;
mod input;
pub(crate) mod listing;
mod model;
mod problem;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use strata_aggregates::domain::document::{
    Change, ChangeKind, DocumentError, DocumentService, DocumentView, DocumentWrite, WriteRequest,
};
use strata_store::RecordedEvent;
use utoipa::IntoParams;

pub use input::{ACTOR_HEADER, MERGE_BASE_HEADER, MERGED_ONTO_HEADER};
pub use model::{
    ChangeView, CollectionView, DeclareCollection, DeletedView, DocumentBody, DocumentListView, HistoryView,
    JsonPatchBody, ListedDocumentView, MergePatchBody, UniqueFieldSpec, UniqueFieldView,
};

use super::orders::{encode_segment, page_limit};
use super::{Documents, Written, metadata, recovered, written_before_crash};
use crate::error::HttpError;
use crate::extract::{ApiPath, ApiQuery};
use crate::precondition::{etag, not_modified};
use crate::problem::Problem;
use input::RawBody;
use model::document_json;
use problem::{ACCEPT_PATCH, change_view, http_date, now_ms, to_http};

/// Reading a document at a version.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// The version to read (default: the current one); an older one shows
    /// the document as it was then.
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    version: Option<u64>,
}

/// Paging a document's history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// The first version to list (default 1).
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    from: Option<u64>,
    /// The most changes to return (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn last_modified(ms: u64) -> HeaderValue {
    HeaderValue::from_str(&http_date(ms)).expect("an HTTP date is a valid header value")
}

/// The response to a read: 200 with the document, or 304.
fn document_response(headers: &HeaderMap, view: &DocumentView) -> Response {
    let mut r = if not_modified(headers, view.version) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(document_json(&view.body, view.version)).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, etag(view.version));
    h.insert(header::LAST_MODIFIED, last_modified(view.modified_ms));
    h.insert("accept-patch", HeaderValue::from_static(ACCEPT_PATCH));
    r
}

fn location(collection: &str, id: &str) -> String {
    format!("/docs/{}/{}", encode_segment(collection), encode_segment(id))
}

fn deleted_view(collection: &str, id: &str, version: u64) -> Value {
    serde_json::to_value(DeletedView {
        collection: collection.into(),
        id: id.into(),
        deleted: true,
        version,
    })
    .unwrap_or_default()
}

/// The response to a write: 201 with `Location` for a create, else 200;
/// the document (or the tombstone) with `ETag`, `Last-Modified`,
/// `Strata-Position` and, for a merge-base write, `Strata-Merged-Onto`.
fn write_response(collection: &str, id: &str, done: &DocumentWrite) -> Response {
    let created = done.kind == Some(ChangeKind::Created);
    let body = match &done.body {
        Some(b) => document_json(b, done.version),
        None => deleted_view(collection, id, done.version),
    };
    let mut r = Written {
        status: if created { StatusCode::CREATED } else { StatusCode::OK },
        version: done.version,
        position: done.position,
        location: created.then(|| location(collection, id)),
        appended: done.appended as u64,
        body,
    }
    .into_response();
    if done.body.is_some() {
        r.headers_mut()
            .insert(header::LAST_MODIFIED, last_modified(done.modified_ms));
    }
    if let Some(v) = done.merged_onto {
        r.headers_mut().insert(MERGED_ONTO_HEADER, HeaderValue::from(v));
    }
    r
}

/// A keyed write retried after its first run died with the process, whose
/// write had landed: the document as it is now.
async fn after_crash(
    state: &Documents,
    collection: &str,
    id: &str,
    event: &RecordedEvent,
) -> Result<Response, HttpError> {
    let status = if event.event_type == "DocumentCreated" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let (version, body) = match state.documents.get(collection, id, None).await {
        Ok(view) => (view.version, document_json(&view.body, view.version)),
        Err(DocumentError::Deleted { version, .. }) => (version, deleted_view(collection, id, version)),
        Err(e) => return Err(to_http(state, e)),
    };
    let location = (status == StatusCode::CREATED).then(|| location(collection, id));
    Ok(recovered(status, version, event, location, body))
}

/// Every write: preconditions, actor, the crash check of a keyed retry,
/// then the service.
async fn write(
    state: &Documents,
    headers: &HeaderMap,
    collection: String,
    id: String,
    change: Change,
    body_version: Option<u64>,
) -> Result<Response, HttpError> {
    let preconditions = input::preconditions(headers, body_version)?;
    let actor = input::actor(headers)?;
    let stream = DocumentService::document_stream(&collection, &id).map_err(|e| to_http(state, e))?;
    if let Some(event) = written_before_crash(&*state.store, headers, &stream).await? {
        return after_crash(state, &collection, &id, &event).await;
    }
    let request = WriteRequest {
        collection,
        id,
        change,
        preconditions,
        actor,
        at_ms: now_ms(),
        require_precondition: state.config.require_if_match,
    };
    let done = state
        .documents
        .write(request.clone(), &metadata(headers))
        .await
        .map_err(|e| to_http(state, e))?;
    Ok(write_response(&request.collection, &request.id, &done))
}

/// Reads a document, or the document as it was at `?version=n`.
#[utoipa::path(
    get,
    path = "/docs/{collection}/{id}",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("id" = String, Path, description = "The document's id (1 to 128 bytes)", min_length = 1, max_length = 128),
        VersionQuery,
    ),
    responses(
        (status = 200, description = "The document with `_version`", body = DocumentBody,
            headers(("ETag" = String, description = "The version, `\"3\"`"),
                    ("Last-Modified" = String, description = "When it last changed"),
                    ("Accept-Patch" = String, description = "The patch media types PATCH takes"))),
        (status = 304, description = "If-None-Match names this version"),
        (status = 404, description = "`not-found` (collection, document or version) or `document-deleted` (with `deleted_version`, `deleted_at`, `deleted_by`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_document(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Response, HttpError> {
    let view = state
        .documents
        .get(&collection, &id, q.version)
        .await
        .map_err(|e| to_http(&state, e))?;
    Ok(document_response(&headers, &view))
}

/// Creates or replaces a document.
#[utoipa::path(
    put,
    path = "/docs/{collection}/{id}",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("id" = String, Path, description = "The document's id (1 to 128 bytes)", min_length = 1, max_length = 128),
        ("If-Match" = Option<String>, Header, description = "`*`, or the ETag(s) the write was decided on (strong: `\"3\"`, `\"3\", \"4\"`)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only (also brings a deleted document back)"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "An HTTP date: only if the document has not changed after it"),
        ("Strata-Merge-Base" = Option<String>, Header, description = "The version the write started from: applied onto the current version when the fields it changes were not changed since"),
        ("Strata-Actor" = Option<String>, Header, description = "Who makes the change (recorded with it)"),
    ),
    request_body(content = DocumentBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced (or already so)", body = DocumentBody,
            headers(("ETag" = String, description = "The new version"), ("Last-Modified" = String, description = "When"),
                    ("Strata-Position" = u64, description = "The log position of the write"),
                    ("Strata-Merged-Onto" = u64, description = "With Strata-Merge-Base: the version it was applied onto"))),
        (status = 201, description = "Created", body = DocumentBody,
            headers(("ETag" = String, description = "`\"1\"` (or the version after a delete)"), ("Location" = String, description = "The document"),
                    ("Strata-Position" = u64, description = "The log position of the write"))),
        (status = 400, description = "`invalid-id`, `invalid-if-match` (weak or malformed), `invalid-precondition`, `malformed-json`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found` (collection) or `document-deleted` (send If-None-Match: * to create it again)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` (stale precondition or overlapping merge: `changes_since`, `conflicting_fields`, `merged`), `already-exists` (If-None-Match: *), `unique-violation` (`field`, `value`, `holder`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` or `already-exists` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body` (not an object, a bad `_version`, a repeated member name) or `validation-failed` (a unique field holding an object or array)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`: the collection (or server) requires a precondition", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`: a write without a precondition lost every retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put_document(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    body: RawBody,
) -> Result<Response, HttpError> {
    let (doc, version) = input::put_body(body)?;
    write(&state, &headers, collection, id, Change::Put(doc), version).await
}

/// Patches a document: RFC 7396 merge patch or RFC 6902 JSON Patch, by media type.
#[utoipa::path(
    patch,
    path = "/docs/{collection}/{id}",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("id" = String, Path, description = "The document's id (1 to 128 bytes)", min_length = 1, max_length = 128),
        ("If-Match" = Option<String>, Header, description = "`*`, or the ETag(s) the patch was decided on"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "An HTTP date: only if the document has not changed after it"),
        ("Strata-Merge-Base" = Option<String>, Header, description = "The version the patch was decided on, to be merged onto the current one"),
        ("Strata-Actor" = Option<String>, Header, description = "Who makes the change"),
    ),
    request_body(content(
        (MergePatchBody = "application/merge-patch+json"),
        (JsonPatchBody = "application/json-patch+json"),
    )),
    responses(
        (status = 200, description = "Patched (or already so)", body = DocumentBody,
            headers(("ETag" = String, description = "The new version"), ("Last-Modified" = String, description = "When"),
                    ("Strata-Position" = u64, description = "The log position of the write"),
                    ("Strata-Merged-Onto" = u64, description = "With Strata-Merge-Base: the version it was applied onto"))),
        (status = 400, description = "`invalid-id`, `invalid-if-match`, `invalid-precondition`, `malformed-json`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found` or `document-deleted`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version` (with `changes_since`, `conflicting_fields`, `merged`), `unique-violation`, or `patch-failed` (an operation does not apply: `operation`, `op`, `path`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: neither merge patch nor JSON Patch (see Accept-Patch)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body` (not a patch document) or `validation-failed` (the result is not an object, or names `_version`)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn patch_document(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    body: RawBody,
) -> Result<Response, HttpError> {
    let (change, version) = input::patch_body(body)?;
    write(&state, &headers, collection, id, change, version).await
}

/// Deletes a document (a tombstone: its history stays readable).
#[utoipa::path(
    delete,
    path = "/docs/{collection}/{id}",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("id" = String, Path, description = "The document's id (1 to 128 bytes)", min_length = 1, max_length = 128),
        ("If-Match" = Option<String>, Header, description = "`*`, or the ETag(s) the delete was decided on"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "An HTTP date: only if the document has not changed after it"),
        ("Strata-Merge-Base" = Option<String>, Header, description = "The version the delete was decided on: refused if anything changed since"),
        ("Strata-Actor" = Option<String>, Header, description = "Who deletes it"),
    ),
    responses(
        (status = 200, description = "Deleted", body = DeletedView,
            headers(("ETag" = String, description = "The tombstone's version"), ("Strata-Position" = u64, description = "The log position of the write"))),
        (status = 400, description = "`invalid-id`, `invalid-if-match`, `invalid-precondition`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found` or `document-deleted`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_document(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath((collection, id)): ApiPath<(String, String)>,
) -> Result<Response, HttpError> {
    write(&state, &headers, collection, id, Change::Delete, None).await
}

/// A document's changes: version, kind, actor, time, the fields changed.
#[utoipa::path(
    get,
    path = "/docs/{collection}/{id}/history",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("id" = String, Path, description = "The document's id (1 to 128 bytes)", min_length = 1, max_length = 128),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "The changes, oldest first (deletes included)", body = HistoryView),
        (status = 404, description = "`not-found`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn document_history(
    State(state): State<Documents>,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, HttpError> {
    let limit = page_limit(q.limit)?;
    let page = state
        .documents
        .history(&collection, &id, q.from.unwrap_or(1), limit)
        .await
        .map_err(|e| to_http(&state, e))?;
    Ok(Json(HistoryView {
        collection,
        id,
        changes: page.changes.iter().map(change_view).collect(),
        next_from: page.next,
    })
    .into_response())
}
