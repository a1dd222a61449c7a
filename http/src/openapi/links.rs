//! OpenAPI links: which response feeds which next request (the order's id
//! from `POST /orders` into `pay`, the tokens of a group read into `ack`).
//!
//! They describe the API's flows to clients and let a stateful tester
//! (schemathesis) walk them: orders through pay, ship, deliver and cancel,
//! stock from registration to an order, documents through every method,
//! log streams, and persistent subscription groups from creation to ack.

use serde_json::{Value, json};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::{OpenApi, RefOr};

/// One link: from `source`'s `status` response to `target`, with the
/// target's parameters (`path.id`, `header.If-Match`) and body as runtime
/// expressions or values.
struct Link {
    source: &'static str,
    status: &'static str,
    name: &'static str,
    target: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: Option<fn() -> Value>,
}

const fn link(
    source: &'static str,
    status: &'static str,
    name: &'static str,
    target: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> Link {
    Link {
        source,
        status,
        name,
        target,
        parameters,
        body: None,
    }
}

const fn with_body(mut l: Link, body: fn() -> Value) -> Link {
    l.body = Some(body);
    l
}

/// The order's id and version from an order response.
const ORDER: &[(&str, &str)] = &[
    ("path.id", "$response.body#/order_id"),
    ("header.If-Match", "$response.header.ETag"),
];
const ORDER_ID: &[(&str, &str)] = &[("path.id", "$response.body#/order_id")];
const SKU: &[(&str, &str)] = &[("path.sku", "$response.body#/sku")];
const SKU_VERSION: &[(&str, &str)] = &[
    ("path.sku", "$response.body#/sku"),
    ("header.If-Match", "$response.header.ETag"),
];
const COLLECTION: &[(&str, &str)] = &[("path.collection", "$request.path.name")];
const DOCUMENT: &[(&str, &str)] = &[
    ("path.collection", "$request.path.collection"),
    ("path.id", "$request.path.id"),
];
const DOCUMENT_VERSION: &[(&str, &str)] = &[
    ("path.collection", "$request.path.collection"),
    ("path.id", "$request.path.id"),
    ("header.If-Match", "$response.header.ETag"),
];
const RECREATE: &[(&str, &str)] = &[
    ("path.collection", "$request.path.collection"),
    ("path.id", "$request.path.id"),
    ("header.If-None-Match", "*"),
];
const STREAM: &[(&str, &str)] = &[("path.stream", "$request.path.stream")];
const GROUP: &[(&str, &str)] = &[("path.group", "$request.path.group")];

fn pay_body() -> Value {
    json!({ "amount_cents": "$response.body#/total_cents" })
}

fn order_of_sku() -> Value {
    json!({
        "customer": "schemathesis",
        "lines": [{ "sku": "$response.body#/sku", "quantity": 1, "unit_price_cents": 100 }],
    })
}

fn ack_body() -> Value {
    json!({ "tokens": ["$response.body#/deliveries/0/token"] })
}

fn links() -> Vec<Link> {
    vec![
        // Orders: placed → paid → shipped → delivered, or cancelled.
        link("place_order", "201", "GetOrder", "get_order", ORDER_ID),
        link("place_order", "201", "OrderEvents", "order_events", ORDER_ID),
        with_body(link("place_order", "201", "PayOrder", "pay", ORDER), pay_body),
        link("place_order", "201", "CancelOrder", "cancel", ORDER),
        link("pay", "200", "ShipOrder", "ship", ORDER),
        link("pay", "200", "CancelOrder", "cancel", ORDER),
        link("pay", "200", "GetOrder", "get_order", ORDER_ID),
        link("ship", "200", "DeliverOrder", "deliver", ORDER),
        link("ship", "200", "GetOrder", "get_order", ORDER_ID),
        link("deliver", "200", "GetOrder", "get_order", ORDER_ID),
        link("deliver", "200", "OrderEvents", "order_events", ORDER_ID),
        link("cancel", "200", "GetOrder", "get_order", ORDER_ID),
        // Stock: registered → received → ordered.
        link("register", "201", "GetItem", "get_item", SKU),
        link("register", "201", "ReceiveStock", "receive", SKU_VERSION),
        link("register", "201", "AdjustStock", "adjust", SKU_VERSION),
        link("receive", "200", "AdjustStock", "adjust", SKU_VERSION),
        link("receive", "200", "GetItem", "get_item", SKU),
        with_body(link("receive", "200", "PlaceOrder", "place_order", &[]), order_of_sku),
        // Documents: a collection, then every method on one document.
        link(
            "declare_collection",
            "201",
            "GetCollection",
            "get_collection",
            &[("path.name", "$request.path.name")],
        ),
        link("declare_collection", "201", "PutDocument", "put_document", COLLECTION),
        link(
            "declare_collection",
            "201",
            "ListDocuments",
            "list_documents",
            COLLECTION,
        ),
        link("declare_collection", "200", "PutDocument", "put_document", COLLECTION),
        link("put_document", "201", "GetDocument", "get_document", DOCUMENT),
        link("put_document", "201", "PutDocument", "put_document", DOCUMENT_VERSION),
        link(
            "put_document",
            "201",
            "PatchDocument",
            "patch_document",
            DOCUMENT_VERSION,
        ),
        link(
            "put_document",
            "201",
            "DeleteDocument",
            "delete_document",
            DOCUMENT_VERSION,
        ),
        link("put_document", "201", "DocumentHistory", "document_history", DOCUMENT),
        link("put_document", "201", "EraseDocument", "erase_document", DOCUMENT),
        link("delete_document", "200", "EraseDocument", "erase_document", DOCUMENT),
        link(
            "put_document",
            "201",
            "ListDocuments",
            "list_documents",
            &[("path.collection", "$request.path.collection")],
        ),
        link(
            "put_document",
            "200",
            "PatchDocument",
            "patch_document",
            DOCUMENT_VERSION,
        ),
        link("put_document", "200", "GetDocument", "get_document", DOCUMENT),
        link("patch_document", "200", "GetDocument", "get_document", DOCUMENT),
        link(
            "patch_document",
            "200",
            "DeleteDocument",
            "delete_document",
            DOCUMENT_VERSION,
        ),
        link("patch_document", "200", "DocumentHistory", "document_history", DOCUMENT),
        link("delete_document", "200", "GetDocument", "get_document", DOCUMENT),
        link("delete_document", "200", "RecreateDocument", "put_document", RECREATE),
        // The log.
        link("append", "201", "ReadStream", "read_stream", STREAM),
        // Persistent subscription groups.
        link("create_group", "201", "GetGroup", "get_group", GROUP),
        link("create_group", "201", "ReadGroup", "read_group", GROUP),
        link("create_group", "201", "ParkedEvents", "parked", GROUP),
        link("create_group", "201", "ReplayParked", "replay", GROUP),
        link("create_group", "201", "DeleteGroup", "delete_group", GROUP),
        with_body(link("read_group", "200", "Ack", "ack", GROUP), ack_body),
        with_body(link("read_group", "200", "Nack", "nack", GROUP), ack_body),
    ]
}

/// Adds the links to the responses they start from. A link whose source
/// or target operation is missing is a programming error, caught by the
/// tests (`every_link_names_operations_of_the_document`).
pub(crate) fn add_links(api: &mut OpenApi) {
    for l in links() {
        let Some(op) = operation_mut(api, l.source) else {
            continue;
        };
        let Some(RefOr::T(response)) = op.responses.responses.get_mut(l.status) else {
            continue;
        };
        let mut b = LinkBuilder::new().operation_id(l.target);
        for (name, expression) in l.parameters {
            b = b.parameter(*name, *expression);
        }
        b = b.request_body(l.body.map(|f| f()));
        response.links.insert(l.name.to_string(), RefOr::T(b.build()));
    }
}

fn operation_mut<'a>(api: &'a mut OpenApi, id: &str) -> Option<&'a mut utoipa::openapi::path::Operation> {
    api.paths.paths.values_mut().find_map(|item| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
        .find(|op| op.operation_id.as_deref() == Some(id))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_link_names_operations_and_responses_of_the_document() {
        let api = crate::openapi();
        let doc = serde_json::to_value(&api).unwrap();
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op["operationId"].as_str() {
                    assert!(ids.insert(id.to_string()), "operationId {id} twice");
                }
            }
        }
        let mut found = 0;
        for l in links() {
            assert!(ids.contains(l.source), "{} is no operation", l.source);
            assert!(ids.contains(l.target), "{} is no operation", l.target);
            let response = doc["paths"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|item| item.as_object().unwrap().values())
                .find(|op| op["operationId"] == l.source)
                .map(|op| op["responses"][l.status].clone())
                .unwrap();
            assert!(
                response["links"][l.name].is_object(),
                "{} {} has no link {}",
                l.source,
                l.status,
                l.name
            );
            found += 1;
        }
        assert_eq!(found, links().len());
    }
}
