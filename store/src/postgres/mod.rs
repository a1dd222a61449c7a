//! `PostgresStore`: the log in a PostgreSQL database, shared by several
//! processes. See `docs/postgres.md` for why it is built this way.

mod listener;
mod options;
mod rows;
mod scavenge;
mod schema;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tracing::{debug, info, warn};

pub use self::options::PostgresOptions;
use self::rows::{corrupt_row, decode_event, decode_event_at, state_at};
pub use self::scavenge::{PostgresScavengeOptions, PostgresScavengeProgress, PostgresScavengeReport};
use self::schema::Sql;
use crate::commit_stats::{CommitCounters, CommitStats};
use crate::error::StoreError;
use crate::filter::{EventFilter, FILTER_SCAN_WINDOW, FilteredRead};
use crate::pg::{self, Schema, describe, from_db, is_connection_error, to_db_saturating};
use crate::retention::{StreamOperation, StreamOperationResult};
use crate::store::EventStore;
use crate::subscription::{EventSubscription, FilteredSubscription};
use crate::types::{AppendResult, Direction, RecordedEvent, StreamAppend, StreamId, StreamSummary};

/// The log in a PostgreSQL database: the backend for services that run
/// several processes on one log, or keep it where their operations team
/// already backs up and replicates data.
///
/// Same rules as every backend (the conformance suite checks them). What is
/// particular to PostgreSQL:
///
/// - **Positions in commit order.** Every append transaction locks the one
///   `head` row before it reads or writes anything and keeps the lock until
///   it commits, so transactions get positions in the order they commit,
///   positions are gapless, and a reader never sees a position before every
///   lower one is visible (no event skipped by `read_all` or subscriptions).
/// - **Group commit.** Each store has one writer task: it takes every
///   append waiting in this process and commits them in one transaction,
///   one WAL flush. Several processes take turns on the head row.
/// - **Durability** is PostgreSQL's: an append returns after its `COMMIT`,
///   which with the default `synchronous_commit = on` is flushed to the WAL
///   on disk (and to synchronous standbys, if configured).
/// - **Live subscriptions** are woken by `LISTEN`/`NOTIFY` on a dedicated
///   connection, which reconnects when it drops, with a poll of the head
///   position every [`PostgresOptions::poll_interval`] as a fallback.
/// - **Lost connections.** When the connection breaks before the `COMMIT`
///   was sent, the writer retries the group on another connection (as many
///   times as the pool has connections, plus one). When
///   it breaks after, the outcome is unknown and the append fails with
///   [`StoreError::Unavailable`]; it is either wholly in the log or not at
///   all, and a retry with the same event ids is answered idempotently.
///
/// Cheap to clone; clones share the pool and the writer, which stop when
/// the last clone (and the last subscription) is dropped. Connections are
/// plain TCP or unix sockets, without TLS.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use strata_store::{EventStore, ExpectedVersion, NewEvent, PostgresOptions, PostgresStore, StreamId};
/// let options = PostgresOptions { schema: "orders".into(), ..PostgresOptions::default() };
/// let store = PostgresStore::connect_with("postgres://app@localhost/shop", options).await?;
/// let s = StreamId::new("order-1")?;
/// let r = store.append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", "{}")]).await?;
/// // Every store on this database and schema reads it at this position.
/// assert_eq!(store.read_all(r.first_position, 1).await?[0].stream_id, s);
/// # Ok::<(), strata_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<writer::Request>,
    options: PostgresOptions,
    /// How to open a connection of the store's database (with its application name).
    config: tokio_postgres::Config,
    /// Dropped with the store: stops the listener.
    _stop_listener: oneshot::Sender<()>,
    /// Held by a running scavenge: the store's scavenges run one at a time.
    scavenging: tokio::sync::Mutex<()>,
}

