//! The hand-written PostgreSQL append, the baseline for strata on PostgreSQL.

use std::sync::Arc;
use std::time::Instant;

use super::appends::{AppendSpec, Budget, RunStats, Tickets, payload};

/// The hand-written PostgreSQL append: one connection per writer, each
/// append one autocommitted `INSERT` into a table with
/// `UNIQUE (stream_id, version)` (a duplicate version is the conflict),
/// each writer on a stream of its own with the version counted on the
/// client. Durable as PostgreSQL commits are (`synchronous_commit = on`);
/// no batching across writers except what the server's own WAL flush
/// shares. What a team would write by hand.
pub struct NaivePostgres {
    clients: Vec<Arc<strata_store::tokio_postgres::Client>>,
    table: String,
}

impl NaivePostgres {
    /// Opens `writers` connections to `url` and creates `table` (an
    /// unqualified name, created in the connection's default schema).
    pub async fn connect(url: &str, table: &str, writers: usize) -> Result<Self, strata_store::tokio_postgres::Error> {
        use strata_store::tokio_postgres::{self, NoTls};
        let mut clients = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            clients.push(Arc::new(client));
        }
        clients[0]
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     stream_id text NOT NULL,
                     version bigint NOT NULL,
                     event_type text NOT NULL,
                     payload bytea NOT NULL,
                     recorded_at timestamptz NOT NULL DEFAULT now(),
                     UNIQUE (stream_id, version)
                 )"
            ))
            .await?;
        Ok(NaivePostgres {
            clients,
            table: table.to_string(),
        })
    }

    /// Drops the table.
    pub async fn drop_table(&self) -> Result<(), strata_store::tokio_postgres::Error> {
        self.clients[0]
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await
    }

    /// Runs single-event appends by `spec.writers` writers (at most the
    /// number of connections) within `budget`; `run` distinguishes the
    /// streams of repeated runs.
    pub async fn run(
        &self,
        spec: AppendSpec,
        budget: Budget,
        run: u64,
    ) -> Result<RunStats, strata_store::tokio_postgres::Error> {
        let data = payload(spec.event_bytes);
        let sql = format!(
            "INSERT INTO {} (stream_id, version, event_type, payload) VALUES ($1, $2, $3, $4)",
            self.table
        );
        let writers = spec.writers.min(self.clients.len());
        let tickets = Tickets::new(budget);
        let mut tasks = Vec::with_capacity(writers);
        for w in 0..writers {
            let (client, data, sql, tickets) = (self.clients[w].clone(), data.clone(), sql.clone(), tickets.clone());
            tasks.push(tokio::spawn(async move {
                let statement = client.prepare(&sql).await?;
                let stream = format!("naive-{run}-{w}");
                let mut stats = RunStats::default();
                let mut version = 0i64;
                while tickets.next() {
                    version += 1;
                    let t = Instant::now();
                    client
                        .execute(&statement, &[&stream, &version, &"BenchEvent", &&data[..]])
                        .await?;
                    stats.count(&spec, t.elapsed());
                }
                Ok::<_, strata_store::tokio_postgres::Error>(stats)
            }));
        }
        let mut total = RunStats::default();
        for t in tasks {
            total.merge(t.await.expect("bench writer panicked")?);
        }
        total.elapsed = tickets.start.elapsed();
        Ok(total)
    }
}
