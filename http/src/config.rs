//! How the service is configured.

use std::time::Duration;

use axum::http::StatusCode;
use strata_aggregates::Format;
use strata_store::SegmentOptions;

/// The status a stale `If-Match` is answered with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ConflictStatus {
    /// `409 Conflict` (the default: Kubernetes, CouchDB, Elasticsearch).
    #[default]
    Conflict,
    /// `412 Precondition Failed` (RFC 9110's status for a failed `If-Match`).
    PreconditionFailed,
}

impl ConflictStatus {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ConflictStatus::Conflict => StatusCode::CONFLICT,
            ConflictStatus::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        }
    }

    /// `409` or `412`; anything else is `None`.
    pub fn from_code(code: u16) -> Option<ConflictStatus> {
        match code {
            409 => Some(ConflictStatus::Conflict),
            412 => Some(ConflictStatus::PreconditionFailed),
            _ => None,
        }
    }
}

/// The service's configuration. `Config::default()` is what `strata serve`
/// runs with when no flag or variable says otherwise.
#[derive(Clone, Debug)]
pub struct Config {
    /// How the embedded log is opened (durability, limits).
    pub store: SegmentOptions,
    /// The status of a stale `If-Match` (default 409).
    pub conflict_status: ConflictStatus,
    /// Refuse writes to existing resources without `If-Match` (or
    /// `expected_version`) with 428 (default off). Creates are exempt.
    pub require_if_match: bool,
    /// The largest request body accepted, in bytes (default 2 MiB); larger is 413.
    pub body_limit: usize,
    /// How long a completed `Idempotency-Key` is remembered (default 24 h).
    pub idempotency_retention: Duration,
    /// How often expired keys are purged (default 10 min).
    pub idempotency_purge_interval: Duration,
    /// The longest a read with `min_position` waits for the read model (default 5 s).
    pub read_wait_timeout: Duration,
    /// How domain events (orders, stock) are encoded in the log (default JSON,
    /// so `GET /streams/order-1` shows them as they are).
    pub event_format: Format,
    /// Snapshot interval of orders and stock items, in events (default 100;
    /// `None` turns snapshots off).
    pub snapshot_every: Option<u64>,
    /// The most events a conflict body lists in `events_since` (default 100).
    pub conflict_event_limit: usize,
    /// The most bytes of documents a page of `GET /docs/{collection}`
    /// holds (default 1 MiB): a page ends before the document that would
    /// pass it (but holds at least one), and has a `next`.
    pub list_page_bytes: u64,
    /// How long a graceful shutdown waits for open connections to finish
    /// their requests before it drops them (default 30 s). Appends already
    /// handed to the store complete either way.
    pub shutdown_grace: Duration,
    /// Serve the web console at `/ui` (default on; `strata serve --ui false`).
    pub ui: bool,
    /// Serve a non-loopback address even when no token is configured
    /// (default off: such a service refuses to start, see
    /// `docs/security.md`). With tokens it changes nothing.
    pub insecure: bool,
    /// How often the tokens are read again while the service runs, so
    /// tokens created or revoked meanwhile take effect (default 5 s).
    pub token_refresh: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: SegmentOptions::default(),
            conflict_status: ConflictStatus::default(),
            require_if_match: false,
            body_limit: 2 * 1024 * 1024,
            idempotency_retention: Duration::from_secs(24 * 3600),
            idempotency_purge_interval: Duration::from_secs(600),
            read_wait_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            ui: true,
            insecure: false,
            token_refresh: Duration::from_secs(5),
            event_format: Format::Json,
            snapshot_every: Some(100),
            conflict_event_limit: 100,
            list_page_bytes: strata_projections::DEFAULT_PAGE_BYTES,
        }
    }
}
