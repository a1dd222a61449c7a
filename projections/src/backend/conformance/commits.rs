//! Commits: a batch and its checkpoint written together, or neither; the
//! compare-and-set on the checkpoint a batch was staged on; read your
//! writes, in this process and in another.

use std::time::Duration;

use tokio::sync::watch;

use super::fixture::{Fixture, POISON, at, commit, entries, lead, pairs};
use crate::backend::Commit;
use crate::error::ProjectionError;
use crate::model::run_state::RunState;

/// The changes and the checkpoint (position, event, model version) land
/// in one commit; staged changes stay invisible until then; all of it is
/// there after the model is opened again.
pub(super) async fn a_commit_writes_the_changes_and_the_checkpoint_together(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    let mut ws = model.write_set_on(model.generation(), 0, 3).unwrap();
    ws.put(b"k".to_vec(), b"v".to_vec());
    ws.put(b"gone".to_vec(), b"x".to_vec());
    assert_eq!(
        ws.get(b"k").unwrap(),
        Some(b"v".to_vec()),
        "a write set reads its own changes"
    );
    assert_eq!(
        model.get(b"k").unwrap(),
        None,
        "staged changes are invisible to readers"
    );
    let first = at(7);
    assert_eq!(model.commit(ws, first).await.unwrap(), Commit::Done);
    assert_eq!(entries(&model), pairs(&[("gone", "x"), ("k", "v")]));
    assert_eq!(model.checkpoint(), 7);
    assert_eq!(model.stored_checkpoint().unwrap(), (7, Some(first.event_id)));
    assert_eq!(model.model_version().unwrap(), 3);

    // A delete is a change like any other.
    assert_eq!(
        commit(&model, &[(b"gone", None), (b"k", Some(b"w"))], 9, 3).await,
        Commit::Done
    );
    assert_eq!(entries(&model), pairs(&[("k", "w")]));
    let stored = model.stored_checkpoint().unwrap();
    assert_eq!(stored.0, 9);
    if f.durable() {
        drop(model);
        let model = f.open("t").await;
        assert_eq!(model.checkpoint(), 9);
        assert_eq!(model.stored_checkpoint().unwrap(), stored);
        assert_eq!(model.model_version().unwrap(), 3);
        assert_eq!(entries(&model), pairs(&[("k", "w")]));
    }
}

/// A batch staged on a checkpoint that another commit has since moved is
/// refused whole (it would apply the events in between a second time), and
/// so is a batch that would not move the checkpoint forward.
pub(super) async fn a_batch_staged_on_a_moved_checkpoint_writes_nothing(f: &impl Fixture) {
    let model = f.open("t").await;
    lead(&model).await;
    let generation = model.generation();
    let mut late = model.write_set_on(generation, 0, 0).unwrap();
    late.put(b"late".to_vec(), b"1".to_vec());
    assert_eq!(commit(&model, &[(b"first", Some(b"1"))], 5, 0).await, Commit::Done);
    assert_eq!(model.commit(late, at(8)).await.unwrap(), Commit::Stale);
    assert_eq!(model.checkpoint(), 5);
    assert_eq!(model.stored_checkpoint().unwrap().0, 5);
    assert_eq!(entries(&model), pairs(&[("first", "1")]), "nothing of the late batch");

    let mut back = model.write_set_on(generation, 5, 0).unwrap();
    back.put(b"back".to_vec(), b"1".to_vec());
    assert_eq!(model.commit(back, at(5)).await.unwrap(), Commit::Stale);
    assert_eq!(model.checkpoint(), 5);
    assert_eq!(entries(&model), pairs(&[("first", "1")]));
}

/// A commit that fails inside the storage leaves neither its changes nor
/// its checkpoint, in the handle and in the storage; the same batch goes
/// through once the storage is well again.
pub(super) async fn a_failed_commit_leaves_neither_changes_nor_checkpoint(f: &impl Fixture) {
    let model = f.open("fails").await;
    lead(&model).await;
    assert_eq!(commit(&model, &[(b"k", Some(b"1"))], 3, 0).await, Commit::Done);
    assert!(f.fail_commits("fails", true).await, "the backend can fail a commit");
    let staged = |model: &crate::model::store::ModelStore| {
        let mut ws = model.write_set_on(model.generation(), 3, 0).unwrap();
        ws.put(b"k".to_vec(), b"2".to_vec());
        ws.put(POISON.to_vec(), b"x".to_vec());
        ws
    };
    let failed = model.commit(staged(&model), at(6)).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(model.checkpoint(), 3);
    assert_eq!(model.stored_checkpoint().unwrap().0, 3);
    assert_eq!(entries(&model), pairs(&[("k", "1")]));
    if f.durable() {
        let again = f.open("fails").await;
        assert_eq!((again.checkpoint(), entries(&again)), (3, pairs(&[("k", "1")])));
    }

    f.fail_commits("fails", false).await;
    // A failed commit may have cost the lease (PostgreSQL does not use its
    // connection again): take it again, as the runner would on a restart.
    let (_stop, mut stop) = watch::channel(false);
    assert!(model.lead(&mut stop).await.unwrap());
    assert_eq!(model.commit(staged(&model), at(6)).await.unwrap(), Commit::Done);
    assert_eq!(model.checkpoint(), 6);
    assert_eq!(entries(&model), pairs(&[("k", "2"), ("poison", "x")]));
}

/// `wait_for` answers once the position is committed, times out when it is
/// not, and answers at once when no writer follows the model.
pub(super) async fn wait_for_reads_your_writes(f: &impl Fixture) {
    let model = f.open("t").await;
    assert!(matches!(
        model.wait_for(1, Duration::from_secs(60)).await,
        Err(ProjectionError::NotRunning { position: 1, .. })
    ));
    lead(&model).await;
    let waiting = tokio::spawn({
        let model = model.clone();
        async move { model.wait_for(4, Duration::from_secs(60)).await }
    });
    assert_eq!(commit(&model, &[(b"k", Some(b"v"))], 4, 0).await, Commit::Done);
    waiting.await.unwrap().unwrap();
    assert!(matches!(
        model.wait_for(5, Duration::from_millis(20)).await,
        Err(ProjectionError::Timeout {
            position: 5,
            applied: 4,
            ..
        })
    ));
    model.release(RunState::Stopped);
    assert!(matches!(
        model.wait_for(5, Duration::from_secs(60)).await,
        Err(ProjectionError::NotRunning { applied: 4, .. })
    ));
}
