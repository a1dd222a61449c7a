//! The PostgreSQL fixture: a throwaway schema per test on the server named
//! by `STRATA_POSTGRES_URL`, dropped when the test ends.

use std::sync::mpsc;
use std::time::Duration;

use tokio_postgres::NoTls;

/// The variable that names the test server (`scripts/test-postgres.sh`
/// starts one and sets it).
const URL_VAR: &str = "STRATA_POSTGRES_URL";

/// The longest a blocking statement (the schema's drop, a test's own SQL)
/// is waited for: a test that left a transaction open must not hang there.
const BLOCKING_WAIT: Duration = Duration::from_secs(10);

/// The test server's URL, from `STRATA_POSTGRES_URL`.
///
/// Panics when it is not set: a PostgreSQL test runs only when the
/// variable was set when it was built (else it is ignored), so reaching
/// this without it means it was unset between build and run, a failure
/// of the set-up that must not pass quietly.
pub fn postgres_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set, but this PostgreSQL test was built to run (it was set at build time); \
             run it with scripts/test-postgres.sh"
        ),
    }
}

/// A schema of its own for one test (`strata_test_<random>`), on the test
/// server; dropped, with everything in it, when the fixture is.
///
/// Stores opened on it by the test are "processes": each gets an
/// application name `<schema>-<who>`, so a test can find and terminate
/// exactly one of them ([`TestDatabase::kill_connections`]).
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    schema: String,
    /// Whether this fixture drops the schema (not a child's view of its parent's).
    owned: bool,
}

impl TestDatabase {
    /// A fresh schema name on the test server (created by whatever
    /// connects to it first, e.g. a store).
    pub fn new() -> TestDatabase {
        TestDatabase {
            url: postgres_url(),
            schema: format!("strata_test_{:016x}", rand::random::<u64>()),
            owned: true,
        }
    }

    /// Another process's fixture, seen from a child process it started:
    /// the child uses the schema and leaves dropping it to the parent.
    pub fn existing(url: String, schema: String) -> TestDatabase {
        TestDatabase {
            url,
            schema,
            owned: false,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The application name of process `who` on this schema: `<schema>-<who>`.
    pub fn application_name(&self, who: &str) -> String {
        format!("{}-{who}", self.schema)
    }

    /// A plain connection for the test's own SQL (terminating backends,
    /// holding locks, damaging rows); driven on the current runtime.
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("{URL_VAR} is set, but connecting to it failed: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Terminates every connection of process `who` (application name
    /// `<schema>-<who>`, or that followed by `-` and more: its listeners
    /// and lock holders); returns how many.
    pub async fn kill_connections(&self, who: &str) -> i64 {
        self.admin()
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1 OR application_name LIKE $1 || '-%'",
                &[&self.application_name(who)],
            )
            .await
            .expect("terminating a process's connections")
            .get(0)
    }
}

impl TestDatabase {
    /// Runs `sql` (one or more statements) on a connection of its own,
    /// from a synchronous test or from inside a runtime alike; panics with
    /// the statement and the server's answer when it fails.
    pub fn execute_blocking(&self, sql: &str) {
        if let Err(e) = execute_on_a_thread(&self.url, sql.to_string()) {
            panic!("{sql}: {e}");
        }
    }
}

/// Runs `sql` on `url` from a thread of its own with a runtime of its own,
/// and waits for it (at most [`BLOCKING_WAIT`]).
fn execute_on_a_thread(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_string();
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&url, NoTls)
                        .await
                        .map_err(|e| format!("connecting to {URL_VAR} failed: {e}"))?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client.batch_execute(&sql).await.map_err(|e| match e.as_db_error() {
                        Some(db) => format!("{}: {}", db.code().code(), db.message()),
                        None => e.to_string(),
                    })
                })
            });
        let _ = done.send(result);
    });
    wait.recv_timeout(BLOCKING_WAIT)
        .unwrap_or_else(|_| Err(format!("no answer within {BLOCKING_WAIT:?}")))
}

impl Default for TestDatabase {
    fn default() -> Self {
        TestDatabase::new()
    }
}

#[cfg(feature = "postgres")]
impl TestDatabase {
    /// Options for a store on this schema as process `who` opens it: the
    /// schema, its application name, a pool of 4; the rest default.
    pub fn options(&self, who: &str) -> strata_store::PostgresOptions {
        strata_store::PostgresOptions {
            schema: self.schema.clone(),
            application_name: Some(self.application_name(who)),
            pool_size: 4,
            ..strata_store::PostgresOptions::default()
        }
    }

    /// A store with `options` (from [`TestDatabase::options`], changed as
    /// the test needs); a failure to connect fails the test.
    pub async fn connect(&self, options: strata_store::PostgresOptions) -> strata_store::PostgresStore {
        strata_store::PostgresStore::connect_with(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("{URL_VAR} is set, but connecting to it failed: {e}"))
    }

    /// A store on this schema as process `who` opens it.
    pub async fn store(&self, who: &str) -> strata_store::PostgresStore {
        self.connect(self.options(who)).await
    }
}

impl Drop for TestDatabase {
    /// Drops the schema, from a thread of its own (drop is synchronous and
    /// may run on a runtime thread), waiting at most 10 s so a
    /// database used for tests does not fill up.
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        if let Err(e) = execute_on_a_thread(&self.url, drop) {
            eprintln!("strata-testkit: could not drop test schema {}: {e}", self.schema);
        }
    }
}
