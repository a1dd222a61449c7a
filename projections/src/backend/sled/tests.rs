//! Tests of the sled backend beyond the conformance suite: generations
//! written by older strata, and packed runs against a model.

use super::*;

/// Generation 1 of model `t` in `tables`, written as an older strata
/// wrote it: the checkpoint and an entry, plus `extra`.
fn legacy(tables: &LocalTables, extra: &[(&[u8], &[u8])]) {
    let meta = tables.open_tree(&meta_name("t")).unwrap();
    meta.insert(META_CURRENT, &1u64.to_be_bytes()).unwrap();
    let tree = tables.open_tree(&tree_name("t", 1)).unwrap();
    tree.insert(CHECKPOINT_KEY, &5u64.to_be_bytes()).unwrap();
    tree.insert(data_key(b"k"), b"v".to_vec()).unwrap();
    for (k, v) in extra {
        tree.insert(k, v.to_vec()).unwrap();
    }
}

/// A generation stored before strata recorded model versions and
/// checkpoint events reads as version 0 with no event (which only a
/// projection of version 0 may follow).
#[test]
fn a_generation_without_a_recorded_version_is_version_0() {
    let dir = tempfile::tempdir().unwrap();
    let tables = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
    legacy(&tables, &[]);
    let opened = SledBackend::open(&tables, "t").unwrap();
    assert_eq!(
        opened.current.stored().unwrap(),
        Stored {
            position: 5,
            event_id: None,
            model_version: 0
        }
    );
    assert_eq!(opened.current.get(b"k").unwrap(), Some(b"v".to_vec()));
}

/// A run count that disagrees with the runs stored (too large to be one,
/// naming a run that has no blocks, or leaving a run with blocks out) is
/// [`ProjectionError::Corrupt`] naming it, at open: never a huge
/// allocation, a read per phantom run, or runs silently hidden.
#[test]
fn a_run_count_that_disagrees_with_the_runs_stored_is_corrupt() {
    let block_of_run_0: &[u8] = b"r\0\0\0\0k";
    let (max, huge, one, zero) = (
        (u32::MAX as u64).to_be_bytes(),
        u64::MAX.to_be_bytes(),
        1u64.to_be_bytes(),
        0u64.to_be_bytes(),
    );
    type Extra<'a> = Vec<(&'a [u8], &'a [u8])>;
    let cases: [(&str, Extra); 4] = [
        ("past the maximum", vec![(b"P", &max[..])]),
        ("past u32", vec![(b"P", &huge[..])]),
        ("a run without blocks", vec![(b"P", &one[..])]),
        ("a run left out", vec![(b"P", &zero[..]), (block_of_run_0, &b"x"[..])]),
    ];
    for (case, extra) in cases {
        let dir = tempfile::tempdir().unwrap();
        let tables = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
        legacy(&tables, &extra);
        let opened = SledBackend::open(&tables, "t").map(|_| ());
        assert!(
            matches!(&opened, Err(ProjectionError::Corrupt { key, .. }) if key == "P"),
            "{case}: {opened:?}"
        );
    }
}

