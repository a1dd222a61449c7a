//! The OpenAPI document against the server: the routes it lists are the
//! routes served, and the decisions that make the two agree (docs/http.md,
//! "OpenAPI and schemathesis"): integers as the document's `int64`, member
//! names once at every depth, a 415 that says what was sent, a method a
//! route does not take answered 405 before anything else.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Data, TestServer, calls};
use serde_json::json;
use strata_http::Config;

/// Every route, as (method, path template). Changing a route means
/// changing this list, so a route cannot come or go unnoticed.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/admin/scavenge"),
    ("GET", "/collections/{name}"),
    ("PUT", "/collections/{name}"),
    ("GET", "/docs/{collection}"),
    ("GET", "/docs/{collection}/{id}"),
    ("PUT", "/docs/{collection}/{id}"),
    ("PATCH", "/docs/{collection}/{id}"),
    ("DELETE", "/docs/{collection}/{id}"),
    ("GET", "/docs/{collection}/{id}/history"),
    ("POST", "/docs/{collection}/{id}/erase"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/orders"),
    ("GET", "/orders/{id}"),
    ("DELETE", "/orders/{id}"),
    ("POST", "/orders/{id}/cancel"),
    ("POST", "/orders/{id}/deliver"),
    ("GET", "/orders/{id}/events"),
    ("POST", "/orders/{id}/pay"),
    ("POST", "/orders/{id}/ship"),
    ("GET", "/problems"),
    ("GET", "/problems/{name}"),
    ("POST", "/stock"),
    ("GET", "/stock/{sku}"),
    ("POST", "/stock/{sku}/adjust"),
    ("POST", "/stock/{sku}/receive"),
    ("GET", "/log"),
    ("GET", "/streams"),
    ("GET", "/streams/{stream}"),
    ("POST", "/streams/{stream}"),
    ("DELETE", "/streams/{stream}"),
    ("GET", "/streams/{stream}/metadata"),
    ("PUT", "/streams/{stream}/metadata"),
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/{file}"),
    ("GET", "/subscriptions/all"),
    ("GET", "/subscriptions/categories/{category}"),
    ("GET", "/subscriptions/groups"),
    ("GET", "/subscriptions/groups/{group}"),
    ("PUT", "/subscriptions/groups/{group}"),
    ("DELETE", "/subscriptions/groups/{group}"),
    ("POST", "/subscriptions/groups/{group}/ack"),
    ("POST", "/subscriptions/groups/{group}/nack"),
    ("GET", "/subscriptions/groups/{group}/parked"),
    ("POST", "/subscriptions/groups/{group}/parked/replay"),
    ("POST", "/subscriptions/groups/{group}/read"),
    ("GET", "/subscriptions/streams/{stream}"),
    ("GET", "/views/orders"),
    ("GET", "/views/stock"),
];

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "PATCH", "DELETE"];

/// A concrete path for a template: every parameter `p1`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "p1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The document lists exactly [`ROUTES`]; the server serves each of them
/// (the metrics count it under its template, not as unmatched or 405) and
/// answers 405 to every other method on their paths.
async fn the_routes_served_are_the_routes_documented(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let doc = s.get("/openapi.json").await.json();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let pinned: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, pinned, "the OpenAPI document's routes are the pinned list");

    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in &paths {
        for method in METHODS {
            // An unknown query parameter makes the live routes answer 400
            // at once rather than stream; other routes ignore or refuse it.
            let url = format!("{}?strata_probe=1", concrete(path));
            let body = (method != "GET" && method != "DELETE").then(|| ("application/json", "{}".to_string()));
            let r = s.req(method, &url, body, &[("Idempotency-Key", "probe")]).await;
            let served = pinned.contains(&(method.to_string(), path.to_string()));
            if served {
                assert_ne!(r.status, 405, "{method} {path}: {}", r.text);
            } else {
                assert_eq!(r.status, 405, "{method} {path} is not a route: {}", r.text);
            }
        }
    }
    let matched: BTreeSet<(String, String)> = calls(&s)
        .await
        .into_iter()
        .filter(|(_, route, status)| route != "unmatched" && status != "405")
        .map(|(method, route, _)| (method, route))
        .collect();
    assert_eq!(
        matched, pinned,
        "every documented route is served under its own template"
    );
    s.finish().await;
}

