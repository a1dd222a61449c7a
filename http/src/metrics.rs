//! Prometheus metrics, and the per-request middleware that records them
//! (and opens the request's tracing span).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_subscriptions::GroupInfo;
use tracing::{Instrument, field};

use crate::auth::access::TokenName;
use crate::error::{ProblemKind, REQUEST_PATH};

/// The `tracing` target of the access log: one event per request with
/// `method`, `route`, `path`, `status`, `problem` (`-` when none),
/// `latency_ms`, `request_id` and `token` (the name of the bearer token the
/// request was let in with, `-` when none; never its secret) (`strata
/// serve` shows it by default).
pub const ACCESS_LOG: &str = "strata::access";

/// The request id header, taken from the client when valid, else made up.
pub const REQUEST_ID: &str = "x-request-id";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConflictLabels {
    route: String,
    problem: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

/// The gauges of the persistent subscription groups, set at each scrape.
struct GroupGauges {
    lag: Family<GroupLabels, Gauge>,
    pending: Family<GroupLabels, Gauge>,
    in_flight: Family<GroupLabels, Gauge>,
    parked: Family<GroupLabels, Gauge>,
    delivered: Family<GroupLabels, Gauge>,
    redelivered: Family<GroupLabels, Gauge>,
    timed_out: Family<GroupLabels, Gauge>,
}

impl GroupGauges {
    fn register(registry: &mut Registry) -> GroupGauges {
        let g = GroupGauges {
            lag: Family::default(),
            pending: Family::default(),
            in_flight: Family::default(),
            parked: Family::default(),
            delivered: Family::default(),
            redelivered: Family::default(),
            timed_out: Family::default(),
        };
        for (name, help, family) in [
            (
                "subscription_group_lag_positions",
                "Positions of the log after the group's checkpoint (everything up to it acknowledged or parked)",
                &g.lag,
            ),
            (
                "subscription_group_pending_events",
                "Events waiting for a consumer",
                &g.pending,
            ),
            (
                "subscription_group_in_flight_events",
                "Events leased to consumers",
                &g.in_flight,
            ),
            ("subscription_group_parked_events", "Events parked now", &g.parked),
            (
                "subscription_group_delivered_events",
                "Deliveries since the group was created, retries included",
                &g.delivered,
            ),
            (
                "subscription_group_redelivered_events",
                "Deliveries that were retries (after a nack or a timeout) since the group was created",
                &g.redelivered,
            ),
            (
                "subscription_group_timed_out_events",
                "Leases that timed out since the group was created",
                &g.timed_out,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        g
    }

    fn set(&self, groups: &[GroupInfo]) {
        let families = [
            &self.lag,
            &self.pending,
            &self.in_flight,
            &self.parked,
            &self.delivered,
            &self.redelivered,
            &self.timed_out,
        ];
        // Deleted groups go.
        for f in families {
            f.clear();
        }
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for g in groups {
            let l = GroupLabels {
                group: g.name.to_string(),
            };
            self.lag.get_or_create(&l).set(gauge(g.lag));
            self.pending.get_or_create(&l).set(gauge(g.pending));
            self.in_flight.get_or_create(&l).set(gauge(g.in_flight));
            self.parked.get_or_create(&l).set(gauge(g.parked));
            self.delivered.get_or_create(&l).set(gauge(g.counters.delivered));
            self.redelivered.get_or_create(&l).set(gauge(g.counters.redelivered));
            self.timed_out.get_or_create(&l).set(gauge(g.counters.timed_out));
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The progress of the scavenge running now (or the last one), and
/// whether one runs: at most one at a time (`POST /admin/scavenge`).
struct ScavengeGauges {
    claimed: AtomicBool,
    running: Gauge,
    segments_total: Gauge,
    segments_done: Gauge,
    events_erased: Gauge,
    bytes_erased: Gauge,
    finished: Family<OutcomeLabels, Counter>,
}

impl ScavengeGauges {
    fn register(registry: &mut Registry) -> ScavengeGauges {
        let g = ScavengeGauges {
            claimed: AtomicBool::new(false),
            running: Gauge::default(),
            segments_total: Gauge::default(),
            segments_done: Gauge::default(),
            events_erased: Gauge::default(),
            bytes_erased: Gauge::default(),
            finished: Family::default(),
        };
        for (name, help, gauge) in [
            (
                "scavenge_running",
                "1 while a scavenge runs (POST /admin/scavenge), else 0",
                &g.running,
            ),
            (
                "scavenge_segments_total",
                "Segments the running (or last) scavenge examines",
                &g.segments_total,
            ),
            (
                "scavenge_segments_done",
                "Segments the running (or last) scavenge has examined",
                &g.segments_done,
            ),
            (
                "scavenge_events_erased",
                "Events whose payload and metadata the running (or last) scavenge erased",
                &g.events_erased,
            ),
            (
                "scavenge_bytes_erased",
                "Payload and metadata bytes the last scavenge overwrote (set when it finishes)",
                &g.bytes_erased,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "scavenges_finished",
            "Scavenges finished, by outcome (ok, failed)",
            g.finished.clone(),
        );
        g
    }
}

/// The claim on the one scavenge that may run: the gauges follow it, and
/// dropping it (finished, failed or abandoned) lets the next one start.
pub(crate) struct ScavengeRun(Arc<Metrics>);

impl ScavengeRun {
    /// Records how far it has got.
    pub(crate) fn progress(&self, segments_done: u64, segments_total: u64, events_erased: u64) {
        let g = &self.0.scavenge;
        g.segments_total.set(gauge(segments_total));
        g.segments_done.set(gauge(segments_done));
        g.events_erased.set(gauge(events_erased));
    }

    /// Records its end: `bytes_erased` when it succeeded, `None` when it failed.
    pub(crate) fn finished(&self, bytes_erased: Option<u64>) {
        let g = &self.0.scavenge;
        let outcome = match bytes_erased {
            Some(bytes) => {
                g.bytes_erased.set(gauge(bytes));
                "ok"
            }
            None => "failed",
        };
        g.finished.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records an end before the end: stopped by the shutdown (only a
    /// PostgreSQL scavenge stops), what it erased stays erased.
    #[cfg(feature = "postgres")]
    pub(crate) fn stopped(&self) {
        let g = &self.0.scavenge;
        g.finished.get_or_create(&OutcomeLabels { outcome: "stopped" }).inc();
    }
}

impl Drop for ScavengeRun {
    fn drop(&mut self) {
        let g = &self.0.scavenge;
        g.running.set(0);
        g.claimed.store(false, Ordering::Release);
    }
}

/// A count as a gauge's value.
fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Events a write handler appended, for the append counters (a response
/// extension).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appended(pub u64);

/// A response replayed for a repeated Idempotency-Key, for the replay
/// counter (a response extension).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Replayed;

/// The service's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    appends: Family<RouteLabels, Counter>,
    events: Family<RouteLabels, Counter>,
    conflicts: Family<ConflictLabels, Counter>,
    replays: Family<RouteLabels, Counter>,
    lag: Gauge,
    checkpoint: Gauge,
    model_lag: Family<ModelLabels, Gauge>,
    head: Gauge,
    sse_clients: Gauge,
    sse_events: Counter,
    groups: GroupGauges,
    scavenge: ScavengeGauges,
}

/// A live (SSE) client, counted in `strata_sse_clients` while it is held.
pub(crate) struct SseClient(Gauge);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("strata");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let appends = Family::<RouteLabels, Counter>::default();
        let events = Family::<RouteLabels, Counter>::default();
        let conflicts = Family::<ConflictLabels, Counter>::default();
        let replays = Family::<RouteLabels, Counter>::default();
        let lag = Gauge::default();
        let checkpoint = Gauge::default();
        let model_lag = Family::<ModelLabels, Gauge>::default();
        let head = Gauge::default();
        let sse_clients = Gauge::default();
        let sse_events = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            latency.clone(),
        );
        registry.register("http_appends", "Appends (successful writes) by route", appends.clone());
        registry.register("http_appended_events", "Events appended by route", events.clone());
        registry.register(
            "http_conflicts",
            "409/412 answers by route and problem type (wrong-expected-version is the optimistic concurrency conflict)",
            conflicts.clone(),
        );
        registry.register(
            "http_idempotent_replays",
            "Responses replayed for a repeated Idempotency-Key, by route",
            replays.clone(),
        );
        registry.register(
            "projection_lag_events",
            "Events in the log not yet applied by every read model",
            lag.clone(),
        );
        registry.register(
            "projection_checkpoint_position",
            "The position every read model has applied",
            checkpoint.clone(),
        );
        registry.register(
            "projection_model_lag_events",
            "Events in the log not yet applied, by read model",
            model_lag.clone(),
        );
        registry.register("log_head_position", "The log's newest position", head.clone());
        registry.register(
            "sse_clients",
            "Clients following the log over Server-Sent Events now",
            sse_clients.clone(),
        );
        registry.register(
            "sse_events",
            "Log events the Server-Sent Event streams have taken from the log to send",
            sse_events.clone(),
        );
        let groups = GroupGauges::register(&mut registry);
        let scavenge = ScavengeGauges::register(&mut registry);
        Metrics {
            groups,
            scavenge,
            registry,
            requests,
            latency,
            appends,
            events,
            conflicts,
            replays,
            lag,
            checkpoint,
            model_lag,
            head,
            sse_clients,
            sse_events,
        }
    }

    /// Counts a live client until the guard is dropped.
    pub(crate) fn sse_client(&self) -> SseClient {
        self.sse_clients.inc();
        SseClient(self.sse_clients.clone())
    }

    /// Claims the one scavenge that may run, its progress gauges reset;
    /// `None` while another runs.
    pub(crate) fn start_scavenge(self: &Arc<Self>) -> Option<ScavengeRun> {
        let g = &self.scavenge;
        if g.claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        for gauge in [&g.segments_total, &g.segments_done, &g.events_erased, &g.bytes_erased] {
            gauge.set(0);
        }
        g.running.set(1);
        Some(ScavengeRun(self.clone()))
    }

    /// Counts an event a live stream took from the log.
    pub(crate) fn sse_event(&self) {
        self.sse_events.inc();
    }

    /// The text exposition, with the read model gauges set from `head`
    /// and each model's checkpoint (`models`: name and checkpoint), and
    /// the group gauges to `groups`.
    pub(crate) fn encode(&self, head: u64, models: &[(&str, u64)], groups: &[GroupInfo]) -> String {
        let checkpoint = models.iter().map(|(_, c)| *c).min().unwrap_or(0);
        self.groups.set(groups);
        self.head.set(head as i64);
        self.checkpoint.set(checkpoint as i64);
        self.lag.set(head.saturating_sub(checkpoint) as i64);
        for (model, applied) in models {
            self.model_lag
                .get_or_create(&ModelLabels {
                    model: model.to_string(),
                })
                .set(head.saturating_sub(*applied) as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    fn record(&self, method: &str, route: &str, status: StatusCode, seconds: f64, response: &Response) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
        if response.extensions().get::<Replayed>().is_some() {
            self.replays.get_or_create(&RouteLabels { route: route.into() }).inc();
        }
        if let Some(Appended(n)) = response.extensions().get::<Appended>() {
            let r = RouteLabels { route: route.into() };
            self.appends.get_or_create(&r).inc();
            self.events.get_or_create(&r).inc_by(*n);
        }
        if let Some(ProblemKind(kind)) = response.extensions().get::<ProblemKind>()
            && matches!(status, StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED)
        {
            self.conflicts
                .get_or_create(&ConflictLabels {
                    route: route.into(),
                    problem: kind.name().into(),
                })
                .inc();
        }
    }
}

fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// The method as a metrics label: the standard methods by name, any other
/// as `OTHER`, so clients cannot grow the label set (and the registry)
/// without bound.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The route template of a request (`/orders/{id}`), `unmatched` outside the routes.
fn route_of(req_extensions: &axum::http::Extensions) -> String {
    req_extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into())
}

/// The outermost middleware: a span per request, the request id, the
/// problem `instance`, and the request metrics.
pub(crate) async fn observe(State(metrics): State<Arc<Metrics>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_string();
    let route = route_of(req.extensions());
    let request_id = match req.headers().get(REQUEST_ID) {
        Some(v) if valid_request_id(v) => v.clone(),
        _ => {
            let id = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).expect("a uuid is a valid header");
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let span = tracing::info_span!(
        "http.request",
        method = %method,
        route = %route,
        request_id = %String::from_utf8_lossy(request_id.as_bytes()),
        status = field::Empty,
        problem = field::Empty,
        latency_ms = field::Empty,
    );
    let path = req.uri().path().to_string();
    let mut response = REQUEST_PATH
        .scope(path.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = response.status();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.record("status", status.as_u16());
    span.record("latency_ms", latency_ms);
    let problem = response
        .extensions()
        .get::<ProblemKind>()
        .map(|ProblemKind(kind)| kind.name());
    if let Some(name) = problem {
        span.record("problem", name);
    }
    // The access log: one self-contained line per request, outside the
    // span so that it repeats none of its fields.
    tracing::info!(
        target: ACCESS_LOG,
        method = %method,
        route = %route,
        path = %path,
        status = status.as_u16(),
        problem = %problem.unwrap_or("-"),
        latency_ms = (latency_ms * 1000.0).round() / 1000.0,
        request_id = %String::from_utf8_lossy(request_id.as_bytes()),
        token = %response.extensions().get::<TokenName>().map_or("-", |t| t.0.as_str()),
        "request"
    );
    metrics.record(&method, &route, status, elapsed.as_secs_f64(), &response);
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"RAND42").unwrap();
        assert_eq!(method_label(&made_up), "OTHER");
    }
}
