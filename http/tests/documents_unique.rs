//! Unique values over HTTP under concurrency, Idempotency-Key on PUT,
//! PATCH and DELETE, and a restart that keeps collections, documents,
//! unique values and idempotency records.

mod common;

use std::sync::Arc;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::Config;

// Several worker threads (`workers = 4` below), so the 32 requests are
// handled in parallel (the race at the append itself is forced deterministically in the domain's
// tests: strata-aggregates, `writers_that_race_at_the_append_claim_a_value_once`).
async fn of_32_concurrent_writers_of_one_value_exactly_one_wins(backend: Backend) {
    let data = Data::new(backend);
    let s = Arc::new(TestServer::on(&data, Config::default()).await);
    s.collection(
        "users",
        json!({"unique": [{"field": "email", "case_insensitive": true}]}),
    )
    .await;
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // The same address, spelled differently by half of them.
                let email = if i % 2 == 0 {
                    "Race@Example.com"
                } else {
                    "race@example.com"
                };
                let r = s
                    .put(&format!("/docs/users/u{i}"), json!({"email": email, "i": i}), &[])
                    .await;
                (i, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = Vec::new();
    for w in writers {
        let (i, r) = w.await.unwrap();
        if r.status == 201 {
            winners.push(format!("u{i}"));
        } else {
            let p = r.problem(409, "unique-violation");
            refused.push(p["holder"].as_str().unwrap().to_string());
            assert_eq!(p["field"], "/email");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    assert_eq!(refused.len(), 31);
    assert!(refused.iter().all(|h| *h == winners[0]), "every other names the winner");
    for i in 0..32 {
        let r = s.get(&format!("/docs/users/u{i}")).await;
        assert_eq!(
            r.status == 200,
            winners[0] == format!("u{i}"),
            "only the winner was written"
        );
    }
    // Changing the field frees the value; so does a delete.
    let winner = format!("/docs/users/{}", winners[0]);
    let r = s.merge_patch(&winner, json!({"email": "other@example.com"}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.put("/docs/users/next", json!({"email": "RACE@example.com"}), &[])
            .await
            .status,
        201
    );
    s.put("/docs/users/late", json!({"email": "other@example.com"}), &[])
        .await
        .problem(409, "unique-violation");
    assert_eq!(s.delete(&winner, &[]).await.status, 200);
    assert_eq!(
        s.put("/docs/users/late", json!({"email": "other@example.com"}), &[])
            .await
            .status,
        201
    );
    Arc::into_inner(s).unwrap().finish().await;
}

async fn idempotency_keys_on_put_patch_and_delete_replay_the_first_answer(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.collection("items", json!({})).await;
    let doc = "/docs/items/1";
    let put = s.put(doc, json!({"n": 1}), &[("Idempotency-Key", "put-1")]).await;
    assert_eq!(put.status, 201);
    let again = s.put(doc, json!({"n": 1}), &[("Idempotency-Key", "put-1")]).await;
    assert_eq!(
        (again.status, again.header("idempotency-replayed")),
        (201, Some("true"))
    );
    assert_eq!(again.text, put.text);
    s.put(doc, json!({"n": 2}), &[("Idempotency-Key", "put-1")])
        .await
        .problem(422, "idempotency-key-reused");
    // The headers only documents read are part of the request: another actor is another request.
    s.put(
        doc,
        json!({"n": 1}),
        &[("Idempotency-Key", "put-1"), ("Strata-Actor", "x")],
    )
    .await
    .problem(422, "idempotency-key-reused");

    let patch = [("Idempotency-Key", "patch-1"), ("If-Match", "\"1\"")];
    assert_eq!(s.merge_patch(doc, json!({"n": 5}), &patch).await.status, 200);
    let again = s.merge_patch(doc, json!({"n": 5}), &patch).await;
    assert_eq!(
        (again.status, again.header("idempotency-replayed")),
        (200, Some("true"))
    );
    assert_eq!(again.json()["_version"], 2, "applied once");

    // A stale write's 409 is remembered too (it depended on the state).
    let stale = [("Idempotency-Key", "stale-1"), ("If-Match", "\"1\"")];
    s.merge_patch(doc, json!({"n": 6}), &stale)
        .await
        .problem(409, "wrong-expected-version");
    let again = s.merge_patch(doc, json!({"n": 6}), &stale).await;
    assert_eq!(
        (again.status, again.header("idempotency-replayed")),
        (409, Some("true"))
    );

    let delete = [("Idempotency-Key", "delete-1")];
    assert_eq!(s.delete(doc, &delete).await.status, 200);
    let again = s.delete(doc, &delete).await;
    assert_eq!(
        (again.status, again.header("idempotency-replayed")),
        (200, Some("true")),
        "a retried delete is answered as the first, not 404"
    );
    assert_eq!(
        s.get(&format!("{doc}/history")).await.json()["changes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    s.finish().await;
}

async fn a_restart_keeps_collections_documents_unique_values_and_keys(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.collection("users", json!({"unique": ["email"], "require_precondition": true}))
        .await;
    let created = s
        .put(
            "/docs/users/1",
            json!({"email": "a@x"}),
            &[("If-None-Match", "*"), ("Idempotency-Key", "k-1")],
        )
        .await;
    assert_eq!(created.status, 201);
    let patched = s
        .merge_patch(
            "/docs/users/1",
            json!({"name": "Ada"}),
            &[("If-Match", "\"1\""), ("Idempotency-Key", "k-2")],
        )
        .await;
    assert_eq!(patched.status, 200);
    s.finish().await;

    let s = TestServer::on(&data, Config::default()).await;
    let c = s.get("/collections/users").await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(
        c.json()["unique"],
        json!([{"field": "/email", "case_insensitive": false}])
    );
    s.put("/docs/users/2", json!({"email": "b@x"}), &[])
        .await
        .problem(428, "precondition-required");
    assert_eq!(
        s.get("/docs/users/1").await.json(),
        json!({"email": "a@x", "name": "Ada", "_version": 2})
    );
    s.put("/docs/users/2", json!({"email": "a@x"}), &[("If-None-Match", "*")])
        .await
        .problem(409, "unique-violation");
    let replay = s
        .merge_patch(
            "/docs/users/1",
            json!({"name": "Ada"}),
            &[("If-Match", "\"1\""), ("Idempotency-Key", "k-2")],
        )
        .await;
    assert_eq!(
        (replay.status, replay.header("idempotency-replayed")),
        (200, Some("true"))
    );
    assert_eq!(replay.text, patched.text);
    let replay = s
        .put(
            "/docs/users/1",
            json!({"email": "a@x"}),
            &[("If-None-Match", "*"), ("Idempotency-Key", "k-1")],
        )
        .await;
    assert_eq!(
        (replay.status, replay.header("idempotency-replayed")),
        (201, Some("true"))
    );
    s.finish().await;
}

on_both_backends!(
    workers = 4;
    of_32_concurrent_writers_of_one_value_exactly_one_wins,
    idempotency_keys_on_put_patch_and_delete_replay_the_first_answer,
    a_restart_keeps_collections_documents_unique_values_and_keys,
);
