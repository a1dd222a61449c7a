//! The hand-written PostgreSQL append, the baseline for strata on PostgreSQL.

use std::sync::Arc;
use std::time::Instant;

use strata_store::tokio_postgres::error::SqlState;

use super::appends::{AppendSpec, Budget, RunStats, Streams, Tickets, payload};

/// The hand-written PostgreSQL append: one connection per writer, each
/// append one autocommitted `INSERT` into a table with
/// `UNIQUE (stream_id, version)` (a duplicate version is the conflict).
/// Durable as PostgreSQL commits are (`synchronous_commit = on`); no
/// batching across writers except what the server's own WAL flush shares.
/// What a team would write by hand; what it does not give: idempotent
/// retries, multi-stream atomicity, a global order a subscriber can follow.
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

    /// Runs appends of `spec` by `spec.writers` writers (at most the number
    /// of connections) within `budget`; `run` distinguishes the streams of
    /// repeated runs.
    ///
    /// - [`Streams::Distinct`]: each writer on a stream of its own, the
    ///   version counted on the client, an append's events in one
    ///   multi-row `INSERT` (one autocommitted statement: all or nothing).
    /// - [`Streams::Hot`]: every writer on one stream: read the stream's
    ///   version (`max(version)`), insert the versions after it; a unique
    ///   violation is the conflict (counted), and the writer reads again.
    pub async fn run(
        &self,
        spec: AppendSpec,
        budget: Budget,
        run: u64,
    ) -> Result<RunStats, strata_store::tokio_postgres::Error> {
        let data = payload(spec.event_bytes);
        let insert = format!(
            "INSERT INTO {} (stream_id, version, event_type, payload) \
             SELECT $1, v, $3, $4 FROM generate_series($2::bigint, $2::bigint + $5::bigint - 1) AS v",
            self.table
        );
        let version = format!(
            "SELECT coalesce(max(version), 0) FROM {} WHERE stream_id = $1",
            self.table
        );
        let writers = spec.writers.min(self.clients.len());
        let tickets = Tickets::new(budget);
        let mut tasks = Vec::with_capacity(writers);
        for w in 0..writers {
            let (client, data, insert, version, tickets) = (
                self.clients[w].clone(),
                data.clone(),
                insert.clone(),
                version.clone(),
                tickets.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let insert = client.prepare(&insert).await?;
                let read_version = client.prepare(&version).await?;
                let stream = match spec.streams {
                    Streams::Distinct => format!("naive-{run}-{w}"),
                    Streams::Hot => format!("naive-{run}-hot"),
                };
                let n = spec.events_per_append as i64;
                let mut stats = RunStats::default();
                let mut next = 1i64;
                while tickets.next() {
                    let t = Instant::now();
                    loop {
                        if spec.streams == Streams::Hot {
                            next = client.query_one(&read_version, &[&stream]).await?.get::<_, i64>(0) + 1;
                        }
                        match client
                            .execute(&insert, &[&stream, &next, &"BenchEvent", &&data[..], &n])
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => stats.conflicts += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    next += n;
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
