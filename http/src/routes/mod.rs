//! The handlers, one module per resource, and what they share.

pub(crate) mod meta;
pub(crate) mod orders;
pub(crate) mod stock;
pub(crate) mod streams;
pub(crate) mod views;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_store::{MAX_STREAM_ID_BYTES, Metadata};

use crate::error::HttpError;
use crate::idempotency::IDEMPOTENCY_KEY;
use crate::metrics::{Appended, REQUEST_ID};
use crate::precondition::{etag, not_modified};

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
        m.extra
            .insert("http.idempotency_key".into(), key.trim_matches('"').to_string());
    }
    m
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
