//! The web console: `/ui`, a few static pages (HTML, CSS, plain
//! JavaScript) compiled into the binary, so `strata serve` needs no build
//! step, no CDN and no internet. The pages call the API on the same
//! address; every value they show goes in as text, never as markup.
//!
//! Each page is served with a strict `Content-Security-Policy`: scripts
//! and styles only from this origin (no inline script, no `eval`),
//! requests only to this origin, no frames. `--ui false` (`Config::ui`)
//! leaves these routes out.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::HttpError;
use crate::extract::ApiPath;
use crate::problem::Problem;

/// The console's policy: nothing but this origin's files and API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:literal),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, body: include_str!(concat!("../ui/", $name)) }),*]
    };
}

/// Every file, by name.
const ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "tail.html" => "text/html; charset=utf-8",
    "documents.html" => "text/html; charset=utf-8",
    "operations.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "common.js" => "text/javascript; charset=utf-8",
    "streams.js" => "text/javascript; charset=utf-8",
    "tail.js" => "text/javascript; charset=utf-8",
    "documents.js" => "text/javascript; charset=utf-8",
    "operations.js" => "text/javascript; charset=utf-8",
];

/// The names of the console's files (the pages end in `.html`).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

fn serve(asset: &Asset) -> Response {
    let mut r = (StatusCode::OK, asset.body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary: revalidate, never serve stale pages.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The console's front page (`/ui` redirects here).
#[utoipa::path(
    get,
    path = "/ui/",
    tag = "console",
    responses((status = 200, description = "The console's streams page (absent with `--ui false`)", body = String, content_type = "text/html"))
)]
pub(crate) async fn index() -> Response {
    serve(&ASSETS[0])
}

/// `/ui` without its slash: to `/ui/`, so the pages' relative links work.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "console",
    responses((status = 308, description = "To `/ui/`", headers(("Location" = String, description = "`/ui/`"))))
)]
pub(crate) async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// A file of the console: a page (`tail.html`, `documents.html`,
/// `operations.html`), its style sheet or a script.
#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "console",
    params(("file" = String, Path, description = "The file's name, e.g. `tail.html` or `common.js`", max_length = 64)),
    responses(
        (status = 200, description = "The file (HTML, CSS or JavaScript), with a Content-Security-Policy that allows only this origin", body = String, content_type = "text/html"),
        (status = 404, description = "`not-found`: no such file", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn file(ApiPath(name): ApiPath<String>) -> Result<Response, HttpError> {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(serve)
        .ok_or(HttpError::NotFound {
            resource: "console file",
            id: name,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_page_holds_inline_script_or_a_remote_resource() {
        for a in ASSETS {
            if a.name.ends_with(".html") {
                for bad in ["<script>", "onclick=", "onload=", "style=", "javascript:"] {
                    assert!(!a.body.contains(bad), "{} holds {bad}", a.name);
                }
                assert!(a.body.contains(r#"<script src="common.js""#), "{}", a.name);
            }
            for bad in [
                "http://",
                "https://",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "document.write",
            ] {
                assert!(!a.body.contains(bad), "{} holds {bad}", a.name);
            }
        }
    }

    #[test]
    fn every_page_is_served_with_the_policy() {
        for a in ASSETS {
            let r = serve(a);
            assert_eq!(
                r.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY,
                "{}",
                a.name
            );
        }
    }
}
