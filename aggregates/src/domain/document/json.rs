//! JSON values inside events, in either codec.
//!
//! bincode cannot carry a `serde_json::Value` (it would need
//! `deserialize_any`), so in a binary format a value travels as its JSON
//! text; in JSON it is itself, so `GET /streams/doc-...` shows documents as
//! they are.

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object stored in an event.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct JsonObject(pub Map<String, Value>);

/// A JSON value stored in an event.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct JsonValue(pub Value);

fn ser<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        value.serialize(s)
    } else {
        serde_json::to_string(value).map_err(S::Error::custom)?.serialize(s)
    }
}

fn de<'de, T: for<'a> Deserialize<'a>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    if d.is_human_readable() {
        T::deserialize(d)
    } else {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d).map(JsonObject)
    }
}

impl Serialize for JsonValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d).map(JsonValue)
    }
}
