//! The routes and their middleware; the OpenAPI document is built from
//! the same routes (`crate::openapi`).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::access::{self, Access};
use crate::idempotency::{self, KeyedRequests};
use crate::metrics::{self, Metrics};
use crate::problem::Problem;
use crate::routes::documents::collections;
use crate::routes::meta::ApiDocument;
use crate::routes::{admin, browse, documents, groups, live, meta, orders, retention, stock, streams, views};
use crate::state::Shared;
use crate::ui;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "strata",
        description = "An event-sourced aggregate store over HTTP: `ETag` on reads, `If-Match` on writes, \
                       409 (or 412) with an RFC 9457 problem body that says what changed, `Idempotency-Key` on every POST, PUT, PATCH and DELETE.",
    ),
    components(schemas(Problem)),
    tags(
        (name = "orders", description = "The order state machine; placing reserves stock atomically"),
        (name = "stock", description = "Stock items, one stream per SKU"),
        (name = "views", description = "Read models; `min_position` reads your writes"),
        (name = "documents", description = "JSON documents in declared collections: PUT/PATCH/DELETE with If-Match, If-Unmodified-Since or `_version`, 409 bodies naming the conflicting fields, merges on request (Strata-Merge-Base), unique values"),
        (name = "log", description = "The generic log (domain and system streams are read-only here)"),
        (name = "subscriptions", description = "The log as Server-Sent Events (history then live, filtered, resumable with Last-Event-ID), and persistent subscription groups of competing consumers"),
        (name = "admin", description = "The operator's: scavenging (erasing deleted events from disk); needs an admin token"),
        (name = "meta", description = "Health, metrics, this document, problem types"),
        (name = "console", description = "The web console: static pages that call this API (off with `--ui false`)"),
    )
)]
struct ApiDoc;

/// Every route with its OpenAPI operation.
pub(crate) fn api_router() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orders::place_order))
        .routes(routes!(orders::get_order, retention::erase_order))
        .routes(routes!(orders::order_events))
        .routes(routes!(orders::pay))
        .routes(routes!(orders::ship))
        .routes(routes!(orders::deliver))
        .routes(routes!(orders::cancel))
        .routes(routes!(stock::register))
        .routes(routes!(stock::get_item))
        .routes(routes!(stock::receive))
        .routes(routes!(stock::adjust))
        .routes(routes!(views::orders))
        .routes(routes!(views::stock))
        .routes(routes!(collections::declare_collection, collections::get_collection))
        .routes(routes!(
            documents::get_document,
            documents::put_document,
            documents::patch_document,
            documents::delete_document
        ))
        .routes(routes!(documents::document_history))
        .routes(routes!(documents::erase::erase_document))
        .routes(routes!(documents::listing::list_documents))
        .routes(routes!(browse::list_streams))
        .routes(routes!(browse::read_log_page))
        .routes(routes!(streams::read, streams::append, retention::delete_stream))
        .routes(routes!(retention::get_metadata, retention::put_metadata))
        .routes(routes!(live::all))
        .routes(routes!(live::stream))
        .routes(routes!(live::category))
        .routes(routes!(groups::list))
        .routes(routes!(groups::create, groups::get, groups::delete))
        .routes(routes!(groups::read))
        .routes(routes!(groups::ack))
        .routes(routes!(groups::nack))
        .routes(routes!(groups::parked))
        .routes(routes!(groups::replay))
        .routes(routes!(admin::scavenge))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(meta::problems))
        .routes(routes!(meta::problem))
}

/// The document as JSON, built once.
fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        crate::openapi::openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".into())
    })
}

/// The web console's routes (left out with `--ui false`).
pub(crate) fn ui_router() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(ui::root))
        .routes(routes!(ui::index))
        .routes(routes!(ui::file))
}

/// `/openapi.json` serves the document built here from the routes, which
/// include it: a substate, so the route does not reach back for it.
impl FromRef<Shared> for ApiDocument {
    fn from_ref(_: &Shared) -> ApiDocument {
        ApiDocument(openapi_json())
    }
}

/// The application: routes, fallbacks, and middleware (outermost first:
/// span + metrics, body limit, bearer tokens, Idempotency-Key: a request
/// refused for its token reaches no handler and records no key).
pub(crate) fn router(state: Shared) -> Router {
    let api = if state.config.ui {
        api_router().merge(ui_router())
    } else {
        api_router()
    };
    let (routes, _) = api.split_for_parts();
    routes
        // A route layer: a method the route does not take is 405 before
        // any Idempotency-Key is looked at.
        .route_layer(middleware::from_fn_with_state(
            KeyedRequests::from_ref(&state),
            idempotency::middleware,
        ))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Access::from_ref(&state),
            access::authorize,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(
            Arc::<Metrics>::from_ref(&state),
            metrics::observe,
        ))
        .with_state(state)
}
