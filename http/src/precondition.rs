//! `ETag`, `If-Match` and `If-None-Match`: versions as HTTP validators.
//!
//! A resource's `ETag` is its stream version as a strong validator,
//! `"<version>"`. A write's `If-Match` names the version it was decided on;
//! `*` means the resource must exist.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::error::HttpError;

/// A parsed `If-Match`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IfMatch {
    /// `*`: the resource must exist.
    Any,
    /// `"<version>"`.
    Version(u64),
}

/// What a write expects of its resource's version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Expect {
    /// No precondition: the server reads, decides and retries on its own.
    Unconditional,
    /// `If-Match: *`: the resource must exist.
    MustExist,
    /// The resource must be at exactly this version.
    Version(u64),
}

/// The `ETag` of a version.
pub(crate) fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes are a valid header value")
}

pub(crate) fn single<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Result<Option<&'a str>, HttpError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let shown = String::from_utf8_lossy(first.as_bytes()).into_owned();
    if values.next().is_some() {
        return Err(HttpError::InvalidIfMatch {
            value: shown,
            reason: format!("{name} was sent more than once; send one"),
        });
    }
    first.to_str().map(Some).map_err(|_| HttpError::InvalidIfMatch {
        value: shown,
        reason: "not visible ASCII".into(),
    })
}

/// Parses one strong entity tag of ours: `"<digits>"` with no leading zero.
pub(crate) fn parse_version_tag(tag: &str) -> Result<u64, String> {
    if tag.starts_with("W/") {
        return Err("weak ETags cannot be used with If-Match (strong comparison); send the ETag as issued".into());
    }
    let inner = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| "an ETag is a quoted string, e.g. \"7\"".to_string())?;
    let canonical =
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) && (inner == "0" || !inner.starts_with('0'));
    if !canonical {
        return Err("this API's ETags are stream versions, e.g. \"7\"".into());
    }
    inner
        .parse()
        .map_err(|_| "the version does not fit in 64 bits".to_string())
}

/// The request's `If-Match`, if any. A weak, malformed or listed value is
/// [`HttpError::InvalidIfMatch`] (400).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, HttpError> {
    let Some(raw) = single(headers, &header::IF_MATCH)? else {
        return Ok(None);
    };
    let value = raw.trim();
    if value == "*" {
        return Ok(Some(IfMatch::Any));
    }
    if value.contains(',') {
        return Err(HttpError::InvalidIfMatch {
            value: raw.into(),
            reason: "a write is decided on one version: send one ETag, not a list".into(),
        });
    }
    parse_version_tag(value)
        .map(|v| Some(IfMatch::Version(v)))
        .map_err(|reason| HttpError::InvalidIfMatch {
            value: raw.into(),
            reason,
        })
}

/// Refuses an `If-Match` on a create: there is no version to match yet.
pub(crate) fn no_if_match_on_create(headers: &HeaderMap) -> Result<(), HttpError> {
    match single(headers, &header::IF_MATCH)? {
        None => Ok(()),
        Some(v) => Err(HttpError::InvalidIfMatch {
            value: v.into(),
            reason: "a create has no version to match; send no If-Match".into(),
        }),
    }
}

/// Whether the request says `If-None-Match: *` (create only). Other values
/// are 400 on a write.
pub(crate) fn if_none_match_any(headers: &HeaderMap) -> Result<bool, HttpError> {
    match single(headers, &header::IF_NONE_MATCH)? {
        None => Ok(false),
        Some(v) if v.trim() == "*" => Ok(true),
        Some(v) => Err(HttpError::InvalidIfMatch {
            value: v.into(),
            reason: "on a write, If-None-Match only takes *".into(),
        }),
    }
}

/// Whether a `GET`'s `If-None-Match` matches `version` (weak comparison, as
/// RFC 9110 says for `If-None-Match`): the client's copy is current (304).
pub(crate) fn not_modified(headers: &HeaderMap, version: u64) -> bool {
    let Some(Ok(value)) = headers.get(header::IF_NONE_MATCH).map(|v| v.to_str()) else {
        return false;
    };
    value.split(',').map(str::trim).any(|tag| {
        // `*` matches any current representation: none exists at version 0.
        (tag == "*" && version > 0)
            || parse_version_tag(tag.strip_prefix("W/").unwrap_or(tag)).is_ok_and(|v| v == version)
    })
}

