//! Groups in PostgreSQL, beside a `PostgresStore`'s log, shared by every
//! process on the database and schema.
//!
//! Three tables: `subscription_groups` (one row per group: its version and
//! its sealed header), `subscription_rows` (the events between the log and
//! the consumers) and `subscription_parked`. A commit is one transaction
//! that first moves the group's version from the one its changes were made
//! from (`UPDATE ... WHERE version = base`): a concurrent commit of another
//! process waits on that row and then finds the version moved, so exactly
//! one of them writes and the other reloads and tries again.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use strata_store::deadpool_postgres::{Object, Pool};
use strata_store::pg::{MigrationSet, Schema, connection, error, from_db, to_db};
use strata_store::tokio_postgres::IsolationLevel;
use strata_store::tokio_postgres::Row as PgRow;
use strata_store::{PostgresStore, StoreError, StreamId};

use super::codec::{seal, unseal};
use super::{Commit, Created, GroupBackend, Stored};
use crate::error::SubscriptionError;
use crate::settings::{ConsumerName, GroupName};
use crate::state::{Changes, Header, Lease, ParkedEvent, Row, from_millis};

const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "persistent subscription groups, their rows and parked events",
    r#"
CREATE TABLE {schema}.subscription_groups (
    name    text   COLLATE "C" NOT NULL,
    version bigint NOT NULL CHECK (version >= 0),
    header  bytea  NOT NULL,
    CONSTRAINT subscription_groups_pkey PRIMARY KEY (name)
);
COMMENT ON TABLE {schema}.subscription_groups IS
    'strata persistent subscription groups: the version every change moves (optimistic concurrency across processes) and the sealed header (settings, progress, counters).';
CREATE TABLE {schema}.subscription_rows (
    group_name text    COLLATE "C" NOT NULL REFERENCES {schema}.subscription_groups (name) ON DELETE CASCADE,
    position   bigint  NOT NULL CHECK (position > 0),
    stream_id  text    COLLATE "C" NOT NULL,
    attempts   integer NOT NULL CHECK (attempts >= 0),
    consumer   text,
    delivery   bigint,
    due_ms     bigint  NOT NULL,
    CONSTRAINT subscription_rows_pkey PRIMARY KEY (group_name, position),
    CONSTRAINT subscription_rows_lease CHECK ((consumer IS NULL) = (delivery IS NULL))
);
COMMENT ON TABLE {schema}.subscription_rows IS
    'strata persistent subscriptions: events between the log and the consumers, pending (due_ms: when) or leased (consumer, delivery; due_ms: the deadline).';
CREATE TABLE {schema}.subscription_parked (
    group_name text    COLLATE "C" NOT NULL REFERENCES {schema}.subscription_groups (name) ON DELETE CASCADE,
    position   bigint  NOT NULL CHECK (position > 0),
    stream_id  text    COLLATE "C" NOT NULL,
    attempts   integer NOT NULL CHECK (attempts >= 0),
    reason     text    NOT NULL,
    parked_ms  bigint  NOT NULL,
    replay     boolean NOT NULL DEFAULT false,
    CONSTRAINT subscription_parked_pkey PRIMARY KEY (group_name, position)
);
COMMENT ON TABLE {schema}.subscription_parked IS
    'strata persistent subscriptions: parked (dead-letter) events; replay = asked to be delivered again.';
"#,
)];

/// The first key of the advisory lock that serialises these migrations ("STRS").
const MIGRATION_LOCK_CLASS: i32 = 0x5354_5253;

/// How often a waiting consumer checks for changes made by other processes.
const POLL: Duration = Duration::from_millis(250);

const INSERT_GROUP: &str = "INSERT INTO {schema}.subscription_groups (name, version, header) VALUES ($1, $2, $3) \
                            ON CONFLICT (name) DO NOTHING";
const HEADER: &str = "SELECT version, header FROM {schema}.subscription_groups WHERE name = $1";
const DELETE_GROUP: &str = "DELETE FROM {schema}.subscription_groups WHERE name = $1";
const NAMES: &str = "SELECT name FROM {schema}.subscription_groups ORDER BY name";
const VERSION: &str = "SELECT version FROM {schema}.subscription_groups WHERE name = $1";
const ROWS: &str = "SELECT position, stream_id, attempts, consumer, delivery, due_ms \
                    FROM {schema}.subscription_rows WHERE group_name = $1 ORDER BY position";
