//! The crash window end to end, on both backends: a keyed write landed and
//! the process died before its answer was recorded (the key still holds
//! the dead run's marker). The retry must find the write and answer it,
//! not apply it twice.

use std::sync::Arc;

use strata_store::{Direction, EventStore, SledStore, StreamId};

use crate::idempotency::rules::{Boot, Fingerprint, Record};
use crate::{Config, IDEMPOTENCY_REPLAYED, Server};

/// What the tests need of a backend: its log, and a way to leave a dead
/// run's marker under a key.
trait Backend {
    fn log(&self) -> Arc<dyn EventStore>;
    async fn put_record(&self, key: &str, marker: &Record);
}

/// Forges the state a crash leaves: the keyed write's event is the last of
/// `stream`, and `key` holds an in-flight marker of a dead run with that
/// write's fingerprint (read back from the event's metadata).
async fn forge_dead_marker(backend: &impl Backend, stream: &StreamId, key: &str) {
    let last = backend
        .log()
        .read_stream(stream, u64::MAX, Direction::Backward, 1)
        .await
        .unwrap();
    let hex = &last[0].metadata.extra["http.idempotency_fingerprint"];
    let marker = Record::InFlight {
        fingerprint: Fingerprint::from_hex(hex).unwrap(),
        boot: Boot::test(7),
        started_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    };
    backend.put_record(key, &marker).await;
}

/// A stock receipt without `If-Match`: applied twice it would count twice.
async fn a_retried_receipt_is_not_applied_twice(server: Server, backend: impl Backend) {
    let http = reqwest::Client::new();
    let url = server.url();
    let r = http
        .post(format!("{url}/stock"))
        .json(&serde_json::json!({"sku": "tea", "name": "Tea"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let receive = || {
        http.post(format!("{url}/stock/tea/receive"))
            .header("idempotency-key", "crash-1")
            .json(&serde_json::json!({"quantity": 4}))
    };
    let first = receive().send().await.unwrap();
    assert_eq!(first.status(), 200);

    let stream = StreamId::new("stock-tea").unwrap();
    forge_dead_marker(&backend, &stream, "crash-1").await;

    let retry = receive().send().await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()[IDEMPOTENCY_REPLAYED], "true");
    let view: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(view["on_hand"], 4, "received once, not twice");
    assert_eq!(
        backend.log().stream_version(&stream).await.unwrap(),
        2,
        "nothing appended by the retry"
    );
    // From now on the answer is recorded.
    let again = receive().send().await.unwrap();
    assert_eq!(again.headers()[IDEMPOTENCY_REPLAYED], "true");
    server.shutdown().await.unwrap();
}

/// The same on a document: a keyed PUT that landed before its record is
/// answered from the document, not applied again (which would append a
/// second version, or refuse a create-only write that in fact succeeded).
async fn a_retried_document_write_is_not_applied_twice(server: Server, backend: impl Backend) {
    let http = reqwest::Client::new();
    let url = server.url();
    let r = http
        .put(format!("{url}/collections/items"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let create = || {
        http.put(format!("{url}/docs/items/1"))
            .header("idempotency-key", "doc-crash-1")
            .header("if-none-match", "*")
            .json(&serde_json::json!({"n": 1}))
    };
    assert_eq!(create().send().await.unwrap().status(), 201);

    let stream = StreamId::new("doc-items/1").unwrap();
    forge_dead_marker(&backend, &stream, "doc-crash-1").await;

    let retry = create().send().await.unwrap();
    assert_eq!(retry.status(), 201, "the create's own answer, not already-exists");
    assert_eq!(retry.headers()[IDEMPOTENCY_REPLAYED], "true");
    assert_eq!(retry.headers()["etag"], "\"1\"");
    assert_eq!(
        backend.log().stream_version(&stream).await.unwrap(),
        1,
        "nothing appended by the retry"
    );
    server.shutdown().await.unwrap();
}

/// The store, and its directory (removed when the test ends).
struct Sled {
    store: SledStore,
    _dir: tempfile::TempDir,
}

impl Backend for Sled {
    fn log(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    async fn put_record(&self, key: &str, marker: &Record) {
        let tree = self.store.tables().open_tree(crate::idempotency::local::TREE).unwrap();
        tree.insert(key, marker.encode().unwrap()).unwrap();
    }
}

async fn on_sled() -> (Server, Sled) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
    (server, Sled { store, _dir: dir })
}

#[tokio::test]
async fn a_retried_receipt_on_sled() {
    let (server, backend) = on_sled().await;
    a_retried_receipt_is_not_applied_twice(server, backend).await;
}

#[tokio::test]
async fn a_retried_document_write_on_sled() {
    let (server, backend) = on_sled().await;
    a_retried_document_write_is_not_applied_twice(server, backend).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use strata_store::PostgresStore;
    use strata_store::pg::Schema;
    use strata_testkit::TestDatabase;

    use super::*;

    struct Pg(TestDatabase, PostgresStore);

    impl Backend for Pg {
        fn log(&self) -> Arc<dyn EventStore> {
            Arc::new(self.1.clone())
        }

        async fn put_record(&self, key: &str, marker: &Record) {
            let Record::InFlight { boot, .. } = marker else {
                unreachable!("a marker")
            };
            let sql = Schema::new(self.0.schema())
                .unwrap()
                .render("UPDATE {schema}.http_idempotency SET record = $2, done = false, boot = $3 WHERE key = $1");
            let updated = self
                .0
                .admin()
                .await
                .execute(&sql, &[&key, &marker.encode().unwrap(), &boot.uuid()])
                .await
                .unwrap();
            assert_eq!(updated, 1);
        }
    }

    async fn on_postgres() -> (Server, Pg) {
        let db = TestDatabase::new();
        let mut options = db.options("server");
        options.pool_size = 16;
        let store = db.connect(options).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::serve_postgres(store.clone(), listener, Config::default())
            .await
            .unwrap();
        (server, Pg(db, store))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_retried_receipt_on_postgres() {
        let (server, backend) = on_postgres().await;
        a_retried_receipt_is_not_applied_twice(server, backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn a_retried_document_write_on_postgres() {
        let (server, backend) = on_postgres().await;
        a_retried_document_write_is_not_applied_twice(server, backend).await;
    }
}
