//! `GET /docs/{collection}`: a walk that follows `next` sees every live
//! document once, in id order, as `GET` of the document shows it; deleted
//! documents are gone and come back when created again; `min_position`
//! reads one's own writes (and is 503 when the listing cannot reach it in
//! the read wait); pages end at `limit` and at the byte budget; every bad
//! parameter is a 400 problem, an undeclared collection a 404; a restart
//! (and on PostgreSQL another process) serves the same listing; the
//! OpenAPI document says all of it.

mod common;

use std::time::Duration;

use common::{Backend, Data, Resp, TestServer, encode};
use serde_json::{Value, json};
use strata_http::Config;

fn doc_path(collection: &str, id: &str) -> String {
    format!("/docs/{collection}/{}", encode(id))
}

/// The write's `Strata-Position`.
fn position(r: &Resp) -> u64 {
    r.header("strata-position")
        .unwrap_or_else(|| panic!("no Strata-Position: {r:?}"))
        .parse()
        .unwrap()
}

/// Follows `next` from `path` (which has a query) to the last page;
/// checks what every page must hold and returns the pages.
async fn walk(s: &TestServer, path: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("{path}&after={}", encode(a)),
            None => path.to_string(),
        };
        let r = s.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text);
        let page = r.json();
        assert_eq!(
            page["position"].as_u64(),
            Some(position(&r)),
            "the body's position is the header's"
        );
        let docs = page["documents"].as_array().unwrap();
        let next = page.get("next").cloned();
        match &next {
            None => {}
            Some(Value::String(n)) => {
                assert_eq!(docs.last().map(|d| &d["id"]), Some(&json!(n)), "next is the last id");
                after = Some(n.clone());
            }
            Some(other) => panic!("next is {other}"),
        }
        pages.push(page);
        if next.is_none() {
            break;
        }
        assert!(pages.len() < 1000, "the walk does not end");
    }
    pages
}

fn listed(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| p["documents"].as_array().unwrap().clone())
        .collect()
}

