//! Two `strata serve --postgres` processes on different ports sharing one
//! database: `strata loadtest` against both at once finds no lost update;
//! an Idempotency-Key used in one is replayed by the other; a write through
//! one is read through the other's read models with `min_position`; both
//! stop cleanly on SIGTERM. And documents: of 32 writers of one unique
//! value spread over both processes exactly one wins, and `strata loadtest
//! --target docs` against both loses no update.
//!
//! Needs a server: ignored unless `STRATA_POSTGRES_URL` was set at build
//! time; `scripts/test-postgres.sh cargo test --test serve_postgres` runs it.

mod common;

use std::process::Command;

use common::{Serve, header, http};
use strata_testkit::{TestDatabase, until_blocking};

fn serve(url: &str, schema: &str) -> Serve {
    let s = Serve::start(&["--postgres", url, "--postgres-schema", schema], |_| {});
    assert!(s.banner.contains("PostgreSQL"), "{}", s.banner);
    s
}

/// `strata loadtest --target <target>` against both processes at once, 8
/// clients on 2 items for 2 s; it must succeed. Its report.
fn loadtest(a: &Serve, b: &Serve, target: &str) -> String {
    let load = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "loadtest",
            "--target",
            target,
            "--clients",
            "8",
            "--resources",
            "2",
            "--duration",
            "2s",
            "--url",
        ])
        .arg(format!("http://{},http://{}", a.addr, b.addr))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&load.stdout).into_owned();
    assert!(
        load.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&load.stderr)
    );
    report
}