/// A stored checkpoint, event id or version of the wrong length is
/// [`ProjectionError::Corrupt`], never a panic.
#[test]
fn stored_numbers_of_the_wrong_length_are_corrupt() {
    for (key, value) in [
        (CHECKPOINT_EVENT_KEY, &[1, 2, 3][..]),
        (MODEL_VERSION_KEY, &[1][..]),
        (CHECKPOINT_KEY, &[0; 9][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tables = LocalTables::open(dir.path(), strata_store::Durability::Buffered).unwrap();
        legacy(&tables, &[(key, value)]);
        let stored = match SledBackend::open(&tables, "t") {
            Ok(opened) => opened.current.stored(),
            Err(e) => Err(e),
        };
        assert!(
            matches!(&stored, Err(ProjectionError::Corrupt { key: k, .. }) if k.as_bytes() == key),
            "{key:?}: {stored:?}"
        );
    }
}

mod packed_runs {
    //! A generation built as packed runs, swapped in, written live and
    //! opened again, against a `BTreeMap` after every step.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use strata_store::Durability;

    use super::*;
    use crate::backend::Checkpoint;

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    /// Keys that overlap across batches (two bytes from a few hundred,
    /// so runs span several blocks) and odd ones (empty, `0xff`, short).
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => (0u16..600).prop_map(|n| n.to_be_bytes().to_vec()),
            1 => prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()], 0..4),
        ]
    }

    /// Mostly small values, some past a block's byte limit, some deletes.
    fn change() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            6 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Some),
            1 => (3_000usize..20_000).prop_map(|n| Some(vec![7; n])),
            3 => Just(None),
        ]
    }

    fn changes(size: std::ops::Range<usize>) -> impl Strategy<Value = Changes> {
        prop::collection::btree_map(key(), change(), size)
    }

    /// A commit to a generation being built: large enough to be a packed
    /// run, or one written a key at a time.
    fn building_changes() -> impl Strategy<Value = Changes> {
        prop_oneof![
            2 => changes(PACK_MIN..PACK_MIN * 5),
            1 => changes(0..40),
        ]
    }

    /// A read to compare: `from`, `to` and `limit` of a range.
    fn read() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>, usize)> {
        (
            key(),
            prop::option::of(key()),
            prop_oneof![1usize..5, 5usize..200, Just(usize::MAX)],
        )
    }

    #[derive(Debug, Clone)]
    struct Case {
        building: Vec<Changes>,
        live: Vec<Changes>,
        after_reopen: Vec<Changes>,
        reads: Vec<(Vec<u8>, Option<Vec<u8>>, usize)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(building_changes(), 1..5),
            prop::collection::vec(changes(0..30), 0..6),
            prop::collection::vec(changes(0..30), 0..3),
            prop::collection::vec(read(), 8..16),
        )
            .prop_map(|(building, live, after_reopen, reads)| Case {
                building,
                live,
                after_reopen,
                reads,
            })
    }

    fn apply(model: &mut Model, changes: &Changes) {
        for (k, v) in changes {
            match v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(k),
            };
        }
    }

    /// Every key of the model and of the case's reads and changes (so
    /// deleted and never-written keys are probed too), and every range.
    fn check(g: &dyn Generation, model: &Model, case: &Case, step: &str) {
        let probes = model.keys().chain(case.reads.iter().map(|(from, _, _)| from)).chain(
            case.building
                .iter()
                .chain(&case.live)
                .chain(&case.after_reopen)
                .flat_map(|c| c.keys()),
        );
        for k in probes {
            assert_eq!(g.get(k).unwrap().as_ref(), model.get(k), "{step}: get {k:?}");
        }
        let all: Vec<Entry> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(g.range(&[], None, usize::MAX).unwrap(), all, "{step}: every entry");
        for (from, to, limit) in &case.reads {
            let expected: Vec<Entry> = match to {
                Some(to) if to <= from => Vec::new(),
                _ => model
                    .range::<Vec<u8>, _>((
                        Bound::Included(from.clone()),
                        to.clone().map_or(Bound::Unbounded, Bound::Excluded),
                    ))
                    .take(*limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            let got = g.range(from, to.as_deref(), *limit).unwrap();
            assert_eq!(got, expected, "{step}: range {from:?}..{to:?} limit {limit}");
        }
    }

    fn batch(changes: Changes, position: u64) -> Batch {
        Batch {
            changes,
            base: position - 1,
            at: Checkpoint {
                position,
                event_id: EventId::new(),
            },
            model_version: 1,
        }
    }

    fn run(case: Case) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut position = 0;
        {
            let tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
            let opened = SledBackend::open(&tables, "t").unwrap();
            let building = rt.block_on(opened.backend.begin_generation()).unwrap();
            for (i, changes) in case.building.iter().enumerate() {
                position += 1;
                let done = rt.block_on(building.commit(batch(changes.clone(), position))).unwrap();
                assert_eq!(done, Commit::Done);
                apply(&mut model, changes);
                check(&*building, &model, &case, &format!("building commit {i}"));
            }
            assert_eq!(
                rt.block_on(opened.backend.swap(&[&building], position)).unwrap(),
                Swapped::Done
            );
            opened.current.retire();
            for (i, changes) in case.live.iter().enumerate() {
                position += 1;
                let done = rt.block_on(building.commit(batch(changes.clone(), position))).unwrap();
                assert_eq!(done, Commit::Done);
                apply(&mut model, changes);
                check(&*building, &model, &case, &format!("live commit {i}"));
            }
            tables.flush().unwrap();
        }
        let tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
        let opened = SledBackend::open(&tables, "t").unwrap();
        let current = opened.current;
        assert_eq!(current.stored().unwrap().position, position);
        check(&*current, &model, &case, "reopened");
        for (i, changes) in case.after_reopen.iter().enumerate() {
            position += 1;
            let done = rt.block_on(current.commit(batch(changes.clone(), position))).unwrap();
            assert_eq!(done, Commit::Done);
            apply(&mut model, changes);
            check(&*current, &model, &case, &format!("commit {i} after reopening"));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Reads of a generation built as packed runs, before and after the
        /// swap and live commits over it, and after opening it again, are
        /// those of a map the same changes were applied to.
        #[test]
        fn packed_runs_and_live_commits_read_as_a_map(case in case()) {
            run(case);
        }
    }

    fn keys_of(tree: &sled::Tree) -> Vec<u8> {
        let mut prefixes: Vec<u8> = tree.iter().keys().map(|k| k.unwrap()[0]).collect();
        prefixes.dedup();
        prefixes
    }

    /// A rebuild writes blocks (`r`) and their count (`P`) for a large
    /// commit, a small one a key at a time (`m` before the first run, `o`
    /// after it), which the next run takes in; live commits over runs
    /// write `o`, a deleted mark only where a run holds the key; a
    /// generation that was never rebuilt keeps `m` keys only.
    #[test]
    fn packed_and_plain_generations_keep_their_own_key_spaces() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
        let opened = SledBackend::open(&tables, "t").unwrap();
        let one = |k: &[u8], v: Option<&[u8]>| Changes::from([(k.to_vec(), v.map(<[u8]>::to_vec))]);
        let commit = |g: &GenerationRef, changes: Changes, position: u64| {
            assert_eq!(rt.block_on(g.commit(batch(changes, position))).unwrap(), Commit::Done);
        };
        let many = |from: u16| -> Changes {
            (from..from + PACK_MIN as u16)
                .map(|n| (n.to_be_bytes().to_vec(), Some(vec![1])))
                .collect()
        };
        let runs = |tree: &sled::Tree| tree.get(packed::RUNS_KEY).unwrap().map(|v| v.to_vec());
        commit(&opened.current, one(b"a", Some(b"1")), 1);
        let plain = tables.open_tree(&tree_name("t", 1)).unwrap();
        assert_eq!(keys_of(&plain), b"cemv", "checkpoint, event, model key, version");

        let building = rt.block_on(opened.backend.begin_generation()).unwrap();
        let rebuilt = tables.open_tree(&tree_name("t", 2)).unwrap();
        commit(&building, one(b"small", Some(b"s")), 1);
        assert_eq!(keys_of(&rebuilt), b"cemv", "a small commit before any run: plain keys");
        commit(&building, many(0), 2);
        assert_eq!(keys_of(&rebuilt), b"Pcerv", "runs, checkpoint, event, blocks, version");
        assert_eq!(runs(&rebuilt), Some(1u64.to_be_bytes().to_vec()));
        assert_eq!(
            building.get(b"small").unwrap(),
            Some(b"s".to_vec()),
            "taken into the run"
        );
        commit(&building, one(&0u16.to_be_bytes(), None), 3);
        assert_eq!(
            runs(&rebuilt),
            Some(1u64.to_be_bytes().to_vec()),
            "a small commit is no run"
        );
        assert_eq!(
            rebuilt.get(packed::overlay_key(&0u16.to_be_bytes())).unwrap().unwrap(),
            packed::OVERLAY_DELETED
        );
        assert_eq!(
            building.get(&0u16.to_be_bytes()).unwrap(),
            None,
            "the overlay hides run 0's entry"
        );
        commit(&building, many(500), 4);
        assert_eq!(runs(&rebuilt), Some(2u64.to_be_bytes().to_vec()));
        assert_eq!(keys_of(&rebuilt), b"Pcerv", "run 1 took the overlay in");
        assert_eq!(
            building.get(&0u16.to_be_bytes()).unwrap(),
            None,
            "run 1's deleted entry hides run 0's"
        );
        assert_eq!(
            rt.block_on(opened.backend.swap(&[&building], 4)).unwrap(),
            Swapped::Done
        );

        // Live: a delete of a key only the overlay holds removes it; of a
        // key a run holds writes a deleted mark.
        commit(&building, one(b"new", Some(b"x")), 5);
        assert_eq!(
            rebuilt.get(packed::overlay_key(b"new")).unwrap().unwrap(),
            &[0, b'x'][..]
        );
        commit(&building, one(b"new", None), 6);
        assert_eq!(rebuilt.get(packed::overlay_key(b"new")).unwrap(), None);
        commit(&building, one(&5u16.to_be_bytes(), None), 7);
        assert_eq!(
            rebuilt.get(packed::overlay_key(&5u16.to_be_bytes())).unwrap().unwrap(),
            packed::OVERLAY_DELETED
        );
        assert_eq!(building.get(&5u16.to_be_bytes()).unwrap(), None);
        assert!(
            rebuilt.iter().keys().all(|k| k.unwrap()[0] != DATA),
            "no plain keys in a packed generation"
        );
    }

    /// A damaged block is [`ProjectionError::Corrupt`] naming the key read,
    /// for a `get` and a range through it, not a panic.
    #[test]
    fn a_damaged_block_is_corrupt() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
        let opened = SledBackend::open(&tables, "t").unwrap();
        let building = rt.block_on(opened.backend.begin_generation()).unwrap();
        let changes = (0u16..2000)
            .map(|n| (n.to_be_bytes().to_vec(), Some(vec![1; 10])))
            .collect();
        assert_eq!(rt.block_on(building.commit(batch(changes, 1))).unwrap(), Commit::Done);
        let tree = tables.open_tree(&tree_name("t", 2)).unwrap();
        let (k, v) = tree.scan_prefix(b"r").nth(1).unwrap().unwrap();
        let mut damaged = v.to_vec();
        damaged[20] ^= 0x10;
        tree.insert(&k, damaged).unwrap();
        let inside = k[5..].to_vec();
        match building.get(&inside) {
            Err(ProjectionError::Corrupt { key, detail, .. }) => {
                assert_eq!(key.as_bytes(), String::from_utf8_lossy(&inside).as_bytes());
                assert!(detail.contains("checksum"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(building.get(&0u16.to_be_bytes()), Ok(Some(_))),
            "other blocks still read"
        );
        assert!(matches!(
            building.range(&[], None, usize::MAX),
            Err(ProjectionError::Corrupt { .. })
        ));
        assert!(
            matches!(building.range(&[], None, 3), Ok(entries) if entries.len() == 3),
            "a range that stops before it"
        );
        tree.insert(&k, &b"\x01"[..]).unwrap();
        assert!(
            matches!(building.get(&inside), Err(ProjectionError::Corrupt { .. })),
            "a truncated block"
        );
    }
}
