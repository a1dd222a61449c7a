//! The routes, their middleware, and the OpenAPI document generated from
//! the handlers' annotations.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::idempotency::{self, KeyedRequests};
use crate::metrics::{self, Metrics};
use crate::problem::{PROBLEM_JSON, Problem};
use crate::routes::documents::collections;
use crate::routes::meta::ApiDocument;
use crate::routes::{documents, groups, live, meta, orders, retention, stock, streams, views};
use crate::state::Shared;

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
        (name = "meta", description = "Health, metrics, this document, problem types"),
    )
)]
struct ApiDoc;

/// Every route with its OpenAPI operation.
fn api_router() -> OpenApiRouter<Shared> {
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
        .routes(routes!(documents::listing::list_documents))
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
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(meta::problems))
        .routes(routes!(meta::problem))
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn add_response(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| problem_response(description));
}

/// Adds what every operation shares, so the handlers' annotations only say
/// what is particular to them: the problems any request can get, and for
/// POSTs the `Idempotency-Key` header and the problems of bodies and keys.
fn add_common(api: &mut utoipa::openapi::OpenApi) {
    for item in api.paths.paths.values_mut() {
        if let Some(op) = item.get.as_mut() {
            add_response(op, 400, "`invalid-parameter` or `invalid-id`");
            add_response(op, 500, "`internal-error`");
            add_response(op, 503, "`service-unavailable`");
        }
        if let Some(op) = item.post.as_mut() {
            add_response(
                op,
                400,
                "`malformed-json`, `invalid-id`, `invalid-if-match`, `conflicting-expected-versions`, `invalid-parameter`, `invalid-events` or `invalid-idempotency-key`",
            );
            add_response(
                op,
                409,
                "`idempotency-key-in-flight`: the first request with this key has not finished",
            );
            add_response(op, 413, "`payload-too-large`");
            add_response(op, 415, "`unsupported-media-type`");
            add_response(
                op,
                422,
                "`invalid-body` or `idempotency-key-reused` (the key came with a different request)",
            );
            add_response(op, 500, "`internal-error`");
            add_response(op, 503, "`service-unavailable`");
            add_response(op, 410, GONE);
            let is_create = op.responses.responses.contains_key("201");
            let is_log_append = op.operation_id.as_deref() == Some("append");
            if !is_create || is_log_append {
                add_response(
                    op,
                    428,
                    "`precondition-required`: the server requires If-Match (or expected_version) on this write",
                );
            }
            add_idempotency_key(op);
        }
        for op in [item.put.as_mut(), item.patch.as_mut(), item.delete.as_mut()]
            .into_iter()
            .flatten()
        {
            add_response(op, 400, "`invalid-idempotency-key` or another invalid input");
            add_response(
                op,
                409,
                "`idempotency-key-in-flight`: the first request with this key has not finished",
            );
            add_response(op, 413, "`payload-too-large`");
            add_response(
                op,
                422,
                "`idempotency-key-reused` (the key came with a different request)",
            );
            add_response(op, 500, "`internal-error`");
            add_response(op, 503, "`service-unavailable`");
            add_response(op, 410, GONE);
            add_idempotency_key(op);
        }
    }
}

/// Every write may meet a stream that was hard-deleted (erased).
const GONE: &str = "`stream-deleted`: the resource's stream was hard-deleted (erased) and can never be written again";

fn add_idempotency_key(op: &mut Operation) {
    let key = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "1..=255 visible ASCII characters. A retry with the same key gets the first response \
             (header `Idempotency-Replayed: true`); kept durably for the retention period.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(257))
                // Visible ASCII but `"` and `\`, 1..=255, bare or as a quoted string.
                .pattern(Some(r#"^([!#-\[\]-~]{1,255}|"[!#-\[\]-~]{1,255}")$"#)),
        ))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(key));
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = api_router().split_for_parts();
    add_common(&mut api);
    constrain_headers(&mut api);
    constrain_filter_terms(&mut api);
    constrain_group_items(&mut api);
    api
}

