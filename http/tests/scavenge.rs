//! `POST /admin/scavenge` on the segment log (and on PostgreSQL): it erases a deleted
//! stream's payloads from every file of the data directory while the
//! service serves, its progress in `/metrics`; one at a time
//! (`scavenge-running`); admin only when tokens are configured; a
//! shutdown stops a PostgreSQL scavenge between batches.

mod common;

use std::time::{Duration, Instant};
use strata_testkit::files_holding;

use common::TestServer;
use serde_json::{Value, json};
use strata_http::{Config, Scope, TokenFile};

/// Written in the payloads of the stream that is deleted.
const MARKER: &str = "ERASE-ME-7f3a91c2-personal-data";

async fn append(s: &TestServer, stream: &str, data: Value) {
    let r = s
        .post(
            &format!("/streams/{stream}"),
            json!([{"event_id": uuid::Uuid::new_v4(), "event_type": "Note", "data": data}]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `/metrics` until a scavenge has finished with `outcome` `n` times
/// in all (a guard of a minute against a hang, not a timing assertion);
/// returns the exposition.
async fn finished(s: &TestServer, n: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = s.get("/metrics").await.text;
        if metric(&text, "strata_scavenges_finished_total{outcome=\"ok\"}") == Some(n) {
            return text;
        }
        assert!(
            metric(&text, "strata_scavenges_finished_total{outcome=\"failed\"}").is_none(),
            "{text}"
        );
        assert!(
            Instant::now() < deadline,
            "no scavenge finished within a minute:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_scavenge_erases_a_deleted_stream_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), Config::default()).await;
    for i in 0..3 {
        append(&s, "person-1", json!({"note": format!("{MARKER} #{i}")})).await;
        append(&s, "sensor-1", json!({"i": i})).await;
    }
    assert!(
        !files_holding(dir.path(), MARKER.as_bytes()).is_empty(),
        "the marker is on disk before"
    );
    let deleted = s.delete("/streams/person-1?hard=true", &[("If-Match", "\"3\"")]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);

    let started = s.post("/admin/scavenge", json!(null)).await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.header("location"), Some("/metrics"));
    assert_eq!(started.json()["metrics"], "/metrics");
    let text = finished(&s, 1).await;
    assert_eq!(metric(&text, "strata_scavenge_running"), Some(0), "{text}");
    let total = metric(&text, "strata_scavenge_segments_total").unwrap();
    assert!(total >= 1, "{text}");
    assert_eq!(metric(&text, "strata_scavenge_segments_done"), Some(total), "{text}");
    assert_eq!(metric(&text, "strata_scavenge_events_erased"), Some(3), "{text}");
    assert!(metric(&text, "strata_scavenge_bytes_erased").unwrap() >= 3 * MARKER.len() as u64);

    // The service served on, and what was not deleted is whole.
    let kept = s.get("/streams/sensor-1").await.json();
    assert_eq!(kept["events"].as_array().unwrap().len(), 3, "{kept}");
    append(&s, "sensor-1", json!({"i": 3})).await;
    // finish() also checks every answer is in /openapi.json.
    s.finish().await;
    assert_eq!(
        files_holding(dir.path(), MARKER.as_bytes()),
        Vec::<String>::new(),
        "the marker is in these files after the scavenge"
    );
}

#[tokio::test]
async fn one_scavenge_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), Config::default()).await;
    // About 3 MiB to rewrite at 1 MiB/s (read and written): seconds.
    let big = "x".repeat(768 * 1024);
    for _ in 0..4 {
        append(&s, "bulk-1", json!({"blob": big})).await;
    }
    assert_eq!(s.delete("/streams/bulk-1", &[]).await.status, 200);
    let first = s.post("/admin/scavenge?max_mib_per_second=1", json!(null)).await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.json()["max_mib_per_second"], 1);
    s.post("/admin/scavenge", json!(null))
        .await
        .problem(409, "scavenge-running");
    s.post("/admin/scavenge?max_mib_per_second=0", json!(null))
        .await
        .problem(400, "invalid-parameter");
    let text = finished(&s, 1).await;
    assert_eq!(metric(&text, "strata_scavenge_events_erased"), Some(4), "{text}");
    // Once it finished, the next may start (nothing left to erase).
    assert_eq!(s.post("/admin/scavenge", json!(null)).await.status, 202);
    let text = finished(&s, 2).await;
    assert_eq!(metric(&text, "strata_scavenge_events_erased"), Some(0), "{text}");
    s.finish().await;
}

