//! `strata bench` on a tiny configuration: the JSON report has every
//! contender and workload, and every strata row's events are in its store.
//! Runs are counted (`--appends`), not timed: on a loaded machine a short
//! timed run may acknowledge nothing, and the test asserts on work done.

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn bench_quick_reports_every_contender_and_workload() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let plot = dir.path().join("bench.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "--quick", "--appends", "40", "--dir"])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();

    let contenders: BTreeSet<&str> = rows.iter().map(|r| r["contender"].as_str().unwrap()).collect();
    for c in [
        "disk ceiling",
        "naive sled insert+flush",
        "strata durable",
        "strata buffered",
        "strata memory",
    ] {
        assert!(contenders.contains(c), "missing contender {c}: {contenders:?}");
    }
    // --quick: writers 1 and 4, 200 B, 1 event per append, distinct and hot.
    for contender in [
        "naive sled insert+flush",
        "strata durable",
        "strata buffered",
        "strata memory",
    ] {
        let mut workloads = BTreeSet::new();
        for r in rows.iter().filter(|r| r["contender"] == contender) {
            let w = &r["workload"];
            workloads.insert((
                w["writers"].as_u64().unwrap(),
                w["streams"].as_str().unwrap().to_string(),
            ));
        }
        let want: BTreeSet<_> = [(1, "distinct"), (4, "distinct"), (1, "hot"), (4, "hot")]
            .into_iter()
            .map(|(w, s)| (w, s.to_string()))
            .collect();
        assert_eq!(workloads, want, "{contender}");
    }
    for r in rows.iter() {
        let events = r["events"].as_u64().unwrap();
        if r["contender"] == "disk ceiling" {
            // 40 batches of 1 or 10 records, one fdatasync each.
            assert_eq!(r["appends"].as_u64(), Some(40), "{r}");
            continue;
        }
        // 40 appends of one event, shared by the writers.
        assert_eq!((r["appends"].as_u64(), events), (Some(40), 40), "{r}");
        if !r["contender"].as_str().unwrap().starts_with("strata") {
            continue;
        }
        assert_eq!(
            r["events_in_store"].as_u64(),
            Some(events),
            "acknowledged events are in the store: {r}"
        );
        assert!(r["ratio_to_naive"].as_f64().is_some(), "{r}");
        assert!(r["ratio_to_disk"].as_f64().is_some(), "{r}");
    }
    for r in rows.iter().filter(|r| r["contender"] == "strata durable") {
        assert!(r["events_per_flush"].as_f64().unwrap() >= 1.0, "{r}");
        assert!(
            r["index_lag"].as_u64().is_some() && r["catch_up_ms"].as_f64().is_some(),
            "{r}"
        );
        assert!(r["bytes_per_event"].as_f64().unwrap() > 200.0, "{r}");
    }
    let read: Vec<&str> = report["read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    for what in [
        "read_all",
        "subscribe_all",
        "plain fold",
        "projection rebuild",
        "open a store",
        "full replay",
        "from its snapshot",
    ] {
        assert!(
            read.iter().any(|r| r.contains(what)),
            "missing read-side row {what}: {read:?}"
        );
    }
    for r in report["read"].as_array().unwrap() {
        assert!(
            r["events"].as_u64().unwrap() > 0 && r["events_per_sec"].as_f64().unwrap() > 0.0,
            "{r}"
        );
        let rebuild = r["what"].as_str().unwrap().contains("projection rebuild");
        assert_eq!(r["backend"], "segment", "{r}");
        assert_eq!(
            r["ratio_to_fold"].as_f64().is_some_and(|v| v > 0.0),
            rebuild,
            "a rebuild, and only a rebuild, is set against the fold: {r}"
        );
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("strata durable"),
        "the plot names the contenders"
    );
}

/// `strata bench --postgres`: strata on PostgreSQL and the plain INSERTs
/// run every workload beside the embedded log, every strata-on-PostgreSQL row's events
/// are in its store, and each is set against the plain INSERTs; the read
/// side runs on PostgreSQL too, its rebuild set against its fold. Needs
/// a server: ignored unless `STRATA_POSTGRES_URL` was set at build time.
#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn bench_quick_with_postgres_adds_strata_on_postgres_and_plain_inserts() {
    let url = strata_testkit::postgres_url();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "--quick", "--appends", "40", "--contenders", "durable"])
        .args(["--postgres", &url, "--dir"])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata bench --postgres failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let want: BTreeSet<(u64, String)> = [(1, "distinct"), (4, "distinct"), (1, "hot"), (4, "hot")]
        .into_iter()
        .map(|(w, s)| (w, s.to_string()))
        .collect();
    for contender in ["strata durable", "strata postgres", "plain INSERT postgres"] {
        let workloads: BTreeSet<(u64, String)> = rows
            .iter()
            .filter(|r| r["contender"] == contender)
            .map(|r| {
                let w = &r["workload"];
                (
                    w["writers"].as_u64().unwrap(),
                    w["streams"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(workloads, want, "{contender}");
    }
    for r in rows.iter().filter(|r| r["contender"] == "strata postgres") {
        let events = r["events"].as_u64().unwrap();
        assert!(events > 0, "{r}");
        assert_eq!(
            r["events_in_store"].as_u64(),
            Some(events),
            "acknowledged events are in the store: {r}"
        );
        assert!(r["ratio_to_plain_insert"].as_f64().is_some(), "{r}");
        assert!(r["events_per_flush"].as_f64().unwrap() >= 1.0, "{r}");
        assert!(
            r["ratio_to_naive"].is_null() && r["ratio_to_disk"].is_null(),
            "the local disk's baselines only for the embedded log: {r}"
        );
    }
    for r in rows.iter().filter(|r| r["contender"] == "plain INSERT postgres") {
        assert_eq!(r["events"].as_u64(), Some(40), "{r}");
    }
    // The read side on PostgreSQL too: read_all, the fold and a rebuild
    // set against it.
    let on_postgres: Vec<&serde_json::Value> = report["read"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["backend"] == "postgres")
        .collect();
    for what in ["read_all", "plain fold", "projection rebuild"] {
        let row = on_postgres
            .iter()
            .find(|r| r["what"].as_str().unwrap().contains(what))
            .unwrap_or_else(|| panic!("no PostgreSQL read-side row {what}: {on_postgres:?}"));
        assert!(row["events"].as_u64().unwrap() > 0, "{row}");
    }
    assert!(
        on_postgres
            .iter()
            .any(|r| r["ratio_to_fold"].as_f64().is_some_and(|v| v > 0.0)),
        "{on_postgres:?}"
    );
}
