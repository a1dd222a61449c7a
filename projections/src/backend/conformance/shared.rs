//! What only a backend shared by several processes (PostgreSQL) does:
//! another process's copy follows the writer; the lease passes between
//! processes.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::fixture::{Fixture, PgFixture, build, commit, entries, lead, pairs, swap};
use crate::backend::Commit;
use crate::error::ProjectionError;
use crate::model::building::Building;
use crate::model::run_state::RunState;
use crate::model::store::ModelStore;

/// A backend that several processes share.
#[async_trait]
pub(super) trait SharedFixture: Fixture {
    /// Opens model `name` as another process does.
    async fn open_elsewhere(&self, name: &str) -> ModelStore;

    /// Ends the sessions of this process that hold locks (the writer
    /// lease, a rebuild's lock) without telling it, as a lost connection
    /// does; returns how many.
    async fn end_lock_sessions(&self) -> i64;
}

#[async_trait]
impl SharedFixture for PgFixture {
    async fn open_elsewhere(&self, name: &str) -> ModelStore {
        let b = PgFixture::process(&self.db, "b").await;
        ModelStore::open_postgres(&b, name).await.unwrap()
    }

    async fn end_lock_sessions(&self) -> i64 {
        self.kill_lock_holders().await
    }
}

/// Another process's copy follows the writer's commits and swaps: its
/// `wait_for` answers, its reads show them (shared backends).
pub(super) async fn another_process_follows_the_writers_commits_and_swaps(f: &impl SharedFixture) {
    let a = f.open("t").await;
    let b = f.open_elsewhere("t").await;
    lead(&a).await;
    assert!(b.claim());
    assert_eq!(b.run_state(), RunState::Standby, "another process writes");
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for(3, Duration::from_secs(60)).await }
    });
    assert_eq!(commit(&a, &[(b"k", Some(b"v"))], 3, 0).await, Commit::Done);
    waiting.await.unwrap().unwrap();
    assert_eq!(entries(&b), pairs(&[("k", "v")]));

    let mut building = build(&a, &[(b"k", b"rebuilt")], 3, 0).await;
    swap(&a, &mut building, 3).await;
    strata_testkit::until("the other process to see the swap", || b.generation() == a.generation()).await;
    assert_eq!(entries(&b), pairs(&[("k", "rebuilt")]));
    assert_eq!(b.checkpoint(), 3);
}

/// Two processes: the second stands by while the first holds the lease; a
/// lease lost with its connection refuses the first's commits, and the
/// second takes over from what was committed (shared backends).
pub(super) async fn a_lost_lease_refuses_commits_and_passes_to_another_process(f: &impl SharedFixture) {
    let a = f.open("t").await;
    let b = f.open_elsewhere("t").await;
    lead(&a).await;
    assert_eq!(commit(&a, &[(b"k", Some(b"a"))], 1, 0).await, Commit::Done);
    assert!(b.claim());
    let (_stop, mut stop) = watch::channel(false);
    let b_leads = tokio::spawn({
        let b = b.clone();
        async move { b.lead(&mut stop).await }
    });
    assert_eq!(b.run_state(), RunState::Standby);

    assert_eq!(f.end_lock_sessions().await, 1, "the writer lease's session");
    assert_eq!(commit(&a, &[(b"k", Some(b"lost"))], 2, 0).await, Commit::LeaseLost);
    assert!(b_leads.await.unwrap().unwrap(), "the other process takes the lease");
    assert_eq!(b.run_state(), RunState::Running);
    assert_eq!((b.checkpoint(), entries(&b)), (1, pairs(&[("k", "a")])));
    assert_eq!(commit(&b, &[(b"k", Some(b"b"))], 2, 0).await, Commit::Done);
    // The first process, leading again, waits: the lease is taken.
    a.step_down();
    assert_eq!(a.run_state(), RunState::Standby);
}

/// A rebuild whose lock went with its session (its process seen as dead)
/// and whose work another process's rebuild removed is refused at the
/// swap: the model stays as it was, and the rebuild that took over swaps
/// in its own.
pub(super) async fn a_rebuild_that_lost_its_lock_is_not_swapped_in(f: &impl SharedFixture) {
    let a = f.open("t").await;
    let b = f.open_elsewhere("t").await;
    lead(&b).await;
    assert_eq!(commit(&b, &[(b"k", Some(b"v"))], 1, 0).await, Commit::Done);
    strata_testkit::until("process a to follow", || a.checkpoint() == 1).await;

    let mut lost = build(&a, &[(b"k", b"lost")], 1, 0).await;
    assert_eq!(f.end_lock_sessions().await, 1, "the rebuild lock's session");
    let mut took_over = build(&b, &[(b"k", b"rebuilt")], 1, 0).await;
    let refused = {
        let _commits = a.lock_commits().await;
        Building::swap_in_all(vec![&mut lost], 1).await
    };
    assert!(
        matches!(refused, Err(ProjectionError::Corrupt { .. })),
        "a generation that is gone is not swapped in: {refused:?}"
    );
    drop(lost);
    assert_eq!((a.generation(), entries(&a)), (1, pairs(&[("k", "v")])));

    swap(&b, &mut took_over, 1).await;
    strata_testkit::until("process a to see the swap", || a.generation() == b.generation()).await;
    assert_eq!(entries(&a), pairs(&[("k", "rebuilt")]));
}
