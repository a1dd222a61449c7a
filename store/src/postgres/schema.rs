//! The tables of a `PostgresStore`, their versioned migrations, and the SQL
//! the store runs against them.

use deadpool_postgres::ClientWrapper;
use tracing::info;

use super::{pg_error, validate_schema_name};
use crate::error::StoreError;

/// The migrations, in order. Each runs once per schema, in the same
/// transaction as the row that records it. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "the log: events with their indexes, and the head row",
    r#"
CREATE TABLE {schema}.events (
    position    bigint      NOT NULL CHECK (position > 0),
    stream_id   text        COLLATE "C" NOT NULL,
    version     bigint      NOT NULL CHECK (version > 0),
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    payload     bytea       NOT NULL,
    metadata    bytea       NOT NULL,
    recorded_at timestamptz NOT NULL,
    crc         integer     NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT events_stream_event_id UNIQUE (stream_id, event_id)
);
COMMENT ON TABLE {schema}.events IS
    'strata event log. Written only by strata: every writer takes the head row lock first, and each row carries a CRC-32.';
CREATE TABLE {schema}.head (
    id       boolean NOT NULL DEFAULT true CHECK (id),
    position bigint  NOT NULL CHECK (position >= 0),
    CONSTRAINT head_pkey PRIMARY KEY (id)
);
COMMENT ON TABLE {schema}.head IS
    'strata: the newest committed position. Appends lock this row for their whole transaction, so positions are assigned in commit order.';
INSERT INTO {schema}.head (id, position) VALUES (true, 0);
"#,
)];

/// The newest migration this build knows.
pub(super) const LATEST_MIGRATION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The first half of the advisory lock key that serialises migrations ("STRA").
const MIGRATION_LOCK_CLASS: i32 = 0x5354_5241;

/// Creates the schema and applies every migration it lacks, under a
/// transaction-scoped advisory lock keyed by the schema name, so processes
/// that start at once migrate one after the other and the later ones find
/// nothing left to do.
pub(super) async fn migrate(client: &mut ClientWrapper, schema: &str) -> Result<(), StoreError> {
    validate_schema_name(schema)?;
    let q = quote_ident(schema);
    let key = crc32fast::hash(schema.as_bytes()) as i32;
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error("starting the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&MIGRATION_LOCK_CLASS, &key])
        .await
        .map_err(|e| pg_error("taking the migration lock", e))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.strata_migrations (
             version     integer     NOT NULL PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(|e| pg_error("creating the schema", e))?;
    let applied: Vec<i32> = tx
        .query(
            &format!("SELECT version FROM {q}.strata_migrations ORDER BY version"),
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the applied migrations", e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(&found) = applied.last()
        && found > LATEST_MIGRATION
    {
        return Err(StoreError::IncompatibleSchema {
            schema: schema.to_string(),
            found,
            supported: LATEST_MIGRATION,
        });
    }
    for (version, description, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(&sql.replace("{schema}", &q))
            .await
            .map_err(|e| pg_error(format!("applying migration {version}"), e))?;
        tx.execute(
            &format!("INSERT INTO {q}.strata_migrations (version, description) VALUES ($1, $2)"),
            &[version, description],
        )
        .await
        .map_err(|e| pg_error(format!("recording migration {version}"), e))?;
        info!(schema, version, description, "applied strata migration");
    }
    tx.commit().await.map_err(|e| pg_error("committing the migration", e))?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns every read selects, in the order [`super::decode_event`] reads them.
const COLUMNS: &str = "position, stream_id, version, event_id, event_type, payload, metadata, recorded_at, crc";

/// The statements of one schema, built once.
pub(super) struct Sql {
    /// Takes the head row lock: every append's first statement.
    pub(super) lock_head: String,
    pub(super) versions: String,
    pub(super) find_ids: String,
    pub(super) insert: String,
    pub(super) set_head: String,
    pub(super) head: String,
    pub(super) read_all: String,
    pub(super) read_forward: String,
    pub(super) read_backward: String,
    pub(super) stream_version: String,
    /// The NOTIFY channel that carries the head position after each commit.
    pub(super) channel: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Sql {
        let q = quote_ident(schema);
        let events = format!("{q}.events");
        Sql {
            lock_head: format!("SELECT position FROM {q}.head FOR UPDATE"),
            versions: format!(
                "SELECT k.stream_id, COALESCE((SELECT e.version FROM {events} e WHERE e.stream_id = k.stream_id \
                 ORDER BY e.version DESC LIMIT 1), 0) FROM unnest($1::text[]) AS k(stream_id)"
            ),
            find_ids: format!(
                "SELECT e.stream_id, e.event_id, e.version, e.position \
                 FROM unnest($1::text[], $2::uuid[]) AS k(stream_id, event_id) \
                 JOIN {events} e ON e.stream_id = k.stream_id AND e.event_id = k.event_id"
            ),
            insert: format!(
                "INSERT INTO {events} ({COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], \
                 $4::uuid[], $5::text[], $6::bytea[], $7::bytea[], $8::timestamptz[], $9::integer[])"
            ),
            set_head: format!("UPDATE {q}.head SET position = $1"),
            head: format!("SELECT position FROM {q}.head"),
            read_all: format!("SELECT {COLUMNS} FROM {events} WHERE position >= $1 ORDER BY position LIMIT $2"),
            read_forward: format!(
                "SELECT {COLUMNS} FROM {events} WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            ),
            read_backward: format!(
                "SELECT {COLUMNS} FROM {events} WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3"
            ),
            stream_version: format!("SELECT version FROM {events} WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"),
            channel: format!("strata.{schema}.head"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("strata"), "\"strata\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
        }
    }
}
