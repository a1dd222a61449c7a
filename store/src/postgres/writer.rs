//! The writer of a `PostgresStore`: group commit under the head row lock.
//!
//! Appends queue on a channel. One task takes every append waiting (up to
//! a bound) and commits them in one transaction:
//!
//! 1. `BEGIN`, lock the head row (`SELECT .. FOR UPDATE`), and read the
//!    versions of every stream and the rows of every event id the group
//!    names: one round trip, pipelined. Holding the lock, nobody else can
//!    append, and each statement after the lock sees every earlier commit,
//!    so what is read is exactly the state the group is judged against.
//! 2. Judge each append with the shared rules (`decide::plan_multi`) over
//!    that state plus what earlier appends of the group staged.
//! 3. Insert the accepted events, move the head, `pg_notify` the new head
//!    and `COMMIT`: one more round trip, pipelined. The lock is released
//!    after the commit is visible, so the next writer (of this or another
//!    process) gets the positions after these: commit order is position
//!    order.
//!
//! A group that accepts nothing (only conflicts and retries) is rolled back.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use deadpool_postgres::{ClientWrapper, Object};
use futures::try_join;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tracing::{debug, warn};
use uuid::Uuid;

use super::Shared;
use super::rows::{row_checksum, state_at};
use crate::codec::to_bincode;
use crate::decide::{IdEntry, Plan, StreamView, all_done, plan_multi, plan_op};
use crate::error::StoreError;
use crate::pg::{describe, from_db, is_connection_error, to_db, to_db_saturating};
use crate::retention::{StreamOperation, StreamState, metadata_stream};
use crate::types::{AppendResult, EventId, StreamAppend, StreamId, from_micros, now_micros};

/// Starts an append transaction. READ COMMITTED whatever the server's
/// default: each statement after the head lock must see every earlier
/// commit. A process that stalls while it holds the head lock (stopped,
/// frozen, its network gone) would block every writer of every process until
/// TCP gives up; the server ends such a session after 30 s instead.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = '30s'";

/// Stop adding appends to a group once it holds this many events...
const MAX_GROUP_EVENTS: usize = 16_384;
/// ...or this many bytes of payload.
const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

type Answer = Result<Vec<AppendResult>, StoreError>;

/// One append waiting for the writer.
pub(super) struct Request {
    pub(super) appends: Vec<StreamAppend>,
    /// A stream operation instead of `appends`: answered with the result
    /// of the metadata event that records it.
    pub(super) op: Option<StreamOperation>,
    pub(super) reply: oneshot::Sender<Answer>,
}

fn size(req: &Request) -> (usize, usize) {
    req.appends.iter().fold((0, 0), |(n, b), a| {
        (
            n + a.events.len(),
            b + a.events.iter().map(|e| e.payload.len()).sum::<usize>(),
        )
    })
}

/// How often the writer yields, once an append arrived, before it takes
/// what else is waiting. The callers its last commit answered are woken but
/// have not run yet; yielding lets them queue their next appends, so the
/// group holds them instead of leaving them to a second commit (measured:
/// 8 writers ~1,000 → ~2,000 appends/s, 64 writers ~5,000 → ~9,000). Costs
/// microseconds.
const GATHER_YIELDS: usize = 4;

/// The writer loop; returns when every sender is gone and the queue is empty.
pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>, max_group: usize) {
    let mut connection: Option<Object> = None;
    while let Some(first) = rx.recv().await {
        for _ in 0..GATHER_YIELDS {
            tokio::task::yield_now().await;
        }
        let (mut events, mut bytes) = size(&first);
        let mut group = vec![first];
        while group.len() < max_group && events < MAX_GROUP_EVENTS && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    let (n, b) = size(&req);
                    events += n;
                    bytes += b;
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        let answers = commit_group(&shared, &mut connection, &group).await;
        shared.stats.answered(group.len() as u64);
        for (req, answer) in group.into_iter().zip(answers) {
            let _ = req.reply.send(answer);
        }
    }
}

