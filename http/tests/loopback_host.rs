//! DNS rebinding: a service open on a loopback address (no tokens)
//! answers only requests naming a loopback host (`localhost`, 127.0.0.0/8,
//! `[::1]`, any port); a page of another site pointed at 127.0.0.1 names
//! its own and is refused with 421 before anything runs. A guarded service
//! (tokens) checks the token instead, whatever the Host. A request with an
//! absolute-form target (`GET http://host/path`) is judged by the host of
//! its target, which replaces the Host header (RFC 9112 §3.2.2).

mod common;

use common::{Backend, Data, Resp, TestServer};
use serde_json::json;
use strata_http::{Config, Scope};

async fn with_host(s: &TestServer, method: reqwest::Method, path: &str, host: &str, auth: Option<&str>) -> Resp {
    let mut req = s
        .http
        .request(method.clone(), format!("{}{path}", s.url))
        .header("host", host);
    if method == reqwest::Method::POST {
        req = req.json(&json!([{"event_id": uuid::Uuid::new_v4(), "event_type": "Note", "data": {}}]));
    }
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    s.send(req).await
}

async fn an_open_loopback_service_answers_only_loopback_hosts(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let port = s.url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.2".to_string(),
        "LOCALHOST".to_string(),
    ] {
        let r = with_host(&s, reqwest::Method::GET, "/streams/note-1", &host, None).await;
        assert_eq!(r.status, 200, "{host}: {}", r.text);
    }
    let ok = with_host(
        &s,
        reqwest::Method::POST,
        "/streams/note-1",
        &format!("localhost:{port}"),
        None,
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        with_host(&s, reqwest::Method::GET, "/healthz", &host, None)
            .await
            .problem(421, "misdirected-request");
        with_host(&s, reqwest::Method::POST, "/streams/note-1", &host, None)
            .await
            .problem(421, "misdirected-request");
    }
    let page = s.get("/streams/note-1").await.json();
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        1,
        "a refused request wrote nothing: {page}"
    );
    s.finish().await;
}

/// Sends `GET {target}` with `Host: {host}` on a connection of its own
/// (reqwest sends only origin-form to a server); the status code.
async fn raw_get(s: &TestServer, target: &str, host: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3));
    status
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

async fn an_absolute_form_target_names_the_host(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let port = s.url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    // The target's authority is judged, the Host header ignored.
    for (target, host, status) in [
        (
            format!("http://evil.example:{port}/healthz"),
            format!("localhost:{port}"),
            421,
        ),
        (
            "http://evil.example/healthz".to_string(),
            format!("127.0.0.1:{port}"),
            421,
        ),
        (
            "http://localhost@evil.example/healthz".to_string(),
            format!("localhost:{port}"),
            421,
        ),
        (
            format!("http://localhost:{port}/healthz"),
            "evil.example".to_string(),
            200,
        ),
        (
            format!("http://127.0.0.1:{port}/healthz"),
            "evil.example".to_string(),
            200,
        ),
        (format!("http://[::1]:{port}/healthz"), "evil.example".to_string(), 200),
        (
            format!("http://user@localhost:{port}/healthz"),
            "evil.example".to_string(),
            200,
        ),
        // Origin-form: the Host header.
        ("/healthz".to_string(), format!("localhost:{port}"), 200),
        ("/healthz".to_string(), "evil.example".to_string(), 421),
    ] {
        assert_eq!(
            raw_get(&s, &target, &host).await,
            status,
            "GET {target} with Host: {host}"
        );
    }
    s.finish().await;
}

async fn a_guarded_service_checks_the_token_not_the_host(backend: Backend) {
    let data = Data::new(backend);
    let auth = format!("Bearer {}", data.create_token("app", Scope::Write).await);
    let s = TestServer::on(&data, Config::default()).await;
    let r = with_host(
        &s,
        reqwest::Method::POST,
        "/streams/note-1",
        "strata.internal:443",
        Some(&auth),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    with_host(&s, reqwest::Method::GET, "/streams/note-1", "strata.internal", None)
        .await
        .problem(401, "unauthorized");
    s.server.shutdown().await.expect("shutdown");
}

on_both_backends!(
    an_open_loopback_service_answers_only_loopback_hosts,
    a_guarded_service_checks_the_token_not_the_host,
    an_absolute_form_target_names_the_host,
);
