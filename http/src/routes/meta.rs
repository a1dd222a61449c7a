//! `/healthz`, `/metrics`, `/openapi.json`, `/problems`, and the fallbacks.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use strata_projections::{Projections, RunState};
use strata_store::EventStore;
use strata_subscriptions::Subscriptions;

use crate::error::HttpError;
use crate::extract::ApiPath;
use crate::metrics::Metrics;
use crate::model::Health;
use crate::problem::{Problem, ProblemDescription, ProblemType};

/// The OpenAPI document as JSON (a substate the router provides: it builds
/// the document from the routes).
#[derive(Clone, Copy)]
pub(crate) struct ApiDocument(pub &'static str);

/// Failed refreshes in a row (one per poll interval, 1 s by default) after
/// which `/healthz` says a PostgreSQL read model's copy is stale.
const UNHEALTHY_REFRESH_FAILURES: u64 = 3;

/// Liveness and the read models' lag.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses(
        (status = 200, description = "Serving; every read model running (or, on PostgreSQL, following the process that writes it)", body = Health),
        (status = 503, description = "`service-unavailable`: a read model is not running, or (PostgreSQL) its copy has failed to refresh 3 times in a row", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn healthz(
    State(store): State<Arc<dyn EventStore>>,
    State(p): State<Arc<Projections>>,
) -> Result<Json<Health>, HttpError> {
    for model in p.models() {
        // Standby: another process writes this model (PostgreSQL); this
        // one follows its commits and serves it all the same.
        if !matches!(model.run_state(), RunState::Running | RunState::Standby) {
            return Err(HttpError::Unavailable {
                reason: format!("read model {} is {:?}", model.name(), model.run_state()),
            });
        }
        // A follower whose copy cannot refresh serves ever staler reads.
        let failures = model.refresh_failures();
        if failures >= UNHEALTHY_REFRESH_FAILURES {
            return Err(HttpError::Unavailable {
                reason: format!(
                    "read model {} cannot follow the committed model: its last {failures} refreshes failed",
                    model.name()
                ),
            });
        }
    }
    let head = store.head_position().await.map_err(HttpError::from)?;
    let checkpoint = p.checkpoint();
    Ok(Json(Health {
        status: "ok".into(),
        head_position: head,
        read_model_position: checkpoint,
        lag: head.saturating_sub(checkpoint),
    }))
}

/// Prometheus metrics (text exposition).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Requests and latencies per route and status, appends, conflicts per route, idempotent replays, projection lag (overall and per read model), live (SSE) clients, and per persistent subscription group its lag, pending, in-flight and parked events and its redeliveries", body = String, content_type = "text/plain"))
)]
pub(crate) async fn metrics(
    State(store): State<Arc<dyn EventStore>>,
    State(projections): State<Arc<Projections>>,
    State(subscriptions): State<Subscriptions>,
    State(metrics): State<Arc<Metrics>>,
) -> Response {
    let head = store.head_position().await.unwrap_or(0);
    let models: Vec<(&str, u64)> = projections
        .models()
        .iter()
        .map(|m| (m.name(), m.checkpoint()))
        .collect();
    let groups = subscriptions.groups().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading the subscription groups for the metrics failed");
        Vec::new()
    });
    let text = metrics.encode(head, &models, &groups);
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document, generated from the handlers", body = Object))
)]
pub(crate) async fn openapi(State(ApiDocument(json)): State<ApiDocument>) -> Response {
    let mut r = json.to_owned().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Every problem type.
#[utoipa::path(
    get,
    path = "/problems",
    tag = "meta",
    responses((status = 200, description = "Every problem type this API answers with", body = Vec<ProblemDescription>))
)]
pub(crate) async fn problems() -> Json<Vec<ProblemDescription>> {
    Json(ProblemType::ALL.iter().copied().map(ProblemDescription::from).collect())
}

/// What a problem type means.
#[utoipa::path(
    get,
    path = "/problems/{name}",
    tag = "meta",
    params(("name" = String, Path, description = "The problem type's name, e.g. `wrong-expected-version`")),
    responses(
        (status = 200, description = "Its explanation", body = ProblemDescription),
        (status = 404, description = "`not-found`: no such problem type", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn problem(ApiPath(name): ApiPath<String>) -> Result<Json<ProblemDescription>, HttpError> {
    ProblemType::from_name(&name)
        .map(|t| Json(t.into()))
        .ok_or(HttpError::NotFound {
            resource: "problem type",
            id: name,
        })
}

/// Unknown routes.
pub(crate) async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::NotFound {
        resource: "route",
        id: uri.path().to_string(),
    }
}

/// Known routes, unknown methods.
pub(crate) async fn method_not_allowed(method: Method) -> HttpError {
    HttpError::MethodNotAllowed {
        method: method.to_string(),
    }
}
