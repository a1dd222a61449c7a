//! Extractors whose rejections are problem responses, not axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::HttpError;

/// A JSON body: 415 without a JSON content type, 400 when it is not JSON,
/// 422 when it is JSON of the wrong shape or names a member twice in any
/// object (`crate::json`), 413 over the body limit.
pub(crate) struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body (with or without a content type)
/// reads as `T::default()`: for commands whose fields are all optional.
pub(crate) struct ApiJsonOrEmpty<T>(pub T);

pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub(crate) async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<(Option<String>, Bytes), HttpError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::PayloadTooLarge {
                reason: "the body exceeds the server's body limit".into(),
            }
        } else {
            HttpError::MalformedJson {
                reason: format!("the body could not be read: {}", rejection.body_text()),
            }
        }
    })?;
    Ok((content_type, bytes))
}

fn parse<T: DeserializeOwned>(content_type: Option<String>, bytes: &[u8]) -> Result<T, HttpError> {
    match &content_type {
        Some(ct) if is_json(ct) => {}
        _ => {
            return Err(HttpError::UnsupportedMediaType {
                content_type,
                expected: "application/json",
            });
        }
    }
    // Strictly first (a member name twice is refused at any depth, as on
    // the document routes), then into the body's shape.
    let classify = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Data => HttpError::InvalidBody { reason: e.to_string() },
        _ => HttpError::MalformedJson { reason: e.to_string() },
    };
    let value = crate::json::parse_strict(bytes).map_err(classify)?;
    serde_json::from_value(value).map_err(classify)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (content_type, bytes) = body(req, state).await?;
        parse(content_type, &bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (content_type, bytes) = body(req, state).await?;
        // No body, or JSON `null`: every field takes its default.
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() || trimmed == b"null" {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        parse(content_type, &bytes).map(ApiJsonOrEmpty)
    }
}

/// Path parameters; a rejection is 400 `invalid-parameter`.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| HttpError::InvalidParameter {
                reason: format!("path: {}", r.body_text()),
            })
    }
}

/// Query parameters (structs deny unknown fields); a rejection is 400
/// `invalid-parameter`.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| HttpError::InvalidParameter {
                reason: format!("query: {}", r.body_text()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[tokio::test]
    async fn an_empty_body_or_null_takes_the_defaults() {
        #[derive(serde::Deserialize, Default, Debug, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Ship {
            tracking: Option<String>,
        }
        for body in ["", "  ", "null", " null\n"] {
            let req = Request::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let ApiJsonOrEmpty(ship) = ApiJsonOrEmpty::<Ship>::from_request(req, &()).await.unwrap();
            assert_eq!(ship, Ship::default(), "{body:?}");
        }
    }

    #[test]
    fn syntax_is_400_shape_is_422_and_no_type_is_415() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Receive {
            quantity: u64,
        }
        let json = Some("application/json".to_string());
        assert!(matches!(
            parse::<Receive>(json.clone(), b"{\"quantity\":"),
            Err(HttpError::MalformedJson { .. })
        ));
        for bad in [
            &b"{\"quantity\":-1}"[..],
            b"{\"quantity\":\"3\"}",
            b"{\"quantity\":1,\"x\":2}",
            b"{}",
        ] {
            assert!(
                matches!(parse::<Receive>(json.clone(), bad), Err(HttpError::InvalidBody { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A member twice, at the top or deep in a value the shape takes as
        // any JSON: refused alike.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Event {
            data: serde_json::Value,
        }
        for dup in [
            &br#"{"data":{},"data":{}}"#[..],
            br#"{"data":{"a":{"b":1,"b":2}}}"#,
            br#"{"data":[{"x":1,"x":1}]}"#,
        ] {
            assert!(
                matches!(parse::<Event>(json.clone(), dup), Err(HttpError::InvalidBody { ref reason }) if reason.contains("duplicate")),
                "{}",
                String::from_utf8_lossy(dup)
            );
        }
        assert!(parse::<Event>(json.clone(), br#"{"data":{"a":1,"b":{"a":1}}}"#).is_ok());
        assert!(matches!(
            parse::<Receive>(None, b"{\"quantity\":1}"),
            Err(HttpError::UnsupportedMediaType { .. })
        ));
        assert_eq!(parse::<Receive>(json, b"{\"quantity\":1}").unwrap().quantity, 1);
    }
}
