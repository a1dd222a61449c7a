//! The read-model backends' conformance suite: every property of the
//! contract on [`ModelBackend`](super::ModelBackend) and
//! [`Generation`](super::Generation), written once (in the files beside
//! this one) and run on every backend: memory, sled and PostgreSQL (the
//! last ignored unless `STRATA_POSTGRES_URL` was set at build time;
//! `scripts/test-postgres.sh cargo test -p strata-projections --features
//! postgres conformance` runs it).
//!
//! A test that needs what a backend does not have is not instantiated for
//! it: memory keeps nothing across an open and cannot fail a commit; only
//! PostgreSQL is shared by processes.

mod commits;
mod fixture;
mod generations;
mod lease;
mod paging;
#[cfg(feature = "postgres")]
mod shared;

/// One `#[tokio::test]` per property, on the fixture `$fixture`, each with
/// the attributes in brackets.
macro_rules! conformance {
    ($fixture:expr; $attrs:tt; $($module:ident::$test:ident),* $(,)?) => {
        $( conformance!(@one $fixture; $attrs; $module::$test); )*
    };
    (@one $fixture:expr; [$(#[$attr:meta])*]; $module:ident::$test:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $test() {
            let fixture = $fixture;
            super::$module::$test(&fixture).await;
        }
    };
}

/// [`conformance!`] with the tests every backend passes, and `$extra`.
macro_rules! every_backend {
    ($fixture:expr; $attrs:tt; $($extra:ident::$test:ident),* $(,)?) => {
        conformance!($fixture; $attrs;
            commits::a_commit_writes_the_changes_and_the_checkpoint_together,
            commits::a_batch_staged_on_a_moved_checkpoint_writes_nothing,
            commits::wait_for_reads_your_writes,
            generations::readers_see_the_old_generation_until_the_swap_and_the_new_one_after,
            generations::a_write_set_of_a_replaced_generation_is_refused,
            generations::an_abandoned_rebuild_is_removed,
            generations::one_rebuild_of_a_model_at_a_time,
            generations::model_versions_are_recorded_with_the_checkpoint,
            lease::one_writer_holds_the_lease,
            paging::ranges_read_at_most_their_limit_within_their_bounds,
            $($extra::$test),*
        );
    };
}

mod memory {
    use super::fixture::MemoryFixture;

    every_backend!(MemoryFixture; [];);
}

mod sled {
    use super::fixture::SledFixture;

    every_backend!(SledFixture::new(); [];
        commits::a_failed_commit_leaves_neither_changes_nor_checkpoint,
        generations::a_rebuild_that_died_is_removed_when_the_model_is_opened_again,
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::fixture::PgFixture;

    every_backend!(PgFixture::new().await;
        [#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]];
        commits::a_failed_commit_leaves_neither_changes_nor_checkpoint,
        generations::a_rebuild_that_died_is_removed_when_the_model_is_opened_again,
        shared::another_process_follows_the_writers_commits_and_swaps,
        shared::a_lost_lease_refuses_commits_and_passes_to_another_process,
        shared::a_rebuild_that_lost_its_lock_is_not_swapped_in,
    );
}
