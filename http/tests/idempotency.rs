//! Idempotency-Key end to end: a completed key replays the first response,
//! a key in flight is 409, a key reused for another request is 422, keys
//! are validated, and a retry after a restart is answered from the record.

mod common;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::Config;

async fn a_retry_after_completion_replays_the_first_response(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 0).await;
    let key = [("Idempotency-Key", "receive-7f3a")];
    let first = s.post_with("/stock/tea/receive", json!({"quantity": 4}), &key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("idempotency-replayed"), None);
    let head = s.head().await;

    let again = s.post_with("/stock/tea/receive", json!({"quantity": 4}), &key).await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.text, first.text, "the same body");
    for h in ["etag", "strata-position", "content-type"] {
        assert_eq!(again.header(h), first.header(h), "{h}");
    }
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(s.head().await, head, "nothing appended by the retry");
    assert_eq!(s.get("/stock/tea").await.json()["on_hand"], 4, "received once");

    // A create without an id: the retry names the same order, not a second one.
    let order = json!({"customer": "ada", "lines": [{"sku": "tea", "quantity": 1, "unit_price_cents": 10}]});
    let key = [("Idempotency-Key", "\"place-1\"")];
    let placed = s.post_with("/orders", order.clone(), &key).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    let replayed = s.post_with("/orders", order, &key).await;
    assert_eq!(
        (replayed.status, replayed.header("location")),
        (201, placed.header("location"))
    );
    let view = s
        .get(&format!(
            "/views/orders?customer=ada&min_position={}",
            placed.header("strata-position").unwrap()
        ))
        .await;
    assert_eq!(view.json()["orders"].as_array().unwrap().len(), 1, "one order placed");

    // Refusals are remembered too: the same stale request gets the same 409.
    let stale = [("Idempotency-Key", "stale-1"), ("If-Match", "\"1\"")];
    let refused = s.post_with("/stock/tea/receive", json!({"quantity": 1}), &stale).await;
    assert_eq!(refused.status, 409);
    let refused_again = s.post_with("/stock/tea/receive", json!({"quantity": 1}), &stale).await;
    assert_eq!((refused_again.status, refused_again.text), (409, refused.text));

    let metrics = s.get("/metrics").await.text;
    assert!(
        metrics.contains("strata_http_idempotent_replays_total{route=\"/stock/{sku}/receive\"} 2"),
        "{metrics}"
    );
    s.finish().await;
}

async fn a_key_reused_for_another_request_is_422_and_invalid_keys_are_400(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 0).await;
    let key = [("Idempotency-Key", "k-1")];
    assert_eq!(
        s.post_with("/stock/tea/receive", json!({"quantity": 1}), &key)
            .await
            .status,
        200
    );
    let head = s.head().await;
    // Another body, another path, another precondition: each is another request.
    s.post_with("/stock/tea/receive", json!({"quantity": 2}), &key)
        .await
        .problem(422, "idempotency-key-reused");
    s.post_with("/stock/tea/adjust", json!({"counted": 1}), &key)
        .await
        .problem(422, "idempotency-key-reused");
    s.post_with(
        "/stock/tea/receive",
        json!({"quantity": 1}),
        &[("Idempotency-Key", "k-1"), ("If-Match", "\"2\"")],
    )
    .await
    .problem(422, "idempotency-key-reused");
    for bad in ["", "has space", "quote\"inside", &"x".repeat(256), "\u{e9}t\u{e9}"] {
        let r = s
            .send(
                s.http
                    .post(format!("{}/stock/tea/receive", s.url))
                    .header("content-type", "application/json")
                    .header(
                        "idempotency-key",
                        reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
                    )
                    .body("{\"quantity\":1}"),
            )
            .await;
        r.problem(400, "invalid-idempotency-key");
    }
    assert_eq!(s.head().await, head, "none of them wrote");
    s.finish().await;
}

