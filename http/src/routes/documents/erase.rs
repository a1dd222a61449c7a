//! `POST /docs/{collection}/{id}/erase`: a document's erasure, what a
//! support engineer calls for an erasure request (admin scope). The
//! decisions are in `docs/retention.md`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_aggregates::domain::document::EraseRequest;

use super::input;
use super::model::ErasedView;
use super::problem::{now_ms, to_http};
use crate::error::HttpError;
use crate::extract::ApiPath;
use crate::problem::Problem;
use crate::routes::{Documents, metadata};

/// Erases a document: it is deleted (releasing its unique values), every
/// unique value it ever held is cleared from its value's stream, and its
/// stream is hard-deleted, so it reads as not found, can never be written
/// again, and the next scavenge erases its bodies from disk.
#[utoipa::path(
    post,
    path = "/docs/{collection}/{id}/erase",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("id" = String, Path, description = "The document's id (1 to 128 bytes)", min_length = 1, max_length = 128),
        ("If-Match" = Option<String>, Header, description = "`*`, or the ETag(s) the erasure was decided on"),
        ("Strata-Actor" = Option<String>, Header, description = "Who erases it (recorded on the delete, which is erased too)"),
    ),
    responses(
        (status = 200, description = "Erased", body = ErasedView,
            headers(("Strata-Position" = u64, description = "The position of the hard delete's record"))),
        (status = 400, description = "`invalid-id`, `invalid-if-match`, `invalid-parameter` (Strata-Actor)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such collection or document", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`wrong-expected-version`: the document changed since the version named", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`stream-deleted`: already erased", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`precondition-required`: the collection (or server) requires If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`contention`: re-created under the erasure every attempt", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn erase_document(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath((collection, id)): ApiPath<(String, String)>,
) -> Result<Response, HttpError> {
    let request = EraseRequest {
        collection,
        id,
        if_match: input::preconditions(&headers, None)?.if_match,
        actor: input::actor(&headers)?,
        at_ms: now_ms(),
        require_precondition: state.config.require_if_match,
    };
    let done = state
        .documents
        .erase(request.clone(), &metadata(&headers))
        .await
        .map_err(|e| to_http(&state, e))?;
    let view = ErasedView {
        collection: request.collection,
        id: request.id,
        erased: true,
        stream: done.stream.to_string(),
        version: done.version,
        position: done.position,
        unique_values_cleared: done.unique_values_cleared,
    };
    Ok((
        StatusCode::OK,
        [(
            HeaderName::from_static("strata-position"),
            HeaderValue::from(done.position),
        )],
        Json(view),
    )
        .into_response())
}
