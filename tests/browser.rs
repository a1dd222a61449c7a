//! The web console in a real browser: headless Chromium driven through
//! WebDriver (chromedriver) against a `strata serve` process.
//!
//! Ignored unless built with `STRATA_BROWSER_TESTS` set; run them with
//! `scripts/test-browser.sh` (which installs Debian's chromium and
//! chromium-driver when missing, starts chromedriver and sets
//! `STRATA_WEBDRIVER`). Screenshots of every page at a desktop and a
//! narrow width are written to `target/screenshots/`. With
//! `STRATA_BROWSER_LATENCY=<n>` the live-tail latency run appends `n`
//! events and prints the time each took to show (p50/p99).

mod common;
#[path = "browser/driver.rs"]
mod driver;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Serve, http};
use fantoccini::{Client, Locator};
use serde_json::json;

use driver::{
    Server, browser, click, edit_and_save, js, marked, open_document, set, shoot, tail_positions, text, wait,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn browse_streams_page_through_events_and_jump_to_a_log_position() {
    let s = Server::start();
    for i in 1..=25 {
        s.append(
            "shop-1",
            "ItemAdded",
            &json!({ "item": i, "nested": { "price": i * 10 } }),
        );
    }
    s.append("shop-2", "ItemAdded", &json!({ "item": "other" }));
    s.append("audit", "Noted", &json!({}));
    let c = browser().await;
    c.goto(&s.url("/ui/")).await.unwrap();
    wait(
        &c,
        "the stream list",
        "document.querySelectorAll('.stream-link').length === 3",
    )
    .await;

    // By category: shop-* only (not `audit`).
    js(&c, "document.getElementById('search-mode').value = 'category';", vec![]).await;
    set(&c, "search", "shop").await;
    click(&c, "#search-button").await;
    wait(
        &c,
        "the category's streams",
        "document.querySelectorAll('.stream-link').length === 2",
    )
    .await;
    click(&c, ".stream-link[data-stream='shop-1']").await;
    wait(
        &c,
        "a page of shop-1",
        "document.querySelectorAll('#events tr.event').length === 20",
    )
    .await;
    let first = text(&c, "#events tr.event:first-child td.payload").await;
    assert!(first.contains("\"price\": 10"), "payloads are pretty-printed: {first}");
    click(&c, "#next-page").await;
    wait(
        &c,
        "the second page",
        "document.querySelectorAll('#events tr.event').length === 5",
    )
    .await;
    assert_eq!(text(&c, "#events tr.event:first-child td:nth-child(2)").await, "21");
    shoot(&c, "streams").await;

    // The whole log from position 26: shop-2's event, then audit's.
    set(&c, "position", "26").await;
    click(&c, "#jump").await;
    wait(
        &c,
        "the log page",
        "document.querySelectorAll('#events tr.event').length === 2",
    )
    .await;
    assert_eq!(text(&c, "#events tr.event:first-child td:first-child").await, "26");
    assert!(text(&c, "#events-title").await.contains("position 26"));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn a_payload_with_script_and_html_is_shown_as_text() {
    let s = Server::start();
    let hostile = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"><b>bold</b>";
    s.append("xss-1", "<i>Type</i>", &json!({ "note": hostile }));
    let c = browser().await;
    // The streams page, and the live tail from the start.
    c.goto(&s.url("/ui/#stream=xss-1")).await.unwrap();
    wait(
        &c,
        "the event",
        "document.querySelectorAll('#events tr.event').length === 1",
    )
    .await;
    let shown = text(&c, "#events td.payload").await;
    assert!(
        shown.contains(r#"<script>window.__pwned = 1</script>"#),
        "shown as text: {shown}"
    );
    assert!(text(&c, "#events tr.event").await.contains("<i>Type</i>"));
    c.goto(&s.url("/ui/tail.html")).await.unwrap();
    wait(&c, "the tail page", "document.getElementById('from-start')").await;
    click(&c, "#from-start").await;
    click(&c, "#apply").await;
    wait(
        &c,
        "the event in the tail",
        "document.querySelectorAll('#tail tr.event').length === 1",
    )
    .await;
    assert!(text(&c, "#tail td.payload").await.contains("<img src=x"));
    // No element was made of the payload, and nothing of it ran.
    let made = js(
        &c,
        "return document.querySelectorAll('td script, td img, td b, td i').length;",
        vec![],
    )
    .await;
    assert_eq!(made, json!(0));
    assert_eq!(
        js(&c, "return window.__pwned === undefined;", vec![]).await,
        json!(true)
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn two_windows_change_a_document_and_the_second_merges() {
    let s = Server::start();
    s.profile();
    let (alice, bob) = (open_document(&s, "alice").await, open_document(&s, "bob").await);
    edit_and_save(&alice, "city", "Paris").await;
    wait(
        &alice,
        "alice's save",
        "document.getElementById('doc-version').textContent === 'version 2'",
    )
    .await;

    edit_and_save(&bob, "email", "ada@example.com").await;
    wait(&bob, "the conflict view", "!document.getElementById('conflict').hidden").await;
    // Nothing overlaps: no field is in conflict; alice's field is marked
    // where it changed, bob's in his own column; Merge is offered.
    assert_eq!(text(&bob, "#conflicting-fields").await, "none");
    for column in ["base-fields", "current-fields", "mine-fields"] {
        assert_eq!(marked(&bob, column, "conflict").await, json!([]), "{column}");
    }
    assert_eq!(marked(&bob, "current-fields", "changed").await, json!(["/city"]));
    assert_eq!(marked(&bob, "mine-fields", "changed").await, json!(["/email"]));
    assert!(text(&bob, "#changes-since").await.contains("by alice"));
    shoot(&bob, "documents-conflict").await;
    click(&bob, "#merge").await;
    wait(
        &bob,
        "the merge",
        "document.getElementById('doc-version').textContent === 'version 3'",
    )
    .await;

    let doc = s.document("/docs/profiles/ada");
    assert_eq!(
        (doc["city"].as_str(), doc["email"].as_str()),
        (Some("Paris"), Some("ada@example.com"))
    );
    assert_eq!(doc["_version"], json!(3));
    bob.close().await.unwrap();
    alice.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn overlapping_changes_are_highlighted_then_overwritten_or_discarded() {
    let s = Server::start();
    s.profile();
    let (alice, bob) = (open_document(&s, "alice").await, open_document(&s, "bob").await);
    edit_and_save(&alice, "city", "Paris").await;
    wait(
        &alice,
        "alice's save",
        "document.getElementById('doc-version').textContent === 'version 2'",
    )
    .await;

    // Overwrite: bob changed the same field; his value wins, on version 2.
    edit_and_save(&bob, "city", "Berlin").await;
    wait(&bob, "the conflict view", "!document.getElementById('conflict').hidden").await;
    assert_eq!(text(&bob, "#conflicting-fields").await, "/city");
    for column in ["base-fields", "current-fields", "mine-fields"] {
        assert_eq!(marked(&bob, column, "conflict").await, json!(["/city"]), "{column}");
    }
    assert!(
        !bob.find(Locator::Id("merge"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "no merge of overlapping changes"
    );
    shoot(&bob, "documents-overlap").await;
    click(&bob, "#overwrite").await;
    wait(
        &bob,
        "the overwrite",
        "document.getElementById('doc-version').textContent === 'version 3'",
    )
    .await;
    assert_eq!(s.document("/docs/profiles/ada")["city"], json!("Berlin"));

    // Discard: alice (still on version 2) changes it again and gives up hers.
    edit_and_save(&alice, "city", "Rome").await;
    wait(
        &alice,
        "the conflict view",
        "!document.getElementById('conflict').hidden",
    )
    .await;
    click(&alice, "#discard").await;
    wait(
        &alice,
        "the current version",
        "document.getElementById('doc-version').textContent === 'version 3'",
    )
    .await;
    wait(
        &alice,
        "the conflict view closed",
        "document.getElementById('conflict').hidden",
    )
    .await;
    assert!(
        alice
            .find(Locator::Id("editor"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap()
            .contains("Berlin")
    );
    let doc = s.document("/docs/profiles/ada");
    assert_eq!(
        (doc["city"].clone(), doc["_version"].clone()),
        (json!("Berlin"), json!(3))
    );

    // The history shows every version, and a version's diff.
    click(&alice, "#show-history").await;
    wait(
        &alice,
        "the history",
        "document.querySelectorAll('#history tr').length === 3",
    )
    .await;
    click(&alice, "#history tr[data-version='3'] button").await;
    wait(
        &alice,
        "the diff",
        "document.querySelectorAll('#diff .added').length === 1",
    )
    .await;
    assert_eq!(text(&alice, "#diff .removed").await, "- /city: \"Paris\"");
    assert_eq!(text(&alice, "#diff .added").await, "+ /city: \"Berlin\"");
    shoot(&alice, "documents-history").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

/// Appends five events to `live-1` (and five to `other-1` between them),
/// then ten while the tail is paused; checks the tail shows the `live`
/// category's, in order, once each, with none lost to the pause (and a
/// screenshot `shot` while paused).
async fn tail_pause_and_resume(s: &Server, c: &Client, shot: &str) {
    wait(
        c,
        "the live stream",
        "document.getElementById('tail-state').textContent === 'live'",
    )
    .await;
    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(s.append("live-1", "Tick", &json!({ "i": i })));
        s.append("other-1", "Noise", &json!({ "i": i }));
    }
    wait(
        c,
        "five events",
        "document.querySelectorAll('#tail tr.event').length === 5",
    )
    .await;
    assert_eq!(
        tail_positions(c).await,
        expected,
        "only the category's events, from now on"
    );

    click(c, "#pause").await;
    for i in 5..15 {
        expected.push(s.append("live-1", "Tick", &json!({ "i": i })));
    }
    wait(
        c,
        "ten buffered",
        "document.getElementById('tail-count').textContent.includes('10 waiting')",
    )
    .await;
    assert_eq!(tail_positions(c).await.len(), 5, "paused: nothing new shown");
    shoot(c, shot).await;
    click(c, "#pause").await;
    wait(
        c,
        "fifteen events",
        "document.querySelectorAll('#tail tr.event').length === 15",
    )
    .await;
    assert_eq!(tail_positions(c).await, expected, "every event, in order, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn the_live_tail_filters_pauses_and_resumes_without_losing_events() {
    let s = Server::start();
    s.append("before-1", "Old", &json!({}));
    let c = browser().await;
    c.goto(&s.url("/ui/tail.html")).await.unwrap();
    set(&c, "filter-category", "live").await;
    click(&c, "#apply").await;
    tail_pause_and_resume(&s, &c, "tail").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn the_live_tail_sends_the_token_in_a_header_never_in_a_url_or_the_log() {
    let (s, secret) = Server::with_tokens();
    s.append("before-1", "Old", &json!({}));
    let c = browser().await;
    c.goto(&s.url("/ui/tail.html")).await.unwrap();
    // Without a token the tail is refused, and says so.
    wait(
        &c,
        "the refusal",
        "document.getElementById('tail-status').textContent.includes('401')",
    )
    .await;
    // The token typed into the bar's field (kept when the field loses focus).
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&secret)
        .await
        .unwrap();
    click(&c, "h1").await;
    wait(&c, "the token kept", "sessionStorage.getItem('strata.token') !== null").await;
    set(&c, "filter-category", "live").await;
    click(&c, "#apply").await;
    tail_pause_and_resume(&s, &c, "tail-token").await;

    // Nothing the page asked for carried the secret in its URL (the
    // finished requests here; the tail's, still open, is not listed until
    // it ends, but its URL is in the access log below), and the access log
    // named the token of the tail's request but never its secret.
    let hex = &secret["strata_".len()..];
    let urls = js(
        &c,
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
        vec![],
    )
    .await;
    let urls = urls.to_string();
    assert!(urls.contains("/log?"), "{urls}");
    assert!(!urls.contains(hex), "the secret in a URL: {urls}");
    c.close().await.unwrap();
    let lines = s.serve.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/subscriptions/all") && l.contains("status=200") && l.contains("console")),
        "the tail's request in the access log, with its token's name: {lines:#?}"
    );
    for line in &lines {
        assert!(!line.contains(hex), "the secret in the server's log: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn operations_charts_the_metrics_and_pages_load_nothing_from_elsewhere() {
    let s = Server::start();
    s.profile();
    let (status, _) = s.request(
        "PUT",
        "/docs/profiles/ada",
        &[("If-Match", "\"7\"")],
        r#"{"name":"stale"}"#,
    );
    assert_eq!(status, 409);
    let c = browser().await;
    c.goto(&s.url("/ui/operations.html")).await.unwrap();
    wait(
        &c,
        "two scrapes",
        "document.querySelector('#legend-appends span:not(.muted)')",
    )
    .await;
    for i in 0..20 {
        s.append("ops-1", "Tick", &json!({ "i": i }));
    }
    wait(
        &c,
        "the conflict in the table",
        "document.getElementById('conflict-totals').textContent.includes('wrong-expected-version')",
    )
    .await;
    wait(
        &c,
        "a conflict series",
        "document.getElementById('legend-conflicts').textContent.includes('wrong-expected-version')",
    )
    .await;
    shoot(&c, "operations").await;

    // Page weight on a first load (the page, its style sheet and scripts;
    // not the API calls it then makes), and no resource from another origin.
    let origin = s.url("");
    for page in ["", "tail.html", "documents.html", "operations.html"] {
        let b = browser().await;
        b.goto(&s.url(&format!("/ui/{page}"))).await.unwrap();
        wait(&b, "the page loaded", "document.readyState === 'complete'").await;
        let weight = js(
            &b,
            "const n = performance.getEntriesByType('navigation')[0]; \
             const r = performance.getEntriesByType('resource').filter(e => e.initiatorType === 'script' || e.initiatorType === 'link'); \
             return { transfer: n.transferSize + r.reduce((a, e) => a + e.transferSize, 0), \
                      body: n.decodedBodySize + r.reduce((a, e) => a + e.decodedBodySize, 0), \
                      files: 1 + r.length, names: performance.getEntriesByType('resource').map(e => e.name) };",
            vec![],
        )
        .await;
        for name in weight["names"].as_array().unwrap() {
            assert!(
                name.as_str().unwrap().starts_with(&origin),
                "{page}: {name} is from elsewhere"
            );
        }
        println!(
            "page weight /ui/{page}: {} bytes transferred, {} bytes of files, {} files",
            weight["transfer"], weight["body"], weight["files"]
        );
        b.close().await.unwrap();
    }
    c.close().await.unwrap();
}

/// Not a browser test: runs in every `cargo test`.
#[test]
fn the_console_is_served_with_its_policy_and_is_off_with_ui_false() {
    let on = Server::start();
    let (status, page) = on.request("GET", "/ui/", &[], "");
    assert_eq!(status, 200);
    assert_eq!(
        common::header(&page, "content-security-policy"),
        Some(strata::http::CONTENT_SECURITY_POLICY)
    );
    let (status, _) = on.request("GET", "/ui/operations.js", &[], "");
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    let off = Serve::start(&["--data", dir.path().to_str().unwrap(), "--ui", "false"], |_| {});
    for path in ["/ui", "/ui/", "/ui/common.js"] {
        let (status, _) = http(&off.addr, "GET", path, &[], "");
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = http(&off.addr, "GET", "/streams", &[], "");
    assert_eq!(status, 200, "the API stays");
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// The live tail's latency: `STRATA_BROWSER_LATENCY=<n>` appends (one at a
/// time) and the time from sending each to the tail showing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(strata_browser),
    ignore = "needs Chromium and chromedriver: scripts/test-browser.sh"
)]
async fn live_tail_latency() {
    let Some(n) = std::env::var("STRATA_BROWSER_LATENCY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        println!("SKIPPED live_tail_latency: set STRATA_BROWSER_LATENCY=1000 to measure");
        return;
    };
    let s = Server::start();
    let c = browser().await;
    c.goto(&s.url("/ui/tail.html")).await.unwrap();
    wait(
        &c,
        "the live stream",
        "document.getElementById('tail-state').textContent === 'live'",
    )
    .await;
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let at = now_ms();
        let position = s.append("latency-1", "Tick", &json!({ "i": i }));
        sent.push((position, at));
        // One event in flight at a time: each is measured on its own.
        let expr = format!("document.querySelector('#tail tr.event[data-position=\"{position}\"]')");
        wait(&c, "the event shown", &expr).await;
    }
    let shown = js(
        &c,
        "return Object.fromEntries([...document.querySelectorAll('#tail tr.event')].map(r => [r.dataset.position, Number(r.dataset.shownAt)]));",
        vec![],
    )
    .await;
    let mut latencies: Vec<f64> = sent
        .iter()
        .map(|(p, at)| shown[p.to_string()].as_f64().expect("every event shown") - at)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "live tail latency over {n} appends (append sent -> row shown): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    c.close().await.unwrap();
}