/// How one append of the group came out of the transaction.
enum Outcome {
    /// Answered under the lock without writing: a conflict, invalid input,
    /// or a retry answered from the log. Stands whatever the commit does.
    Decided(Answer),
    /// Staged for writing: holds only if the commit succeeds.
    Written(Vec<AppendResult>),
}

/// Why a transaction failed.
enum Failed {
    /// Before anything was sent that could commit: nothing was written.
    Before(tokio_postgres::Error),
    /// The head or a prefetched row could not be decoded.
    Corrupt { location: String, detail: String },
    /// While inserting or committing. What was decided before stands.
    Commit {
        error: tokio_postgres::Error,
        outcomes: Vec<Outcome>,
    },
}

/// Commits one group; on a connection that breaks before the commit was
/// sent (nothing written), tries again on another, at most
/// `max_reconnects` times: after the server restarted, or its backends were
/// terminated, every idle connection in the pool may be dead.
async fn commit_group(shared: &Shared, connection: &mut Option<Object>, group: &[Request]) -> Vec<Answer> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let client = match connection {
            Some(c) => c,
            None => match shared.connection().await {
                Ok(c) => connection.insert(c),
                Err(e) => {
                    let reason = e.to_string();
                    return group
                        .iter()
                        .map(|_| Err(StoreError::Unavailable { reason: reason.clone() }))
                        .collect();
                }
            },
        };
        let failure = match transaction(shared, client, group).await {
            Ok(outcomes) => return outcomes.into_iter().map(settle).collect(),
            Err(failure) => failure,
        };
        // Whatever state the connection is in, it is not used again.
        if let Some(c) = connection.take() {
            drop(Object::take(c));
        }
        match failure {
            Failed::Before(e) if attempt <= shared.max_reconnects && is_connection_error(&e) => {
                warn!(error = %describe(&e), "PostgreSQL connection lost before commit; retrying the group on another connection");
            }
            Failed::Before(e) => {
                let e = Arc::new(e);
                return group.iter().map(|_| Err(group_error("appending", &e, false))).collect();
            }
            Failed::Corrupt { location, detail } => {
                return group
                    .iter()
                    .map(|_| {
                        Err(StoreError::Corrupt {
                            location: location.clone(),
                            detail: detail.clone(),
                        })
                    })
                    .collect();
            }
            Failed::Commit { error, outcomes } => {
                let error = Arc::new(error);
                warn!(error = %describe(&error), "PostgreSQL append transaction failed");
                return outcomes
                    .into_iter()
                    .map(|o| match o {
                        Outcome::Decided(answer) => answer,
                        Outcome::Written(_) => Err(group_error("committing", &error, true)),
                    })
                    .collect();
            }
        }
    }
}

fn settle(outcome: Outcome) -> Answer {
    match outcome {
        Outcome::Decided(answer) => answer,
        Outcome::Written(results) => Ok(results),
    }
}

/// The error for one append of a failed group. A server error means the
/// transaction rolled back; a lost connection after the commit was sent
/// means nobody knows.
fn group_error(context: &str, e: &Arc<tokio_postgres::Error>, commit_sent: bool) -> StoreError {
    if !is_connection_error(e) {
        return StoreError::Postgres {
            context: format!("{context} (the transaction was rolled back, nothing was written)"),
            source: e.clone(),
        };
    }
    let reason = if commit_sent {
        format!(
            "the PostgreSQL connection was lost while committing, so the append may or may not be in the log \
             (all of it or none): retry it with the same event ids, which is answered idempotently; cause: {}",
            describe(e)
        )
    } else {
        format!(
            "the PostgreSQL connection was lost before committing; nothing was written: {}",
            describe(e)
        )
    };
    StoreError::Unavailable { reason }
}

