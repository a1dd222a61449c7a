//! Segments grow ahead of the writer a slice at a time: a fresh store
//! takes one slice of disk, not a whole segment; the files grow as
//! records arrive, never far past them; everything reads back after a
//! reopen, and the newest segment goes on growing to its full size.

use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamId};

fn log_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_takes_one_slice_and_segments_grow_with_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = SegmentStore::open(dir.path()).unwrap();
    let defaults = SegmentOptions::default();
    let files = log_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].1, defaults.segment_growth_bytes,
        "a fresh store takes one slice"
    );
    assert!(defaults.segment_growth_bytes < defaults.segment_bytes);
    drop(fresh);

    let dir = tempfile::tempdir().unwrap();
    const SLICE: u64 = 64 * 1024;
    const SEGMENT: u64 = 1024 * 1024;
    let options = SegmentOptions {
        segment_bytes: SEGMENT,
        segment_growth_bytes: SLICE,
        prepare_next_segment: false,
        ..SegmentOptions::default()
    };
    let s = StreamId::new("grow-1").unwrap();
    let payload = "x".repeat(1000);
    let mut ids = Vec::new();
    {
        let store = SegmentStore::open_with(dir.path(), options.clone()).unwrap();
        for k in 0..1500 {
            let e = NewEvent::new("E", format!("{k} {payload}"));
            ids.push(e.id);
            store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
            if k % 50 == 0 {
                let usage = store.disk_usage();
                let files = log_files(dir.path());
                assert!(files.iter().all(|(_, len)| *len <= SEGMENT), "{files:?}");
                // (A slice being zero-filled is in the file before it counts.)
                let on_disk: u64 = files.iter().map(|(_, len)| len).sum();
                assert!(
                    usage.log_allocated <= on_disk && on_disk <= usage.log_allocated + SLICE,
                    "{usage:?} {files:?}"
                );
                // Each file runs past its records by a slice ahead, one
                // more while the next is zero-filled, and what did not
                // fit before a roll.
                let slack = files.len() as u64 * (2 * SLICE + 4096);
                assert!(
                    on_disk <= usage.log_bytes + slack,
                    "{k}: {files:?} for {} bytes of records",
                    usage.log_bytes
                );
            }
        }
    }
    let files = log_files(dir.path());
    assert!(files.len() >= 2, "the log rolled: {files:?}");
    let first = files[0].1;
    assert!(
        first > SEGMENT - 4096 && first <= SEGMENT,
        "a closed segment grew to its size: {files:?}"
    );
    // After a reopen, everything reads back and the newest segment grows
    // on (no new segment until it is full).
    let store = SegmentStore::open_with(dir.path(), options).unwrap();
    let before = log_files(dir.path());
    for k in 1500..1600 {
        let e = NewEvent::new("E", format!("{k} {payload}"));
        ids.push(e.id);
        store.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap();
    }
    let after = log_files(dir.path());
    assert_eq!(after.len(), before.len(), "{before:?} -> {after:?}");
    assert!(
        after.last().unwrap().1 > before.last().unwrap().1,
        "{before:?} -> {after:?}"
    );
    let read: Vec<_> = store
        .read_all(0, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(read, ids);
    assert!(store.verify().unwrap().is_ok());
}