#[tokio::test]
async fn a_scavenge_needs_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = TokenFile::in_data_dir(dir.path());
    let write = tokens.create("app", Scope::Write).unwrap().secret.expose().to_string();
    let admin = tokens.create("ops", Scope::Admin).unwrap().secret.expose().to_string();
    let s = TestServer::start(dir.path(), Config::default()).await;
    let bearer = |secret: &str| format!("Bearer {secret}");
    let denied = s
        .post_with("/admin/scavenge", json!(null), &[("authorization", &bearer(&write))])
        .await;
    let p = denied.problem(403, "insufficient-scope");
    assert_eq!(
        (p["scope"].as_str(), p["needed_scope"].as_str()),
        (Some("write"), Some("admin"))
    );
    s.post("/admin/scavenge", json!(null))
        .await
        .problem(401, "unauthorized");
    let started = s
        .post_with("/admin/scavenge", json!(null), &[("authorization", &bearer(&admin))])
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    // (finish() reads /metrics without a token.)
    s.server.shutdown().await.expect("shutdown");
}

/// On PostgreSQL the same route deletes the rows of a hard-deleted stream
/// in batches (the store's tests search the table for the payloads), with
/// the same metrics: the "segments" gauges count streams there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn a_scavenge_on_postgres_deletes_a_deleted_streams_rows() {
    let data = common::Data::new(common::Backend::Postgres);
    let s = TestServer::on(&data, Config::default()).await;
    for i in 0..3 {
        append(&s, "person-1", json!({"note": format!("{MARKER} #{i}")})).await;
        append(&s, "sensor-1", json!({"i": i})).await;
    }
    let deleted = s.delete("/streams/person-1?hard=true", &[("If-Match", "\"3\"")]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let started = s.post("/admin/scavenge?max_mib_per_second=64", json!(null)).await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.header("location"), Some("/metrics"));
    let text = finished(&s, 1).await;
    assert_eq!(metric(&text, "strata_scavenge_running"), Some(0), "{text}");
    assert_eq!(metric(&text, "strata_scavenge_segments_total"), Some(1), "{text}");
    assert_eq!(metric(&text, "strata_scavenge_segments_done"), Some(1), "{text}");
    assert_eq!(metric(&text, "strata_scavenge_events_erased"), Some(3), "{text}");
    assert!(metric(&text, "strata_scavenge_bytes_erased").unwrap() >= 3 * MARKER.len() as u64);
    let kept = s.get("/streams/sensor-1").await.json();
    assert_eq!(kept["events"].as_array().unwrap().len(), 3, "{kept}");
    // The next one finds nothing left.
    assert_eq!(s.post("/admin/scavenge", json!(null)).await.status, 202);
    let text = finished(&s, 2).await;
    assert_eq!(metric(&text, "strata_scavenge_events_erased"), Some(0), "{text}");
    let gone = s.get("/streams/person-1").await.json();
    assert_eq!(
        (&gone["version"], gone["events"].as_array().unwrap().len()),
        (&json!(0), 0),
        "{gone}"
    );
    s.finish().await;
}

/// A server shutting down stops its PostgreSQL scavenge between two
/// batches instead of waiting for it to finish (here it is paced to
/// 1 MiB/s over 12 MiB in batches of 1,000 rows): the next scavenge, on
/// the next server, finds what the first left and erases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn shutdown_stops_a_postgres_scavenge_between_batches() {
    use strata_store::{DeleteMode, ExpectedVersion, NewEvent, StreamId};

    let data = common::Data::new(common::Backend::Postgres);
    let log = data.open_log().await;
    let bulk = StreamId::new("bulk-1").unwrap();
    let body = vec![b'x'; 4096];
    for _ in 0..3 {
        let events = (0..1000).map(|_| NewEvent::new("Bulk", body.clone())).collect();
        log.append(&bulk, ExpectedVersion::Any, events).await.unwrap();
    }
    log.delete_stream(&bulk, ExpectedVersion::Exact(3000), DeleteMode::Hard)
        .await
        .unwrap();
    drop(log);

    let s = TestServer::on(&data, Config::default()).await;
    let started = s.post("/admin/scavenge?max_mib_per_second=1", json!(null)).await;
    assert_eq!(started.status, 202, "{}", started.text);
    // Stopped wherever it is: before its first batch or in a pause after one.
    s.server.shutdown().await.expect("shutdown");

    let s = TestServer::on(&data, Config::default()).await;
    assert_eq!(s.post("/admin/scavenge", json!(null)).await.status, 202);
    let text = finished(&s, 1).await;
    let left = metric(&text, "strata_scavenge_events_erased").unwrap();
    assert!(
        left >= 1000,
        "the stopped scavenge left at least two batches to the next one: {left} erased\n{text}"
    );
    s.finish().await;
}
