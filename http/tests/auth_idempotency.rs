//! Idempotency-Key with tokens: a key is bound to the token that first
//! sent it. Its retries are replayed; the same key and request from
//! another token are refused (`idempotency-key-reused`), never answered
//! with the first token's response, and write nothing.

mod common;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::{Config, Scope};

async fn a_key_is_replayed_only_to_its_token(backend: Backend) {
    let data = Data::new(backend);
    let first = format!("Bearer {}", data.create_token("first", Scope::Write).await);
    let second = format!("Bearer {}", data.create_token("second", Scope::Write).await);
    let s = TestServer::on(&data, Config::default()).await;
    let body = json!([{"event_id": "5e0c1d2a-7b7e-4c2b-9a51-0d6f9f1f0a01", "event_type": "Note", "data": {"secret": "first's"}}]);
    let send = |auth: &str| {
        let auth = auth.to_string();
        let body = body.clone();
        let s = &s;
        async move {
            s.post_with(
                "/streams/note-1",
                body,
                &[("authorization", &auth), ("idempotency-key", "k-1")],
            )
            .await
        }
    };
    let made = send(&first).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let again = send(&first).await;
    assert_eq!(
        (again.status, again.header("idempotency-replayed")),
        (201, Some("true")),
        "{}",
        again.text
    );
    assert_eq!(again.text, made.text);
    let other = send(&second).await;
    let p = other.problem(422, "idempotency-key-reused");
    assert!(!other.text.contains("first's"), "{p}");
    let page = s.get_with("/streams/note-1", &[("authorization", &first)]).await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    s.server.shutdown().await.expect("shutdown");
}

on_both_backends!(a_key_is_replayed_only_to_its_token);
