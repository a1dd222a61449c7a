//! The read models' tables, their migrations and every statement run on
//! them, written with `{schema}` (filled in by [`Schema::render`](strata_store::pg::Schema::render)).
//!
//! | table                    | row                                                        |
//! |--------------------------|------------------------------------------------------------|
//! | `projection_models`      | `model` → `current`: the generation readers see; `last_generation` ever started |
//! | `projection_checkpoints` | `(model, generation)` → `position`, `event_id` of the event there, `model_version` that wrote it, `refresh_from`, `retired` |
//! | `projection_entries`     | `(model, generation, key)` → `value` (NULL: deleted), `position` of the commit that wrote it |

use strata_store::pg::MigrationSet;

/// The migrations of the read-model tables, in order; each runs once per
/// schema. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "read models: generation pointers, checkpoints, entries",
        r#"
CREATE TABLE {schema}.projection_models (
    model   text   COLLATE "C" NOT NULL,
    current bigint NOT NULL CHECK (current > 0),
    CONSTRAINT projection_models_pkey PRIMARY KEY (model)
);
CREATE TABLE {schema}.projection_checkpoints (
    model        text    COLLATE "C" NOT NULL,
    generation   bigint  NOT NULL CHECK (generation > 0),
    position     bigint  NOT NULL CHECK (position >= 0),
    event_id     uuid,
    refresh_from bigint  NOT NULL DEFAULT 0,
    retired      boolean NOT NULL DEFAULT false,
    CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (model, generation)
);
CREATE TABLE {schema}.projection_entries (
    model      text   COLLATE "C" NOT NULL,
    generation bigint NOT NULL,
    key        bytea  NOT NULL,
    value      bytea,
    position   bigint NOT NULL,
    CONSTRAINT projection_entries_pkey PRIMARY KEY (model, generation, key)
);
CREATE INDEX projection_entries_changes ON {schema}.projection_entries (model, generation, position);
COMMENT ON TABLE {schema}.projection_entries IS
    'strata read models: written only by the runner that holds the model''s advisory lock, in the same transaction as its checkpoint. value NULL = deleted at position.';
"#,
    ),
    (
        2,
        "read models: the model version of the projection that wrote each generation",
        r#"
ALTER TABLE {schema}.projection_checkpoints
    ADD COLUMN model_version bigint NOT NULL DEFAULT 0 CHECK (model_version >= 0);
"#,
    ),
    (
        3,
        "read models: the highest generation ever started, so that an id is never reused",
        r#"
ALTER TABLE {schema}.projection_models
    ADD COLUMN last_generation bigint NOT NULL DEFAULT 0 CHECK (last_generation >= 0);
"#,
    ),
];

/// The read models' migrations ("STRP": the first key of the advisory
/// lock that serialises them).
pub(super) const MODELS: MigrationSet<'static> = MigrationSet {
    table: "projection_migrations",
    label: "read models",
    lock_class: 0x5354_5250,
    migrations: MIGRATIONS,
};

/// The topic of the `NOTIFY` channel that announces commits and swaps
/// (`strata.<schema>.models`): payload `<generation> <position> <model>`.
pub(super) const CHANNEL_TOPIC: &str = "models";

pub(super) const ENSURE_MODEL: &str =
    "INSERT INTO {schema}.projection_models (model, current) VALUES ($1, 1) ON CONFLICT DO NOTHING";

pub(super) const ENSURE_CHECKPOINT: &str = "INSERT INTO {schema}.projection_checkpoints (model, generation, position) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING";

/// The current generation's pointer and checkpoint row.
pub(super) const STATE: &str = "SELECT m.current, c.position, c.event_id, c.refresh_from, c.model_version \
     FROM {schema}.projection_models m \
     JOIN {schema}.projection_checkpoints c ON c.model = m.model AND c.generation = m.current WHERE m.model = $1";

pub(super) const ALL_ENTRIES: &str = "SELECT key, value FROM {schema}.projection_entries \
     WHERE model = $1 AND generation = $2 AND value IS NOT NULL";

pub(super) const CHANGED_ENTRIES: &str =
    "SELECT key, value FROM {schema}.projection_entries WHERE model = $1 AND generation = $2 AND position > $3";

/// A batch: the checkpoint moves from $5 to $3 (recording the model version
/// $8 that applied the batch) only if nobody moved it and no rebuild
/// retired the generation; the entries are written only if it did, in the
/// same statement. (A concurrent update of the checkpoint row makes this
/// statement wait and re-check the row as committed.) Returns 1 when
/// written, 0 when fenced off.
pub(super) const COMMIT: &str = "WITH fence AS ( \
         UPDATE {schema}.projection_checkpoints SET position = $3, event_id = $4, model_version = $8 \
         WHERE model = $1 AND generation = $2 AND position = $5 AND $3 > position AND NOT retired RETURNING 1 \
     ), written AS ( \
         INSERT INTO {schema}.projection_entries (model, generation, key, value, position) \
         SELECT $1, $2, k.key, k.value, $3 FROM unnest($6::bytea[], $7::bytea[]) AS k(key, value) \
         WHERE EXISTS (SELECT 1 FROM fence) \
         ON CONFLICT (model, generation, key) DO UPDATE SET value = EXCLUDED.value, position = EXCLUDED.position \
     ) SELECT count(*) FROM fence";

