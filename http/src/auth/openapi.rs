//! The OpenAPI document's part of the tokens: the `bearer` security
//! scheme, each operation's requirement (from the scopes table), and the
//! 401 and 403 answers of the operations that need a token.

use axum::http::Method;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

use super::scopes::{Need, need};

/// The name of the security scheme.
const SCHEME: &str = "bearer";

/// Adds the scheme, and to every operation its requirement and answers.
pub(crate) fn add_security(api: &mut OpenApi) {
    if let Some(components) = api.components.as_mut() {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("strata_<64 hex digits>".into());
        scheme.description = Some(
            "A token made with `strata token create`, of scope read, write or admin (each including \
             the ones before it); the role each operation lists is the least it needs. A service on a \
             loopback address with no token configured is open: then no token is needed. See \
             docs/security.md."
                .into(),
        );
        components.add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
    }
    for (path, item) in api.paths.paths.iter_mut() {
        for (method, op) in [
            (Method::GET, item.get.as_mut()),
            (Method::POST, item.post.as_mut()),
            (Method::PUT, item.put.as_mut()),
            (Method::PATCH, item.patch.as_mut()),
            (Method::DELETE, item.delete.as_mut()),
        ] {
            let Some(op) = op else { continue };
            secure(op, need(&method, Some(path)));
        }
    }
}

fn secure(op: &mut Operation, need: Need) {
    crate::openapi::add_response(
        op,
        421,
        "`misdirected-request`: the service is open on a loopback address and the request's Host is not a loopback name",
    );
    match need {
        // An empty requirement: no credentials.
        Need::Open => op.security = Some(vec![SecurityRequirement::default()]),
        Need::Scope(scope) => {
            op.security = Some(vec![SecurityRequirement::new(SCHEME, [scope.name()])]);
            crate::openapi::add_response(
                op,
                401,
                "`unauthorized`: no bearer token, a malformed one, or one this service does not know (with `WWW-Authenticate: Bearer`)",
            );
            crate::openapi::add_response(
                op,
                403,
                "`insufficient-scope`: the token's scope is below the one this operation needs",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_states_its_scope() {
        let doc: serde_json::Value = serde_json::from_str(&crate::openapi::openapi().to_json().unwrap()).unwrap();
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], serde_json::json!([{}]));
        assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());
        let group = &doc["paths"]["/subscriptions/groups/{group}"];
        assert_eq!(group["delete"]["security"], serde_json::json!([{"bearer": ["admin"]}]));
        assert!(group["delete"]["responses"]["403"].is_object());
        assert_eq!(
            doc["paths"]["/orders"]["post"]["security"],
            serde_json::json!([{"bearer": ["write"]}])
        );
        assert_eq!(
            doc["paths"]["/orders/{id}"]["get"]["security"],
            serde_json::json!([{"bearer": ["read"]}])
        );
    }
}
