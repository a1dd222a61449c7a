//! `GET /docs/{collection}`: a collection's documents a page at a time,
//! from the document listing read model, with read-your-writes through
//! `min_position`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use strata_aggregates::domain::document::DocumentError;
use strata_projections::{DocumentQuery, Projections};
use utoipa::IntoParams;

use super::model::{DocumentListView, ListedDocumentView, document_json};
use super::problem::{rfc3339, to_http};
use crate::error::HttpError;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::Problem;
use crate::routes::orders::page_limit;
use crate::routes::{Documents, STRATA_POSITION};

/// The longest `after` or `prefix`, in characters (a document id is at
/// most 128 bytes, so at most 128 characters).
const MAX_ID_CHARS: usize = 128;

/// The largest `min_position`: positions are 63-bit (PostgreSQL keeps
/// them as `bigint`).
const MAX_POSITION: u64 = i64::MAX as u64;

/// Paging and filtering a collection.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The most documents to return (default 100, at most 1000). A page
    /// also ends before its documents would pass the server's page size
    /// (`--list-page-bytes`, 1 MiB by default), but always holds one.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The `next` of the previous page: only documents with a greater id
    /// (1 to 128 characters, no control characters).
    #[param(min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    after: Option<String>,
    /// Only documents whose id starts with this (1 to 128 characters, no
    /// control characters).
    #[param(min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    prefix: Option<String>,
    /// Wait until the listing has applied this log position (a write's
    /// `Strata-Position`), at most the server's read wait.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    #[serde(default, deserialize_with = "crate::json::integer::option")]
    min_position: Option<u64>,
}

/// `after` or `prefix`: 1 to 128 characters, none of them a control character.
fn id_parameter(name: &str, value: Option<String>) -> Result<Option<String>, HttpError> {
    let Some(value) = value else { return Ok(None) };
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.chars().count() > MAX_ID_CHARS {
        Some("must be at most 128 characters")
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(HttpError::InvalidParameter {
            reason: format!("{name} {reason}"),
        }),
        None => Ok(Some(value)),
    }
}

/// The documents of a collection, a page at a time, in id order.
///
/// Each page reads at most `limit` + 1 entries of the document listing
/// (one key range, one generation of the read model), then each document
/// at the version listed from the log. `next` is the last id of the page;
/// absent on the last page. A deleted document is not listed; one created
/// again is.
#[utoipa::path(
    get,
    path = "/docs/{collection}",
    tag = "documents",
    params(
        ("collection" = String, Path, description = "A declared collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "One page of documents; `next` is the `after` of the following page", body = DocumentListView,
            headers(("Strata-Position" = u64, description = "The position the listing had applied"))),
        (status = 400, description = "`invalid-parameter` (`limit` not in 1..=1000, an empty, too long or control-character `after` or `prefix`, `min_position` above 2^63-1, an unknown or unparsable parameter) or `invalid-id` (the collection name)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: the collection is not declared", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`read-model-lagging` (min_position not reached within the read wait) or `service-unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_documents(
    State(state): State<Documents>,
    State(projections): State<Arc<Projections>>,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, HttpError> {
    let limit = page_limit(q.limit)?;
    let after = id_parameter("after", q.after)?;
    let prefix = id_parameter("prefix", q.prefix)?;
    if q.min_position.is_some_and(|p| p > MAX_POSITION) {
        return Err(HttpError::InvalidParameter {
            reason: format!("min_position is at most {MAX_POSITION}"),
        });
    }
    if state
        .documents
        .collection(&collection)
        .await
        .map_err(|e| to_http(&state, e))?
        .is_none()
    {
        return Err(to_http(&state, DocumentError::CollectionNotDeclared { collection }));
    }
    let listing = projections.documents();
    if let Some(p) = q.min_position {
        listing
            .model()
            .wait_for(p, state.config.read_wait_timeout)
            .await
            .map_err(HttpError::from)?;
    }
    let query = DocumentQuery {
        after,
        prefix,
        limit,
        max_bytes: state.config.list_page_bytes,
    };
    let page = listing.page(&collection, &query).map_err(HttpError::from)?;
    let bodies = listing
        .read_documents(&*state.store, &collection, &page)
        .await
        .map_err(HttpError::from)?;
    let documents = page
        .documents
        .iter()
        .zip(&bodies)
        .map(|(d, body)| ListedDocumentView {
            id: d.id.clone(),
            version: d.version,
            last_modified: rfc3339(d.modified_ms),
            modified_by: d.modified_by.clone(),
            position: d.position,
            document: document_json(body, d.version),
        })
        .collect();
    let mut r = Json(DocumentListView {
        collection,
        position: page.position,
        documents,
        next: page.next,
    })
    .into_response();
    r.headers_mut()
        .insert(STRATA_POSITION, HeaderValue::from(page.position));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_parameters_are_bounded_in_characters_and_free_of_controls() {
        for good in ["a", " ", "é", &"é".repeat(128), "a/b", "\u{a0}"] {
            assert_eq!(
                id_parameter("after", Some(good.to_string())).unwrap().as_deref(),
                Some(good)
            );
        }
        for bad in ["", &"a".repeat(129), "a\u{0}", "\t", "\u{7f}", "\u{9f}"] {
            let e = id_parameter("prefix", Some(bad.to_string())).unwrap_err();
            assert!(
                matches!(&e, HttpError::InvalidParameter { reason } if reason.starts_with("prefix ")),
                "{bad:?}: {e:?}"
            );
        }
        assert_eq!(id_parameter("after", None).unwrap(), None);
    }
}
