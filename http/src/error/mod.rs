//! The one error type of strata-http, and how each variant becomes a
//! problem response. Errors of the crates below (the store, the domain,
//! the read models) are kept as they are and answered by the table in
//! `answer.rs`, the one place that maps their kinds to problems;
//! `response.rs` turns either into the problem response.

use axum::http::StatusCode;
use serde_json::Value;
use strata_aggregates::RepositoryError;
use strata_aggregates::domain::service::OrderServiceError;
use strata_aggregates::domain::stock::StockItem;
use strata_projections::ProjectionError;
use strata_store::StoreError;
use strata_subscriptions::SubscriptionError;

use crate::auth::Scope;
use crate::problem::DocumentProblem;

mod answer;
mod response;
#[cfg(test)]
mod tests;

pub(crate) use response::{ProblemKind, REQUEST_PATH};

/// A write decided on a version that is no longer current: what the 409
/// (or 412) body says.
#[derive(Clone, PartialEq, Debug)]
pub struct StaleVersion {
    /// The status configured for version conflicts (409 or 412).
    pub status: StatusCode,
    /// The kind of resource (`order`, `stock item`, `stream`).
    pub resource: &'static str,
    /// Its id.
    pub id: String,
    /// What the request expected: a version, or `"*"`, `"any"`, `"no-stream"`.
    pub expected: Value,
    /// The version now.
    pub current_version: u64,
    /// The resource now.
    pub current: Value,
    /// The events after the expected version, oldest first.
    pub events_since: Vec<Value>,
    /// Whether `events_since` is every such event.
    pub events_since_complete: bool,
}

