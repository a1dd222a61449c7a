//! Scavenging the segment log (`SegmentStore::scavenge`):
//!
//! - after a scavenge the payloads of deleted, truncated and expired events
//!   are absent from every file of the data directory (the raw bytes are
//!   searched for a marker written in them), what is kept is intact, and a
//!   late retry of an erased append is still recognised by its ids;
//! - a crash at every storage operation of a scavenge (on `SimDisk`)
//!   reopens with the old or the new segment, loses nothing acknowledged
//!   and not removed, and a second scavenge finishes the work;
//! - a scavenge under concurrent appends, reads and a live subscription
//!   skips and duplicates nothing for the subscriber.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_store::{
    DeleteMode, Direction, Durability, EventStore, ExpectedVersion, NewEvent, ScavengeOptions, SegmentOptions,
    SegmentStore, SimDisk, StoreError, StreamId, StreamMetadata,
};

const GONE: &[u8] = b"ERASE-ME-7f3a";
const KEPT: &[u8] = b"KEEP-ME-41c2";

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn payload(marker: &[u8], i: usize) -> Vec<u8> {
    let mut p = marker.to_vec();
    p.extend_from_slice(format!("-{i}-").as_bytes());
    p.extend_from_slice(&[b'.'; 200]);
    p
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes the history every test scavenges: a soft-deleted stream, a
/// hard-deleted one, a truncated one and one with `max_count` 2, all with
/// `GONE` payloads in what they remove, and kept streams with `KEPT`.
/// Returns the appends of the deleted stream (for a late retry).
async fn history(store: &dyn EventStore, rounds: usize) -> Vec<NewEvent> {
    let mut deleted = Vec::new();
    for i in 0..rounds {
        let e = NewEvent::new("Gone", payload(GONE, i));
        deleted.push(e.clone());
        store
            .append(&sid("del-soft"), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
        let e = NewEvent::new("Gone", payload(GONE, i));
        store
            .append(&sid("del-hard"), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
        let e = NewEvent::new("Kept", payload(KEPT, i));
        store
            .append(&sid(&format!("keep-{}", i % 3)), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
        let trunc = if i < rounds - 2 { GONE } else { KEPT };
        let e = NewEvent::new("T", payload(trunc, i));
        store
            .append(&sid("trunc"), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
        let capped = if i < rounds - 2 { GONE } else { KEPT };
        let e = NewEvent::new("C", payload(capped, i));
        store
            .append(&sid("capped"), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
    store
        .delete_stream(&sid("del-soft"), ExpectedVersion::Any, DeleteMode::Soft)
        .await
        .unwrap();
    store
        .delete_stream(&sid("del-hard"), ExpectedVersion::Any, DeleteMode::Hard)
        .await
        .unwrap();
    store
        .truncate_stream(&sid("trunc"), ExpectedVersion::Exact(rounds as u64), rounds as u64 - 1)
        .await
        .unwrap();
    let keep2 = StreamMetadata {
        max_count: Some(2),
        max_age: None,
    };
    store
        .set_stream_metadata(&sid("capped"), ExpectedVersion::NoStream, keep2)
        .await
        .unwrap();
    deleted
}

/// What a reader sees of the log: (stream, version, payload) of every event.
async fn visible(store: &dyn EventStore) -> Vec<(String, u64, Vec<u8>)> {
    let events = store.read_all(0, usize::MAX).await.unwrap();
    events
        .into_iter()
        .map(|e| (e.stream_id.to_string(), e.version, e.payload.to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scavenge_erases_removed_payloads_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions {
        segment_bytes: 16 * 1024,
        ..SegmentOptions::default()
    };
    let store = SegmentStore::open_with(dir.path(), options.clone()).unwrap();
    let deleted = history(&store, 60).await;
    let before = visible(&store).await;
    assert!(
        files(dir.path()).iter().any(|(_, b)| contains(b, GONE)),
        "the marker is on disk before"
    );
    let mut calls = 0;
    let report = store
        .scavenge(ScavengeOptions::default(), &mut |_| calls += 1)
        .await
        .unwrap();
    assert!(calls >= 2 && report.segments_rewritten > 0, "{report:?}");
    assert_eq!(report.events_erased, 60 + 60 + 58 + 58, "{report:?}");
    assert_eq!(report.streams_truncated, 1, "max_count made permanent");
    // Readers see exactly what they saw before (plus the truncation that
    // made max_count permanent).
    let after: Vec<_> = visible(&store)
        .await
        .into_iter()
        .filter(|(s, ..)| !s.starts_with("$$"))
        .collect();
    let before: Vec<_> = before.into_iter().filter(|(s, ..)| !s.starts_with("$$")).collect();
    assert_eq!(after, before);
    // A late retry of an erased append is recognised by its ids.
    let retry = store
        .append(&sid("del-soft"), ExpectedVersion::Exact(0), vec![deleted[0].clone()])
        .await
        .unwrap();
    assert_eq!(retry.stream_version, 1, "answered with the original result");
    assert!(
        store
            .read_stream(&sid("del-soft"), 1, Direction::Forward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Idempotent: a second scavenge erases nothing more.
    let again = store.scavenge(ScavengeOptions::default(), &mut |_| {}).await.unwrap();
    assert_eq!(again.events_erased, 0, "{again:?}");
    drop(store);

    let all = files(dir.path());
    for (path, bytes) in &all {
        assert!(
            !contains(bytes, GONE),
            "{} still holds an erased payload",
            path.display()
        );
    }
    assert!(
        all.iter().any(|(_, b)| contains(b, KEPT)),
        "the search finds what is kept"
    );
    let store = SegmentStore::open_with(dir.path(), options).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let reopened: Vec<_> = visible(&store)
        .await
        .into_iter()
        .filter(|(s, ..)| !s.starts_with("$$"))
        .collect();
    assert_eq!(reopened, before);
}

/// The events of one append share their type and metadata in the record
/// (format 2 writes them once): a truncation inside the append erases the
/// payloads it removes and keeps the metadata the kept events still
/// share; metadata that only removed events held is erased too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncation_inside_one_append_keeps_the_metadata_kept_events_share() {
    const SHARED: &str = "corr-shared-5d1e";
    const GONE_META: &str = "corr-erase-me-9b0c";
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let with = |marker: &[u8], i: usize, corr: &str| {
        let meta = strata_store::Metadata {
            correlation_id: Some(corr.to_string()),
            ..Default::default()
        };
        NewEvent::new("Noted", payload(marker, i)).with_metadata(meta)
    };
    let mixed: Vec<_> = (0..6)
        .map(|i| with(if i < 4 { GONE } else { KEPT }, i, SHARED))
        .collect();
    store
        .append(&sid("mixed"), ExpectedVersion::NoStream, mixed)
        .await
        .unwrap();
    let all_gone: Vec<_> = (0..3).map(|i| with(GONE, i, GONE_META)).collect();
    store
        .append(&sid("all-gone"), ExpectedVersion::NoStream, all_gone)
        .await
        .unwrap();
    store
        .truncate_stream(&sid("mixed"), ExpectedVersion::Exact(6), 5)
        .await
        .unwrap();
    store
        .delete_stream(&sid("all-gone"), ExpectedVersion::Exact(3), DeleteMode::Hard)
        .await
        .unwrap();
    let report = store.scavenge(ScavengeOptions::default(), &mut |_| {}).await.unwrap();
    assert_eq!(report.events_erased, 4 + 3, "{report:?}");
    let kept = store
        .read_stream(&sid("mixed"), 1, Direction::Forward, 10)
        .await
        .unwrap();
    let got: Vec<_> = kept
        .iter()
        .map(|e| (e.version, e.event_type.as_str(), e.metadata.correlation_id.as_deref()))
        .collect();
    assert_eq!(got, vec![(5, "Noted", Some(SHARED)), (6, "Noted", Some(SHARED))]);
    assert_eq!(&kept[0].payload[..], &payload(KEPT, 4)[..]);
    drop(store);
    let all = files(dir.path());
    for (path, bytes) in &all {
        assert!(
            !contains(bytes, GONE),
            "{} still holds an erased payload",
            path.display()
        );
        assert!(
            !contains(bytes, GONE_META.as_bytes()),
            "{} still holds metadata only erased events had",
            path.display()
        );
    }
    assert!(all.iter().any(|(_, b)| contains(b, SHARED.as_bytes())));
    let store = SegmentStore::open(dir.path()).unwrap();
    assert!(store.verify().unwrap().is_ok());
}

/// Two scavenges of one store at once run one after the other: together
/// they erase what one would, and every segment stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scavenges_at_once_run_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions {
        segment_bytes: 16 * 1024,
        ..SegmentOptions::default()
    };
    let store = SegmentStore::open_with(dir.path(), options).unwrap();
    history(&store, 60).await;
    let not_meta =
        |v: Vec<(String, u64, Vec<u8>)>| -> Vec<_> { v.into_iter().filter(|(s, ..)| !s.starts_with("$$")).collect() };
    let before = not_meta(visible(&store).await);
    let (mut pa, mut pb) = (|_| {}, |_| {});
    let (a, b) = tokio::join!(
        store.scavenge(ScavengeOptions::default(), &mut pa),
        store.scavenge(ScavengeOptions::default(), &mut pb),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.events_erased + b.events_erased, 60 + 60 + 58 + 58, "{a:?} {b:?}");
    assert!(
        a.events_erased == 0 || b.events_erased == 0,
        "one did it all: {a:?} {b:?}"
    );
    assert_eq!(not_meta(visible(&store).await), before);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
}

fn sim_options(index: &Path) -> SegmentOptions {
    SegmentOptions {
        durability: Durability::Fsync,
        segment_bytes: 8 * 1024,
        index_dir: Some(index.to_path_buf()),
        ..SegmentOptions::default()
    }
}

fn open_sim(disk: &SimDisk, index: &Path) -> Result<SegmentStore, StoreError> {
    SegmentStore::open_on(Arc::new(disk.clone()), "/sim/store", sim_options(index), &mut |_| {})
}

fn sim_holds(disk: &SimDisk, needle: &[u8]) -> bool {
    disk.files()
        .iter()
        .any(|f| disk.read_file(f).is_some_and(|b| contains(&b, needle)))
}

/// A crash at every storage operation of a scavenge, then a power loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_of_a_scavenge_keeps_old_or_new_segments() {
    let index_root = tempfile::tempdir().unwrap();
    // How many storage operations a whole scavenge takes.
    let steps = {
        let disk = SimDisk::new();
        let store = open_sim(&disk, &index_root.path().join("count")).unwrap();
        history(&store, 12).await;
        let before = disk.ops();
        store.scavenge(ScavengeOptions::default(), &mut |_| {}).await.unwrap();
        disk.ops() - before
    };
    assert!(steps > 10, "a scavenge of several segments: {steps} operations");
    for crash_at in 0..=steps {
        let what = format!("crash after {crash_at} of {steps} operations");
        let disk = SimDisk::new();
        let index = index_root.path().join(format!("index-{crash_at}"));
        let store = open_sim(&disk, &index).unwrap();
        history(&store, 12).await;
        let expected: Vec<_> = visible(&store)
            .await
            .into_iter()
            .filter(|(s, ..)| !s.starts_with("$$"))
            .collect();
        disk.crash_after(crash_at);
        let outcome = store.scavenge(ScavengeOptions::default(), &mut |_| {}).await;
        if outcome.is_ok() {
            assert!(!sim_holds(&disk, GONE), "{what}: a finished scavenge left a payload");
        }
        disk.crash_after(0);
        drop(store);
        disk.power_loss(crash_at);
        let store = open_sim(&disk, &index).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        let got: Vec<_> = visible(&store)
            .await
            .into_iter()
            .filter(|(s, ..)| !s.starts_with("$$"))
            .collect();
        assert_eq!(got, expected, "{what}: what readers see");
        let report = store.verify().unwrap_or_else(|e| panic!("{what}: verify: {e}"));
        assert!(report.is_ok(), "{what}: {report:?}");
        store
            .scavenge(ScavengeOptions::default(), &mut |_| {})
            .await
            .unwrap_or_else(|e| panic!("{what}: the second scavenge: {e}"));
        drop(store);
        assert!(!sim_holds(&disk, GONE), "{what}: the second scavenge left a payload");
        assert!(sim_holds(&disk, KEPT), "{what}");
        let _ = std::fs::remove_dir_all(&index);
    }
}

/// A scavenge while writers append, readers read and a subscriber follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scavenge_under_load_skips_and_duplicates_nothing_for_a_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open_with(
        dir.path(),
        SegmentOptions {
            durability: Durability::Buffered,
            segment_bytes: 16 * 1024,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
    history(&store, 40).await;
    let mut sub = store.subscribe_all(0);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    let e = NewEvent::new("Live", payload(KEPT, i));
                    store
                        .append(&sid(&format!("live-{w}")), ExpectedVersion::Any, vec![e])
                        .await
                        .unwrap();
                    if i % 10 == 0 {
                        let read = store.read_all(0, 50).await.unwrap();
                        assert!(read.windows(2).all(|p| p[0].position < p[1].position));
                    }
                }
            })
        })
        .collect();
    let scavenger = {
        let store = store.clone();
        tokio::spawn(async move { store.scavenge(ScavengeOptions::default(), &mut |_| {}).await })
    };
    for w in writers {
        w.await.unwrap();
    }
    scavenger.await.unwrap().unwrap();
    let head = store.head_position().await.unwrap();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|p| *p < head) {
        let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("the subscriber keeps up")
            .unwrap()
            .unwrap();
        assert!(!contains(&e.payload, GONE), "a removed event reached the subscriber");
        seen.push(e.position);
    }
    let all: Vec<u64> = store
        .read_all(0, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(seen, all, "every visible event once, in order");
    assert_eq!(all.iter().filter(|p| **p > 0).count(), all.len());
}

/// Builds the data directory of the scavenge measurement in
/// `STRATA_SCAVENGE_FIXTURE` (docs/retention.md): 1,000,000 events of 200
/// bytes in 10,000 streams, every tenth stream deleted (10 % removed).
/// `STRATA_SCAVENGE_FIXTURE=/tmp/scav cargo test --release -p strata-store --test scavenge -- --ignored build_the_measurement_fixture`,
/// then `strata scavenge /tmp/scav`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement fixture: set STRATA_SCAVENGE_FIXTURE to a directory and run with --ignored"]
async fn build_the_measurement_fixture() {
    let dir = std::env::var("STRATA_SCAVENGE_FIXTURE").expect("STRATA_SCAVENGE_FIXTURE names a directory");
    let store = SegmentStore::open_with(
        &dir,
        SegmentOptions {
            durability: Durability::Buffered,
            ..SegmentOptions::default()
        },
    )
    .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for s in (t..10_000).step_by(8) {
                    let events = (0..100)
                        .map(|i| NewEvent::new("Reading", payload(KEPT, i)[..200].to_vec()))
                        .collect();
                    store
                        .append(&sid(&format!("s-{s}")), ExpectedVersion::NoStream, events)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for s in (0..10_000).step_by(10) {
        store
            .delete_stream(&sid(&format!("s-{s}")), ExpectedVersion::Exact(100), DeleteMode::Soft)
            .await
            .unwrap();
    }
    assert_eq!(store.head_position().await.unwrap(), 1_000_000 + 1_000);
}
