//! The tables of a `PostgresStore`, their versioned migrations, and the SQL
//! the store runs against them.

use deadpool_postgres::ClientWrapper;

use crate::error::StoreError;
use crate::pg::{MigrationSet, Schema};

/// The migrations, in order. Each runs once per schema, in the same
/// transaction as the row that records it. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
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
    ),
    (
        2,
        "the life of streams: the state of every stream with a metadata stream",
        r#"
CREATE TABLE {schema}.stream_state (
    stream_id       text    COLLATE "C" NOT NULL,
    truncate_before bigint  NOT NULL CHECK (truncate_before >= 0),
    deleted         boolean NOT NULL,
    tombstoned      boolean NOT NULL,
    max_count       bigint  CHECK (max_count > 0),
    max_age_ms      bigint  CHECK (max_age_ms > 0),
    CONSTRAINT stream_state_pkey PRIMARY KEY (stream_id)
);
COMMENT ON TABLE {schema}.stream_state IS
    'strata: the state of each stream that was deleted, truncated or given a retention; the newest event of its $$ metadata stream, kept in the same transaction. Reads skip the events it removes.';
"#,
    ),
];

/// The first half of the advisory lock key that serialises migrations ("STRA").
const MIGRATION_LOCK_CLASS: i32 = 0x5354_5241;

/// The log's migrations, as a [`MigrationSet`].
const LOG: MigrationSet<'static> = MigrationSet {
    table: "strata_migrations",
    label: "",
    lock_class: MIGRATION_LOCK_CLASS,
    migrations: MIGRATIONS,
};

/// Creates the schema and applies every migration of the log it lacks.
pub(super) async fn migrate(client: &mut ClientWrapper, schema: &str) -> Result<(), StoreError> {
    LOG.apply(client, schema).await
}

/// The columns every read selects, in the order [`super::decode_event`] reads them.
const COLUMNS: &str = "position, stream_id, version, event_id, event_type, payload, metadata, recorded_at, crc";

/// [`COLUMNS`] of the lateral subquery `e` of `read_filtered`.
const EVENT_COLUMNS: &str =
    "e.position, e.stream_id, e.version, e.event_id, e.event_type, e.payload, e.metadata, e.recorded_at, e.crc";

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
    /// `read_filtered`: the examined bound (the head, or the end of the
    /// scan window) and the matching events up to it, in one snapshot.
    pub(super) read_filtered: String,
    pub(super) read_forward: String,
    pub(super) read_backward: String,
    /// The states of the streams `$1` names (those that have one).
    pub(super) states: String,
    /// Inserts or replaces one stream's state.
    pub(super) set_state: String,
    /// A stream's last version and state, for `stream_version`.
    pub(super) stream_head: String,
    /// `list_streams`: $1 the prefix, $2 after (`''`: from the first), $3 limit.
    pub(super) list_streams: String,
    /// The NOTIFY channel that carries the head position after each commit.
    pub(super) channel: String,
}

impl Sql {
    pub(super) fn new(schema: &Schema) -> Result<Sql, StoreError> {
        let (events, head) = (schema.table("events"), schema.table("head"));
        let state = schema.table("stream_state");
        // An event `e` that its stream's state removes (see
        // `StreamState::removes`; `now()` is the transaction's time).
        let kept = format!(
            "NOT EXISTS (SELECT 1 FROM {state} s WHERE s.stream_id = e.stream_id AND (s.tombstoned \
             OR e.version < s.truncate_before \
             OR (s.max_count IS NOT NULL AND e.version + s.max_count <= \
                 (SELECT l.version FROM {events} l WHERE l.stream_id = e.stream_id ORDER BY l.version DESC LIMIT 1)) \
             OR (s.max_age_ms IS NOT NULL AND e.recorded_at + s.max_age_ms * interval '1 millisecond' < now())))"
        );
        Ok(Sql {
            lock_head: format!("SELECT position FROM {head} FOR UPDATE"),
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
            set_head: format!("UPDATE {head} SET position = $1"),
            head: format!("SELECT position FROM {head}"),
            read_all: format!(
                "SELECT {COLUMNS} FROM {events} e WHERE position >= $1 AND {kept} ORDER BY position LIMIT $2"
            ),
            // $1 from, $2 the last position of the window, $3 limit; $4
            // types, $5 type prefixes, $6 streams, $7 stream prefixes, $8
            // categories. An empty group of terms is no condition. The
            // bound is read in the same statement (one snapshot) as the
            // events, so nothing committed later is counted as examined.
            read_filtered: format!(
                "SELECT h.bound, {EVENT_COLUMNS} FROM (SELECT LEAST(position, $2) AS bound FROM {head}) h \
                 LEFT JOIN LATERAL (SELECT {COLUMNS} FROM {events} e WHERE e.position >= $1 AND e.position <= h.bound \
                 AND (cardinality($4::text[]) + cardinality($5::text[]) = 0 \
                      OR e.event_type = ANY($4::text[]) \
                      OR EXISTS (SELECT 1 FROM unnest($5::text[]) p WHERE starts_with(e.event_type, p))) \
                 AND (cardinality($6::text[]) + cardinality($7::text[]) + cardinality($8::text[]) = 0 \
                      OR e.stream_id = ANY($6::text[]) \
                      OR EXISTS (SELECT 1 FROM unnest($7::text[]) p WHERE starts_with(e.stream_id, p)) \
                      OR (strpos(e.stream_id, '-') > 0 AND split_part(e.stream_id, '-', 1) = ANY($8::text[]))) \
                 AND {kept} ORDER BY e.position LIMIT $3) e ON true ORDER BY e.position"
            ),
            read_forward: format!(
                "SELECT {COLUMNS} FROM {events} e WHERE stream_id = $1 AND version >= $2 AND {kept} \
                 ORDER BY version LIMIT $3"
            ),
            read_backward: format!(
                "SELECT {COLUMNS} FROM {events} e WHERE stream_id = $1 AND version <= $2 AND {kept} \
                 ORDER BY version DESC LIMIT $3"
            ),
            states: format!(
                "SELECT stream_id, truncate_before, deleted, tombstoned, max_count, max_age_ms FROM {state} \
                 WHERE stream_id = ANY($1::text[])"
            ),
            set_state: format!(
                "INSERT INTO {state} (stream_id, truncate_before, deleted, tombstoned, max_count, max_age_ms) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::boolean[], $5::bigint[], $6::bigint[]) \
                 ON CONFLICT (stream_id) DO UPDATE SET truncate_before = EXCLUDED.truncate_before, \
                 deleted = EXCLUDED.deleted, tombstoned = EXCLUDED.tombstoned, max_count = EXCLUDED.max_count, \
                 max_age_ms = EXCLUDED.max_age_ms"
            ),
            stream_head: format!(
                "SELECT COALESCE((SELECT version FROM {events} WHERE stream_id = $1 ORDER BY version DESC LIMIT 1), 0), \
                 s.truncate_before, s.deleted, s.tombstoned, s.max_count, s.max_age_ms \
                 FROM (SELECT 1) one LEFT JOIN {state} s ON s.stream_id = $1"
            ),
            // Walks the (stream_id, version) index from the prefix on.
            list_streams: format!(
                "SELECT stream_id, max(version) FROM {events} WHERE stream_id >= $1 AND stream_id > $2 \
                 AND starts_with(stream_id, $1) GROUP BY stream_id ORDER BY stream_id LIMIT $3"
            ),
            channel: schema.channel("head")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
        }
    }
}
