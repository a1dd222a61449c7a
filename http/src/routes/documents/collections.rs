//! `/collections/{name}`: declaring a collection of documents (its unique
//! fields, whether writes need a precondition) and reading the declaration.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_aggregates::domain::document::{CollectionSpec, UniqueField};

use super::input::actor;
use super::model::{CollectionView, DeclareCollection, UniqueFieldSpec};
use super::problem::{invalid_precondition, now_ms, to_http};
use crate::error::{HttpError, StaleVersion};
use crate::extract::{ApiJson, ApiPath};
use crate::precondition::{IfMatch, if_match, if_none_match_any};
use crate::problem::Problem;
use crate::routes::orders::encode_segment;
use crate::routes::{Documents, Written, metadata, versioned};

/// Declares a collection, or changes whether its writes need a precondition.
#[utoipa::path(
    put,
    path = "/collections/{name}",
    tag = "documents",
    params(
        ("name" = String, Path, description = "1 to 64 ASCII letters, digits, `_` and `-`, starting with a letter or digit", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ("If-Match" = Option<String>, Header, description = "The declaration's ETag the change was decided on, or `*`"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: declare only if it is not declared"),
        ("Strata-Actor" = Option<String>, Header, description = "Who declares it"),
    ),
    request_body = DeclareCollection,
    responses(
        (status = 200, description = "Already declared so, or its precondition setting changed", body = CollectionView,
            headers(("ETag" = String, description = "The declaration's version"))),
        (status = 201, description = "Declared", body = CollectionView,
            headers(("ETag" = String, description = "`\"1\"`"), ("Location" = String, description = "The collection"),
                    ("Strata-Position" = u64, description = "The log position of the write"))),
        (status = 400, description = "`invalid-id` (the name), `invalid-if-match`, `invalid-precondition`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`declaration-conflict` (other unique fields: they are fixed) or `wrong-expected-version`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`wrong-expected-version` with --conflict-status 412", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-body` or `validation-failed` (a unique field that is not a valid JSON Pointer, more than 16, overlapping)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn declare_collection(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<DeclareCollection>,
) -> Result<Response, HttpError> {
    let expected = match (if_match(&headers)?, if_none_match_any(&headers)?) {
        (Some(_), true) => {
            return Err(invalid_precondition(
                "If-Match and If-None-Match: * contradict each other".into(),
            ));
        }
        (None, true) => Some(0),
        (Some(IfMatch::Version(v)), false) => Some(v),
        (Some(IfMatch::Any), false) => {
            if state
                .documents
                .collection(&name)
                .await
                .map_err(|e| to_http(&state, e))?
                .is_none()
            {
                return Err(HttpError::StaleVersion(Box::new(StaleVersion {
                    status: state.config.conflict_status.status(),
                    resource: "collection",
                    id: name,
                    expected: "*".into(),
                    current_version: 0,
                    current: serde_json::Value::Null,
                    events_since: Vec::new(),
                    events_since_complete: true,
                })));
            }
            None
        }
        (None, false) => None,
    };
    let unique = body
        .unique
        .iter()
        .map(|u| match u {
            UniqueFieldSpec::Name(field) => UniqueField::parse(field, false),
            UniqueFieldSpec::Field {
                field,
                case_insensitive,
            } => UniqueField::parse(field, *case_insensitive),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::ValidationFailed { reason: e.to_string() })?;
    let spec = CollectionSpec {
        unique,
        require_precondition: body.require_precondition,
    };
    let done = state
        .documents
        .declare(&name, spec, expected, actor(&headers)?, now_ms(), &metadata(&headers))
        .await
        .map_err(|e| to_http(&state, e))?;
    Ok(Written {
        status: if done.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        version: done.info.version,
        position: done.position,
        location: done.created.then(|| format!("/collections/{}", encode_segment(&name))),
        appended: u64::from(done.position.is_some()),
        body: CollectionView::new(&name, &done.info.spec, done.info.version),
    }
    .into_response())
}

/// Reads a collection's declaration.
#[utoipa::path(
    get,
    path = "/collections/{name}",
    tag = "documents",
    params(("name" = String, Path, description = "The collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")),
    responses(
        (status = 200, description = "The declaration", body = CollectionView, headers(("ETag" = String, description = "Its version"))),
        (status = 304, description = "If-None-Match names the current version"),
        (status = 404, description = "`not-found`: not declared", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_collection(
    State(state): State<Documents>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    let info = state
        .documents
        .collection(&name)
        .await
        .map_err(|e| to_http(&state, e))?
        .ok_or_else(|| HttpError::NotFound {
            resource: "collection",
            id: name.clone(),
        })?;
    Ok(versioned(
        &headers,
        info.version,
        CollectionView::new(&name, &info.spec, info.version),
    ))
}
