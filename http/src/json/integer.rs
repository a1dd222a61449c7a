//! Integers of requests as the OpenAPI document describes them: `integer`,
//! `format: int64`, `minimum: 0`.
//!
//! Versions, positions, quantities and amounts are `u64` in Rust, but the
//! document says `int64` (utoipa's mapping, and what most clients and
//! PostgreSQL's `bigint` hold), so a value above 2^63−1 is refused with a
//! problem rather than accepted beyond what the document promises. JSON
//! Schema's `integer` is a number whose value is whole, so `3.0` is the
//! integer 3; a whole number written with a fraction or an exponent is taken
//! when it is below 2^53, where every such float is exact.
//!
//! Use on a field: `#[serde(deserialize_with = "crate::json::integer::int64")]`,
//! or `..::option` on an `Option<u64>` (with `#[serde(default)]`).

use std::fmt;

use serde::Deserializer;
use serde::de::{Error, Visitor};

/// The largest integer the document allows: 2^63−1.
pub(crate) const MAX: u64 = i64::MAX as u64;

/// Below this a float's whole value is exact (2^53).
const EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

struct NonNegativeInt64;

impl Visitor<'_> for NonNegativeInt64 {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer from 0 to 9223372036854775807 (2^63-1)")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        if v > MAX {
            return Err(E::custom(format_args!(
                "{v} is above 9223372036854775807 (2^63-1), the largest integer this API takes"
            )));
        }
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format_args!("{v} is negative; expected {}", Expecting)))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        if v.fract() == 0.0 && (0.0..EXACT_FLOAT).contains(&v) {
            // Whole, non-negative and below 2^53: the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Ok(v as u64);
        }
        Err(E::custom(format_args!(
            "{v} is not {Expecting} (a whole number written with a fraction or an exponent is taken below 2^53)"
        )))
    }
}

struct Expecting;

impl fmt::Display for Expecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer from 0 to 9223372036854775807 (2^63-1)")
    }
}

/// A non-negative `int64`.
pub(crate) fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(NonNegativeInt64)
}

/// An optional non-negative `int64` (`null` reads as absent).
pub(crate) fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Optional;
    impl<'de> Visitor<'de> for Optional {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null or an integer from 0 to 9223372036854775807 (2^63-1)")
        }
        fn visit_none<E: Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            int64(d).map(Some)
        }
    }
    d.deserialize_option(Optional)
}

/// A non-negative `int32`-sized count (`u32`), whole floats taken as above.
pub(crate) fn int32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = int64(d)?;
    u32::try_from(v).map_err(|_| D::Error::custom(format_args!("{v} is above {}", u32::MAX)))
}

/// An optional [`int32`].
pub(crate) fn option_int32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    option(d)?
        .map(|v| u32::try_from(v).map_err(|_| D::Error::custom(format_args!("{v} is above {}", u32::MAX))))
        .transpose()
}

/// An optional array of [`int64`]s.
pub(crate) fn option_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    struct Int64(u64);
    impl<'de> serde::Deserialize<'de> for Int64 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Int64, D::Error> {
            int64(d).map(Int64)
        }
    }
    let v: Option<Vec<Int64>> = serde::Deserialize::deserialize(d)?;
    Ok(v.map(|v| v.into_iter().map(|Int64(n)| n).collect()))
}

/// A JSON value read as a non-negative `int64` (for members taken out of a
/// [`serde_json::Value`], such as a document's `_version`).
pub(crate) fn from_value(v: &serde_json::Value) -> Result<u64, String> {
    int64(v).map_err(|e: serde_json::Error| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(deserialize_with = "int64")]
        n: u64,
        #[serde(default, deserialize_with = "option")]
        m: Option<u64>,
    }

    fn body(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn int64_bounds() {
        assert_eq!(body(r#"{"n":9223372036854775807}"#).unwrap().n, MAX);
        assert_eq!(body(r#"{"n":0,"m":null}"#).unwrap().m, None);
        assert_eq!(body(r#"{"n":0,"m":7}"#).unwrap().m, Some(7));
        assert_eq!(body(r#"{"n":0}"#).unwrap().m, None);
        for bad in [
            r#"{"n":9223372036854775808}"#,
            r#"{"n":18446744073709551615}"#,
            r#"{"n":0,"m":9223372036854775808}"#,
            r#"{"n":-1}"#,
            r#"{"n":1.5}"#,
            r#"{"n":1e300}"#,
            r#"{"n":9007199254740992.0}"#,
            r#"{"n":"1"}"#,
        ] {
            let e = body(bad).unwrap_err();
            assert_eq!(e.classify(), serde_json::error::Category::Data, "{bad}: {e}");
        }
        assert!(
            body(r#"{"n":9223372036854775808}"#)
                .unwrap_err()
                .to_string()
                .contains("2^63-1")
        );
    }

    #[test]
    fn whole_floats_are_integers() {
        assert_eq!(body(r#"{"n":148758.0}"#).unwrap().n, 148_758);
        assert_eq!(body(r#"{"n":1e3}"#).unwrap().n, 1000);
        assert_eq!(body(r#"{"n":0,"m":-0.0}"#).unwrap().m, Some(0));
        assert_eq!(from_value(&json!(7.0)), Ok(7));
        assert!(from_value(&json!(u64::MAX)).is_err());
        #[derive(Deserialize)]
        struct Small {
            #[serde(deserialize_with = "int32")]
            n: u32,
            #[serde(default, deserialize_with = "option_int32")]
            m: Option<u32>,
        }
        let small: Small = serde_json::from_str(r#"{"n":254.0,"m":7}"#).unwrap();
        assert_eq!((small.n, small.m), (254, Some(7)));
        assert!(serde_json::from_str::<Small>(r#"{"n":4294967296}"#).is_err());
        assert!(serde_json::from_str::<Small>(r#"{"n":1,"m":4294967296}"#).is_err());
    }

    #[test]
    fn query_strings_too() {
        #[derive(Deserialize, Debug)]
        struct Q {
            #[serde(default, deserialize_with = "option")]
            from: Option<u64>,
        }
        let q = |s: &str| {
            let uri: axum::http::Uri = format!("/x?{s}").parse().unwrap();
            axum::extract::Query::<Q>::try_from_uri(&uri).map(|q| q.0.from)
        };
        assert_eq!(q("from=9223372036854775807").unwrap(), Some(MAX));
        assert!(q("from=9223372036854775808").is_err());
        assert!(q("from=-1").is_err());
        assert_eq!(q("").unwrap(), None);
    }
}
