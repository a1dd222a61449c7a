//! Documents over HTTP: the spec's session, every precondition form stale
//! and fresh for PUT, PATCH and DELETE, 428, If-None-Match: *, weak ETags,
//! conflicts that name their fields and propose the merge, merge-base
//! writes, tombstones, and the RFCs' patch examples.

mod common;

use common::{Backend, Data, Resp, TestServer};
use serde_json::{Value, json};
use strata_http::{Config, ConflictStatus};

const ITEM: &str = "/docs/items/42";

async fn server(backend: Backend, config: Config) -> (Data, TestServer) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, config).await;
    s.collection("items", json!({})).await;
    (data, s)
}

fn version(r: &Resp) -> u64 {
    r.etag().trim_matches('"').parse().unwrap()
}

/// A document at version 2, written by `ada` then `bob`.
async fn at_version_2(s: &TestServer, path: &str) -> Resp {
    let r = s
        .put(path, json!({"name": "Item", "n": 1}), &[("Strata-Actor", "ada")])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s
        .merge_patch(path, json!({"n": 2}), &[("If-Match", "\"1\""), ("Strata-Actor", "bob")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.etag(), "\"2\"");
    r
}

async fn current_version(s: &TestServer, path: &str) -> Option<u64> {
    let r = s.get(path).await;
    (r.status == 200).then(|| version(&r))
}

async fn the_spec_session_a_stale_if_match_is_409_with_what_changed(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    // Terminal 1 creates and reads.
    let created = s
        .put(ITEM, json!({"id": 42, "name": "Item"}), &[("Strata-Actor", "user 1")])
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("location"), Some("/docs/items/42"));
    assert_eq!(created.etag(), "\"1\"");
    assert!(created.header("strata-position").is_some());
    let read = s.get(ITEM).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), json!({"id": 42, "name": "Item", "_version": 1}));
    assert!(read.header("last-modified").unwrap().ends_with(" GMT"));
    assert_eq!(
        read.header("accept-patch"),
        Some("application/merge-patch+json, application/json-patch+json")
    );
    assert_eq!(s.get_with(ITEM, &[("If-None-Match", "\"1\"")]).await.status, 304);

    // Terminal 2 updates with the ETag it read.
    let r2 = s
        .put(
            ITEM,
            json!({"id": 42, "name": "updated by user 2"}),
            &[("If-Match", "\"1\""), ("Strata-Actor", "user 2")],
        )
        .await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert_eq!(r2.etag(), "\"2\"");

    // Terminal 1 writes with the stale ETag: 409, and the body says what changed.
    let stale = s
        .put(
            ITEM,
            json!({"id": 42, "name": "updated by user 1"}),
            &[("If-Match", "\"1\""), ("Strata-Actor", "user 1")],
        )
        .await;
    let p = stale.problem(409, "wrong-expected-version");
    assert_eq!(stale.etag(), "\"2\"");
    assert_eq!(p["expected_version"], 1);
    assert_eq!(p["current_version"], 2);
    assert_eq!(
        p["current"],
        json!({"id": 42, "name": "updated by user 2", "_version": 2})
    );
    let change = &p["changes_since"][0];
    assert_eq!(
        (change["version"].as_u64(), change["actor"].as_str()),
        (Some(2), Some("user 2"))
    );
    assert_eq!(change["changed"], json!(["/name"]));
    assert_eq!(change["kind"], "replaced");
    assert!(change["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(p["changes_since_complete"], true);
    assert_eq!(p["conflicting_fields"], json!(["/name"]));
    assert!(p.get("merged").is_none(), "the fields overlap: no merge to propose");
    assert_eq!(current_version(&s, ITEM).await, Some(2), "nothing written");

    // The spec's second form: _version in the body.
    let stale = s.put(ITEM, json!({"name": "Updated", "_version": 1}), &[]).await;
    stale.problem(409, "wrong-expected-version");
    let fresh = s.put(ITEM, json!({"name": "Updated", "_version": 2}), &[]).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.json(), json!({"name": "Updated", "_version": 3}));

    // The actor is in the event's metadata too.
    let events = s.get("/streams/doc-items%2F42").await;
    assert_eq!(events.status, 200, "{}", events.text);
    assert_eq!(events.json()["events"][1]["metadata"]["extra"]["actor"], "user 2");
    s.finish().await;
}

