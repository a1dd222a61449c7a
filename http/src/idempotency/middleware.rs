//! The axum middleware: every unsafe request (POST, PUT, PATCH, DELETE)
//! that carries `Idempotency-Key` is claimed in the records before its
//! handler runs, and its answer recorded (or its key released) after.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, warn};

use super::backend::Records;
use crate::auth::access::TokenName;

use super::rules::{Begin, Fingerprint, IDEMPOTENCY_REPLAYED, Key, StoredResponse, kept_header, parse_key, remembered};
use crate::error::{HttpError, REQUEST_PATH};
use crate::metrics::Replayed;

/// Set by the middleware on a keyed request (never taken from the client):
/// the request's fingerprint, hex, recorded in its events' metadata.
pub(crate) const INTERNAL_FINGERPRINT: &str = "x-strata-internal-idempotency-fingerprint";
/// Set by the middleware when the same keyed request started in a run of
/// the process that died: the handler looks for its write before writing.
pub(crate) const INTERNAL_AFTER_CRASH: &str = "x-strata-internal-idempotency-after-crash";

/// What the middleware uses (a substate of the service's state).
#[derive(Clone)]
pub(crate) struct KeyedRequests {
    /// The records.
    pub records: Records,
    /// The largest request body accepted.
    pub body_limit: usize,
    /// Handlers detached from their connection: shutdown waits for them.
    pub tasks: TaskTracker,
    /// Cancelled when the service stops accepting: a record still being
    /// retried in the background makes a last attempt.
    pub stopping: CancellationToken,
}

/// Whether requests of `method` honour the key: the unsafe ones, whose
/// repetition could write twice.
fn keyed(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// The middleware: applies to every request of a [keyed] method that
/// carries the header.
pub(crate) async fn middleware(State(keyed_requests): State<KeyedRequests>, mut req: Request, next: Next) -> Response {
    // Only this middleware sets these.
    req.headers_mut().remove(INTERNAL_FINGERPRINT);
    req.headers_mut().remove(INTERNAL_AFTER_CRASH);
    if !keyed(req.method()) {
        return next.run(req).await;
    }
    let key = match parse_key(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let s = keyed_requests;
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, s.body_limit).await {
        Ok(b) => b,
        Err(e) if is_length_limit(&e) => {
            return HttpError::PayloadTooLarge {
                reason: format!("the body exceeds the limit of {} bytes", s.body_limit),
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
    let token = parts.extensions.get::<TokenName>().map(|t| t.0.as_str());
    let fp = Fingerprint::of(&parts.method, target, &parts.headers, &bytes).with_token(token);
    match s.records.begin(&key, fp).await {
        Err(e) => HttpError::from(e).into_response(),
        Ok(Begin::Replay(stored)) => replay(stored),
        Ok(Begin::InFlight) => HttpError::IdempotencyKeyInFlight { key: key.to_string() }.into_response(),
        Ok(Begin::Mismatch) => HttpError::IdempotencyKeyReused { key: key.to_string() }.into_response(),
        Ok(Begin::Proceed { after_crash }) => {
            let mut parts = parts;
            parts.headers.insert(
                INTERNAL_FINGERPRINT,
                HeaderValue::from_str(&fp.to_hex()).expect("hex is a valid header"),
            );
            if after_crash {
                parts
                    .headers
                    .insert(INTERNAL_AFTER_CRASH, HeaderValue::from_static("1"));
            }
            let req = Request::from_parts(parts, Body::from(bytes));
            let path = REQUEST_PATH.try_with(Clone::clone).unwrap_or_default();
            let (task_state, task_key) = (s.clone(), key.clone());
            // The handler runs in a task of its own: a client that hangs up
            // does not cancel it halfway, so the key is always completed or
            // released, and shutdown waits for it.
            let work = async move {
                let response = next.run(req).await;
                finish(&task_state, &task_key, fp, response).await
            };
            let handle = s
                .tasks
                .spawn(REQUEST_PATH.scope(path, work).instrument(tracing::Span::current()));
            match handle.await {
                Ok(response) => response,
                Err(e) => {
                    s.records.abandon(&key).await;
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

/// The first response again, marked as a replay (for the client and for
/// the metrics).
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
    response.extensions_mut().insert(Replayed);
    response
}

/// Remembers the handler's response (see [`remembered`]) and returns it.
async fn finish(s: &KeyedRequests, key: &Key, fingerprint: Fingerprint, response: Response) -> Response {
    if !remembered(response.status()) {
        s.records.abandon(key).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            s.records.abandon(key).await;
            return HttpError::Internal {
                reason: format!("reading the response: {e}"),
            }
            .into_response();
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| kept_header(n))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let stored = s
        .records
        .rules()
        .response(fingerprint, parts.status, headers, bytes.to_vec());
    if let Err(e) = s.records.complete(key, &stored).await {
        // The write itself happened: answer it. The key keeps this run's
        // in-flight marker (a retry meanwhile is told the key is in use,
        // never run a second time) while recording is retried in the
        // background; if that never succeeds, the marker is a dead run's
        // after a restart and the retry is judged against the log.
        warn!(error = %e, key = key.as_str(), "could not record an idempotency key durably; retrying in the background");
        // Tracked: shutdown waits for it (a last attempt), so the store is
        // not left open behind a stopped server.
        let (records, stopping, key) = (s.records.clone(), s.stopping.clone(), key.clone());
        s.tasks.spawn(async move {
            retry_complete(&records, &stopping, &COMPLETE_RETRY, &key, stored).await;
        });
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

/// Records `response` under `key`, an attempt after each pause (or at once
/// when `stopping` is cancelled, then no more); true once one succeeds.
pub(crate) async fn retry_complete(
    records: &Records,
    stopping: &CancellationToken,
    pauses: &[Duration],
    key: &Key,
    response: StoredResponse,
) -> bool {
    for pause in pauses {
        let last = tokio::select! {
            _ = tokio::time::sleep(*pause) => false,
            _ = stopping.cancelled() => true,
        };
        match records.complete(key, &response).await {
            // Not held any more: another run has the key; nothing to retry.
            Ok(_) => {
                tracing::info!(key = key.as_str(), "recorded an idempotency key on a later attempt");
                return true;
            }
            Err(e) => warn!(error = %e, key = key.as_str(), "could not record an idempotency key durably"),
        }
        if last {
            break;
        }
    }
    tracing::error!(
        key = key.as_str(),
        "gave up recording an idempotency key: it stays in flight until this process ends, then a retry is judged against the log"
    );
    false
}

#[cfg(test)]
mod tests;
