//! `--target docs`: the spec's read–merge–PUT loop on a few documents,
//! through strata-client, then the check that no acknowledged update was
//! lost, and a race of every client for one unique value.
//!
//! Each client repeats, on a document picked at random, one of two
//! updates in turn:
//!
//! - the shared counter `total` + 1, with [`Client::update`]: read, add
//!   one, `PUT` with `If-Match`; on a 409 read again and retry. Every
//!   client writes this field, so concurrent updates conflict;
//! - its own counter `c{client}` + 1, with [`Client::update_merging`]:
//!   the `PUT` names the version read as a merge base, and the service
//!   applies it onto a newer version when only other fields changed
//!   meanwhile (a merge, no retry).
//!
//! Both writes are absolute (the client sends the figure it computed), so
//! a lost update shows: at the end each document's `total` must equal the
//! acknowledged shared updates of it, and each `c{client}` that client's
//! acknowledged updates of it. Then every client `PUT`s a document of its
//! own claiming the same value of a unique field, at once: exactly one may
//! succeed, and every other must be told which document holds the value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Map, Value, json};
use strata_client::reqwest::Method;
use strata_client::{Client, ClientError, Exchange, Precondition, RetryPolicy};

use super::options::{Latencies, LoadError, Options, fail};

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct DocsReport {
    /// Clients.
    pub clients: usize,
    /// Documents.
    pub documents: usize,
    /// Wall time of the client phase.
    pub elapsed: Duration,
    /// HTTP requests sent in the client phase.
    pub requests: u64,
    /// Writes sent (PUTs, retries included).
    pub writes: u64,
    /// Updates acknowledged.
    pub acknowledged: u64,
    /// Writes refused as stale (409/412) along the way.
    pub conflicts: u64,
    /// Merge-base writes the service merged onto a later version.
    pub merges: u64,
    /// Updates given up after `max_attempts` conflicts.
    pub gave_up: u64,
    /// Other failures.
    pub errors: u64,
    /// Updates whose outcome is unknown (no response, even with the key resent).
    pub unknown_outcomes: u64,
    /// Latency percentiles over every request: p50, p99, max.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Acknowledged increments missing from the documents: must be 0.
    pub lost_updates: u64,
    /// Increments in the documents beyond the acknowledged ones and those
    /// of unknown outcome: must be 0.
    pub phantom_updates: u64,
    /// Writers in the race for one unique value.
    pub racers: usize,
    /// Racers that got the value (must be 1).
    pub race_winners: usize,
    /// Racers refused with `unique-violation` naming the winner.
    pub race_refused_naming_winner: usize,
}

impl DocsReport {
    /// What broke, if anything did.
    pub fn failure(&self) -> Option<String> {
        if self.lost_updates > 0 || self.phantom_updates > 0 {
            return Some(format!(
                "the invariant failed: {} lost and {} phantom updates",
                self.lost_updates, self.phantom_updates
            ));
        }
        if self.race_winners != 1 || self.race_refused_naming_winner + 1 != self.racers {
            return Some(format!(
                "the uniqueness race failed: {} winners of {}, {} refused naming the winner",
                self.race_winners, self.racers, self.race_refused_naming_winner
            ));
        }
        None
    }
}

impl std::fmt::Display for DocsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "target docs  clients {}  documents {}  duration {:.1}s",
            self.clients, self.documents, secs
        )?;
        writeln!(
            f,
            "requests {}  ({:.0}/s)  writes {}  acknowledged {} ({:.0}/s)",
            self.requests,
            self.requests as f64 / secs,
            self.writes,
            self.acknowledged,
            self.acknowledged as f64 / secs
        )?;
        let rate = if self.writes == 0 {
            0.0
        } else {
            self.conflicts as f64 * 100.0 / self.writes as f64
        };
        writeln!(
            f,
            "conflicts {}  (rate {:.1}% of writes)  merges {}  gave up {}  errors {}  unknown {}",
            self.conflicts, rate, self.merges, self.gave_up, self.errors, self.unknown_outcomes
        )?;
        writeln!(
            f,
            "latency p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )?;
        writeln!(
            f,
            "lost updates {}  phantom {}",
            self.lost_updates, self.phantom_updates
        )?;
        write!(
            f,
            "uniqueness race: {} writers, {} winner(s), {} refused naming the winner",
            self.racers, self.race_winners, self.race_refused_naming_winner
        )
    }
}