fn ids(pages: &[Value]) -> Vec<String> {
    listed(pages)
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Ids whose byte order differs from a naive one: digits, capitals, `/`,
/// a space, a character beyond ASCII.
const IDS: [&str; 10] = ["10", "9", "Z", "a", "a b", "a/b", "ab", "b", "zz", "é"];

async fn a_walk_sees_every_live_document_once_in_id_order_as_get_shows_it(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.collection("items", json!({})).await;
    s.collection("others", json!({})).await;
    for (i, id) in IDS.iter().enumerate() {
        let r = s
            .put(
                &doc_path("items", id),
                json!({"n": i, "id": id}),
                &[("Strata-Actor", "ada")],
            )
            .await;
        assert_eq!(r.status, 201, "{id}: {}", r.text);
    }
    let r = s.put(&doc_path("others", "x"), json!({"other": true}), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A patch moves one to version 2, by someone else.
    let r = s
        .merge_patch(&doc_path("items", "a/b"), json!({"m": 1}), &[("Strata-Actor", "bob")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = position(&r);

    let mut sorted: Vec<&str> = IDS.to_vec();
    sorted.sort(); // byte order of the UTF-8 is char order
    assert_eq!(sorted, IDS, "IDS is listed in id order");

    let one = walk(&s, &format!("/docs/items?limit=1000&min_position={p}")).await;
    assert_eq!(one.len(), 1, "one page holds them all");
    assert!(one[0]["position"].as_u64().unwrap() >= p);
    assert_eq!(one[0]["collection"], "items");
    assert_eq!(ids(&one), IDS);
    for d in listed(&one) {
        let id = d["id"].as_str().unwrap();
        let get = s.get(&doc_path("items", id)).await;
        assert_eq!(get.status, 200, "{id}");
        assert_eq!(d["document"], get.json(), "{id}: the listing shows what GET shows");
        assert_eq!(format!("\"{}\"", d["version"]), get.etag(), "{id}");
        let at = httpdate::parse_http_date(get.header("last-modified").unwrap()).unwrap();
        let listed_at = humantime::parse_rfc3339(d["last_modified"].as_str().unwrap()).unwrap();
        let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(listed_at), secs(at), "{id}: Last-Modified to the second");
        let by = if id == "a/b" { "bob" } else { "ada" };
        assert_eq!(d["modified_by"], by, "{id}");
        assert!(d["position"].as_u64().unwrap() <= p, "{id}");
    }

    for limit in [1, 3, 9, 10] {
        let pages = walk(&s, &format!("/docs/items?limit={limit}")).await;
        assert_eq!(ids(&pages), IDS, "limit {limit}");
        assert_eq!(pages.len(), IDS.len().div_ceil(limit), "limit {limit}: full pages");
        assert!(pages.iter().all(|p| p["documents"].as_array().unwrap().len() <= limit));
    }
    // The default page is 100 documents.
    assert!(s.get("/docs/items").await.json().get("next").is_none());

    // A prefix pages through its ids only; it is a prefix of bytes.
    for (prefix, expected) in [
        ("a", &["a", "a b", "a/b", "ab"][..]),
        ("a/", &["a/b"]),
        ("é", &["é"]),
        ("q", &[]),
    ] {
        let pages = walk(&s, &format!("/docs/items?prefix={}&limit=2", encode(prefix))).await;
        assert_eq!(ids(&pages), expected, "prefix {prefix:?}");
    }
    // A cursor with a prefix: before the prefix's ids it starts at the
    // first of them, past them the page is empty.
    let r = s.get("/docs/items?prefix=a&after=0").await.json();
    assert_eq!(ids(std::slice::from_ref(&r)), ["a", "a b", "a/b", "ab"]);
    let r = s.get("/docs/items?prefix=a&after=b").await.json();
    assert_eq!(r["documents"], json!([]));
    assert!(r.get("next").is_none());
    // A cursor is a position: it need not be an id that exists.
    let r = s.get("/docs/items?after=a0&limit=2").await.json();
    assert_eq!(ids(std::slice::from_ref(&r)), ["ab", "b"]);
    assert_eq!(r["next"], "b");
    let r = s.get(&format!("/docs/items?after={}", encode("é"))).await.json();
    assert_eq!(r["documents"], json!([]));
    assert!(r.get("next").is_none());

    // One collection's listing holds none of another's.
    assert_eq!(ids(&walk(&s, "/docs/others?limit=5").await), ["x"]);
    // A declared collection with no documents is an empty page.
    s.collection("empty", json!({})).await;
    let r = s.get("/docs/empty").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["documents"], json!([]));
    s.finish().await;
}

async fn deleted_documents_vanish_and_come_back_when_created_again(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.collection("items", json!({})).await;
    for id in ["a", "b", "c"] {
        let r = s.put(&doc_path("items", id), json!({"id": id}), &[]).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let gone = s.delete(&doc_path("items", "b"), &[("If-Match", "\"1\"")]).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    // Read your own delete: without waiting on anything else.
    let pages = walk(&s, &format!("/docs/items?limit=1&min_position={}", position(&gone))).await;
    assert_eq!(ids(&pages), ["a", "c"]);

    let back = s
        .put(
            &doc_path("items", "b"),
            json!({"id": "b", "again": true}),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(back.status, 201, "{}", back.text);
    assert_eq!(back.etag(), "\"3\"");
    let page = s
        .get(&format!("/docs/items?min_position={}", position(&back)))
        .await
        .json();
    let docs = page["documents"].as_array().unwrap();
    assert_eq!(ids(std::slice::from_ref(&page)), ["a", "b", "c"]);
    assert_eq!(docs[1]["version"], 3);
    assert_eq!(docs[1]["document"], json!({"id": "b", "again": true, "_version": 3}));

    // Delete them all: the listing is empty, the collection still there.
    let mut last = 0;
    for (id, version) in [("a", "\"1\""), ("b", "\"3\""), ("c", "\"1\"")] {
        let r = s.delete(&doc_path("items", id), &[("If-Match", version)]).await;
        assert_eq!(r.status, 200, "{id}: {}", r.text);
        last = position(&r);
    }
    let r = s.get(&format!("/docs/items?min_position={last}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["documents"], json!([]));
    s.finish().await;
}

async fn every_write_is_listed_when_read_with_its_position(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.collection("counters", json!({})).await;
    // Each write is read back at once through its own position: the
    // listing never shows an older version than the write just made.
    let mut version = 0;
    for n in 1..=20u64 {
        let r = if n == 1 {
            s.put("/docs/counters/c", json!({"n": n}), &[]).await
        } else {
            s.merge_patch("/docs/counters/c", json!({"n": n}), &[]).await
        };
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
        version += 1;
        let page = s
            .get(&format!("/docs/counters?min_position={}", position(&r)))
            .await
            .json();
        let d = &page["documents"][0];
        assert_eq!(
            (d["version"].as_u64(), d["document"]["n"].as_u64()),
            (Some(version), Some(n))
        );
    }
    s.finish().await;
}

async fn pages_end_at_the_byte_budget_and_always_hold_one_document(backend: Backend) {
    let data = Data::new(backend);
    let config = Config {
        list_page_bytes: 100,
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    s.collection("items", json!({})).await;
    // {"f":"xxx..."} is 8 bytes + the filler: 40 bytes each, 2 a page.
    for id in ["a", "b", "c", "d", "e"] {
        let r = s.put(&doc_path("items", id), json!({"f": "x".repeat(32)}), &[]).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // One larger than the whole budget still gets a page of its own.
    let r = s
        .put(&doc_path("items", "big"), json!({"f": "x".repeat(500)}), &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let p = position(&r);
    let pages = walk(&s, &format!("/docs/items?limit=1000&min_position={p}")).await;
    let sizes: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| {
            p["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        sizes,
        vec![vec!["a", "b"], vec!["big"], vec!["c", "d"], vec!["e"]],
        "two of 40 bytes fit in 100, a third does not; 500 bytes alone"
    );
    s.finish().await;
}

async fn bad_parameters_are_400_and_an_undeclared_collection_404(backend: Backend) {
    let data = Data::new(backend);
    let config = Config {
        read_wait_timeout: Duration::from_millis(50),
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    s.collection("items", json!({})).await;
    let far = s.head().await + 1000;
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("after=", "after"),
        ("prefix=", "prefix"),
        (&format!("after={}", "a".repeat(129)), "after"),
        (&format!("prefix={}", "é".repeat(129)), "prefix"),
        ("after=a%01b", "after"),
        ("prefix=%7F", "prefix"),
        ("after=%C2%9F", "after"),
        ("min_position=-1", "min_position"),
        ("min_position=9223372036854775808", "min_position"),
        ("min_position=18446744073709551616", "min_position"),
        ("min_position=x", "min_position"),
        ("cursor=a", "cursor"),
        // Bad input is refused before waiting for min_position.
        (&format!("limit=0&min_position={far}"), "limit"),
    ] {
        let r = s.get(&format!("/docs/items?{query}")).await;
        let p = r.problem(400, "invalid-parameter");
        assert!(
            p["detail"].as_str().unwrap().contains(names),
            "{query}: the detail names {names}: {p}"
        );
    }
    for good in [
        "limit=1",
        "limit=1000",
        "min_position=0",
        "after=%20",
        &format!("after={}", "é".repeat(128)),
    ] {
        let r = s.get(&format!("/docs/items?{good}")).await;
        assert_eq!(r.status, 200, "{good}: {}", r.text);
    }
    // The largest position is accepted, and a position the log has not
    // reached is a 503 once the (here short) read wait is over.
    for far in [far, i64::MAX as u64] {
        let r = s.get(&format!("/docs/items?min_position={far}")).await;
        assert_eq!(r.header("retry-after"), Some("1"));
        r.problem(503, "read-model-lagging");
    }

    s.get("/docs/nothing").await.problem(404, "not-found");
    for bad in ["bad%20name", "-items", &"a".repeat(65)] {
        s.get(&format!("/docs/{bad}")).await.problem(400, "invalid-id");
    }
    s.finish().await;
}

async fn a_restart_and_another_process_serve_the_same_listing(backend: Backend) {
    let data = Data::new(backend);
    let first = TestServer::on(&data, Config::default()).await;
    first.collection("items", json!({})).await;
    for id in ["a", "b", "c"] {
        let r = first.put(&doc_path("items", id), json!({"id": id}), &[]).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = first.delete(&doc_path("items", "b"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = position(&r);
    let before = walk(&first, &format!("/docs/items?limit=2&min_position={p}")).await;
    assert_eq!(ids(&before), ["a", "c"]);

    if backend == Backend::Postgres {
        // A second process on the same database: it does not write the
        // listing (the first holds it) and reads the first one's writes
        // through their position.
        let second = TestServer::on(&data, Config::default()).await;
        let r = second.put(&doc_path("items", "d"), json!({"id": "d"}), &[]).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let p = position(&r);
        for s in [&first, &second] {
            let pages = walk(s, &format!("/docs/items?limit=2&min_position={p}")).await;
            assert_eq!(ids(&pages), ["a", "c", "d"]);
        }
        let r = first.delete(&doc_path("items", "d"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let pages = walk(&second, &format!("/docs/items?limit=2&min_position={}", position(&r))).await;
        assert_eq!(ids(&pages), ["a", "c"]);
        second.finish().await;
    }
    first.finish().await;

    let again = TestServer::on(&data, Config::default()).await;
    let after = walk(&again, "/docs/items?limit=2").await;
    assert_eq!(listed(&after), listed(&before), "the listing as it was");
    again.finish().await;
}

async fn the_openapi_document_describes_the_listing(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let doc = s.get("/openapi.json").await.json();
    let op = &doc["paths"]["/docs/{collection}"]["get"];
    assert!(op.is_object(), "GET /docs/{{collection}} is documented");
    let param = |name: &str| {
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}: {}", op["parameters"]))
            .clone()
    };
    assert_eq!(param("collection")["in"], "path");
    assert_eq!(
        param("collection")["schema"]["pattern"],
        "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    );
    let limit = param("limit")["schema"].clone();
    assert_eq!(
        (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
        (Some(1), Some(1000))
    );
    for name in ["after", "prefix"] {
        let schema = param(name)["schema"].clone();
        assert_eq!(
            (schema["minLength"].as_u64(), schema["maxLength"].as_u64()),
            (Some(1), Some(128)),
            "{name}: {schema}"
        );
        assert!(schema["pattern"].is_string(), "{name}: {schema}");
    }
    let min_position = param("min_position")["schema"].clone();
    assert_eq!(
        (min_position["minimum"].as_u64(), min_position["maximum"].as_u64()),
        (Some(0), Some(i64::MAX as u64)),
        "{min_position}"
    );
    for status in ["200", "400", "404", "503"] {
        assert!(op["responses"][status].is_object(), "{status}: {}", op["responses"]);
    }
    let ok = &op["responses"]["200"];
    assert!(ok["headers"]["Strata-Position"].is_object(), "{ok}");
    let schema_ref = ok["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
    assert_eq!(schema_ref, "#/components/schemas/DocumentListView");
    let list = &doc["components"]["schemas"]["DocumentListView"];
    let required: Vec<&str> = list["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(required, ["collection", "position", "documents"]);
    assert_eq!(list["properties"]["next"]["type"], "string", "absent, never null");
    let item = &doc["components"]["schemas"]["ListedDocumentView"];
    let required: Vec<&str> = item["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for member in ["id", "version", "last_modified", "modified_by", "position", "document"] {
        assert!(item["properties"][member].is_object(), "{member}: {item}");
        assert!(required.contains(&member), "{member} is always there: {item}");
    }
    assert_eq!(item["properties"]["modified_by"]["type"], json!(["string", "null"]));
    s.finish().await;
}

on_both_backends!(
    a_walk_sees_every_live_document_once_in_id_order_as_get_shows_it,
    deleted_documents_vanish_and_come_back_when_created_again,
    every_write_is_listed_when_read_with_its_position,
    pages_end_at_the_byte_budget_and_always_hold_one_document,
    bad_parameters_are_400_and_an_undeclared_collection_404,
    a_restart_and_another_process_serve_the_same_listing,
    the_openapi_document_describes_the_listing,
);
