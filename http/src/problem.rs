//! RFC 9457 problem details: the body of every error response.

use std::collections::BTreeMap;
use std::fmt;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body, with the extension members strata uses.
///
/// `type` is a relative URI, `/problems/<name>`; `GET` on it answers with a
/// short explanation ([`ProblemType::explanation`]). Extension members are
/// present only when they apply to the problem.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// The problem type: `/problems/<name>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status of this occurrence.
    pub status: u16,
    /// What went wrong in this occurrence, for a person.
    pub detail: String,
    /// The request path this occurrence belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The version the request was decided on (a number, or `"*"` / `"any"` / `"no-stream"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<Value>,
    /// The resource's version now (also in the `ETag` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// The resource as it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Value>,
    /// The events after `expected_version`, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_since: Option<Vec<Value>>,
    /// Whether `events_since` holds every event after `expected_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_since_complete: Option<bool>,
    /// The resource's current status (state machine refusals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
    /// The refused command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The commands the resource accepts in its current status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_commands: Option<Vec<String>>,
    /// The kind of resource concerned (`order`, `stock item`, `stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The id concerned (order id, SKU, stream, event id, idempotency key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Units requested (`insufficient-stock`: an integer); a collection's
    /// requested unique fields are sent under the same name
    /// (`declaration-conflict`: an array), so the schema takes any value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value, required = false)]
    pub requested: Option<u64>,
    /// Units available (insufficient stock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    /// The order's total (payment mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<u64>,
    /// The amount offered (payment mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
    /// A log position (read models: the one waited for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The position a read model has applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_position: Option<u64>,
    /// Seconds after which a retry may succeed (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The members particular to a problem of the document routes
    /// (`changes_since`, `conflicting_fields`, `merged`, `field`, `holder`,
    /// ...; see `docs/documents.md`).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Value>,
}

macro_rules! problem_types {
    ($($variant:ident => $name:literal, $status:literal, $title:literal, $explanation:literal;)*) => {
        /// Every problem type strata-http answers with.
        ///
        /// Each has a stable name (its `type` is `/problems/<name>`), a title,
        /// a default status and an explanation served at `GET /problems/<name>`.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[non_exhaustive]
        pub enum ProblemType {
            $(
                #[doc = $explanation]
                $variant,
            )*
        }

        impl ProblemType {
            /// Every problem type.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The name: the last segment of the `type` URI.
            pub fn name(self) -> &'static str {
                match self { $(ProblemType::$variant => $name,)* }
            }

            /// A short summary (the `title` member).
            pub fn title(self) -> &'static str {
                match self { $(ProblemType::$variant => $title,)* }
            }

            /// The status it is answered with (`wrong-expected-version` is
            /// 412 instead of 409 when the server is so configured).
            pub fn default_status(self) -> StatusCode {
                match self { $(ProblemType::$variant => StatusCode::from_u16($status).expect("a valid status"),)* }
            }

            /// What the problem means and what a client does about it.
            pub fn explanation(self) -> &'static str {
                match self { $(ProblemType::$variant => $explanation,)* }
            }
        }
    };
}

