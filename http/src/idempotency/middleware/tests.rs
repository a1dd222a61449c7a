//! The crash window end to end, on both backends: a keyed write landed and
//! the process died before its answer was recorded (the key still holds
//! the dead run's marker). The retry must find the write and answer it,
//! not apply it twice. On the embedded store also with a real crash: the
//! process aborts right after the write is durable, and the marker must
//! have been made durable before it (the tables are a database apart from
//! the log).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_projections::Projections;
use strata_store::{
    AppendResult, Direction, EventFilter, EventStore, EventSubscription, FilteredSubscription, RecordedEvent,
    SegmentStore, StoreError, StreamAppend, StreamId,
};
use strata_subscriptions::Subscriptions;

use crate::idempotency::Records;
use crate::idempotency::rules::{Boot, Fingerprint, Record};
use crate::state::AppState;
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
struct Local {
    store: SegmentStore,
    _dir: tempfile::TempDir,
}

impl Backend for Local {
    fn log(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    async fn put_record(&self, key: &str, marker: &Record) {
        let tree = self
            .store
            .tables()
            .unwrap()
            .open_tree(crate::idempotency::local::TREE)
            .unwrap();
        tree.insert(key, marker.encode().unwrap()).unwrap();
    }
}

async fn on_local() -> (Server, Local) {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
    (server, Local { store, _dir: dir })
}

#[tokio::test]
async fn a_retried_receipt_on_the_embedded_store() {
    let (server, backend) = on_local().await;
    a_retried_receipt_is_not_applied_twice(server, backend).await;
}

#[tokio::test]
async fn a_retried_document_write_on_the_embedded_store() {
    let (server, backend) = on_local().await;
    a_retried_document_write_is_not_applied_twice(server, backend).await;
}

/// Set in the child of the real crash test: the data directory.
const CRASH_DIR: &str = "STRATA_CLAIM_CRASH_DIR";
/// What the child prints before its server's URL.
const URL_LINE: &str = "claim-crash-child-url=";

/// The log, but the process aborts (no destructor runs, nothing more is
/// flushed) as soon as an append that takes `stock-tea` to version 2 or
/// later is acknowledged: durable in the log, its answer never recorded.
struct AbortAfterWrite(SegmentStore);

#[async_trait]
impl EventStore for AbortAfterWrite {
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let watched: Vec<bool> = appends.iter().map(|a| a.stream.as_str() == "stock-tea").collect();
        let results = self.0.append_multi(appends).await?;
        if results.iter().zip(&watched).any(|(r, w)| *w && r.stream_version >= 2) {
            std::process::abort();
        }
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_stream(stream, from_version, direction, limit).await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_all(from_position, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.0.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.0.head_position().await
    }

    fn subscribe_all(&self, after: u64) -> EventSubscription {
        self.0.subscribe_all(after)
    }

    fn subscribe_filtered(&self, after: u64, filter: EventFilter) -> FilteredSubscription {
        self.0.subscribe_filtered(after, filter)
    }
}

/// The child of [`a_claim_is_durable_before_its_write`]: serves the
/// directory with [`AbortAfterWrite`] as its log until it aborts. Not a
/// test of its own (ignored); the parent runs it.
#[test]
#[ignore = "child process of a_claim_is_durable_before_its_write"]
fn claim_crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SegmentStore::open(&dir).unwrap();
        let projections = Projections::open(&store).unwrap();
        let config = Config::default();
        let records = Records::open_local(&store.tables().unwrap(), config.idempotency_retention).unwrap();
        let log: Arc<dyn EventStore> = Arc::new(AbortAfterWrite(store.clone()));
        let subscriptions = Subscriptions::local(log.clone(), store.tables().unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::serve_state(
            AppState::new(log, projections, subscriptions, records, config),
            listener,
            None,
        )
        .await
        .unwrap();
        println!("{URL_LINE}{}", server.url());
        std::future::pending::<()>().await;
    });
}

/// A real crash between a keyed write and its recorded answer: the child
/// claims the key, appends (durably), and aborts. The marker must have
/// been durable before the append (the tables are not the log's database,
/// so the log's sync does not cover it): the retry on a restarted server
/// then knows the first run died, finds its write and answers it instead
/// of receiving the stock a second time. Without the sync in the claim,
/// the marker dies with the process and the retry applies the write again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_durable_before_its_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idempotency::middleware::tests::claim_crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may have written `test name ... ` on the same line.
            .find_map(|l| l.split_once(URL_LINE).map(|(_, url)| url.trim().to_string()))
    })
    .await
    .unwrap()
    .expect("the child printed its URL");
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{url}/stock"))
        .json(&serde_json::json!({"sku": "tea", "name": "Tea"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let receive = |url: &str| {
        http.post(format!("{url}/stock/tea/receive"))
            .header("idempotency-key", "crash-claim")
            .json(&serde_json::json!({"quantity": 4}))
    };
    assert!(
        receive(&url).send().await.is_err(),
        "the child aborts before it answers"
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the child aborted: {status}");

    // A new process on the same directory (the kernel released the dead
    // child's lock with its files).
    let store = open_after_crash(dir.path()).await;
    let stream = StreamId::new("stock-tea").unwrap();
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        2,
        "the receipt is in the log"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::serve(store.clone(), listener, Config::default()).await.unwrap();
    let retry = receive(&server.url()).send().await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()[IDEMPOTENCY_REPLAYED], "true");
    let view: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(view["on_hand"], 4, "received once, not twice");
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        2,
        "nothing appended by the retry"
    );
    server.shutdown().await.unwrap();
}

async fn open_after_crash(dir: &std::path::Path) -> SegmentStore {
    for _ in 0..250 {
        match SegmentStore::open(dir) {
            Err(StoreError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other.unwrap(),
        }
    }
    panic!("the directory stayed locked after the child died")
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