/// Runs one group's transaction; see the module doc.
async fn transaction(shared: &Shared, client: &ClientWrapper, group: &[Request]) -> Result<Vec<Outcome>, Failed> {
    let started = Instant::now();
    let sql = &shared.sql;
    let (lock_head, versions, find_ids, insert, set_head, notify, states, set_state) = try_join!(
        client.prepare_cached(&sql.lock_head),
        client.prepare_cached(&sql.versions),
        client.prepare_cached(&sql.find_ids),
        client.prepare_cached(&sql.insert),
        client.prepare_cached(&sql.set_head),
        client.prepare_cached("SELECT pg_notify($1, $2)"),
        client.prepare_cached(&sql.states),
        client.prepare_cached(&sql.set_state),
    )
    .map_err(Failed::Before)?;

    // Every stream and every (stream, id) the group names.
    let mut streams: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    let mut id_streams: Vec<&str> = Vec::new();
    let mut id_uuids: Vec<Uuid> = Vec::new();
    let metas: Vec<StreamId> = group
        .iter()
        .filter_map(|r| r.op.as_ref())
        .map(|op| metadata_stream(op.stream()))
        .collect();
    for op in group.iter().filter_map(|r| r.op.as_ref()) {
        if seen.insert(op.stream().as_str()) {
            streams.push(op.stream().as_str());
        }
    }
    for meta in &metas {
        if seen.insert(meta.as_str()) {
            streams.push(meta.as_str());
        }
    }
    for append in group.iter().flat_map(|r| &r.appends) {
        if seen.insert(append.stream.as_str()) {
            streams.push(append.stream.as_str());
        }
        for event in &append.events {
            id_streams.push(append.stream.as_str());
            id_uuids.push(event.id.as_uuid());
        }
    }

    let version_params: [&(dyn ToSql + Sync); 1] = [&streams];
    let id_params: [&(dyn ToSql + Sync); 2] = [&id_streams, &id_uuids];
    let (_, head_row, version_rows, id_rows, state_rows) = try_join!(
        client.batch_execute(BEGIN),
        client.query_one(&lock_head, &[]),
        client.query(&versions, &version_params),
        client.query(&find_ids, &id_params),
        client.query(&states, &version_params),
    )
    .map_err(Failed::Before)?;

    let corrupt = |location: &str, detail: String| Failed::Corrupt {
        location: location.to_string(),
        detail,
    };
    let head = from_db(head_row.get::<_, i64>(0), "head position").map_err(|e| corrupt("head row", e.to_string()))?;
    let mut view = View::default();
    for row in &version_rows {
        let stream: &str = row.get(0);
        let stream = StreamId::new(stream).map_err(|e| corrupt("stream id", e.to_string()))?;
        let version = from_db(row.get::<_, i64>(1), "stream version").map_err(|e| corrupt("stream", e.to_string()))?;
        view.versions.insert(stream, version);
    }
    for row in &id_rows {
        let stream: &str = row.get(0);
        let stream = StreamId::new(stream).map_err(|e| corrupt("stream id", e.to_string()))?;
        let id = EventId::from_uuid(row.get(1));
        let entry = IdEntry {
            version: from_db(row.get::<_, i64>(2), "event version").map_err(|e| corrupt("event", e.to_string()))?,
            position: from_db(row.get::<_, i64>(3), "event position").map_err(|e| corrupt("event", e.to_string()))?,
        };
        view.ids.insert((stream, id), entry);
    }

    for row in &state_rows {
        let stream: &str = row.get(0);
        let stream = StreamId::new(stream).map_err(|e| corrupt("stream id", e.to_string()))?;
        let state = state_at(row, 1)
            .map_err(|e| corrupt("stream state", e.to_string()))?
            .unwrap_or_default();
        view.states.insert(stream, state);
    }

    // The metadata events of stream operations, built while the group is
    // judged, live here as long as the rows that borrow them.
    let op_appends: Vec<OnceCell<StreamAppend>> = group.iter().map(|_| OnceCell::new()).collect();
    let mut stage = Stage::new(head + 1);
    let outcomes: Vec<Outcome> = group
        .iter()
        .zip(&op_appends)
        .map(|(req, slot)| match &req.op {
            Some(op) => stage.add_op(&mut view, op, slot),
            None => stage.add(&mut view, &req.appends),
        })
        .collect();
    debug!(
        appends = group.len(),
        events = stage.rows.positions.len(),
        head,
        "judged a group"
    );

    let judged = Instant::now();
    shared.stats.applied(judged - started);
    if stage.rows.positions.is_empty() {
        return match client.batch_execute("ROLLBACK").await {
            Ok(()) => Ok(outcomes),
            Err(error) => Err(Failed::Commit { error, outcomes }),
        };
    }

    let new_head = stage.next_position - 1;
    let head_text = new_head.to_string();
    let rows = &stage.rows;
    let payloads: Vec<&[u8]> = rows.payloads.iter().map(|p| &p[..]).collect();
    let metadata: Vec<&[u8]> = rows.metadata.iter().map(|m| &m[..]).collect();
    let recorded_at = vec![stage.recorded_at; rows.positions.len()];
    // Checked when its event was staged.
    let new_head_db = to_db_saturating(new_head);
    let insert_params: [&(dyn ToSql + Sync); 9] = [
        &rows.positions,
        &rows.streams,
        &rows.versions,
        &rows.ids,
        &rows.types,
        &payloads,
        &metadata,
        &recorded_at,
        &rows.crcs,
    ];
    let head_params: [&(dyn ToSql + Sync); 1] = [&new_head_db];
    let notify_params: [&(dyn ToSql + Sync); 2] = [&sql.channel, &head_text];
    let s = &stage.states;
    let state_streams: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
    let state_tb: Vec<i64> = s.iter().map(|(_, v)| to_db_saturating(v.truncate_before)).collect();
    let state_deleted: Vec<bool> = s.iter().map(|(_, v)| v.deleted).collect();
    let state_tombstoned: Vec<bool> = s.iter().map(|(_, v)| v.tombstoned).collect();
    let state_count: Vec<Option<i64>> = s
        .iter()
        .map(|(_, v)| v.metadata.max_count.map(to_db_saturating))
        .collect();
    let state_age: Vec<Option<i64>> = s
        .iter()
        .map(|(_, v)| v.metadata.max_age.map(|a| to_db_saturating(a.as_millis() as u64)))
        .collect();
    let state_params: [&(dyn ToSql + Sync); 6] = [
        &state_streams,
        &state_tb,
        &state_deleted,
        &state_tombstoned,
        &state_count,
        &state_age,
    ];
    let committed = try_join!(
        client.execute(&insert, &insert_params),
        client.execute(&set_state, &state_params),
        client.execute(&set_head, &head_params),
        client.execute(&notify, &notify_params),
        client.batch_execute("COMMIT"),
    );
    match committed {
        Ok(_) => {
            shared.stats.committed(rows.positions.len() as u64, judged.elapsed());
            shared.advance_head(new_head);
            Ok(outcomes)
        }
        Err(error) => Err(Failed::Commit { error, outcomes }),
    }
}

