//! The two patch formats of `PATCH`: JSON Merge Patch (RFC 7396) and JSON
//! Patch (RFC 6902).
//!
//! JSON Patch is the `json-patch` crate's, with one difference: its `test`
//! compares numbers as JSON values (`1` and `1.0` differ), where RFC 6902
//! section 4.6 says numbers are equal when their values are; strata's
//! `test` compares them by value. A patch is applied to a copy: when any
//! operation fails, nothing of it applies.

use json_patch::PatchOperation;
use serde_json::Value;

/// A JSON Patch operation that could not be applied.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("operation {operation} ({op} at {path:?}) failed: {reason}")]
pub struct PatchFailure {
    /// The index of the failed operation (0 for the first).
    pub operation: usize,
    /// Its `op`.
    pub op: &'static str,
    /// Its `path`.
    pub path: String,
    /// Why it failed.
    pub reason: String,
}

/// A parsed JSON Patch document.
#[derive(Clone, PartialEq, Debug)]
pub struct JsonPatch(pub Vec<PatchOperation>);

impl JsonPatch {
    /// Reads a JSON Patch document: an array of operation objects
    /// (unknown members of an operation are ignored, as RFC 6902 says).
    pub fn from_value(value: Value) -> Result<JsonPatch, String> {
        if !value.is_array() {
            return Err("a JSON Patch document is an array of operations".into());
        }
        serde_json::from_value(value)
            .map(JsonPatch)
            .map_err(|e| format!("not a JSON Patch document: {e}"))
    }

    /// The operations.
    pub fn operations(&self) -> &[PatchOperation] {
        &self.0
    }

    /// Applies the patch to a copy of `doc` (RFC 6902 section 5: all
    /// operations or none).
    pub fn apply(&self, doc: &Value) -> Result<Value, PatchFailure> {
        let mut out = doc.clone();
        for (i, op) in self.0.iter().enumerate() {
            let failure = |reason: String| PatchFailure {
                operation: i,
                op: op_name(op),
                path: op.path().to_string(),
                reason,
            };
            match op {
                PatchOperation::Test(t) => match out.pointer(t.path.as_str()) {
                    None => return Err(failure("the path does not exist".into())),
                    Some(found) if json_equal(found, &t.value) => {}
                    Some(found) => return Err(failure(format!("the value is {found}, not {}", t.value))),
                },
                other => json_patch::patch_unsafe(&mut out, std::slice::from_ref(other))
                    .map_err(|e| failure(e.kind.to_string()))?,
            }
        }
        Ok(out)
    }
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// RFC 6902 section 4.6 equality: numbers by value, arrays element by
/// element, objects member by member regardless of order.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Applies a JSON Merge Patch (RFC 7396) to a copy of `doc`.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// RFC 7396, section 3 and appendix A, every example.
    #[test]
    fn merge_patch_rfc_7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
            // Section 3.
            (
                json!({"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},
                       "tags":["example","sample"],"content":"This will be unchanged"}),
                json!({"title":"Hello!","phoneNumber":"+01-123-456-7890",
                       "author":{"familyName":null},"tags":["example"]}),
                json!({"title":"Hello!","author":{"givenName":"John"},"tags":["example"],
                       "content":"This will be unchanged","phoneNumber":"+01-123-456-7890"}),
            ),
        ];
        for (original, patch, result) in cases {
            assert_eq!(merge_patch(&original, &patch), result, "{original} + {patch}");
        }
    }

    fn patch(ops: Value) -> JsonPatch {
        JsonPatch::from_value(ops).unwrap()
    }

    /// RFC 6902 appendix A, every example but A.13 (an invalid document:
    /// a duplicate `op` member, which strata refuses when it parses the
    /// body; see strata-http's tests).
    #[test]
    fn json_patch_rfc_6902_examples() {
        let ok = [
            // A.1
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux"}]),
                json!({"baz":"qux","foo":"bar"}),
            ),
            // A.2
            (
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/1","value":"qux"}]),
                json!({"foo":["bar","qux","baz"]}),
            ),
            // A.3
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"remove","path":"/baz"}]),
                json!({"foo":"bar"}),
            ),
            // A.4
            (
                json!({"foo":["bar","qux","baz"]}),
                json!([{"op":"remove","path":"/foo/1"}]),
                json!({"foo":["bar","baz"]}),
            ),
            // A.5
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"replace","path":"/baz","value":"boo"}]),
                json!({"baz":"boo","foo":"bar"}),
            ),
            // A.6
            (
                json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
                json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
                json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
            ),
            // A.7
            (
                json!({"foo":["all","grass","cows","eat"]}),
                json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
                json!({"foo":["all","cows","eat","grass"]}),
            ),
            // A.8
            (
                json!({"baz":"qux","foo":["a",2,"c"]}),
                json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]),
                json!({"baz":"qux","foo":["a",2,"c"]}),
            ),
            // A.10
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
                json!({"foo":"bar","child":{"grandchild":{}}}),
            ),
            // A.11
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux","xyz":123}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            // A.14
            (
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":10}]),
                json!({"/":9,"~1":10}),
            ),
            // A.16
            (
                json!({"foo":["bar"]}),
                json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
                json!({"foo":["bar",["abc","def"]]}),
            ),
        ];
        for (doc, ops, result) in ok {
            assert_eq!(patch(ops.clone()).apply(&doc).unwrap(), result, "{doc} + {ops}");
        }
        let failing = [
            // A.9
            (
                json!({"baz":"qux"}),
                json!([{"op":"test","path":"/baz","value":"bar"}]),
                0,
                "test",
            ),
            // A.12
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz/bat","value":"qux"}]),
                0,
                "add",
            ),
            // A.15
            (
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":"10"}]),
                0,
                "test",
            ),
        ];
        for (doc, ops, operation, op) in failing {
            let e = patch(ops.clone()).apply(&doc).unwrap_err();
            assert_eq!((e.operation, e.op), (operation, op), "{doc} + {ops}: {e}");
        }
    }

    #[test]
    fn a_failed_patch_applies_nothing() {
        let doc = json!({"a": 1});
        let ops = patch(json!([
            {"op":"replace","path":"/a","value":2},
            {"op":"test","path":"/a","value":3}
        ]));
        let e = ops.apply(&doc).unwrap_err();
        assert_eq!(e.operation, 1);
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn test_compares_numbers_by_value() {
        let doc = json!({"n": 1, "o": {"x": [1.0, 2]}});
        assert!(
            patch(json!([{"op":"test","path":"/n","value":1.0}]))
                .apply(&doc)
                .is_ok()
        );
        assert!(
            patch(json!([{"op":"test","path":"/o","value":{"x":[1, 2.0]}}]))
                .apply(&doc)
                .is_ok()
        );
        assert!(
            patch(json!([{"op":"test","path":"/n","value":1.5}]))
                .apply(&doc)
                .is_err()
        );
        assert!(
            patch(json!([{"op":"test","path":"/missing","value":1}]))
                .apply(&doc)
                .is_err()
        );
    }

    #[test]
    fn malformed_patch_documents_are_refused() {
        for bad in [
            json!({"op":"add","path":"/a","value":1}),
            json!([{"op":"add","path":"/a"}]),
            json!([{"op":"frobnicate","path":"/a"}]),
            json!([{"op":"add","path":"a","value":1}]),
            json!([{"path":"/a","value":1}]),
        ] {
            assert!(JsonPatch::from_value(bad.clone()).is_err(), "{bad}");
        }
    }
}
