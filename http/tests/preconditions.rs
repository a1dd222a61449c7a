//! The spec's story end to end: ETag on reads, If-Match on writes, a stale
//! write refused with a body that says what changed; If-Match `*`; 412 by
//! configuration; 428 when If-Match is required; 304 on If-None-Match.

mod common;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::{Config, ConflictStatus};

async fn a_stale_if_match_is_refused_with_what_changed_and_no_update_is_lost(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 0).await;

    // User 1 and user 2 both read the item at version 1.
    let user1 = s.get("/stock/tea").await;
    let user2 = s.get("/stock/tea").await;
    assert_eq!((user1.status, user1.etag()), (200, "\"1\""));
    assert_eq!(user2.etag(), "\"1\"");

    // User 2 writes first.
    let w2 = s
        .post_with(
            "/stock/tea/receive",
            json!({"quantity": 5}),
            &[("If-Match", user2.etag())],
        )
        .await;
    assert_eq!((w2.status, w2.etag()), (200, "\"2\""), "{}", w2.text);
    assert!(w2.header("strata-position").is_some());
    // What the resource's own routes can do now (reservations move only through orders).
    assert_eq!(w2.json()["allowed_commands"], json!(["receive", "adjust"]));

    // User 1's write, decided on version 1, is refused: 409 with the ETag of
    // the current version and a body saying what changed.
    let w1 = s
        .post_with(
            "/stock/tea/receive",
            json!({"quantity": 3}),
            &[("If-Match", user1.etag())],
        )
        .await;
    assert_eq!(w1.etag(), "\"2\"");
    let p = w1.problem(409, "wrong-expected-version");
    assert_eq!(p["instance"], "/stock/tea/receive");
    assert_eq!(p["expected_version"], 1);
    assert_eq!(p["current_version"], 2);
    assert_eq!(p["current"]["on_hand"], 5);
    assert_eq!(p["current"]["version"], 2);
    let since = p["events_since"].as_array().unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0]["event_type"], "StockReceived");
    assert_eq!(since[0]["data"]["quantity"], 5);
    assert_eq!(since[0]["version"], 2);
    assert_eq!(p["events_since_complete"], true);

    // Nothing was written by the stale request.
    assert_eq!(s.get("/stock/tea").await.json()["on_hand"], 5);

    // User 1 re-reads (or takes the ETag of the 409) and retries.
    let retry = s
        .post_with("/stock/tea/receive", json!({"quantity": 3}), &[("If-Match", w1.etag())])
        .await;
    assert_eq!((retry.status, retry.etag()), (200, "\"3\""));
    assert_eq!(retry.json()["on_hand"], 8, "both updates are there");

    // The same with the version in the body, as the spec's second form shows.
    let stale_body = s
        .post("/stock/tea/receive", json!({"quantity": 1, "expected_version": 2}))
        .await;
    assert_eq!(stale_body.problem(409, "wrong-expected-version")["current_version"], 3);

    s.finish().await;
}

async fn a_stale_order_write_shows_the_order_now_and_the_events_since(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 10).await;
    let placed = s
        .post(
            "/orders",
            json!({"order_id": "o-1", "customer": "ada", "lines": [{"sku": "tea", "quantity": 2, "unit_price_cents": 250}]}),
        )
        .await;
    assert_eq!((placed.status, placed.etag()), (201, "\"1\""));
    assert_eq!(placed.header("location"), Some("/orders/o-1"));
    let read = s.get("/orders/o-1").await;

    // Someone cancels it meanwhile.
    let cancel = s
        .post_with(
            "/orders/o-1/cancel",
            json!({"reason": "changed mind"}),
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);

    let pay = s
        .post_with(
            "/orders/o-1/pay",
            json!({"amount_cents": 500}),
            &[("If-Match", read.etag())],
        )
        .await;
    let p = pay.problem(409, "wrong-expected-version");
    assert_eq!(p["current"]["status"], "cancelled");
    assert_eq!(p["current"]["allowed_commands"], json!([]));
    assert_eq!(p["events_since"][0]["event_type"], "OrderCancelled");
    assert_eq!(p["events_since"][0]["data"]["reason"], "changed mind");

    // The decoded history is readable too.
    let history = s.get("/orders/o-1/events").await;
    assert_eq!(history.etag(), "\"2\"");
    let types: Vec<_> = history.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderCancelled"]);
    s.finish().await;
}