/// One write with a precondition, and what it must answer.
struct Case {
    name: &'static str,
    method: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, Value)>,
}

async fn run(s: &TestServer, path: &str, case: &Case) -> Resp {
    let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = case.body.as_ref().map(|(ct, v)| (*ct, v.to_string()));
    s.req(case.method, path, body, &headers).await
}

async fn every_precondition_form_stale_and_fresh_for_put_patch_and_delete(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    let mut n = 0;
    for method in ["PUT", "MERGE", "JSONPATCH", "DELETE"] {
        // (form, stale value, fresh value); the body forms only where a body is.
        let mut forms: Vec<&str> = vec!["if-match", "if-match-list", "if-unmodified-since"];
        match method {
            "PUT" | "MERGE" => forms.push("_version"),
            "JSONPATCH" => forms.push("test-_version"),
            _ => {}
        }
        for form in forms {
            for fresh in [false, true] {
                n += 1;
                let path = format!("/docs/items/p{n}");
                let before = at_version_2(&s, &path).await;
                let last_modified = httpdate::parse_http_date(before.header("last-modified").unwrap()).unwrap();
                let second = std::time::Duration::from_secs(1);
                let date = if fresh {
                    last_modified + second
                } else {
                    last_modified - second
                };
                let v = if fresh { 2 } else { 1 };
                let mut headers: Vec<(&str, String)> = Vec::new();
                let mut body_version = None;
                match form {
                    "if-match" => headers.push(("If-Match", format!("\"{v}\""))),
                    "if-match-list" => headers.push(("If-Match", format!("\"7\", \"{v}\""))),
                    "if-unmodified-since" => headers.push(("If-Unmodified-Since", httpdate::fmt_http_date(date))),
                    _ => body_version = Some(v),
                }
                let body = match method {
                    "PUT" => {
                        let mut b = json!({"name": "new", "n": 2});
                        if let Some(v) = body_version {
                            b["_version"] = v.into();
                        }
                        Some(("application/json", b))
                    }
                    "MERGE" => {
                        let mut b = json!({"name": "new"});
                        if let Some(v) = body_version {
                            b["_version"] = v.into();
                        }
                        Some(("application/merge-patch+json", b))
                    }
                    "JSONPATCH" => {
                        let mut ops = vec![json!({"op": "replace", "path": "/name", "value": "new"})];
                        if let Some(v) = body_version {
                            ops.insert(0, json!({"op": "test", "path": "/_version", "value": v}));
                        }
                        Some(("application/json-patch+json", Value::Array(ops)))
                    }
                    _ => None,
                };
                let case = Case {
                    name: form,
                    method: if method == "PUT" || method == "DELETE" {
                        method
                    } else {
                        "PATCH"
                    },
                    headers,
                    body,
                };
                let r = run(&s, &path, &case).await;
                let what = format!(
                    "{method} with {} ({})",
                    case.name,
                    if fresh { "fresh" } else { "stale" }
                );
                if fresh {
                    assert_eq!(r.status, 200, "{what}: {}", r.text);
                    assert_eq!(r.etag(), "\"3\"", "{what}");
                } else {
                    let p = r.problem(409, "wrong-expected-version");
                    assert_eq!(p["current_version"], 2, "{what}: {p}");
                    assert_eq!(r.etag(), "\"2\"", "{what}");
                    let after = s.get(&path).await;
                    assert_eq!(version(&after), 2, "{what}: nothing written");
                }
            }
        }
    }
    // If-Match: * passes on a document that exists, fails on one that does not.
    at_version_2(&s, "/docs/items/star").await;
    let r = s
        .merge_patch("/docs/items/star", json!({"a": 1}), &[("If-Match", "*")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = s
        .put("/docs/items/star-missing", json!({"a": 1}), &[("If-Match", "*")])
        .await
        .problem(409, "wrong-expected-version");
    assert_eq!(
        (p["expected_version"].as_str(), p["current_version"].as_u64()),
        (Some("*"), Some(0))
    );
    assert_eq!(s.get("/docs/items/star-missing").await.status, 404);
    s.finish().await;
}

async fn if_none_match_star_creates_only_and_weak_etags_are_refused(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    let create = [("If-None-Match", "*")];
    assert_eq!(s.put(ITEM, json!({"a": 1}), &create).await.status, 201);
    let p = s
        .put(ITEM, json!({"a": 2}), &create)
        .await
        .problem(409, "already-exists");
    assert_eq!(p["current"], json!({"a": 1, "_version": 1}));
    for (method, body) in [
        ("PUT", Some(("application/json", json!({"a": 3}).to_string()))),
        (
            "PATCH",
            Some(("application/merge-patch+json", json!({"a": 3}).to_string())),
        ),
        ("DELETE", None),
    ] {
        for weak in ["W/\"1\"", "\"1\", W/\"1\""] {
            let r = s.req(method, ITEM, body.clone(), &[("If-Match", weak)]).await;
            let p = r.problem(400, "invalid-if-match");
            assert!(p["detail"].as_str().unwrap().contains("weak"), "{p}");
        }
    }
    // If-None-Match: * on a PATCH or with If-Match contradicts itself.
    s.merge_patch(ITEM, json!({"a": 3}), &create)
        .await
        .problem(400, "invalid-precondition");
    s.put(ITEM, json!({"a": 3}), &[("If-None-Match", "*"), ("If-Match", "\"1\"")])
        .await
        .problem(400, "invalid-precondition");
    assert_eq!(current_version(&s, ITEM).await, Some(1), "nothing written");
    s.finish().await;
}

async fn a_collection_that_requires_preconditions_answers_428(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    let r = s.collection("strict", json!({"require_precondition": true})).await;
    assert_eq!(r.json()["require_precondition"], true);
    let doc = "/docs/strict/1";
    s.put(doc, json!({"a": 1}), &[])
        .await
        .problem(428, "precondition-required");
    s.put(doc, json!({"a": 1}), &[("If-Match", "*")])
        .await
        .problem(428, "precondition-required");
    assert_eq!(s.put(doc, json!({"a": 1}), &[("If-None-Match", "*")]).await.status, 201);
    s.merge_patch(doc, json!({"a": 2}), &[])
        .await
        .problem(428, "precondition-required");
    s.delete(doc, &[]).await.problem(428, "precondition-required");
    assert_eq!(
        s.merge_patch(doc, json!({"a": 2, "_version": 1}), &[]).await.status,
        200
    );
    assert_eq!(s.delete(doc, &[("If-Match", "\"2\"")]).await.status, 200);
    // Turning it off is a change of the declaration; the unique fields are fixed.
    let r = s
        .put("/collections/strict", json!({"require_precondition": false}), &[])
        .await;
    assert_eq!((r.status, r.etag()), (200, "\"2\""));
    assert_eq!(s.put("/docs/strict/2", json!({"a": 1}), &[]).await.status, 201);
    let p = s
        .put("/collections/strict", json!({"unique": ["a"]}), &[])
        .await
        .problem(409, "declaration-conflict");
    assert_eq!(p["requested"], json!([{"field": "/a", "case_insensitive": false}]));
    s.finish().await;
}

async fn conflict_status_412_by_configuration(backend: Backend) {
    let (_data, s) = server(
        backend,
        Config {
            conflict_status: ConflictStatus::PreconditionFailed,
            ..Config::default()
        },
    )
    .await;
    at_version_2(&s, ITEM).await;
    s.put(ITEM, json!({"a": 1}), &[("If-Match", "\"1\"")])
        .await
        .problem(412, "wrong-expected-version");
    s.put(ITEM, json!({"a": 1}), &[("If-None-Match", "*")])
        .await
        .problem(412, "already-exists");
    s.finish().await;
}

async fn conflicts_name_their_fields_and_propose_the_merge(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    let doc = "/docs/items/m";
    s.put(
        doc,
        json!({"name": "a", "address": {"city": "x", "zip": "1"}, "tags": ["t"]}),
        &[],
    )
    .await;
    let r = s
        .merge_patch(
            doc,
            json!({"address": {"city": "y"}}),
            &[("If-Match", "\"1\""), ("Strata-Actor", "bob")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Decided on 1, changes another field: 409 proposes the merge.
    let p = s
        .merge_patch(doc, json!({"address": {"zip": "2"}}), &[("If-Match", "\"1\"")])
        .await
        .problem(409, "wrong-expected-version");
    assert_eq!(p["conflicting_fields"], json!([]));
    let merged = p["merged"].clone();
    assert_eq!(
        merged,
        json!({"name": "a", "address": {"city": "y", "zip": "2"}, "tags": ["t"], "_version": 2})
    );
    // The proposal is a document to PUT as is: its _version is the current one.
    let r = s.put(doc, merged, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.etag(), "\"3\"");

    // Decided on 1 again, changes the city that changed at 2: it overlaps.
    let p = s
        .put(
            doc,
            json!({"name": "a", "address": {"city": "z", "zip": "1"}, "tags": ["t"]}),
            &[("If-Match", "\"1\"")],
        )
        .await
        .problem(409, "wrong-expected-version");
    // Relative to version 1 the write changes the city only (its zip is 1's).
    assert_eq!(p["conflicting_fields"], json!(["/address/city"]));
    assert_eq!(p["changes_since"].as_array().unwrap().len(), 2);
    assert!(p.get("merged").is_none());
    // Arrays are one field.
    let p = s
        .json_patch(
            doc,
            json!([{"op": "add", "path": "/tags/-", "value": "u"}]),
            &[("If-Match", "\"2\"")],
        )
        .await
        .problem(409, "wrong-expected-version");
    assert_eq!(p["conflicting_fields"], json!([]), "the tags did not change since 2");
    assert_eq!(p["merged"]["tags"], json!(["t", "u"]));
    s.finish().await;
}

async fn a_merge_base_write_is_merged_onto_the_current_version_or_refused(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    let doc = "/docs/items/b";
    s.put(doc, json!({"a": 1, "b": 1}), &[]).await;
    s.merge_patch(doc, json!({"a": 2}), &[("If-Match", "\"1\"")]).await;

    // From version 1, changing b: applied onto 2.
    let r = s
        .put(
            doc,
            json!({"a": 1, "b": 5}),
            &[("Strata-Merge-Base", "\"1\""), ("Strata-Actor", "carol")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("strata-merged-onto"), Some("2"));
    assert_eq!(r.json(), json!({"a": 2, "b": 5, "_version": 3}));
    let history = s.get(&format!("{doc}/history")).await.json();
    assert_eq!(history["changes"][2]["merge_base"], 1);
    assert_eq!(history["changes"][2]["actor"], "carol");
    assert_eq!(history["changes"][2]["changed"], json!(["/b"]));

    // From version 1, changing a (changed at 2): refused, naming the field.
    let p = s
        .merge_patch(doc, json!({"a": 9}), &[("Strata-Merge-Base", "1")])
        .await
        .problem(409, "wrong-expected-version");
    assert_eq!(p["conflicting_fields"], json!(["/a"]));
    assert_eq!(current_version(&s, doc).await, Some(3));
    // The base is the current version: applied, onto itself.
    let r = s.merge_patch(doc, json!({"c": 1}), &[("Strata-Merge-Base", "3")]).await;
    assert_eq!((r.status, r.header("strata-merged-onto")), (200, Some("3")));
    // If-Match stays strict: both together are refused.
    s.merge_patch(
        doc,
        json!({"c": 2}),
        &[("Strata-Merge-Base", "4"), ("If-Match", "\"4\"")],
    )
    .await
    .problem(400, "invalid-precondition");
    s.merge_patch(doc, json!({"c": 2}), &[("Strata-Merge-Base", "four")])
        .await
        .problem(400, "invalid-precondition");
    s.finish().await;
}

async fn a_deleted_document_answers_404_with_its_version_and_comes_back_only_as_a_create(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    at_version_2(&s, ITEM).await;
    let r = s.delete(ITEM, &[("If-Match", "\"2\""), ("Strata-Actor", "eve")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"collection": "items", "id": "42", "deleted": true, "_version": 3})
    );
    let p = s.get(ITEM).await.problem(404, "document-deleted");
    assert_eq!(
        (p["deleted_version"].as_u64(), p["deleted_by"].as_str()),
        (Some(3), Some("eve"))
    );
    assert!(p["deleted_at"].as_str().is_some());
    // The history stays readable.
    let old = s.get(&format!("{ITEM}?version=1")).await;
    assert_eq!(old.json(), json!({"name": "Item", "n": 1, "_version": 1}));
    s.get(&format!("{ITEM}?version=3"))
        .await
        .problem(404, "document-deleted");
    s.get(&format!("{ITEM}?version=9")).await.problem(404, "not-found");
    let history = s.get(&format!("{ITEM}/history")).await.json();
    let kinds: Vec<&str> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "patched", "deleted"]);
    // Writes other than a create are told it was deleted.
    s.put(ITEM, json!({"a": 1}), &[]).await.problem(404, "document-deleted");
    s.merge_patch(ITEM, json!({"a": 1}), &[])
        .await
        .problem(404, "document-deleted");
    s.delete(ITEM, &[]).await.problem(404, "document-deleted");
    let again = s.put(ITEM, json!({"name": "again"}), &[("If-None-Match", "*")]).await;
    assert_eq!((again.status, again.etag()), (201, "\"4\""));
    // History pages.
    let page = s.get(&format!("{ITEM}/history?limit=2")).await.json();
    assert_eq!(page["next_from"], 3);
    let page = s.get(&format!("{ITEM}/history?from=3&limit=2")).await.json();
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    assert!(page.get("next_from").is_none());
    s.finish().await;
}

async fn patches_follow_the_rfcs_examples(backend: Backend) {
    let (_data, s) = server(backend, Config::default()).await;
    // RFC 7396 section 3.
    let doc = "/docs/items/rfc7396";
    s.put(
        doc,
        json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
               "tags": ["example", "sample"], "content": "This will be unchanged"}),
        &[],
    )
    .await;
    let r = s
        .merge_patch(
            doc,
            json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null}, "tags": ["example"]}),
            &[],
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
               "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890", "_version": 2})
    );
    // RFC 6902 appendix A, the examples whose target is an object.
    let cases = [
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            Some(json!({"baz": "qux", "foo": "bar"})),
        ),
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            Some(json!({"foo": ["bar", "qux", "baz"]})),
        ),
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
            Some(json!({"foo": "bar"})),
        ),
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            Some(json!({"foo": ["bar", "baz"]})),
        ),
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
            Some(json!({"baz": "boo", "foo": "bar"})),
        ),
        (
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            Some(json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})),
        ),
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            Some(json!({"foo": ["all", "cows", "eat", "grass"]})),
        ),
        (
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]),
            Some(json!({"baz": "qux", "foo": ["a", 2, "c"]})),
        ),
        (
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}]),
            None,
        ),
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
            Some(json!({"foo": "bar", "child": {"grandchild": {}}})),
        ),
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]),
            Some(json!({"foo": "bar", "baz": "qux"})),
        ),
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}]),
            None,
        ),
        (
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": 10}]),
            Some(json!({"/": 9, "~1": 10})),
        ),
        (
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}]),
            None,
        ),
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            Some(json!({"foo": ["bar", ["abc", "def"]]})),
        ),
    ];
    for (i, (target, patch, result)) in cases.into_iter().enumerate() {
        let doc = format!("/docs/items/rfc6902-{i}");
        assert_eq!(s.put(&doc, target.clone(), &[]).await.status, 201);
        let r = s.json_patch(&doc, patch.clone(), &[]).await;
        match result {
            Some(mut want) => {
                want["_version"] = if want == target { 1 } else { 2 }.into();
                assert_eq!(r.json(), want, "{patch}");
            }
            None => {
                let p = r.problem(409, "patch-failed");
                assert_eq!(p["operation"], 0, "{p}");
                assert_eq!(
                    current_version(&s, &doc).await,
                    Some(1),
                    "nothing of a failed patch applies"
                );
            }
        }
    }
    // RFC 6902 A.13: an operation with two `op` members is not a patch document.
    let r = s
        .req(
            "PATCH",
            doc,
            Some((
                "application/json-patch+json",
                r#"[{"op":"add","path":"/baz","value":"qux","op":"remove"}]"#.into(),
            )),
            &[],
        )
        .await;
    r.problem(422, "invalid-body");
    s.finish().await;
}

on_both_backends!(
    the_spec_session_a_stale_if_match_is_409_with_what_changed,
    every_precondition_form_stale_and_fresh_for_put_patch_and_delete,
    if_none_match_star_creates_only_and_weak_etags_are_refused,
    a_collection_that_requires_preconditions_answers_428,
    conflict_status_412_by_configuration,
    conflicts_name_their_fields_and_propose_the_merge,
    a_merge_base_write_is_merged_onto_the_current_version_or_refused,
    a_deleted_document_answers_404_with_its_version_and_comes_back_only_as_a_create,
    patches_follow_the_rfcs_examples,
);