/// The state the group is judged against: what the database held under the
/// lock, plus what earlier appends of the group staged.
#[derive(Default)]
struct View {
    /// The version of every stream the group names (absent streams at 0).
    versions: HashMap<StreamId, u64>,
    /// Every (stream, id) of the group that is in the log or staged.
    ids: HashMap<(StreamId, EventId), IdEntry>,
    /// The state of every stream of the group that has one (staged ones too).
    states: HashMap<StreamId, StreamState>,
}

impl StreamView for View {
    fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self.versions.get(stream).copied().unwrap_or(0))
    }

    fn state(&mut self, stream: &StreamId) -> Result<StreamState, StoreError> {
        Ok(self.states.get(stream).copied().unwrap_or_default())
    }

    fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
        Ok(self.ids.get(&(stream.clone(), *id)).copied())
    }
}

/// The rows to insert, column by column (for one `INSERT .. unnest`).
#[derive(Default)]
struct Rows<'a> {
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    payloads: Vec<&'a [u8]>,
    metadata: Vec<Vec<u8>>,
    crcs: Vec<i32>,
}

/// A group's accepted appends, staged.
struct Stage<'a> {
    rows: Rows<'a>,
    /// The new states of the streams whose operations were staged.
    states: Vec<(StreamId, StreamState)>,
    next_position: u64,
    recorded_at: SystemTime,
    recorded_micros: u64,
}

