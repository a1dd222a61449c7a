//! Generations: a rebuild's generation is invisible until it is swapped
//! in whole; readers keep theirs; the old one is removed after its last
//! reader; a rebuild that is dropped or dies leaves no trace; one rebuild
//! at a time; model versions travel with the checkpoint.

use std::sync::Arc;

use super::fixture::{Fixture, build, commit, entries, lead, pairs, swap, until_stored};
use crate::backend::Commit;
use crate::error::ProjectionError;

/// Readers see the old generation until the swap and the new one after;
/// a reader taken before keeps reading its generation, which is removed
/// once that reader is gone.
pub(super) async fn readers_see_the_old_generation_until_the_swap_and_the_new_one_after(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    assert_eq!(commit(&model, &[(b"k", Some(b"old"))], 2, 1).await, Commit::Done);
    until_stored(f, "t", &[1]).await;
    let reader = model.reader();
    let old = Arc::downgrade(&model.current());

    let mut building = build(&model, &[(b"k", b"new"), (b"only_new", b"1")], 2, 2).await;
    assert_eq!(building.id(), 2);
    until_stored(f, "t", &[1, 2]).await;
    assert_eq!((model.generation(), model.checkpoint()), (1, 2));
    assert_eq!(entries(&model), pairs(&[("k", "old")]), "the rebuild is invisible");

    swap(&model, &mut building, 2).await;
    drop(building);
    assert_eq!((model.generation(), model.checkpoint()), (2, 2));
    assert_eq!(entries(&model), pairs(&[("k", "new"), ("only_new", "1")]));
    assert_eq!(model.model_version().unwrap(), 2);
    assert_eq!(reader.generation(), 1);
    assert_eq!(
        reader.get(b"k").unwrap(),
        Some(b"old".to_vec()),
        "a reader keeps its generation"
    );
    assert_eq!(reader.get(b"only_new").unwrap(), None);
    assert_eq!((reader.checkpoint().unwrap(), reader.model_version().unwrap()), (2, 1));
    assert!(old.upgrade().is_some(), "held by its reader");
    if !model.inner.backend.shared()
        && let Some(stored) = f.stored_generations("t").await
    {
        // (A shared backend's readers read copies: its rows go at once.)
        assert_eq!(stored, [1, 2], "not removed from under its reader");
    }
    drop(reader);
    assert!(old.upgrade().is_none(), "gone with its last reader");
    until_stored(f, "t", &[2]).await;

    // The live writer goes on in the new generation.
    assert_eq!(commit(&model, &[(b"k", Some(b"newer"))], 3, 2).await, Commit::Done);
    if f.durable() {
        drop(model);
        let model = f.open("t").await;
        assert_eq!((model.generation(), model.checkpoint()), (2, 3));
        assert_eq!(entries(&model), pairs(&[("k", "newer"), ("only_new", "1")]));
    }
}

/// A write set staged on a generation that a swap replaced commits
/// nothing, and no new one is handed out on it.
pub(super) async fn a_write_set_of_a_replaced_generation_is_refused(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    let mut stale = model.write_set_on(model.generation(), 0, 0).unwrap();
    stale.put(b"stale".to_vec(), b"1".to_vec());
    let mut building = build(&model, &[(b"new", b"1")], 3, 0).await;
    swap(&model, &mut building, 3).await;
    assert_eq!(model.commit(stale, super::fixture::at(9)).await.unwrap(), Commit::Stale);
    assert_eq!(model.checkpoint(), 3);
    assert_eq!(entries(&model), pairs(&[("new", "1")]));
    assert!(model.write_set_on(1, 3, 0).is_none());
}

/// A rebuild dropped before its swap is removed, and the model readers see
/// never changed.
pub(super) async fn an_abandoned_rebuild_is_removed(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    assert_eq!(commit(&model, &[(b"k", Some(b"v"))], 1, 0).await, Commit::Done);
    let building = build(&model, &[(b"k", b"other")], 1, 0).await;
    let id = building.id();
    until_stored(f, "t", &[1, id]).await;
    drop(building);
    until_stored(f, "t", &[1]).await;
    assert_eq!((model.generation(), model.checkpoint()), (1, 1));
    assert_eq!(entries(&model), pairs(&[("k", "v")]));
    // The model is rebuilt as usual afterwards.
    let mut building = build(&model, &[(b"k", b"rebuilt")], 1, 0).await;
    swap(&model, &mut building, 1).await;
    assert_eq!(entries(&model), pairs(&[("k", "rebuilt")]));
}

/// A rebuild whose process dies leaves the current generation as it was;
/// what it wrote is removed when the model is opened again (durable
/// backends).
pub(super) async fn a_rebuild_that_died_is_removed_when_the_model_is_opened_again(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    assert_eq!(commit(&model, &[(b"k", Some(b"v"))], 1, 0).await, Commit::Done);
    let building = build(&model, &[(b"k", b"rebuilt")], 1, 0).await;
    let id = building.id();
    f.die(building).await;
    assert_eq!(f.stored_generations("t").await, Some(vec![1, id]), "left behind");
    drop(model);

    let model = f.open("t").await;
    assert_eq!((model.generation(), model.checkpoint()), (1, 1));
    assert_eq!(entries(&model), pairs(&[("k", "v")]));
    assert_eq!(f.stored_generations("t").await, Some(vec![1]), "removed on open");
    let mut building = build(&model, &[(b"k", b"rebuilt")], 1, 0).await;
    swap(&model, &mut building, 1).await;
    assert_eq!(entries(&model), pairs(&[("k", "rebuilt")]));
}

/// A second rebuild of a model waits until the first is swapped in or
/// dropped.
pub(super) async fn one_rebuild_of_a_model_at_a_time(f: &impl Fixture) {
    let model = f.open("t").await;
    let first = model.begin_generation().await.unwrap();
    let second = model.begin_generation();
    tokio::pin!(second);
    assert!(futures::poll!(&mut second).is_pending(), "waits for the first rebuild");
    let first_id = first.id();
    drop(first);
    let second = second.await.unwrap();
    until_stored(f, "t", &[1, second.id()]).await;
    assert_ne!(second.id(), 1);
    assert!(second.id() >= first_id);
}

/// Every commit records the model version of the projection that applied
/// it; an empty model fits any version; a rebuild brings its own.
pub(super) async fn model_versions_are_recorded_with_the_checkpoint(f: &impl Fixture) {
    let model = f.open("t").await;
    assert_eq!(model.model_version().unwrap(), 0);
    assert!(model.check_model_version(7).is_ok(), "an empty model fits any version");
    lead(&model).await;
    assert_eq!(commit(&model, &[(b"k", Some(b"v"))], 1, 2).await, Commit::Done);
    assert_eq!(model.model_version().unwrap(), 2);
    assert!(model.check_model_version(2).is_ok());
    assert!(matches!(
        model.check_model_version(3),
        Err(ProjectionError::ModelVersionMismatch {
            stored: 2,
            expected: 3,
            ..
        })
    ));
    let model = if f.durable() {
        drop(model);
        let model = f.open("t").await;
        assert_eq!(model.model_version().unwrap(), 2, "stored with the checkpoint");
        model
    } else {
        model
    };
    let mut building = build(&model, &[(b"k", b"v")], 1, 3).await;
    swap(&model, &mut building, 1).await;
    assert_eq!(model.model_version().unwrap(), 3);
    assert!(model.check_model_version(3).is_ok());
}
