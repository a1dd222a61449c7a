//! Persistent subscription groups over real HTTP: create (idempotent),
//! list, read a batch, ack, nack (retried with attempt counted, then
//! parked), list and replay parked events, delete; problem answers for
//! bad input; lag and in-flight counts in /metrics; competing consumers
//! over HTTP with the ordered strategy; the group's state across a server
//! restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{Backend, Data, Resp, TestServer};
use serde_json::{Value, json};
use strata_http::Config;
use tokio::net::TcpListener;

async fn append(server: &TestServer, stream: &str, count: usize) {
    let events: Vec<_> = (0..count)
        .map(|i| json!({"event_id": uuid::Uuid::new_v4(), "event_type": "Job", "data": {"i": i}}))
        .collect();
    let r = server.post(&format!("/streams/{stream}"), json!(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn read(server: &TestServer, group: &str, consumer: &str, max: u64) -> Vec<Value> {
    let r = server
        .post(
            &format!("/subscriptions/groups/{group}/read"),
            json!({"consumer": consumer, "max_events": max, "wait_ms": 2000}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["deliveries"].as_array().unwrap().clone()
}

fn tokens(deliveries: &[Value]) -> Vec<Value> {
    deliveries.iter().map(|d| d["token"].clone()).collect()
}

async fn settle(server: &TestServer, group: &str, verb: &str, body: Value) -> Value {
    let r = server
        .post(&format!("/subscriptions/groups/{group}/{verb}"), body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

async fn group(server: &TestServer, group: &str) -> Value {
    let r = server.get(&format!("/subscriptions/groups/{group}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The value of a gauge of `group` in /metrics.
async fn gauge(server: &TestServer, name: &str, group: &str) -> i64 {
    let text = server.get("/metrics").await.text;
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

/// The life of a group: create (201, then 200 for the same settings, 409
/// for others), read, ack, nack with retry (delivered again as attempt 2)
/// and park, list and replay parked, the gauges, delete (then 404).
async fn a_group_from_create_to_delete(backend: Backend) {
    let data = Data::new(backend);
    let server = TestServer::on(&data, Config::default()).await;
    append(&server, "job-1", 3).await;
    append(&server, "other-1", 2).await;

    let settings = json!({
        "filter": {"categories": ["job"]},
        "strategy": "pinned_per_stream",
        "max_retries": 1,
        "retry_delay_ms": 0,
        "ack_timeout_ms": 60000,
    });
    let r = server.put("/subscriptions/groups/jobs", settings.clone(), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), Some("/subscriptions/groups/jobs"));
    assert_eq!(r.json()["settings"]["strategy"], "pinned_per_stream");
    assert_eq!(
        server.put("/subscriptions/groups/jobs", settings, &[]).await.status,
        200
    );
    server
        .put("/subscriptions/groups/jobs", json!({"max_retries": 5}), &[])
        .await
        .problem(409, "subscription-group-exists");
    let list = server.get("/subscriptions/groups").await.json();
    assert_eq!(list["groups"][0]["name"], "jobs");

    // Pinned: one event of job-1 at a time.
    let batch = read(&server, "jobs", "w1", 10).await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0]["event"]["position"], 1);
    assert_eq!(batch[0]["attempt"], 1);
    assert_eq!(
        gauge(&server, "strata_subscription_group_in_flight_events", "jobs").await,
        1
    );
    let settled = settle(&server, "jobs", "ack", json!({"tokens": tokens(&batch)})).await;
    assert_eq!(settled, json!({"settled": 1, "stale": []}));
    // A late second ack of the same token is stale, not an error.
    let again = settle(&server, "jobs", "ack", json!({"tokens": tokens(&batch)})).await;
    assert_eq!(again["settled"], 0);
    assert_eq!(again["stale"], json!(tokens(&batch)));

    // Refused: retried once (attempt 2), then parked.
    let batch = read(&server, "jobs", "w1", 10).await;
    assert_eq!(batch[0]["event"]["position"], 2);
    settle(
        &server,
        "jobs",
        "nack",
        json!({"tokens": tokens(&batch), "reason": "flaky"}),
    )
    .await;
    let retry = read(&server, "jobs", "w2", 10).await;
    assert_eq!(
        (retry[0]["event"]["position"].clone(), retry[0]["attempt"].clone()),
        (json!(2), json!(2))
    );
    settle(
        &server,
        "jobs",
        "nack",
        json!({"tokens": tokens(&retry), "reason": "still failing"}),
    )
    .await;
    let parked = server.get("/subscriptions/groups/jobs/parked").await.json();
    assert_eq!(parked["events"][0]["position"], 2);
    assert_eq!(
        parked["events"][0]["reason"],
        "nacked: still failing (after 2 deliveries)"
    );
    assert_eq!(parked["events"][0]["attempts"], 2);
    assert_eq!(
        gauge(&server, "strata_subscription_group_parked_events", "jobs").await,
        1
    );

    // Parked at once on request.
    let batch = read(&server, "jobs", "w1", 10).await;
    assert_eq!(batch[0]["event"]["position"], 3);
    settle(
        &server,
        "jobs",
        "nack",
        json!({"tokens": tokens(&batch), "action": "park", "reason": "poison"}),
    )
    .await;
    let info = group(&server, "jobs").await;
    assert_eq!(
        (info["parked"].clone(), info["in_flight"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(info["checkpoint"], 5, "everything acknowledged or parked: {info}");

    // Replay one parked event: delivered again, first attempt counted afresh.
    let r = server
        .post("/subscriptions/groups/jobs/parked/replay", json!({"positions": [3]}))
        .await;
    assert_eq!(r.json()["marked"], 1, "{}", r.text);
    let batch = read(&server, "jobs", "w1", 10).await;
    assert_eq!(batch[0]["event"]["position"], 3);
    settle(&server, "jobs", "ack", json!({"tokens": tokens(&batch)})).await;
    let parked = server.get("/subscriptions/groups/jobs/parked?limit=1").await.json();
    assert_eq!(parked["events"].as_array().unwrap().len(), 1);
    assert_eq!(parked["next_after"], 2);

    // Lag: appended after, not yet handled.
    append(&server, "job-2", 4).await;
    let info = group(&server, "jobs").await;
    assert_eq!(info["lag"], 4, "{info}");
    assert_eq!(
        gauge(&server, "strata_subscription_group_lag_positions", "jobs").await,
        4
    );

    assert_eq!(server.delete("/subscriptions/groups/jobs", &[]).await.status, 204);
    server
        .delete("/subscriptions/groups/jobs", &[])
        .await
        .problem(404, "not-found");
    server.get("/subscriptions/groups/jobs").await.problem(404, "not-found");
    server
        .post("/subscriptions/groups/jobs/read", json!({"consumer": "w1"}))
        .await
        .problem(404, "not-found");
    assert!(
        !server.get("/metrics").await.text.contains("group=\"jobs\""),
        "a deleted group's gauges go"
    );
    server.finish().await;
}

/// Bad names, settings, tokens and bounds are problems, and change nothing.
async fn bad_input_is_refused(backend: Backend) {
    let data = Data::new(backend);
    let server = TestServer::on(&data, Config::default()).await;
    server
        .put("/subscriptions/groups/-bad", json!({}), &[])
        .await
        .problem(400, "invalid-id");
    for settings in [
        json!({"buffer_size": 0}),
        json!({"max_retries": 1001}),
        json!({"ack_timeout_ms": 0}),
        json!({"retry_delay_ms": 10, "max_retry_delay_ms": 5}),
        json!({"start": "end", "start_after": 3}),
        json!({"filter": {"categories": ["a-b"]}}),
        json!({"filter": {"streams": [""]}}),
        json!({"strategy": "random"}),
        json!({"unknown": 1}),
    ] {
        server
            .put("/subscriptions/groups/g", settings.clone(), &[])
            .await
            .problem(422, "invalid-body");
    }
    assert_eq!(server.get("/subscriptions/groups").await.json()["groups"], json!([]));
    assert_eq!(server.put("/subscriptions/groups/g", json!({}), &[]).await.status, 201);
    for body in [
        json!({"consumer": "a b"}),
        json!({"consumer": "w", "max_events": 0}),
        json!({"consumer": "w", "max_events": 1001}),
        json!({"consumer": "w", "wait_ms": 30001}),
    ] {
        server
            .post("/subscriptions/groups/g/read", body)
            .await
            .problem(422, "invalid-body");
    }
    for body in [
        json!({"tokens": []}),
        json!({"tokens": ["1"]}),
        json!({"tokens": ["1.x"]}),
    ] {
        server
            .post("/subscriptions/groups/g/ack", body.clone())
            .await
            .problem(422, "invalid-body");
        server
            .post("/subscriptions/groups/g/nack", body)
            .await
            .problem(422, "invalid-body");
    }
    server
        .post(
            "/subscriptions/groups/g/nack",
            json!({"tokens": ["1.1"], "reason": "x".repeat(1001)}),
        )
        .await
        .problem(422, "invalid-body");
    for query in ["limit=0", "limit=1001", "after=x", "nope=1"] {
        server
            .get(&format!("/subscriptions/groups/g/parked?{query}"))
            .await
            .problem(400, "invalid-parameter");
    }
    server
        .get("/subscriptions/groups/nope/parked")
        .await
        .problem(404, "not-found");
    let r: Resp = server.post_raw("/subscriptions/groups/g/parked/replay", None, "").await;
    assert_eq!(r.status, 200, "an empty body replays every parked event: {}", r.text);
    server.finish().await;
}

/// Competing consumers over HTTP on the ordered strategy: every event
/// handled, none of a stream while another of it is in flight, each
/// stream in order.
async fn competing_consumers_keep_each_stream_in_order(backend: Backend) {
    const STREAMS: usize = 6;
    const PER_STREAM: usize = 15;
    let data = Data::new(backend);
    let server = Arc::new(TestServer::on(&data, Config::default()).await);
    for s in 0..STREAMS {
        append(&server, &format!("task-{s}"), PER_STREAM).await;
    }
    let r = server
        .put(
            "/subscriptions/groups/tasks",
            json!({"filter": {"categories": ["task"]}, "strategy": "pinned_per_stream"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // (stream, version) in the order the consumers finished them.
    let handled = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let in_flight = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (server, handled, in_flight) = (server.clone(), handled.clone(), in_flight.clone());
        workers.push(tokio::spawn(async move {
            let consumer = format!("w{w}");
            loop {
                if handled.lock().unwrap().len() >= STREAMS * PER_STREAM {
                    return;
                }
                let batch = read(&server, "tasks", &consumer, 3).await;
                for d in &batch {
                    let stream = d["event"]["stream"].as_str().unwrap().to_string();
                    assert!(
                        in_flight.lock().unwrap().insert(stream.clone()),
                        "two events of {stream} in flight at once"
                    );
                }
                for d in &batch {
                    let stream = d["event"]["stream"].as_str().unwrap().to_string();
                    let version = d["event"]["version"].as_u64().unwrap();
                    handled.lock().unwrap().push((stream.clone(), version));
                    in_flight.lock().unwrap().remove(&stream);
                    settle(&server, "tasks", "ack", json!({"tokens": [d["token"]]})).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (stream, version) in handled.lock().unwrap().iter() {
        per_stream.entry(stream.clone()).or_default().push(*version);
    }
    assert_eq!(per_stream.len(), STREAMS);
    for (stream, versions) in per_stream {
        assert_eq!(versions, (1..=PER_STREAM as u64).collect::<Vec<_>>(), "{stream}");
    }
    let info = group(&server, "tasks").await;
    assert_eq!(info["checkpoint"], (STREAMS * PER_STREAM) as u64, "{info}");
    assert_eq!(info["counters"]["redelivered"], 0, "{info}");
    Arc::into_inner(server).unwrap().finish().await;
}

/// A group's state is durable: leased and unacknowledged events survive a
/// restart and come back after their ack timeout; acknowledged ones do not.
async fn a_group_survives_a_restart(backend: Backend) {
    let data = Data::new(backend);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TestServer::on_listener(&data, Config::default(), listener).await;
    append(&server, "work-1", 4).await;
    let r = server
        .put("/subscriptions/groups/w", json!({"ack_timeout_ms": 200}), &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let batch = read(&server, "w", "a", 4).await;
    assert_eq!(batch.len(), 4);
    settle(&server, "w", "ack", json!({"tokens": tokens(&batch[..2])})).await;
    server.finish().await;

    let listener = TcpListener::bind(addr).await.unwrap();
    let server = TestServer::on_listener(&data, Config::default(), listener).await;
    let info = group(&server, "w").await;
    assert_eq!(info["checkpoint"], 2, "{info}");
    // The two unacknowledged events come back once their leases time out.
    let mut again = Vec::new();
    while again.len() < 2 {
        again.extend(read(&server, "w", "b", 4).await);
    }
    let positions: Vec<_> = again.iter().map(|d| d["event"]["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, vec![3, 4]);
    assert!(again.iter().all(|d| d["attempt"] == 2), "{again:?}");
    settle(&server, "w", "ack", json!({"tokens": tokens(&again)})).await;
    assert_eq!(group(&server, "w").await["checkpoint"], 4);
    server.finish().await;
}

on_both_backends!(
    a_group_from_create_to_delete,
    bad_input_is_refused,
    competing_consumers_keep_each_stream_in_order,
    a_group_survives_a_restart,
);