/// Combines `If-Match` and a body's `expected_version` into what the write
/// expects. Both present and naming different versions is 400; neither
/// present with `require` on is 428.
pub(crate) fn resolve(if_match: Option<IfMatch>, body: Option<u64>, require: bool) -> Result<Expect, HttpError> {
    match (if_match, body) {
        // Required means a version is named: `*` checks none.
        (None | Some(IfMatch::Any), None) if require => Err(HttpError::PreconditionRequired),
        (None, None) => Ok(Expect::Unconditional),
        (Some(IfMatch::Any), None) => Ok(Expect::MustExist),
        (Some(IfMatch::Version(v)), None) | (None, Some(v)) => Ok(Expect::Version(v)),
        (Some(IfMatch::Version(a)), Some(b)) if a == b => Ok(Expect::Version(a)),
        (Some(IfMatch::Any), Some(b)) if b > 0 => Ok(Expect::Version(b)),
        (Some(IfMatch::Version(a)), Some(b)) => Err(HttpError::ConflictingExpectedVersions {
            if_match: format!("\"{a}\""),
            body: b.to_string(),
        }),
        (Some(IfMatch::Any), Some(b)) => Err(HttpError::ConflictingExpectedVersions {
            if_match: "*".into(),
            body: b.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_match_accepts_strong_versions_and_star() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            if_match(&with(header::IF_MATCH, &["\"7\""])).unwrap(),
            Some(IfMatch::Version(7))
        );
        assert_eq!(
            if_match(&with(header::IF_MATCH, &[" \"0\" "])).unwrap(),
            Some(IfMatch::Version(0))
        );
        assert_eq!(if_match(&with(header::IF_MATCH, &["*"])).unwrap(), Some(IfMatch::Any));
    }

    #[test]
    fn if_match_refuses_weak_malformed_and_lists() {
        for bad in [
            "W/\"7\"",
            "7",
            "\"07\"",
            "\"\"",
            "\"-1\"",
            "\"abc\"",
            "\"1\", \"2\"",
            "\"99999999999999999999999\"",
        ] {
            let e = if_match(&with(header::IF_MATCH, &[bad])).unwrap_err();
            assert!(matches!(e, HttpError::InvalidIfMatch { .. }), "{bad}: {e:?}");
        }
        assert!(if_match(&with(header::IF_MATCH, &["\"1\"", "\"1\""])).is_err());
    }

    #[test]
    fn resolve_combines_header_and_body() {
        use IfMatch::*;
        assert_eq!(resolve(None, None, false).unwrap(), Expect::Unconditional);
        assert!(matches!(
            resolve(None, None, true),
            Err(HttpError::PreconditionRequired)
        ));
        assert_eq!(resolve(None, Some(3), true).unwrap(), Expect::Version(3));
        assert_eq!(resolve(Some(Version(3)), Some(3), false).unwrap(), Expect::Version(3));
        assert_eq!(resolve(Some(Any), None, false).unwrap(), Expect::MustExist);
        assert!(matches!(
            resolve(Some(Any), None, true),
            Err(HttpError::PreconditionRequired)
        ));
        assert_eq!(resolve(Some(Any), Some(2), false).unwrap(), Expect::Version(2));
        assert!(matches!(
            resolve(Some(Version(3)), Some(4), false),
            Err(HttpError::ConflictingExpectedVersions { .. })
        ));
        assert!(matches!(
            resolve(Some(Any), Some(0), false),
            Err(HttpError::ConflictingExpectedVersions { .. })
        ));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(not_modified(&with(header::IF_NONE_MATCH, &["\"4\""]), 4));
        assert!(not_modified(&with(header::IF_NONE_MATCH, &["W/\"4\", \"9\""]), 4));
        assert!(!not_modified(&with(header::IF_NONE_MATCH, &["\"3\""]), 4));
        assert!(!not_modified(&HeaderMap::new(), 4));
        assert!(not_modified(&with(header::IF_NONE_MATCH, &["*"]), 4));
        assert!(
            !not_modified(&with(header::IF_NONE_MATCH, &["*"]), 0),
            "nothing exists at version 0"
        );
    }
}
