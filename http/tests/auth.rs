//! Bearer tokens over real HTTP: every route of the OpenAPI document
//! (whose security requirements come from the scopes table) with no
//! token, a bogus one, and a token of each scope; a refused request
//! writes nothing and records no Idempotency-Key; a revoked token stops
//! working while the server runs; a non-loopback address without tokens
//! refuses to start; and no secret appears in any log line of the server
//! (every level, every target, captured in this process).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Backend, Data, Resp, TestServer};
use serde_json::Value;
use strata_http::{Config, HttpError, Scope, Server, TokenFile};
use tokio::net::TcpListener;

/// Every log line of this test binary, at every level.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
        buffer
    })
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asserts that no captured line holds `secret` (or its hex part alone).
#[track_caller]
fn assert_not_logged(secrets: &[&str]) {
    let log = String::from_utf8_lossy(&captured().lock().unwrap()).into_owned();
    assert!(log.contains("strata::access"), "the access log was captured");
    for secret in secrets {
        let hex = secret.trim_start_matches("strata_");
        assert!(!log.contains(hex), "a secret is in the log:\n{log}");
    }
}

/// The credentials a request is sent with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cred<'a> {
    None,
    Bogus,
    Token(Scope, &'a str),
}

/// A well-formed secret no server issued.
const BOGUS: &str = "strata_00000000000000000000000000000000000000000000000000000000000000aa";

/// The path of a route template, with sample values.
fn concrete(template: &str) -> String {
    template
        .replace("/problems/{name}", "/problems/not-found")
        .replace("{name}", "things")
        .replace("{collection}", "things")
        .replace("{id}", "o-1")
        .replace("{sku}", "tea")
        .replace("{stream}", "notes-1")
        .replace("{category}", "notes")
        .replace("{group}", "g1")
}

async fn call(s: &TestServer, method: &str, template: &str, cred: Cred<'_>, key: Option<&str>) -> Resp {
    let mut headers: Vec<(&str, String)> = Vec::new();
    match cred {
        Cred::None => {}
        Cred::Bogus => headers.push(("authorization", format!("Bearer {BOGUS}"))),
        Cred::Token(_, secret) => headers.push(("authorization", format!("Bearer {secret}"))),
    }
    if let Some(key) = key {
        headers.push(("idempotency-key", key.to_string()));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s
        .http
        .request(method.clone(), format!("{}{}", s.url, concrete(template)));
    for (k, v) in &headers {
        req = req.header(*k, v);
    }
    if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
        let content_type = if method == reqwest::Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        req = req.header("content-type", content_type).body("{}");
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    // The live routes stream until the client goes: their head says it all.
    let streaming = headers
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    let text = if streaming {
        String::new()
    } else {
        r.text().await.expect("body")
    };
    Resp { status, headers, text }
}

fn problem_type(r: &Resp) -> Option<String> {
    if r.header("content-type") != Some("application/problem+json") {
        return None;
    }
    r.json()["type"].as_str().map(str::to_string)
}

/// The (method, route, scope needed) of every operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, Option<Scope>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} has no security"));
            let scope = match &security[..] {
                [req] if req.as_object().unwrap().is_empty() => None,
                [req] => Some(match req["bearer"][0].as_str().unwrap() {
                    "read" => Scope::Read,
                    "write" => Scope::Write,
                    "admin" => Scope::Admin,
                    other => panic!("{other}"),
                }),
                _ => panic!("{method} {path}: {security:?}"),
            };
            out.push((method.to_uppercase(), path.clone(), scope));
        }
    }
    out
}

