//! `--target stock`: many clients doing the read–modify–write
//! loop of the spec on a few hot stock items, then a check that no update
//! was lost.
//!
//! Each client repeats the spec's loop: pick a SKU, `GET /stock/{sku}` (note
//! the `ETag` and the on-hand figure `n`), then write the new state it
//! decided on, `POST /stock/{sku}/adjust {"counted": n + 1}` with
//! `If-Match`; on a stale-version 409 (or 412) re-fetch and try again, at
//! most `max_attempts` times.
//!
//! The write is absolute (it sets the figure the client computed from what
//! it read), so a lost update shows: if two clients that read the same `n`
//! were both acknowledged, the figure ends one short of the number of
//! acknowledged writes. At the end every SKU's on-hand figure must equal its
//! acknowledged writes (plus at most the writes whose outcome is unknown).
//! A relative write such as `receive` would not do: the server applies it
//! to whatever state is current, so the count comes out right even when the
//! version check is skipped.
//!
//! Stock items, not orders: an order accepts three writes in its whole life
//! (pay, ship, deliver), so it cannot be a hot resource written in a loop,
//! while a stock item's on-hand count can be set again and again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use serde_json::json;
use strata_client::Client;
use strata_client::reqwest::header::{ETAG, IF_MATCH};
use strata_client::reqwest::{self, Method, StatusCode};

use super::options::{Latencies, LoadError, Options, fail};

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Clients.
    pub clients: usize,
    /// SKUs.
    pub resources: usize,
    /// Wall time of the client phase.
    pub elapsed: Duration,
    /// HTTP requests sent in the client phase (GETs and POSTs).
    pub requests: u64,
    /// Writes sent (POSTs, retries included).
    pub writes: u64,
    /// Writes acknowledged (200).
    pub acknowledged: u64,
    /// Writes refused as stale (409/412).
    pub conflicts: u64,
    /// Re-fetch-and-retry rounds after a conflict.
    pub retries: u64,
    /// Updates abandoned after `max_attempts` conflicts.
    pub gave_up: u64,
    /// Other failures (transport errors, unexpected statuses).
    pub errors: u64,
    /// Writes whose outcome is unknown (no response).
    pub unknown_outcomes: u64,
    /// Latency percentiles over every request: p50, p99, max.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Writes answered `409 idempotency-key-in-flight` and sent again with the same key.
    pub in_flight_resends: u64,
    /// Sum over SKUs of the on-hand figure the acknowledged writes imply.
    pub expected_on_hand: u64,
    /// Sum over SKUs of the on-hand figure the service reports at the end.
    pub observed_on_hand: u64,
}

impl LoadReport {
    /// Requests per second.
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Conflicts per write sent.
    pub fn conflict_rate(&self) -> f64 {
        if self.writes == 0 {
            0.0
        } else {
            self.conflicts as f64 / self.writes as f64
        }
    }

    /// Acknowledged updates the service does not show: must be 0.
    pub fn lost_updates(&self) -> u64 {
        self.expected_on_hand.saturating_sub(self.observed_on_hand)
    }

    /// Units the service shows beyond the acknowledged writes and those of
    /// unknown outcome: must be 0 too.
    pub fn phantom_updates(&self) -> u64 {
        self.observed_on_hand
            .saturating_sub(self.expected_on_hand + self.unknown_outcomes)
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "clients {}  resources {}  duration {:.1}s",
            self.clients,
            self.resources,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "requests {}  ({:.0}/s)  writes {}  acknowledged {} ({:.0}/s)",
            self.requests,
            self.requests_per_second(),
            self.writes,
            self.acknowledged,
            self.acknowledged as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )?;
        writeln!(
            f,
            "conflicts {}  (rate {:.1}% of writes)  retries {}  gave up {}  errors {}  unknown {}  resent in flight {}",
            self.conflicts,
            self.conflict_rate() * 100.0,
            self.retries,
            self.gave_up,
            self.errors,
            self.unknown_outcomes,
            self.in_flight_resends
        )?;
        writeln!(
            f,
            "latency p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )?;
        write!(
            f,
            "on hand: expected {}  observed {}  lost updates {}  phantom {}",
            self.expected_on_hand,
            self.observed_on_hand,
            self.lost_updates(),
            self.phantom_updates()
        )
    }
}

