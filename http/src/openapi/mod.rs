//! The OpenAPI document: the handlers' annotations (collected by
//! [`crate::router`]) plus what the annotations cannot say well — the
//! responses and headers every operation shares, the patterns of the
//! precondition headers and filter terms, and the links between operations.

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};

use crate::problem::PROBLEM_JSON;

mod links;

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

pub(crate) fn add_response(op: &mut Operation, status: u16, description: &str) {
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
            if op.request_body.is_some() {
                add_response(op, 415, "`unsupported-media-type`");
            }
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
    let (_, mut api) = crate::router::api_router()
        .merge(crate::router::ui_router())
        .split_for_parts();
    add_common(&mut api);
    crate::auth::openapi::add_security(&mut api);
    constrain_headers(&mut api);
    constrain_filter_terms(&mut api);
    constrain_group_items(&mut api);
    constrain_path_ids(&mut api);
    constrain_bodies(&mut api);
    constrain_event_streams(&mut api);
    links::add_links(&mut api);
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

/// An HTTP date as RFC 9110 prefers it (IMF-fixdate), from 1970 on. The
/// weekday must also be the date's (the server checks it), which a
/// pattern cannot say; the obsolete RFC 850 and asctime forms are taken
/// too but not described.
const IMF_FIXDATE: &str = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (0[1-9]|[12][0-9]|3[01]) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (19[7-9][0-9]|[2-9][0-9]{3}) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] GMT$";

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
                    "If-Unmodified-Since" => string(IMF_FIXDATE.into()),
                    _ => continue,
                };
                p.schema = Some(RefOr::T(schema.into()));
            }
        }
    }
}

/// Not a control character (Rust's `char::is_control`: C0, DEL, C1).
const NO_CONTROL: &str = r"[^\x00-\x1f\x7f-\x9f]";
/// Neither a control character nor white space (Rust's
/// `char::is_whitespace`), as `str::trim` counts it.
const VISIBLE: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// An id that names a stream: no control characters, not blank.
fn id_pattern() -> String {
    format!("^{NO_CONTROL}*{VISIBLE}{NO_CONTROL}*$")
}

/// Text that is not blank (any characters, one of them not white space).
fn not_blank() -> String {
    VISIBLE.to_string()
}

fn string_schema(min: usize, max: Option<usize>, pattern: String) -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(max)
        .pattern(Some(pattern))
        .build()
}

/// The longest id of an order or a SKU: its stream `order-{id}` or
/// `stock-{sku}` holds at most 256 bytes. JSON Schema counts characters,
/// so an id of up to 250 characters outside ASCII can still be refused
/// (`invalid-id`); the description says bytes.
const DOMAIN_ID_MAX: usize = 250;

/// The path parameters that name things, with the rules the server checks.
fn constrain_path_ids(api: &mut utoipa::openapi::OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        for op in [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            for param in op.parameters.iter_mut().flatten() {
                let RefOr::T(p) = param else { continue };
                if p.parameter_in != ParameterIn::Path {
                    continue;
                }
                let schema = match (path.as_str(), p.name.as_str()) {
                    (_, "id") if path.starts_with("/orders/") => string_schema(1, Some(DOMAIN_ID_MAX), id_pattern()),
                    (_, "sku") => string_schema(1, Some(DOMAIN_ID_MAX), id_pattern()),
                    (_, "id") if path.starts_with("/docs/") => string_schema(1, Some(128), id_pattern()),
                    (_, "collection" | "name") if !path.starts_with("/problems") => {
                        string_schema(1, Some(64), r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$".into())
                    }
                    ("/streams/{stream}" | "/streams/{stream}/metadata", "stream") => {
                        string_schema(1, Some(256), format!("^{NO_CONTROL}+$"))
                    }
                    _ => continue,
                };
                p.schema = Some(RefOr::T(schema.into()));
            }
        }
    }
}

