//! The writer lease: one writer per model; a writer without it commits
//! nothing; a lost lease passes to another process.

use tokio::sync::watch;

use super::fixture::{Fixture, commit, entries, pairs};
use crate::backend::Commit;
use crate::model::run_state::RunState;

/// In one process, one runner claims a model; a commit without the lease
/// (before taking it, after giving it up) writes nothing.
pub(super) async fn one_writer_holds_the_lease(f: &impl Fixture) {
    let model = f.open("t").await;
    assert!(model.claim());
    assert!(!model.claim(), "a second writer is refused");
    assert_eq!(
        commit(&model, &[(b"k", Some(b"0"))], 1, 0).await,
        Commit::LeaseLost,
        "not led yet"
    );
    let (_stop, mut stop) = watch::channel(false);
    assert!(model.lead(&mut stop).await.unwrap());
    assert_eq!(model.run_state(), RunState::Running);
    assert_eq!(commit(&model, &[(b"k", Some(b"1"))], 1, 0).await, Commit::Done);
    model.release(RunState::Stopped);
    assert_eq!(commit(&model, &[(b"k", Some(b"2"))], 2, 0).await, Commit::LeaseLost);
    assert_eq!(model.checkpoint(), 1);
    assert_eq!(entries(&model), pairs(&[("k", "1")]));
    assert!(model.claim(), "free once released");
}
