//! A subscription on `PostgresStore` that its consumer stops polling in
//! the middle of a read (it took what was ready, e.g. with `ready_chunks`,
//! and works on it) holds none of the store's pooled connections while it
//! waits: the read runs to its end on its own. Before, the read kept its
//! connection until the consumer polled again; a projection runner waiting
//! for a rebuild's commit lock so held one, and the rebuild, needing one,
//! waited out the pool's timeout.
//!
//! The store here has a pool of 2 (the writer holds one): a held
//! connection leaves none for anyone else, and the next read fails after
//! `connect_timeout`.
//!
//! Needs a server: `scripts/test-postgres.sh cargo test -p strata-store
//! --features postgres --test postgres_idle_subscriptions`.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn a_subscription_not_polled_mid_read_holds_no_pooled_connection() {
    #[cfg(feature = "postgres")]
    imp::a_subscription_not_polled_mid_read_holds_no_pooled_connection().await;
}

#[cfg(feature = "postgres")]
mod imp {
    use std::time::Duration;

    use futures::{FutureExt, StreamExt};
    use strata_store::{
        EventFilter, EventStore, ExpectedVersion, PostgresOptions, SUBSCRIPTION_BATCH, SubscriptionItem,
    };
    use strata_testkit::TestDatabase;

    use crate::common::{evs, sid};

    /// Bound on anything that must happen; reaching it is a stall.
    const STALL: Duration = Duration::from_secs(60);

    pub async fn a_subscription_not_polled_mid_read_holds_no_pooled_connection() {
        let db = TestDatabase::new();
        let store = db
            .connect(PostgresOptions {
                pool_size: 2,
                connect_timeout: Duration::from_secs(2),
                ..db.options("main")
            })
            .await;
        // More than one subscription read's worth, so the next read after
        // the first batch is taken finds events.
        let total = SUBSCRIPTION_BATCH + 40;
        for chunk in 0..total.div_ceil(100) {
            let n = 100.min(total - chunk * 100);
            store
                .append(&sid("s"), ExpectedVersion::Any, evs(&format!("c{chunk}-"), n))
                .await
                .unwrap();
        }

        let mut all = store.subscribe_all(0);
        let mut filtered = store.subscribe_filtered(0, EventFilter::all().event_type("T"));
        for position in 1..=SUBSCRIPTION_BATCH as u64 {
            let e = tokio::time::timeout(STALL, all.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(e.position, position);
            let item = tokio::time::timeout(STALL, filtered.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(item, SubscriptionItem::Event(e));
        }
        // One poll each starts the next read; then nobody polls them.
        let started = [
            all.next().now_or_never().is_none(),
            filtered.next().now_or_never().is_none(),
        ];

        // Both reads are in flight (or done) and the pool's one connection
        // for reads is free for this one, several times over.
        for _ in 0..5 {
            let read = tokio::time::timeout(STALL, store.read_all(1, 1)).await.unwrap();
            assert_eq!(
                read.map(|events| events.len()).map_err(|e| e.to_string()),
                Ok(1),
                "a read while two subscriptions sit unpolled mid-read (started: {started:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // And the subscriptions go on where they were.
        let next = SUBSCRIPTION_BATCH as u64 + 1;
        let e = tokio::time::timeout(STALL, all.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(e.position, next);
        let item = tokio::time::timeout(STALL, filtered.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(item.position(), next);
    }
}
