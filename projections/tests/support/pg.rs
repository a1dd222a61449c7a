//! The PostgreSQL fixture of the projections' tests: `STRATA_POSTGRES_URL`
//! names the server (`scripts/test-postgres.sh` starts a throwaway one and
//! sets it). Without it, or without the `postgres` feature, a PostgreSQL
//! test prints a `SKIPPED` line to stderr and checks nothing; with the
//! variable set, a failure to connect fails the test.

use std::io::Write;

/// The URL of the test database, or `None` after printing (to the real
/// stderr, past the test harness's capture) that the calling test is
/// skipped and how to run it.
pub fn postgres_url() -> Option<String> {
    let why = if !cfg!(feature = "postgres") {
        "built without the `postgres` feature"
    } else {
        match std::env::var("STRATA_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => return Some(url),
            _ => "STRATA_POSTGRES_URL is not set",
        }
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a PostgreSQL test");
    let line = format!(
        "SKIPPED {test}: {why}; run scripts/test-postgres.sh cargo test -p strata-projections --features postgres\n"
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    None
}

#[cfg(feature = "postgres")]
#[allow(unused_imports)]
pub use imp::*;

#[cfg(feature = "postgres")]
mod imp {
    use std::time::Duration;

    use strata_store::{PostgresOptions, PostgresStore, tokio_postgres};

    /// A schema of its own for a test, dropped with it.
    pub struct TestDb {
        pub url: String,
        pub schema: String,
        owned: bool,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if self.owned {
                self.drop_schema();
            }
        }
    }

    impl TestDb {
        /// A fresh schema name, or `None` when the PostgreSQL tests are skipped.
        pub fn new() -> Option<TestDb> {
            let url = super::postgres_url()?;
            Some(TestDb {
                url,
                schema: format!("strata_ptest_{:016x}", rand::random::<u64>()),
                owned: true,
            })
        }

        /// A handle on another process's test schema (a child's), which
        /// that process drops.
        pub fn existing(url: String, schema: String) -> TestDb {
            TestDb {
                url,
                schema,
                owned: false,
            }
        }

        /// Options for a store on this schema: a small pool, a short poll
        /// interval, and an application name `<schema>-<who>` so a test can
        /// terminate exactly one "process"'s connections.
        pub fn options(&self, who: &str) -> PostgresOptions {
            PostgresOptions {
                schema: self.schema.clone(),
                application_name: Some(format!("{}-{who}", self.schema)),
                pool_size: 4,
                poll_interval: Duration::from_millis(100),
                ..PostgresOptions::default()
            }
        }

        /// A store on this schema, as process `who` would open it.
        pub async fn store(&self, who: &str) -> PostgresStore {
            PostgresStore::connect_with(&self.url, self.options(who))
                .await
                .unwrap_or_else(|e| panic!("STRATA_POSTGRES_URL is set, but connecting to it failed: {e}"))
        }

        /// A plain connection for the test's own SQL.
        pub async fn admin(&self) -> tokio_postgres::Client {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .expect("admin connection to the test database");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }

        /// Terminates every connection of process `who` (pool, lock holders,
        /// listeners); returns how many.
        pub async fn kill_connections(&self, who: &str) -> i64 {
            let prefix = format!("{}-{who}", self.schema);
            self.admin()
                .await
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = $1 OR application_name LIKE $1 || '-%'",
                    &[&prefix],
                )
                .await
                .unwrap()
                .get(0)
        }

        /// Drops the schema (from a thread of its own: drop is sync).
        fn drop_schema(&self) {
            let (url, schema) = (self.url.clone(), self.schema.clone());
            let (done, wait) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                            .await;
                    }
                });
                let _ = done.send(());
            });
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }
}