problem_types! {
    WrongExpectedVersion => "wrong-expected-version", 409, "The resource changed since the version you sent",
        "The write named a version (If-Match, expected_version, _version or If-Unmodified-Since) that is no longer current: someone else wrote in between. Nothing was written. The body carries the current version (also the ETag header), the resource as it is now (`current`) and what changed since your version (`events_since`; for documents `changes_since`, with `conflicting_fields` and, when no field overlaps, the `merged` document): re-read or merge, then retry with the new version. Answered with 409, or 412 when the server runs with --conflict-status 412.";
    InvalidTransition => "invalid-transition", 409, "The command is not allowed in the resource's current status",
        "The resource is a state machine and its current status does not accept this command (for example shipping an order that is not paid). Nothing was written. `current_status` and `allowed_commands` say what can be done now.";
    AlreadyExists => "already-exists", 409, "The resource already exists",
        "A create named an id (order id, SKU) that is taken, or a document write with If-None-Match: * found the document (412 instead of 409 with --conflict-status 412). Nothing was written. Read the existing resource, or create it under another id.";
    InsufficientStock => "insufficient-stock", 409, "Not enough stock is available",
        "The order asks for more units of a SKU than are available (on hand minus reserved). Nothing was reserved. `requested` and `available` give the numbers; order less or wait for stock.";
    StockStateConflict => "stock-state-conflict", 409, "The stock item's state does not allow this",
        "A stock rule refused the command in the item's current state (a count below the reserved units, a reservation that does not exist or differs). Nothing was written.";
    DuplicateEventId => "duplicate-event-id", 409, "An event id is already used in this stream",
        "An event id of the append is already in the stream at another place than the expected version points to, or is repeated within the append. A retry of an earlier append must send the same ids with the same expected version; new events need fresh ids.";
    IdempotencyKeyInFlight => "idempotency-key-in-flight", 409, "A request with this Idempotency-Key is still being processed",
        "The first request with this Idempotency-Key has not finished yet. Retry after a moment (Retry-After): once it has finished its response is replayed.";
    PaymentMismatch => "payment-mismatch", 422, "The payment does not match the order total",
        "An order is paid in full: `amount_cents` must equal the order's `total_cents`. Nothing was written.";
    UnknownSku => "unknown-sku", 422, "An order line names an unknown SKU",
        "Every line of an order must name a registered stock item (POST /stock). Nothing was written.";
    ValidationFailed => "validation-failed", 422, "The request breaks a rule of the domain",
        "The request is well formed but a value breaks a rule (a zero quantity, an empty customer or name, an order without lines, an invalid id in the body). `detail` names the rule. Nothing was written.";
    InvalidBody => "invalid-body", 422, "The JSON body does not have the expected shape",
        "The body is JSON but not of the shape this route takes: a missing or unknown field, a wrong type, a negative or out-of-range number. `detail` says where. Nothing was written.";
    IdempotencyKeyReused => "idempotency-key-reused", 422, "The Idempotency-Key was used for a different request",
        "An Idempotency-Key identifies one request: the same key came with another method, path, If-Match or body. Use a fresh key for a new request.";
    MalformedJson => "malformed-json", 400, "The body is not valid JSON",
        "The body could not be parsed as JSON. `detail` says where parsing stopped. Nothing was written.";
    InvalidId => "invalid-id", 400, "The id cannot name a resource",
        "An id in the path is empty, too long (a stream id is at most 256 bytes) or holds control characters. Nothing was written.";
    InvalidIfMatch => "invalid-if-match", 400, "The If-Match header is not valid here",
        "If-Match takes one strong ETag as this API issues them (`\"7\"`) or `*`. Weak ETags (`W/\"7\"`), lists, unquoted or malformed values, and If-Match on a create are refused. Nothing was written.";
    ConflictingExpectedVersions => "conflicting-expected-versions", 400, "If-Match and expected_version disagree",
        "The request names its expected version twice (If-Match header and expected_version) with different values. Send one, or the same in both. Nothing was written.";
    InvalidParameter => "invalid-parameter", 400, "A query or path parameter is invalid",
        "A query parameter is unknown, or a query or path parameter does not parse (a number, a direction, a status). `detail` says which.";
    InvalidEvents => "invalid-events", 400, "The events of the append are invalid",
        "An append to the log must carry at least one event, each with a non-empty event type without control characters, and metadata keys outside the reserved `strata.` prefix. Nothing was written.";
    InvalidIdempotencyKey => "invalid-idempotency-key", 400, "The Idempotency-Key header is invalid",
        "An Idempotency-Key is 1 to 255 characters of visible ASCII (no spaces), optionally sent as a quoted string; only one may be sent.";
    ReservedStream => "reserved-stream", 403, "This stream can only be written through its resource routes",
        "Streams named `order-*` and `stock-*` belong to the order and stock resources, `doc-*`, `collection-*` and `unique-*` to documents, and `$`-prefixed streams to the system (snapshots): the read models and the unique values rely on their rules, so the generic log API refuses to write them. Use /orders, /stock, /docs and /collections.";
    Unauthorized => "unauthorized", 401, "A bearer token is required",
        "This service requires `Authorization: Bearer <secret>` with a token it issued (`strata token create`), and the request had none, a malformed one, or one it does not know (revoked, or never issued). The `WWW-Authenticate` header says which. Nothing was done.";
    InsufficientScope => "insufficient-scope", 403, "The token's scope does not allow this",
        "The request's token is valid but its scope is below what the route needs (`read` < `write` < `admin`): `scope` is the token's, `needed_scope` the route's, `id` the token's name. Nothing was done. Use a token with that scope; the scopes table is in docs/security.md.";
    MisdirectedRequest => "misdirected-request", 421, "This service does not answer to that Host",
        "The service is open (no token configured) on a loopback address, and answers only requests that name a loopback host: `localhost`, `127.0.0.1` (any of 127.0.0.0/8) or `[::1]`, with any port. A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) is refused this way. Nothing was done. Use one of those names, or create a token (then any Host is accepted, and the token is checked).";
    NotFound => "not-found", 404, "No such resource",
        "The order, stock item, collection, document (or version of it) or route does not exist.";
    StreamDeleted => "stream-deleted", 410, "The stream was deleted for good",
        "The stream was hard-deleted (tombstoned, DELETE /streams/{stream}?hard=true, or an erasure): it can never be written again, and its events are gone from every read. Nothing was written. Write to another stream.";
    DocumentDeleted => "document-deleted", 404, "The document was deleted",
        "The document existed and was deleted: `deleted_version` says at which version, `deleted_at` when and `deleted_by` by whom. Its history stays readable (GET .../history, ?version=n). PUT with If-None-Match: * creates it again; other writes are refused.";
    UniqueViolation => "unique-violation", 409, "A unique value is held by another document",
        "The collection declares the field unique and another document holds the value: `field` (a JSON Pointer), `value` and `holder` (that document's id) say which. Nothing was written. Choose another value, or change or delete the holder first.";
    PatchFailed => "patch-failed", 409, "The patch does not apply to the document",
        "An operation of the JSON Patch (RFC 6902) fails on the document as it is: a `test` that does not hold, a path that does not exist. `operation` (its index), `op` and `path` say which. Nothing of the patch was applied: re-read the document and send a patch for its current state.";
    InvalidPrecondition => "invalid-precondition", 400, "The preconditions cannot be used together or do not parse",
        "A document write's preconditions contradict each other (If-Match with a merge base, If-None-Match: * on a PATCH, If-Match and _version naming different versions) or one does not parse (If-Unmodified-Since not an HTTP date, Strata-Merge-Base not a version). Nothing was written.";
    DeclarationConflict => "declaration-conflict", 409, "The collection is declared with other unique fields",
        "A collection's unique fields are fixed when it is declared (adding one later would need every existing value claimed first). `declared` and `requested` list them. Declare a new collection instead; whether writes need a precondition can change.";
    SubscriptionGroupExists => "subscription-group-exists", 409, "A persistent subscription group of this name exists with other settings",
        "Creating a group is idempotent with the same settings (200); with other settings it is refused, and the group is left as it is. Delete the group first (its consumers then start over from where the new one starts) or choose another name.";
    ScavengeRunning => "scavenge-running", 409, "A scavenge is running already",
        "POST /admin/scavenge starts a scavenge only when none runs: one is running now (started by another request). Nothing was started. Watch `strata_scavenge_running` and `strata_scavenge_segments_done` in /metrics, and start the next one after it finished if there is more to erase.";
    MethodNotAllowed => "method-not-allowed", 405, "The method is not allowed on this route",
        "The route exists but does not take this method; the Allow header lists those it takes.";
    PayloadTooLarge => "payload-too-large", 413, "The request is too large",
        "The body exceeds the server's body limit, or the append exceeds the log's limits (events per append, payload or metadata size). Split it. Nothing was written.";
    UnsupportedMediaType => "unsupported-media-type", 415, "The body's media type is not one this route takes",
        "Send the body with `Content-Type: application/json`; PATCH of a document takes `application/merge-patch+json` (RFC 7396) or `application/json-patch+json` (RFC 6902), listed in the Accept-Patch header.";
    PreconditionRequired => "precondition-required", 428, "This write must name the version it was decided on",
        "The server (or, for documents, the collection) requires conditional writes: send If-Match with the ETag of your last read (or expected_version in the body; for documents also _version, If-Unmodified-Since, a merge base, or If-None-Match: * to create), so that a concurrent change cannot be overwritten. Creates of orders and stock items are exempt.";
    StockContention => "stock-contention", 503, "A stock item kept changing while the order was written",
        "The order's stock items were changed by others on every attempt and the retries ran out. Nothing was written; send the same request again after Retry-After.";
    Contention => "contention", 503, "The resource kept changing while the server retried the write",
        "The write named no version (no If-Match), so the server read the resource, decided and retried on its own, and every attempt lost its race with another writer. Nothing was written. Send it again after Retry-After, or send If-Match with the ETag you read to be told exactly what changed. On a persistent subscription group: processes sharing the group (PostgreSQL) kept changing its state at once and this call lost every round; nothing was changed, send it again after Retry-After.";
    ReadModelLagging => "read-model-lagging", 503, "The read model has not reached the requested position yet",
        "min_position asked for a position the read model had not applied within the server's wait. Retry after Retry-After, or read without min_position.";
    ServiceUnavailable => "service-unavailable", 503, "The service cannot answer this now",
        "The store refuses writes (it failed or is closing) or a read model is not running. Retry later; writes retried with the same event ids or Idempotency-Key are answered without being applied twice.";
    Internal => "internal-error", 500, "The server failed",
        "The server hit an error it cannot recover from on its own (corrupt or unreadable data, a disk error). Nothing was written by the failing request. The logs have the details.";
}

