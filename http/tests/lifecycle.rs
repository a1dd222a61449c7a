//! The service as a whole: read-your-writes through `min_position`, a
//! graceful shutdown that finishes the request in flight and loses nothing
//! acknowledged, and a short load test with no lost update.

mod common;

use std::time::Duration;

use common::{Backend, Data, TestServer};
use serde_json::json;
use strata_http::Config;
use strata_store::{Direction, EventStore, StreamId};
use strata_testkit::STALL;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn a_write_position_lets_a_client_read_its_own_writes(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    s.stock_item("tea", 10).await;
    let placed = s
        .post(
            "/orders",
            json!({"order_id": "o-1", "customer": "ada", "lines": [{"sku": "tea", "quantity": 4, "unit_price_cents": 100}]}),
        )
        .await;
    let p = placed.header("strata-position").unwrap().to_string();
    let view = s.get(&format!("/views/orders?customer=ada&min_position={p}")).await;
    assert_eq!(view.status, 200);
    assert!(view.header("strata-position").unwrap().parse::<u64>().unwrap() >= p.parse().unwrap());
    let orders = view.json()["orders"].clone();
    assert_eq!(
        (orders[0]["order_id"].as_str(), orders[0]["status"].as_str()),
        (Some("o-1"), Some("placed"))
    );

    let paid = s
        .post_with(
            "/orders/o-1/pay",
            json!({"amount_cents": 400}),
            &[("If-Match", placed.etag())],
        )
        .await;
    assert_eq!(paid.status, 200, "{}", paid.text);
    let p = paid.header("strata-position").unwrap();
    let view = s
        .get(&format!("/views/orders?status=paid&min_position={p}"))
        .await
        .json();
    assert_eq!(view["orders"][0]["status"], "paid");
    assert_eq!(view["orders"][0]["version"], 2);
    assert_eq!(view["counts"]["paid"], 1);

    let stock = s.get(&format!("/views/stock?low=6&min_position={p}")).await.json();
    assert_eq!(stock["items"][0]["sku"], "tea");
    assert_eq!(
        (
            stock["items"][0]["reserved"].as_u64(),
            stock["items"][0]["available"].as_i64()
        ),
        (Some(4), Some(6))
    );
    s.finish().await;
}

/// Sends the head of a request, on a raw socket, with `Expect:
/// 100-continue`, and waits for the server's `100 Continue`: it has read
/// the head and its handler waits for the body, so the request is in
/// flight. The caller sends the body (or never does).
async fn start_request(addr: std::net::SocketAddr, path: &str, body: &str) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // Byte by byte: nothing past the interim response may be consumed.
    let mut interim = Vec::new();
    let read = async {
        while !interim.ends_with(b"\r\n\r\n") {
            interim.push(socket.read_u8().await.expect("the interim response"));
        }
    };
    tokio::time::timeout(STALL, read)
        .await
        .expect("the server never asked for the body");
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim}");
    socket
}

async fn shutdown_finishes_the_request_in_flight_and_loses_nothing_acknowledged(backend: Backend) {
    let data = Data::new(backend);
    let s = TestServer::on(&data, Config::default()).await;
    let addr = s.server.local_addr();
    let body =
        json!([{"event_id": "0190c5a0-0000-7000-8000-00000000abcd", "event_type": "Late", "data": {}}]).to_string();

    // Acknowledged appends before the shutdown.
    let mut acknowledged = 0;
    for i in 0..5 {
        let r = s
            .post(
                "/streams/log-1",
                json!([{"event_id": format!("0190c5a0-0000-7000-8000-{i:012}"), "event_type": "Early", "data": i}]),
            )
            .await;
        assert_eq!(r.status, 201);
        acknowledged += 1;
    }

    // A request whose head has arrived and whose body has not: in flight.
    let mut socket = start_request(addr, "/streams/log-1", &body).await;
    let stopping = tokio::spawn(s.server.shutdown());
    // New connections are refused once the shutdown has begun.
    let refused = async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("no new connection is accepted while stopping");

    // The body arrives; the request completes with a durable append.
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    acknowledged += 1;
    stopping.await.unwrap().expect("clean shutdown");

    // The store was closed (a sled directory opens again) and holds every
    // acknowledged event.
    let store = data.open_log().await;
    let stream = StreamId::new("log-1").unwrap();
    let events = store.read_stream(&stream, 1, Direction::Forward, 100).await.unwrap();
    assert_eq!(events.len(), acknowledged);
    assert_eq!(events.last().unwrap().event_type, "Late");
}

async fn a_request_that_never_finishes_does_not_hold_the_shutdown(backend: Backend) {
    let data = Data::new(backend);
    let config = Config {
        shutdown_grace: Duration::from_millis(300),
        ..Config::default()
    };
    let s = TestServer::on(&data, config).await;
    let addr = s.server.local_addr();
    // The head of a request whose body never comes.
    let mut socket = start_request(addr, "/streams/log-1", "[]").await;
    // Bounded generously: without the grace period this waits forever.
    tokio::time::timeout(Duration::from_secs(60), s.server.shutdown())
        .await
        .expect("the shutdown ends after its grace period")
        .expect("clean shutdown");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the held connection was closed");
    // The store was closed: it opens again.
    data.open_log().await;
}

async fn the_log_shows_json_payloads_as_data_and_others_as_base64(backend: Backend) {
    let data = Data::new(backend);
    {
        // Written by another program through the library, before the service starts.
        let store = data.open_log().await;
        let stream = StreamId::new("sensor-1").unwrap();
        let events = vec![
            strata_store::NewEvent::new("Reading", &b"{\"celsius\":21}"[..]),
            strata_store::NewEvent::new("Raw", &[0u8, 159, 146, 150][..]),
        ];
        store
            .append(&stream, strata_store::ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    let s = TestServer::on(&data, Config::default()).await;
    let page = s.get("/streams/sensor-1").await;
    assert_eq!(page.etag(), "\"2\"");
    let events = page.json()["events"].clone();
    assert_eq!(events[0]["data"]["celsius"], 21);
    assert!(events[0].get("data_base64").is_none());
    assert_eq!(events[1]["data_base64"], "AJ+Slg==");
    assert!(events[1].get("data").is_none());
    let newest = s.get("/streams/sensor-1?direction=backward&limit=1").await.json();
    assert_eq!(newest["events"][0]["event_type"], "Raw");
    assert_eq!(newest["next_from"], 1);
    s.finish().await;
}

on_both_backends!(
    a_write_position_lets_a_client_read_its_own_writes,
    shutdown_finishes_the_request_in_flight_and_loses_nothing_acknowledged,
    a_request_that_never_finishes_does_not_hold_the_shutdown,
    the_log_shows_json_payloads_as_data_and_others_as_base64,
);
