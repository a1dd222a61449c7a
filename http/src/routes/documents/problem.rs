//! How the errors of the document service become problem responses: the
//! one place where a [`DocumentError`] meets an HTTP status.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use strata_aggregates::domain::document::{
    ChangeRecord, ConflictReason, DocumentConflict, DocumentError, Expected, UniqueField,
};

use super::model::{ChangeView, CollectionView, document_json, unique_json};
use crate::error::{HttpError, StaleVersion};
use crate::problem::{DocumentProblem, Problem, ProblemType};
use crate::routes::Documents;

/// The media types `PATCH` of a document takes (the `Accept-Patch` header).
pub(crate) const ACCEPT_PATCH: &str = "application/merge-patch+json, application/json-patch+json";

impl DocumentProblem {
    fn new(kind: ProblemType, status: StatusCode, detail: String) -> DocumentProblem {
        DocumentProblem {
            kind,
            problem: Problem {
                problem_type: kind.uri(),
                title: kind.title().to_string(),
                status: status.as_u16(),
                detail,
                ..Problem::default()
            },
            etag: None,
            accept_patch: false,
        }
    }

    fn document(mut self, collection: &str, id: &str) -> DocumentProblem {
        self.problem.resource = Some("document".into());
        self.problem.id = Some(format!("{collection}/{id}"));
        self
    }

    fn member(mut self, name: &str, value: Value) -> DocumentProblem {
        self.problem.members.insert(name.to_string(), value);
        self
    }

    fn into_error(self) -> HttpError {
        HttpError::Document(Box::new(self))
    }

    /// Adds the problem's headers to a response.
    pub(crate) fn add_headers(&self, headers: &mut HeaderMap) {
        if let Some(v) = self.etag {
            headers.insert(header::ETAG, crate::precondition::etag(v));
        }
        if self.accept_patch {
            headers.insert("accept-patch", HeaderValue::from_static(ACCEPT_PATCH));
        }
    }
}

/// A time as an HTTP date (`Last-Modified`, `deleted_at`).
pub(crate) fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A time as RFC 3339 with milliseconds (histories, conflicts).
pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One change as a history and a conflict show it.
pub(crate) fn change_view(c: &ChangeRecord) -> ChangeView {
    ChangeView {
        version: c.version,
        kind: c.kind.as_str().to_string(),
        actor: c.actor.clone(),
        at: rfc3339(c.at_ms),
        changed: c.changed.clone(),
        position: c.position,
        merge_base: c.merge_base,
    }
}

fn change_json(c: &ChangeRecord) -> Value {
    serde_json::to_value(change_view(c)).unwrap_or_default()
}

/// A 415 for a body of the wrong media type, saying which ones the route takes.
pub(crate) fn unsupported_media_type(content_type: Option<String>, expected: &'static str, patch: bool) -> HttpError {
    let e = HttpError::UnsupportedMediaType { content_type, expected };
    let mut p = DocumentProblem::new(
        ProblemType::UnsupportedMediaType,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        e.to_string(),
    );
    p.accept_patch = patch;
    p.into_error()
}

/// An invalid precondition header (400).
pub(crate) fn invalid_precondition(detail: String) -> HttpError {
    DocumentProblem::new(ProblemType::InvalidPrecondition, StatusCode::BAD_REQUEST, detail).into_error()
}

fn fields_json(fields: &[UniqueField]) -> Value {
    Value::Array(fields.iter().map(unique_json).collect())
}

