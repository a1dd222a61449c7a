//! `GET /streams` and `GET /log`, what the web console browses with: a
//! walk that follows `next_after` / `next_from` sees every stream or
//! event once, in order; prefixes and categories select; bad input is 400;
//! the console's files are served with their policy, or not at all with
//! `ui: false`; every call is in the OpenAPI document.

mod common;

use common::{Backend, Data, TestServer, assert_documented, encode};
use serde_json::{Value, json};
use strata_http::Config;

async fn append(s: &TestServer, stream: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"event_id": uuid::Uuid::new_v4(), "event_type": "T", "data": {"i": i}}))
        .collect();
    let r = s.post(&format!("/streams/{}", encode(stream)), json!(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Every stream a walk from `query` sees, with its version.
async fn walk_streams(s: &TestServer, query: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("/streams?{query}&after={}", encode(a)),
            None => format!("/streams?{query}"),
        };
        let r = s.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text);
        let page = r.json();
        for item in page["streams"].as_array().unwrap() {
            out.push((
                item["stream"].as_str().unwrap().to_string(),
                item["version"].as_u64().unwrap(),
            ));
        }
        match page.get("next_after") {
            Some(Value::String(n)) => after = Some(n.clone()),
            None => break,
            Some(other) => panic!("next_after is {other}"),
        }
        assert!(out.len() < 10_000, "the walk does not end");
    }
    out
}

async fn streams_are_listed_by_prefix_and_category_in_pages(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    for (stream, n) in [("cart-2", 1), ("cart-10", 3), ("carts", 1), ("audit", 2), ("cart-1", 1)] {
        append(&s, stream, n).await;
    }
    let all = walk_streams(&s, "limit=2").await;
    let expected: Vec<(String, u64)> = [("audit", 2), ("cart-1", 1), ("cart-10", 3), ("cart-2", 1), ("carts", 1)]
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    assert_eq!(all, expected);
    assert_eq!(walk_streams(&s, "category=cart&limit=1").await, expected[1..4]);
    assert_eq!(walk_streams(&s, "prefix=cart&limit=100").await, expected[1..]);
    assert_eq!(walk_streams(&s, "prefix=zz").await, []);
    for bad in [
        "/streams?prefix=a&category=b",
        "/streams?category=a-b",
        "/streams?category=",
        "/streams?limit=0",
        "/streams?limit=1001",
        "/streams?after=",
        "/streams?other=1",
    ] {
        s.get(bad).await.problem(400, "invalid-parameter");
    }
    assert_documented(&s).await;
    s.finish().await;
}

async fn the_log_reads_from_a_position_in_pages(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    append(&s, "a-1", 3).await;
    append(&s, "b-1", 4).await;
    let mut positions = Vec::new();
    let mut from = 2;
    loop {
        let r = s.get(&format!("/log?from={from}&limit=2")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        assert_eq!(page["head"], json!(7));
        positions.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["position"].as_u64().unwrap()),
        );
        match page.get("next_from") {
            Some(n) => from = n.as_u64().unwrap(),
            None => break,
        }
    }
    assert_eq!(positions, [2, 3, 4, 5, 6, 7]);
    let page = s.get("/log").await.json();
    assert_eq!(page["events"][3]["stream"], json!("b-1"));
    assert_eq!(page["events"][3]["data"], json!({"i": 0}));
    assert_eq!(s.get("/log?from=8").await.json()["events"], json!([]));
    s.get("/log?limit=0").await.problem(400, "invalid-parameter");
    s.get("/log?from=x").await.problem(400, "invalid-parameter");
    assert_documented(&s).await;
    s.finish().await;
}

async fn the_console_is_served_with_its_policy_or_not_at_all(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    for file in strata_http::asset_names() {
        let r = s.get(&format!("/ui/{file}")).await;
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(
            r.header("content-security-policy"),
            Some(strata_http::CONTENT_SECURITY_POLICY),
            "{file}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let r = s.get("/ui/").await;
    assert!(r.text.contains(r#"<script src="common.js""#), "{}", r.text);
    s.get("/ui/nothing.js").await.problem(404, "not-found");
    assert_documented(&s).await;
    s.finish().await;

    let off = TestServer::on(
        &data,
        Config {
            ui: false,
            ..Config::default()
        },
    )
    .await;
    for path in ["/ui/", "/ui/index.html", "/ui/common.js"] {
        off.get(path).await.problem(404, "not-found");
    }
    off.finish().await;
}

on_both_backends!(
    streams_are_listed_by_prefix_and_category_in_pages,
    the_log_reads_from_a_position_in_pages,
    the_console_is_served_with_its_policy_or_not_at_all,
);
