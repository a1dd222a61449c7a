//! The `strata` subcommands that work on a store directory, run as the
//! built binary: append and read back, refusals, rebuild.

use std::process::{Command, Output};

fn strata(args: &[&str], data: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn append_then_read_back_and_a_stale_append_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = strata(
        &[
            "append",
            "--stream",
            "account-1",
            "--type",
            "Deposited",
            "--expected",
            "no-stream",
            "{\"amount\":42}",
            "{\"amount\":7}",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("version 2, positions 1..=2"), "{}", stdout(&out));

    let stale = strata(
        &[
            "append",
            "--stream",
            "account-1",
            "--type",
            "Deposited",
            "--expected",
            "0",
            "{}",
        ],
        dir.path(),
    );
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("wrong expected version"),
        "{stale:?}"
    );

    let read = strata(&["read", "--stream", "account-1"], dir.path());
    assert!(read.status.success());
    let lines: Vec<serde_json::Value> = stdout(&read)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "the stale append wrote nothing");
    assert_eq!(lines[0]["payload"], "{\"amount\":42}");
    assert_eq!(lines[1]["version"], 2);

    let back = strata(
        &["read", "--stream", "account-1", "--backward", "--limit", "1"],
        dir.path(),
    );
    let last: serde_json::Value = serde_json::from_str(stdout(&back).lines().next().unwrap()).unwrap();
    assert_eq!(last["version"], 2);
}

#[test]
fn append_refuses_domain_streams_and_bad_expectations() {
    let dir = tempfile::tempdir().unwrap();
    for stream in ["order-1", "stock-tea", "$snapshot-order-1"] {
        let out = strata(&["append", "--stream", stream, "--type", "X", "{}"], dir.path());
        assert!(!out.status.success(), "{stream}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to"), "{out:?}");
    }
    let out = strata(
        &["append", "--stream", "a", "--type", "X", "--expected", "soon", "{}"],
        dir.path(),
    );
    assert!(!out.status.success());
    let read = strata(&["read"], dir.path());
    assert_eq!(stdout(&read), "", "nothing was written");
}

#[test]
fn rebuild_replays_the_log_into_the_read_models() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let written = rt.block_on(async {
        let store = strata::store::SledStore::open(dir.path()).unwrap();
        strata::workload::write_history(&store, 3_000).await.unwrap()
    });
    let out = strata(&["rebuild"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("rebuilt {written} events")),
        "{}",
        stdout(&out)
    );
    // The rebuilt models are there for the next process.
    rt.block_on(async {
        let store = strata::store::SledStore::open(dir.path()).unwrap();
        let projections = strata::projections::Projections::open(&store).unwrap();
        assert_eq!(projections.checkpoint(), written);
        assert_eq!(projections.stock().all().unwrap().len(), strata::workload::HISTORY_SKUS);
    });
}

/// `strata verify DIR` on a segment log: a clean report and exit 0; after a
/// byte of a record is flipped, the damage is named and the exit non-zero.
#[test]
fn verify_reports_a_clean_log_and_names_damage() {
    use strata::store::{EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamId};
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions {
        segment_bytes: 1 << 20,
        ..SegmentOptions::default()
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = SegmentStore::open_with(dir.path(), options).unwrap();
        let s = StreamId::new("order-1").unwrap();
        for i in 0..10 {
            store
                .append(
                    &s,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("T", format!("payload-{i}"))],
                )
                .await
                .unwrap();
        }
    });
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("verify")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        stdout(&ok).contains("10 events") && stdout(&ok).contains("no problems found"),
        "{}",
        stdout(&ok)
    );

    // Flip a byte inside the fifth record's body.
    let seg = dir.path().join("log").join("0000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut at = 4096;
    for _ in 0..4 {
        let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += (40 + body).div_ceil(8) * 8;
    }
    bytes[at + 45] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let bad = verify();
    assert!(!bad.status.success(), "{bad:?}");
    let all = format!("{}{}", stdout(&bad), String::from_utf8_lossy(&bad.stderr));
    assert!(all.contains("0000000001.seg at byte offset"), "{all}");

    let missing = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("verify")
        .arg(dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
}
