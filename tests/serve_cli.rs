//! `strata serve` as a process: configured through the environment, loaded
//! by `strata loadtest`, stopped by SIGTERM with the store closed cleanly.

mod common;

use std::process::Command;

use common::{Serve, http};

use strata::store::{Direction, EventStore, SegmentStore, StreamId};

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
        let store = SegmentStore::open(dir.path()).expect("released");
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
