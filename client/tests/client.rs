//! The client against a real server: the update loop under concurrency
//! loses nothing, merges spare retries, an unresolvable conflict comes back
//! with its fields, a unique value with its holder.

use std::sync::Arc;

use serde_json::json;
use strata_client::{Client, ClientError, Precondition, RetryPolicy};
use strata_http::{Config, Server};
use strata_store::SegmentStore;

async fn server() -> (tempfile::TempDir, Server, Client) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::serve(store, listener, Config::default()).await.unwrap();
    let client = Client::new(&server.url()).unwrap().with_actor("test");
    client
        .declare_collection("items", &json!({"unique": ["sku"]}))
        .await
        .unwrap();
    (dir, server, client)
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing() {
    let (_dir, server, client) = server().await;
    let created = client
        .put("items", "1", &obj(json!({"n": 0})), Precondition::Create)
        .await
        .unwrap();
    assert_eq!((created.status, created.version), (201, 1));
    let client = client.with_retry_policy(RetryPolicy {
        max_attempts: 200,
        ..RetryPolicy::default()
    });
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                let mut merges = 0;
                for _ in 0..15 {
                    // A shared counter: If-Match, read again on conflict.
                    let u = client
                        .update("items", "1", |doc| {
                            let n = doc["n"].as_u64().unwrap();
                            doc.insert("n".into(), json!(n + 1));
                        })
                        .await
                        .unwrap();
                    conflicts += u.conflicts;
                    // A field of its own: merged onto newer versions.
                    let u = client
                        .update_merging("items", "1", |doc| {
                            let mine = doc.get(&format!("c{i}")).and_then(|v| v.as_u64()).unwrap_or(0);
                            doc.insert(format!("c{i}"), json!(mine + 1));
                        })
                        .await
                        .unwrap();
                    merges += u32::from(u.merged);
                }
                (conflicts, merges)
            })
        })
        .collect();
    let mut conflicts = 0;
    let mut merges = 0;
    for t in tasks {
        let (c, m) = t.await.unwrap();
        conflicts += c;
        merges += m;
    }
    let doc = client.get("items", "1").await.unwrap();
    assert_eq!(doc.body["n"], 120, "every increment of the shared counter is there");
    for i in 0..8 {
        assert_eq!(doc.body[&format!("c{i}")], 15, "every increment of c{i} is there");
    }
    // Not asserted (timing decides), but shown: how often the loop had to work.
    eprintln!("conflicts {conflicts}, merges {merges}, final version {}", doc.version);
    server.shutdown().await.unwrap();
}

/// Writes `n` to document 1 from another thread, while `update`'s change runs.
fn interfere(url: &str, n: u64) {
    std::thread::scope(|t| {
        t.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                Client::new(url)
                    .unwrap()
                    .merge_patch("items", "1", &json!({"n": n}), Precondition::None)
                    .await
                    .unwrap();
            });
        })
        .join()
        .unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_the_loop_cannot_resolve_comes_back_with_its_fields() {
    let (_dir, server, client) = server().await;
    client
        .put("items", "1", &obj(json!({"n": 0, "m": 0})), Precondition::Create)
        .await
        .unwrap();
    let url = server.url();
    let once = |client: Client, n: u64| {
        let url = url.clone();
        async move {
            let mut first = true;
            client
                .update("items", "1", move |doc| {
                    if first {
                        first = false;
                        interfere(&url, n);
                    }
                    doc.insert("n".into(), json!(1));
                })
                .await
        }
    };
    // One attempt: the interfering write makes it stale, and there is no second.
    let strict = client.clone().with_retry_policy(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    let e = once(strict, 100).await.unwrap_err();
    let c = e.conflict().expect("a conflict");
    assert_eq!((c.status, c.attempts, c.current_version), (409, 1, 2));
    assert_eq!(c.conflicting_fields, Some(vec!["/n".to_string()]));
    assert_eq!(c.changes_since.len(), 1);
    // With a second attempt the loop reads again and lands.
    let u = once(client.clone(), 200).await.unwrap();
    assert_eq!((u.attempts, u.conflicts, u.document.version), (2, 1, 4));
    assert_eq!(u.document.body["n"], 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unique_values_deletes_and_replays_surface_as_such() {
    let (_dir, server, client) = server().await;
    client
        .put("items", "a", &obj(json!({"sku": "tea"})), Precondition::Create)
        .await
        .unwrap();
    match client
        .put("items", "b", &obj(json!({"sku": "tea"})), Precondition::None)
        .await
    {
        Err(ClientError::UniqueViolation { field, holder, .. }) => {
            assert_eq!((field.as_str(), holder.as_str()), ("/sku", "a"))
        }
        other => panic!("{other:?}"),
    }
    let deleted = client.delete("items", "a", Precondition::IfMatch(1)).await.unwrap();
    assert_eq!(deleted.version, 2);
    assert!(matches!(
        client.get("items", "a").await,
        Err(ClientError::Deleted { version: 2 })
    ));
    assert!(matches!(
        client.get("items", "zz").await,
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        client.update("items", "zz", |_| {}).await,
        Err(ClientError::NotFound { .. })
    ));
    // A stale create names the document it found.
    client
        .put("items", "c", &obj(json!({"sku": "c"})), Precondition::Create)
        .await
        .unwrap();
    let e = client
        .put("items", "c", &obj(json!({"sku": "c2"})), Precondition::Create)
        .await
        .unwrap_err();
    assert_eq!(e.conflict().unwrap().problem_type, "/problems/already-exists");
    // Observed requests.
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let observed = client.with_observer(Arc::new(move |x| {
        assert!(x.status.is_some());
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    observed.get("items", "c").await.unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.shutdown().await.unwrap();
}
