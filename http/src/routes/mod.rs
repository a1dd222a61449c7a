//! The handlers, one module per resource, and what they share.

pub(crate) mod admin;
pub(crate) mod browse;
pub(crate) mod documents;
pub(crate) mod groups;
pub(crate) mod live;
pub(crate) mod meta;
pub(crate) mod orders;
pub(crate) mod retention;
pub(crate) mod stock;
pub(crate) mod streams;
pub(crate) mod views;

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRef;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_aggregates::domain::document::DocumentService;
use strata_aggregates::domain::service::OrderService;
use strata_projections::Projections;
use strata_store::{Direction, EventStore, MAX_STREAM_ID_BYTES, Metadata, RecordedEvent, StreamId};

use crate::config::Config;
use crate::error::HttpError;
use crate::idempotency::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED, INTERNAL_AFTER_CRASH, INTERNAL_FINGERPRINT};
use crate::metrics::{Appended, REQUEST_ID};
use crate::precondition::{etag, not_modified};

/// What the domain's routes (orders, stock) use: the order service, the
/// log (to find a write that landed before a crash), the configuration.
/// Taken from any state that has these substates.
pub(crate) struct Domain {
    pub config: Arc<Config>,
    pub store: Arc<dyn EventStore>,
    pub service: OrderService,
}

impl<S: Send + Sync> FromRef<S> for Domain
where
    Arc<Config>: FromRef<S>,
    Arc<dyn EventStore>: FromRef<S>,
    OrderService: FromRef<S>,
{
    fn from_ref(state: &S) -> Domain {
        Domain {
            config: FromRef::from_ref(state),
            store: FromRef::from_ref(state),
            service: FromRef::from_ref(state),
        }
    }
}

/// What the document routes use: the document service, the log (to find
/// a write that landed before a crash), the configuration.
pub(crate) struct Documents {
    pub config: Arc<Config>,
    pub store: Arc<dyn EventStore>,
    pub documents: Arc<DocumentService>,
}

impl<S: Send + Sync> FromRef<S> for Documents
where
    Arc<Config>: FromRef<S>,
    Arc<dyn EventStore>: FromRef<S>,
    Arc<DocumentService>: FromRef<S>,
{
    fn from_ref(state: &S) -> Documents {
        Documents {
            config: FromRef::from_ref(state),
            store: FromRef::from_ref(state),
            documents: FromRef::from_ref(state),
        }
    }
}

/// What the log's routes use: the log and the configuration.
pub(crate) struct Log {
    pub config: Arc<Config>,
    pub store: Arc<dyn EventStore>,
}

impl<S: Send + Sync> FromRef<S> for Log
where
    Arc<Config>: FromRef<S>,
    Arc<dyn EventStore>: FromRef<S>,
{
    fn from_ref(state: &S) -> Log {
        Log {
            config: FromRef::from_ref(state),
            store: FromRef::from_ref(state),
        }
    }
}

/// What the views use: the read models and the configuration.
pub(crate) struct Views {
    pub config: Arc<Config>,
    pub projections: Arc<Projections>,
}

impl<S: Send + Sync> FromRef<S> for Views
where
    Arc<Config>: FromRef<S>,
    Arc<Projections>: FromRef<S>,
{
    fn from_ref(state: &S) -> Views {
        Views {
            config: FromRef::from_ref(state),
            projections: FromRef::from_ref(state),
        }
    }
}

/// The response header carrying the log position a write committed at (or
/// a read model had applied).
pub const STRATA_POSITION: &str = "strata-position";

/// A successful write: status, `ETag`, `Strata-Position`, `Location`, body.
pub(crate) struct Written<T> {
    pub status: StatusCode,
    pub version: u64,
    pub position: Option<u64>,
    pub location: Option<String>,
    pub appended: u64,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Written<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let h = response.headers_mut();
        h.insert(header::ETAG, etag(self.version));
        if let Some(p) = self.position {
            h.insert(STRATA_POSITION, HeaderValue::from(p));
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, location);
        }
        if self.appended > 0 {
            response.extensions_mut().insert(Appended(self.appended));
        }
        response
    }
}

