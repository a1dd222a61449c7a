//! What only a backend shared by several processes (PostgreSQL) does:
//! another process's copy follows the writer; the lease passes between
//! processes.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::fixture::{Fixture, PgFixture, build, commit, entries, lead, pairs, swap};
use crate::backend::Commit;
use crate::model::run_state::RunState;
use crate::model::store::ModelStore;

/// A backend that several processes share.
#[async_trait]
pub(super) trait SharedFixture: Fixture {
    /// Opens model `name` as another process does.
    async fn open_elsewhere(&self, name: &str) -> ModelStore;

    /// Takes the writer lease away from this process without telling it,
    /// as a lost connection does.
    async fn break_lease(&self);
}

#[async_trait]
impl SharedFixture for PgFixture {
    async fn open_elsewhere(&self, name: &str) -> ModelStore {
        let b = PgFixture::process(&self.db, "b").await;
        ModelStore::open_postgres(&b, name).await.unwrap()
    }

    async fn break_lease(&self) {
        assert_eq!(self.kill_lock_holders().await, 1, "the writer lease's session");
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

    f.break_lease().await;
    assert_eq!(commit(&a, &[(b"k", Some(b"lost"))], 2, 0).await, Commit::LeaseLost);
    assert!(b_leads.await.unwrap().unwrap(), "the other process takes the lease");
    assert_eq!(b.run_state(), RunState::Running);
    assert_eq!((b.checkpoint(), entries(&b)), (1, pairs(&[("k", "a")])));
    assert_eq!(commit(&b, &[(b"k", Some(b"b"))], 2, 0).await, Commit::Done);
    // The first process, leading again, waits: the lease is taken.
    a.step_down();
    assert_eq!(a.run_state(), RunState::Standby);
}
