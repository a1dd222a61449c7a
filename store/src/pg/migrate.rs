//! Versioned migrations of the tables kept in a schema.

use deadpool_postgres::ClientWrapper;
use tracing::info;

use super::{Schema, error};
use crate::error::StoreError;

/// Versioned migrations of a set of tables kept in a `PostgresStore`'s
/// schema (the log's own, the read models', the HTTP service's records):
/// each set records what it applied in a table of its own.
#[derive(Clone, Copy, Debug)]
pub struct MigrationSet<'a> {
    /// The table that records the applied versions (created when missing).
    pub table: &'a str,
    /// What the tables are, for errors and logs (`""` for the log).
    pub label: &'a str,
    /// The first key of the transaction-scoped advisory lock that
    /// serialises this set's migrations (the second is the schema's hash).
    pub lock_class: i32,
    /// `(version, description, SQL)`, in order; `{schema}` in the SQL is
    /// replaced by the quoted schema name. Never edit one that has
    /// shipped: add the next.
    pub migrations: &'a [(i32, &'a str, &'a str)],
}

impl MigrationSet<'_> {
    /// Creates the schema and the record table when missing and applies
    /// every migration not yet recorded, in one transaction under the
    /// set's advisory lock, so processes that start at once migrate one
    /// after the other and the later ones find nothing left to do. A schema
    /// migrated by a newer strata (a version beyond the last one known
    /// here) is refused with [`StoreError::IncompatibleSchema`].
    pub async fn apply(&self, client: &mut ClientWrapper, schema: &str) -> Result<(), StoreError> {
        let schema = Schema::new(schema)?;
        let (q, table) = (schema.quoted(), schema.table(self.table));
        let what = if self.label.is_empty() {
            "strata".to_string()
        } else {
            format!("strata {}", self.label)
        };
        let step = |doing: &str, e| error(format!("{doing} ({what} migrations)"), e);
        let tx = client.transaction().await.map_err(|e| step("starting", e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&self.lock_class, &schema.name()],
        )
        .await
        .map_err(|e| step("taking the migration lock", e))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {q};
             CREATE TABLE IF NOT EXISTS {table} (
                 version     integer     NOT NULL PRIMARY KEY,
                 description text        NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(|e| step("creating the schema", e))?;
        let applied: Vec<i32> = tx
            .query(&format!("SELECT version FROM {table} ORDER BY version"), &[])
            .await
            .map_err(|e| step("reading the applied migrations", e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let latest = self.migrations.last().map_or(0, |m| m.0);
        if let Some(&found) = applied.last()
            && found > latest
        {
            return Err(StoreError::IncompatibleSchema {
                schema: if self.label.is_empty() {
                    schema.to_string()
                } else {
                    format!("{schema} ({})", self.label)
                },
                found,
                supported: latest,
            });
        }
        for (version, description, sql) in self.migrations {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(&schema.render(sql))
                .await
                .map_err(|e| step(&format!("applying migration {version}"), e))?;
            tx.execute(
                &format!("INSERT INTO {table} (version, description) VALUES ($1, $2)"),
                &[version, description],
            )
            .await
            .map_err(|e| step(&format!("recording migration {version}"), e))?;
            info!(schema = schema.name(), set = %what, version, description, "applied migration");
        }
        tx.commit().await.map_err(|e| step("committing", e))?;
        Ok(())
    }
}
