//! Long-lived responses and revoked tokens: a live SSE stream opened with
//! a token ends once the running server has reloaded its keyring without
//! that token, and delivers nothing appended after; a stream whose token
//! stays valid goes on. A stream opened without a token while the server
//! was open ends once the first token is created.

mod common;

use std::time::Duration;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::{Config, Scope};

/// Appends one event with `auth` (none: `""`); its position.
async fn append(s: &TestServer, stream: &str, note: &str, auth: &str) -> u64 {
    let auth: &[(&str, &str)] = if auth.is_empty() {
        &[]
    } else {
        &[("authorization", auth)]
    };
    let r = s
        .post_with(
            &format!("/streams/{stream}"),
            json!([{"event_id": uuid::Uuid::new_v4(), "event_type": "Note", "data": {"note": note}}]),
            auth,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.header("strata-position").unwrap().parse().unwrap()
}

/// Reads `r` until the message with id `id`; the data of every message read.
async fn read_until(r: &mut reqwest::Response, parser: &mut strata_client::SseParser, id: u64) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let chunk = r.chunk().await.unwrap().expect("the stream ended early");
        for m in parser.feed(&chunk).unwrap() {
            seen.push(m.data);
            if m.id.as_deref() == Some(&id.to_string()) {
                return seen;
            }
        }
    }
}

async fn a_revoked_tokens_live_stream_ends(backend: Backend) {
    let data = Data::new(backend);
    let writer = format!("Bearer {}", data.create_token("writer", Scope::Write).await);
    let tail = format!("Bearer {}", data.create_token("tail", Scope::Read).await);
    let other = format!("Bearer {}", data.create_token("other", Scope::Read).await);
    let config = Config {
        token_refresh: Duration::from_millis(100),
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    let open = |auth: &str| {
        s.http
            .get(format!("{}/subscriptions/streams/note-1", s.url))
            .header("authorization", auth)
            .send()
    };
    let mut revoked = open(&tail).await.unwrap();
    let mut kept = open(&other).await.unwrap();
    assert_eq!((revoked.status().as_u16(), kept.status().as_u16()), (200, 200));
    let (mut p1, mut p2) = (Default::default(), Default::default());
    let first = append(&s, "note-1", "before", &writer).await;
    read_until(&mut revoked, &mut p1, first).await;
    read_until(&mut kept, &mut p2, first).await;

    data.revoke_token("tail").await;
    strata_testkit::until_async("the running server to drop the revoked token", || async {
        s.get_with("/views/orders", &[("authorization", &tail)]).await.status == 401
    })
    .await;
    let after = append(&s, "note-1", "AFTER-REVOCATION", &writer).await;

    // The stream of the revoked token ends (a minute guards against a
    // hang; no timing is asserted) without the event appended after.
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        let mut rest = Vec::new();
        while let Some(chunk) = revoked.chunk().await.expect("a clean end") {
            rest.extend(p1.feed(&chunk).unwrap());
        }
        rest
    })
    .await
    .expect("the revoked token's stream ended");
    assert!(
        rest.iter()
            .all(|m| m.id.as_deref() != Some(&after.to_string()) && !m.data.contains("AFTER-REVOCATION")),
        "delivered after the revocation: {rest:?}"
    );
    // The other token's stream goes on and gets it.
    let seen = read_until(&mut kept, &mut p2, after).await;
    assert!(seen.last().unwrap().contains("AFTER-REVOCATION"), "{seen:?}");
    drop(kept);
    s.server.shutdown().await.expect("shutdown");
}

async fn the_first_token_ends_anonymous_streams(backend: Backend) {
    let data = Data::new(backend);
    let config = Config {
        token_refresh: Duration::from_millis(100),
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    let mut anonymous = s
        .http
        .get(format!("{}/subscriptions/streams/note-1", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 200);
    let mut parser = Default::default();
    let first = append(&s, "note-1", "before", "").await;
    read_until(&mut anonymous, &mut parser, first).await;

    let writer = format!("Bearer {}", data.create_token("writer", Scope::Write).await);
    strata_testkit::until_async("the running server to find the first token", || async {
        s.get("/views/orders").await.status == 401
    })
    .await;
    let after = append(&s, "note-1", "AFTER-THE-FIRST-TOKEN", &writer).await;

    // The anonymous stream ends (a minute guards against a hang; no
    // timing is asserted) without the event appended after.
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        let mut rest = Vec::new();
        while let Some(chunk) = anonymous.chunk().await.expect("a clean end") {
            rest.extend(parser.feed(&chunk).unwrap());
        }
        rest
    })
    .await
    .expect("the anonymous stream ended");
    assert!(
        rest.iter()
            .all(|m| m.id.as_deref() != Some(&after.to_string()) && !m.data.contains("AFTER-THE-FIRST-TOKEN")),
        "delivered after the first token: {rest:?}"
    );
    s.server.shutdown().await.expect("shutdown");
}

on_both_backends!(
    a_revoked_tokens_live_stream_ends,
    the_first_token_ends_anonymous_streams
);