async fn every_route_with_each_scope(backend: Backend) {
    let _ = captured();
    let data = Data::new(backend);
    let read = data.create_token("reader", Scope::Read).await;
    let write = data.create_token("writer", Scope::Write).await;
    let admin = data.create_token("operator", Scope::Admin).await;
    let s = TestServer::on(&data, Config::default()).await;
    let doc = s.get("/openapi.json").await.json();
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{} operations", ops.len());

    // Refusals first: none of them may write anything.
    let creds = [
        Cred::None,
        Cred::Bogus,
        Cred::Token(Scope::Read, &read),
        Cred::Token(Scope::Write, &write),
        Cred::Token(Scope::Admin, &admin),
    ];
    let mut refused = 0;
    for (method, route, needed) in &ops {
        for cred in creds {
            let allowed = match (needed, cred) {
                (None, _) => true,
                (Some(_), Cred::None | Cred::Bogus) => false,
                (Some(needed), Cred::Token(scope, _)) => scope >= *needed,
            };
            if allowed {
                continue;
            }
            refused += 1;
            let key = format!("refused-{refused}");
            let r = call(&s, method, route, cred, Some(&key)).await;
            let what = format!("{method} {route} with {cred:?}");
            match cred {
                Cred::None | Cred::Bogus => {
                    let p = r.problem(401, "unauthorized");
                    let challenge = r
                        .header("www-authenticate")
                        .unwrap_or_else(|| panic!("{what}: no challenge"));
                    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
                    assert_eq!(
                        cred == Cred::Bogus,
                        challenge.contains("invalid_token"),
                        "{what}: {challenge}"
                    );
                    assert!(!p.to_string().contains(BOGUS), "{what}: the secret echoed");
                }
                Cred::Token(scope, _) => {
                    let p = r.problem(403, "insufficient-scope");
                    assert_eq!(p["scope"], scope.to_string(), "{what}");
                    assert_eq!(p["needed_scope"], needed.unwrap().to_string(), "{what}");
                    assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));
                }
            }
            let responses = &doc["paths"][route][method.to_lowercase()]["responses"];
            assert!(
                responses[r.status.to_string()].is_object(),
                "{what}: {} undocumented",
                r.status
            );
        }
    }
    assert!(refused > 80, "{refused} refusals");
    assert_eq!(s.head().await, 0, "a refused request wrote nothing");

    // A key first sent with a refused request was not recorded: the same
    // key with a token that may write runs the request.
    let denied = call(&s, "POST", "/stock", Cred::Token(Scope::Read, &read), Some("k1")).await;
    denied.problem(403, "insufficient-scope");
    let body = serde_json::json!({"sku": "tea", "name": "Tea"}).to_string();
    let created = s
        .send(
            s.http
                .post(format!("{}/stock", s.url))
                .header("authorization", format!("Bearer {write}"))
                .header("idempotency-key", "k1")
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("idempotency-replayed"), None);

    // Then every route with a token that may call it: never refused for it.
    for (method, route, needed) in &ops {
        for cred in creds {
            let allowed = match (needed, cred) {
                (None, _) => true,
                (Some(_), Cred::None | Cred::Bogus) => false,
                (Some(needed), Cred::Token(scope, _)) => scope >= *needed,
            };
            if !allowed {
                continue;
            }
            let r = call(&s, method, route, cred, None).await;
            let t = problem_type(&r);
            assert!(
                !matches!(
                    t.as_deref(),
                    Some("/problems/unauthorized" | "/problems/insufficient-scope")
                ),
                "{method} {route} with {cred:?}: {} {}",
                r.status,
                r.text
            );
        }
    }

    // Outside the routes a caller without a token learns nothing.
    let r = call(&s, "GET", "/no/such/route", Cred::None, None).await;
    r.problem(401, "unauthorized");
    let r = call(&s, "GET", "/no/such/route", Cred::Token(Scope::Read, &read), None).await;
    r.problem(404, "not-found");
    // A scheme other than Bearer, or two Authorization headers, are malformed.
    let basic = s.get_with("/orders/o-1", &[("authorization", "Basic dTpw")]).await;
    basic.problem(401, "unauthorized");
    let lower = s
        .get_with("/views/orders", &[("authorization", &format!("bearer {read}"))])
        .await;
    assert_eq!(lower.status, 200, "the scheme is case-insensitive: {}", lower.text);
    s.server.shutdown().await.expect("shutdown");
    assert_not_logged(&[&read, &write, &admin, BOGUS]);
    // The access log names the token a request was let in with.
    let log = String::from_utf8_lossy(&captured().lock().unwrap()).into_owned();
    assert!(
        log.lines().any(|l| l.contains("strata::access")
            && l.contains("path=/stock")
            && l.contains("status=201")
            && l.contains("token=writer")),
        "no access line names the token"
    );
}