/// What the store's handles, its writer and its listener share.
pub(crate) struct Shared {
    pool: Pool,
    schema: Schema,
    sql: Sql,
    /// The newest position known to be committed. Every lower position is
    /// committed too (commit order is position order).
    head: watch::Sender<u64>,
    stats: CommitCounters,
    /// How often a statement that found its connection broken is tried on
    /// another: once per pooled connection (all may be dead after a server
    /// restart) plus one for a fresh one.
    max_reconnects: usize,
}

impl Shared {
    /// Moves the known head forward (never back).
    fn advance_head(&self, position: u64) {
        self.head.send_if_modified(|h| {
            let moved = position > *h;
            if moved {
                *h = position;
            }
            moved
        });
    }

    async fn connection(&self) -> Result<Object, StoreError> {
        pg::connection(&self.pool).await
    }

    /// Runs one read query, on another connection if the first turns out
    /// to be broken (reads are safe to repeat), at most `max_reconnects`
    /// times.
    async fn query(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut retries = 0;
        loop {
            let client = self.connection().await?;
            let result = match client.prepare_cached(sql).await {
                Ok(statement) => client.query(&statement, params).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(rows) => return Ok(rows),
                Err(e) if is_connection_error(&e) => {
                    // Never hand this connection out again.
                    drop(Object::take(client));
                    if retries == self.max_reconnects {
                        return Err(pg::error(context, e));
                    }
                    warn!(error = %describe(&e), "PostgreSQL connection lost during a read; retrying on another");
                    retries += 1;
                }
                Err(e) => return Err(pg::error(context, e)),
            }
        }
    }

    async fn read_head(&self) -> Result<u64, StoreError> {
        let rows = self.query("reading the head position", &self.sql.head, &[]).await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt {
            location: "head row".into(),
            detail: "the head row is missing".into(),
        })?;
        from_db(row.get::<_, i64>(0), "head position")
    }
}

