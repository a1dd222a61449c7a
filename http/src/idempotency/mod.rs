//! `Idempotency-Key` (IETF httpapi draft): a POST retried with the same key
//! gets the first response instead of being applied again.
//!
//! Records live in the sled tree `http.idempotency` beside the log, keyed by
//! the key. A request first writes an in-flight marker (compare-and-swap, so
//! two concurrent requests with one key cannot both run); when its handler
//! has answered, the marker is replaced by the response (status, headers,
//! body) and that record is made as durable as the log's appends before the
//! response leaves. A retry after a crash or restart is therefore answered
//! from the record.
//!
//! In-flight markers carry the id of the process run ("boot") that wrote
//! them. A marker of an earlier boot belongs to a request that died with its
//! process: it does not block the key, the retry runs again (see
//! docs/http.md for what that means for requests without `If-Match`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_store::{LocalTables, SledStore, StoreError, from_bincode, to_bincode};
use tracing::{Instrument, warn};

use crate::error::{HttpError, REQUEST_PATH};
use crate::state::Shared;

#[cfg(feature = "postgres")]
mod postgres;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header on a replayed response.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";
/// The sled tree the records live in.
pub(crate) const TREE: &str = "http.idempotency";
/// The longest key accepted.
pub(crate) const MAX_KEY_LEN: usize = 255;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Record {
    InFlight {
        fingerprint: [u8; 32],
        boot: [u8; 16],
        started_ms: u64,
    },
    Done(StoredResponse),
}

/// A response as remembered for replays.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct StoredResponse {
    fingerprint: [u8; 32],
    created_ms: u64,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// What a request with a key does.
#[derive(Debug, PartialEq)]
pub(crate) enum Begin {
    /// Run it: an in-flight marker is written; `complete` or `abandon` follows.
    Proceed {
        /// The same request started in an earlier run of the process, which
        /// died before recording its answer: its write may have landed, and
        /// the handler must look for it before writing again.
        after_crash: bool,
    },
    /// Answer with the first response.
    Replay(StoredResponse),
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for another request.
    Mismatch,
}

/// The records in sled, in the tables beside the log (one process owns
/// the directory).
struct SledRecords {
    tables: LocalTables,
    tree: sled::Tree,
}

enum Records {
    Sled(SledRecords),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgRecords),
}

/// What to do about the record found under a request's key.
#[derive(Debug, PartialEq)]
enum Judged {
    /// Answer without running the request.
    Answer(Begin),
    /// Write this run's marker (replacing what is there) and run it.
    Claim {
        /// See [`Begin::Proceed`].
        after_crash: bool,
    },
}

