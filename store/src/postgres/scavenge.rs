//! Scavenging a `PostgresStore`: the rows of removed events deleted from
//! the `events` table, in small transactions, while the store serves.
//!
//! 1. **Retention made permanent.** A stream whose `max_count` or `max_age`
//!    removes events is truncated before its first kept event, as on the
//!    segment log; the truncation is judged against the metadata version
//!    the scavenge read, so an administrator's change of the retention made
//!    meanwhile wins (that stream is left for the next scavenge).
//! 2. **Rows deleted in batches.** For each stream whose state removes
//!    events for good (tombstoned, or below its truncation, which includes
//!    soft deletes), at most [`PostgresScavengeOptions::batch_events`] rows
//!    at a time leave `events` in one statement, and what is kept of them
//!    (position, stream id, version, event id: no type, payload or metadata)
//!    enters `erased_events` in the same transaction. The erased ids answer
//!    a late retry of their append; the erased versions keep the stream's
//!    version counting when none of its rows is left.
//! 3. **Resumable:** each batch commits on its own and a scavenge deletes
//!    only what is still there, so one interrupted at any point (a crash, a
//!    lost connection) is finished by running it again.
//! 4. **Stoppable:** [`PostgresStore::scavenge_until`] stops between two
//!    statements (and in its pauses) once its `stop` future completes, so a
//!    service shutting down does not wait for a long scavenge to finish.
//!
//! A batch takes no lock an append or a read waits for (appends lock the
//! head row and insert new rows; reads see the rows before or after a
//! batch commits, and skip them either way), so the store serves on.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::FusedFuture;
use tracing::info;

use super::PostgresStore;
use crate::error::StoreError;
use crate::pg::{from_db, to_db_saturating};
use crate::retention::StreamOperation;
use crate::store::EventStore;
use crate::types::{ExpectedVersion, StreamId};

/// How many streams a scavenge reads per page.
const STREAM_PAGE: i64 = 256;

/// What stops a scavenge: a future that completes when it should.
type Stop<'a> = Pin<Box<dyn FusedFuture<Output = ()> + Send + 'a>>;

/// Whether `stop` has completed (polled once, without waiting).
fn stopped(stop: &mut Stop<'_>) -> bool {
    stop.is_terminated() || stop.as_mut().now_or_never().is_some()
}

/// How a scavenge of a [`PostgresStore`] runs.
#[derive(Clone, Copy, Debug)]
pub struct PostgresScavengeOptions {
    /// Bytes of payload and metadata erased per second at most (`None`: as
    /// fast as the server goes), so a scavenge leaves the server to appends.
    pub max_bytes_per_second: Option<u64>,
    /// Rows deleted per transaction (default 1,000; at least 1): bounds how
    /// long each one runs and how much WAL it writes at once.
    pub batch_events: usize,
    /// Truncate the streams whose `max_count`/`max_age` removes events
    /// first, so those events are erased too (default `true`).
    pub make_retention_permanent: bool,
}

impl Default for PostgresScavengeOptions {
    fn default() -> Self {
        PostgresScavengeOptions {
            max_bytes_per_second: None,
            batch_events: 1000,
            make_retention_permanent: true,
        }
    }
}

/// How far a scavenge of a [`PostgresStore`] has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostgresScavengeProgress {
    /// Streams examined (those with something removed for good).
    pub streams_done: u64,
    /// Streams to examine.
    pub streams_total: u64,
    /// Events erased so far.
    pub events_erased: u64,
}

/// What a scavenge of a [`PostgresStore`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostgresScavengeReport {
    /// Streams truncated to make `max_count`/`max_age` removals permanent.
    pub streams_truncated: u64,
    /// Streams whose retention changed after the scavenge read it, left as
    /// they are (the next scavenge looks again). A stream deleted for good
    /// meanwhile is not counted: its events are erased by this scavenge
    /// anyway.
    pub streams_skipped: u64,
    /// Streams examined.
    pub streams_examined: u64,
    /// Transactions that deleted rows.
    pub batches: u64,
    /// Event rows deleted.
    pub events_erased: u64,
    /// Payload and metadata bytes of the deleted rows.
    pub bytes_erased: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Stopped before the end, because the `stop` of
    /// [`PostgresStore::scavenge_until`] completed: what it erased stays
    /// erased, and the next scavenge goes on from there.
    pub stopped: bool,
}

