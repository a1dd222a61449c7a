//! What a document request says: its preconditions (headers and
//! `_version`), its actor, and its body in the media type it names.

use std::time::UNIX_EPOCH;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde_json::{Map, Value};
use strata_aggregates::domain::document::{Change, IfMatch, JsonPatch, Preconditions, VERSION_MEMBER};

use super::problem::{invalid_precondition, unsupported_media_type};
use crate::error::HttpError;
use crate::extract::is_json;
use crate::json::parse_strict;
use crate::precondition::{if_none_match_any, parse_version_tag};

/// The request header naming who makes a change (recorded with it).
pub const ACTOR_HEADER: &str = "strata-actor";
/// The request header naming the version a write started from, to be
/// merged onto the current one when the fields do not overlap.
pub const MERGE_BASE_HEADER: &str = "strata-merge-base";
/// The response header naming the version a merge-base write was applied onto.
pub const MERGED_ONTO_HEADER: &str = "strata-merged-onto";
/// The longest actor, in bytes.
pub(crate) const MAX_ACTOR: usize = 256;

/// `application/merge-patch+json`.
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";
/// `application/json-patch+json`.
pub(crate) const JSON_PATCH: &str = "application/json-patch+json";

/// A request body with its content type, read within the body limit.
pub(crate) struct RawBody {
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (content_type, bytes) = crate::extract::body(req, state).await?;
        Ok(RawBody { content_type, bytes })
    }
}

fn essence(content_type: &Option<String>) -> String {
    content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn parse_json(bytes: &[u8]) -> Result<Value, HttpError> {
    parse_strict(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => HttpError::InvalidBody { reason: e.to_string() },
        _ => HttpError::MalformedJson { reason: e.to_string() },
    })
}

fn take_version(body: &mut Map<String, Value>) -> Result<Option<u64>, HttpError> {
    match body.remove(VERSION_MEMBER) {
        None => Ok(None),
        Some(v) => crate::json::integer::from_value(&v)
            .map(Some)
            .map_err(|e| HttpError::InvalidBody {
                reason: format!("_version must be a version: {e}"),
            }),
    }
}

/// A `PUT` body: a JSON object; its `_version`, if any, taken out.
pub(crate) fn put_body(body: RawBody) -> Result<(Map<String, Value>, Option<u64>), HttpError> {
    if !is_json(&essence(&body.content_type)) {
        return Err(unsupported_media_type(body.content_type, "application/json", false));
    }
    match parse_json(&body.bytes)? {
        Value::Object(mut m) => {
            let version = take_version(&mut m)?;
            Ok((m, version))
        }
        other => Err(HttpError::InvalidBody {
            reason: format!("a document is a JSON object, not {}", short(&other)),
        }),
    }
}

/// A `PATCH` body, by its media type: the change and a `_version` it names.
pub(crate) fn patch_body(body: RawBody) -> Result<(Change, Option<u64>), HttpError> {
    let kind = essence(&body.content_type);
    if kind != MERGE_PATCH && kind != JSON_PATCH {
        return Err(unsupported_media_type(
            body.content_type,
            "application/merge-patch+json or application/json-patch+json",
            true,
        ));
    }
    let value = parse_json(&body.bytes)?;
    if kind == MERGE_PATCH {
        return match value {
            Value::Object(mut m) => {
                let version = take_version(&mut m)?;
                Ok((Change::MergePatch(Value::Object(m)), version))
            }
            // RFC 7396 allows any value; it would replace the whole
            // document with something that is not an object.
            other => Err(HttpError::ValidationFailed {
                reason: format!(
                    "a merge patch that is not an object replaces the whole document, which must stay an object; got {}",
                    short(&other)
                ),
            }),
        };
    }
    let Value::Array(ops) = value else {
        return Err(HttpError::InvalidBody {
            reason: "a JSON Patch document is an array of operations".into(),
        });
    };
    let mut version = None;
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let from = op.get("from").and_then(Value::as_str).unwrap_or_default();
        let on_version = |p: &str| p == "/_version" || p.starts_with("/_version/");
        if on_version(path) || on_version(from) {
            match (
                op.get("op").and_then(Value::as_str),
                op.get("value").and_then(|v| crate::json::integer::from_value(v).ok()),
            ) {
                (Some("test"), Some(v)) if path == "/_version" && version.is_none() => version = Some(v),
                _ => {
                    return Err(HttpError::ValidationFailed {
                        reason: "`_version` is the document's version, not a field: only one `test` of /_version with a version (a precondition) may name it".into(),
                    });
                }
            }
        } else {
            kept.push(op);
        }
    }
    let patch = JsonPatch::from_value(Value::Array(kept)).map_err(|reason| HttpError::InvalidBody { reason })?;
    Ok((Change::JsonPatch(patch), version))
}