async fn conflicts_are_412_when_so_configured(backend: Backend) {
    let data = Data::new(backend);
    let config = Config {
        conflict_status: ConflictStatus::PreconditionFailed,
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    s.stock_item("tea", 1).await;
    let r = s
        .post_with("/stock/tea/receive", json!({"quantity": 1}), &[("If-Match", "\"1\"")])
        .await;
    assert_eq!(r.etag(), "\"2\"");
    assert_eq!(r.problem(412, "wrong-expected-version")["current_version"], 2);
    // State machine refusals stay 409: they are not failed preconditions.
    s.post(
        "/orders",
        json!({"order_id": "o", "customer": "c", "lines": [{"sku": "tea", "quantity": 1, "unit_price_cents": 1}]}),
    )
    .await;
    s.post("/orders/o/ship", json!({}))
        .await
        .problem(409, "invalid-transition");
    s.finish().await;
}

async fn if_match_star_means_the_resource_must_exist(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let event = |id: &str| json!([{"event_id": id, "event_type": "NoteAdded", "data": {"text": "hi"}}]);

    // A stream that does not exist fails If-Match: *, and nothing is written.
    let r = s
        .post_with(
            "/streams/notes-1",
            event("0190c5a0-0000-7000-8000-000000000001"),
            &[("If-Match", "*")],
        )
        .await;
    let p = r.problem(409, "wrong-expected-version");
    assert_eq!(
        (p["current_version"].as_u64(), p["expected_version"].as_str()),
        (Some(0), Some("*"))
    );
    assert_eq!(s.get("/streams/notes-1").await.etag(), "\"0\"");

    // Created with If-None-Match: *, then If-Match: * passes.
    let created = s
        .post_with(
            "/streams/notes-1",
            event("0190c5a0-0000-7000-8000-000000000002"),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!((created.status, created.etag()), (201, "\"1\""), "{}", created.text);
    let again = s
        .post_with(
            "/streams/notes-1",
            event("0190c5a0-0000-7000-8000-000000000003"),
            &[("If-None-Match", "*")],
        )
        .await;
    again.problem(409, "wrong-expected-version");
    let star = s
        .post_with(
            "/streams/notes-1",
            event("0190c5a0-0000-7000-8000-000000000004"),
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!((star.status, star.etag()), (201, "\"2\""));

    // On resources: a SKU that is not registered fails If-Match: *; a registered one passes.
    let missing = s
        .post_with("/stock/nope/receive", json!({"quantity": 1}), &[("If-Match", "*")])
        .await;
    missing.problem(409, "wrong-expected-version");
    s.stock_item("tea", 0).await;
    let ok = s
        .post_with("/stock/tea/receive", json!({"quantity": 1}), &[("If-Match", "*")])
        .await;
    assert_eq!((ok.status, ok.etag()), (200, "\"2\""));
    s.finish().await;
}

async fn writes_without_if_match_are_428_when_it_is_required(backend: Backend) {
    let data = Data::new(backend);
    let config = Config {
        require_if_match: true,
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    let head = s.head().await;
    // Creates are exempt: there is no version to match yet.
    assert_eq!(s.stock_item("tea", 0).await, 1);
    let r = s.post("/stock/tea/receive", json!({"quantity": 1})).await;
    r.problem(428, "precondition-required");
    let log = s
        .post(
            "/streams/notes",
            json!([{"event_id": "0190c5a0-0000-7000-8000-000000000001", "event_type": "T", "data": 1}]),
        )
        .await;
    log.problem(428, "precondition-required");
    // `*` and `any` name no version, so they do not satisfy it either.
    let star = s
        .post_with("/stock/tea/receive", json!({"quantity": 1}), &[("If-Match", "*")])
        .await;
    star.problem(428, "precondition-required");
    for any in ["any", "*", "exists"] {
        let log = s
            .post(
                &format!("/streams/notes?expected_version={any}"),
                json!([{"event_id": "0190c5a0-0000-7000-8000-000000000001", "event_type": "T", "data": 1}]),
            )
            .await;
        log.problem(428, "precondition-required");
    }
    assert_eq!(s.head().await, head + 1, "only the registration was written");

    // If-Match, or the version in the body, satisfies the requirement.
    let with_header = s
        .post_with("/stock/tea/receive", json!({"quantity": 1}), &[("If-Match", "\"1\"")])
        .await;
    assert_eq!(with_header.status, 200);
    let with_body = s
        .post("/stock/tea/receive", json!({"quantity": 1, "expected_version": 2}))
        .await;
    assert_eq!(with_body.status, 200);
    let log = s
        .post(
            "/streams/notes?expected_version=no-stream",
            json!([{"event_id": "0190c5a0-0000-7000-8000-000000000001", "event_type": "T", "data": 1}]),
        )
        .await;
    assert_eq!(log.status, 201, "{}", log.text);
    s.finish().await;
}

async fn if_none_match_with_the_current_etag_is_304(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 2).await;
    let r = s.get_with("/stock/tea", &[("If-None-Match", "\"2\"")]).await;
    assert_eq!((r.status, r.etag(), r.text.as_str()), (304, "\"2\"", ""));
    let r = s.get_with("/stock/tea", &[("If-None-Match", "\"1\"")]).await;
    assert_eq!(r.status, 200);
    s.finish().await;
}

on_both_backends!(
    a_stale_if_match_is_refused_with_what_changed_and_no_update_is_lost,
    a_stale_order_write_shows_the_order_now_and_the_events_since,
    conflicts_are_412_when_so_configured,
    if_match_star_means_the_resource_must_exist,
    writes_without_if_match_are_428_when_it_is_required,
    if_none_match_with_the_current_etag_is_304,
);
