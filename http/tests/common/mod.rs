//! A real server on an ephemeral port over a temporary data directory or a
//! throwaway PostgreSQL schema, a real HTTP client, and the check that
//! every call a test made is in the OpenAPI document.
//!
//! A test is written once, as `async fn name(backend: Backend)`, and
//! instantiated per backend by [`on_both_backends!`]: `local::name` always
//! runs; `postgres::name` runs under `scripts/test-postgres.sh` (which
//! builds with `STRATA_POSTGRES_URL` set) and is otherwise listed as
//! ignored, so the default suite's time does not grow.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use strata_http::{Config, Server};
use strata_store::{EventStore, SegmentStore};
use tokio::net::TcpListener;

/// A running server and a client for it.
pub struct TestServer {
    pub server: Server,
    pub url: String,
    pub http: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn etag(&self) -> &str {
        self.header("etag").unwrap_or_else(|| panic!("no ETag: {self:?}"))
    }

    /// Asserts a problem response of `status` and `type` and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16, name: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let p = self.json();
        assert_eq!(p["type"], format!("/problems/{name}"), "{p}");
        assert_eq!(p["status"], status, "{p}");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert!(p["detail"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert!(p["instance"].as_str().is_some_and(|t| t.starts_with('/')), "{p}");
        p
    }
}

impl TestServer {
    /// A server over a fresh directory (kept alive by `dir`).
    pub async fn start(dir: &Path, config: Config) -> TestServer {
        let store = SegmentStore::open_with(dir, config.store.clone()).expect("open store");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::serve(store, listener, config).await.expect("serve");
        TestServer {
            url: server.url(),
            server,
            http: reqwest::Client::new(),
        }
    }

    /// A server on `data`: its data directory, or its PostgreSQL schema (a
    /// process of its own each time, with a pool of 16).
    pub async fn on(data: &Data, config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::on_listener(data, config, listener).await
    }

    /// A server on `data` listening on `listener` (to restart a server on
    /// the address its clients know).
    pub async fn on_listener(data: &Data, config: Config, listener: TcpListener) -> TestServer {
        let server = match &data.place {
            Place::Local(dir) => {
                let store = SegmentStore::open_with(dir.path(), config.store.clone()).expect("open store");
                Server::serve(store, listener, config).await.expect("serve")
            }
            #[cfg(feature = "postgres")]
            Place::Postgres(db) => {
                let mut options = db.options(&format!(
                    "server-{}",
                    data.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                ));
                options.pool_size = 16;
                let store = db.connect(options).await;
                Server::serve_postgres(store, listener, config).await.expect("serve")
            }
        };
        TestServer {
            url: server.url(),
            server,
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request");
        Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            text: r.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.url))).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(with_headers(self.http.get(format!("{}{path}", self.url)), headers))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.post_with(path, body, &[]).await
    }

    pub async fn post_with(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        let req = self.http.post(format!("{}{path}", self.url)).json(&body);
        self.send(with_headers(req, headers)).await
    }

    /// A POST with a raw body and content type (for malformed input).
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> Resp {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req).await
    }

    /// The log's head position (from /healthz).
    pub async fn head(&self) -> u64 {
        let h = self.get("/healthz").await;
        assert_eq!(h.status, 200, "{}", h.text);
        h.json()["head_position"].as_u64().unwrap()
    }

    /// Registers `sku` and receives `on_hand` units; returns the item's version.
    pub async fn stock_item(&self, sku: &str, on_hand: u64) -> u64 {
        let r = self.post("/stock", serde_json::json!({"sku": sku, "name": sku})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        if on_hand == 0 {
            return 1;
        }
        let r = self
            .post(
                &format!("/stock/{sku}/receive"),
                serde_json::json!({"quantity": on_hand}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        2
    }

    /// Any request: method, path, an optional body with its content type, headers.
    pub async fn req(&self, method: &str, path: &str, body: Option<(&str, String)>, headers: &[(&str, &str)]) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some((content_type, body)) = body {
            req = req.header("content-type", content_type).body(body);
        }
        self.send(with_headers(req, headers)).await
    }

    /// `PUT` of a JSON body.
    pub async fn put(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.req("PUT", path, Some(("application/json", body.to_string())), headers)
            .await
    }

    /// `PATCH` with a merge patch (RFC 7396).
    pub async fn merge_patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.req(
            "PATCH",
            path,
            Some(("application/merge-patch+json", body.to_string())),
            headers,
        )
        .await
    }

    /// `PATCH` with a JSON Patch (RFC 6902).
    pub async fn json_patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.req(
            "PATCH",
            path,
            Some(("application/json-patch+json", body.to_string())),
            headers,
        )
        .await
    }

    /// `DELETE`.
    pub async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.req("DELETE", path, None, headers).await
    }

    /// Declares a collection (201 or 200).
    pub async fn collection(&self, name: &str, declaration: Value) -> Resp {
        let r = self.put(&format!("/collections/{name}"), declaration, &[]).await;
        assert!(r.status == 201 || r.status == 200, "{}", r.text);
        r
    }

    /// Checks that every request this server answered (by method, route
    /// template and status, from /metrics) is described by /openapi.json,
    /// then shuts the server down.
    pub async fn finish(self) {
        assert_documented(&self).await;
        self.server.shutdown().await.expect("graceful shutdown");
    }
}