/// The fence of [`COMMIT`] alone (same parameters but the entries; $6 is
/// the model version): 1 row when the checkpoint moved, 0 when fenced off.
/// Run in a transaction with the rows' `COPY` (see `bulk`).
pub(super) const FENCE: &str = "UPDATE {schema}.projection_checkpoints SET position = $3, event_id = $4, model_version = $6 \
     WHERE model = $1 AND generation = $2 AND position = $5 AND $3 > position AND NOT retired";

/// A fresh generation's first batch of entries, in the binary format.
pub(super) const COPY_ENTRIES: &str =
    "COPY {schema}.projection_entries (model, generation, key, value, position) FROM STDIN (FORMAT binary)";

pub(super) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Deletes the tombstones up to $3 and records that changes are complete
/// only from there.
pub(super) const PURGE: &str = "WITH gone AS ( \
         DELETE FROM {schema}.projection_entries WHERE model = $1 AND generation = $2 AND value IS NULL AND position <= $3 \
     ) UPDATE {schema}.projection_checkpoints SET refresh_from = GREATEST(refresh_from, $3) \
     WHERE model = $1 AND generation = $2";

pub(super) const DROP_OTHER_GENERATIONS: &str = "DELETE FROM {schema}.projection_entries \
     WHERE model = $1 AND generation <> (SELECT current FROM {schema}.projection_models WHERE model = $1)";

pub(super) const DROP_OTHER_CHECKPOINTS: &str = "DELETE FROM {schema}.projection_checkpoints \
     WHERE model = $1 AND generation <> (SELECT current FROM {schema}.projection_models WHERE model = $1)";

pub(super) const DROP_GENERATION: &str = "DELETE FROM {schema}.projection_entries WHERE model = $1 AND generation = $2";

pub(super) const DROP_CHECKPOINT: &str =
    "DELETE FROM {schema}.projection_checkpoints WHERE model = $1 AND generation = $2";

/// Never an id used before, even one whose rows are gone: a rebuild that
/// lost its lock must not find its id taken by the one that replaced it.
pub(super) const NEXT_GENERATION: &str = "UPDATE {schema}.projection_models m \
     SET last_generation = GREATEST(m.current, m.last_generation, \
         (SELECT max(generation) FROM {schema}.projection_checkpoints WHERE model = $1)) + 1 \
     WHERE m.model = $1 RETURNING m.last_generation";

pub(super) const NEW_CHECKPOINT: &str =
    "INSERT INTO {schema}.projection_checkpoints (model, generation, position) VALUES ($1, $2, 0)";

/// The current generation and its checkpoint, locked until the swap commits.
pub(super) const LOCK_CURRENT: &str = "SELECT m.current, c.position FROM {schema}.projection_models m \
     JOIN {schema}.projection_checkpoints c ON c.model = m.model AND c.generation = m.current \
     WHERE m.model = $1 FOR UPDATE";

/// Locks the model's pointer row (`current`): every statement that
/// creates, swaps in or deletes a generation runs under it, so none of
/// them can act on a stale idea of which generation is current.
pub(super) const LOCK_POINTER: &str = "SELECT current FROM {schema}.projection_models WHERE model = $1 FOR UPDATE";

/// A generation's checkpoint position, if its row is there and not
/// retired (locked until the swap commits).
pub(super) const GENERATION_LIVE: &str = "SELECT position FROM {schema}.projection_checkpoints \
     WHERE model = $1 AND generation = $2 AND NOT retired FOR UPDATE";

pub(super) const SET_CURRENT: &str = "UPDATE {schema}.projection_models SET current = $2 WHERE model = $1";

pub(super) const RETIRE: &str =
    "UPDATE {schema}.projection_checkpoints SET retired = true WHERE model = $1 AND generation = $2";

pub(super) const SET_REFRESH_FROM: &str =
    "UPDATE {schema}.projection_checkpoints SET refresh_from = $3 WHERE model = $1 AND generation = $2";

/// A session-level advisory lock on a name (hashed by the server, so
/// every process agrees on it), waiting for it.
pub(super) const LOCK: &str = "SELECT pg_advisory_lock(hashtextextended($1, 0))";

/// The same, without waiting: true when taken.
pub(super) const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";

/// The same for the length of a transaction, without waiting.
pub(super) const TRY_XACT_LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))";
