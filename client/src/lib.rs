//! strata-client: the strata HTTP API from Rust, documents first.
//!
//! [`Client::update`] is the loop the spec tells clients to run: read the
//! document and its `ETag`, apply the change to it, write it back with
//! `If-Match`, and on a `409` read again, apply again and retry, with
//! jittered backoff and a bound ([`RetryPolicy`]). Every write carries an
//! `Idempotency-Key`, so a write whose response was lost is sent again
//! safely. A conflict the loop cannot resolve (the bound ran out) and a
//! unique value another document holds come back as errors with their
//! fields. [`Client::update_merging`] sends the version it read as a merge
//! base instead: the service applies the change onto a newer version when
//! no field it touches changed meanwhile, so writers of different fields
//! rarely retry.
//!
//! ```no_run
//! # async fn run() -> Result<(), strata_client::ClientError> {
//! use serde_json::json;
//! use strata_client::{Client, Precondition};
//!
//! let client = Client::new("http://127.0.0.1:8080")?.with_actor("ada");
//! client.declare_collection("items", &json!({"unique": ["sku"]})).await?;
//! client.put("items", "42", json!({"sku": "tea", "stock": 1}).as_object().unwrap(), Precondition::Create).await?;
//! let updated = client
//!     .update("items", "42", |doc| {
//!         let stock = doc["stock"].as_u64().unwrap_or(0);
//!         doc.insert("stock".into(), json!(stock + 1));
//!     })
//!     .await?;
//! println!("version {} after {} attempts", updated.document.version, updated.attempts);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
mod live;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};

pub use error::{ClientError, Conflict};
pub use live::{LiveEvent, LiveEvents, LiveFilter, LiveItem, MAX_SSE_LINE, SseMessage, SseParser};
/// The HTTP client underneath, for requests this crate has no method for.
pub use reqwest;

/// The header naming who makes a change.
pub const ACTOR_HEADER: &str = "strata-actor";
/// The header naming a write's merge base.
pub const MERGE_BASE_HEADER: &str = "strata-merge-base";
/// The response header naming the version a merge-base write was applied onto.
pub const MERGED_ONTO_HEADER: &str = "strata-merged-onto";
/// The idempotency header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How [`Client::update`] retries after a conflict.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// The ceiling of the first wait; it doubles per attempt.
    pub initial_backoff: Duration,
    /// The highest ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: uniform between zero and the
    /// ceiling ("full jitter"), so clients that collided spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .checked_mul(1u32 << attempt.saturating_sub(1).min(20))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            rand::rng().random_range(0..=nanos)
        })
    }
}

/// One request as sent, for an [`Observer`].
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The method.
    pub method: Method,
    /// The status, or `None` when no response came.
    pub status: Option<u16>,
    /// From sending to the response's head.
    pub latency: Duration,
}

/// Called once per request the client sends (metrics, load tests).
pub type Observer = Arc<dyn Fn(&Exchange) + Send + Sync>;

/// What a write requires of the document.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Precondition {
    /// Nothing: the service applies it to whatever version is current.
    None,
    /// `If-Match: "<version>"`: only onto that version.
    IfMatch(u64),
    /// `If-None-Match: *`: create only.
    Create,
    /// `Strata-Merge-Base: <version>`: decided on that version; applied
    /// onto a later one when no field it changes was changed since.
    MergeBase(u64),
}

/// A document as read.
#[derive(Clone, PartialEq, Debug)]
pub struct Document {
    /// Its version (the `ETag`).
    pub version: u64,
    /// Its members (without `_version`).
    pub body: Map<String, Value>,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<String>,
}

/// What a successful write answered.
#[derive(Clone, PartialEq, Debug)]
pub struct Written {
    /// 200 or 201.
    pub status: u16,
    /// The version after the write.
    pub version: u64,
    /// The body (the document with `_version`, or the tombstone).
    pub body: Value,
    /// With a merge base: the version the write was applied onto.
    pub merged_onto: Option<u64>,
    /// Whether the service replayed the answer of an earlier send with the same key.
    pub replayed: bool,
}

