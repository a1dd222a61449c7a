//! The log as Server-Sent Events over real HTTP: history then live,
//! resumed with `Last-Event-ID` across a server restart with no gap and no
//! duplicate, filters with checkpoints over unmatched stretches, problems
//! for bad queries, and a client that stops reading costing the server one
//! read batch and the socket's buffers, not the log.

mod common;

use std::time::Duration;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_client::{Client, LiveFilter, LiveItem};
use strata_http::Config;
use strata_http::Server;
use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentStore, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Appends `count` events to `stream` over HTTP, in one request.
async fn append(server: &TestServer, stream: &str, count: usize) {
    let events: Vec<_> = (0..count)
        .map(|i| json!({"event_id": uuid::Uuid::new_v4(), "event_type": "Noted", "data": {"i": i}}))
        .collect();
    let r = server.post(&format!("/streams/{stream}"), json!(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// A client reads the history, then live events; the server stops (its
/// live streams end), more events are appended while it is down, it
/// starts again on the same address and data, more are appended; the
/// client, reconnecting on its own with `Last-Event-ID`, has seen every
/// position 1..=n exactly once, in order.
async fn resumes_across_a_restart_without_gap_or_duplicate(backend: Backend) {
    let data = Data::new(backend);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TestServer::on_listener(&data, Config::default(), listener).await;
    append(&server, "notes-a", 25).await;
    append(&server, "notes-b", 15).await;

    let client = Client::new(&server.url).unwrap();
    let mut live = client
        .follow(LiveFilter::default(), 0)
        .reconnect_delay(Duration::from_millis(20))
        .max_reconnects(1_000);
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut positions = Vec::new();
        while positions.len() < 100 {
            match live.next().await.expect("the live stream") {
                LiveItem::Event(e) => {
                    positions.push(e.position);
                    seen_tx.send(e.position).unwrap();
                }
                LiveItem::Checkpoint(_) => {}
            }
        }
        positions
    });
    // The history.
    for _ in 0..40 {
        seen.recv().await.unwrap();
    }
    // Live events.
    append(&server, "notes-a", 20).await;
    for _ in 0..20 {
        seen.recv().await.unwrap();
    }
    server.finish().await;

    // Written while no server runs: the client must get them after it.
    let log = data.open_log().await;
    let events = (0..10)
        .map(|i| NewEvent::new("Noted", format!("{{\"down\":{i}}}")))
        .collect();
    log.append(&StreamId::new("notes-c").unwrap(), ExpectedVersion::Any, events)
        .await
        .unwrap();
    drop(log);

    let listener = TcpListener::bind(addr).await.expect("the same address again");
    let server = TestServer::on_listener(&data, Config::default(), listener).await;
    append(&server, "notes-b", 30).await;
    let positions = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the client read every event")
        .unwrap();
    assert_eq!(positions, (1..=100).collect::<Vec<u64>>());
    server.finish().await;
}

/// A filtered stream sends only what matches, and a checkpoint over a
/// stretch where nothing did, so a reconnect resumes past it.
async fn filters_send_matches_and_checkpoints(backend: Backend) {
    let data = Data::new(backend);
    let server = TestServer::on(&data, Config::default()).await;
    append(&server, "other-1", 10).await;
    let client = Client::new(&server.url).unwrap();
    let filter = LiveFilter {
        categories: vec!["wanted".into()],
        ..LiveFilter::default()
    };
    let mut live = client.follow(filter.clone(), 0);
    assert_eq!(live.next().await.unwrap(), LiveItem::Checkpoint(10));
    append(&server, "wanted-1", 2).await;
    append(&server, "other-2", 3).await;
    append(&server, "wanted-2", 1).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        if let LiveItem::Event(e) = live.next().await.unwrap() {
            assert!(e.stream.starts_with("wanted-"), "{e:?}");
            got.push(e.position);
        }
    }
    assert_eq!(got, vec![11, 12, 16]);

    // The per-category route, resumed after 11 by Last-Event-ID (it wins over `after`).
    let r = server
        .http
        .get(format!("{}/subscriptions/categories/wanted?after=0", server.url))
        .header("last-event-id", "11")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let ids = read_ids(r, 16).await;
    assert_eq!(ids, vec![12, 16]);
    server.finish().await;
}