/// A read of a versioned resource: 200 with `ETag`, or 304 when the
/// client's `If-None-Match` is current.
pub(crate) fn versioned<T: Serialize>(headers: &HeaderMap, version: u64, body: T) -> Response {
    if not_modified(headers, version) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag(version));
        return r;
    }
    let mut r = Json(body).into_response();
    r.headers_mut().insert(header::ETAG, etag(version));
    r
}

/// The metadata recorded on the events of a request: its request id as the
/// correlation id, and its Idempotency-Key if it has one.
pub(crate) fn metadata(headers: &HeaderMap) -> Metadata {
    let mut m = Metadata {
        correlation_id: headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ..Metadata::default()
    };
    if let Some(key) = headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()) {
        m.extra.insert(KEY_META.into(), key.trim_matches('"').to_string());
        if let Some(fp) = headers.get(INTERNAL_FINGERPRINT).and_then(|v| v.to_str().ok()) {
            m.extra.insert(FINGERPRINT_META.into(), fp.to_string());
        }
    }
    m
}

/// The metadata keys under which a keyed request's events record its key
/// and fingerprint (the `http.` prefix is refused in client metadata).
pub(crate) const KEY_META: &str = "http.idempotency_key";
/// See [`KEY_META`].
pub(crate) const FINGERPRINT_META: &str = "http.idempotency_fingerprint";

/// How far back a request retried after a crash looks for its own write.
const RECOVERY_SCAN: usize = 1000;

/// For a keyed request whose first run died with its process (see
/// `Begin::Proceed { after_crash }`): the newest event of `stream` that
/// this same request (key and fingerprint) appended, if its write landed
/// before the crash, among the stream's last 1,000 events. The handler then
/// answers from the resource as it is instead of writing again.
pub(crate) async fn written_before_crash(
    store: &dyn EventStore,
    headers: &HeaderMap,
    stream: &StreamId,
) -> Result<Option<RecordedEvent>, HttpError> {
    if headers.get(INTERNAL_AFTER_CRASH).is_none() {
        return Ok(None);
    }
    let m = metadata(headers);
    let (Some(key), Some(fp)) = (m.extra.get(KEY_META), m.extra.get(FINGERPRINT_META)) else {
        return Ok(None);
    };
    let recent = store
        .read_stream(stream, u64::MAX, Direction::Backward, RECOVERY_SCAN)
        .await
        .map_err(HttpError::from)?;
    Ok(recent
        .into_iter()
        .find(|e| e.metadata.extra.get(KEY_META) == Some(key) && e.metadata.extra.get(FINGERPRINT_META) == Some(fp)))
}

/// The answer to a request whose write landed before a crash: the resource
/// as it is now, at its current version, with the position of that write.
pub(crate) fn recovered<T: Serialize>(
    status: StatusCode,
    version: u64,
    written: &RecordedEvent,
    location: Option<String>,
    body: T,
) -> Response {
    let mut response = Written {
        status,
        version,
        position: Some(written.position),
        location,
        appended: 0,
        body,
    }
    .into_response();
    response
        .headers_mut()
        .insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Checks an id from the path that names the stream `"{kind}-{id}"`.
pub(crate) fn check_id(kind: &str, id: &str) -> Result<(), HttpError> {
    let shown = || id.chars().filter(|c| !c.is_control()).take(64).collect::<String>();
    let reason = if id.trim().is_empty() {
        Some("must not be empty or blank")
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if kind.len() + 1 + id.len() > MAX_STREAM_ID_BYTES {
        Some("too long to name a stream (at most 256 bytes with its prefix)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(HttpError::InvalidId {
            id: shown(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}
