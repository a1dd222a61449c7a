//! `POST /docs/{collection}/{id}/erase`: a document's erasure. Afterwards
//! it reads as not found, can never be written again, the unique values it
//! ever held are free for other documents, it leaves the listing, and a
//! scavenge erases its bodies from every file of the data directory; it
//! needs an admin token when tokens are configured.

mod common;

use std::time::{Duration, Instant};
use strata_testkit::files_holding;

use common::{Backend, Data, TestServer, assert_documented};
use serde_json::json;
use strata_http::{Config, Scope};

/// Written in the erased document's body and its unique values.
const MARKER: &str = "ERASE-DOC-5c1e08aa-personal";

async fn users(s: &TestServer) {
    let r = s
        .collection(
            "users",
            json!({"unique": [{"field": "email", "case_insensitive": true}]}),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
}

async fn an_erased_document_is_gone_and_frees_its_unique_values(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    users(&s).await;
    let put = |id: &'static str, email: &'static str| {
        let s = &s;
        async move {
            let r = s
                .put(&format!("/docs/users/{id}"), json!({"email": email, "name": id}), &[])
                .await;
            assert!(r.status == 200 || r.status == 201, "{id}: {}", r.text);
            r
        }
    };
    // u1 held two addresses over its life; u2 takes the first after u1
    // gave it up, so that value's stream holds u1's events before u2's claim.
    put("u1", "first@example.com").await;
    let changed = s
        .merge_patch("/docs/users/u1", json!({"email": "second@example.com"}), &[])
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    put("u2", "FIRST@example.com").await;
    s.put("/docs/users/u3", json!({"email": "second@example.com"}), &[])
        .await
        .problem(409, "unique-violation");

    s.post_with("/docs/users/u1/erase", json!(null), &[("If-Match", "\"1\"")])
        .await
        .problem(409, "wrong-expected-version");
    s.post("/docs/users/nobody/erase", json!(null))
        .await
        .problem(404, "not-found");
    s.post("/docs/nothing/u1/erase", json!(null))
        .await
        .problem(404, "not-found");
    assert_eq!(
        s.get("/docs/users/u1").await.status,
        200,
        "a refused erasure changed nothing"
    );

    let erased = s
        .post_with(
            "/docs/users/u1/erase",
            json!(null),
            &[("If-Match", "\"2\""), ("Strata-Actor", "support")],
        )
        .await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    let body = erased.json();
    assert_eq!(
        (
            body["erased"].as_bool(),
            body["_version"].as_u64(),
            body["unique_values_cleared"].as_u64()
        ),
        (Some(true), Some(3), Some(2)),
        "{body}"
    );
    let position = erased.header("strata-position").unwrap().to_string();
    assert_eq!(body["position"].to_string(), position);

    s.get("/docs/users/u1").await.problem(404, "not-found");
    s.get("/docs/users/u1/history").await.problem(404, "not-found");
    s.get("/docs/users/u1?version=1").await.problem(404, "not-found");
    let listed = s.get(&format!("/docs/users?min_position={position}")).await.json();
    let ids: Vec<_> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["u2"], "{listed}");
    // Never again under that id; erasing twice says it is gone.
    s.put("/docs/users/u1", json!({"email": "x@example.com"}), &[])
        .await
        .problem(410, "stream-deleted");
    s.post("/docs/users/u1/erase", json!(null))
        .await
        .problem(410, "stream-deleted");
    // The value it held last is free; the one another holds stays held.
    put("u3", "Second@Example.com").await;
    s.put("/docs/users/u4", json!({"email": "first@example.com"}), &[])
        .await
        .problem(409, "unique-violation");
    // A deleted document is erased too (its history is still readable
    // until then), and a free value whose stream was cleared is taken by
    // two writers in turn as any new value is.
    let deleted = s.delete("/docs/users/u2", &[]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let erased = s.post("/docs/users/u2/erase", json!(null)).await;
    assert_eq!(
        (erased.status, erased.json()["unique_values_cleared"].as_u64()),
        (200, Some(1)),
        "{}",
        erased.text
    );
    put("u4", "first@example.com").await;
    s.put("/docs/users/u5", json!({"email": "FIRST@example.com"}), &[])
        .await
        .problem(409, "unique-violation");
    assert_documented(&s).await;
    s.finish().await;
}

async fn an_erasure_needs_an_admin_token(backend: Backend) {
    let data = Data::new(backend);
    let write = data.create_token("app", Scope::Write).await;
    let admin = data.create_token("ops", Scope::Admin).await;
    let s = TestServer::on(&data, Config::default()).await;
    let bearer = |secret: &str| format!("Bearer {secret}");
    let w = bearer(&write);
    let r = s
        .req(
            "PUT",
            "/collections/users",
            Some(("application/json", json!({"unique": []}).to_string())),
            &[("authorization", &w)],
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let r = s
        .req(
            "PUT",
            "/docs/users/u1",
            Some(("application/json", json!({"name": "ada"}).to_string())),
            &[("authorization", &w)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let denied = s
        .post_with("/docs/users/u1/erase", json!(null), &[("authorization", &w)])
        .await;
    let p = denied.problem(403, "insufficient-scope");
    assert_eq!(p["needed_scope"], "admin");
    let erased = s
        .post_with(
            "/docs/users/u1/erase",
            json!(null),
            &[("authorization", &bearer(&admin))],
        )
        .await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    s.server.shutdown().await.expect("shutdown");
}

on_both_backends!(
    an_erased_document_is_gone_and_frees_its_unique_values,
    an_erasure_needs_an_admin_token,
);

/// Polls `/metrics` until a scavenge finished (a guard of a minute against
/// a hang, not a timing assertion).
async fn scavenged(s: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = s.get("/metrics").await.text;
        if text.contains("strata_scavenges_finished_total{outcome=\"ok\"} 1") {
            return;
        }
        assert!(!text.contains("outcome=\"failed\""), "{text}");
        assert!(
            Instant::now() < deadline,
            "no scavenge finished within a minute:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn after_an_erasure_and_a_scavenge_no_file_holds_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), Config::default()).await;
    users(&s).await;
    let email = format!("{MARKER}@example.com");
    for (i, body) in [
        json!({"email": email, "note": format!("{MARKER} v1")}),
        json!({"email": email, "note": format!("{MARKER} v2")}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = s.put("/docs/users/p1", body, &[]).await;
        assert_eq!(r.status, if i == 0 { 201 } else { 200 }, "{}", r.text);
    }
    let kept = s.put("/docs/users/k1", json!({"email": "kept@example.com"}), &[]).await;
    assert_eq!(kept.status, 201, "{}", kept.text);
    assert!(
        !files_holding(dir.path(), MARKER.as_bytes()).is_empty(),
        "on disk before"
    );

    let erased = s
        .post_with("/docs/users/p1/erase", json!(null), &[("If-Match", "\"2\"")])
        .await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    let started = s.post("/admin/scavenge", json!(null)).await;
    assert_eq!(started.status, 202, "{}", started.text);
    scavenged(&s).await;
    assert_eq!(s.get("/docs/users/k1").await.json()["email"], "kept@example.com");
    // The freed address can be used again after the scavenge.
    let again = s.put("/docs/users/p2", json!({"email": email}), &[]).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let r = s.delete("/docs/users/p2", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.post("/docs/users/p2/erase", json!(null)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.post("/admin/scavenge", json!(null)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.finish().await;
    assert_eq!(
        files_holding(dir.path(), MARKER.as_bytes()),
        Vec::<String>::new(),
        "the marker is in these files after the scavenge"
    );
}
