//! The operator's routes: `POST /admin/scavenge` starts a scavenge of the
//! log (the segment files, or the PostgreSQL tables) in the background
//! while the service goes on serving, its progress in `/metrics`
//! (`strata_scavenge_*`). See `docs/retention.md`.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRef;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_store::{ScavengeOptions, SegmentStore};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use utoipa::{IntoParams, ToSchema};

use crate::error::HttpError;
use crate::extract::ApiQuery;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::state::Shared;

/// What the admin routes use: the segment log (`None` on PostgreSQL) or
/// the PostgreSQL store, the metrics that hold the scavenge's claim and
/// progress, the tracker shutdown waits on, and the token shutdown cancels
/// first (a PostgreSQL scavenge stops at it).
pub(crate) struct Admin {
    segments: Option<SegmentStore>,
    #[cfg(feature = "postgres")]
    postgres: Option<strata_store::PostgresStore>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    #[cfg(feature = "postgres")]
    stopping: tokio_util::sync::CancellationToken,
}

impl FromRef<Shared> for Admin {
    fn from_ref(s: &Shared) -> Admin {
        Admin {
            segments: s.segments.clone(),
            #[cfg(feature = "postgres")]
            postgres: s.postgres.clone(),
            metrics: s.metrics.clone(),
            tasks: s.tasks.clone(),
            #[cfg(feature = "postgres")]
            stopping: s.stopping.clone(),
        }
    }
}

/// How to scavenge.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScavengeQuery {
    /// Read and write at most this many MiB per second (at least 1;
    /// default: as fast as the disk goes), so appends keep the disk.
    #[param(minimum = 1)]
    max_mib_per_second: Option<u64>,
}

/// A scavenge, started.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScavengeStarted {
    /// Where its progress shows: `strata_scavenge_running` (1 until it
    /// ends), `strata_scavenge_segments_total`/`_done` (streams on
    /// PostgreSQL),
    /// `strata_scavenge_events_erased`, `strata_scavenge_bytes_erased` and
    /// `strata_scavenges_finished{outcome}`.
    metrics: &'static str,
    /// The bound on its I/O, if any.
    max_mib_per_second: Option<u64>,
}

/// Starts a scavenge of the log in the background: the payloads and
/// metadata of deleted, truncated and expired events are erased from the
/// segment files (on PostgreSQL: their rows are deleted, in batches) while
/// the service goes on serving.
#[utoipa::path(
    post,
    path = "/admin/scavenge",
    tag = "admin",
    params(ScavengeQuery),
    responses(
        (status = 202, description = "Started; watch its progress in /metrics", body = ScavengeStarted,
            headers(("Location" = String, description = "`/metrics`, where its progress shows"))),
        (status = 400, description = "`invalid-parameter`: an unknown parameter or a rate of 0", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`scavenge-running`: one runs already", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`service-unavailable`: this store cannot scavenge", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn scavenge(
    State(admin): State<Admin>,
    ApiQuery(q): ApiQuery<ScavengeQuery>,
) -> Result<Response, HttpError> {
    if q.max_mib_per_second.is_some_and(|m| m == 0 || m > i64::MAX as u64) {
        return Err(HttpError::InvalidParameter {
            reason: "max_mib_per_second must be 1..=2^63-1".into(),
        });
    }
    let rate = q.max_mib_per_second.map(|m| m.saturating_mul(1024 * 1024));
    #[cfg(feature = "postgres")]
    if let Some(store) = admin.postgres {
        let run = admin.metrics.start_scavenge().ok_or(HttpError::ScavengeRunning)?;
        let options = strata_store::PostgresScavengeOptions {
            max_bytes_per_second: rate,
            ..strata_store::PostgresScavengeOptions::default()
        };
        info!(max_mib_per_second = ?q.max_mib_per_second, "scavenge of the PostgreSQL log started");
        // Tracked: shutdown waits for it, and stops it first (between two
        // batches). Each batch commits on its own, so a stop or a crash
        // meanwhile is safe (the next scavenge goes on).
        let stop = admin.stopping.clone().cancelled_owned();
        admin.tasks.spawn(async move {
            let result = store
                .scavenge_until(
                    options,
                    &mut |p| run.progress(p.streams_done, p.streams_total, p.events_erased),
                    stop,
                )
                .await;
            match result {
                Ok(report) if report.stopped => {
                    info!(
                        erased = report.events_erased,
                        "scavenge stopped by the shutdown: the next one goes on"
                    );
                    run.stopped();
                }
                Ok(report) => run.finished(Some(report.bytes_erased)),
                Err(e) => {
                    warn!(error = %e, "scavenge failed");
                    run.finished(None);
                }
            }
        });
        return Ok(started(q.max_mib_per_second));
    }
    let Some(store) = admin.segments else {
        return Err(HttpError::Unavailable {
            reason: "this store cannot scavenge".into(),
        });
    };
    let run = admin.metrics.start_scavenge().ok_or(HttpError::ScavengeRunning)?;
    let options = ScavengeOptions {
        max_bytes_per_second: rate,
    };
    info!(max_mib_per_second = ?q.max_mib_per_second, "scavenge started");
    // Tracked: shutdown waits for it (it holds the store), and a crash
    // meanwhile is safe (the next scavenge resumes).
    admin.tasks.spawn(async move {
        let result = store
            .scavenge(options, &mut |p| {
                run.progress(p.segments_done, p.segments_total, p.events_erased)
            })
            .await;
        match result {
            Ok(report) => run.finished(Some(report.bytes_erased)),
            Err(e) => {
                warn!(error = %e, "scavenge failed");
                run.finished(None);
            }
        }
    });
    Ok(started(q.max_mib_per_second))
}

/// The answer to a scavenge started: 202, its progress at `/metrics`.
fn started(max_mib_per_second: Option<u64>) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, "/metrics")],
        Json(ScavengeStarted {
            metrics: "/metrics",
            max_mib_per_second,
        }),
    )
        .into_response()
}