/// Maps an error of the document service to its problem.
pub(crate) fn to_http(state: &Documents, e: DocumentError) -> HttpError {
    let conflict_status = state.config.conflict_status.status();
    match e {
        DocumentError::InvalidCollectionName { name, reason } => HttpError::InvalidId {
            id: name,
            reason: format!("a collection name {reason}"),
        },
        DocumentError::InvalidId { id, reason } => HttpError::InvalidId {
            id,
            reason: reason.to_string(),
        },
        DocumentError::InvalidField { field, reason } => HttpError::ValidationFailed {
            reason: format!("unique field {field:?}: {reason}"),
        },
        DocumentError::CollectionNotDeclared { collection } => HttpError::NotFound {
            resource: "collection",
            id: collection,
        },
        e @ DocumentError::UniqueFieldsFixed { .. } => {
            let detail = e.to_string();
            let DocumentError::UniqueFieldsFixed {
                collection,
                declared,
                requested,
            } = e
            else {
                unreachable!()
            };
            let mut p = DocumentProblem::new(ProblemType::DeclarationConflict, StatusCode::CONFLICT, detail)
                .member("declared", fields_json(&declared))
                .member("requested", fields_json(&requested));
            p.problem.resource = Some("collection".into());
            p.problem.id = Some(collection);
            p.into_error()
        }
        DocumentError::CollectionStale {
            collection,
            expected,
            current_version,
            current,
        } => HttpError::StaleVersion(Box::new(StaleVersion {
            status: conflict_status,
            resource: "collection",
            id: collection.clone(),
            expected: expected.into(),
            current_version,
            current: current
                .map(|spec| CollectionView::new(&collection, &spec, current_version))
                .and_then(|v| serde_json::to_value(v).ok())
                .unwrap_or(Value::Null),
            events_since: Vec::new(),
            events_since_complete: false,
        })),
        e @ DocumentError::InvalidPreconditions { .. } => invalid_precondition(e.to_string()),
        e @ DocumentError::PreconditionRequired { .. } => {
            DocumentProblem::new(ProblemType::PreconditionRequired, StatusCode::PRECONDITION_REQUIRED, format!(
                "{e}: If-Match with the ETag you read, If-Unmodified-Since, _version in the body, Strata-Merge-Base, or If-None-Match: * to create (If-Match: * names no version)"
            ))
            .into_error()
        }
        DocumentError::NotFound { collection, id } => HttpError::NotFound {
            resource: "document",
            id: format!("{collection}/{id}"),
        },
        e @ DocumentError::Deleted { .. } => {
            let detail = format!("{e}; PUT with If-None-Match: * creates it again");
            let DocumentError::Deleted {
                collection,
                id,
                version,
                at_ms,
                actor,
            } = e
            else {
                unreachable!()
            };
            DocumentProblem::new(ProblemType::DocumentDeleted, StatusCode::NOT_FOUND, detail)
                .document(&collection, &id)
                .member("deleted_version", version.into())
                .member("deleted_at", rfc3339(at_ms).into())
                .member("deleted_by", actor.into())
                .into_error()
        }
        e @ DocumentError::VersionNotFound { .. } => {
            let detail = e.to_string();
            let DocumentError::VersionNotFound {
                collection,
                id,
                current,
                ..
            } = e
            else {
                unreachable!()
            };
            let mut p = DocumentProblem::new(ProblemType::NotFound, StatusCode::NOT_FOUND, detail).document(&collection, &id);
            p.problem.current_version = Some(current);
            p.into_error()
        }
        DocumentError::Conflict(c) => conflict(conflict_status, *c),
        e @ DocumentError::UniqueViolation { .. } => {
            let detail = e.to_string();
            let DocumentError::UniqueViolation {
                collection,
                field,
                value,
                holder,
            } = e
            else {
                unreachable!()
            };
            DocumentProblem::new(ProblemType::UniqueViolation, StatusCode::CONFLICT, detail)
                .member("collection", collection.into())
                .member("field", field.into())
                .member("value", value)
                .member("holder", holder.into())
                .into_error()
        }
        e @ DocumentError::PatchFailed { .. } => {
            let detail = e.to_string();
            let DocumentError::PatchFailed {
                collection,
                id,
                failure,
            } = e
            else {
                unreachable!()
            };
            DocumentProblem::new(ProblemType::PatchFailed, StatusCode::CONFLICT, detail)
                .document(&collection, &id)
                .member("operation", failure.operation.into())
                .member("op", failure.op.into())
                .member("path", failure.path.into())
                .into_error()
        }
        DocumentError::InvalidDocument { reason } => HttpError::ValidationFailed { reason },
        DocumentError::Contention {
            collection,
            id,
            attempts,
        } => HttpError::Contention {
            resource: "document",
            id: format!("{collection}/{id}"),
            attempts,
        },
        DocumentError::Store(e) => HttpError::Store(e),
        other => HttpError::Internal {
            reason: other.to_string(),
        },
    }
}

fn expected_json(expected: &Expected) -> Value {
    match expected {
        Expected::Versions(list) if list.len() == 1 => list[0].into(),
        Expected::Versions(list) => list.clone().into(),
        Expected::Exists => "*".into(),
        Expected::Absent => "none".into(),
        Expected::UnmodifiedSince(_) => Value::Null,
    }
}

fn expected_text(expected: &Expected) -> String {
    match expected {
        Expected::Versions(list) => {
            let tags: Vec<String> = list.iter().map(|v| format!("\"{v}\"")).collect();
            format!("version {}", tags.join(" or "))
        }
        Expected::Exists => "that it exists".into(),
        Expected::Absent => "that it does not exist".into(),
        Expected::UnmodifiedSince(t) => format!("no change after {}", http_date(*t)),
    }
}

fn conflict(status: StatusCode, c: DocumentConflict) -> HttpError {
    let kind = match c.reason {
        ConflictReason::Exists => ProblemType::AlreadyExists,
        ConflictReason::Stale | ConflictReason::Overlap => ProblemType::WrongExpectedVersion,
    };
    let at = format!(
        "document {} of {} is at version {}",
        c.id, c.collection, c.current_version
    );
    let detail = match (c.reason, &c.conflicting_fields) {
        (ConflictReason::Exists, _) => format!("{at}; the write was create-only (If-None-Match: *)"),
        (ConflictReason::Overlap, Some(fields)) => format!(
            "{at}; the write changes {}, also changed since its merge base",
            fields.join(", ")
        ),
        (ConflictReason::Overlap, None) => format!(
            "{at}; the write cannot be merged from its merge base (too far behind, or not a version of the document as it is now)"
        ),
        (ConflictReason::Stale, _) => format!("{at}; the write expected {}", expected_text(&c.expected)),
    };
    let mut p = DocumentProblem::new(kind, status, detail).document(&c.collection, &c.id);
    p.problem.expected_version = match c.expected {
        Expected::UnmodifiedSince(_) => None,
        ref e => Some(expected_json(e)),
    };
    if let Expected::UnmodifiedSince(t) = c.expected {
        p = p.member("if_unmodified_since", http_date(t).into());
    }
    p.problem.current_version = Some(c.current_version);
    p.problem.current = Some(match &c.current {
        Some(body) => document_json(body, c.current_version),
        None => Value::Null,
    });
    if c.current.is_some() {
        p = p.member("last_modified", http_date(c.modified_ms).into());
    }
    if c.reason != ConflictReason::Exists {
        p = p
            .member(
                "changes_since",
                Value::Array(c.changes_since.iter().map(change_json).collect()),
            )
            .member("changes_since_complete", c.changes_since_complete.into());
    }
    if let Some(fields) = c.conflicting_fields {
        p = p.member("conflicting_fields", fields.into());
    }
    if let Some(merged) = &c.merged {
        p = p.member("merged", document_json(merged, c.current_version));
    }
    p.etag = (c.current_version > 0).then_some(c.current_version);
    p.into_error()
}