/// What [`Client::update`] did.
#[derive(Clone, PartialEq, Debug)]
pub struct Updated {
    /// The document after the update.
    pub document: Document,
    /// Attempts made (reads and writes), at least 1.
    pub attempts: u32,
    /// Writes refused as stale along the way.
    pub conflicts: u32,
    /// Whether the service merged the write onto a later version than it was decided on.
    pub merged: bool,
    /// Whether anything was written (the change may leave the document as it was).
    pub wrote: bool,
}

/// A client of one strata service. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    actor: Option<String>,
    observer: Option<Observer>,
    /// `Bearer <secret>`, marked sensitive.
    bearer: Option<reqwest::header::HeaderValue>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("retry", &self.retry)
            .field("actor", &self.actor)
            .field("bearer_token", &self.bearer.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a path segment.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn version_of(response: &reqwest::Response) -> Option<u64> {
    let tag = response.headers().get(ETAG)?.to_str().ok()?;
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

impl Client {
    /// A client of the service at `base_url` (`http://host:port`), with a
    /// 30 s request timeout, no redirects and the default [`RetryPolicy`].
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("not an http:// or https:// URL".into()));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Client {
            http,
            base,
            retry: RetryPolicy::default(),
            actor: None,
            observer: None,
            bearer: None,
        })
    }

    /// The same client over another `reqwest::Client` (timeouts, pools).
    pub fn with_http(mut self, http: reqwest::Client) -> Client {
        self.http = http;
        self
    }

    /// The same client retrying conflicts under `policy`.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Client {
        self.retry = policy;
        self
    }

    /// The same client naming `actor` on every write (`Strata-Actor`).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Client {
        self.actor = Some(actor.into());
        self
    }

    /// The same client sending `Authorization: Bearer <secret>` with every
    /// request it sends ([`Client::send`] and every method), for a service
    /// that requires tokens (`strata token create`). The header is marked
    /// sensitive, and `Debug` does not show it. A secret that cannot be a
    /// header value is [`ClientError::InvalidToken`].
    pub fn with_bearer_token(mut self, secret: &str) -> Result<Client, ClientError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}"))
            .map_err(|_| ClientError::InvalidToken)?;
        value.set_sensitive(true);
        self.bearer = Some(value);
        Ok(self)
    }

    /// The same client reporting every request to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Client {
        self.observer = Some(observer);
        self
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// A request to `path` (relative to the base URL, e.g. `stock/tea`), for
    /// routes this crate has no method for; send it with [`Client::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.base, path.trim_start_matches('/'));
        self.http.request(method, url)
    }

    /// Sends a request, reporting it to the observer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let mut built = request.build().map_err(|source| ClientError::Transport {
            method: "?".into(),
            url: "?".into(),
            source,
        })?;
        if let Some(bearer) = &self.bearer
            && !built.headers().contains_key(AUTHORIZATION)
        {
            built.headers_mut().insert(AUTHORIZATION, bearer.clone());
        }
        let (method, url) = (built.method().clone(), built.url().to_string());
        let started = Instant::now();
        let result = self.http.execute(built).await;
        if let Some(observe) = &self.observer {
            observe(&Exchange {
                method: method.clone(),
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
                latency: started.elapsed(),
            });
        }
        result.map_err(|source| ClientError::Transport {
            method: method.to_string(),
            url,
            source,
        })
    }

    fn doc_path(collection: &str, id: &str) -> String {
        format!("docs/{}/{}", segment(collection), segment(id))
    }

    /// Declares a collection (`PUT /collections/{name}`) with a declaration
    /// such as `{"unique": ["email"], "require_precondition": true}`;
    /// returns the declaration as the service holds it.
    pub async fn declare_collection(&self, name: &str, declaration: &Value) -> Result<Value, ClientError> {
        let r = self
            .send(
                self.request(Method::PUT, &format!("collections/{}", segment(name)))
                    .json(declaration),
            )
            .await?;
        match r.status() {
            StatusCode::OK | StatusCode::CREATED => json(r).await,
            _ => Err(problem(r).await),
        }
    }

    /// Reads a document.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Document, ClientError> {
        let r = self
            .send(self.request(Method::GET, &Self::doc_path(collection, id)))
            .await?;
        if r.status() != StatusCode::OK {
            return Err(problem(r).await);
        }
        document(r).await
    }

    /// Creates or replaces a document (`PUT`) under `precondition`.
    pub async fn put(
        &self,
        collection: &str,
        id: &str,
        body: &Map<String, Value>,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let path = Self::doc_path(collection, id);
        self.write(
            Method::PUT,
            &path,
            Some(("application/json", Value::Object(body.clone()))),
            precondition,
        )
        .await
    }

    /// Patches a document with a JSON Merge Patch (RFC 7396).
    pub async fn merge_patch(
        &self,
        collection: &str,
        id: &str,
        patch: &Value,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let body = Some(("application/merge-patch+json", patch.clone()));
        self.write(Method::PATCH, &Self::doc_path(collection, id), body, precondition)
            .await
    }

    /// Patches a document with a JSON Patch (RFC 6902).
    pub async fn json_patch(
        &self,
        collection: &str,
        id: &str,
        operations: &Value,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let body = Some(("application/json-patch+json", operations.clone()));
        self.write(Method::PATCH, &Self::doc_path(collection, id), body, precondition)
            .await
    }

    /// Deletes a document.
    pub async fn delete(&self, collection: &str, id: &str, precondition: Precondition) -> Result<Written, ClientError> {
        self.write(Method::DELETE, &Self::doc_path(collection, id), None, precondition)
            .await
    }

    /// One write with a fresh Idempotency-Key: sent again with the same key
    /// when its response is lost (at most 3 sends) or while the service
    /// says the first send is still running.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Value)>,
        precondition: Precondition,
    ) -> Result<Written, ClientError> {
        let key = uuid::Uuid::new_v4().to_string();
        let mut lost = 0;
        let mut in_flight = 0;
        loop {
            let mut request = self.request(method.clone(), path).header(IDEMPOTENCY_KEY, &key);
            if let Some((content_type, body)) = &body {
                request = request.header(CONTENT_TYPE, *content_type).body(body.to_string());
            }
            if let Some(actor) = &self.actor {
                request = request.header(ACTOR_HEADER, actor);
            }
            request = match precondition {
                Precondition::None => request,
                Precondition::IfMatch(v) => request.header(IF_MATCH, format!("\"{v}\"")),
                Precondition::Create => request.header(IF_NONE_MATCH, "*"),
                Precondition::MergeBase(v) => request.header(MERGE_BASE_HEADER, v.to_string()),
            };
            let r = match self.send(request).await {
                Ok(r) => r,
                Err(ClientError::Transport { .. }) if lost < 2 => {
                    lost += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if r.status().is_success() {
                let merged_onto = r
                    .headers()
                    .get(MERGED_ONTO_HEADER)
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let replayed = r.headers().contains_key("idempotency-replayed");
                let status = r.status().as_u16();
                let version = version_of(&r).ok_or_else(|| ClientError::Unexpected {
                    status,
                    reason: "a write answered without an ETag".into(),
                })?;
                return Ok(Written {
                    status,
                    version,
                    body: json(r).await?,
                    merged_onto,
                    replayed,
                });
            }
            let retry_after = r
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let e = problem(r).await;
            if let ClientError::Problem { problem_type, .. } = &e
                && problem_type == "/problems/idempotency-key-in-flight"
                && in_flight < 20
            {
                in_flight += 1;
                tokio::time::sleep(Duration::from_millis(50 * retry_after.unwrap_or(1).min(5))).await;
                continue;
            }
            return Err(e);
        }
    }

    /// The spec's loop: read the document, apply `change` to its members,
    /// write it back with `If-Match`; on a stale version (or a `503
    /// contention`) read, apply and write again after a jittered backoff,
    /// at most [`RetryPolicy::max_attempts`] times. The last conflict is
    /// returned when they run out (with its fields); a unique violation at
    /// once.
    /// `change` must be a function of the document it is given: it is
    /// applied anew to every version read.
    pub async fn update<F>(&self, collection: &str, id: &str, change: F) -> Result<Updated, ClientError>
    where
        F: FnMut(&mut Map<String, Value>),
    {
        self.update_with(collection, id, change, false).await
    }

    /// [`Client::update`] sending the version read as a merge base
    /// (`Strata-Merge-Base`) rather than `If-Match`: when the document moved
    /// but no field the change touches did, the service applies it onto the
    /// newer version (no retry); when they overlap, the loop reads and
    /// applies again. Use it only when `change` reads nothing but the
    /// fields it writes: a change computed from a field someone else
    /// changed meanwhile would be merged without seeing that change.
    pub async fn update_merging<F>(&self, collection: &str, id: &str, change: F) -> Result<Updated, ClientError>
    where
        F: FnMut(&mut Map<String, Value>),
    {
        self.update_with(collection, id, change, true).await
    }

    async fn update_with<F>(
        &self,
        collection: &str,
        id: &str,
        mut change: F,
        merge: bool,
    ) -> Result<Updated, ClientError>
    where
        F: FnMut(&mut Map<String, Value>),
    {
        let attempts = self.retry.max_attempts.max(1);
        let mut conflicts = 0;
        for attempt in 1..=attempts {
            let current = self.get(collection, id).await?;
            let mut body = current.body.clone();
            change(&mut body);
            if body == current.body {
                return Ok(Updated {
                    document: current,
                    attempts: attempt,
                    conflicts,
                    merged: false,
                    wrote: false,
                });
            }
            let precondition = if merge {
                Precondition::MergeBase(current.version)
            } else {
                Precondition::IfMatch(current.version)
            };
            match self.put(collection, id, &body, precondition).await {
                Ok(written) => {
                    let mut after = match written.body {
                        Value::Object(m) => m,
                        _ => body,
                    };
                    after.remove("_version");
                    return Ok(Updated {
                        document: Document {
                            version: written.version,
                            body: after,
                            last_modified: None,
                        },
                        attempts: attempt,
                        conflicts,
                        merged: written.merged_onto.is_some_and(|v| v != current.version),
                        wrote: true,
                    });
                }
                // Stale, or (with a merge base) the document kept moving
                // while the service retried: read again, apply again.
                Err(e) if retryable(&e) => {
                    conflicts += 1;
                    if attempt == attempts {
                        return Err(match e {
                            ClientError::Conflict(mut c) => {
                                c.attempts = attempt;
                                ClientError::Conflict(c)
                            }
                            other => other,
                        });
                    }
                    tracing::debug!(collection, id, attempt, error = %e, "reading again");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// Whether [`Client::update`] reads, applies and writes again after `e`:
/// a stale version, or `503 contention` (a write the service retried on
/// its own while the document kept changing).
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Conflict(c) => c.problem_type == "/problems/wrong-expected-version",
        ClientError::Problem { problem_type, .. } => problem_type == "/problems/contention",
        _ => false,
    }
}

async fn json(r: reqwest::Response) -> Result<Value, ClientError> {
    let status = r.status().as_u16();
    let bytes = r.bytes().await.map_err(|e| ClientError::Unexpected {
        status,
        reason: format!("reading the body: {e}"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
        status,
        reason: format!("not JSON: {e}"),
    })
}

async fn document(r: reqwest::Response) -> Result<Document, ClientError> {
    let status = r.status().as_u16();
    let version = version_of(&r).ok_or_else(|| ClientError::Unexpected {
        status,
        reason: "a document without an ETag".into(),
    })?;
    let last_modified = r
        .headers()
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match json(r).await? {
        Value::Object(mut body) => {
            body.remove("_version");
            Ok(Document {
                version,
                body,
                last_modified,
            })
        }
        _ => Err(ClientError::Unexpected {
            status,
            reason: "a document that is not an object".into(),
        }),
    }
}

/// The error a refusal stands for, from its problem body.
async fn problem(r: reqwest::Response) -> ClientError {
    let status = r.status().as_u16();
    let body = match json(r).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let problem_type = text("type");
    match problem_type.as_str() {
        "/problems/not-found" => ClientError::NotFound { detail: text("detail") },
        "/problems/document-deleted" => ClientError::Deleted {
            version: body["deleted_version"].as_u64().unwrap_or_default(),
        },
        "/problems/unique-violation" => ClientError::UniqueViolation {
            field: text("field"),
            value: body["value"].clone(),
            holder: text("holder"),
        },
        "/problems/wrong-expected-version" | "/problems/already-exists" if body["current_version"].is_u64() => {
            ClientError::Conflict(Box::new(Conflict {
                status,
                detail: text("detail"),
                current_version: body["current_version"].as_u64().unwrap_or_default(),
                current: Some(body["current"].clone()).filter(|c| !c.is_null()),
                changes_since: body["changes_since"].as_array().cloned().unwrap_or_default(),
                conflicting_fields: body["conflicting_fields"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect()),
                merged: Some(body["merged"].clone()).filter(|m| !m.is_null()),
                attempts: 1,
                problem_type,
            }))
        }
        "" => ClientError::Unexpected {
            status,
            reason: format!("no problem body: {body}"),
        },
        _ => ClientError::Problem {
            status,
            detail: text("detail"),
            problem_type,
            body,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(4),
            max_backoff: Duration::from_millis(10),
        };
        for _ in 0..100 {
            assert!(p.backoff(1) <= Duration::from_millis(4));
            assert!(p.backoff(2) <= Duration::from_millis(8));
            assert!(p.backoff(9) <= Duration::from_millis(10));
        }
        let waits: std::collections::BTreeSet<_> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(waits.len() > 1, "jittered, not fixed");
    }

    #[test]
    fn stale_versions_and_contention_are_retried_nothing_else() {
        let conflict = |t: &str| {
            ClientError::Conflict(Box::new(Conflict {
                status: 409,
                problem_type: t.into(),
                detail: String::new(),
                current_version: 1,
                current: None,
                changes_since: Vec::new(),
                conflicting_fields: None,
                merged: None,
                attempts: 1,
            }))
        };
        let problem = |t: &str| ClientError::Problem {
            status: 503,
            problem_type: t.into(),
            detail: String::new(),
            body: Value::Null,
        };
        assert!(retryable(&conflict("/problems/wrong-expected-version")));
        assert!(!retryable(&conflict("/problems/already-exists")));
        assert!(retryable(&problem("/problems/contention")));
        assert!(!retryable(&problem("/problems/service-unavailable")));
        assert!(!retryable(&ClientError::Deleted { version: 1 }));
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(Client::doc_path("items", "a/b c"), "docs/items/a%2Fb%20c");
        assert!(Client::new("ftp://x").is_err());
        assert_eq!(
            Client::new("http://127.0.0.1:1").unwrap().base_url().as_str(),
            "http://127.0.0.1:1/"
        );
    }
}

#[cfg(test)]
mod bearer_tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_never_shown_and_must_fit_a_header() {
        let secret = "strata_0123456789abcdef";
        let client = Client::new("http://127.0.0.1:1")
            .unwrap()
            .with_bearer_token(secret)
            .unwrap();
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("0123456789abcdef") && shown.contains("(set)"),
            "{shown}"
        );
        let sent = client.bearer.as_ref().unwrap();
        assert!(sent.is_sensitive());
        assert_eq!(sent.to_str().unwrap(), format!("Bearer {secret}"));
        let bad = Client::new("http://127.0.0.1:1").unwrap().with_bearer_token("a\nb");
        assert!(matches!(bad, Err(ClientError::InvalidToken)));
    }
}
