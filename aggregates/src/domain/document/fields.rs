//! What counts as a field of a document, what a change changed, and how
//! the changes of one write are carried onto another version.
//!
//! A **field** is named by a JSON Pointer (RFC 6901). Objects are walked
//! member by member; everything else (a string, a number, a boolean,
//! `null`, and **an array as a whole**) is a value at its pointer. So a
//! change inside an array is a change of the whole array: `/tags`, never
//! `/tags/2`. Array indices move when an element is inserted or removed,
//! so two writers' element-level changes cannot be told apart from each
//! other safely; treating the array as one value makes a merge refuse
//! rather than interleave them. An added or removed member is a change at
//! its own pointer whatever its value, and the empty pointer `""` (the
//! whole document) is what a delete changes.
//!
//! Two fields **overlap** when one pointer is the other or an ancestor of
//! it (`/address` and `/address/city`): a write that changes
//! `/address/city` cannot be merged with one that removed `/address`.

use serde_json::{Map, Value};

/// One change between two versions of a document: the value now at
/// `pointer`, or `None` when the member was removed.
#[derive(Clone, PartialEq, Debug)]
pub struct FieldChange {
    /// The field's JSON Pointer.
    pub pointer: String,
    /// Its new value; `None` when the member was removed.
    pub value: Option<Value>,
}

/// Escapes one member name as a JSON Pointer reference token (RFC 6901:
/// `~` as `~0`, `/` as `~1`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Unescapes one reference token; `None` for an invalid escape.
fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The reference tokens of a JSON Pointer (`""` has none); `None` when it
/// is not a valid pointer (no leading `/`, a bad `~` escape).
pub fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/').map(unescape).collect()
}

/// The changes that turn `old` into `new`, by field (see the module docs),
/// in the order of the members (sorted by name).
pub fn changes(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_objects(old, new, "", &mut out);
    out
}

/// The pointers of [`changes`].
pub fn changed_fields(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    changes(old, new).into_iter().map(|c| c.pointer).collect()
}

fn diff_objects(old: &Map<String, Value>, new: &Map<String, Value>, prefix: &str, out: &mut Vec<FieldChange>) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let pointer = format!("{prefix}/{}", escape(key));
        match (old.get(key), new.get(key)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => diff_objects(a, b, &pointer, out),
            (Some(a), Some(b)) if a == b => {}
            (_, Some(b)) => out.push(FieldChange {
                pointer,
                value: Some(b.clone()),
            }),
            (Some(_), None) => out.push(FieldChange { pointer, value: None }),
            (None, None) => {}
        }
    }
}

/// Whether two fields overlap: equal, or one an ancestor of the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    let within = |long: &str, short: &str| {
        long.len() > short.len() && long.starts_with(short) && long.as_bytes()[short.len()] == b'/'
    };
    a == b || within(a, b) || within(b, a)
}

/// The fields of `ours` that overlap a field of `theirs`, in the order of
/// `ours`, each once.
pub fn overlapping(ours: &[String], theirs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for field in ours {
        if theirs.iter().any(|t| overlaps(field, t)) && !out.contains(field) {
            out.push(field.clone());
        }
    }
    out
}

/// Carries `changes` onto `doc`: each value is set at its pointer, each
/// removed member removed. `None` when a change does not fit `doc` (its
/// parent is missing or not an object), which cannot happen when no
/// change overlaps what changed in `doc` since the changes' base.
pub fn apply_changes(doc: &Map<String, Value>, changes: &[FieldChange]) -> Option<Map<String, Value>> {
    let mut out = doc.clone();
    for change in changes {
        let tokens = tokens(&change.pointer)?;
        let (last, parents) = tokens.split_last()?;
        let mut target = &mut out;
        for token in parents {
            target = target.get_mut(token)?.as_object_mut()?;
        }
        match &change.value {
            Some(value) => {
                target.insert(last.clone(), value.clone());
            }
            None => {
                target.remove(last);
            }
        }
    }
    Some(out)
}

/// The value at `pointer` in `doc`, if any.
pub fn get<'a>(doc: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let tokens = tokens(pointer)?;
    let (first, rest) = tokens.split_first()?;
    let mut value = doc.get(first)?;
    for token in rest {
        value = match value {
            Value::Object(m) => m.get(token)?,
            Value::Array(a) => a.get(array_index(token)?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// An RFC 6901 array index: digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn objects_are_walked_and_arrays_are_one_field() {
        let old = obj(json!({"name": "a", "address": {"city": "x", "zip": "1"}, "tags": [1, 2], "gone": 1}));
        let new = obj(json!({"name": "a", "address": {"city": "y", "zip": "1"}, "tags": [1, 2, 3], "new": {"a": 1}}));
        assert_eq!(
            changed_fields(&old, &new),
            vec!["/address/city", "/gone", "/new", "/tags"]
        );
        let c = changes(&old, &new);
        assert_eq!(
            c[1],
            FieldChange {
                pointer: "/gone".into(),
                value: None
            }
        );
        assert_eq!(c[3].value, Some(json!([1, 2, 3])));
    }

    #[test]
    fn a_member_that_changes_type_is_one_change() {
        let old = obj(json!({"a": {"b": 1}}));
        let new = obj(json!({"a": 5}));
        assert_eq!(changed_fields(&old, &new), vec!["/a"]);
        assert_eq!(changed_fields(&new, &old), vec!["/a"]);
    }

    #[test]
    fn names_are_escaped() {
        let old = obj(json!({}));
        let new = obj(json!({"a/b": 1, "m~n": 2}));
        assert_eq!(changed_fields(&old, &new), vec!["/a~1b", "/m~0n"]);
        assert_eq!(tokens("/a~1b/m~0n").unwrap(), vec!["a/b", "m~n"]);
        assert_eq!(tokens("a"), None);
        assert_eq!(tokens("/a~2"), None);
        assert_eq!(get(&new, "/a~1b"), Some(&json!(1)));
    }

    #[test]
    fn overlap_is_equality_or_ancestry_on_token_boundaries() {
        assert!(overlaps("/a", "/a"));
        assert!(overlaps("/a", "/a/b"));
        assert!(overlaps("/a/b", "/a"));
        assert!(overlaps("", "/a"));
        assert!(!overlaps("/a", "/ab"));
        assert!(!overlaps("/a/b", "/a/c"));
        assert_eq!(
            overlapping(&["/a/b".into(), "/c".into()], &["/a".into(), "/d".into()]),
            vec!["/a/b"]
        );
    }

    #[test]
    fn changes_carry_onto_another_version() {
        let base = obj(json!({"a": 1, "b": {"c": 1}, "d": [1]}));
        let ours = obj(json!({"a": 2, "b": {"c": 1, "e": 5}}));
        let theirs = obj(json!({"a": 1, "b": {"c": 9}, "d": [1], "f": true}));
        let merged = apply_changes(&theirs, &changes(&base, &ours)).unwrap();
        assert_eq!(Value::Object(merged), json!({"a": 2, "b": {"c": 9, "e": 5}, "f": true}));
        // A change whose parent is gone does not fit.
        let gone = obj(json!({"a": 1}));
        assert_eq!(apply_changes(&gone, &changes(&base, &ours)), None);
    }

    #[test]
    fn get_walks_arrays_by_index() {
        let doc = obj(json!({"a": [{"b": 1}, {"b": 2}]}));
        assert_eq!(get(&doc, "/a/1/b"), Some(&json!(2)));
        assert_eq!(get(&doc, "/a/01/b"), None);
        assert_eq!(get(&doc, "/a/2"), None);
    }
}