/// The durable record of keys.
pub(crate) struct IdempotencyStore {
    records: Records,
    /// The id of this run of the process: its in-flight markers carry it.
    boot: [u8; 16],
    retention: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn sled_err(e: sled::Error) -> HttpError {
    HttpError::Internal {
        reason: format!("idempotency records: {e}"),
    }
}

fn tables_err(e: StoreError) -> HttpError {
    match e {
        StoreError::Io { context, source } => HttpError::Io {
            context: format!("{context} (idempotency records)"),
            source,
        },
        other => HttpError::Internal {
            reason: format!("idempotency records: {other}"),
        },
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record, HttpError> {
    from_bincode(bytes, || format!("idempotency record {key:?}"))
        .map_err(|e| HttpError::Internal { reason: e.to_string() })
}

fn encode(record: &Record) -> Result<Vec<u8>, HttpError> {
    to_bincode(record).map_err(|e| HttpError::Internal { reason: e.to_string() })
}

impl IdempotencyStore {
    /// Opens the tree in the tables beside the store's log, for a new boot.
    pub(crate) fn open(store: &SledStore, retention: Duration) -> Result<IdempotencyStore, HttpError> {
        let tables = store.tables();
        let tree = tables.open_tree(TREE).map_err(tables_err)?;
        Ok(IdempotencyStore {
            records: Records::Sled(SledRecords { tables, tree }),
            boot: *uuid::Uuid::new_v4().as_bytes(),
            retention,
        })
    }

    /// Opens (creating or migrating) the records' table in the database and
    /// schema of `store`, for a new boot, and holds this boot's liveness
    /// lock (see `postgres.rs`).
    #[cfg(feature = "postgres")]
    pub(crate) async fn open_postgres(
        store: &strata_store::PostgresStore,
        retention: Duration,
    ) -> Result<IdempotencyStore, HttpError> {
        let boot = *uuid::Uuid::new_v4().as_bytes();
        Ok(IdempotencyStore {
            records: Records::Postgres(postgres::PgRecords::open(store, boot).await?),
            boot,
            retention,
        })
    }

    fn expired(&self, created_ms: u64, now: u64) -> bool {
        now.saturating_sub(created_ms) > self.retention.as_millis() as u64
    }

    /// The marker this run writes for a request with `fingerprint`.
    fn marker(&self, fingerprint: [u8; 32]) -> Record {
        Record::InFlight {
            fingerprint,
            boot: self.boot,
            started_ms: now_ms(),
        }
    }

    /// The boot of another run whose unexpired in-flight marker `current`
    /// is: whether that run is still alive decides the answer.
    fn other_boot(&self, current: Option<&Record>) -> Option<[u8; 16]> {
        match current {
            Some(Record::InFlight { boot, started_ms, .. })
                if *boot != self.boot && !self.expired(*started_ms, now_ms()) =>
            {
                Some(*boot)
            }
            _ => None,
        }
    }

    /// The rules, the same for every backend: what a request with
    /// `fingerprint` does about `current`, the record under its key.
    /// `other_alive` says whether the run that wrote another run's in-flight
    /// marker is still alive (in sled never: one process owns the
    /// directory, so another run's marker is a dead one's).
    fn judge(&self, current: Option<&Record>, fingerprint: [u8; 32], other_alive: bool) -> Judged {
        let same = |f: &[u8; 32]| *f == fingerprint;
        match current {
            Some(Record::Done(r)) if !self.expired(r.created_ms, now_ms()) => Judged::Answer(if same(&r.fingerprint) {
                Begin::Replay(r.clone())
            } else {
                Begin::Mismatch
            }),
            Some(Record::InFlight {
                fingerprint: f, boot, ..
            }) if *boot == self.boot || (other_alive && self.other_boot(current).is_some()) => {
                Judged::Answer(if same(f) { Begin::InFlight } else { Begin::Mismatch })
            }
            // The marker of a request that died with its run of the process.
            // Its write may have landed (the marker was durable before it):
            // the same request runs again and looks for it first; another
            // request is refused.
            Some(Record::InFlight {
                fingerprint: f,
                started_ms,
                ..
            }) if !self.expired(*started_ms, now_ms()) => {
                if same(f) {
                    Judged::Claim { after_crash: true }
                } else {
                    Judged::Answer(Begin::Mismatch)
                }
            }
            // Absent or expired.
            _ => Judged::Claim { after_crash: false },
        }
    }

    /// Claims `key` for a request with `fingerprint`, or says why not.
    pub(crate) async fn begin(&self, key: &str, fingerprint: [u8; 32]) -> Result<Begin, HttpError> {
        match &self.records {
            Records::Sled(s) => {
                let marker = encode(&self.marker(fingerprint))?;
                loop {
                    let current = s.tree.get(key).map_err(sled_err)?;
                    let record = current.as_deref().map(|b| decode(key, b)).transpose()?;
                    match self.judge(record.as_ref(), fingerprint, false) {
                        Judged::Answer(answer) => return Ok(answer),
                        Judged::Claim { after_crash } => {
                            if s.tree
                                .compare_and_swap(key, current, Some(marker.clone()))
                                .map_err(sled_err)?
                                .is_ok()
                            {
                                return Ok(Begin::Proceed { after_crash });
                            }
                        }
                    }
                }
            }
            #[cfg(feature = "postgres")]
            Records::Postgres(p) => p.begin(self, key, fingerprint).await,
        }
    }

    /// Replaces the marker with the response; durable when this returns.
    pub(crate) async fn complete(&self, key: &str, response: StoredResponse) -> Result<(), HttpError> {
        match &self.records {
            Records::Sled(s) => {
                s.tree.insert(key, encode(&Record::Done(response))?).map_err(sled_err)?;
                // As durable as the log's appends before the response leaves.
                s.tables.sync().await.map_err(tables_err)
            }
            #[cfg(feature = "postgres")]
            Records::Postgres(p) => p.complete(key, response).await,
        }
    }

    /// Removes this boot's marker (the request failed without an answer
    /// worth keeping). A failure is logged: the marker then blocks the key
    /// until this process ends (or the retention passes).
    pub(crate) async fn abandon(&self, key: &str) {
        let result = match &self.records {
            Records::Sled(s) => s.tree.get(key).map_err(sled_err).and_then(|current| match current {
                Some(bytes) if matches!(decode(key, &bytes)?, Record::InFlight { boot, .. } if boot == self.boot) => s
                    .tree
                    .compare_and_swap(key, Some(bytes), None as Option<&[u8]>)
                    .map_err(sled_err)
                    .map(|_| ()),
                _ => Ok(()),
            }),
            #[cfg(feature = "postgres")]
            Records::Postgres(p) => p.abandon(key).await,
        };
        if let Err(e) = result {
            warn!(error = %e, "could not release an idempotency key");
        }
    }

    /// Removes expired records and the expired markers of other runs;
    /// returns how many.
    pub(crate) async fn purge(&self) -> Result<usize, HttpError> {
        let now = now_ms();
        match &self.records {
            Records::Sled(s) => {
                // A scan of the whole tree: off the runtime's threads.
                let (tree, boot, retention) = (s.tree.clone(), self.boot, self.retention);
                tokio::task::spawn_blocking(move || purge_sled(&tree, boot, retention, now))
                    .await
                    .map_err(|e| HttpError::Internal {
                        reason: format!("the idempotency purge failed: {e}"),
                    })?
            }
            #[cfg(feature = "postgres")]
            Records::Postgres(p) => {
                let cutoff = now.saturating_sub(self.retention.as_millis() as u64);
                p.purge(cutoff).await
            }
        }
    }
}

/// The sled purge: expired records, expired markers of other runs, and
/// records that do not decode.
fn purge_sled(tree: &sled::Tree, boot: [u8; 16], retention: Duration, now: u64) -> Result<usize, HttpError> {
    let expired = |at: u64| now.saturating_sub(at) > retention.as_millis() as u64;
    let mut removed = 0;
    for kv in tree.iter() {
        let (k, v) = kv.map_err(sled_err)?;
        let stale = match decode(&String::from_utf8_lossy(&k), &v) {
            Ok(Record::Done(r)) => expired(r.created_ms),
            // A dead run's marker is kept until it expires: a retry
            // within the retention must learn that its write may have landed.
            Ok(Record::InFlight {
                boot: b, started_ms, ..
            }) => b != boot && expired(started_ms),
            Err(_) => true,
        };
        if stale
            && tree
                .compare_and_swap(&k, Some(v), None as Option<&[u8]>)
                .map_err(sled_err)?
                .is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The request's key: absent, or 1..=255 visible ASCII characters other than
/// `"` and `\`, optionally as a structured-field string (`"..."`).
pub(crate) fn parse_key(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HttpError::InvalidIdempotencyKey {
            reason: "sent more than once".into(),
        });
    }
    let raw = value.as_bytes();
    let inner = match raw {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    if inner.is_empty() || inner.len() > MAX_KEY_LEN {
        return Err(HttpError::InvalidIdempotencyKey {
            reason: format!("must be 1 to {MAX_KEY_LEN} characters, got {}", inner.len()),
        });
    }
    if let Some(bad) = inner
        .iter()
        .find(|b| !(0x21..=0x7e).contains(*b) || **b == b'"' || **b == b'\\')
    {
        return Err(HttpError::InvalidIdempotencyKey {
            reason: format!("character 0x{bad:02x} is not allowed: use visible ASCII without quotes or backslashes"),
        });
    }
    Ok(Some(String::from_utf8_lossy(inner).into_owned()))
}

/// The request's fingerprint: method, path and query, preconditions, the
/// body and its content type.
fn fingerprint(method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(target.as_bytes());
    for name in [header::IF_MATCH, header::IF_NONE_MATCH, header::CONTENT_TYPE] {
        h.update([0]);
        for v in headers.get_all(name) {
            h.update(v.as_bytes());
            h.update([1]);
        }
    }
    // Headers only the document routes read, hashed only when present, so
    // the fingerprints of requests without them are those of earlier versions.
    for name in ["if-unmodified-since", "strata-merge-base", "strata-actor"] {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_some() {
            h.update([2]);
            h.update(name.as_bytes());
            for v in values {
                h.update([1]);
                h.update(v.as_bytes());
            }
        }
    }
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

/// Response headers not worth remembering: the connection's, or recomputed.
fn kept_header(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "content-length" | "date" | "connection" | "transfer-encoding" | "x-request-id"
    )
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(&value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
        .headers_mut()
        .insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Set by the middleware on a keyed request (never taken from the client):
/// the request's fingerprint, hex, recorded in its events' metadata.
pub(crate) const INTERNAL_FINGERPRINT: &str = "x-strata-internal-idempotency-fingerprint";
/// Set by the middleware when the same keyed request started in a run of
/// the process that died: the handler looks for its write before writing.
pub(crate) const INTERNAL_AFTER_CRASH: &str = "x-strata-internal-idempotency-after-crash";

/// The middleware: applies to every POST, PUT, PATCH and DELETE that
/// carries the header.
pub(crate) async fn middleware(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    // Only this middleware sets these.
    req.headers_mut().remove(INTERNAL_FINGERPRINT);
    req.headers_mut().remove(INTERNAL_AFTER_CRASH);
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let key = match parse_key(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, state.config.body_limit).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => {
            return HttpError::PayloadTooLarge {
                reason: format!("the body exceeds the limit of {} bytes", state.config.body_limit),
            }
            .into_response();
        }
        // The client went away or sent a broken body: nothing to remember.
        Err(e) => {
            return HttpError::MalformedJson {
                reason: format!("the request body could not be read: {e}"),
            }
            .into_response();
        }
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let fp = fingerprint(&parts.method, target, &parts.headers, &bytes);
    let store = &state.idempotency;
    match store.begin(&key, fp).await {
        Err(e) => e.into_response(),
        Ok(Begin::Replay(stored)) => {
            state.metrics.replay(&crate::metrics::route_of(&parts.extensions));
            replay(stored)
        }
        Ok(Begin::InFlight) => HttpError::IdempotencyKeyInFlight { key }.into_response(),
        Ok(Begin::Mismatch) => HttpError::IdempotencyKeyReused { key }.into_response(),
        Ok(Begin::Proceed { after_crash }) => {
            let mut parts = parts;
            let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
            parts.headers.insert(
                INTERNAL_FINGERPRINT,
                HeaderValue::from_str(&hex).expect("hex is a valid header"),
            );
            if after_crash {
                parts
                    .headers
                    .insert(INTERNAL_AFTER_CRASH, HeaderValue::from_static("1"));
            }
            let req = Request::from_parts(parts, Body::from(bytes));
            let path = REQUEST_PATH.try_with(Clone::clone).unwrap_or_default();
            let task_state = state.clone();
            let task_key = key.clone();
            // The handler runs in a task of its own: a client that hangs up
            // does not cancel it halfway, so the key is always completed or
            // released, and shutdown waits for it.
            let work = async move {
                let response = next.run(req).await;
                finish(&task_state, &task_key, fp, response).await
            };
            let handle = state
                .tasks
                .spawn(REQUEST_PATH.scope(path, work).instrument(tracing::Span::current()));
            match handle.await {
                Ok(response) => response,
                Err(e) => {
                    store.abandon(&key).await;
                    HttpError::Internal {
                        reason: format!("the handler failed: {e}"),
                    }
                    .into_response()
                }
            }
        }
    }
}

/// Whether a body read failed on the size limit (rather than the client).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether a response is remembered under its key: a success (the write
/// happened) or a conflict with the resource's state (409/412, the answer
/// of the request as decided). Other refusals wrote nothing and did not
/// depend on state (malformed or invalid input, a missing precondition, an
/// unknown resource), and server errors may be retried: their key is
/// released, so the corrected request can use it.
fn remembered(status: StatusCode) -> bool {
    status.is_success() || matches!(status, StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED)
}

/// Remembers the handler's response (see [`remembered`]) and returns it.
async fn finish(state: &Shared, key: &str, fingerprint: [u8; 32], response: Response) -> Response {
    let store = &state.idempotency;
    if !remembered(response.status()) {
        store.abandon(key).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            store.abandon(key).await;
            return HttpError::Internal {
                reason: format!("reading the response: {e}"),
            }
            .into_response();
        }
    };
    let stored = StoredResponse {
        fingerprint,
        created_ms: now_ms(),
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter(|(n, _)| kept_header(n))
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: bytes.to_vec(),
    };
    if let Err(e) = store.complete(key, stored.clone()).await {
        // The write itself happened: answer it. The key keeps this run's
        // in-flight marker (a retry meanwhile is told the key is in use,
        // never run a second time) while recording is retried in the
        // background; if that never succeeds, the marker is a dead run's
        // after a restart and the retry is judged against the log.
        warn!(error = %e, key, "could not record an idempotency key durably; retrying in the background");
        // Tracked: shutdown waits for it (a last attempt), so the store is
        // not left open behind a stopped server.
        state
            .tasks
            .spawn(retry_complete(state.clone(), key.to_string(), stored));
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Pauses between the background attempts to record a response whose first
/// attempt failed.
const COMPLETE_RETRY: [Duration; 6] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Records `response` under `key`, retrying with pauses (and once more,
/// at once, when the service stops); see [`finish`].
async fn retry_complete(state: Shared, key: String, response: StoredResponse) {
    retry_complete_with(&state.idempotency, &state.stopping, &COMPLETE_RETRY, &key, response).await;
}

/// The loop of [`retry_complete`]: an attempt after each pause (or at once
/// when `stopping` is cancelled, then no more); true once one succeeds.
async fn retry_complete_with(
    ids: &IdempotencyStore,
    stopping: &tokio_util::sync::CancellationToken,
    pauses: &[Duration],
    key: &str,
    response: StoredResponse,
) -> bool {
    for pause in pauses {
        let last = tokio::select! {
            _ = tokio::time::sleep(*pause) => false,
            _ = stopping.cancelled() => true,
        };
        match ids.complete(key, response.clone()).await {
            Ok(()) => {
                tracing::info!(key, "recorded an idempotency key on a later attempt");
                return true;
            }
            Err(e) => warn!(error = %e, key, "could not record an idempotency key durably"),
        }
        if last {
            break;
        }
    }
    tracing::error!(
        key,
        "gave up recording an idempotency key: it stays in flight until this process ends, then a retry is judged against the log"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> (SledStore, IdempotencyStore) {
        let sled = SledStore::open(dir).unwrap();
        let ids = IdempotencyStore::open(&sled, Duration::from_secs(3600)).unwrap();
        (sled, ids)
    }

    pub(super) fn response(fingerprint: [u8; 32]) -> StoredResponse {
        StoredResponse {
            fingerprint,
            created_ms: now_ms(),
            status: 201,
            headers: vec![("etag".into(), b"\"1\"".to_vec())],
            body: b"{}".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_key_runs_once_then_replays_and_refuses_other_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let (_sled, ids) = store(dir.path());
        runs_once_then_replays(&ids).await;
    }

    /// The contract every backend keeps for one key: one run, 409 while it
    /// runs, 422 for another payload, the stored answer afterwards.
    pub(super) async fn runs_once_then_replays(ids: &IdempotencyStore) {
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(ids.begin("k", a).await.unwrap(), Begin::Proceed { after_crash: false });
        assert_eq!(ids.begin("k", a).await.unwrap(), Begin::InFlight);
        assert_eq!(ids.begin("k", b).await.unwrap(), Begin::Mismatch);
        let stored = response(a);
        ids.complete("k", stored.clone()).await.unwrap();
        assert_eq!(ids.begin("k", a).await.unwrap(), Begin::Replay(stored));
        assert_eq!(ids.begin("k", b).await.unwrap(), Begin::Mismatch);
        assert_eq!(
            ids.begin("released", a).await.unwrap(),
            Begin::Proceed { after_crash: false }
        );
        ids.abandon("released").await;
        assert_eq!(
            ids.begin("released", b).await.unwrap(),
            Begin::Proceed { after_crash: false },
            "an abandoned key is free"
        );
    }

    #[tokio::test]
    async fn a_marker_of_an_earlier_boot_does_not_block_the_key_but_a_response_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_sled, ids) = store(dir.path());
            assert_eq!(
                ids.begin("crashed", [1; 32]).await.unwrap(),
                Begin::Proceed { after_crash: false }
            );
            assert_eq!(
                ids.begin("other", [4; 32]).await.unwrap(),
                Begin::Proceed { after_crash: false }
            );
            assert_eq!(
                ids.begin("done", [2; 32]).await.unwrap(),
                Begin::Proceed { after_crash: false }
            );
            ids.complete("done", response([2; 32])).await.unwrap();
        }
        let (_sled, ids) = store(dir.path());
        assert_eq!(
            ids.purge().await.unwrap(),
            0,
            "a dead run's marker is kept within the retention"
        );
        assert_eq!(
            ids.begin("crashed", [1; 32]).await.unwrap(),
            Begin::Proceed { after_crash: true }
        );
        assert_eq!(
            ids.begin("other", [5; 32]).await.unwrap(),
            Begin::Mismatch,
            "another request under that key"
        );
        assert!(matches!(ids.begin("done", [2; 32]).await.unwrap(), Begin::Replay(_)));
    }

    #[tokio::test]
    async fn purge_removes_expired_records_and_old_markers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_sled, ids) = store(dir.path());
            ids.begin("old-marker", [1; 32]).await.unwrap();
        }
        let sled = SledStore::open(dir.path()).unwrap();
        let ids = IdempotencyStore::open(&sled, Duration::from_millis(0)).unwrap();
        ids.begin("mine", [3; 32]).await.unwrap();
        let mut old = response([2; 32]);
        old.created_ms = 0;
        ids.complete("expired", old).await.unwrap();
        assert_eq!(
            ids.purge().await.unwrap(),
            2,
            "the old boot's marker and the expired response"
        );
        assert_eq!(
            ids.begin("mine", [3; 32]).await.unwrap(),
            Begin::InFlight,
            "a live marker stays"
        );
        assert_eq!(
            ids.begin("expired", [9; 32]).await.unwrap(),
            Begin::Proceed { after_crash: false }
        );
    }

    /// Forges the state a crash leaves: the keyed write's event is the last
    /// of `stream`, and `key` holds an in-flight marker of a dead run with
    /// that write's fingerprint (read back from the event's metadata).
    async fn forge_dead_marker(store: &SledStore, stream: &strata_store::StreamId, key: &str) {
        use strata_store::{Direction, EventStore};
        let last = store
            .read_stream(stream, u64::MAX, Direction::Backward, 1)
            .await
            .unwrap();
        let hex = last[0].metadata.extra["http.idempotency_fingerprint"].clone();
        let mut fingerprint = [0u8; 32];
        for (i, b) in fingerprint.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let marker = encode(&Record::InFlight {
            fingerprint,
            boot: [7; 16],
            started_ms: now_ms(),
        })
        .unwrap();
        store.tables().open_tree(TREE).unwrap().insert(key, marker).unwrap();
    }

    /// The crash window: a keyed write landed and the process died before
    /// its answer was recorded (the key still holds the dead run's marker).
    /// The retry must find the write and answer it, not apply it twice.
    #[tokio::test]
    async fn a_retry_after_a_crash_before_the_record_does_not_apply_twice() {
        use crate::{Config, Server};
        use strata_store::{EventStore, StreamId};

        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
        let http = reqwest::Client::new();
        let url = server.url();
        let r = http
            .post(format!("{url}/stock"))
            .json(&serde_json::json!({"sku": "tea", "name": "Tea"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let receive = || {
            http.post(format!("{url}/stock/tea/receive"))
                .header("idempotency-key", "crash-1")
                .json(&serde_json::json!({"quantity": 4}))
        };
        let first = receive().send().await.unwrap();
        assert_eq!(first.status(), 200);

        // Forge the state a crash would leave: the event is in the log, the
        // key holds an in-flight marker of a dead run with its fingerprint.
        let stream = StreamId::new("stock-tea").unwrap();
        forge_dead_marker(&store, &stream, "crash-1").await;

        let retry = receive().send().await.unwrap();
        assert_eq!(retry.status(), 200);
        assert_eq!(retry.headers()[IDEMPOTENCY_REPLAYED], "true");
        let view: serde_json::Value = retry.json().await.unwrap();
        assert_eq!(view["on_hand"], 4, "received once, not twice");
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            2,
            "nothing appended by the retry"
        );
        // From now on the answer is recorded.
        let again = receive().send().await.unwrap();
        assert_eq!(again.headers()[IDEMPOTENCY_REPLAYED], "true");
        server.shutdown().await.unwrap();
    }

    /// The same crash window on a document: a keyed PUT that landed before
    /// its record is answered from the document, not applied again (which
    /// would otherwise append a second version, or refuse a create-only
    /// write that in fact succeeded).
    #[tokio::test]
    async fn a_document_write_retried_after_a_crash_is_not_applied_twice() {
        use crate::{Config, Server};
        use strata_store::{EventStore, StreamId};

        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
        let http = reqwest::Client::new();
        let url = server.url();
        let r = http
            .put(format!("{url}/collections/items"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let create = || {
            http.put(format!("{url}/docs/items/1"))
                .header("idempotency-key", "doc-crash-1")
                .header("if-none-match", "*")
                .json(&serde_json::json!({"n": 1}))
        };
        assert_eq!(create().send().await.unwrap().status(), 201);

        let stream = StreamId::new("doc-items/1").unwrap();
        forge_dead_marker(&store, &stream, "doc-crash-1").await;

        let retry = create().send().await.unwrap();
        assert_eq!(retry.status(), 201, "the create's own answer, not already-exists");
        assert_eq!(retry.headers()[IDEMPOTENCY_REPLAYED], "true");
        assert_eq!(retry.headers()["etag"], "\"1\"");
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            1,
            "nothing appended by the retry"
        );
        server.shutdown().await.unwrap();
    }

    #[test]
    fn keys_are_validated() {
        let h = |v: &[u8]| {
            let mut m = HeaderMap::new();
            m.insert(IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap());
            parse_key(&m)
        };
        assert_eq!(h(b"abc-123").unwrap().as_deref(), Some("abc-123"));
        assert_eq!(h(b"\"abc\"").unwrap().as_deref(), Some("abc"));
        for bad in [&b""[..], b"\"\"", b"a b", b"a\\b", &[b'x'; 256]] {
            assert!(h(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_key(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn the_fingerprint_covers_method_target_preconditions_and_body() {
        let none = HeaderMap::new();
        let mut with_if_match = HeaderMap::new();
        with_if_match.insert(header::IF_MATCH, HeaderValue::from_static("\"1\""));
        let base = fingerprint(&Method::POST, "/a", &none, b"{}");
        assert_eq!(base, fingerprint(&Method::POST, "/a", &none, b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/b", &none, b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/a", &none, b"{ }"));
        assert_ne!(base, fingerprint(&Method::POST, "/a", &with_if_match, b"{}"));
    }
}