/// The ids of the SSE stream `r` until `last` (the ids of events and checkpoints).
async fn read_ids(mut r: reqwest::Response, last: u64) -> Vec<u64> {
    let mut parser = strata_client::SseParser::default();
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        let chunk = r.chunk().await.unwrap().expect("the stream ended early");
        for m in parser.feed(&chunk).unwrap() {
            ids.push(m.id.unwrap().parse().unwrap());
        }
    }
    ids
}

/// Bad queries are problems, before any stream starts.
async fn bad_queries_are_problems(backend: Backend) {
    let data = Data::new(backend);
    let server = TestServer::on(&data, Config::default()).await;
    for path in [
        "/subscriptions/all?nope=1",
        "/subscriptions/all?after=x",
        "/subscriptions/all?after=1&after=2",
        "/subscriptions/all?category=a-b",
        "/subscriptions/all?event_type=",
        "/subscriptions/categories/a-b",
    ] {
        server.get(path).await.problem(400, "invalid-parameter");
    }
    server
        .get_with("/subscriptions/all", &[("last-event-id", "-3")])
        .await
        .problem(400, "invalid-parameter");
    server
        .get(&format!("/subscriptions/streams/{}", "x".repeat(300)))
        .await
        .problem(400, "invalid-id");
    server.finish().await;
}

/// The value of a counter in the server's /metrics.
async fn counter(server: &TestServer, name: &str) -> u64 {
    let text = server.get("/metrics").await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// A client that stops reading: writers keep going, the server reads from
/// the log for it only what the socket takes (one read batch and the
/// buffers), far from the whole log, while a reading client gets every
/// event; when the slow client reads again it gets every event too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_costs_a_batch_not_the_log() {
    const EVENTS: u64 = 1_200;
    let dir = tempfile::tempdir().unwrap();
    // The test appends through the library (a handle on the server's
    // store): cheaper than JSON over HTTP, and the same log.
    let store = SegmentStore::open(dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
    let server = TestServer {
        url: server.url(),
        server,
        http: reqwest::Client::new(),
    };

    // The stalled client: a small receive buffer, reads the head, then stops.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(b"GET /subscriptions/all HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = slow.read(&mut head).await.unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    // 1,200 events of 16 KiB (19 MiB), while it does not read.
    let payload = serde_json::to_vec(&json!({"pad": "x".repeat(16 * 1024)})).unwrap();
    let stream = StreamId::new("big-1").unwrap();
    for _ in 0..EVENTS / 50 {
        let events = (0..50).map(|_| NewEvent::new("Big", payload.clone())).collect();
        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
    }
    drop(store);
    // A client that reads gets them all.
    let client = Client::new(&server.url).unwrap();
    let mut fast = client.follow(LiveFilter::default(), 0);
    for position in 1..=EVENTS {
        match fast.next().await.unwrap() {
            LiveItem::Event(e) => assert_eq!(e.position, position),
            other => panic!("{other:?}"),
        }
    }
    let taken = counter(&server, "strata_sse_events_total").await;
    let by_slow = taken - EVENTS;
    assert!(
        by_slow < EVENTS / 2,
        "the stalled client's stream took {by_slow} of {EVENTS} events from the log"
    );

    // Reading again, the stalled client gets every event, in order (the
    // ids only are kept: one event per chunk, so the chunk headers never
    // split an `id` line).
    let mut ids = Vec::new();
    let mut line = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while ids.last() != Some(&EVENTS) {
        let n = slow.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended early");
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Some(id) = line.strip_prefix(b"id: ") {
                    ids.push(String::from_utf8_lossy(id).parse::<u64>().unwrap());
                }
                line.clear();
            } else if line.len() < 64 {
                line.push(b);
            }
        }
    }
    assert_eq!(ids, (1..=EVENTS).collect::<Vec<_>>());
    drop(slow);
    server.finish().await;
}

on_both_backends!(
    resumes_across_a_restart_without_gap_or_duplicate,
    filters_send_matches_and_checkpoints,
    bad_queries_are_problems,
);