#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn two_serve_processes_on_one_database_lose_no_update() {
    let db = TestDatabase::new();
    let url = db.url();
    let a = serve(url, db.schema());
    let b = serve(url, db.schema());

    // A write through a, read through b's read models once applied there.
    let (status, _) = http(&a.addr, "POST", "/stock", &[], r#"{"sku":"tea","name":"Tea"}"#);
    assert_eq!(status, 201);
    let (status, received) = http(
        &a.addr,
        "POST",
        "/stock/tea/receive",
        &[("If-Match", "\"1\"")],
        r#"{"quantity":5}"#,
    );
    assert_eq!(status, 200, "{received}");
    let position = header(&received, "strata-position").expect("a write says its position");
    let (status, view) = http(
        &b.addr,
        "GET",
        &format!("/views/stock?min_position={position}"),
        &[],
        "",
    );
    assert_eq!(status, 200, "{view}");
    assert!(
        view.contains(r#""sku":"tea""#) && view.contains(r#""on_hand":5"#),
        "{view}"
    );
    // A stale version through b is refused: both serve one log.
    let (status, stale) = http(
        &b.addr,
        "POST",
        "/stock/tea/receive",
        &[("If-Match", "\"1\"")],
        r#"{"quantity":1}"#,
    );
    assert_eq!(status, 409, "{stale}");

    // An Idempotency-Key used through a is replayed by b.
    let key = [("Idempotency-Key", "two-processes-1")];
    let (status, first) = http(&a.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":2}"#);
    assert_eq!(status, 200, "{first}");
    let (status, again) = http(&b.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":2}"#);
    assert_eq!(status, 200, "{again}");
    assert_eq!(header(&again, "idempotency-replayed"), Some("true"), "{again}");
    let (status, other) = http(&b.addr, "POST", "/stock/tea/receive", &key, r#"{"quantity":3}"#);
    assert_eq!(status, 422, "{other}");
    let (_, item) = http(&b.addr, "GET", "/stock/tea", &[], "");
    assert!(item.contains(r#""on_hand":7"#), "received once: {item}");

    // The load test against both at once, on shared items.
    let report = loadtest(&a, &b, "stock");
    assert!(
        report.contains("lost updates 0") && report.contains("phantom 0"),
        "{report}"
    );
    let number_after = |word: &str| -> u64 {
        report
            .split_whitespace()
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the report has {word}: {report}"))
    };
    assert!(number_after("acknowledged") > 0, "{report}");
    assert!(
        number_after("conflicts") > 0,
        "8 clients on 2 items across 2 processes conflict: {report}"
    );

    // Both processes' read models end equal to the log: once they have
    // applied the last write, every item's figures in /views/stock are
    // those its own stream gives (nothing applied twice or skipped, through
    // two processes and a writer lock that only one of them holds).
    let (_, tea) = http(&a.addr, "GET", "/stock/tea", &[], "");
    let etag = header(&tea, "etag").expect("an ETag").to_string();
    let (status, last) = http(
        &a.addr,
        "POST",
        "/stock/tea/receive",
        &[("If-Match", etag.as_str())],
        r#"{"quantity":1}"#,
    );
    assert_eq!(status, 200, "{last}");
    let head = header(&last, "strata-position").expect("a position").to_string();
    let body = |response: &str| -> serde_json::Value {
        let (_, body) = response.split_once("\r\n\r\n").expect("a body");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
    };
    for s in [&a, &b] {
        let (status, view) = http(&s.addr, "GET", &format!("/views/stock?min_position={head}"), &[], "");
        assert_eq!(status, 200, "{view}");
        let view = body(&view);
        let items = view["items"].as_array().expect("items");
        assert_eq!(items.len(), 3, "tea and the load test's 2 items: {view}");
        for item in items {
            let sku = item["sku"].as_str().expect("a sku");
            let (status, own) = http(&s.addr, "GET", &format!("/stock/{sku}"), &[], "");
            assert_eq!(status, 200, "{own}");
            let own = body(&own);
            for field in ["on_hand", "reserved", "version"] {
                assert_eq!(item[field], own[field], "{field} of {sku} in {}'s read model", s.addr);
            }
        }
    }

    // A process whose copy of the read models cannot refresh (here: the
    // checkpoint table is out of reach) says so on /healthz, and recovers.
    let (status, health) = http(&b.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "{health}");
    let rename = |from: &str, to: &str| {
        db.execute_blocking(&format!("ALTER TABLE \"{}\".{from} RENAME TO {to}", db.schema()));
    };
    rename("projection_checkpoints", "projection_checkpoints_away");
    let until = |want: u16, what: &str| {
        until_blocking(&format!("/healthz to say {want} {what}"), || {
            let (status, health) = http(&b.addr, "GET", "/healthz", &[], "");
            status == want && health.contains(what)
        })
    };
    until(503, "cannot follow the committed model");
    rename("projection_checkpoints_away", "projection_checkpoints");
    until(200, "\"status\":\"ok\"");

    for s in [a, b] {
        let (status, rest) = s.terminate();
        assert!(status.success(), "{rest}");
        assert!(rest.contains("the store is closed"), "{rest}");
    }
}

#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn two_serve_processes_let_one_writer_of_a_unique_value_win() {
    let db = TestDatabase::new();
    let url = db.url();
    let a = serve(url, db.schema());
    let b = serve(url, db.schema());
    let (status, declared) = http(
        &a.addr,
        "PUT",
        "/collections/users",
        &[],
        r#"{"unique":[{"field":"email","case_insensitive":true}]}"#,
    );
    assert_eq!(status, 201, "{declared}");

    // 32 writers, half through each process, released at once.
    let barrier = std::sync::Barrier::new(32);
    let results: Vec<(usize, u16, String)> = std::thread::scope(|t| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let (barrier, addr) = (&barrier, if i % 2 == 0 { &a.addr } else { &b.addr });
                t.spawn(move || {
                    barrier.wait();
                    let email = if i % 3 == 0 {
                        "Same@Example.com"
                    } else {
                        "same@example.com"
                    };
                    let (status, response) = http(
                        addr,
                        "PUT",
                        &format!("/docs/users/u{i}"),
                        &[],
                        &format!(r#"{{"email":"{email}","i":{i}}}"#),
                    );
                    (i, status, response)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = results.iter().filter(|r| r.1 == 201).map(|r| r.0).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer wins across both processes: {winners:?}"
    );
    let holder = format!(r#""holder":"u{}""#, winners[0]);
    for (i, status, response) in &results {
        if *i != winners[0] {
            assert_eq!(*status, 409, "{response}");
            assert!(
                response.contains("/problems/unique-violation") && response.contains(&holder),
                "writer {i} is told who holds the value: {response}"
            );
        }
    }
    // Each process sees the one document, and only it.
    for s in [&a, &b] {
        for i in 0..32 {
            let (status, _) = http(&s.addr, "GET", &format!("/docs/users/u{i}"), &[], "");
            assert_eq!(status == 200, i == winners[0], "u{i} through {}", s.addr);
        }
    }

    // The documents load test against both at once.
    let report = loadtest(&a, &b, "docs");
    assert!(report.contains("lost updates 0  phantom 0"), "{report}");
    assert!(
        report.contains("8 writers, 1 winner(s), 7 refused naming the winner"),
        "{report}"
    );

    for s in [a, b] {
        let (status, rest) = s.terminate();
        assert!(status.success(), "{rest}");
    }
}

/// `strata token --postgres`: a token created once is accepted by both
/// processes serving the schema, a revoked one refused by both from their
/// next reload; the listing shows no secret.
#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn tokens_in_the_database_guard_every_process() {
    let db = TestDatabase::new();
    let (url, schema) = (db.url(), db.schema());
    let token = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("token")
            .args(args)
            .args(["--postgres", url, "--postgres-schema", schema])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let admin = token(&["create", "--name", "ops", "--scope", "admin"]);
    let reader = token(&["create", "--name", "dash", "--scope", "read"]);
    let listed = token(&["list"]);
    assert!(listed.contains("ops") && listed.contains("dash"), "{listed}");
    assert!(!listed.contains(&admin[7..]) && !listed.contains(&reader[7..]));

    let start = || {
        let s = Serve::start(
            &[
                "--postgres",
                url,
                "--postgres-schema",
                schema,
                "--token-refresh",
                "100ms",
            ],
            |_| {},
        );
        assert!(s.banner.contains("bearer tokens required"), "{}", s.banner);
        s
    };
    let (a, b) = (start(), start());
    let auth = |secret: &str| format!("Bearer {secret}");
    for s in [&a, &b] {
        assert_eq!(http(&s.addr, "GET", "/views/orders", &[], "").0, 401);
        assert_eq!(
            http(
                &s.addr,
                "GET",
                "/views/orders",
                &[("Authorization", &auth(&reader))],
                ""
            )
            .0,
            200
        );
        let (status, _) = http(
            &s.addr,
            "PUT",
            "/subscriptions/groups/g1",
            &[("Authorization", &auth(&reader))],
            "{}",
        );
        assert_eq!(status, 403);
    }
    token(&["revoke", "dash"]);
    for s in [&a, &b] {
        until_blocking("the revocation reaches the process", || {
            http(
                &s.addr,
                "GET",
                "/views/orders",
                &[("Authorization", &auth(&reader))],
                "",
            )
            .0 == 401
        });
        assert_eq!(
            http(&s.addr, "GET", "/views/orders", &[("Authorization", &auth(&admin))], "").0,
            200
        );
    }
    for s in [a, b] {
        let (status, rest) = s.terminate();
        assert!(status.success(), "{rest}");
    }
}