/// Everything that can go wrong in strata-http: a request's problem, an
/// error of the crates below kept with its type, or a failure to start or
/// serve.
///
/// A problem of http's own maps to one [`ProblemType`](crate::ProblemType) and status (see
/// [`HttpError::problem_type`]); an error from below (`Store`,
/// `Projection`, `Order`, `Stock`) is answered as the table of error kinds
/// in strata-http says (`docs/http.md`, "Errors from below"), with the
/// typed error as this error's `source`. The document routes map their
/// domain's errors to problems in one place of their own
/// (`routes/documents/problem.rs`), as [`HttpError::Document`].
///
/// Handling: request problems are answered as `application/problem+json`;
/// the others are returned by [`crate::Server`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A stale `If-Match` / `expected_version` (409, or 412 when configured).
    #[error("{resource} {id} is at version {current_version}, the request expected {expected}", resource = .0.resource, id = .0.id, current_version = .0.current_version, expected = .0.expected)]
    StaleVersion(Box<StaleVersion>),

    /// A state machine refusal (409).
    #[error("cannot {command} {resource} {id}: it is {current_status}")]
    InvalidTransition {
        /// The resource kind.
        resource: &'static str,
        /// Its id.
        id: String,
        /// Its status.
        current_status: String,
        /// The refused command.
        command: String,
        /// The commands the status accepts.
        allowed_commands: Vec<String>,
    },

    /// A create for an id that exists (409).
    #[error("{resource} {id} already exists")]
    AlreadyExists {
        /// The resource kind.
        resource: &'static str,
        /// The id.
        id: String,
    },

    /// More units requested than available (409).
    #[error("insufficient stock of {sku}: {requested} requested, {available} available")]
    InsufficientStock {
        /// The SKU.
        sku: String,
        /// Units requested.
        requested: u64,
        /// Units available.
        available: u64,
    },

    /// Another stock rule refused the command (409).
    #[error("stock item {sku}: {reason}")]
    StockStateConflict {
        /// The SKU.
        sku: String,
        /// The refusal.
        reason: String,
    },

    /// An event id already used in the stream elsewhere (409).
    #[error("{reason}")]
    DuplicateEventId {
        /// The stream.
        stream: String,
        /// The store's message.
        reason: String,
    },

    /// The first request with this key has not finished (409).
    #[error("a request with Idempotency-Key {key:?} is still in flight")]
    IdempotencyKeyInFlight {
        /// The key.
        key: String,
    },

    /// Payment not equal to the total (422).
    #[error("payment of {amount_cents} cents does not match the order total of {total_cents} cents")]
    PaymentMismatch {
        /// The order.
        order_id: String,
        /// Its total.
        total_cents: u64,
        /// The amount offered.
        amount_cents: u64,
    },

    /// An order line names an unregistered SKU (422).
    #[error("unknown SKU {sku}")]
    UnknownSku {
        /// The SKU.
        sku: String,
    },

    /// A domain rule on input values (422).
    #[error("{reason}")]
    ValidationFailed {
        /// The rule broken.
        reason: String,
    },

    /// JSON of the wrong shape (422).
    #[error("{reason}")]
    InvalidBody {
        /// Where and what.
        reason: String,
    },

    /// The key came with another request (422).
    #[error("Idempotency-Key {key:?} was first used for a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },

    /// Not JSON (400).
    #[error("{reason}")]
    MalformedJson {
        /// The parser's message.
        reason: String,
    },

    /// A path id that cannot name a resource (400).
    #[error("invalid id {id:?}: {reason}")]
    InvalidId {
        /// The id (cleaned of control characters).
        id: String,
        /// What is wrong.
        reason: String,
    },

    /// An If-Match this API cannot use (400).
    #[error("invalid If-Match {value:?}: {reason}")]
    InvalidIfMatch {
        /// The header value.
        value: String,
        /// What is wrong.
        reason: String,
    },

    /// If-Match and expected_version name different versions (400).
    #[error("the precondition header ({if_match}) and expected_version ({body}) disagree")]
    ConflictingExpectedVersions {
        /// The If-Match (or If-None-Match) value.
        if_match: String,
        /// The expected_version value.
        body: String,
    },

    /// A bad query or path parameter (400).
    #[error("{reason}")]
    InvalidParameter {
        /// Which and why.
        reason: String,
    },

    /// Events the log refuses (400).
    #[error("{reason}")]
    InvalidEvents {
        /// Why.
        reason: String,
    },

    /// A malformed Idempotency-Key (400).
    #[error("invalid Idempotency-Key: {reason}")]
    InvalidIdempotencyKey {
        /// Why.
        reason: String,
    },

    /// A domain or system stream written through the generic log API (403).
    #[error("stream {stream} is reserved: write it through its resource routes")]
    ReservedStream {
        /// The stream.
        stream: String,
    },

    /// No such resource (404).
    #[error("{resource} {id} does not exist")]
    NotFound {
        /// The resource kind.
        resource: &'static str,
        /// The id or path.
        id: String,
    },

    /// A write to a hard-deleted (tombstoned) stream (410).
    #[error("{reason}")]
    StreamDeleted {
        /// What was refused.
        reason: String,
    },

    /// A scavenge asked for while one runs (409).
    #[error("a scavenge is running already: watch strata_scavenge_running in /metrics")]
    ScavengeRunning,

    /// A method the route does not take (405).
    #[error("method {method} is not allowed on this route")]
    MethodNotAllowed {
        /// The method.
        method: String,
    },

    /// Over the body limit or the log's limits (413).
    #[error("{reason}")]
    PayloadTooLarge {
        /// Which limit.
        reason: String,
    },

    /// Not a media type the route takes (415).
    #[error("this route takes a body of type {expected}; {}", media_type_sent(.content_type.as_deref()))]
    UnsupportedMediaType {
        /// What was sent.
        content_type: Option<String>,
        /// What the route takes.
        expected: &'static str,
    },

    /// A problem of the document routes, built where the document errors
    /// are mapped (`routes/documents`): its type, status and members.
    #[error("{}", .0.problem.detail)]
    Document(Box<DocumentProblem>),

    /// A persistent subscription group of this name exists with other
    /// settings (409).
    #[error("persistent subscription group {group} already exists with other settings")]
    GroupExists {
        /// The group.
        group: String,
    },

    /// A request without a bearer token this service accepts, on a
    /// service that requires one (401, with `WWW-Authenticate: Bearer`).
    /// Send `Authorization: Bearer <secret>` of a token made with
    /// `strata token create`.
    #[error("{reason}")]
    Unauthorized {
        /// What was wrong with the credentials (never the secret itself).
        reason: TokenRefusal,
    },

    /// A valid token whose scope is below what the route needs (403).
    /// Use a token of scope `needed` or above.
    #[error("token {token} has scope {scope}; this route needs {needed}")]
    InsufficientScope {
        /// The token's name.
        token: String,
        /// Its scope.
        scope: Scope,
        /// The scope the route needs.
        needed: Scope,
    },

    /// A request to a service open on a loopback address (no tokens) whose
    /// `Host` is not a loopback name (421): what a page of another site
    /// sends when its DNS name was pointed at 127.0.0.1 (DNS rebinding).
    /// Use `localhost`, `127.0.0.1` or `[::1]`, or create a token.
    #[error(
        "Host {host} is not a loopback name: a service open on a loopback address answers only to localhost, 127.0.0.0/8 and [::1]"
    )]
    ForeignHost {
        /// The Host the request named (escaped).
        host: String,
    },

    /// The service would listen on a non-loopback address with no token
    /// configured, so anyone who reaches it could write: refused at start.
    /// Create a token (`strata token create`), listen on a loopback
    /// address, or start with `insecure` (`--insecure`).
    #[error(
        "refusing to serve {addr} without tokens: anyone who can reach it could read, write and delete. \
         Create one with `strata token create --scope admin --name NAME`, listen on 127.0.0.1, \
         or pass --insecure to serve it open anyway"
    )]
    InsecureBind {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },

    /// The stored tokens (the token file, or the table) do not read back
    /// as written: the service does not start, `strata token` stops.
    /// Restore the file from a backup, or remove it and create the tokens
    /// again.
    #[error("the tokens in {place} are damaged: {reason}")]
    TokensDamaged {
        /// The file or the table.
        place: String,
        /// What is wrong.
        reason: String,
    },

    /// A write without If-Match on a server that requires it (428).
    #[error(
        "this server requires writes to existing resources to name the version they were decided on: If-Match: \"<version>\" or expected_version (If-Match: * names none)"
    )]
    PreconditionRequired,

    /// A hot stock item outran the retries (503).
    #[error("stock item {sku} kept changing: gave up after {attempts} attempts")]
    StockContention {
        /// The SKU.
        sku: String,
        /// Attempts made.
        attempts: u32,
    },

    /// A write that named no version lost its race on every retry (503):
    /// the server read, decided and retried on its own, and ran out.
    #[error("{resource} {id} kept changing: gave up after {attempts} attempts")]
    Contention {
        /// What kind of resource.
        resource: &'static str,
        /// Its id.
        id: String,
        /// Attempts made.
        attempts: u32,
    },

    /// A read model behind `min_position` after the wait (503).
    #[error("the read model has applied position {applied}, not {position}, within the wait")]
    ReadModelLagging {
        /// The position asked for.
        position: u64,
        /// The position applied.
        applied: u64,
    },

    /// The store or a read model cannot serve now (503).
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },

    /// A server-side failure (500).
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },

    /// The store refused or failed: answered by its kind (invalid input is
    /// 400 `invalid-id` or `invalid-events`, a limit 413, a clashing event id
    /// 409, an unavailable store 503, damage and failures 500). Also what
    /// opening the store returns.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A read model refused or failed: a read behind `min_position` is 503
    /// `read-model-lagging`, a bad cursor 400, a model that is not
    /// following the log 503, others by kind. Also what starting or
    /// stopping the read models returns.
    #[error(transparent)]
    Projection(#[from] ProjectionError),

    /// The order service refused or failed a command of order `id`
    /// (version conflicts are answered by the route, with the order's
    /// state): answered by the refusal's kind and the variants with
    /// problem types of their own (`already-exists`, `invalid-transition`,
    /// `payment-mismatch`, `unknown-sku`, `insufficient-stock`,
    /// `stock-contention`).
    #[error("order {id}: {source}")]
    Order {
        /// The order the request named.
        id: String,
        /// What the order service said.
        #[source]
        source: OrderServiceError,
    },

    /// A stock item's repository refused or failed a command of `sku`
    /// (version conflicts are answered by the route): answered by the
    /// refusal's kind (`not-found`, `stock-state-conflict`,
    /// `validation-failed`) and the variants with problem types of their
    /// own (`already-exists`, `insufficient-stock`).
    #[error("stock item {sku}: {source}")]
    Stock {
        /// The SKU the request named.
        sku: String,
        /// What the repository said.
        #[source]
        source: RepositoryError<StockItem>,
    },

    /// A persistent subscription group refused or failed a call: answered
    /// by the error's kind and the variants with problem types of their
    /// own (`not-found`, `subscription-group-exists`, `contention`; a bad
    /// group name in the path is `invalid-id`, other bad input
    /// `invalid-body`).
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),

    /// Binding or serving the socket failed.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the server was doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What a 415's detail says was sent: the media type as text, its control
/// characters escaped, at most 100 characters of it.
fn media_type_sent(content_type: Option<&str>) -> String {
    match content_type {
        None => "the request has no Content-Type".into(),
        Some(t) if t.trim().is_empty() => "the request's Content-Type is empty".into(),
        Some(t) => {
            let mut shown = String::new();
            for c in t.chars().take(100) {
                if c.is_control() {
                    shown.extend(c.escape_default());
                } else {
                    shown.push(c);
                }
            }
            let more = if t.chars().count() > 100 { "…" } else { "" };
            format!("the request's Content-Type is \"{shown}{more}\"")
        }
    }
}

/// Why a request's credentials were refused (401). None of them names the
/// secret presented.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TokenRefusal {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not one `Bearer <secret>`.
    Malformed,
    /// A bearer secret that names no token of this service (never issued,
    /// revoked, or mistyped).
    Unknown,
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenRefusal::Missing => "this service requires a bearer token: send Authorization: Bearer <secret>",
            TokenRefusal::Malformed => "the Authorization header is not one \"Bearer <secret>\"",
            TokenRefusal::Unknown => {
                "the bearer token is not one of this service's (never issued, revoked, or mistyped)"
            }
        })
    }
}