/// Body members the server checks beyond their type: non-blank names,
/// ids that name streams, quantities of at least one, 1..=100 lines.
fn constrain_bodies(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    let nullable_id: Schema = ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .min_length(Some(1))
        .max_length(Some(DOMAIN_ID_MAX))
        .pattern(Some(id_pattern()))
        .description(Some("The order's id; the server makes one up when absent or null"))
        .build()
        .into();
    let version: Schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
            utoipa::openapi::schema::KnownFormat::Int64,
        )))
        .minimum(Some(0))
        .description(Some("The document's version (a precondition; never stored)"))
        .build()
        .into();
    let rules: Vec<(&str, &str, Schema)> = vec![
        ("PlaceOrder", "order_id", nullable_id),
        ("DocumentBody", "_version", version.clone()),
        ("MergePatchBody", "_version", version),
        ("PlaceOrder", "customer", string_schema(1, None, not_blank()).into()),
        (
            "Line",
            "sku",
            string_schema(1, Some(DOMAIN_ID_MAX), id_pattern()).into(),
        ),
        (
            "RegisterStock",
            "sku",
            string_schema(1, Some(DOMAIN_ID_MAX), id_pattern()).into(),
        ),
        ("RegisterStock", "name", string_schema(1, None, not_blank()).into()),
    ];
    let Some(components) = api.components.as_mut() else {
        return;
    };
    for (name, property, schema) in rules {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) else {
            continue;
        };
        if let Some(slot) = object.properties.get_mut(property) {
            *slot = RefOr::T(schema);
        }
    }
    // An append: 1..=10,000 events (the log's limit per append).
    if let Some(op) = api
        .paths
        .paths
        .get_mut("/streams/{stream}")
        .and_then(|item| item.post.as_mut())
        && let Some(RefOr::T(body)) = op.request_body.as_mut()
    {
        for content in body.content.values_mut() {
            let RefOr::T(content) = content else { continue };
            if let Some(RefOr::T(Schema::Array(events))) = content.schema.as_mut() {
                events.min_items = Some(1);
                events.max_items = Some(10_000);
            }
        }
    }
    let Some(components) = api.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Array(patch))) = components.schemas.get_mut("JsonPatchBody") {
        patch.items = utoipa::openapi::schema::ArrayItems::RefOrSchema(Box::new(RefOr::T(json_patch_operation())));
    }
}

/// One RFC 6902 operation: `add`, `replace` and `test` take a `value` (any
/// JSON), `move` and `copy` a `from`; members besides these are ignored.
fn json_patch_operation() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::OneOfBuilder;
    let pointer = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(/([^~/]|~[01])*)*$"))
            .description(Some(
                "A JSON Pointer (RFC 6901): empty, or `/`-separated tokens in which `~` is `~0` or `~1`",
            ))
    };
    let ops = |names: &[&str]| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names.iter().map(|n| n.to_string())))
    };
    let any = ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some("Any JSON value"));
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("op", ops(&["add", "replace", "test"]))
                .property("path", pointer())
                .property("value", any)
                .required("op")
                .required("path")
                .required("value"),
        )
        .item(
            ObjectBuilder::new()
                .property("op", ops(&["remove"]))
                .property("path", pointer())
                .required("op")
                .required("path"),
        )
        .item(
            ObjectBuilder::new()
                .property("op", ops(&["move", "copy"]))
                .property("from", pointer())
                .property("path", pointer())
                .required("op")
                .required("from")
                .required("path"),
        )
        .build()
        .into()
}

/// A Server-Sent Event as schemathesis and OpenAPI before 3.2 read the
/// `schema` of `text/event-stream`: one event, its fields as text.
fn constrain_event_streams(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::Schema;
    let event: Schema = ObjectBuilder::new()
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(0|[1-9][0-9]*)$"))
                .description(Some(
                    "The position of the log event (or, for `checkpoint`, of the position examined)",
                )),
        )
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["message", "checkpoint", "error"]))
                .description(Some("`message` (no `event` field on the wire) for a log event")),
        )
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("JSON: an `EventView`, `{\"position\": n}` or a problem body")),
        )
        .required("data")
        .build()
        .into();
    for item in api.paths.paths.values_mut() {
        let Some(op) = item.get.as_mut() else { continue };
        for response in op.responses.responses.values_mut() {
            let RefOr::T(r) = response else { continue };
            if let Some(RefOr::T(content)) = r.content.get_mut("text/event-stream") {
                content.schema = Some(RefOr::T(event.clone()));
            }
        }
    }
}
