//! How an [`HttpError`] becomes a problem response: what it is answered
//! as (itself, or the table's answer for an error from below), its
//! problem type, status and body, the headers that go with them
//! (`ETag`, `WWW-Authenticate`, `Retry-After`), and the response itself.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::answer::{self, Mapped};
use super::{HttpError, TokenRefusal};
use crate::problem::{PROBLEM_JSON, Problem, ProblemType};

/// What an error is answered as: itself for a problem of http's own, the
/// table's answer (`answer.rs`) for an error from below.
pub(crate) enum Answer<'a> {
    /// A problem of http's own.
    Own(&'a HttpError),
    /// An error from below, mapped.
    Mapped(Mapped),
}

impl Answer<'_> {
    /// The problem-shaped error answered.
    pub(crate) fn error(&self) -> &HttpError {
        match self {
            Answer::Own(e) => e,
            Answer::Mapped(m) => &m.answer,
        }
    }

    /// Whether a rule chose the answer (http's own problems always are).
    pub(crate) fn deliberate(&self) -> bool {
        match self {
            Answer::Own(_) => true,
            Answer::Mapped(m) => m.deliberate,
        }
    }
}

impl HttpError {
    /// What this error is answered as.
    pub(crate) fn answer(&self) -> Answer<'_> {
        match self {
            HttpError::Store(e) => Answer::Mapped(answer::log(e)),
            HttpError::Projection(e) => Answer::Mapped(answer::read_model(e)),
            HttpError::Order { id, source } => Answer::Mapped(answer::order(id, source)),
            HttpError::Stock { sku, source } => Answer::Mapped(answer::stock(sku, source)),
            HttpError::Subscription(e) => Answer::Mapped(answer::group(e)),
            own => Answer::Own(own),
        }
    }

    /// The problem type this error is answered with.
    pub fn problem_type(&self) -> ProblemType {
        match self.answer().error() {
            HttpError::StaleVersion(_) => ProblemType::WrongExpectedVersion,
            HttpError::InvalidTransition { .. } => ProblemType::InvalidTransition,
            HttpError::AlreadyExists { .. } => ProblemType::AlreadyExists,
            HttpError::InsufficientStock { .. } => ProblemType::InsufficientStock,
            HttpError::StockStateConflict { .. } => ProblemType::StockStateConflict,
            HttpError::DuplicateEventId { .. } => ProblemType::DuplicateEventId,
            HttpError::IdempotencyKeyInFlight { .. } => ProblemType::IdempotencyKeyInFlight,
            HttpError::PaymentMismatch { .. } => ProblemType::PaymentMismatch,
            HttpError::UnknownSku { .. } => ProblemType::UnknownSku,
            HttpError::ValidationFailed { .. } => ProblemType::ValidationFailed,
            HttpError::InvalidBody { .. } => ProblemType::InvalidBody,
            HttpError::IdempotencyKeyReused { .. } => ProblemType::IdempotencyKeyReused,
            HttpError::MalformedJson { .. } => ProblemType::MalformedJson,
            HttpError::InvalidId { .. } => ProblemType::InvalidId,
            HttpError::InvalidIfMatch { .. } => ProblemType::InvalidIfMatch,
            HttpError::ConflictingExpectedVersions { .. } => ProblemType::ConflictingExpectedVersions,
            HttpError::InvalidParameter { .. } => ProblemType::InvalidParameter,
            HttpError::InvalidEvents { .. } => ProblemType::InvalidEvents,
            HttpError::InvalidIdempotencyKey { .. } => ProblemType::InvalidIdempotencyKey,
            HttpError::ReservedStream { .. } => ProblemType::ReservedStream,
            HttpError::NotFound { .. } => ProblemType::NotFound,
            HttpError::StreamDeleted { .. } => ProblemType::StreamDeleted,
            HttpError::ScavengeRunning => ProblemType::ScavengeRunning,
            HttpError::MethodNotAllowed { .. } => ProblemType::MethodNotAllowed,
            HttpError::PayloadTooLarge { .. } => ProblemType::PayloadTooLarge,
            HttpError::UnsupportedMediaType { .. } => ProblemType::UnsupportedMediaType,
            HttpError::PreconditionRequired => ProblemType::PreconditionRequired,
            HttpError::Unauthorized { .. } => ProblemType::Unauthorized,
            HttpError::InsufficientScope { .. } => ProblemType::InsufficientScope,
            HttpError::ForeignHost { .. } => ProblemType::MisdirectedRequest,
            HttpError::InsecureBind { .. } | HttpError::TokensDamaged { .. } => ProblemType::Internal,
            HttpError::GroupExists { .. } => ProblemType::SubscriptionGroupExists,
            HttpError::StockContention { .. } => ProblemType::StockContention,
            HttpError::Contention { .. } => ProblemType::Contention,
            HttpError::ReadModelLagging { .. } => ProblemType::ReadModelLagging,
            HttpError::Unavailable { .. } => ProblemType::ServiceUnavailable,
            HttpError::Document(d) => d.kind,
            HttpError::Internal { .. } | HttpError::Io { .. } => ProblemType::Internal,
            // Never an answer: the table answers them with problems of
            // http's own.
            HttpError::Store(_)
            | HttpError::Projection(_)
            | HttpError::Order { .. }
            | HttpError::Stock { .. }
            | HttpError::Subscription(_) => ProblemType::Internal,
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self.answer().error() {
            HttpError::StaleVersion(s) => s.status,
            HttpError::Document(d) => {
                StatusCode::from_u16(d.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => other.problem_type().default_status(),
        }
    }

    /// The problem body of this error (without `instance`).
    pub fn to_problem(&self) -> Problem {
        let answer = self.answer();
        let answer = answer.error();
        if let HttpError::Document(d) = answer {
            let mut p = d.problem.clone();
            p.retry_after = answer.retry_after();
            return p;
        }
        let kind = answer.problem_type();
        let mut p = Problem {
            problem_type: kind.uri(),
            title: kind.title().to_string(),
            status: answer.status().as_u16(),
            detail: answer.to_string(),
            ..Problem::default()
        };
        match answer {
            HttpError::StaleVersion(s) => {
                p.resource = Some(s.resource.to_string());
                p.id = Some(s.id.clone());
                p.expected_version = Some(s.expected.clone());
                p.current_version = Some(s.current_version);
                p.current = Some(s.current.clone());
                p.events_since = Some(s.events_since.clone());
                p.events_since_complete = Some(s.events_since_complete);
            }
            HttpError::InvalidTransition {
                resource,
                id,
                current_status,
                command,
                allowed_commands,
            } => {
                p.resource = Some(resource.to_string());
                p.id = Some(id.clone());
                p.current_status = Some(current_status.clone());
                p.command = Some(command.clone());
                p.allowed_commands = Some(allowed_commands.clone());
            }
            HttpError::AlreadyExists { resource, id } | HttpError::NotFound { resource, id } => {
                p.resource = Some(resource.to_string());
                p.id = Some(id.clone());
            }
            HttpError::InsufficientStock {
                sku,
                requested,
                available,
            } => {
                p.resource = Some("stock item".into());
                p.id = Some(sku.clone());
                p.requested = Some(*requested);
                p.available = Some(*available);
            }
            HttpError::StockStateConflict { sku, .. }
            | HttpError::UnknownSku { sku }
            | HttpError::StockContention { sku, .. } => {
                p.resource = Some("stock item".into());
                p.id = Some(sku.clone());
            }
            HttpError::GroupExists { group } => {
                p.resource = Some("subscription group".into());
                p.id = Some(group.clone());
            }
            HttpError::Contention { resource, id, .. } => {
                p.resource = Some((*resource).into());
                p.id = Some(id.clone());
            }
            HttpError::DuplicateEventId { stream, .. } | HttpError::ReservedStream { stream } => {
                p.resource = Some("stream".into());
                p.id = Some(stream.clone());
            }
            HttpError::IdempotencyKeyInFlight { key } | HttpError::IdempotencyKeyReused { key } => {
                p.resource = Some("idempotency key".into());
                p.id = Some(key.clone());
            }
            HttpError::PaymentMismatch {
                order_id,
                total_cents,
                amount_cents,
            } => {
                p.resource = Some("order".into());
                p.id = Some(order_id.clone());
                p.total_cents = Some(*total_cents);
                p.amount_cents = Some(*amount_cents);
            }
            HttpError::InsufficientScope { token, scope, needed } => {
                p.resource = Some("token".into());
                p.id = Some(token.clone());
                p.members.insert("scope".into(), Value::from(scope.name()));
                p.members.insert("needed_scope".into(), Value::from(needed.name()));
            }
            HttpError::ReadModelLagging { position, applied } => {
                p.position = Some(*position);
                p.applied_position = Some(*applied);
            }
            _ => {}
        }
        p.retry_after = self.retry_after();
        p
    }

    /// Seconds a client should wait before retrying, for transient problems.
    pub fn retry_after(&self) -> Option<u64> {
        match self.problem_type() {
            ProblemType::IdempotencyKeyInFlight
            | ProblemType::StockContention
            | ProblemType::Contention
            | ProblemType::ReadModelLagging
            | ProblemType::ServiceUnavailable => Some(1),
            _ => None,
        }
    }
}

impl HttpError {
    /// The `WWW-Authenticate` challenge of a refused credential (RFC 6750).
    fn challenge(&self) -> Option<HeaderValue> {
        let value = match self {
            HttpError::Unauthorized {
                reason: TokenRefusal::Missing,
            } => r#"Bearer realm="strata""#.to_string(),
            HttpError::Unauthorized { .. } => r#"Bearer realm="strata", error="invalid_token""#.to_string(),
            HttpError::InsufficientScope { needed, .. } => {
                format!(r#"Bearer realm="strata", error="insufficient_scope", scope="{needed}""#)
            }
            _ => return None,
        };
        HeaderValue::from_str(&value).ok()
    }
}

/// A response extension naming the problem type of an error response, for
/// metrics (conflicts per route) and logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProblemKind(pub ProblemType);

tokio::task_local! {
    /// The request path, for the `instance` member of problem bodies.
    pub(crate) static REQUEST_PATH: String;
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let answer = self.answer();
        let answered = answer.error();
        let problem_type = answered.problem_type();
        let mut problem = self.to_problem();
        problem.instance = REQUEST_PATH.try_with(Clone::clone).ok();
        let status = answered.status();
        if !answer.deliberate() {
            tracing::error!(error = %self, "no answer is chosen for this error: answered as internal-error");
        } else if status.is_server_error() {
            tracing::error!(problem = %problem_type, error = %self, "request failed");
        } else {
            tracing::debug!(problem = %problem_type, error = %self, "request refused");
        }
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let HttpError::StaleVersion(s) = answered
            && let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", s.current_version))
        {
            headers.insert(header::ETAG, v);
        }
        if let HttpError::Document(d) = answered {
            d.add_headers(headers);
        }
        if let Some(challenge) = answered.challenge() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = answered.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ProblemKind(problem_type));
        response
    }
}