#[derive(Default)]
struct ClientStats {
    requests: u64,
    writes: u64,
    acknowledged: u64,
    conflicts: u64,
    retries: u64,
    gave_up: u64,
    errors: u64,
    unknown: u64,
    in_flight_resends: u64,
    latencies: Latencies,
    received: Vec<u64>,
}

struct Target {
    /// A client of every process, the first the one set-up and the final check use.
    bases: Vec<Client>,
    skus: Vec<String>,
}

impl Target {
    /// The path of SKU `i`.
    fn item(&self, i: usize) -> String {
        format!("stock/{}", self.skus[i])
    }
}

async fn timed(stats: &mut ClientStats, request: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
    let started = Instant::now();
    let result = request.send().await;
    stats.latencies.record(started.elapsed());
    stats.requests += 1;
    result
}

/// The current version (from the `ETag`) and on-hand figure of a stock item.
async fn read_item(
    stats: &mut ClientStats,
    client: &Client,
    path: &str,
) -> Option<(reqwest::header::HeaderValue, u64)> {
    let response = timed(stats, client.request(Method::GET, path)).await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let etag = response.headers().get(ETAG)?.clone();
    let body: serde_json::Value = response.json().await.ok()?;
    Some((etag, body["on_hand"].as_u64()?))
}

/// How a write ended.
enum Outcome {
    Acknowledged,
    Stale,
    Other(StatusCode),
    Unknown,
}

/// One client's loop until `deadline`.
async fn client(target: Arc<Target>, options: Arc<Options>, deadline: Instant, base: usize) -> ClientStats {
    let mut stats = ClientStats {
        received: vec![0; target.skus.len()],
        ..ClientStats::default()
    };
    'updates: while Instant::now() < deadline {
        let i = rand::rng().random_range(0..target.skus.len());
        let url = target.item(i);
        let http = &target.bases[base];
        let key = options.idempotency_keys.then(|| uuid::Uuid::new_v4().to_string());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((etag, on_hand)) = read_item(&mut stats, http, &url).await else {
                stats.errors += 1;
                // Do not spin on a failing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue 'updates;
            };
            // A new decision on a new version needs a key of its own.
            let key = key.as_ref().map(|k| format!("{k}-{attempt}"));
            let mut sends = 0;
            let outcome = loop {
                sends += 1;
                let mut post = http
                    .request(Method::POST, &format!("{url}/adjust"))
                    .header(IF_MATCH, etag.clone())
                    .json(&json!({ "counted": on_hand + 1 }));
                if let Some(k) = &key {
                    post = post.header("idempotency-key", k);
                }
                stats.writes += 1;
                match timed(&mut stats, post).await {
                    Ok(r) if r.status() == StatusCode::OK => break Outcome::Acknowledged,
                    Ok(r) if r.status() == StatusCode::CONFLICT || r.status() == StatusCode::PRECONDITION_FAILED => {
                        let status = r.status();
                        let retry_after = r
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        match body["type"].as_str() {
                            Some("/problems/wrong-expected-version") => break Outcome::Stale,
                            // The first send with this key is still running:
                            // wait and send it again with the same key.
                            Some("/problems/idempotency-key-in-flight") if key.is_some() && sends < 20 => {
                                stats.in_flight_resends += 1;
                                let wait = retry_after.unwrap_or(1).min(5);
                                tokio::time::sleep(Duration::from_millis(50 * wait)).await;
                                continue;
                            }
                            _ => break Outcome::Other(status),
                        }
                    }
                    Ok(r) => break Outcome::Other(r.status()),
                    // The response was lost: with a key the write can be
                    // sent again safely; without one its outcome is unknown.
                    Err(_) if key.is_some() && sends < 3 => continue,
                    Err(_) => break Outcome::Unknown,
                }
            };
            match outcome {
                Outcome::Acknowledged => {
                    stats.acknowledged += 1;
                    stats.received[i] += 1;
                    break;
                }
                Outcome::Stale => {
                    stats.conflicts += 1;
                    if attempt >= options.max_attempts || Instant::now() >= deadline {
                        stats.gave_up += 1;
                        break;
                    }
                    stats.retries += 1;
                }
                Outcome::Other(status) => {
                    tracing::debug!(%status, url, "load test write failed");
                    stats.errors += 1;
                    break;
                }
                Outcome::Unknown => {
                    stats.unknown += 1;
                    break;
                }
            }
        }
    }
    stats
}