const SET_HEADER: &str =
    "UPDATE {schema}.subscription_groups SET version = $3, header = $4 WHERE name = $1 AND version = $2";
const DELETE_ROWS: &str = "DELETE FROM {schema}.subscription_rows WHERE group_name = $1 AND position = ANY($2)";
const UPSERT_ROWS: &str = "INSERT INTO {schema}.subscription_rows \
     (group_name, position, stream_id, attempts, consumer, delivery, due_ms) \
     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::bigint[], $7::bigint[]) \
     ON CONFLICT (group_name, position) DO UPDATE SET stream_id = EXCLUDED.stream_id, \
     attempts = EXCLUDED.attempts, consumer = EXCLUDED.consumer, delivery = EXCLUDED.delivery, due_ms = EXCLUDED.due_ms";
const INSERT_PARKED: &str = "INSERT INTO {schema}.subscription_parked \
     (group_name, position, stream_id, attempts, reason, parked_ms, replay) \
     SELECT $1, *, false FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::bigint[])";
const FLAG_PARKED: &str =
    "UPDATE {schema}.subscription_parked SET replay = true WHERE group_name = $1 AND position = ANY($2)";
const DELETE_PARKED: &str = "DELETE FROM {schema}.subscription_parked WHERE group_name = $1 AND position = ANY($2)";
const PARKED: &str = "SELECT position, stream_id, attempts, reason, parked_ms, replay \
     FROM {schema}.subscription_parked WHERE group_name = $1 AND position > $2 AND (NOT $4 OR replay) \
     ORDER BY position LIMIT $3";

pub(crate) struct PostgresGroups {
    pool: Pool,
    schema: Schema,
}

fn corrupt(location: impl Into<String>, detail: impl std::fmt::Display) -> SubscriptionError {
    SubscriptionError::Corrupt {
        location: location.into(),
        detail: detail.to_string(),
    }
}

fn ms(value: u64) -> Result<i64, SubscriptionError> {
    Ok(to_db(value, "a time in milliseconds")?)
}

impl PostgresGroups {
    pub(crate) async fn open(store: &PostgresStore) -> Result<PostgresGroups, SubscriptionError> {
        let pool = store.pool().clone();
        let schema = store.schema().clone();
        let mut client = connection(&pool).await?;
        MigrationSet {
            table: "subscription_migrations",
            label: "subscriptions",
            lock_class: MIGRATION_LOCK_CLASS,
            migrations: MIGRATIONS,
        }
        .apply(&mut client, schema.name())
        .await?;
        Ok(PostgresGroups { pool, schema })
    }

    fn sql(&self, template: &str) -> String {
        self.schema.render(template)
    }

    async fn client(&self) -> Result<Object, SubscriptionError> {
        Ok(connection(&self.pool).await?)
    }

    fn header(&self, name: &GroupName, row: &PgRow) -> Result<Header, SubscriptionError> {
        let version: i64 = row.try_get(0).map_err(|e| corrupt(format!("group {name}"), e))?;
        let bytes: &[u8] = row.try_get(1).map_err(|e| corrupt(format!("group {name}"), e))?;
        let header: Header = unseal(name.as_str().as_bytes(), bytes, || format!("group {name}"))?;
        if header.version != from_db(version, "group version")? {
            return Err(corrupt(
                format!("group {name}"),
                format!("version {version} beside a header of version {}", header.version),
            ));
        }
        Ok(header)
    }
}

fn decode_row(name: &GroupName, row: &PgRow) -> Result<(u64, Row), SubscriptionError> {
    let location = || format!("group {name} row");
    let bad = |e| corrupt(location(), e);
    let position: i64 = row.try_get(0).map_err(bad)?;
    let stream: &str = row.try_get(1).map_err(bad)?;
    let attempts: i32 = row.try_get(2).map_err(bad)?;
    let consumer: Option<&str> = row.try_get(3).map_err(bad)?;
    let delivery: Option<i64> = row.try_get(4).map_err(bad)?;
    let due: i64 = row.try_get(5).map_err(bad)?;
    let due = from_db(due, "a time in milliseconds")?;
    let lease = match (consumer, delivery) {
        (None, None) => Lease::Pending { due },
        (Some(c), Some(d)) => Lease::InFlight {
            consumer: ConsumerName::new(c).map_err(|e| corrupt(location(), e))?,
            delivery: from_db(d, "a delivery")?,
            deadline: due,
        },
        _ => return Err(corrupt(location(), "a consumer without a delivery, or the reverse")),
    };
    Ok((
        from_db(position, "a position")?,
        Row {
            stream: StreamId::new(stream).map_err(|e| corrupt(location(), e))?,
            attempts: u32::try_from(attempts).map_err(|e| corrupt(location(), e))?,
            lease,
        },
    ))
}