async fn revoked_tokens_stop_working_while_serving(backend: Backend) {
    let _ = captured();
    let data = Data::new(backend);
    let admin = data.create_token("admin", Scope::Admin).await;
    let temp = data.create_token("temp", Scope::Read).await;
    let config = Config {
        token_refresh: Duration::from_millis(100),
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    let auth = |secret: &str| format!("Bearer {secret}");
    assert_eq!(
        s.get_with("/views/orders", &[("authorization", &auth(&temp))])
            .await
            .status,
        200
    );
    // Created while the server runs: accepted once reloaded.
    let late = data.create_token("late", Scope::Write).await;
    data.revoke_token("temp").await;
    strata_testkit::until_async(
        "the running server to take the new token and drop the revoked one",
        || async {
            let old = s.get_with("/views/orders", &[("authorization", &auth(&temp))]).await;
            let new = s.get_with("/views/orders", &[("authorization", &auth(&late))]).await;
            old.status == 401 && new.status == 200
        },
    )
    .await;
    // Revoking every token leaves the server closed, not open.
    data.revoke_token("admin").await;
    data.revoke_token("late").await;
    strata_testkit::until_async("the running server to drop the last token", || async {
        s.get_with("/views/orders", &[("authorization", &auth(&admin))])
            .await
            .status
            == 401
    })
    .await;
    s.get("/views/orders").await.problem(401, "unauthorized");
    s.server.shutdown().await.expect("shutdown");
    assert_not_logged(&[&admin, &temp, &late]);
}

/// A service that started open (loopback, no token) is guarded from the
/// reload after its first token is created, and stays guarded.
async fn the_first_token_created_while_serving_open_guards_the_service(backend: Backend) {
    let _ = captured();
    let data = Data::new(backend);
    let config = Config {
        token_refresh: Duration::from_millis(100),
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    assert_eq!(s.get("/views/orders").await.status, 200, "open at start");
    let first = data.create_token("first", Scope::Read).await;
    strata_testkit::until_async("the running server to require the new token", || async {
        s.get("/views/orders").await.status == 401
    })
    .await;
    let auth = format!("Bearer {first}");
    assert_eq!(
        s.get_with("/views/orders", &[("authorization", &auth)]).await.status,
        200
    );
    data.revoke_token("first").await;
    strata_testkit::until_async("the running server to drop the revoked token", || async {
        s.get_with("/views/orders", &[("authorization", &auth)]).await.status == 401
    })
    .await;
    s.get("/views/orders").await.problem(401, "unauthorized");
    s.server.shutdown().await.expect("shutdown");
    assert_not_logged(&[&first]);
}

on_both_backends!(
    every_route_with_each_scope,
    revoked_tokens_stop_working_while_serving,
    the_first_token_created_while_serving_open_guards_the_service
);

/// An address of this machine that is not loopback, if it has one.
fn non_loopback() -> Option<std::net::IpAddr> {
    // The address the machine would use to reach the world (no packet is sent).
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Serves `dir` on `addr`; when it starts, checks it answers and stops it.
async fn try_serve(dir: &std::path::Path, addr: std::net::SocketAddr, config: Config) -> Result<(), HttpError> {
    let store = strata_store::SegmentStore::open(dir).unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = Server::serve(store, listener, config).await?;
    let port = server.local_addr().port();
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let health = reqwest::get(format!("http://{host}:{port}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    server.shutdown().await.unwrap();
    Ok(())
}

#[tokio::test]
async fn a_non_loopback_address_without_tokens_refuses_to_start() {
    let _ = captured();
    let dir = tempfile::tempdir().unwrap();
    let mut addrs = vec!["0.0.0.0:0".parse::<std::net::SocketAddr>().unwrap()];
    addrs.extend(non_loopback().map(|ip| std::net::SocketAddr::new(ip, 0)));
    for addr in addrs {
        let err = try_serve(dir.path(), addr, Config::default())
            .await
            .expect_err("refused without tokens");
        assert!(matches!(err, HttpError::InsecureBind { .. }), "{err}");
        assert!(err.to_string().contains("--insecure"), "{err}");
        let insecure = Config {
            insecure: true,
            ..Config::default()
        };
        try_serve(dir.path(), addr, insecure)
            .await
            .expect("--insecure serves it open");
        let file = TokenFile::in_data_dir(dir.path());
        file.create("ci", Scope::Admin).unwrap();
        try_serve(dir.path(), addr, Config::default())
            .await
            .expect("with tokens it starts");
        file.revoke("ci").unwrap();
    }
    // On loopback without tokens it is open, as before.
    let s = TestServer::start(dir.path(), Config::default()).await;
    assert_eq!(s.get("/views/orders").await.status, 200);
    s.server.shutdown().await.unwrap();
}
