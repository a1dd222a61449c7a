//! `PostgresStore` and its schema: concurrent migrations, a damaged row, a
//! schema from a newer strata, bad options and unreachable servers.
//! Declared and run by `postgres.rs`.

use std::collections::HashSet;
use std::time::Duration;

use strata_store::{Direction, EventStore, ExpectedVersion, PostgresOptions, PostgresStore, StoreError};
use strata_testkit::TestDatabase;

use crate::common::{evs, sid};
use crate::imp::{another, setup};

/// Eight stores connect to one new schema at once: the migration runs
/// once (under its advisory lock), and they all share one log.
pub async fn stores_that_start_at_once_migrate_once_and_share_the_log() {
    let (fx, db, options) = setup().await;
    let url = db.url();
    let _first_schema = fx;
    // A second schema that nobody has created yet.
    let fresh_db = TestDatabase::new();
    let fresh = PostgresOptions {
        schema: fresh_db.schema().to_string(),
        ..options.clone()
    };
    let stores = futures::future::join_all((0..8).map(|i| {
        let options = fresh.clone();
        async move { another(url, &options, &format!("m{i}")).await }
    }))
    .await;
    let admin = db.admin().await;
    let migrations: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".strata_migrations", fresh.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        migrations, 3,
        "each of the log's three migrations (the log, stream states, erased ids) once"
    );
    let s = sid("shared");
    for (i, store) in stores.iter().enumerate() {
        store
            .append(&s, ExpectedVersion::Exact(i as u64), evs("x", 1))
            .await
            .unwrap();
    }
    for store in &stores {
        assert_eq!(store.stream_version(&s).await.unwrap(), 8);
    }
    let positions: HashSet<u64> = stores[0]
        .read_all(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=8).collect());
}

/// A row changed behind the store's back fails its checksum: reads
/// report `Corrupt` instead of serving it.
pub async fn a_damaged_row_is_reported_as_corrupt() {
    let (fx, db, options) = setup().await;
    let s = sid("order-9");
    fx.store
        .append(&s, ExpectedVersion::NoStream, evs("p", 3))
        .await
        .unwrap();
    let admin = db.admin().await;
    let table = format!("\"{}\".events", options.schema);
    for damage in [
        "payload = '\\x01'",
        "event_type = 'Other'",
        "recorded_at = recorded_at + interval '1 second'",
        "metadata = '\\xff'",
        "crc = crc + 1",
    ] {
        let (sql, undo) = (
            format!("UPDATE {table} SET {damage} WHERE position = 2 RETURNING *"),
            format!(
                "UPDATE {table} SET (payload, event_type, recorded_at, metadata, crc) = (SELECT payload, event_type, recorded_at, metadata, crc FROM saved) WHERE position = 2"
            ),
        );
        admin
            .batch_execute(&format!(
                "CREATE TEMP TABLE saved AS SELECT * FROM {table} WHERE position = 2"
            ))
            .await
            .unwrap();
        admin.batch_execute(&sql).await.unwrap();
        let r = fx.store.read_all(1, 10).await;
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{damage}: {r:?}");
        let r = fx.store.read_stream(&s, 2, Direction::Forward, 1).await;
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{damage}: {r:?}");
        admin.batch_execute(&undo).await.unwrap();
        admin.batch_execute("DROP TABLE saved").await.unwrap();
        assert_eq!(fx.store.read_all(1, 10).await.unwrap().len(), 3, "{damage} undone");
    }
}

/// A schema whose migrations table names a migration this build does not
/// know is refused rather than written with an older layout.
pub async fn a_schema_from_a_newer_strata_is_refused() {
    let (_fx, db, options) = setup().await;
    let url = db.url();
    let admin = db.admin().await;
    admin
        .execute(
            &format!(
                "INSERT INTO \"{}\".strata_migrations (version, description) VALUES (999, 'from the future')",
                options.schema
            ),
            &[],
        )
        .await
        .unwrap();
    match PostgresStore::connect_with(url, options.clone()).await {
        Err(StoreError::IncompatibleSchema { schema, found, .. }) => {
            assert_eq!((schema, found), (options.schema.clone(), 999))
        }
        other => panic!("expected IncompatibleSchema, got {other:?}"),
    }
}

/// Needs no server.
pub async fn bad_options_and_unreachable_servers_are_clear_errors() {
    let url = "postgres://strata@127.0.0.1:1/postgres";
    for bad in ["", "Upper", "1digit", "has-dash", "quote\"", &"x".repeat(41)] {
        let options = PostgresOptions {
            schema: bad.to_string(),
            ..PostgresOptions::default()
        };
        let r = PostgresStore::connect_with(url, options).await;
        assert!(matches!(r, Err(StoreError::InvalidLimits { .. })), "{bad:?}: {r:?}");
    }
    // Nothing listens on port 1 of the loopback.
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(5),
        ..PostgresOptions::default()
    };
    let r = PostgresStore::connect_with(url, options).await;
    assert!(matches!(r, Err(StoreError::Unavailable { .. })), "{r:?}");
    let r = PostgresStore::connect("postgres://strata@127.0.0.1:not-a-port/x").await;
    assert!(matches!(r, Err(StoreError::Postgres { .. })), "{r:?}");
}