async fn a_key_in_flight_is_409_and_the_request_runs_once(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 0).await;
    // Identical requests sent at once: one runs, the others find it in
    // flight (409) or, once it completed, get its response replayed. Rounds
    // repeat (bounded) until one shows the in-flight answer.
    let mut in_flight_seen = false;
    let mut applied = 0;
    for round in 0..40 {
        let key = format!("race-{round}");
        let headers = [("Idempotency-Key", key.as_str())];
        let sends = (0..8).map(|_| s.post_with("/stock/tea/receive", json!({"quantity": 1}), &headers));
        let answers = futures::future::join_all(sends).await;
        let ran: Vec<_> = answers
            .iter()
            .filter(|r| r.status == 200 && r.header("idempotency-replayed").is_none())
            .collect();
        assert_eq!(ran.len(), 1, "exactly one of them ran");
        applied += 1;
        for r in &answers {
            match r.status {
                200 => assert_eq!(r.text, ran[0].text, "a replay is the first response"),
                409 => {
                    let p = r.problem(409, "idempotency-key-in-flight");
                    assert_eq!(p["id"], key);
                    assert_eq!(r.header("retry-after"), Some("1"));
                    in_flight_seen = true;
                }
                other => panic!("unexpected {other}: {}", r.text),
            }
        }
        if in_flight_seen {
            break;
        }
    }
    assert!(in_flight_seen, "no round showed a key in flight");
    assert_eq!(
        s.get("/stock/tea").await.json()["on_hand"],
        applied,
        "each key applied once"
    );
    s.finish().await;
}

async fn a_retry_after_a_restart_is_answered_from_the_record(backend: Backend) {
    let data = Data::new(backend);
    let key = [("Idempotency-Key", "survives-restart")];
    let (first, head) = {
        let s = TestServer::on(&data, Config::default()).await;
        s.stock_item("tea", 0).await;
        let first = s.post_with("/stock/tea/receive", json!({"quantity": 3}), &key).await;
        assert_eq!(first.status, 200);
        let head = s.head().await;
        s.finish().await; // closes the store
        (first, head)
    };
    let s = TestServer::on(&data, Config::default()).await;
    let retry = s.post_with("/stock/tea/receive", json!({"quantity": 3}), &key).await;
    assert_eq!((retry.status, &retry.text), (200, &first.text));
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(retry.header("idempotency-replayed"), Some("true"));
    assert_eq!(s.head().await, head, "the retry wrote nothing");
    assert_eq!(s.get("/stock/tea").await.json()["on_hand"], 3);
    // The key still refuses another payload after the restart.
    s.post_with("/stock/tea/receive", json!({"quantity": 4}), &key)
        .await
        .problem(422, "idempotency-key-reused");
    s.finish().await;
}

async fn a_refused_malformed_request_does_not_hold_its_key(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 0).await;
    let url = format!("{}/stock/tea/receive", s.url);
    let send = |content_type: &'static str| {
        s.http
            .post(&url)
            .header("content-type", content_type)
            .header("idempotency-key", "fix-the-header")
            .body(r#"{"quantity":3}"#)
    };
    // Wrong content type: 415, nothing written, nothing remembered.
    let wrong = s.send(send("text/plain")).await;
    wrong.problem(415, "unsupported-media-type");
    // The corrected request with the same key runs.
    let fixed = s.send(send("application/json")).await;
    assert_eq!(fixed.status, 200, "{}", fixed.text);
    assert_eq!(fixed.header("idempotency-replayed"), None);
    assert_eq!(s.get("/stock/tea").await.json()["on_hand"], 3);
    // And from now on it is remembered.
    let again = s.send(send("application/json")).await;
    assert_eq!(
        (again.status, again.header("idempotency-replayed")),
        (200, Some("true"))
    );
    assert_eq!(s.get("/stock/tea").await.json()["on_hand"], 3, "received once");
    s.finish().await;
}

on_both_backends!(
    a_retry_after_completion_replays_the_first_response,
    a_key_reused_for_another_request_is_422_and_invalid_keys_are_400,
    a_key_in_flight_is_409_and_the_request_runs_once,
    a_retry_after_a_restart_is_answered_from_the_record,
    a_refused_malformed_request_does_not_hold_its_key,
);