impl<'a> Stage<'a> {
    fn new(next_position: u64) -> Stage<'a> {
        let recorded_micros = now_micros();
        Stage {
            rows: Rows::default(),
            states: Vec::new(),
            next_position,
            recorded_at: from_micros(recorded_micros),
            recorded_micros,
        }
    }

    /// Judges one append and, when accepted, stages its events. A refused
    /// append stages nothing.
    fn add(&mut self, view: &mut View, appends: &'a [StreamAppend]) -> Outcome {
        let plans = match plan_multi(view, appends) {
            Ok(plans) => plans,
            Err(e) => return Outcome::Decided(Err(e)),
        };
        if let Some(results) = all_done(&plans) {
            return Outcome::Decided(Ok(results));
        }
        self.stage(view, appends, plans)
    }

    /// Judges a stream operation and, when accepted, stages the metadata
    /// event that records it (kept in `slot`) and the stream's new state.
    fn add_op(&mut self, view: &mut View, op: &StreamOperation, slot: &'a OnceCell<StreamAppend>) -> Outcome {
        let write = match plan_op(view, op) {
            Ok(w) => w,
            Err(e) => return Outcome::Decided(Err(e)),
        };
        let appends = std::slice::from_ref(slot.get_or_init(|| write.append()));
        let outcome = self.stage(
            view,
            appends,
            vec![Plan::Write {
                current: write.meta_version,
            }],
        );
        if matches!(outcome, Outcome::Written(_)) {
            view.states.insert(op.stream().clone(), write.state);
            self.states.retain(|(s, _)| s != op.stream());
            self.states.push((op.stream().clone(), write.state));
        }
        outcome
    }

    /// Stages appends already judged (every plan a write).
    fn stage(&mut self, view: &mut View, appends: &'a [StreamAppend], plans: Vec<Plan>) -> Outcome {
        // Encode everything first: only when all of it succeeded does it
        // enter the rows and the view.
        let mut rows = Rows::default();
        let mut new_ids = Vec::new();
        let mut new_versions = Vec::with_capacity(appends.len());
        let mut results = Vec::with_capacity(appends.len());
        let mut position = self.next_position;
        for (append, plan) in appends.iter().zip(plans) {
            let Plan::Write { current } = plan else {
                unreachable!("plan_multi refuses mixed plans")
            };
            let first_position = position;
            let mut version = current;
            for event in &append.events {
                version += 1;
                let metadata = match to_bincode(&event.metadata) {
                    Ok(m) => m,
                    Err(e) => return Outcome::Decided(Err(e)),
                };
                let (p, v) = match (to_db(position, "event position"), to_db(version, "stream version")) {
                    (Ok(p), Ok(v)) => (p, v),
                    (Err(e), _) | (_, Err(e)) => return Outcome::Decided(Err(e)),
                };
                let id = event.id.as_uuid();
                rows.crcs.push(row_checksum(
                    p,
                    append.stream.as_str(),
                    v,
                    &id,
                    &event.event_type,
                    &event.payload,
                    &metadata,
                    self.recorded_micros,
                ));
                rows.positions.push(p);
                rows.streams.push(append.stream.as_str());
                rows.versions.push(v);
                rows.ids.push(id);
                rows.types.push(&event.event_type);
                rows.payloads.push(&event.payload);
                rows.metadata.push(metadata);
                new_ids.push(((append.stream.clone(), event.id), IdEntry { version, position }));
                position += 1;
            }
            results.push(AppendResult {
                stream_version: version,
                first_position,
                last_position: position - 1,
            });
            new_versions.push((append.stream.clone(), version));
        }
        let target = &mut self.rows;
        target.positions.extend(rows.positions);
        target.streams.extend(rows.streams);
        target.versions.extend(rows.versions);
        target.ids.extend(rows.ids);
        target.types.extend(rows.types);
        target.payloads.extend(rows.payloads);
        target.metadata.extend(rows.metadata);
        target.crcs.extend(rows.crcs);
        view.ids.extend(new_ids);
        view.versions.extend(new_versions);
        self.next_position = position;
        Outcome::Written(results)
    }
}