impl PostgresStore {
    /// Deletes the rows of removed events: see the module documentation of
    /// `postgres/scavenge.rs` and `docs/retention.md`. Runs while the store
    /// serves; `progress` is called after each page of streams. Scavenges
    /// of one store handle run one at a time; scavenges of several
    /// processes at once are safe (each row is deleted once) but waste work.
    ///
    /// Errors: [`StoreError::InvalidLimits`] for a batch of 0,
    /// [`StoreError::Unavailable`]/[`StoreError::Postgres`] when the
    /// database fails (what was committed stays erased; run it again), and
    /// what a truncation returns.
    pub async fn scavenge(
        &self,
        options: PostgresScavengeOptions,
        progress: &mut (dyn FnMut(PostgresScavengeProgress) + Send),
    ) -> Result<PostgresScavengeReport, StoreError> {
        self.scavenge_until(options, progress, std::future::pending()).await
    }

    /// [`PostgresStore::scavenge`], stopped early once `stop` completes (a
    /// service's shutdown, say): it is looked at before each statement and
    /// during each pause of `max_bytes_per_second`, so the scavenge ends
    /// within one batch's transaction of it, with
    /// [`PostgresScavengeReport::stopped`] set. Every batch committed
    /// before stays committed (each is a transaction of its own), and the
    /// next scavenge goes on from there.
    pub async fn scavenge_until(
        &self,
        options: PostgresScavengeOptions,
        progress: &mut (dyn FnMut(PostgresScavengeProgress) + Send),
        stop: impl Future<Output = ()> + Send,
    ) -> Result<PostgresScavengeReport, StoreError> {
        let mut stop: Stop<'_> = Box::pin(stop.fuse());
        if options.batch_events == 0 {
            return Err(StoreError::InvalidLimits {
                reason: "a scavenge's batch_events must be at least 1".into(),
            });
        }
        let _one_at_a_time = self.inner.scavenging.lock().await;
        let started = Instant::now();
        let mut report = PostgresScavengeReport::default();
        if options.make_retention_permanent {
            self.make_retention_permanent(&mut report, &mut stop).await?;
        }
        let sql = &self.shared().sql;
        let total = self
            .shared()
            .query("counting the streams to scavenge", &sql.scavenge_total, &[])
            .await?;
        let total = total
            .first()
            .map_or(Ok(0), |r| from_db(r.get::<_, i64>(0), "stream count"))?;
        let mut done = PostgresScavengeProgress {
            streams_done: 0,
            streams_total: total,
            events_erased: 0,
        };
        progress(done);
        let batch = to_db_saturating(options.batch_events as u64);
        let mut after = String::new();
        'pages: loop {
            if report.stopped || stopped(&mut stop) {
                report.stopped = true;
                break;
            }
            let rows = self
                .shared()
                .query(
                    "listing the streams to scavenge",
                    &sql.scavenge_streams,
                    &[&after, &STREAM_PAGE],
                )
                .await?;
            let page: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let Some(last) = page.last() else { break };
            after = last.clone();
            loop {
                if stopped(&mut stop) {
                    report.stopped = true;
                    break 'pages;
                }
                let rows = self
                    .shared()
                    .query("erasing removed events", &sql.scavenge_batch, &[&page, &batch])
                    .await?;
                let (erased, bytes) = rows
                    .first()
                    .map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
                let (erased, bytes) = (erased.max(0) as u64, bytes.max(0) as u64);
                if erased > 0 {
                    report.batches += 1;
                    report.events_erased += erased;
                    report.bytes_erased += bytes;
                    pace(options.max_bytes_per_second, report.bytes_erased, started, &mut stop).await;
                }
                if erased < options.batch_events as u64 {
                    break;
                }
            }
            report.streams_examined += page.len() as u64;
            // Streams deleted or truncated since the count add to it.
            done.streams_done = report.streams_examined;
            done.streams_total = done.streams_total.max(done.streams_done);
            done.events_erased = report.events_erased;
            progress(done);
            if (page.len() as i64) < STREAM_PAGE {
                break;
            }
        }
        report.elapsed = started.elapsed();
        if report.stopped {
            info!(
                streams = report.streams_examined,
                batches = report.batches,
                erased = report.events_erased,
                bytes = report.bytes_erased,
                "PostgreSQL scavenge stopped before the end: the next one goes on"
            );
        } else {
            info!(
                streams = report.streams_examined,
                batches = report.batches,
                erased = report.events_erased,
                bytes = report.bytes_erased,
                "PostgreSQL scavenge finished"
            );
        }
        Ok(report)
    }

    /// Truncates every stream whose `max_count`/`max_age` removes events
    /// before its first kept one, judged against the metadata version read
    /// with its retention (a stream whose metadata moved on is skipped).
    /// Sets `report.stopped` and returns when `stop` completes.
    async fn make_retention_permanent(
        &self,
        report: &mut PostgresScavengeReport,
        stop: &mut Stop<'_>,
    ) -> Result<(), StoreError> {
        let mut after = String::new();
        loop {
            if stopped(stop) {
                report.stopped = true;
                return Ok(());
            }
            let rows = self
                .shared()
                .query(
                    "reading the streams with a retention",
                    &self.shared().sql.retention_streams,
                    &[&after, &STREAM_PAGE],
                )
                .await?;
            for row in &rows {
                if stopped(stop) {
                    report.stopped = true;
                    return Ok(());
                }
                let id: String = row.get(0);
                let truncate_before = from_db(row.get::<_, i64>(1), "truncate_before")?;
                let meta_version = from_db(row.get::<_, i64>(2), "metadata version")?;
                let last = from_db(row.get::<_, i64>(3), "stream version")?;
                let first_kept = from_db(row.get::<_, i64>(4), "first kept version")?;
                if first_kept > truncate_before.max(1) && first_kept <= last + 1 {
                    let stream = StreamId::new(id.as_str()).map_err(|e| StoreError::Corrupt {
                        location: "the stream_state table".into(),
                        detail: format!("a stream id that is not valid: {e}"),
                    })?;
                    let op = StreamOperation::TruncateForRetention {
                        stream,
                        metadata_expected: ExpectedVersion::Exact(meta_version),
                        before: first_kept,
                    };
                    count_truncation(report, self.modify_stream(op).await)?;
                }
                after = id;
            }
            if (rows.len() as i64) < STREAM_PAGE {
                return Ok(());
            }
        }
    }
}