fn decode_parked(name: &GroupName, row: &PgRow) -> Result<ParkedEvent, SubscriptionError> {
    let location = || format!("group {name} parked event");
    let bad = |e| corrupt(location(), e);
    let position: i64 = row.try_get(0).map_err(bad)?;
    let stream: &str = row.try_get(1).map_err(bad)?;
    let attempts: i32 = row.try_get(2).map_err(bad)?;
    let reason: String = row.try_get(3).map_err(bad)?;
    let parked_ms: i64 = row.try_get(4).map_err(bad)?;
    let replay: bool = row.try_get(5).map_err(bad)?;
    Ok(ParkedEvent {
        position: from_db(position, "a position")?,
        stream_id: StreamId::new(stream).map_err(|e| corrupt(location(), e))?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt(location(), e))?,
        reason,
        parked_at: from_millis(from_db(parked_ms, "a time in milliseconds")?),
        replay_requested: replay,
    })
}

fn positions(values: impl Iterator<Item = u64>) -> Result<Vec<i64>, StoreError> {
    values.map(|p| to_db(p, "a position")).collect()
}

#[async_trait]
impl GroupBackend for PostgresGroups {
    async fn create(&self, name: &GroupName, header: &Header) -> Result<Created, SubscriptionError> {
        let client = self.client().await?;
        let sealed = seal(name.as_str().as_bytes(), header)?;
        let inserted = client
            .execute(
                &self.sql(INSERT_GROUP),
                &[&name.as_str(), &to_db(header.version, "a group version")?, &sealed],
            )
            .await
            .map_err(|e| error("creating a subscription group", e))?;
        if inserted == 1 {
            return Ok(Created::New);
        }
        let row = client
            .query_opt(&self.sql(HEADER), &[&name.as_str()])
            .await
            .map_err(|e| error("reading a subscription group", e))?;
        match row {
            Some(row) if self.header(name, &row)?.settings == header.settings => Ok(Created::Existed),
            Some(_) => Err(SubscriptionError::GroupExists { group: name.clone() }),
            // Deleted in between: as good as a conflict with the deleter.
            None => Err(SubscriptionError::Contention {
                group: name.clone(),
                attempts: 1,
            }),
        }
    }

    async fn delete(&self, name: &GroupName) -> Result<bool, SubscriptionError> {
        let client = self.client().await?;
        let deleted = client
            .execute(&self.sql(DELETE_GROUP), &[&name.as_str()])
            .await
            .map_err(|e| error("deleting a subscription group", e))?;
        Ok(deleted == 1)
    }

    async fn names(&self) -> Result<Vec<GroupName>, SubscriptionError> {
        let client = self.client().await?;
        let rows = client
            .query(&self.sql(NAMES), &[])
            .await
            .map_err(|e| error("listing subscription groups", e))?;
        rows.iter()
            .map(|row| {
                let name: &str = row.try_get(0).map_err(|e| corrupt("a group name", e))?;
                GroupName::new(name).map_err(|e| corrupt("a group name", e))
            })
            .collect()
    }

    async fn load(&self, name: &GroupName) -> Result<Option<Stored>, SubscriptionError> {
        let mut client = self.client().await?;
        // Header and rows from one snapshot.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| error("reading a subscription group", e))?;
        let Some(row) = tx
            .query_opt(&self.sql(HEADER), &[&name.as_str()])
            .await
            .map_err(|e| error("reading a subscription group", e))?
        else {
            return Ok(None);
        };
        let header = self.header(name, &row)?;
        let mut rows = BTreeMap::new();
        for row in tx
            .query(&self.sql(ROWS), &[&name.as_str()])
            .await
            .map_err(|e| error("reading a subscription group's rows", e))?
        {
            let (position, r) = decode_row(name, &row)?;
            rows.insert(position, r);
        }
        tx.commit()
            .await
            .map_err(|e| error("reading a subscription group", e))?;
        Ok(Some(Stored { header, rows }))
    }

