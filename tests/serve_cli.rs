//! `strata serve` as a process: configured through the environment, loaded
//! by `strata loadtest`, stopped by SIGTERM with the store closed cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::store::{Direction, EventStore, SledStore, StreamId};

/// One HTTP/1.1 request on a fresh connection; returns the status line and the whole response.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

struct Serve {
    child: Child,
    addr: String,
    stderr: BufReader<std::process::ChildStderr>,
}

fn serve(dir: &std::path::Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir)
        .env("STRATA_CONFLICT_STATUS", "412")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Serve { child, addr, stderr }
}

#[test]
fn serve_answers_runs_a_load_test_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path());

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

    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "strata serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    s.stderr.read_to_string(&mut rest).unwrap();
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
    let mut s = serve(dir.path());
    let (status, _) = http(&s.addr, "POST", "/stock", &[], r#"{"sku":"tea","name":"Tea"}"#);
    assert_eq!(status, 201);
    let key = [("Idempotency-Key", "kill-1")];
    let (status, first) = http(&s.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":4}"#);
    assert_eq!(status, 200, "{first}");
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();

    let mut s = serve(dir.path());
    let (status, again) = http(&s.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":4}"#);
    assert_eq!(status, 200, "{again}");
    assert!(
        again.to_ascii_lowercase().contains("idempotency-replayed: true"),
        "{again}"
    );
    let (_, item) = http(&s.addr, "GET", "/stock/tea", &[], "");
    assert!(item.contains(r#""on_hand":4"#), "received once: {item}");
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}
