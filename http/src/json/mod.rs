//! JSON read strictly: an object with a member name twice is refused.
//!
//! RFC 8259 leaves duplicate names to the implementation ("names within
//! an object SHOULD be unique"); `serde_json::Value` keeps the last one.
//! For a document that is a trap: `{"email": "a", "email": "b"}` means
//! one thing to one reader and another to the next, and a unique field
//! could be checked on a value that is not the one stored. strata refuses
//! such a body at any depth, as serde's derived structs already refuse a
//! repeated field at their own level.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub(crate) mod integer;

/// Parses `bytes` as one JSON value, refusing duplicate member names (a
/// data error, as serde reports a shape error) and trailing content.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict::deserialize(&mut de)?.0;
    de.end()?;
    Ok(value)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate member name {key:?}")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn duplicate_names_are_refused_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"a":[1,{"b":null}],"c":1.5}"#).unwrap(),
            json!({"a":[1,{"b":null}],"c":1.5})
        );
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":{"a":1,"a":1}}"#,
            br#"[{"a":1,"a":2}]"#,
        ] {
            let e = parse_strict(bad).unwrap_err();
            assert_eq!(e.classify(), serde_json::error::Category::Data, "{e}");
            assert!(e.to_string().contains("duplicate member name"), "{e}");
        }
        // RFC 6902 A.13: a patch operation with two `op` members.
        let a13 = br#"[{ "op": "add", "path": "/baz", "value": "qux", "op": "remove" }]"#;
        assert!(parse_strict(a13).is_err());
        assert_eq!(
            parse_strict(b"{} x").unwrap_err().classify(),
            serde_json::error::Category::Syntax
        );
    }
}
