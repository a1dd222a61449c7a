//! `strata token` and `strata serve` with tokens, as processes: create,
//! list and revoke end to end; a server on a non-loopback address without
//! tokens refuses to start (unless `--insecure`); the clients' `--token`;
//! and no secret in any line the server writes, at every log level.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Serve, http};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `strata token create`: the secret alone on stdout, never on stderr.
fn create(dir: &str, name: &str, scope: &str) -> String {
    let out = strata(&["token", "create", "--data", dir, "--name", name, "--scope", scope]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret = text(&out.stdout).trim().to_string();
    assert!(
        secret.len() == 71 && secret.starts_with("strata_") && !secret[7..].contains(|c: char| !c.is_ascii_hexdigit()),
        "{secret:?}"
    );
    assert!(!text(&out.stderr).contains(&secret[7..]), "the secret on stderr");
    assert!(text(&out.stderr).contains(name));
    secret
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[test]
fn tokens_are_created_listed_used_and_revoked_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let empty = strata(&["token", "list", "--data", d]);
    assert!(
        empty.status.success() && empty.stdout.is_empty(),
        "{}",
        text(&empty.stderr)
    );

    let admin = create(d, "ci", "admin");
    let reader = create(d, "dashboard", "read");
    let writer = create(d, "loadtest", "write");
    let again = strata(&["token", "create", "--data", d, "--name", "ci", "--scope", "read"]);
    assert!(!again.status.success(), "a name is unique");
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    let bad = strata(&["token", "create", "--data", d, "--name", "ci", "--scope", "root"]);
    assert!(!bad.status.success());

    let list = strata(&["token", "list", "--data", d]);
    let listed = text(&list.stdout);
    assert!(list.status.success(), "{}", text(&list.stderr));
    for (name, scope) in [("ci", "admin"), ("dashboard", "read"), ("loadtest", "write")] {
        assert!(
            listed.lines().any(|l| l.split_whitespace().take(2).eq([name, scope])),
            "{name} {scope} in\n{listed}"
        );
    }
    let json = strata(&["token", "list", "--json", "--data", d]);
    let rows: Vec<serde_json::Value> = text(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["created_at"].as_u64().unwrap() > 0));
    for secret in [&admin, &reader, &writer] {
        assert!(!listed.contains(&secret[7..]) && !text(&json.stdout).contains(&secret[7..]));
    }

    // Every level of every target, to find a secret wherever it might leak.
    let s = Serve::start(&["--data", d, "--token-refresh", "100ms"], |c| {
        c.env("RUST_LOG", "trace");
    });
    assert!(s.banner.contains("bearer tokens required"), "{}", s.banner);
    let (status, response) = http(&s.addr, "GET", "/views/orders", &[], "");
    assert_eq!(status, 401, "{response}");
    assert!(response.contains("/problems/unauthorized"));
    let (status, _) = http(&s.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "the health check is open");
    let (status, _) = http(
        &s.addr,
        "GET",
        "/views/orders",
        &[("Authorization", &bearer(&reader))],
        "",
    );
    assert_eq!(status, 200);
    let tea = r#"{"sku":"tea","name":"Tea"}"#;
    let (status, response) = http(&s.addr, "POST", "/stock", &[("Authorization", &bearer(&reader))], tea);
    assert_eq!(status, 403, "{response}");
    assert!(response.contains("/problems/insufficient-scope"));
    let (status, _) = http(&s.addr, "POST", "/stock", &[("Authorization", &bearer(&admin))], tea);
    assert_eq!(status, 201);

    let url = format!("http://{}", s.addr);
    let groups = strata(&["subscriptions", "--url", &url, "--token", &reader]);
    assert!(groups.status.success(), "{}", text(&groups.stderr));
    let refused = strata(&["subscriptions", "--url", &url]);
    assert!(!refused.status.success(), "without a token");
    let follow = strata(&["subscribe", "--url", &url, "--token", &reader, "--limit", "1"]);
    assert!(follow.status.success(), "{}", text(&follow.stderr));
    assert!(
        text(&follow.stdout).contains("StockItemRegistered"),
        "{}",
        text(&follow.stdout)
    );
    let load = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["loadtest", "--clients", "2", "--duration", "1s", "--url", &url])
        .env("STRATA_TOKEN", &writer)
        .output()
        .unwrap();
    assert!(load.status.success(), "{}{}", text(&load.stdout), text(&load.stderr));
    let unauthorised = strata(&["loadtest", "--clients", "1", "--duration", "1s", "--url", &url]);
    assert!(!unauthorised.status.success(), "a load test without a token fails");

    let revoke = strata(&["token", "revoke", "--data", d, "dashboard"]);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    strata_testkit::until_blocking("the running server to drop the revoked token", || {
        http(
            &s.addr,
            "GET",
            "/views/orders",
            &[("Authorization", &bearer(&reader))],
            "",
        )
        .0 == 401
    });
    let unknown = strata(&["token", "revoke", "--data", d, "dashboard"]);
    assert!(!unknown.status.success());
    let left = text(&strata(&["token", "list", "--data", d]).stdout);
    assert!(!left.contains("dashboard") && left.contains("loadtest"), "{left}");

    let lines = s.log_lines();
    let (status, rest) = s.terminate();
    assert!(status.success(), "{rest}");
    let log = lines.join("\n") + &rest;
    assert!(log.contains("strata::access"), "the access log was on");
    for secret in [&admin, &reader, &writer] {
        assert!(!log.contains(&secret[7..]), "a secret is in the server's log");
    }
}

/// Starts `strata serve` with `args`; returns its exit output if it exits
/// within a minute, or, once it serves, kills it and returns its banner line.
fn serve_or_exit(args: &[&str]) -> Result<Output, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        while let Ok(line) = rx.try_recv() {
            if line.contains("strata serving") {
                child.kill().unwrap();
                child.wait().unwrap();
                return Err(line);
            }
            seen.push(line);
        }
        if let Some(status) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100));
            seen.extend(rx.try_iter());
            return Ok(Output {
                status,
                stdout: Vec::new(),
                stderr: seen.join("\n").into_bytes(),
            });
        }
        assert!(
            Instant::now() < deadline,
            "strata serve neither served nor exited: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_non_loopback_address_without_tokens_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let refused = serve_or_exit(&["--addr", "0.0.0.0:0", "--data", d]).expect("it exits");
    assert!(!refused.status.success());
    let why = text(&refused.stderr);
    assert!(why.contains("without tokens") && why.contains("--insecure"), "{why}");

    let banner = serve_or_exit(&["--addr", "0.0.0.0:0", "--data", d, "--insecure"]).expect_err("it serves");
    assert!(banner.contains("OPEN to anyone"), "{banner}");

    create(d, "ci", "admin");
    let banner = serve_or_exit(&["--addr", "0.0.0.0:0", "--data", d]).expect_err("it serves");
    assert!(banner.contains("bearer tokens required"), "{banner}");

    // The README's first command: loopback, no tokens, open.
    let open = tempfile::tempdir().unwrap();
    let s = Serve::start(&["--data", open.path().to_str().unwrap()], |_| {});
    assert!(s.banner.contains("open: a loopback address"), "{}", s.banner);
    let (status, _) = http(&s.addr, "POST", "/stock", &[], r#"{"sku":"tea","name":"Tea"}"#);
    assert_eq!(status, 201);
    let (status, rest) = s.terminate();
    assert!(status.success(), "{rest}");
}
