//! `strata subscribe` and `strata subscriptions`, run as the built binary:
//! on a store directory, and against a running server (history, then a
//! live event; the groups with their lag).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use strata_http::{Config, Server};
use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentStore, StreamId};
use strata_subscriptions::{GroupName, GroupSettings, Subscriptions};

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn append(store: &SegmentStore, stream: &str, event_type: &str, n: usize) {
    let events = (0..n)
        .map(|i| NewEvent::new(event_type, format!("{{\"i\":{i}}}")))
        .collect();
    store
        .append(&StreamId::new(stream).unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap();
}

#[tokio::test]
async fn subscribe_and_list_groups_of_a_store_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SegmentStore::open(dir.path()).unwrap();
        append(&store, "acct-1", "Opened", 1).await;
        append(&store, "cart-1", "Added", 2).await;
        append(&store, "acct-2", "Opened", 1).await;
        append(&store, "acct-1", "Closed", 1).await;
        let subscriptions = Subscriptions::local(Arc::new(store.clone()), store.tables().unwrap()).unwrap();
        let settings = GroupSettings {
            filter: strata_store::EventFilter::all().category("acct"),
            ..GroupSettings::default()
        };
        subscriptions
            .create_group(&GroupName::new("mailer").unwrap(), settings)
            .await
            .unwrap();
    }
    let out = strata()
        .args([
            "subscribe",
            "--category",
            "acct",
            "--event-type",
            "Opened",
            "--limit",
            "2",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = lines(&out.stdout);
    assert_eq!(
        got,
        vec![
            json!({"position": 1, "stream": "acct-1", "version": 1, "type": "Opened", "data": {"i": 0}}),
            json!({"position": 4, "stream": "acct-2", "version": 1, "type": "Opened", "data": {"i": 0}}),
        ]
    );

    let out = strata()
        .args(["subscriptions", "--json", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let groups = &lines(&out.stdout)[0]["groups"];
    assert_eq!(groups[0]["name"], "mailer");
    assert_eq!(
        (groups[0]["head"].clone(), groups[0]["lag"].clone()),
        (json!(5), json!(5))
    );
    let out = strata()
        .args(["subscriptions", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("GROUP") && text.contains("mailer"), "{text}");

    let bad = strata()
        .args(["subscribe", "--category", "a-b", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("category"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_list_groups_of_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
    let url = server.url();
    append(&store, "acct-1", "Opened", 1).await;
    append(&store, "cart-1", "Added", 1).await;

    // History, then a live event, through the server.
    let mut child = strata()
        .args(["subscribe", "--url", &url, "--category", "acct", "--limit", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        first_tx.send(()).unwrap();
        let second = lines.next().unwrap().unwrap();
        (first, second)
    });
    first_rx.await.expect("the history's event");
    append(&store, "acct-1", "Closed", 1).await;
    let (first, second) = reader.await.unwrap();
    assert!(child.wait().unwrap().success());
    let first: Value = serde_json::from_str(&first).unwrap();
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(
        (first["position"].clone(), first["type"].clone()),
        (json!(1), json!("Opened"))
    );
    assert_eq!(
        (second["position"].clone(), second["type"].clone()),
        (json!(3), json!("Closed"))
    );

    let http = reqwest_put(&url, "/subscriptions/groups/audit").await;
    assert_eq!(http, 201);
    let out = tokio::task::spawn_blocking(move || {
        strata()
            .args(["subscriptions", "--json", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let groups = &lines(&out.stdout)[0]["groups"];
    assert_eq!(groups[0]["name"], "audit");
    assert_eq!(groups[0]["lag"], 3);
    drop(store);
    server.shutdown().await.unwrap();
}

/// `PUT` with an empty JSON object; the status.
async fn reqwest_put(url: &str, path: &str) -> u16 {
    let client = strata_client::Client::new(url).unwrap();
    let r = client
        .send(
            client
                .request(strata_client::reqwest::Method::PUT, path)
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await
        .unwrap();
    r.status().as_u16()
}
