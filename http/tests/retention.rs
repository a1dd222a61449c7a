//! The life of streams over HTTP: `DELETE /streams/{stream}` (soft and
//! hard, with If-Match), `GET`/`PUT /streams/{stream}/metadata` with their
//! own ETag, and the erasure of an order through `DELETE /orders/{id}`;
//! every call checked against the OpenAPI document.

mod common;

use common::{Backend, Data, TestServer, assert_documented};
use serde_json::json;
use strata_http::Config;

async fn append(s: &TestServer, stream: &str, n: usize) -> String {
    let events: Vec<_> = (0..n)
        .map(|i| json!({"event_id": uuid::Uuid::new_v4(), "event_type": "Reading", "data": {"i": i}}))
        .collect();
    let r = s.post(&format!("/streams/{stream}"), json!(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.etag().to_string()
}

async fn streams_are_deleted_with_if_match(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let etag = append(&s, "sensor-1", 3).await;
    assert_eq!(etag, "\"3\"");
    // A delete decided on a stale version is refused with what changed.
    let stale = s.delete("/streams/sensor-1", &[("If-Match", "\"2\"")]).await;
    let p = stale.problem(409, "wrong-expected-version");
    assert_eq!(p["current_version"], 3);
    assert_eq!(s.get("/streams/sensor-1").await.json()["version"], 3);

    let deleted = s.delete("/streams/sensor-1", &[("If-Match", "\"3\"")]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let body = deleted.json();
    assert_eq!(
        (body["mode"].as_str(), body["metadata_version"].as_u64()),
        (Some("soft"), Some(1))
    );
    let page = s.get("/streams/sensor-1").await;
    assert_eq!(
        (page.etag(), page.json()["events"].as_array().unwrap().len()),
        ("\"0\"", 0)
    );
    // Written again, it goes on from its old version.
    let etag = append(&s, "sensor-1", 1).await;
    assert_eq!(etag, "\"4\"");
    let events = s.get("/streams/sensor-1").await.json()["events"].clone();
    assert_eq!(
        (events.as_array().unwrap().len(), events[0]["version"].as_u64()),
        (1, Some(4))
    );

    // Hard: never again.
    let hard = s.delete("/streams/sensor-1?hard=true", &[("If-Match", "\"4\"")]).await;
    assert_eq!((hard.status, hard.json()["mode"].as_str()), (200, Some("hard")));
    let refused = s
        .post(
            "/streams/sensor-1",
            json!([{"event_id": uuid::Uuid::new_v4(), "event_type": "Reading", "data": {}}]),
        )
        .await;
    refused.problem(410, "stream-deleted");
    s.delete("/streams/sensor-1", &[]).await.problem(410, "stream-deleted");
    // Domain streams are erased through their own routes.
    s.delete("/streams/order-1", &[]).await.problem(403, "reserved-stream");
    assert_documented(&s).await;
    s.finish().await;
}

async fn metadata_has_its_own_etag(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    append(&s, "sensor-2", 5).await;
    let m = s.get("/streams/sensor-2/metadata").await;
    assert_eq!((m.status, m.etag()), (200, "\"0\""));
    assert_eq!(
        (m.json()["version"].as_u64(), m.json()["max_count"].is_null()),
        (Some(5), true)
    );
    let set = s
        .put(
            "/streams/sensor-2/metadata",
            json!({"max_count": 2}),
            &[("If-Match", "\"0\"")],
        )
        .await;
    assert_eq!((set.status, set.etag()), (200, "\"1\""), "{}", set.text);
    let events = s.get("/streams/sensor-2").await.json()["events"].clone();
    let versions: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![4, 5], "max_count keeps the newest two");
    // A second administrator who read metadata version 0 is refused.
    let stale = s
        .put(
            "/streams/sensor-2/metadata",
            json!({"max_count": 4}),
            &[("If-Match", "\"0\"")],
        )
        .await;
    let p = stale.problem(409, "wrong-expected-version");
    assert_eq!(
        (p["current_version"].as_u64(), p["current"]["max_count"].as_u64()),
        (Some(1), Some(2))
    );
    let zero = s
        .put(
            "/streams/sensor-2/metadata",
            json!({"max_count": 0}),
            &[("If-Match", "\"1\"")],
        )
        .await;
    zero.problem(422, "validation-failed");
    let unknown = s
        .put(
            "/streams/sensor-2/metadata",
            json!({"max_cnt": 1}),
            &[("If-Match", "\"1\"")],
        )
        .await;
    unknown.problem(422, "invalid-body");
    assert_documented(&s).await;
    s.finish().await;
}

async fn an_order_is_erased_through_its_route(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 10).await;
    let placed = s
        .post(
            "/orders",
            json!({"order_id": "o-9", "customer": "ada", "lines": [{"sku": "tea", "quantity": 1, "unit_price_cents": 100}]}),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    s.delete("/orders/o-9", &[("If-Match", "\"7\"")])
        .await
        .problem(409, "wrong-expected-version");
    s.delete("/orders/nobody", &[]).await.problem(404, "not-found");
    let erased = s.delete("/orders/o-9", &[("If-Match", placed.etag())]).await;
    assert_eq!(
        (erased.status, erased.json()["mode"].as_str()),
        (200, Some("hard")),
        "{}",
        erased.text
    );
    let p = erased.header("strata-position").unwrap().to_string();
    s.get("/orders/o-9").await.problem(404, "not-found");
    let view = s.get(&format!("/views/orders?min_position={p}")).await.json();
    assert_eq!(
        view["orders"].as_array().unwrap().len(),
        0,
        "the erased order leaves the summary: {view}"
    );
    s.delete("/orders/o-9", &[]).await.problem(410, "stream-deleted");
    let again = s
        .post(
            "/orders",
            json!({"order_id": "o-9", "customer": "ada", "lines": [{"sku": "tea", "quantity": 1, "unit_price_cents": 100}]}),
        )
        .await;
    again.problem(410, "stream-deleted");
    assert_documented(&s).await;
    s.finish().await;
}

on_both_backends!(
    streams_are_deleted_with_if_match,
    metadata_has_its_own_etag,
    an_order_is_erased_through_its_route,
);
