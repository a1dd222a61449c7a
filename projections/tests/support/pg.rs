//! The projections' PostgreSQL tests on strata-testkit's fixture: a store
//! as a "process" opens it, with a short poll interval so followers catch
//! up quickly when a notification is lost.

use std::time::Duration;

use strata_store::{PostgresOptions, PostgresStore};
use strata_testkit::TestDatabase;

/// A store on `db`'s schema as process `who` opens it (see
/// [`TestDatabase::options`]), polling every 100 ms.
pub async fn store(db: &TestDatabase, who: &str) -> PostgresStore {
    db.connect(PostgresOptions {
        poll_interval: Duration::from_millis(100),
        ..db.options(who)
    })
    .await
}

/// [`store`] with a pool of `pool_size` connections.
pub async fn store_with_pool(db: &TestDatabase, who: &str, pool_size: usize) -> PostgresStore {
    db.connect(PostgresOptions {
        poll_interval: Duration::from_millis(100),
        pool_size,
        ..db.options(who)
    })
    .await
}
