//! The scope every route needs: one row per (method, route template). A
//! route of the router without a row fails the test below, so a new route
//! is given its scope when it is added.

use axum::http::Method;

use super::Scope;

/// What a route needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Need {
    /// Nothing: answered without a token (health checks, the API's
    /// description, the problem types).
    Open,
    /// A token of at least this scope.
    Scope(Scope),
}

use Need::{Open, Scope as At};
use Scope::{Admin, Read, Write};

/// Every route: method, route template (as in `/openapi.json`), and what
/// it needs. `HEAD` needs what `GET` needs.
pub(crate) const ROUTES: &[(&str, &str, Need)] = &[
    // Meta: open, so load balancers and API tools need no token; the
    // metrics name streams and groups, so they need one.
    ("GET", "/healthz", Open),
    ("GET", "/openapi.json", Open),
    ("GET", "/problems", Open),
    ("GET", "/problems/{name}", Open),
    ("GET", "/metrics", At(Read)),
    // Orders and stock.
    ("POST", "/orders", At(Write)),
    ("GET", "/orders/{id}", At(Read)),
    ("GET", "/orders/{id}/events", At(Read)),
    // An order's erasure (a hard delete): an operator's, as every delete
    // and retention change of the log is.
    ("DELETE", "/orders/{id}", At(Admin)),
    ("POST", "/orders/{id}/pay", At(Write)),
    ("POST", "/orders/{id}/ship", At(Write)),
    ("POST", "/orders/{id}/deliver", At(Write)),
    ("POST", "/orders/{id}/cancel", At(Write)),
    ("POST", "/stock", At(Write)),
    ("GET", "/stock/{sku}", At(Read)),
    ("POST", "/stock/{sku}/receive", At(Write)),
    ("POST", "/stock/{sku}/adjust", At(Write)),
    ("GET", "/views/orders", At(Read)),
    ("GET", "/views/stock", At(Read)),
    // Documents. Declaring a collection is what an application does at
    // start, with its own (write) token; its unique fields cannot change
    // afterwards (declaration-conflict), so it removes nothing.
    ("PUT", "/collections/{name}", At(Write)),
    ("GET", "/collections/{name}", At(Read)),
    ("GET", "/docs/{collection}", At(Read)),
    ("GET", "/docs/{collection}/{id}", At(Read)),
    ("PUT", "/docs/{collection}/{id}", At(Write)),
    ("PATCH", "/docs/{collection}/{id}", At(Write)),
    // A document delete is a tombstone event: its history stays readable.
    ("DELETE", "/docs/{collection}/{id}", At(Write)),
    ("GET", "/docs/{collection}/{id}/history", At(Read)),
    // A document's erasure (its stream hard-deleted, its unique values
    // cleared): an operator's, as an order's erasure is.
    ("POST", "/docs/{collection}/{id}/erase", At(Admin)),
    // The web console's own files hold no data (what they show comes from
    // the API, with the token typed into the page): open, so the page can
    // load and ask for it.
    ("GET", "/ui", Open),
    ("GET", "/ui/", Open),
    ("GET", "/ui/{file}", Open),
    // The log and its live streams.
    ("GET", "/streams", At(Read)),
    ("GET", "/log", At(Read)),
    ("GET", "/streams/{stream}", At(Read)),
    ("POST", "/streams/{stream}", At(Write)),
    ("DELETE", "/streams/{stream}", At(Admin)),
    ("GET", "/streams/{stream}/metadata", At(Read)),
    ("PUT", "/streams/{stream}/metadata", At(Admin)),
    ("GET", "/subscriptions/all", At(Read)),
    ("GET", "/subscriptions/streams/{stream}", At(Read)),
    ("GET", "/subscriptions/categories/{category}", At(Read)),
    // Persistent subscription groups: consumers read, ack and nack with a
    // write token (they move the group's state); creating, deleting
    // (which drops every consumer's progress) and replaying parked events
    // are an operator's.
    ("GET", "/subscriptions/groups", At(Read)),
    ("PUT", "/subscriptions/groups/{group}", At(Admin)),
    ("GET", "/subscriptions/groups/{group}", At(Read)),
    ("DELETE", "/subscriptions/groups/{group}", At(Admin)),
    ("POST", "/subscriptions/groups/{group}/read", At(Write)),
    ("POST", "/subscriptions/groups/{group}/ack", At(Write)),
    ("POST", "/subscriptions/groups/{group}/nack", At(Write)),
    ("GET", "/subscriptions/groups/{group}/parked", At(Read)),
    ("POST", "/subscriptions/groups/{group}/parked/replay", At(Admin)),
    // Erasing from disk what deletes removed: an operator's.
    ("POST", "/admin/scavenge", At(Admin)),
];

/// What a request needs. A request outside the routes (answered 404) or
/// with a method its route does not take (405) needs `read`: the service
/// says nothing of its routes to a caller without a token.
pub(crate) fn need(method: &Method, route: Option<&str>) -> Need {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    route
        .and_then(|route| {
            ROUTES
                .iter()
                .find(|(m, r, _)| *m == method && *r == route)
                .map(|(_, _, need)| *need)
        })
        .unwrap_or(At(Read))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every (method, route) of the OpenAPI document, which the router
    /// builds from the same list of routes.
    fn routed() -> BTreeSet<(String, String)> {
        let api = crate::openapi::openapi();
        let mut out = BTreeSet::new();
        for (path, item) in &api.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
                ("TRACE", &item.trace),
            ] {
                if op.is_some() {
                    out.insert((method.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_has_exactly_one_row_and_every_row_a_route() {
        let rows: Vec<(String, String)> = ROUTES.iter().map(|(m, r, _)| (m.to_string(), r.to_string())).collect();
        let unique: BTreeSet<_> = rows.iter().cloned().collect();
        assert_eq!(unique.len(), rows.len(), "a (method, route) has two rows");
        let routed = routed();
        let missing: Vec<_> = routed.difference(&unique).collect();
        assert!(
            missing.is_empty(),
            "routes without a row in auth/scopes.rs: {missing:?}"
        );
        let stale: Vec<_> = unique.difference(&routed).collect();
        assert!(stale.is_empty(), "rows of auth/scopes.rs without a route: {stale:?}");
    }

    #[test]
    fn writes_need_more_than_read_and_unknown_routes_need_read() {
        for (method, route, need) in ROUTES {
            if *method != "GET" {
                assert!(
                    matches!(need, At(Write | Admin)),
                    "{method} {route} changes state: it needs write or admin"
                );
            }
        }
        assert_eq!(need(&Method::HEAD, Some("/orders/{id}")), At(Read));
        assert_eq!(need(&Method::HEAD, Some("/healthz")), Open);
        assert_eq!(need(&Method::GET, None), At(Read));
        assert_eq!(need(&Method::OPTIONS, Some("/healthz")), At(Read));
    }
}
