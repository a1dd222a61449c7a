//! The conformance suite of the life of a stream (soft and hard delete,
//! truncation, retention by count and age, what readers see), written once
//! and run against every backend like `conformance.rs`. See
//! `docs/retention.md`.

mod common;

#[path = "conformance_retention/deletes.rs"]
mod deletes;
#[path = "conformance_retention/readers.rs"]
mod readers;
#[path = "conformance_retention/retention.rs"]
mod retention;

/// The rules (those of `conformance_retention/*.rs` re-exported) and the
/// helpers they share.
mod suite {
    pub use super::deletes::*;
    pub use super::readers::*;
    pub use super::retention::*;

    use strata_store::{Direction, EventStore, StoreError};

    use crate::common::sid;

    pub(crate) async fn versions(store: &dyn EventStore, s: &str) -> Vec<u64> {
        let events = store
            .read_stream(&sid(s), 1, Direction::Forward, usize::MAX)
            .await
            .unwrap();
        events.iter().map(|e| e.version).collect()
    }

    pub(crate) async fn backward(store: &dyn EventStore, s: &str, limit: usize) -> Vec<u64> {
        let events = store
            .read_stream(&sid(s), u64::MAX, Direction::Backward, limit)
            .await
            .unwrap();
        events.iter().map(|e| e.version).collect()
    }

    pub(crate) async fn all_of(store: &dyn EventStore, s: &str) -> Vec<u64> {
        let events = store.read_all(0, usize::MAX).await.unwrap();
        events
            .iter()
            .filter(|e| e.stream_id.as_str() == s)
            .map(|e| e.version)
            .collect()
    }

    pub(crate) fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, actual: u64) {
        match r {
            Err(StoreError::WrongExpectedVersion { actual: a, .. }) => assert_eq!(a, actual),
            other => panic!("expected a conflict at {actual}, got {other:?}"),
        }
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:expr $(, $needs:ident)?) => {
        mod $backend {
            conformance!(@tests [$($needs)?] $fixture;
                a_soft_deleted_stream_reads_as_absent_until_written_again,
                old_event_ids_of_a_deleted_stream_are_still_known,
                a_delete_is_an_expected_version_write,
                a_tombstoned_stream_can_never_be_written_again,
                truncation_removes_earlier_events_and_the_version_keeps_counting,
                max_count_keeps_the_newest_events,
                metadata_has_its_own_expected_version,
                the_largest_retention_is_harmless_and_larger_is_refused,
                max_age_removes_old_events,
                subscriptions_skip_removed_events_without_gap_or_stall,
                a_filtered_subscription_checkpoints_past_removed_events,
                a_truncation_for_retention_is_judged_against_the_metadata_version,
                list_streams_leaves_out_deleted_and_metadata_streams,
            );
        }
    };
    (@tests [] $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::$name($fixture).await;
            }
        )*
    };
    (@tests [needs_postgres] $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
            async fn $name() {
                crate::suite::$name($fixture).await;
            }
        )*
    };
}

conformance!(memory, crate::common::Fixture::memory());
conformance!(segment, crate::common::Fixture::segment());
conformance!(postgres, crate::common::Fixture::postgres().await, needs_postgres);
// Every rule again with a scavenge after every write: the removed rows are
// physically deleted, and nothing a reader or a writer sees changes.
conformance!(
    postgres_scavenged,
    crate::common::Fixture::postgres_scavenged().await,
    needs_postgres
);