/// Versions, positions and counts are `int64` in the document: 2^63 − 1 is
/// taken, 2^63 is refused with a problem, in bodies, queries and headers
/// alike; a whole number written as `3.0` is the integer 3.
async fn integers_are_the_documents_int64(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 5).await;
    let big = "9223372036854775808";
    let p = s
        .post_raw(
            "/stock/tea/receive",
            Some("application/json"),
            &format!(r#"{{"quantity": 1, "expected_version": {big}}}"#),
        )
        .await
        .problem(422, "invalid-body");
    assert!(p["detail"].as_str().unwrap().contains("2^63-1"), "{p}");
    s.post_raw(
        "/stock/tea/receive",
        Some("application/json"),
        r#"{"quantity": 18446744073709551615}"#,
    )
    .await
    .problem(422, "invalid-body");
    for url in [
        format!("/streams/notes?from={big}"),
        format!("/views/orders?min_position={big}"),
        format!("/docs/users?min_position={big}"),
        format!("/subscriptions/all?after={big}"),
        format!("/subscriptions/groups/g/parked?after={big}"),
    ] {
        s.get(&url).await.problem(400, "invalid-parameter");
    }
    s.post_raw(
        "/streams/notes?expected_version=9223372036854775808",
        Some("application/json"),
        "[]",
    )
    .await
    .problem(400, "invalid-parameter");
    s.get_with("/subscriptions/all", &[("Last-Event-ID", big)])
        .await
        .problem(400, "invalid-parameter");
    let r = s.get("/streams/notes?from=9223372036854775807").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 3.0 is 3; 3.5 is not an integer.
    let r = s
        .post_raw("/stock/tea/receive", Some("application/json"), r#"{"quantity": 3.0}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["on_hand"], 8);
    s.post_raw("/stock/tea/receive", Some("application/json"), r#"{"quantity": 3.5}"#)
        .await
        .problem(422, "invalid-body");
    // A document's _version too.
    s.collection("users", json!({})).await;
    s.put("/docs/users/1", json!({"name": "ada"}), &[]).await;
    let r = s
        .req(
            "PUT",
            "/docs/users/1",
            Some(("application/json", format!(r#"{{"name": "bob", "_version": {big}}}"#))),
            &[],
        )
        .await;
    r.problem(422, "invalid-body");
    s.finish().await;
}

/// A member name twice is refused at every depth, on every JSON body
/// (here an append's `data`, an order, a document), and nothing is written.
async fn duplicate_member_names_are_refused_at_every_depth(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let event = |data: &str| {
        format!(r#"[{{"event_id": "0190c5a0-0000-7000-8000-000000000001", "event_type": "Note", "data": {data}}}]"#)
    };
    for data in [
        r#"{"a": 1, "a": 2}"#,
        r#"{"x": {"a": 1, "a": 1}}"#,
        r#"[{"a": 1, "a": 2}]"#,
    ] {
        let p = s
            .post_raw("/streams/notes", Some("application/json"), &event(data))
            .await
            .problem(422, "invalid-body");
        assert!(p["detail"].as_str().unwrap().contains("duplicate"), "{p}");
    }
    assert_eq!(s.get("/streams/notes").await.json()["version"], 0, "nothing written");
    // Data that is not an object is any JSON, as the document says.
    let r = s
        .post_raw("/streams/notes", Some("application/json"), &event("[1, \"two\", null]"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        s.get("/streams/notes").await.json()["events"][0]["data"],
        json!([1, "two", null])
    );
    s.post_raw(
        "/stock",
        Some("application/json"),
        r#"{"sku": "tea", "name": "Tea", "sku": "coffee"}"#,
    )
    .await
    .problem(422, "invalid-body");
    s.collection("users", json!({})).await;
    s.req(
        "PUT",
        "/docs/users/1",
        Some((
            "application/json",
            r#"{"profile": {"email": "a", "email": "b"}}"#.into(),
        )),
        &[],
    )
    .await
    .problem(422, "invalid-body");
    s.get("/docs/users/1").await.problem(404, "not-found");
    s.finish().await;
}

/// A 415 says in words which media type the route takes and which one came.
async fn unsupported_media_type_says_what_was_sent(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let p = s
        .post_raw("/stock", Some("text/plain"), r#"{"sku": "tea", "name": "Tea"}"#)
        .await
        .problem(415, "unsupported-media-type");
    assert_eq!(
        p["detail"],
        "this route takes a body of type application/json; the request's Content-Type is \"text/plain\""
    );
    let p = s
        .post_raw("/stock", None, r#"{"sku": "tea", "name": "Tea"}"#)
        .await
        .problem(415, "unsupported-media-type");
    assert_eq!(
        p["detail"],
        "this route takes a body of type application/json; the request has no Content-Type"
    );
    assert!(!p["detail"].as_str().unwrap().contains("Some("), "{p}");
    s.finish().await;
}

/// `cancel`, `ship` and `deliver` take no body, an empty one, or JSON
/// `null`, as their optional body is documented.
async fn optional_bodies_take_null(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 5).await;
    let place = |id: &str| json!({"order_id": id, "customer": "ada", "lines": [{"sku": "tea", "quantity": 1, "unit_price_cents": 100}]});
    assert_eq!(s.post("/orders", place("o-1")).await.status, 201);
    assert_eq!(s.post("/orders", place("o-2")).await.status, 201);
    assert_eq!(
        s.post("/orders/o-1/pay", json!({"amount_cents": 100})).await.status,
        200
    );
    for (path, status) in [
        ("/orders/o-1/ship", "shipped"),
        ("/orders/o-1/deliver", "delivered"),
        ("/orders/o-2/cancel", "cancelled"),
    ] {
        let r = s.post_raw(path, Some("application/json"), "null").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json()["status"], status);
    }
    s.finish().await;
}

/// A method a route does not take is 405, even with an Idempotency-Key
/// that an earlier request on the path used.
async fn an_undeclared_method_is_405_before_the_idempotency_key(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let key = [("Idempotency-Key", "k-1")];
    let r = s.post_with("/stock", json!({"sku": "tea", "name": "Tea"}), &key).await;
    assert_eq!(r.status, 201);
    for method in ["PUT", "PATCH", "DELETE"] {
        let r = s
            .req(method, "/stock", Some(("application/json", "{}".into())), &key)
            .await;
        r.problem(405, "method-not-allowed");
    }
    s.finish().await;
}

on_both_backends!(
    the_routes_served_are_the_routes_documented,
    integers_are_the_documents_int64,
    duplicate_member_names_are_refused_at_every_depth,
    unsupported_media_type_says_what_was_sent,
    optional_bodies_take_null,
    an_undeclared_method_is_405_before_the_idempotency_key,
);
