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
