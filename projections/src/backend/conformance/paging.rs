//! Reads by range: at most a limit, within bounds, by prefix, and walked a
//! page at a time with a cursor; the backend's own records never show.

use super::fixture::{Fixture, commit, lead};
use crate::backend::Commit;
use crate::codec::Entry;

fn keys(entries: Vec<Entry>) -> Vec<Vec<u8>> {
    entries.into_iter().map(|(k, _)| k).collect()
}

/// Ranges read at most their limit, from their start (inclusive) to their
/// end (exclusive, or the last key), empty when they end before they
/// start; prefixes end where their keys do (also prefixes of `0xff`
/// bytes); a walk that starts each page just after the last key of the
/// one before (`key` + `0`) sees every key once; and the keys a backend
/// keeps beside the model's (checkpoint, event, version) are not entries.
pub(super) async fn ranges_read_at_most_their_limit_within_their_bounds(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    let stored: Vec<Vec<u8>> = [
        &b""[..],
        &[0],
        b"a1",
        b"a2",
        b"a3",
        b"b1",
        b"c",
        b"e",
        b"m",
        b"v",
        &[0xff],
        &[0xff, 0xff, 1],
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    let puts: Vec<(&[u8], Option<&[u8]>)> = stored.iter().map(|k| (&k[..], Some(&b"x"[..]))).collect();
    assert_eq!(commit(&model, &puts, 1, 0).await, Commit::Done);

    assert_eq!(
        keys(model.entries().unwrap()),
        stored,
        "every key, in order, and nothing else"
    );
    let range = |from: &[u8], to: Option<&[u8]>, limit| keys(model.range_limit(from, to, limit).unwrap());
    assert_eq!(range(b"a", Some(b"b"), 2), [b"a1".to_vec(), b"a2".to_vec()]);
    assert_eq!(range(b"a2", None, 100), stored[3..].to_vec(), "to the end");
    assert_eq!(range(b"a2", Some(b"a3"), 100), [b"a2".to_vec()], "the end is exclusive");
    assert_eq!(range(b"a", Some(b"b"), 0), Vec::<Vec<u8>>::new());
    assert_eq!(
        range(b"b", Some(b"a"), 5),
        Vec::<Vec<u8>>::new(),
        "ends before it starts"
    );
    assert_eq!(range(b"a", Some(b"a"), 5), Vec::<Vec<u8>>::new());
    assert_eq!(
        model.range(b"a", Some(b"b")).unwrap(),
        model.range_limit(b"a", Some(b"b"), usize::MAX).unwrap()
    );
    assert_eq!(keys(model.scan_prefix(b"a").unwrap()).len(), 3);
    assert_eq!(
        keys(model.scan_prefix(&[0xff]).unwrap()),
        [vec![0xff], vec![0xff, 0xff, 1]]
    );
    assert_eq!(keys(model.scan_prefix(b"").unwrap()), stored);

    let reader = model.reader();
    for limit in 1..=5 {
        let mut walked = Vec::new();
        let mut from = Vec::new();
        loop {
            let page = keys(reader.range_limit(&from, None, limit).unwrap());
            let Some(last) = page.last() else { break };
            from = last.clone();
            from.push(0);
            let full = page.len() == limit;
            walked.extend(page);
            if !full {
                break;
            }
        }
        assert_eq!(walked, stored, "a walk of pages of {limit}");
    }
}