/// The item schemas of the group bodies' arrays (utoipa states an array's
/// bounds, not its items'): delivery tokens, filter terms.
fn constrain_group_items(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ArrayItems, Schema};
    let term = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(256))
            .pattern(Some(pattern))
            .build()
    };
    let token = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(crate::routes::groups::TOKEN))
        .build();
    let rules: [(&str, &str, utoipa::openapi::schema::Object); 7] = [
        ("AckBody", "tokens", token.clone()),
        ("NackBody", "tokens", token),
        ("FilterBody", "event_types", term(FILTER_TERM)),
        ("FilterBody", "event_type_prefixes", term(FILTER_TERM)),
        ("FilterBody", "streams", term(FILTER_TERM)),
        ("FilterBody", "stream_prefixes", term(FILTER_TERM)),
        ("FilterBody", "categories", term(CATEGORY)),
    ];
    let Some(components) = api.components.as_mut() else {
        return;
    };
    for (schema, property, items) in rules {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        if let Some(RefOr::T(Schema::Array(array))) = object.properties.get_mut(property) {
            array.items = ArrayItems::RefOrSchema(Box::new(RefOr::T(Schema::Object(items))));
        }
    }
}

/// A filter term: 1..=256 characters (the server counts bytes), no control
/// characters; a category also holds no `-`.
const FILTER_TERM: &str = r"^[^\x00-\x1f\x7f-\x9f]+$";
/// See [`FILTER_TERM`].
const CATEGORY: &str = r"^[^\x00-\x1f\x7f-\x9f-]+$";

/// The schemas of the live routes' repeatable filter terms: arrays of at
/// most 64 strings, each as the filter's rules say.
fn constrain_filter_terms(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::ArrayBuilder;
    for (path, item) in api.paths.paths.iter_mut() {
        if !path.starts_with("/subscriptions/") {
            continue;
        }
        let Some(op) = item.get.as_mut() else { continue };
        for param in op.parameters.iter_mut().flatten() {
            let RefOr::T(p) = param else { continue };
            let pattern = match (p.parameter_in.clone(), p.name.as_str()) {
                (ParameterIn::Query, "event_type" | "event_type_prefix" | "stream" | "stream_prefix") => FILTER_TERM,
                (ParameterIn::Query, "category") => CATEGORY,
                _ => continue,
            };
            let term = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(256))
                .pattern(Some(pattern));
            let schema = ArrayBuilder::new().items(term).max_items(Some(64)).build();
            p.schema = Some(RefOr::T(schema.into()));
        }
    }
}

/// A version as an entity tag: `"<digits>"`, no leading zero (19 digits
/// at most, so every value the pattern admits fits in 64 bits).
const ETAG: &str = r#""(0|[1-9][0-9]{0,18})""#;

/// The schemas of the precondition headers, the same on every route that
/// takes them, so the document says what the server parses.
fn constrain_headers(api: &mut utoipa::openapi::OpenApi) {
    let string = |pattern: String| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(pattern))
            .build()
    };
    for (path, item) in api.paths.paths.iter_mut() {
        let documents = path.starts_with("/docs/");
        for op in [
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
            item.post.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            for param in op.parameters.iter_mut().flatten() {
                let RefOr::T(p) = param else { continue };
                if p.parameter_in != ParameterIn::Header {
                    continue;
                }
                let schema = match p.name.as_str() {
                    // Documents take lists; the other routes one version.
                    "If-Match" if documents => string(format!(r"^(\*|{ETAG}( *, *{ETAG})*)$")),
                    "If-Match" => string(format!(r"^(\*|{ETAG})$")),
                    "If-None-Match" => string(r"^\*$".into()),
                    "Strata-Merge-Base" => string(r#"^(0|[1-9][0-9]{0,18}|"(0|[1-9][0-9]{0,18})")$"#.into()),
                    "Strata-Actor" => string(r"^[!-~]([ -~]{0,254}[!-~])?$".into()),
                    _ => continue,
                };
                p.schema = Some(RefOr::T(schema.into()));
            }
        }
    }
}

/// The document as JSON, built once.
fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| openapi().to_pretty_json().unwrap_or_else(|_| "{}".into()))
}

/// `/openapi.json` serves the document built here from the routes, which
/// include it: a substate, so the route does not reach back for it.
impl FromRef<Shared> for ApiDocument {
    fn from_ref(_: &Shared) -> ApiDocument {
        ApiDocument(openapi_json())
    }
}

/// The application: routes, fallbacks, and middleware (outermost first:
/// span + metrics, body limit, Idempotency-Key).
pub(crate) fn router(state: Shared) -> Router {
    let (routes, _) = api_router().split_for_parts();
    routes
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            KeyedRequests::from_ref(&state),
            idempotency::middleware,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(
            Arc::<Metrics>::from_ref(&state),
            metrics::observe,
        ))
        .with_state(state)
}