async fn on_hand(client: &Client, path: &str) -> Result<u64, LoadError> {
    let r = client
        .request(Method::GET, path)
        .send()
        .await
        .map_err(|e| fail(format!("GET {path}: {e}")))?;
    if !r.status().is_success() {
        return Err(fail(format!("GET {path}: {}", r.status())));
    }
    let v: serde_json::Value = r.json().await.map_err(|e| fail(format!("GET {path}: {e}")))?;
    v["on_hand"]
        .as_u64()
        .ok_or_else(|| fail(format!("GET {path}: no on_hand in the body")))
}

/// Runs the stock workload against a running service and checks that no
/// acknowledged update was lost.
pub async fn run(options: Options) -> Result<LoadReport, LoadError> {
    options.check()?;
    let http = options.http()?;
    let bases = options
        .urls
        .iter()
        .map(|u| Client::new(u.as_str()).map(|c| c.with_http(http.clone())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let first = bases[0].clone();

    // Set up: fresh SKUs, so the expected figures start from zero.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let skus: Vec<String> = (0..options.resources)
        .map(|i| format!("lt-{}-{i}", &run[..12]))
        .collect();
    let registered = futures::stream::iter(skus.iter().cloned())
        .map(|sku| {
            let client = first.clone();
            async move {
                let r = client
                    .request(Method::POST, "stock")
                    .json(&json!({ "sku": sku, "name": format!("load test item {sku}") }))
                    .send()
                    .await
                    .map_err(|e| fail(format!("POST /stock: {e}")))?;
                if r.status() != StatusCode::CREATED {
                    return Err(fail(format!("registering {sku}: {}", r.status())));
                }
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    registered.into_iter().collect::<Result<Vec<_>, _>>()?;

    let target = Arc::new(Target { bases, skus });
    let options = Arc::new(options);
    let started = Instant::now();
    let deadline = started + options.duration;
    let handles: Vec<_> = (0..options.clients)
        .map(|c| {
            let base = c % target.bases.len();
            tokio::spawn(client(target.clone(), options.clone(), deadline, base))
        })
        .collect();
    let mut t = ClientStats {
        received: vec![0; target.skus.len()],
        ..ClientStats::default()
    };
    for h in handles {
        let s = h.await.map_err(|e| fail(format!("a client failed: {e}")))?;
        t.requests += s.requests;
        t.writes += s.writes;
        t.acknowledged += s.acknowledged;
        t.conflicts += s.conflicts;
        t.retries += s.retries;
        t.gave_up += s.gave_up;
        t.errors += s.errors;
        t.unknown += s.unknown;
        t.in_flight_resends += s.in_flight_resends;
        t.latencies.0.extend(s.latencies.0);
        for (a, b) in t.received.iter_mut().zip(s.received) {
            *a += b;
        }
    }
    let elapsed = started.elapsed();
    let (p50, p99, max) = t.latencies.summary();

    let mut observed = 0;
    for i in 0..target.skus.len() {
        observed += on_hand(&first, &target.item(i)).await?;
    }
    Ok(LoadReport {
        clients: options.clients,
        resources: options.resources,
        elapsed,
        requests: t.requests,
        writes: t.writes,
        acknowledged: t.acknowledged,
        conflicts: t.conflicts,
        retries: t.retries,
        gave_up: t.gave_up,
        errors: t.errors,
        unknown_outcomes: t.unknown,
        p50,
        p99,
        max,
        in_flight_resends: t.in_flight_resends,
        expected_on_hand: t.received.iter().sum(),
        observed_on_hand: observed,
    })
}

#[cfg(test)]
mod tests {
    use strata_client::reqwest::Url;

    use super::*;

    /// A server that serves ETags but ignores `If-Match` (check-then-act
    /// without a version check): the load test must catch its lost updates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_ignores_if_match_is_caught() {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode as S};
        use axum::routing::{get, post};
        use std::sync::Mutex;

        type Items = Arc<Mutex<std::collections::HashMap<String, (u64, u64)>>>;
        async fn register(State(items): State<Items>, axum::Json(body): axum::Json<serde_json::Value>) -> S {
            let sku = body["sku"].as_str().unwrap_or_default().to_string();
            items.lock().unwrap().insert(sku, (0, 1));
            S::CREATED
        }
        async fn read(
            State(items): State<Items>,
            Path(sku): Path<String>,
        ) -> (HeaderMap, axum::Json<serde_json::Value>) {
            let (on_hand, version) = items.lock().unwrap()[&sku];
            let mut headers = HeaderMap::new();
            headers.insert("etag", format!("\"{version}\"").parse().unwrap());
            (headers, axum::Json(json!({ "on_hand": on_hand })))
        }
        async fn adjust(
            State(items): State<Items>,
            Path(sku): Path<String>,
            axum::Json(body): axum::Json<serde_json::Value>,
        ) -> S {
            // Reads If-Match nowhere: the bug under test.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut items = items.lock().unwrap();
            let item = items.get_mut(&sku).unwrap();
            *item = (body["counted"].as_u64().unwrap(), item.1 + 1);
            S::OK
        }
        let items: Items = Arc::default();
        let app = axum::Router::new()
            .route("/stock", post(register))
            .route("/stock/{sku}", get(read))
            .route("/stock/{sku}/adjust", post(adjust))
            .with_state(items);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let report = run(Options {
            urls: vec![Url::parse(&format!("http://{addr}/")).unwrap()],
            clients: 8,
            duration: Duration::from_millis(800),
            ..Options::default()
        })
        .await
        .unwrap();
        assert!(report.acknowledged > 0, "{report}");
        assert!(report.lost_updates() > 0, "lost updates go unnoticed: {report}");
    }

    /// The real service: 16 clients on one hot item, with keys.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixteen_clients_on_one_hot_item_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = strata_store::SledStore::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = strata_http::Server::serve(store, listener, strata_http::Config::default())
            .await
            .unwrap();
        let report = run(Options {
            urls: vec![Url::parse(&format!("{}/", server.url())).unwrap()],
            clients: 16,
            duration: Duration::from_secs(3),
            resources: 1,
            idempotency_keys: true,
            ..Options::default()
        })
        .await
        .expect("load test");
        assert!(report.acknowledged > 0, "{report}");
        assert!(report.conflicts > 0, "16 writers on one item conflict: {report}");
        assert_eq!(report.lost_updates(), 0, "{report}");
        assert_eq!(report.phantom_updates(), 0, "{report}");
        assert_eq!((report.errors, report.unknown_outcomes), (0, 0), "{report}");
        assert_eq!(report.observed_on_hand, report.acknowledged, "{report}");
        let metrics = reqwest::get(format!("{}/metrics", server.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(
                "strata_http_conflicts_total{route=\"/stock/{sku}/adjust\",problem=\"wrong-expected-version\"}"
            ),
            "conflicts are counted per route"
        );
        server.shutdown().await.unwrap();
    }

    #[test]
    fn lost_and_phantom_updates() {
        let r = LoadReport {
            expected_on_hand: 10,
            observed_on_hand: 9,
            ..LoadReport::default()
        };
        assert_eq!((r.lost_updates(), r.phantom_updates()), (1, 0));
        let r = LoadReport {
            expected_on_hand: 10,
            observed_on_hand: 12,
            unknown_outcomes: 1,
            ..LoadReport::default()
        };
        assert_eq!((r.lost_updates(), r.phantom_updates()), (0, 1));
    }
}