/// Counts in `report` what a truncation for retention did: truncated, or
/// skipped (its retention changed after the scavenge read it: the next
/// scavenge judges it again). A stream deleted for good meanwhile is
/// neither: its events are erased by this scavenge anyway. Any other error
/// is returned.
fn count_truncation<T>(report: &mut PostgresScavengeReport, result: Result<T, StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(_) => report.streams_truncated += 1,
        Err(StoreError::WrongExpectedVersion { .. }) => report.streams_skipped += 1,
        Err(StoreError::StreamDeleted { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Sleeps while `bytes` erased since `started` run ahead of `rate` per
/// second, or until `stop` completes.
async fn pace(rate: Option<u64>, bytes: u64, started: Instant, stop: &mut Stop<'_>) {
    let Some(rate) = rate.filter(|r| *r > 0) else { return };
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.as_mut() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_deleted_meanwhile_is_not_counted_as_skipped() {
        let mut report = PostgresScavengeReport::default();
        let stream = StreamId::new("s").unwrap();
        count_truncation(&mut report, Ok(())).unwrap();
        count_truncation::<()>(
            &mut report,
            Err(StoreError::WrongExpectedVersion {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(1),
                actual: 2,
            }),
        )
        .unwrap();
        count_truncation::<()>(&mut report, Err(StoreError::StreamDeleted { stream })).unwrap();
        assert_eq!((report.streams_truncated, report.streams_skipped), (1, 1), "{report:?}");
        let other = count_truncation::<()>(&mut report, Err(StoreError::Unavailable { reason: "down".into() }));
        assert!(matches!(other, Err(StoreError::Unavailable { .. })), "{other:?}");
    }
}
