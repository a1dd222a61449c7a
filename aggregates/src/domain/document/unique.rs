//! Unique values: one stream per value of a unique field
//! (`unique-{collection}-{hash}`), saying which document holds it.
//!
//! A write that takes a value appends `ValueClaimed` to the value's stream
//! at the version it read, in the same atomic multi-stream append as the
//! document's own event; a write that gives one up (a change of the field,
//! a delete) appends `ValueReleased` the same way. Of N writers claiming
//! one free value at once, every one appends at the same expected
//! version, so the log lets exactly one through, on every backend.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use strata_store::{Classify, ErrorKind};

use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::domain::document::collection::UniqueField;
use crate::domain::document::json::JsonValue;

/// The events of a unique value's stream. Variants are only ever added at the end.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum UniqueEvent {
    /// A document took the value.
    ValueClaimed {
        /// The collection.
        collection: String,
        /// The unique field's pointer.
        field: String,
        /// The value as the claiming document holds it.
        value: JsonValue,
        /// The document's id.
        holder: String,
    },
    /// The holder gave it up (changed the field, or was deleted).
    ValueReleased {
        /// The document that held it.
        holder: String,
    },
}

impl DomainEvent for UniqueEvent {
    fn event_type(&self) -> &'static str {
        match self {
            UniqueEvent::ValueClaimed { .. } => "UniqueValueClaimed",
            UniqueEvent::ValueReleased { .. } => "UniqueValueReleased",
        }
    }
}

/// What a unique value is asked to do.
#[derive(Clone, PartialEq, Debug)]
pub enum UniqueCommand {
    /// Take it for `holder` (nothing to do when `holder` has it).
    Claim {
        /// The collection.
        collection: String,
        /// The field's pointer.
        field: String,
        /// The value as the document holds it.
        value: Value,
        /// The document's id.
        holder: String,
    },
    /// Give it up, when `holder` has it (nothing to do otherwise).
    Release {
        /// The document's id.
        holder: String,
    },
}

/// Why a unique value refused a claim. Nothing was written.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UniqueRefusal {
    /// Another document holds the value.
    ///
    /// Handling: choose another value. Kind: [`ErrorKind::Conflict`].
    #[error("held by document {holder}")]
    Held {
        /// The document holding it.
        holder: String,
    },
}

impl Classify for UniqueRefusal {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }
}

/// Who holds a unique value.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct UniqueValue {
    holder: Option<String>,
}

impl UniqueValue {
    /// The document holding the value, if any.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
}

impl Aggregate for UniqueValue {
    const KIND: &'static str = "unique";
    type Command = UniqueCommand;
    type Event = UniqueEvent;
    type Error = UniqueRefusal;

    fn handle(&self, command: &UniqueCommand) -> Result<Vec<UniqueEvent>, UniqueRefusal> {
        match command {
            UniqueCommand::Claim {
                collection,
                field,
                value,
                holder,
            } => match &self.holder {
                None => Ok(vec![UniqueEvent::ValueClaimed {
                    collection: collection.clone(),
                    field: field.clone(),
                    value: JsonValue(value.clone()),
                    holder: holder.clone(),
                }]),
                Some(h) if h == holder => Ok(Vec::new()),
                Some(h) => Err(UniqueRefusal::Held { holder: h.clone() }),
            },
            UniqueCommand::Release { holder } => Ok(if self.holder.as_ref() == Some(holder) {
                vec![UniqueEvent::ValueReleased { holder: holder.clone() }]
            } else {
                Vec::new()
            }),
        }
    }

    fn apply(&mut self, event: &UniqueEvent) {
        self.holder = match event {
            UniqueEvent::ValueClaimed { holder, .. } => Some(holder.clone()),
            UniqueEvent::ValueReleased { .. } => None,
        };
    }
}

/// The value of a unique field in a document, as compared: `Ok(None)` when
/// the field is absent or `null` (nothing is claimed), the JSON text of a
/// string, number or boolean (strings lower-cased when the field is
/// case-insensitive), and an error for an object or an array.
pub fn unique_key(field: &UniqueField, value: Option<&Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if field.case_insensitive => Ok(Some(Value::String(s.to_lowercase()).to_string())),
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(format!(
            "the unique field {} must be a string, a number, a boolean or null",
            field.field
        )),
    }
}

/// The aggregate id of a unique value's stream: `{collection}-` and the
/// first 128 bits of SHA-256 over the field and the compared value, so any
/// value fits a stream id.
pub fn unique_id(collection: &str, field: &UniqueField, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(field.field.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{collection}-{hex}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::harness::given;

    fn claim(holder: &str) -> UniqueCommand {
        UniqueCommand::Claim {
            collection: "users".into(),
            field: "/email".into(),
            value: json!("a@x"),
            holder: holder.into(),
        }
    }

    fn claimed(holder: &str) -> UniqueEvent {
        UniqueEvent::ValueClaimed {
            collection: "users".into(),
            field: "/email".into(),
            value: JsonValue(json!("a@x")),
            holder: holder.into(),
        }
    }

    #[test]
    fn one_holder_at_a_time() {
        given::<UniqueValue>([]).when(claim("1")).then_expect([claimed("1")]);
        given::<UniqueValue>([claimed("1")]).when(claim("1")).then_expect([]);
        given::<UniqueValue>([claimed("1")])
            .when(claim("2"))
            .then_error(UniqueRefusal::Held { holder: "1".into() });
        given::<UniqueValue>([claimed("1")])
            .when(UniqueCommand::Release { holder: "1".into() })
            .then_expect([UniqueEvent::ValueReleased { holder: "1".into() }]);
        given::<UniqueValue>([claimed("1"), UniqueEvent::ValueReleased { holder: "1".into() }])
            .when(claim("2"))
            .then_expect([claimed("2")]);
        given::<UniqueValue>([claimed("1")])
            .when(UniqueCommand::Release { holder: "2".into() })
            .then_expect([]);
    }

    #[test]
    fn keys_compare_scalars_and_fold_case_on_request() {
        let exact = UniqueField::parse("email", false).unwrap();
        let folded = UniqueField::parse("email", true).unwrap();
        assert_eq!(unique_key(&exact, None).unwrap(), None);
        assert_eq!(unique_key(&exact, Some(&json!(null))).unwrap(), None);
        assert_eq!(unique_key(&exact, Some(&json!("A@x"))).unwrap().unwrap(), "\"A@x\"");
        assert_eq!(unique_key(&folded, Some(&json!("A@x"))).unwrap().unwrap(), "\"a@x\"");
        assert_eq!(unique_key(&folded, Some(&json!(7))).unwrap().unwrap(), "7");
        assert!(unique_key(&exact, Some(&json!({"a": 1}))).is_err());
        assert!(unique_key(&exact, Some(&json!([1]))).is_err());
        let a = unique_id("users", &exact, "\"a\"");
        assert!(a.starts_with("users-") && a.len() == "users-".len() + 32, "{a}");
        assert_ne!(a, unique_id("users", &exact, "\"b\""));
        assert_ne!(
            a,
            unique_id("users", &UniqueField::parse("name", false).unwrap(), "\"a\"")
        );
    }
}