    async fn version(&self, name: &GroupName) -> Result<Option<u64>, SubscriptionError> {
        let client = self.client().await?;
        let row = client
            .query_opt(&self.sql(VERSION), &[&name.as_str()])
            .await
            .map_err(|e| error("reading a subscription group's version", e))?;
        match row {
            Some(row) => Ok(Some(from_db(row.get::<_, i64>(0), "a group version")?)),
            None => Ok(None),
        }
    }

    async fn commit(&self, name: &GroupName, base: u64, changes: &Changes) -> Result<Commit, SubscriptionError> {
        let header = changes.header.as_ref().expect("changes carry the next header");
        let context = "writing a subscription group's changes";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| error(context, e))?;
        let n = name.as_str();
        let updated = tx
            .execute(
                &self.sql(SET_HEADER),
                &[
                    &n,
                    &to_db(base, "a group version")?,
                    &to_db(header.version, "a group version")?,
                    &seal(n.as_bytes(), header)?,
                ],
            )
            .await
            .map_err(|e| error(context, e))?;
        if updated == 0 {
            let exists = tx
                .query_opt(&self.sql(VERSION), &[&n])
                .await
                .map_err(|e| error(context, e))?
                .is_some();
            return Ok(if exists { Commit::Conflict } else { Commit::Gone });
        }
        let deleted = positions(changes.rows.iter().filter(|(_, r)| r.is_none()).map(|(p, _)| *p))?;
        if !deleted.is_empty() {
            tx.execute(&self.sql(DELETE_ROWS), &[&n, &deleted])
                .await
                .map_err(|e| error(context, e))?;
        }
        let written: Vec<(u64, &Row)> = changes
            .rows
            .iter()
            .filter_map(|(p, r)| r.as_ref().map(|r| (*p, r)))
            .collect();
        if !written.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (position, row) in &written {
                cols.0.push(to_db(*position, "a position")?);
                cols.1.push(row.stream.as_str());
                cols.2.push(i32::try_from(row.attempts).unwrap_or(i32::MAX));
                let (consumer, delivery, due) = match &row.lease {
                    Lease::Pending { due } => (None, None, *due),
                    Lease::InFlight {
                        consumer,
                        delivery,
                        deadline,
                    } => (
                        Some(consumer.as_str()),
                        Some(to_db(*delivery, "a delivery")?),
                        *deadline,
                    ),
                };
                cols.3.push(consumer);
                cols.4.push(delivery);
                cols.5.push(ms(due)?);
            }
            tx.execute(
                &self.sql(UPSERT_ROWS),
                &[&n, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
            )
            .await
            .map_err(|e| error(context, e))?;
        }
        if !changes.park.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for p in &changes.park {
                cols.0.push(to_db(p.position, "a position")?);
                cols.1.push(p.stream_id.as_str());
                cols.2.push(i32::try_from(p.attempts).unwrap_or(i32::MAX));
                cols.3.push(p.reason.as_str());
                let at = p
                    .parked_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                cols.4.push(ms(at)?);
            }
            tx.execute(
                &self.sql(INSERT_PARKED),
                &[&n, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4],
            )
            .await
            .map_err(|e| error(context, e))?;
        }
        if !changes.flag_replay.is_empty() {
            tx.execute(
                &self.sql(FLAG_PARKED),
                &[&n, &positions(changes.flag_replay.iter().copied())?],
            )
            .await
            .map_err(|e| error(context, e))?;
        }
        if !changes.unpark.is_empty() {
            tx.execute(
                &self.sql(DELETE_PARKED),
                &[&n, &positions(changes.unpark.iter().copied())?],
            )
            .await
            .map_err(|e| error(context, e))?;
        }
        tx.commit().await.map_err(|e| error(context, e))?;
        Ok(Commit::Done)
    }

    async fn sync(&self) -> Result<(), SubscriptionError> {
        // A commit returned after PostgreSQL's COMMIT: durable already.
        Ok(())
    }

    async fn parked(
        &self,
        name: &GroupName,
        after: u64,
        limit: usize,
        replay_only: bool,
    ) -> Result<Vec<ParkedEvent>, SubscriptionError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &self.sql(PARKED),
                &[
                    &name.as_str(),
                    &strata_store::pg::to_db_saturating(after),
                    &strata_store::pg::to_db_saturating(limit as u64),
                    &replay_only,
                ],
            )
            .await
            .map_err(|e| error("reading parked events", e))?;
        rows.iter().map(|row| decode_parked(name, row)).collect()
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(POLL)
    }
}
