//! A data directory in a layout this build does not open is refused with
//! an error that names the layout, and nothing in it is changed.

use std::collections::BTreeSet;
use std::path::Path;

use strata_store::{DataLayout, ErrorKind, SegmentStore, StoreError};

/// What the directory holds (names, recursively, with sizes): to check
/// that a refused open changed nothing.
fn snapshot(dir: &Path) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry.path().strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                todo.push(entry.path());
                out.insert((name, 0));
            } else {
                out.insert((name, meta.len()));
            }
        }
    }
    out
}

/// A directory as strata's former `SledStore` left it: a sled database at
/// the top (with its log tree and format marker) and the lock file.
fn old_sled_directory(dir: &Path) {
    let db = sled::open(dir).unwrap();
    let log = db.open_tree("strata-log").unwrap();
    log.insert(b"format", &b"strata-log/1"[..]).unwrap();
    log.insert(b"e\0\0\0\0\0\0\0\x01", &b"an event"[..]).unwrap();
    db.flush().unwrap();
    drop(log);
    drop(db);
    std::fs::write(dir.join("strata.lock"), b"").unwrap();
}

#[test]
fn a_directory_in_the_old_sled_layout_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    old_sled_directory(dir.path());
    let before = snapshot(dir.path());
    let refused = SegmentStore::open(dir.path()).map(|_| ());
    match &refused {
        Err(e @ StoreError::UnsupportedLayout { path, layout }) => {
            assert_eq!(path, dir.path());
            assert_eq!(*layout, DataLayout::Sled);
            assert_eq!(e.kind(), ErrorKind::Incompatible);
            let text = e.to_string();
            assert!(text.contains("sled layout") && text.contains("segment log"), "{text}");
        }
        other => panic!("expected UnsupportedLayout, got {other:?}"),
    }
    assert!(matches!(
        SegmentStore::check_layout(dir.path()),
        Err(StoreError::UnsupportedLayout {
            layout: DataLayout::Sled,
            ..
        })
    ));
    assert_eq!(snapshot(dir.path()), before, "nothing in the directory was changed");
}

#[test]
fn new_empty_and_segment_directories_pass() {
    let dir = tempfile::tempdir().unwrap();
    SegmentStore::check_layout(dir.path().join("absent")).unwrap();
    SegmentStore::check_layout(dir.path()).unwrap();
    drop(SegmentStore::open(dir.path()).unwrap());
    SegmentStore::check_layout(dir.path()).unwrap();
    // Its tables are a sled database too, in tables/: not the old layout.
    let store = SegmentStore::open(dir.path()).unwrap();
    store
        .tables()
        .unwrap()
        .open_tree("t.x")
        .unwrap()
        .insert("k", "v")
        .unwrap();
    drop(store);
    SegmentStore::open(dir.path()).unwrap();
}

/// Rewrites the format version in the header of segment file `path`.
fn set_segment_version(path: &Path, version: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..36]);
    bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A segment in record format 1 (written before the shorthands for a
/// shared event type and metadata) is read, and appended to in format 1,
/// so that the build which wrote it could still read it; the next segment
/// is written in format 2. A segment of a newer format is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_segment_is_read_and_continued_in_format_1() {
    use strata_store::{EventStore, ExpectedVersion, Metadata, NewEvent, SegmentOptions, StreamId};
    const CORR: &str = "corr-format-check-2c7e";
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions {
        segment_bytes: 64 * 1024,
        ..SegmentOptions::default()
    };
    let events = |n: usize| -> Vec<NewEvent> {
        let meta = Metadata {
            correlation_id: Some(CORR.to_string()),
            ..Default::default()
        };
        (0..n)
            .map(|i| NewEvent::new("Noted", format!("{{\"i\":{i}}}")).with_metadata(meta.clone()))
            .collect()
    };
    let stream = StreamId::new("s").unwrap();
    let store = SegmentStore::open_with(dir.path(), options.clone()).unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    drop(store);
    let first = dir.path().join("log").join("0000000001.seg");
    set_segment_version(&first, 1);
    let store = SegmentStore::open_with(dir.path(), options.clone()).unwrap();
    store
        .append(&stream, ExpectedVersion::Exact(1), events(3))
        .await
        .unwrap();
    let count = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        bytes.windows(CORR.len()).filter(|w| *w == CORR.as_bytes()).count()
    };
    assert_eq!(count(&first), 4, "format 1 writes every event's metadata");
    // Fill the first segment so that the log rolls to a second one.
    let big = NewEvent::new("Big", vec![b'x'; 60 * 1024]);
    store
        .append(&stream, ExpectedVersion::Exact(4), vec![big])
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Exact(5), events(3))
        .await
        .unwrap();
    let mut later: Vec<_> = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != first && p.extension().is_some_and(|x| x == "seg"))
        .collect();
    later.sort();
    assert!(!later.is_empty(), "the log rolled");
    let in_later: usize = later.iter().map(|p| count(p)).sum();
    assert_eq!(in_later, 1, "format 2 writes shared metadata once");
    let read = store
        .read_stream(&stream, 1, strata_store::Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 8);
    for e in read.iter().filter(|e| e.event_type == "Noted") {
        assert_eq!(e.metadata.correlation_id.as_deref(), Some(CORR), "event {}", e.version);
    }
    assert!(store.verify().unwrap().is_ok());
    drop(store);

    set_segment_version(later.last().unwrap(), 3);
    let err = SegmentStore::open_with(dir.path(), options)
        .err()
        .expect("a newer format is refused");
    assert!(err.to_string().contains("format version 3"), "{err}");
}