/// Percent-encodes a path segment or a query value (every byte but
/// RFC 3986's unreserved characters).
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn with_headers(mut req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        req = req.header(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req
}

/// The (method, route, status) triples the server's metrics counted.
pub async fn calls(server: &TestServer) -> BTreeSet<(String, String, String)> {
    let text = server.get("/metrics").await.text;
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("strata_http_requests_total{")) {
        let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        let get = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap()
        };
        out.insert((get("method"), get("route"), get("status")));
    }
    out
}

/// Every call a test made, on a known route, is an operation of the
/// OpenAPI document with that status among its responses.
pub async fn assert_documented(server: &TestServer) {
    let doc = server.get("/openapi.json").await.json();
    let calls = calls(server).await;
    assert!(!calls.is_empty(), "the metrics counted no request");
    for (method, route, status) in calls {
        if route == "unmatched" || status == "405" {
            continue; // the fallbacks: no route, or a method the route does not take
        }
        let method = method.to_lowercase();
        let op = &doc["paths"][&route][&method];
        assert!(op.is_object(), "{method} {route} is not in /openapi.json");
        assert!(
            op["responses"][&status].is_object(),
            "{method} {route} answered {status}, which /openapi.json does not list: {}",
            op["responses"]
        );
    }
}

/// The backends a test runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// The embedded store in a temporary directory.
    Local,
    /// PostgreSQL, in a throwaway schema (`strata_testkit::TestDatabase`).
    Postgres,
}

/// Where a test's servers keep their data; it outlives them, so a restart
/// is a new server on the same data.
pub struct Data {
    place: Place,
    /// Servers started on it (each a process of its own on PostgreSQL).
    starts: AtomicUsize,
}

enum Place {
    Local(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(strata_testkit::TestDatabase),
}

impl Data {
    /// Fresh, empty data on `backend`.
    pub fn new(backend: Backend) -> Data {
        let place = match backend {
            Backend::Local => Place::Local(tempfile::tempdir().unwrap()),
            #[cfg(feature = "postgres")]
            Backend::Postgres => Place::Postgres(strata_testkit::TestDatabase::new()),
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres => panic!(
                "built without the postgres feature: scripts/test-postgres.sh cargo test -p strata-http --features postgres"
            ),
        };
        Data {
            place,
            starts: AtomicUsize::new(0),
        }
    }

    /// The log, as another program opens it through the library. On the
    /// embedded store only while no server has the directory open: opening it shows that
    /// a stopped server let it go.
    pub async fn open_log(&self) -> Arc<dyn EventStore> {
        match &self.place {
            Place::Local(dir) => Arc::new(SegmentStore::open(dir.path()).expect("the directory is free")),
            #[cfg(feature = "postgres")]
            Place::Postgres(db) => Arc::new(db.store("library").await),
        }
    }
}

impl Data {
    /// Creates a bearer token where a server on this data looks for them
    /// (the token file of the directory, or the schema's table); returns
    /// its secret.
    pub async fn create_token(&self, name: &str, scope: strata_http::Scope) -> String {
        let issued = match &self.place {
            Place::Local(dir) => strata_http::TokenFile::in_data_dir(dir.path()).create(name, scope),
            #[cfg(feature = "postgres")]
            Place::Postgres(db) => {
                let tokens = strata_http::PgTokens::open(&db.store("tokens").await).await.unwrap();
                tokens.create(name, scope).await
            }
        };
        issued.expect("create a token").secret.expose().to_string()
    }

    /// Revokes the token named `name`.
    pub async fn revoke_token(&self, name: &str) {
        match &self.place {
            Place::Local(dir) => strata_http::TokenFile::in_data_dir(dir.path()).revoke(name),
            #[cfg(feature = "postgres")]
            Place::Postgres(db) => {
                let tokens = strata_http::PgTokens::open(&db.store("tokens").await).await.unwrap();
                tokens.revoke(name).await
            }
        }
        .expect("revoke a token");
    }
}

/// Instantiates tests written as `async fn name(backend: Backend)` once
/// per backend: `local::name`, and `postgres::name`, ignored unless built
/// with `STRATA_POSTGRES_URL` set (`scripts/test-postgres.sh`). The local
/// tests run on tokio's default test runtime, the PostgreSQL ones on two
/// worker threads; `on_both_backends!(workers = 4; name, ...)` runs both on
/// that many.
#[macro_export]
macro_rules! on_both_backends {
    (workers = $workers:literal; $($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $name() {
                    super::$name($crate::common::Backend::Local).await
                }
            )*
        }

        $crate::on_both_backends!(@postgres $workers; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Local).await
                }
            )*
        }

        $crate::on_both_backends!(@postgres 2; $($name),*);
    };
    (@postgres $workers:literal; $($name:ident),*) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}
