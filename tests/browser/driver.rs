//! The WebDriver steps of `browser.rs`: a `strata serve` to drive, a
//! headless Chromium session, and what a test does in a page (run a
//! script, wait for a condition, type, click, read, take screenshots),
//! and the steps of the document page and the live tail.

use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use strata_testkit::until_async;

use crate::common::{self, Serve, http};

pub(crate) const DESKTOP: (u32, u32) = (1280, 900);
pub(crate) const NARROW: (u32, u32) = (420, 900);

/// A `strata serve` on a fresh data directory (removed when dropped).
pub(crate) struct Server {
    pub(crate) serve: Serve,
    /// A token of scope write sent with every request, when tokens are
    /// required.
    pub(crate) token: Option<String>,
    pub(crate) _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let serve = Serve::start(
            &["--data", dir.path().to_str().unwrap(), "--durability", "buffered"],
            |_| {},
        );
        Server {
            serve,
            token: None,
            _dir: dir,
        }
    }

    /// A server that requires bearer tokens (logging at every level, to
    /// find a secret wherever it might leak): returns it (its own requests
    /// sent with a write token) and the secret of a read token `console`.
    pub(crate) fn with_tokens() -> (Server, String) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let create = |name: &str, scope: &str| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(["token", "create", "--data", d, "--name", name, "--scope", scope])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let (read, write) = (create("console", "read"), create("writer", "write"));
        let serve = Serve::start(&["--data", d, "--durability", "buffered"], |c| {
            c.env("RUST_LOG", "trace");
        });
        assert!(serve.banner.contains("bearer tokens required"), "{}", serve.banner);
        let server = Server {
            serve,
            token: Some(write),
            _dir: dir,
        };
        (server, read)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.serve.addr)
    }

    pub(crate) fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = headers.to_vec();
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        http(&self.serve.addr, method, path, &headers, body)
    }

    /// Appends one event; returns its position.
    pub(crate) fn append(&self, stream: &str, event_type: &str, data: &Value) -> u64 {
        let body = json!([{ "event_id": uuid::Uuid::new_v4(), "event_type": event_type, "data": data }]);
        let (status, response) = self.request("POST", &format!("/streams/{stream}"), &[], &body.to_string());
        assert_eq!(status, 201, "{response}");
        common::header(&response, "strata-position").unwrap().parse().unwrap()
    }

    /// The document's body as the API answers it.
    pub(crate) fn document(&self, path: &str) -> Value {
        let (status, response) = self.request("GET", path, &[], "");
        assert_eq!(status, 200, "{response}");
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    /// Declares `profiles` and creates `profiles/ada` (version 1).
    pub(crate) fn profile(&self) {
        let (status, r) = self.request("PUT", "/collections/profiles", &[], "{}");
        assert!(status == 200 || status == 201, "{r}");
        let (status, r) = self.request(
            "PUT",
            "/docs/profiles/ada",
            &[("If-None-Match", "*"), ("Strata-Actor", "setup")],
            r#"{"name":"Ada","email":"ada@example.org","city":"London"}"#,
        );
        assert_eq!(status, 201, "{r}");
    }
}

/// A new headless Chromium session at the desktop size.
pub(crate) async fn browser() -> Client {
    let url = std::env::var("STRATA_WEBDRIVER")
        .expect("STRATA_WEBDRIVER (a chromedriver's URL) is not set: run scripts/test-browser.sh");
    let chromium = std::env::var("STRATA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let Value::Object(caps) = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     format!("--window-size={},{}", DESKTOP.0, DESKTOP.1)],
        },
    }) else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("a WebDriver session (is chromedriver running?)")
}

/// Runs `script` (a function body) in the page.
pub(crate) async fn js(c: &Client, script: &str, args: Vec<Value>) -> Value {
    c.execute(script, args).await.unwrap()
}

/// Waits until the JavaScript expression `expr` is true in the page.
pub(crate) async fn wait(c: &Client, what: &str, expr: &str) {
    let script = format!("return !!({expr});");
    until_async(what, || async { js(c, &script, vec![]).await == json!(true) }).await;
}

/// Sets an input's value as typing would (with its `input` event).
pub(crate) async fn set(c: &Client, id: &str, value: &str) {
    js(
        c,
        "const e = document.getElementById(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input'));",
        vec![json!(id), json!(value)],
    )
    .await;
}

pub(crate) async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

pub(crate) async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

pub(crate) fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the page as it is, at the desktop and the narrow width.
pub(crate) async fn shoot(c: &Client, name: &str) {
    for (label, (w, h)) in [("desktop", DESKTOP), ("narrow", NARROW)] {
        c.set_window_size(w, h).await.unwrap();
        // Let the layout settle at the new size (two animation frames).
        let settle = "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));";
        c.execute_async(settle, vec![]).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(screenshots().join(format!("{name}-{label}.png")), png).unwrap();
    }
    c.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
}

/// Opens the document page for `actor` on profiles/ada.
pub(crate) async fn open_document(s: &Server, actor: &str) -> Client {
    let c = browser().await;
    c.goto(&s.url(&format!("/ui/documents.html#collection=profiles&id=ada&actor={actor}")))
        .await
        .unwrap();
    wait(
        &c,
        "the document",
        "document.getElementById('editor').value.includes('Ada')",
    )
    .await;
    c
}

/// Edits one field in the page's editor (as JSON) and saves.
pub(crate) async fn edit_and_save(c: &Client, field: &str, value: &str) {
    js(
        c,
        "const e = document.getElementById('editor'); const d = JSON.parse(e.value); d[arguments[0]] = arguments[1]; \
         e.value = JSON.stringify(d, null, 2);",
        vec![json!(field), json!(value)],
    )
    .await;
    click(c, "#save").await;
}

/// The fields of a conflict column with the given class.
pub(crate) async fn marked(c: &Client, column: &str, class: &str) -> Value {
    js(
        c,
        "return [...document.querySelectorAll('#' + arguments[0] + ' .' + arguments[1])].map(e => e.dataset.field);",
        vec![json!(column), json!(class)],
    )
    .await
}

/// The positions the tail shows, oldest first.
pub(crate) async fn tail_positions(c: &Client) -> Vec<u64> {
    let v = js(
        c,
        "return [...document.querySelectorAll('#tail tr.event')].map(r => Number(r.dataset.position)).reverse();",
        vec![],
    )
    .await;
    serde_json::from_value(v).unwrap()
}
