//! Bad input to the document routes: each answered with a problem body,
//! and nothing written (the log's head does not move).

mod common;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::Config;

async fn bad_input_is_a_problem_and_writes_nothing(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(
        &data,
        Config {
            body_limit: 4 * 1024,
            ..Config::default()
        },
    )
    .await;
    s.collection(
        "users",
        json!({"unique": [{"field": "email", "case_insensitive": true}]}),
    )
    .await;
    assert_eq!(
        s.put("/docs/users/1", json!({"email": "a@x", "n": 1}), &[])
            .await
            .status,
        201
    );
    let head = s.head().await;
    let doc = "/docs/users/1";
    let raw = |method: &'static str, path: &'static str, content_type: &'static str, body: &'static str| {
        s.req(method, path, Some((content_type, body.to_string())), &[])
    };

    // Malformed JSON, and JSON of the wrong shape.
    raw("PUT", doc, "application/json", "{\"email\":")
        .await
        .problem(400, "malformed-json");
    raw("PATCH", doc, "application/merge-patch+json", "{,}")
        .await
        .problem(400, "malformed-json");
    raw("PUT", doc, "application/json", "[1, 2]")
        .await
        .problem(422, "invalid-body");
    let p = raw("PUT", doc, "application/json", r#"{"email":"b@x","email":"c@x"}"#)
        .await
        .problem(422, "invalid-body");
    assert!(p["detail"].as_str().unwrap().contains("duplicate member name"), "{p}");
    raw("PUT", doc, "application/json", r#"{"n":2,"_version":"1"}"#)
        .await
        .problem(422, "invalid-body");
    raw("PATCH", doc, "application/json-patch+json", r#"{"op":"add"}"#)
        .await
        .problem(422, "invalid-body");
    raw(
        "PATCH",
        doc,
        "application/json-patch+json",
        r#"[{"op":"frobnicate","path":"/n"}]"#,
    )
    .await
    .problem(422, "invalid-body");
    raw(
        "PATCH",
        doc,
        "application/json-patch+json",
        r#"[{"op":"add","path":"n","value":1}]"#,
    )
    .await
    .problem(422, "invalid-body");
    raw("PATCH", doc, "application/merge-patch+json", "[1]")
        .await
        .problem(422, "validation-failed");
    raw(
        "PATCH",
        doc,
        "application/json-patch+json",
        r#"[{"op":"replace","path":"","value":[]}]"#,
    )
    .await
    .problem(422, "validation-failed");
    s.put(doc, json!({"email": {"a": 1}}), &[])
        .await
        .problem(422, "validation-failed");

    // A patch of the wrong media type: 415 with the ones it takes.
    let r = raw("PATCH", doc, "application/json", r#"{"n":2}"#).await;
    assert_eq!(
        r.header("accept-patch"),
        Some("application/merge-patch+json, application/json-patch+json")
    );
    let p = r.problem(415, "unsupported-media-type");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"application/json\"") && !detail.contains("Some("),
        "{detail}"
    );
    raw("PUT", doc, "text/plain", r#"{"n":2}"#)
        .await
        .problem(415, "unsupported-media-type");
    let p = s
        .req("PUT", doc, None, &[])
        .await
        .problem(415, "unsupported-media-type");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .ends_with("the request has no Content-Type"),
        "{p}"
    );

    // A patch that does not apply (409: it depends on the document's state).
    let p = s
        .json_patch(doc, json!([{"op": "remove", "path": "/missing"}]), &[])
        .await
        .problem(409, "patch-failed");
    assert_eq!(
        (p["op"].as_str(), p["path"].as_str()),
        (Some("remove"), Some("/missing"))
    );

    // Ids and names out of bounds.
    let long_id = "x".repeat(129);
    s.put(&format!("/docs/users/{long_id}"), json!({}), &[])
        .await
        .problem(400, "invalid-id");
    s.put("/docs/users/%20", json!({}), &[])
        .await
        .problem(400, "invalid-id");
    s.put("/docs/users/a%01b", json!({}), &[])
        .await
        .problem(400, "invalid-id");
    s.put("/docs/bad%20name/1", json!({}), &[])
        .await
        .problem(400, "invalid-id");
    let long_name = "c".repeat(65);
    s.put(&format!("/docs/{long_name}/1"), json!({}), &[])
        .await
        .problem(400, "invalid-id");
    s.put("/collections/-x", json!({}), &[])
        .await
        .problem(400, "invalid-id");
    s.put("/collections/u2", json!({"unique": ["/a~2"]}), &[])
        .await
        .problem(422, "validation-failed");
    s.put("/collections/u2", json!({"unique": ["a", "/a/b"]}), &[])
        .await
        .problem(422, "validation-failed");
    s.put("/collections/u2", json!({"uniq": []}), &[])
        .await
        .problem(422, "invalid-body");
    s.put("/docs/undeclared/1", json!({}), &[])
        .await
        .problem(404, "not-found");
    s.get("/docs/users/1?version=0").await.problem(404, "not-found");
    s.get("/docs/users/1?version=x").await.problem(400, "invalid-parameter");
    s.get("/docs/users/1/history?limit=0")
        .await
        .problem(400, "invalid-parameter");

    // Headers that do not parse.
    for (name, value, problem) in [
        ("If-Unmodified-Since", "yesterday", "invalid-precondition"),
        ("Strata-Merge-Base", "-1", "invalid-precondition"),
        ("If-Match", "1", "invalid-if-match"),
        ("If-None-Match", "\"1\"", "invalid-if-match"),
        ("Strata-Actor", " ", "invalid-parameter"),
        ("Idempotency-Key", "a b", "invalid-idempotency-key"),
    ] {
        s.put(doc, json!({"n": 3}), &[(name, value)])
            .await
            .problem(400, problem);
    }

    // A body over the limit.
    let big = json!({"n": "x".repeat(5 * 1024)});
    s.put(doc, big.clone(), &[]).await.problem(413, "payload-too-large");
    s.put(doc, big, &[("Idempotency-Key", "big-1")])
        .await
        .problem(413, "payload-too-large");

    assert_eq!(s.head().await, head, "no bad request wrote anything");
    let now = s.get(doc).await;
    assert_eq!(now.json(), json!({"email": "a@x", "n": 1, "_version": 1}));
    s.finish().await;
}

on_both_backends!(bad_input_is_a_problem_and_writes_nothing,);