impl ProblemType {
    /// The `type` URI: `/problems/<name>`.
    pub fn uri(self) -> String {
        format!("/problems/{}", self.name())
    }

    /// The problem type with this name.
    pub fn from_name(name: &str) -> Option<ProblemType> {
        ProblemType::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `GET /problems/<name>` answers.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemDescription {
    /// The problem type URI.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Its title.
    pub title: String,
    /// The status it is answered with.
    pub status: u16,
    /// What it means and what to do.
    pub explanation: String,
}

impl From<ProblemType> for ProblemDescription {
    fn from(t: ProblemType) -> Self {
        ProblemDescription {
            problem_type: t.uri(),
            title: t.title().to_string(),
            status: t.default_status().as_u16(),
            explanation: t.explanation().to_string(),
        }
    }
}

/// A problem of the document routes: its type, the body with its members,
/// and the headers that go with it (built by the document routes, answered
/// as [`HttpError::Document`](crate::HttpError::Document)).
#[derive(Clone, PartialEq, Debug)]
pub struct DocumentProblem {
    /// The problem type.
    pub kind: ProblemType,
    /// The body (its `status` is the response's).
    pub problem: Problem,
    /// The document's version now, sent as `ETag` (conflicts).
    pub etag: Option<u64>,
    /// Whether to send `Accept-Patch` (a patch of the wrong media type).
    pub accept_patch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<_> = ProblemType::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "problem type names are unique");
        for t in ProblemType::ALL {
            assert_eq!(ProblemType::from_name(t.name()), Some(*t));
            assert!(t.default_status().is_client_error() || t.default_status().is_server_error());
        }
    }
}
