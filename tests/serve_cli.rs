//! `strata serve` as a process: configured through the environment, loaded
//! by `strata loadtest`, stopped by SIGTERM with the store closed cleanly.

mod common;

use std::process::Command;

use common::{Serve, http};

use strata::store::{Direction, EventStore, SledStore, StreamId};

fn serve(dir: &std::path::Path) -> Serve {
    Serve::start(&["--data", dir.to_str().unwrap()], |c| {
        c.env("STRATA_CONFLICT_STATUS", "412");
    })
}

#[test]
fn serve_answers_runs_a_load_test_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());

    let (status, _) = http(&s.addr, "POST", "/stock", &[], r#"{"sku":"tea","name":"Tea"}"#);
    assert_eq!(status, 201);
    let (status, _) = http(
        &s.addr,
        "POST",
        "/stock/tea/receive",
        &[("If-Match", "\"1\"")],
        r#"{"quantity":2}"#,
    );
    assert_eq!(status, 200);
    // STRATA_CONFLICT_STATUS=412 from the environment.
    let (status, body) = http(
        &s.addr,
        "POST",
        "/stock/tea/receive",
        &[("If-Match", "\"1\"")],
        r#"{"quantity":1}"#,
    );
    assert_eq!(status, 412, "{body}");
    assert!(body.contains("/problems/wrong-expected-version"), "{body}");

    let load = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["loadtest", "--clients", "4", "--duration", "1s", "--url"])
        .arg(format!("http://{}", s.addr))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(report.contains("lost updates 0"), "{report}");
    let conflicts: u64 = report
        .split_whitespace()
        .skip_while(|w| *w != "conflicts")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("the report counts conflicts");
    assert!(conflicts > 0, "4 clients on one item conflict (as 412 here): {report}");

    let refused = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["loadtest", "--duration", "1s", "--url", "http://example.invalid:8080"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "only loopback targets");

    let (status, rest) = s.terminate();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("the store is closed"), "{rest}");

    // Everything acknowledged is in the store, which the process released.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SledStore::open(dir.path()).expect("released");
        let tea = StreamId::new("stock-tea").unwrap();
        let events = store.read_stream(&tea, 1, Direction::Forward, 10).await.unwrap();
        assert_eq!(
            events.len(),
            2,
            "registered and one receipt; the stale write was refused"
        );
    });
}

/// The Idempotency-Key record is durable before the response is sent: a
/// retry after the process is killed (no shutdown, no flush) is answered
/// from the record, and the write is not applied twice.
#[test]
fn a_keyed_write_is_replayed_after_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (status, _) = http(&s.addr, "POST", "/stock", &[], r#"{"sku":"tea","name":"Tea"}"#);
    assert_eq!(status, 201);
    let key = [("Idempotency-Key", "kill-1")];
    let (status, first) = http(&s.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":4}"#);
    assert_eq!(status, 200, "{first}");
    s.kill();

    let s = serve(dir.path());
    let (status, again) = http(&s.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":4}"#);
    assert_eq!(status, 200, "{again}");
    assert!(
        again.to_ascii_lowercase().contains("idempotency-replayed: true"),
        "{again}"
    );
    let (_, item) = http(&s.addr, "GET", "/stock/tea", &[], "");
    assert!(item.contains(r#""on_hand":4"#), "received once: {item}");
    s.kill();
}

/// Requests for the access log: a 201, a 200, a 409 and a 404.
fn log_some_requests(s: &Serve) {
    let (status, _) = http(&s.addr, "POST", "/stock", &[], r#"{"sku":"tea","name":"Tea"}"#);
    assert_eq!(status, 201);
    let (status, _) = http(&s.addr, "GET", "/stock/tea", &[("X-Request-Id", "rid-ok")], "");
    assert_eq!(status, 200);
    let stale = [("If-Match", "\"7\""), ("X-Request-Id", "rid-stale")];
    let (status, _) = http(&s.addr, "POST", "/stock/tea/receive", &stale, r#"{"quantity":1}"#);
    assert_eq!(status, 409);
    let (status, _) = http(&s.addr, "GET", "/stock/nope", &[], "");
    assert_eq!(status, 404);
}

/// The operator's other window: one plain line per request by default
/// (no escape codes when stderr is not a terminal), the spec's
/// `grep 409 | awk` works on it.
#[test]
fn serve_writes_one_plain_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(&["--data", dir.path().to_str().unwrap()], |_| {});
    log_some_requests(&s);
    let (status, rest) = s.terminate();
    assert!(status.success(), "{rest}");
    assert!(
        !rest.contains('\u{1b}'),
        "no ANSI escapes in a redirected log: {rest:?}"
    );
    let access: Vec<&str> = rest.lines().filter(|l| l.contains("strata::access")).collect();
    assert_eq!(access.len(), 4, "one line per request: {rest}");
    let conflict = access
        .iter()
        .find(|l| l.contains("request_id=rid-stale"))
        .unwrap_or_else(|| panic!("the 409's line: {rest}"));
    for field in [
        "method=POST",
        "route=/stock/{sku}/receive",
        "path=/stock/tea/receive",
        "status=409",
        "problem=wrong-expected-version",
        "latency_ms=",
    ] {
        assert!(conflict.contains(field), "{field} in {conflict}");
    }
    let ok = access.iter().find(|l| l.contains("request_id=rid-ok")).unwrap();
    assert!(ok.contains("status=200") && ok.contains("problem=-"), "{ok}");
    assert!(
        access
            .iter()
            .any(|l| l.contains("status=404") && l.contains("path=/stock/nope"))
    );
}

/// `--log-format json`: one object per line, the request's fields at the top level.
#[test]
fn serve_logs_json_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(
        &["--data", dir.path().to_str().unwrap(), "--log-format", "json"],
        |_| {},
    );
    log_some_requests(&s);
    let (status, rest) = s.terminate();
    assert!(status.success(), "{rest}");
    let access: Vec<serde_json::Value> = rest
        .lines()
        .filter(|l| l.contains("strata::access"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(access.len(), 4, "{rest}");
    let conflict = access.iter().find(|v| v["request_id"] == "rid-stale").expect("the 409");
    assert_eq!(conflict["status"], 409);
    assert_eq!(conflict["route"], "/stock/{sku}/receive");
    assert_eq!(conflict["problem"], "wrong-expected-version");
    assert_eq!(conflict["target"], "strata::access");
    assert!(conflict["latency_ms"].as_f64().is_some(), "{conflict}");
}

/// `--access-log false` turns the lines off (even when `RUST_LOG` would show them).
#[test]
fn the_access_log_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(
        &["--data", dir.path().to_str().unwrap(), "--access-log", "false"],
        |c| {
            c.env("RUST_LOG", "info");
        },
    );
    log_some_requests(&s);
    let (status, rest) = s.terminate();
    assert!(status.success(), "{rest}");
    assert!(!rest.contains("strata::access"), "{rest}");
}
