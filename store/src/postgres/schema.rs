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
    (
        3,
        "scavenging: the ids of erased events, without their payloads",
        r#"
CREATE TABLE {schema}.erased_events (
    position  bigint NOT NULL CHECK (position > 0),
    stream_id text   COLLATE "C" NOT NULL,
    version   bigint NOT NULL CHECK (version > 0),
    event_id  uuid   NOT NULL,
    CONSTRAINT erased_events_pkey PRIMARY KEY (position),
    CONSTRAINT erased_events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT erased_events_stream_event_id UNIQUE (stream_id, event_id)
);
COMMENT ON TABLE {schema}.erased_events IS
    'strata: what a scavenge keeps of each event it deleted from events (no payload, no metadata, no type): its id answers a late retry of its append, its version keeps the stream''s version counting.';
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

/// The columns every read selects, in the order [`super::rows::decode_event`] reads them.
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
    /// `list_streams` with a bound above: $4 the prefix's successor.
    pub(super) list_streams_below: String,
    /// How many streams a scavenge examines.
    pub(super) scavenge_total: String,
    /// A page of the streams a scavenge examines: $1 after, $2 limit.
    pub(super) scavenge_streams: String,
    /// Erases one batch of removed events: $1 streams, $2 at most.
    pub(super) scavenge_batch: String,
    /// A page of the streams whose retention a scavenge makes permanent.
    pub(super) retention_streams: String,
    /// The NOTIFY channel that carries the head position after each commit.
    pub(super) channel: String,
}

impl Sql {
    pub(super) fn new(schema: &Schema) -> Result<Sql, StoreError> {
        let (events, head) = (schema.table("events"), schema.table("head"));
        let state = schema.table("stream_state");
        let erased = schema.table("erased_events");
        // The last version ever written to the stream `$stream`: in
        // `events`, or (once a scavenge erased every event of it) in
        // `erased_events`. Each lookup is one step down a (stream_id, version) index.
        let last_version = |stream: &str| {
            format!(
                "GREATEST(COALESCE((SELECT l.version FROM {events} l WHERE l.stream_id = {stream} \
                 ORDER BY l.version DESC LIMIT 1), 0), COALESCE((SELECT l.version FROM {erased} l \
                 WHERE l.stream_id = {stream} ORDER BY l.version DESC LIMIT 1), 0))"
            )
        };
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
                "SELECT k.stream_id, {last} FROM unnest($1::text[]) AS k(stream_id)",
                last = last_version("k.stream_id")
            ),
            // An id is known while its event is in `events`, and after a
            // scavenge erased it, in `erased_events`.
            find_ids: format!(
                "SELECT e.stream_id, e.event_id, e.version, e.position \
                 FROM unnest($1::text[], $2::uuid[]) AS k(stream_id, event_id) \
                 JOIN {events} e ON e.stream_id = k.stream_id AND e.event_id = k.event_id \
                 UNION ALL SELECT x.stream_id, x.event_id, x.version, x.position \
                 FROM unnest($1::text[], $2::uuid[]) AS k(stream_id, event_id) \
                 JOIN {erased} x ON x.stream_id = k.stream_id AND x.event_id = k.event_id"
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
                "SELECT {last}, s.truncate_before, s.deleted, s.tombstoned, s.max_count, s.max_age_ms \
                 FROM (SELECT 1) one LEFT JOIN {state} s ON s.stream_id = $1",
                last = last_version("$1")
            ),
            list_streams: list_streams(&events, &erased, &state, false, &last_version),
            list_streams_below: list_streams(&events, &erased, &state, true, &last_version),
            scavenge_total: format!("SELECT count(*) FROM {state} WHERE tombstoned OR truncate_before > 1"),
            scavenge_streams: format!(
                "SELECT stream_id FROM {state} WHERE (tombstoned OR truncate_before > 1) AND stream_id > $1 \
                 ORDER BY stream_id LIMIT $2"
            ),
            // One batch: at most $2 events of the streams $1 that their
            // state removes for good (tombstoned, or below the truncation)
            // leave `events`, their ids go to `erased_events`, in one
            // statement (one transaction). A row another scavenge deleted
            // meanwhile is skipped by the DELETE's recheck. No ORDER BY: the
            // index walk stops after $2 rows instead of sorting them all.
            scavenge_batch: format!(
                "WITH gone AS (SELECT e.position FROM {state} s JOIN {events} e ON e.stream_id = s.stream_id \
                 WHERE s.stream_id = ANY($1::text[]) AND (s.tombstoned OR e.version < s.truncate_before) \
                 LIMIT $2), \
                 moved AS (DELETE FROM {events} e USING gone g WHERE e.position = g.position \
                 RETURNING e.position, e.stream_id, e.version, e.event_id, \
                 octet_length(e.payload) + octet_length(e.metadata) AS bytes), \
                 kept AS (INSERT INTO {erased} (position, stream_id, version, event_id) \
                 SELECT position, stream_id, version, event_id FROM moved) \
                 SELECT count(*), COALESCE(sum(bytes), 0)::bigint FROM moved"
            ),
            // The streams whose retention removes events ($1: after this
            // stream id, $2 at most): their state, their metadata version
            // and last version, and the first version their retention keeps
            // (after the last when it keeps none).
            retention_streams: format!(
                "SELECT s.stream_id, s.truncate_before, {meta} AS meta_version, {last} AS last, \
                 COALESCE((SELECT min(e.version) FROM {events} e WHERE e.stream_id = s.stream_id AND {kept}), \
                 {last} + 1) AS first_kept \
                 FROM {state} s WHERE NOT s.tombstoned AND (s.max_count IS NOT NULL OR s.max_age_ms IS NOT NULL) \
                 AND s.stream_id > $1 ORDER BY s.stream_id LIMIT $2",
                meta = last_version("'$$' || s.stream_id"),
                last = last_version("s.stream_id")
            ),
            channel: schema.channel("head")?,
        })
    }
}

