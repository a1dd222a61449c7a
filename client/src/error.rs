//! What a call to the service can end in, other than success.

use serde_json::Value;

/// A write refused because the document moved since the version it was
/// decided on (`409`/`412 wrong-expected-version` or `already-exists`),
/// with what the service said about it.
#[derive(Clone, PartialEq, Debug)]
pub struct Conflict {
    /// The status (409, or 412 on a server run with `--conflict-status 412`).
    pub status: u16,
    /// The problem type (`/problems/wrong-expected-version`, `/problems/already-exists`).
    pub problem_type: String,
    /// The service's explanation.
    pub detail: String,
    /// The document's version now.
    pub current_version: u64,
    /// The document now (with `_version`), when it exists.
    pub current: Option<Value>,
    /// The changes since the write's version (version, kind, actor, at, changed).
    pub changes_since: Vec<Value>,
    /// The fields the write changes that were also changed since, when the
    /// service could tell.
    pub conflicting_fields: Option<Vec<String>>,
    /// When no field overlaps: the document the merge would produce.
    pub merged: Option<Value>,
    /// How many attempts [`crate::Client::update`] made before giving up (1 for a single write).
    pub attempts: u32,
}

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL cannot be used.
    ///
    /// Handling: fix the URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A bearer token that cannot be sent as a header value (a control
    /// character, a line break).
    ///
    /// Handling: pass the secret `strata token create` printed, as printed.
    #[error("the bearer token cannot be sent in a header (it holds a control character)")]
    InvalidToken,
    /// The request could not be sent, or its response was lost. A write
    /// sent with an Idempotency-Key was already retried with the same key;
    /// its outcome is unknown.
    ///
    /// Handling: retry later (a write with the same key is safe to send again).
    #[error("{method} {url}: {source}")]
    Transport {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The collection, document or version does not exist.
    ///
    /// Handling: create it, or read something else.
    #[error("not found: {detail}")]
    NotFound {
        /// The service's explanation.
        detail: String,
    },
    /// The document was deleted at `version`.
    ///
    /// Handling: create it again with [`crate::Precondition::Create`] if that is meant.
    #[error("the document was deleted at version {version}")]
    Deleted {
        /// The tombstone's version.
        version: u64,
    },
    /// A conflict the client could not resolve (see [`Conflict`]).
    ///
    /// Handling: show the fields to whoever decides, or decide again on `current`.
    #[error("conflict at version {}: {}", .0.current_version, .0.detail)]
    Conflict(Box<Conflict>),
    /// Another document holds a value of a unique field.
    ///
    /// Handling: choose another value; retrying does not help.
    #[error("{field} {value} is held by document {holder}")]
    UniqueViolation {
        /// The unique field (a JSON Pointer).
        field: String,
        /// The value.
        value: Value,
        /// The id of the document holding it.
        holder: String,
    },
    /// Any other problem the service answered (RFC 9457 body).
    ///
    /// Handling: by `problem_type`; 4xx are the request's fault, 5xx may be retried.
    #[error("{status} {problem_type}: {detail}")]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem type (`/problems/<name>`).
        problem_type: String,
        /// The service's explanation.
        detail: String,
        /// The whole problem body.
        body: Value,
    },
    /// A response that is not what the API answers (no problem body, no ETag, not JSON).
    ///
    /// Handling: a client and service that do not match; report it.
    #[error("unexpected response {status}: {reason}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        reason: String,
    },
}

impl ClientError {
    /// The conflict, if this is one.
    pub fn conflict(&self) -> Option<&Conflict> {
        match self {
            ClientError::Conflict(c) => Some(c),
            _ => None,
        }
    }
}
