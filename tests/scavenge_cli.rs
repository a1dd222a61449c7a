//! `strata scavenge DIR` run as the built binary: a hard-deleted stream's
//! payloads are gone from every file of the directory after it, it reports
//! what it did, and it refuses a directory a running server holds.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use strata_testkit::files_holding;

use common::{Serve, http};

/// Written in the payloads of the stream that is deleted.
const MARKER: &str = "ERASE-ME-cli-5d2e8b17-personal-data";

fn scavenge(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("scavenge")
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn scavenge_erases_a_deleted_stream_and_refuses_a_served_directory() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&["--data", dir.path().to_str().unwrap()], |_| {});
    for i in 0..3 {
        let body = format!(
            r#"[{{"event_id":"{}","event_type":"Note","data":{{"note":"{MARKER} #{i}"}}}}]"#,
            uuid::Uuid::new_v4()
        );
        let (status, r) = http(&serve.addr, "POST", "/streams/person-1", &[], &body);
        assert_eq!(status, 201, "{r}");
        let body = format!(
            r#"[{{"event_id":"{}","event_type":"Reading","data":{{"i":{i}}}}}]"#,
            uuid::Uuid::new_v4()
        );
        assert_eq!(http(&serve.addr, "POST", "/streams/sensor-1", &[], &body).0, 201);
    }
    let (status, r) = http(&serve.addr, "DELETE", "/streams/person-1?hard=true", &[], "");
    assert_eq!(status, 200, "{r}");

    // The server holds the directory: refused, with what to do instead.
    let refused = scavenge(dir.path());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr.contains("already open") && stderr.contains("POST /admin/scavenge"),
        "{stderr}"
    );
    assert!(
        !files_holding(dir.path(), MARKER.as_bytes()).is_empty(),
        "nothing was erased"
    );

    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    let out = scavenge(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("scavenged {}", dir.path().display())),
        "{stdout}"
    );
    assert!(stdout.contains("3 of "), "three events erased: {stdout}");
    assert!(stdout.contains("events erased"), "{stdout}");
    assert_eq!(
        files_holding(dir.path(), MARKER.as_bytes()),
        Vec::<String>::new(),
        "the marker is in these files after the scavenge"
    );

    // What was not deleted reads as before.
    let read = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["read", "--stream", "sensor-1", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(read.status.success(), "{read:?}");
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().count(), 3);
}
