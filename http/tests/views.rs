//! `/views`: pages of the read models. A walk that follows `next` sees
//! every order or item once, in order; `limit` is bounded; filters page
//! through their index; the calls are all in the OpenAPI document.

mod common;

use common::{Backend, Data, TestServer};
use serde_json::{Value, json};
use strata_http::Config;

/// Follows `next` from `path` (which has a query) until the last page;
/// returns the pages.
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
        let next = page.get("next").cloned();
        pages.push(page);
        match next {
            None => break,
            Some(Value::String(n)) => after = Some(n),
            Some(other) => panic!("next is {other}"),
        }
        assert!(pages.len() < 1000, "the walk does not end");
    }
    pages
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ids(pages: &[Value], list: &str, field: &str) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p[list].as_array().unwrap().clone())
        .map(|o| o[field].as_str().unwrap().to_string())
        .collect()
}

async fn place(s: &TestServer, id: &str, customer: &str) {
    let r = s
        .post(
            "/orders",
            json!({"order_id": id, "customer": customer, "lines": [{"sku": "tea", "quantity": 1, "unit_price_cents": 100}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn command(s: &TestServer, id: &str, command: &str, body: Value) {
    let r = s.post(&format!("/orders/{id}/{command}"), body).await;
    assert_eq!(r.status, 200, "{command} {id}: {}", r.text);
}

async fn pages_of_orders_follow_next_through_every_order_and_every_filter(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 100).await;
    for i in 1..=7 {
        let customer = if i % 2 == 0 { "bob" } else { "ada" };
        place(&s, &format!("o-{i}"), customer).await;
    }
    for id in ["o-2", "o-3", "o-5", "o-6"] {
        command(&s, id, "pay", json!({"amount_cents": 100})).await;
    }
    command(&s, "o-6", "cancel", json!({})).await; // from paid
    command(&s, "o-7", "cancel", json!({})).await; // from placed
    command(&s, "o-3", "ship", json!({})).await;
    let p = s.head().await;

    // All orders, three at a time: full pages whose next is their last id.
    let pages = walk(&s, &format!("/views/orders?limit=3&min_position={p}")).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(
        ids(&pages, "orders", "order_id"),
        ["o-1", "o-2", "o-3", "o-4", "o-5", "o-6", "o-7"]
    );
    assert_eq!(pages[0]["next"], "o-3");
    assert_eq!(pages[1]["next"], "o-6");
    assert!(pages[2].get("next").is_none(), "no next on the last page: {}", pages[2]);
    for page in &pages {
        assert_eq!(
            page["counts"],
            json!({"placed": 2, "paid": 2, "shipped": 1, "cancelled": 2}),
            "counts over all orders on every page"
        );
        assert!(page["position"].as_u64().unwrap() >= p);
    }
    // The same walk in one page.
    let one = walk(&s, "/views/orders?limit=1000").await;
    assert_eq!(one.len(), 1);
    assert_eq!(ids(&one, "orders", "order_id"), ids(&pages, "orders", "order_id"));

    // By status, through the status index, a page at a time.
    for (status, expected) in [
        ("placed", &["o-1", "o-4"][..]),
        ("paid", &["o-2", "o-5"]),
        ("shipped", &["o-3"]),
        ("cancelled", &["o-6", "o-7"]),
        ("delivered", &[]),
    ] {
        let pages = walk(&s, &format!("/views/orders?status={status}&limit=1")).await;
        assert_eq!(ids(&pages, "orders", "order_id"), expected, "{status}");
        assert!(pages.iter().all(|p| p["orders"].as_array().unwrap().len() <= 1));
        for o in pages.iter().flat_map(|p| p["orders"].as_array().unwrap()) {
            assert_eq!(o["status"], status);
        }
    }
    // By customer, and by customer and status.
    let pages = walk(&s, "/views/orders?customer=ada&limit=2").await;
    assert_eq!(ids(&pages, "orders", "order_id"), ["o-1", "o-3", "o-5", "o-7"]);
    let pages = walk(&s, "/views/orders?customer=bob&status=paid&limit=1").await;
    assert_eq!(ids(&pages, "orders", "order_id"), ["o-2"]);
    let pages = walk(&s, "/views/orders?customer=bob&status=cancelled&limit=1").await;
    assert_eq!(ids(&pages, "orders", "order_id"), ["o-6"]);

    // A cursor is a position: after the last id there is nothing more.
    let r = s.get("/views/orders?after=o-7").await.json();
    assert_eq!(r["orders"], json!([]));
    assert!(r.get("next").is_none());
    s.finish().await;
}

async fn a_walk_over_more_items_than_the_default_page_sees_each_once(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let mut skus: Vec<String> = (0..105).map(|i| format!("sku-{i:03}")).collect();
    for (i, sku) in skus.iter().enumerate() {
        s.stock_item(sku, (i % 7) as u64).await;
    }
    skus.sort();
    let p = s.head().await;

    let first = s.get(&format!("/views/stock?min_position={p}")).await.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 100, "the default limit");
    assert_eq!(first["next"], "sku-099");
    let pages = walk(&s, "/views/stock?limit=100").await;
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[1]["items"].as_array().unwrap().len(), 5);
    assert_eq!(ids(&pages, "items", "sku"), skus);
    let pages = walk(&s, "/views/stock?limit=7").await;
    assert_eq!(pages.len(), 15);
    assert_eq!(ids(&pages, "items", "sku"), skus);

    // Low stock: fewest available first, then by SKU; the cursor names both.
    let mut low: Vec<(i64, String)> = skus
        .iter()
        .map(|sku| {
            let i: usize = sku[4..].parse().unwrap();
            ((i % 7) as i64, sku.clone())
        })
        .filter(|(available, _)| *available <= 2)
        .collect();
    low.sort();
    let pages = walk(&s, "/views/stock?low=2&limit=4").await;
    let expected: Vec<String> = low.iter().map(|(_, sku)| sku.clone()).collect();
    assert_eq!(ids(&pages, "items", "sku"), expected);
    let (available, sku) = &low[3];
    assert_eq!(pages[0]["next"], format!("{available}:{sku}"));
    for page in &pages {
        for item in page["items"].as_array().unwrap() {
            assert!(item["available"].as_i64().unwrap() <= 2);
        }
    }
    s.finish().await;
}

async fn limits_out_of_bounds_and_foreign_cursors_are_400(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 3).await;
    for view in ["/views/orders", "/views/stock"] {
        for bad in ["0", "1001", "-1", "ten", ""] {
            let r = s.get(&format!("{view}?limit={bad}")).await;
            let p = r.problem(400, "invalid-parameter");
            assert!(
                p["detail"].as_str().unwrap().contains("limit"),
                "{view} limit={bad}: {p}"
            );
        }
        for good in ["1", "1000"] {
            let r = s.get(&format!("{view}?limit={good}")).await;
            assert_eq!(r.status, 200, "{view} limit={good}: {}", r.text);
        }
    }
    let r = s.get("/views/stock?low=5&after=tea").await;
    let p = r.problem(400, "invalid-parameter");
    assert!(p["detail"].as_str().unwrap().contains("available"), "{p}");
    let r = s.get("/views/stock?low=5&after=x:tea").await;
    r.problem(400, "invalid-parameter");
    // Bad input is refused before waiting for min_position.
    let r = s
        .get(&format!("/views/orders?limit=0&min_position={}", s.head().await + 100))
        .await;
    r.problem(400, "invalid-parameter");
    let r = s.get("/views/stock?low=5&after=3:tea").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["items"], json!([]), "tea (3 available) comes before 3:tea");
    s.finish().await;
}

async fn the_openapi_document_describes_paging(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let doc = s.get("/openapi.json").await.json();
    for (path, view) in [("/views/orders", "OrdersView"), ("/views/stock", "StockLevelsView")] {
        let op = &doc["paths"][path]["get"];
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in ["limit", "after", "min_position"] {
            assert!(params.contains(&name), "{path} lacks {name}: {params:?}");
        }
        assert!(op["responses"]["400"].is_object(), "{path}: {}", op["responses"]);
        let schema = &doc["components"]["schemas"][view];
        assert!(schema["properties"]["next"].is_object(), "{view}: {schema}");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(!required.contains(&"next"), "next is absent on the last page");
    }
    s.finish().await;
}

on_both_backends!(
    pages_of_orders_follow_next_through_every_order_and_every_filter,
    a_walk_over_more_items_than_the_default_page_sees_each_once,
    limits_out_of_bounds_and_foreign_cursors_are_400,
    the_openapi_document_describes_paging,
);