/// What one client did.
#[derive(Default)]
struct ClientStats {
    acknowledged: u64,
    conflicts: u64,
    merges: u64,
    gave_up: u64,
    errors: u64,
    unknown: u64,
    /// Acknowledged shared increments, per document.
    shared: Vec<u64>,
    /// Acknowledged own increments, per document.
    own: Vec<u64>,
}

/// Every request's status and latency, per client (no lock shared between clients).
#[derive(Default)]
struct Exchanges {
    requests: u64,
    writes: u64,
    latencies: Latencies,
}

fn observer(into: Arc<Mutex<Exchanges>>) -> strata_client::Observer {
    Arc::new(move |x: &Exchange| {
        let mut e = into.lock().expect("exchanges");
        e.requests += 1;
        if x.method == Method::PUT {
            e.writes += 1;
        }
        e.latencies.record(x.latency);
    })
}

fn get_u64(doc: &Map<String, Value>, field: &str) -> u64 {
    doc.get(field).and_then(Value::as_u64).unwrap_or(0)
}

async fn client(
    client: Client,
    collection: Arc<str>,
    documents: usize,
    index: usize,
    deadline: Instant,
) -> ClientStats {
    let mut stats = ClientStats {
        shared: vec![0; documents],
        own: vec![0; documents],
        ..ClientStats::default()
    };
    let own = format!("c{index}");
    let mut turn = index;
    while Instant::now() < deadline {
        turn += 1;
        let d = rand::rng().random_range(0..documents);
        let id = format!("d{d}");
        let shared = turn.is_multiple_of(2);
        let result = if shared {
            client
                .update(&collection, &id, |doc| {
                    let n = get_u64(doc, "total");
                    doc.insert("total".into(), json!(n + 1));
                })
                .await
        } else {
            client
                .update_merging(&collection, &id, |doc| {
                    let n = get_u64(doc, &own);
                    doc.insert(own.clone(), json!(n + 1));
                })
                .await
        };
        match result {
            Ok(u) => {
                stats.acknowledged += 1;
                stats.conflicts += u64::from(u.conflicts);
                stats.merges += u64::from(u.merged);
                if shared {
                    stats.shared[d] += 1;
                } else {
                    stats.own[d] += 1;
                }
            }
            Err(ClientError::Conflict(c)) => {
                stats.conflicts += u64::from(c.attempts);
                stats.gave_up += 1;
            }
            Err(ClientError::Transport { .. }) => stats.unknown += 1,
            Err(e) => {
                tracing::debug!(error = %e, "load test update failed");
                stats.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stats
}

/// Every client at once `PUT`s a document of its own with the same value
/// of a unique field: (winners, refusals naming the winner).
async fn race(clients: &[Client], collection: &str, run: &str) -> Result<(usize, usize), LoadError> {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let email = format!("race-{run}@example.com");
    let handles: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (c, barrier, collection, email) = (c.clone(), barrier.clone(), collection.to_string(), email.clone());
            tokio::spawn(async move {
                let body = json!({"email": email, "racer": i});
                barrier.wait().await;
                let result = c
                    .put(
                        &collection,
                        &format!("r{i}"),
                        body.as_object().expect("an object"),
                        Precondition::None,
                    )
                    .await;
                (format!("r{i}"), result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut holders = Vec::new();
    for h in handles {
        let (id, result) = h.await.map_err(|e| fail(format!("a racer failed: {e}")))?;
        match result {
            Ok(w) if w.status == 201 => winners.push(id),
            Err(ClientError::UniqueViolation { holder, .. }) => holders.push(holder),
            Ok(w) => return Err(fail(format!("racer {id} answered {}", w.status))),
            Err(e) => return Err(fail(format!("racer {id}: {e}"))),
        }
    }
    let naming = match winners.first() {
        Some(w) => holders.iter().filter(|h| *h == w).count(),
        None => 0,
    };
    Ok((winners.len(), naming))
}

/// Runs the documents workload against a running service.
pub async fn run(options: Options) -> Result<DocsReport, LoadError> {
    options.check()?;
    let http = options.http()?;
    let retry = RetryPolicy {
        max_attempts: options.max_attempts.max(1),
        ..RetryPolicy::default()
    };
    let base = |i: usize| -> Result<Client, LoadError> {
        let url = &options.urls[i % options.urls.len()];
        Ok(Client::new(url.as_str())
            .map_err(|e| fail(e.to_string()))?
            .with_http(http.clone())
            .with_retry_policy(retry))
    };
    let first = base(0)?.with_actor("loadtest");

    // Set up: fresh collections and documents.
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let collection = format!("lt-{run}");
    let unique = format!("lt-{run}-u");
    let setup = |e: ClientError| fail(format!("setting up: {e}"));
    first.declare_collection(&collection, &json!({})).await.map_err(setup)?;
    first
        .declare_collection(
            &unique,
            &json!({"unique": [{"field": "email", "case_insensitive": true}]}),
        )
        .await
        .map_err(setup)?;
    for d in 0..options.resources {
        first
            .put(
                &collection,
                &format!("d{d}"),
                json!({"total": 0}).as_object().expect("an object"),
                Precondition::Create,
            )
            .await
            .map_err(setup)?;
    }

    let collection: Arc<str> = collection.into();
    let exchanges: Vec<Arc<Mutex<Exchanges>>> = (0..options.clients).map(|_| Arc::default()).collect();
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut handles = Vec::with_capacity(options.clients);
    for (i, ex) in exchanges.iter().enumerate() {
        let c = base(i)?
            .with_actor(format!("client-{i}"))
            .with_observer(observer(ex.clone()));
        handles.push(tokio::spawn(client(
            c,
            collection.clone(),
            options.resources,
            i,
            deadline,
        )));
    }
    let mut report = DocsReport {
        clients: options.clients,
        documents: options.resources,
        ..DocsReport::default()
    };
    let mut shared = vec![0u64; options.resources];
    let mut own: HashMap<(usize, usize), u64> = HashMap::new();
    for (i, h) in handles.into_iter().enumerate() {
        let s = h.await.map_err(|e| fail(format!("a client failed: {e}")))?;
        report.acknowledged += s.acknowledged;
        report.conflicts += s.conflicts;
        report.merges += s.merges;
        report.gave_up += s.gave_up;
        report.errors += s.errors;
        report.unknown_outcomes += s.unknown;
        for (d, (total, (theirs, mine))) in shared.iter_mut().zip(s.shared.iter().zip(&s.own)).enumerate() {
            *total += theirs;
            own.insert((i, d), *mine);
        }
    }
    report.elapsed = started.elapsed();
    let mut latencies = Latencies::default();
    for ex in exchanges {
        let ex = std::mem::take(&mut *ex.lock().expect("exchanges"));
        report.requests += ex.requests;
        report.writes += ex.writes;
        latencies.0.extend(ex.latencies.0);
    }
    (report.p50, report.p99, report.max) = latencies.summary();

    // No acknowledged increment may be missing, none may be extra.
    let (mut lost, mut extra) = (0u64, 0u64);
    for (d, expected_total) in shared.iter().enumerate() {
        let doc = first
            .get(&collection, &format!("d{d}"))
            .await
            .map_err(|e| fail(format!("reading d{d}: {e}")))?;
        let mut compare = |expected: u64, observed: u64| {
            lost += expected.saturating_sub(observed);
            extra += observed.saturating_sub(expected);
        };
        compare(*expected_total, get_u64(&doc.body, "total"));
        for i in 0..options.clients {
            compare(own[&(i, d)], get_u64(&doc.body, &format!("c{i}")));
        }
    }
    report.lost_updates = lost;
    report.phantom_updates = extra.saturating_sub(report.unknown_outcomes);

    // The race for one unique value.
    let racers = (0..options.clients)
        .map(|i| base(i).map(|c| c.with_actor(format!("racer-{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    report.racers = racers.len();
    (report.race_winners, report.race_refused_naming_winner) = race(&racers, &unique, &run).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use strata_client::reqwest::Url;

    use super::*;

    fn options(url: &str) -> Options {
        Options {
            urls: vec![Url::parse(&format!("{url}/")).unwrap()],
            clients: 8,
            duration: Duration::from_millis(1500),
            resources: 2,
            ..Options::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_loses_no_update_and_lets_one_racer_win() {
        let dir = tempfile::tempdir().unwrap();
        let store = strata_store::SledStore::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = strata_http::Server::serve(store, listener, strata_http::Config::default())
            .await
            .unwrap();
        let report = run(options(&server.url())).await.expect("load test");
        assert_eq!(report.failure(), None, "{report}");
        assert!(report.acknowledged > 0, "{report}");
        assert_eq!((report.errors, report.unknown_outcomes), (0, 0), "{report}");
        assert_eq!((report.racers, report.race_winners), (8, 1), "{report}");
        server.shutdown().await.unwrap();
    }

    /// A server that serves documents and ETags but checks no precondition
    /// and no unique value: the load test must catch both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_ignores_preconditions_and_uniqueness_is_caught() {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode as S};
        use axum::routing::put;

        type Docs = Arc<Mutex<HashMap<String, (Map<String, Value>, u64)>>>;
        async fn declare() -> (S, axum::Json<Value>) {
            (S::CREATED, axum::Json(json!({})))
        }
        fn answer(status: S, body: &Map<String, Value>, version: u64) -> (S, HeaderMap, axum::Json<Value>) {
            let mut headers = HeaderMap::new();
            headers.insert("etag", format!("\"{version}\"").parse().unwrap());
            let mut body = body.clone();
            body.insert("_version".into(), version.into());
            (status, headers, axum::Json(Value::Object(body)))
        }
        async fn read(
            State(docs): State<Docs>,
            Path((c, id)): Path<(String, String)>,
        ) -> (S, HeaderMap, axum::Json<Value>) {
            let (body, version) = docs.lock().unwrap()[&format!("{c}/{id}")].clone();
            answer(S::OK, &body, version)
        }
        async fn write(
            State(docs): State<Docs>,
            Path((c, id)): Path<(String, String)>,
            axum::Json(mut body): axum::Json<Map<String, Value>>,
        ) -> (S, HeaderMap, axum::Json<Value>) {
            // Reads no If-Match, no merge base, no unique field: the bugs under test.
            tokio::time::sleep(Duration::from_millis(1)).await;
            body.remove("_version");
            let mut docs = docs.lock().unwrap();
            let entry = docs.entry(format!("{c}/{id}")).or_insert((Map::new(), 0));
            let status = if entry.1 == 0 { S::CREATED } else { S::OK };
            *entry = (body, entry.1 + 1);
            answer(status, &entry.0, entry.1)
        }
        let docs: Docs = Arc::default();
        let app = axum::Router::new()
            .route("/collections/{name}", put(declare))
            .route("/docs/{c}/{id}", put(write).get(read))
            .with_state(docs);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let report = run(options(&format!("http://{addr}"))).await.unwrap();
        assert!(report.acknowledged > 0, "{report}");
        assert!(report.lost_updates > 0, "lost updates go unnoticed: {report}");
        assert_eq!(report.race_winners, 8, "every racer got the value: {report}");
        assert!(report.failure().is_some());
    }

    #[test]
    fn a_report_fails_on_a_lost_update_or_a_race_without_one_winner() {
        let ok = DocsReport {
            racers: 4,
            race_winners: 1,
            race_refused_naming_winner: 3,
            ..DocsReport::default()
        };
        assert_eq!(ok.failure(), None);
        let lost = DocsReport {
            lost_updates: 1,
            ..ok.clone()
        };
        assert!(lost.failure().unwrap().contains("1 lost"));
        let two = DocsReport {
            race_winners: 2,
            race_refused_naming_winner: 2,
            ..ok.clone()
        };
        assert!(two.failure().unwrap().contains("2 winners"));
        let nameless = DocsReport {
            race_refused_naming_winner: 2,
            ..ok
        };
        assert!(nameless.failure().is_some());
    }
}
