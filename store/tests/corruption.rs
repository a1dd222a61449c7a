//! A damaged record is reported as `StoreError::Corrupt`, never served as an
//! event.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use strata_store::{Direction, EventId, EventStore, ExpectedVersion, NewEvent, SledStore, StoreError, StreamId};

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn event_key(position: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn flip(tree: &sled::Tree, key: &[u8], byte: usize) {
    let mut value = tree.get(key).unwrap().expect("record exists").to_vec();
    let at = byte % value.len();
    value[at] ^= 0x20;
    tree.insert(key, value).unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_any_event_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let s = sid("order-1");
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            (0..3).map(|i| NewEvent::new("T", format!("payload-{i}"))).collect(),
        )
        .await
        .unwrap();
    let tree = store.log_tree_for_tests().clone();
    let len = tree.get(event_key(2)).unwrap().unwrap().len();
    for byte in 0..len {
        flip(&tree, &event_key(2), byte);
        let r = store.read_all(1, 10).await;
        assert!(
            matches!(r, Err(StoreError::Corrupt { .. })),
            "byte {byte}: read_all gave {r:?}"
        );
        let r = store.read_stream(&s, 2, Direction::Forward, 1).await;
        assert!(
            matches!(r, Err(StoreError::Corrupt { .. })),
            "byte {byte}: read_stream gave {r:?}"
        );
        flip(&tree, &event_key(2), byte); // and back
        assert_eq!(store.read_all(1, 10).await.unwrap().len(), 3);
    }
    // Events before the damage are still served.
    flip(&tree, &event_key(2), 7);
    assert_eq!(store.read_all(1, 1).await.unwrap()[0].version, 1);
}

#[tokio::test]
async fn a_flipped_byte_in_the_indexes_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let s = sid("order-1");
    let e = NewEvent::new("T", "x");
    store
        .append(&s, ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .unwrap();
    let tree = store.log_tree_for_tests().clone();

    // The stream index (version -> position).
    let mut skey = vec![b's'];
    skey.extend_from_slice(b"order-1\0");
    skey.extend_from_slice(&1u64.to_be_bytes());
    flip(&tree, &skey, 6);
    let r = store.read_stream(&s, 1, Direction::Forward, 10).await;
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    let r = store.stream_version(&s).await;
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    flip(&tree, &skey, 6);

    // The event id index, read by a retry.
    let mut ikey = vec![b'i'];
    ikey.extend_from_slice(b"order-1\0");
    ikey.extend_from_slice(e.id.as_bytes());
    flip(&tree, &ikey, 9);
    let r = store.append(&s, ExpectedVersion::NoStream, vec![e.clone()]).await;
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    flip(&tree, &ikey, 9);
    let again = store.append(&s, ExpectedVersion::NoStream, vec![e]).await.unwrap();
    assert_eq!(again.stream_version, 1);
}

/// Random damage to sled's own file: whatever sled makes of it, the store
/// either refuses (an error on open or read) or serves exactly the events
/// that were written. Never a changed event.
#[tokio::test]
async fn random_damage_to_the_data_file_never_serves_a_changed_event() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5747_7a7a);
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut written: HashMap<EventId, (String, Vec<u8>)> = HashMap::new();
        {
            let store = SledStore::open(dir.path()).unwrap();
            for i in 0..40 {
                let s = format!("s{}", i % 4);
                let payload: Vec<u8> = (0..200).map(|_| rng.random()).collect();
                let e = NewEvent::new("T", payload.clone());
                written.insert(e.id, (s.clone(), payload));
                store.append(&sid(&s), ExpectedVersion::Any, vec![e]).await.unwrap();
            }
        }
        let path = dir.path().join("db");
        let mut bytes = std::fs::read(&path).unwrap();
        for _ in 0..4 {
            let at = rng.random_range(0..bytes.len());
            bytes[at] ^= 1 << rng.random_range(0..8);
        }
        std::fs::write(&path, &bytes).unwrap();
        let Ok(store) = SledStore::open(dir.path()) else {
            continue; // refusing to open is an acceptable answer
        };
        if let Ok(events) = store.read_all(1, usize::MAX).await {
            for e in events {
                let (s, payload) = written
                    .get(&e.id)
                    .unwrap_or_else(|| panic!("round {round}: an event that was never written: {e:?}"));
                assert_eq!(
                    (e.stream_id.as_str(), &e.payload[..]),
                    (s.as_str(), &payload[..]),
                    "round {round}"
                );
            }
        }
    }
}

/// The segment log: every byte of a record's header and body is covered by
/// a checksum. A flipped byte is `Corrupt` naming the segment file and
/// offset, on open or when the record is read; never an event.
mod segment {
    use std::path::Path;

    use strata_store::{Direction, EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StoreError};

    use super::sid;

    fn open(dir: &Path) -> Result<SegmentStore, StoreError> {
        let options = SegmentOptions {
            segment_bytes: 1 << 20,
            ..SegmentOptions::default()
        };
        SegmentStore::open_with(dir, options)
    }

    /// (offset, header + body length) of each record of a segment file.
    fn records(path: &Path) -> Vec<(usize, usize)> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = Vec::new();
        let mut at = 4096;
        while at + 40 <= bytes.len() && &bytes[at..at + 4] == b"SREC" {
            let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            out.push((at, 40 + body));
            at += (40 + body).div_ceil(8) * 8;
        }
        out
    }

    fn flip(path: &Path, at: usize) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at as u64).unwrap();
        f.write_all_at(&[b[0] ^ 0x20], at as u64).unwrap();
    }

    fn is_named_corrupt<T>(r: &Result<T, StoreError>) -> bool {
        matches!(r, Err(StoreError::Corrupt { location, .. }) if location.contains(".seg at byte offset"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flipped_byte_in_any_segment_record_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let s = sid("order-1");
        {
            let store = open(dir.path()).unwrap();
            // The third record is large, so the fourth starts a new 64 KiB
            // block of the position map: an open checks the records from
            // there on, and the damaged second one is found when read.
            for payload in [
                "payload-0".to_string(),
                "payload-1".into(),
                "x".repeat(70_000),
                "payload-3".into(),
            ] {
                store
                    .append(&s, ExpectedVersion::Any, vec![NewEvent::new("T", payload)])
                    .await
                    .unwrap();
            }
        }
        let seg = dir.path().join("log").join("0000000001.seg");
        let (at, len) = records(&seg)[1];
        for byte in at..at + len {
            flip(&seg, byte);
            match open(dir.path()) {
                Err(e) => panic!("byte {byte}: the record is indexed, open should succeed: {e}"),
                Ok(store) => {
                    let r = store.read_all(1, 10).await;
                    assert!(is_named_corrupt(&r), "byte {byte}: read_all gave {r:?}");
                    let r = store.read_stream(&s, 2, Direction::Forward, 1).await;
                    assert!(is_named_corrupt(&r), "byte {byte}: read_stream gave {r:?}");
                    // Events before the damage are still served.
                    assert_eq!(store.read_all(1, 1).await.unwrap()[0].version, 1);
                }
            }
            flip(&seg, byte); // and back
        }
        // With the index gone, open scans the log and refuses the damage.
        flip(&seg, at + 50);
        std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        let r = open(dir.path());
        assert!(is_named_corrupt(&r), "open over a damaged record: {:?}", r.err());
        flip(&seg, at + 50);
        let store = open(dir.path()).unwrap();
        assert_eq!(store.read_all(1, 10).await.unwrap().len(), 4);
    }
}