/// The `list_streams` statement: every stream from `$1` on, after `$2`,
/// that starts with `$1` and is below `$4` when `bounded` (the prefix's
/// successor, where the index range ends), in order, at most `$3`. A stream
/// is listed while it reads as present: not a `$$` metadata stream, not
/// tombstoned, not soft-deleted and unwritten since. Its version is its last
/// one, wherever it is (`events`, or `erased_events` after a scavenge).
///
/// The ids are walked as a skip scan: each step of the recursive query is
/// one probe of the (stream_id, version) index of each table for the next
/// id above the one before, so the walk is ascending. Each row of the walk
/// says whether its stream is listed and how many are listed so far, and
/// the walk stops at the step that lists the `$3`th, however many events
/// each stream has: the walk is bounded by the query itself, not by how
/// PostgreSQL happens to evaluate a `LIMIT` over a recursive query. The
/// rows kept are then ordered explicitly (`ORDER BY stream_id`, a sort of
/// the few rows walked), so a page is the first `$3` listed streams after
/// `$2` and the next page, after its last, goes on where it ended.
fn list_streams(
    events: &str,
    erased: &str,
    state: &str,
    bounded: bool,
    last_version: &dyn Fn(&str) -> String,
) -> String {
    let upper = |column: &str| {
        if bounded {
            format!("AND {column} < $4")
        } else {
            String::new()
        }
    };
    let next = |table: &str, after: &str| {
        format!(
            "(SELECT n.stream_id FROM {table} n WHERE n.stream_id > {after} {upper} ORDER BY n.stream_id LIMIT 1)",
            upper = upper("n.stream_id")
        )
    };
    let first = |table: &str| {
        format!(
            "(SELECT n.stream_id FROM {table} n WHERE n.stream_id >= $1 AND n.stream_id > $2 {upper} \
             ORDER BY n.stream_id LIMIT 1)",
            upper = upper("n.stream_id")
        )
    };
    // One step of the walk, from the id `w.stream_id` (NULL: past the
    // end): the id, its last version, whether it is listed, and `listed`,
    // how many are listed up to it.
    let step = |from: &str, listed_before: &str| {
        format!(
            "SELECT w.stream_id, l.last, v.shown, {listed_before} + CASE WHEN v.shown THEN 1 ELSE 0 END::bigint \
             FROM {from}, LATERAL (SELECT {last} AS last) l, \
             LATERAL (SELECT w.stream_id IS NOT NULL AND starts_with(w.stream_id, $1) \
             AND NOT starts_with(w.stream_id, '$$') AND NOT COALESCE((SELECT s.tombstoned \
             OR (s.deleted AND l.last < s.truncate_before) FROM {state} s WHERE s.stream_id = w.stream_id), false) \
             AS shown) v",
            last = last_version("w.stream_id"),
        )
    };
    format!(
        "WITH RECURSIVE ids(stream_id, last, shown, listed) AS ({anchor} \
         UNION ALL {recursive} WHERE i.stream_id IS NOT NULL AND i.listed < $3) \
         SELECT i.stream_id, i.last FROM ids i WHERE i.shown ORDER BY i.stream_id LIMIT $3",
        anchor = step(
            &format!(
                "(SELECT LEAST({first_e}, {first_x}) AS stream_id) w",
                first_e = first(events),
                first_x = first(erased)
            ),
            "0::bigint"
        ),
        recursive = step(
            &format!(
                "ids i, LATERAL (SELECT LEAST({next_e}, {next_x}) AS stream_id) w",
                next_e = next(events, "i.stream_id"),
                next_x = next(erased, "i.stream_id")
            ),
            "i.listed"
        ),
    )
}

/// The least string above every string that starts with `prefix` (in the
/// byte order of `COLLATE "C"`, which for UTF-8 is code point order):
/// the prefix with its last character that can grow grown by one, and
/// what follows it dropped. `None` when there is none (empty, or only
/// `char::MAX`).
pub(super) fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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

    #[test]
    fn the_successor_of_a_prefix_bounds_every_string_that_starts_with_it() {
        assert_eq!(successor("order-").as_deref(), Some("order."));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(successor(""), None);
        assert_eq!(successor("\u{10FFFF}"), None);
        for s in ["order-", "order-\u{10FFFF}zz", "order-~"] {
            assert!(s.starts_with("order-") && s < successor("order-").unwrap().as_str());
        }
    }
}