fn short(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `If-Match` as documents take it: `*`, or one or more strong ETags
/// (`"3"`, `"3", "4"`; across several header lines too). A weak or
/// malformed tag is 400.
pub(crate) fn if_match_list(headers: &HeaderMap) -> Result<Option<IfMatch>, HttpError> {
    let mut raw = Vec::new();
    for v in headers.get_all(header::IF_MATCH) {
        raw.push(v.to_str().map_err(|_| HttpError::InvalidIfMatch {
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            reason: "not visible ASCII".into(),
        })?);
    }
    if raw.is_empty() {
        return Ok(None);
    }
    let joined = raw.join(",");
    let tags: Vec<&str> = joined.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if tags == ["*"] {
        return Ok(Some(IfMatch::Any));
    }
    let invalid = |reason: String| HttpError::InvalidIfMatch {
        value: joined.clone(),
        reason,
    };
    if tags.is_empty() || tags.contains(&"*") {
        return Err(invalid("If-Match is `*` alone, or a list of ETags".into()));
    }
    let versions = tags
        .iter()
        .map(|t| parse_version_tag(t))
        .collect::<Result<Vec<u64>, String>>()
        .map_err(invalid)?;
    Ok(Some(IfMatch::Versions(versions)))
}

/// `If-Unmodified-Since` in milliseconds since the Unix epoch. Not an
/// HTTP date is 400 (RFC 9110 says to ignore it; strata refuses it rather
/// than turn a conditional write into an unconditional one).
fn if_unmodified_since(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    let Some(v) = headers.get(header::IF_UNMODIFIED_SINCE) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(v.as_bytes());
    let t = httpdate::parse_http_date(text.trim()).map_err(|_| {
        invalid_precondition(format!(
            "If-Unmodified-Since {text:?} is not an HTTP date (e.g. Sun, 06 Nov 1994 08:49:37 GMT)"
        ))
    })?;
    Ok(Some(
        t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
    ))
}

/// `Strata-Merge-Base`: a version, bare (`3`) or as its ETag (`"3"`).
fn merge_base(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    let mut values = headers.get_all(MERGE_BASE_HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
    let bad = || {
        invalid_precondition(format!(
            "Strata-Merge-Base {text:?} is not a version: send the ETag you read (\"3\") or its number"
        ))
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let digits = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(&text);
    let quoted = format!("\"{digits}\"");
    parse_version_tag(&quoted).map(Some).map_err(|_| bad())
}

/// The preconditions of a write: headers, and `_version` from the body.
pub(crate) fn preconditions(headers: &HeaderMap, body_version: Option<u64>) -> Result<Preconditions, HttpError> {
    Ok(Preconditions {
        if_match: if_match_list(headers)?,
        if_none_match: if_none_match_any(headers)?,
        if_unmodified_since_ms: if_unmodified_since(headers)?,
        body_version,
        merge_base: merge_base(headers)?,
    })
}

/// The actor of a request: `Strata-Actor`, 1..=256 bytes of visible ASCII
/// and spaces, trimmed; absent is anonymous.
pub(crate) fn actor(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let mut values = headers.get_all(ACTOR_HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    let invalid = |reason: &str| HttpError::InvalidParameter {
        reason: format!("Strata-Actor: {reason}"),
    };
    if values.next().is_some() {
        return Err(invalid("sent more than once"));
    }
    let text = v.to_str().map_err(|_| invalid("visible ASCII and spaces only"))?.trim();
    if text.is_empty() || text.len() > MAX_ACTOR {
        return Err(invalid("1 to 256 characters"));
    }
    Ok(Some(text.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn if_match_takes_star_and_lists_of_strong_tags() {
        assert_eq!(if_match_list(&headers(&[])).unwrap(), None);
        assert_eq!(
            if_match_list(&headers(&[("if-match", "*")])).unwrap(),
            Some(IfMatch::Any)
        );
        assert_eq!(
            if_match_list(&headers(&[("if-match", "\"1\", \"3\""), ("if-match", "\"4\"")])).unwrap(),
            Some(IfMatch::Versions(vec![1, 3, 4]))
        );
        for bad in ["W/\"1\"", "\"1\", W/\"2\"", "1", "*, \"1\"", "\"01\"", ","] {
            assert!(
                matches!(
                    if_match_list(&headers(&[("if-match", bad)])),
                    Err(HttpError::InvalidIfMatch { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_bases_and_actors_parse_or_are_refused() {
        let h = headers(&[
            ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("strata-merge-base", "\"7\""),
            ("strata-actor", " ada "),
        ]);
        let p = preconditions(&h, Some(7)).unwrap();
        assert_eq!(p.if_unmodified_since_ms, Some(784_111_777_000));
        assert_eq!(p.merge_base, Some(7));
        assert_eq!(actor(&h).unwrap().as_deref(), Some("ada"));
        assert_eq!(merge_base(&headers(&[("strata-merge-base", "12")])).unwrap(), Some(12));
        assert!(merge_base(&headers(&[("strata-merge-base", "x")])).is_err());
        assert!(if_unmodified_since(&headers(&[("if-unmodified-since", "yesterday")])).is_err());
        assert!(actor(&headers(&[("strata-actor", "  ")])).is_err());
    }

    #[test]
    fn patch_bodies_by_media_type() {
        let body = |ct: &str, text: &'static str| RawBody {
            content_type: Some(ct.into()),
            bytes: Bytes::from_static(text.as_bytes()),
        };
        let (change, v) = patch_body(body(MERGE_PATCH, r#"{"a":1,"_version":3}"#)).unwrap();
        assert_eq!((change, v), (Change::MergePatch(serde_json::json!({"a":1})), Some(3)));
        let (change, v) = patch_body(body(
            JSON_PATCH,
            r#"[{"op":"test","path":"/_version","value":2},{"op":"add","path":"/a","value":1}]"#,
        ))
        .unwrap();
        assert_eq!(v, Some(2));
        assert!(matches!(change, Change::JsonPatch(p) if p.operations().len() == 1));
        assert!(patch_body(body(JSON_PATCH, r#"[{"op":"replace","path":"/_version","value":2}]"#)).is_err());
        assert!(matches!(
            patch_body(body("application/json", "{}")),
            Err(HttpError::Document(d)) if d.problem.status == 415 && d.accept_patch
        ));
        assert!(matches!(
            patch_body(body(MERGE_PATCH, "[1]")),
            Err(HttpError::ValidationFailed { .. })
        ));
        assert!(matches!(
            patch_body(body(MERGE_PATCH, "{")),
            Err(HttpError::MalformedJson { .. })
        ));
    }
}
