//! A damaged record is reported as `StoreError::Corrupt`, never served as an
//! event.

use strata_store::StreamId;

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
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
