//! The crash window end to end, on both backends: a keyed write landed and
//! the process died before its answer was recorded (the key still holds
//! the dead run's marker). The retry must find the write and answer it,
//! not apply it twice.

use std::sync::Arc;

use strata_store::{Direction, EventStore, SledStore, StreamId};

use crate::idempotency::rules::{Boot, Fingerprint, Record};
use crate::{Config, IDEMPOTENCY_REPLAYED, Server};

/// What the test needs of a backend: a server on it, its log, and a way to
/// leave a dead run's marker under a key.
trait Backend {
    fn log(&self) -> Arc<dyn EventStore>;
    async fn forge(&self, key: &str, marker: &Record);
}

struct Sled(SledStore);

impl Backend for Sled {
    fn log(&self) -> Arc<dyn EventStore> {
        Arc::new(self.0.clone())
    }

    async fn forge(&self, key: &str, marker: &Record) {
        let tree = self.0.tables().open_tree(crate::idempotency::local::TREE).unwrap();
        tree.insert(key, marker.encode().unwrap()).unwrap();
    }
}

async fn a_retry_after_a_crash_before_the_record_does_not_apply_twice(server: Server, backend: impl Backend) {
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

    // Forge the state a crash would leave: the event is in the log, the
    // key holds an in-flight marker of a dead run with its fingerprint.
    let store = backend.log();
    let stream = StreamId::new("stock-tea").unwrap();
    let last = store
        .read_stream(&stream, u64::MAX, Direction::Backward, 1)
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
    backend.forge("crash-1", &marker).await;

    let retry = receive().send().await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()[IDEMPOTENCY_REPLAYED], "true");
    let view: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(view["on_hand"], 4, "received once, not twice");
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        2,
        "nothing appended by the retry"
    );
    // From now on the answer is recorded.
    let again = receive().send().await.unwrap();
    assert_eq!(again.headers()[IDEMPOTENCY_REPLAYED], "true");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
    a_retry_after_a_crash_before_the_record_does_not_apply_twice(server, Sled(store)).await;
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

        async fn forge(&self, key: &str, marker: &Record) {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    async fn on_postgres() {
        let db = TestDatabase::new();
        let mut options = db.options("server");
        options.pool_size = 16;
        let store = db.connect(options).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::serve_postgres(store.clone(), listener, Config::default())
            .await
            .unwrap();
        a_retry_after_a_crash_before_the_record_does_not_apply_twice(server, Pg(db, store)).await;
    }
}