impl PostgresStore {
    /// Connects to the database at `url` with default options: the log in
    /// schema `strata`, created or migrated as needed.
    ///
    /// `url` is a libpq-style connection string, as a URL
    /// (`postgres://user:password@host:5432/db`) or as `key=value` pairs.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to the database at `url`, creates the schema if it is
    /// absent, applies the migrations it lacks, and starts the writer and
    /// the listener (on the current tokio runtime).
    ///
    /// Errors: [`StoreError::InvalidLimits`] for bad options,
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::IncompatibleSchema`] when the schema was migrated by a
    /// newer strata, [`StoreError::Postgres`] for anything else the
    /// database refuses.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        options.limits.validate()?;
        let schema = Schema::new(&options.schema)?;
        if options.pool_size < 2 || options.max_group_appends == 0 || options.queue_capacity == 0 {
            return Err(StoreError::InvalidLimits {
                reason: "pool_size must be at least 2 (the writer holds one connection), max_group_appends and \
                         queue_capacity positive"
                    .into(),
            });
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| pg::error("parsing the connection string", e))?;
        match &options.application_name {
            Some(name) => {
                config.application_name(name);
            }
            None if config.get_application_name().is_none() => {
                config.application_name("strata");
            }
            None => {}
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        // A connection the network black-holed must fail, not hang: the
        // writer and the read models' writers hold locks on theirs. Unless
        // the URL says otherwise, TCP keepalives probe after 30 s idle
        // (libpq's default waits 2 h) and sent data unacknowledged for 30 s
        // fails the connection.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(30));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(5));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(30));
        }
        let store_config = config.clone();
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::InvalidLimits {
                reason: format!("cannot build the connection pool: {e}"),
            })?;
        {
            let mut client = pg::connection(&pool).await?;
            schema::migrate(&mut client, &options.schema).await?;
        }
        let shared = Arc::new(Shared {
            pool,
            sql: Sql::new(&schema)?,
            schema,
            head: watch::Sender::new(0),
            stats: CommitCounters::default(),
            max_reconnects: options.pool_size + 1,
        });
        let head = shared.read_head().await?;
        shared.advance_head(head);
        warn_if_not_durable(&shared).await;

        let (tx, rx) = mpsc::channel(options.queue_capacity);
        tokio::spawn(writer::run(shared.clone(), rx, options.max_group_appends));
        let (stop_listener, stopped) = oneshot::channel();
        let mut listen_config = config;
        let listen_name = format!("{}-listen", listen_config.get_application_name().unwrap_or("strata"));
        listen_config.application_name(listen_name);
        tokio::spawn(listener::run(
            shared.clone(),
            listen_config,
            options.poll_interval,
            stopped,
        ));
        info!(schema = %options.schema, head, "connected PostgreSQL store");
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                shared,
                tx,
                options,
                config: store_config,
                _stop_listener: stop_listener,
                scavenging: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The options the store was connected with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    /// The store's connection pool, for crates that keep tables of their own
    /// beside the log in the same database and schema (strata-projections'
    /// read models, strata-http's idempotency records), so their writes can
    /// share a transaction with nothing but themselves and still live where
    /// the log lives. The log's own tables are the store's: write them only
    /// through [`EventStore`]. The helpers for such tables (names,
    /// migrations, errors, `LISTEN`) are in [`crate::pg`].
    pub fn pool(&self) -> &Pool {
        &self.inner.shared.pool
    }

    /// The schema that holds the log, checked: for the names of tables
    /// and `NOTIFY` channels kept beside it (see [`crate::pg`]).
    pub fn schema(&self) -> &Schema {
        &self.inner.shared.schema
    }

    /// How the store connects (host, database, user, `application_name`,
    /// timeouts), to open a dedicated connection outside the pool: one that
    /// `LISTEN`s (the pool's connections drop notifications), or one that
    /// holds a session-level advisory lock for as long as it lives.
    pub fn connection_config(&self) -> &tokio_postgres::Config {
        &self.inner.config
    }

    /// Group commit counters of this store's writer since it connected
    /// (other processes on the same database are not counted): `commits`
    /// are transactions that wrote, `groups` every transaction run
    /// (including those that only refused or answered retries), `appends`
    /// the appends answered, `events` the events written; `apply_time` is
    /// the time from `BEGIN` through taking the head lock, reading and
    /// judging, `sync_time` the time of the insert and `COMMIT`, including
    /// PostgreSQL's WAL flush.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.shared.stats.snapshot()
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        self.inner.options.limits.check(&appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        self.inner
            .tx
            .send(writer::Request {
                appends,
                op: None,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn modify_stream(&self, op: StreamOperation) -> Result<StreamOperationResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        self.inner
            .tx
            .send(writer::Request {
                appends: Vec::new(),
                op: Some(op),
                reply,
            })
            .await
            .map_err(|_| closed())?;
        let written = answer.await.map_err(|_| closed())??;
        let r = written.first().ok_or_else(closed)?;
        Ok(StreamOperationResult {
            position: r.last_position,
            metadata_version: r.stream_version,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 || (direction == Direction::Backward && from_version == 0) {
            return Ok(Vec::new());
        }
        let sql = &self.shared().sql;
        let (sql, from) = match direction {
            Direction::Forward => (&sql.read_forward, to_db_saturating(from_version.max(1))),
            Direction::Backward => (&sql.read_backward, to_db_saturating(from_version)),
        };
        let limit = to_db_saturating(limit as u64);
        let rows = self
            .shared()
            .query("reading a stream", sql, &[&stream.as_str(), &from, &limit])
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from = to_db_saturating(from_position.max(1));
        let limit = to_db_saturating(limit as u64);
        let rows = self
            .shared()
            .query("reading the log", &self.shared().sql.read_all, &[&from, &limit])
            .await?;
        rows.iter().map(decode_event).collect()
    }

    /// Filters in the database: one statement reads the bound of the scan
    /// (the head, or the end of the window) and the matching events up to
    /// it, in one snapshot.
    async fn read_filtered(
        &self,
        from_position: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<FilteredRead, StoreError> {
        filter.check()?;
        let from = from_position.max(1);
        let mut read = FilteredRead {
            events: Vec::new(),
            examined: from - 1,
        };
        if limit == 0 {
            return Ok(read);
        }
        let window_end = to_db_saturating(from.saturating_add(FILTER_SCAN_WINDOW as u64 - 1));
        let start = to_db_saturating(from);
        let limit_db = to_db_saturating(limit as u64);
        let streams: Vec<&str> = filter.streams().iter().map(|s| s.as_str()).collect();
        let rows = self
            .shared()
            .query(
                "reading the log with a filter",
                &self.shared().sql.read_filtered,
                &[
                    &start,
                    &window_end,
                    &limit_db,
                    &filter.event_types(),
                    &filter.event_type_prefixes(),
                    &streams,
                    &filter.stream_prefixes(),
                    &filter.categories(),
                ],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::Corrupt {
                location: "head row".into(),
                detail: "the head row is missing".into(),
            });
        };
        let bound = from_db(first.get::<_, i64>(0), "head position")?;
        for row in &rows {
            if row
                .try_get::<_, Option<i64>>(1)
                .map_err(|e| corrupt_row(None, e))?
                .is_some()
            {
                read.events.push(decode_event_at(row, 1)?);
            }
        }
        read.examined = if read.events.len() == limit {
            read.events.last().map_or(bound, |e| e.position)
        } else {
            bound
        }
        .max(from - 1);
        Ok(read)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let rows = self
            .shared()
            .query(
                "reading a stream version",
                &self.shared().sql.stream_head,
                &[&stream.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(0);
        };
        let last = from_db(row.get::<_, i64>(0), "stream version")?;
        let state = state_at(row, 1).map_err(|e| corrupt_row(None, e))?.unwrap_or_default();
        Ok(state.reported_version(last))
    }

    async fn list_streams(
        &self,
        prefix: &str,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamSummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = after.map_or("", StreamId::as_str);
        let limit = to_db_saturating(limit as u64);
        let sql = &self.shared().sql;
        let rows = match schema::successor(prefix) {
            Some(below) => {
                self.shared()
                    .query(
                        "listing streams",
                        &sql.list_streams_below,
                        &[&prefix, &after, &limit, &below],
                    )
                    .await?
            }
            None => {
                self.shared()
                    .query("listing streams", &sql.list_streams, &[&prefix, &after, &limit])
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let id: String = row.get(0);
                Ok(StreamSummary {
                    stream_id: StreamId::new(id).map_err(|e| StoreError::Corrupt {
                        location: "the events table".into(),
                        detail: format!("a stream id that is not valid: {e}"),
                    })?,
                    version: from_db(row.get::<_, i64>(1), "stream version")?,
                })
            })
            .collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let head = self.shared().read_head().await?;
        self.shared().advance_head(head);
        Ok(head)
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        EventSubscription::follow_detached(self.clone(), self.shared().head.subscribe(), after)
    }

    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
        FilteredSubscription::follow_detached(self.clone(), self.shared().head.subscribe(), after, filter)
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.options.schema)
            .finish_non_exhaustive()
    }
}

/// Logs a warning when the server acknowledges commits before they are on
/// disk: then so does the store, whatever its callers expect.
async fn warn_if_not_durable(shared: &Shared) {
    let settings = "SELECT current_setting('fsync'), current_setting('synchronous_commit')";
    match shared.query("reading the durability settings", settings, &[]).await {
        Ok(rows) => {
            if let Some(row) = rows.first() {
                let (fsync, synchronous_commit): (String, String) = (row.get(0), row.get(1));
                if fsync != "on" || synchronous_commit == "off" {
                    warn!(
                        %fsync,
                        %synchronous_commit,
                        "PostgreSQL acknowledges commits before they are durable: acknowledged appends may be lost in a crash"
                    );
                }
            }
        }
        Err(e) => debug!(error = %e, "cannot read the durability settings"),
    }
}
