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
