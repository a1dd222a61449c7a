//! Crash: a child process runs a projection while writers append; the
//! parent kills it with SIGKILL at random moments, reopens, and checks that
//! the projection resumes with every event applied exactly once and ends
//! equal to a rebuild.
//!
//! 10 kill cycles by default; set `STRATA_CRASH_CYCLES` for more, e.g.
//! `STRATA_CRASH_CYCLES=200 cargo test -p strata-projections --test crash`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use strata_projections::{ModelStore, Projection, ProjectionRunner, RebuildOptions, RunnerOptions, rebuild};
use strata_store::{Durability, EventStore, ExpectedVersion, NewEvent, SegmentOptions, SegmentStore, StreamId};
use support::{Tally, assert_exactly_once, read_tally};

/// Set in the child: the store directory.
const CHILD_DIR: &str = "STRATA_PROJ_CRASH_DIR";
const NAME: &str = "tally";
/// What the child prints once its runner applies events.
const READY: &str = "crash-child-ready";

fn open(dir: &std::path::Path) -> SegmentStore {
    // Buffered: an acknowledged append survives a process crash (which is
    // what SIGKILL is); the fsync of the default mode adds nothing here.
    let options = SegmentOptions {
        durability: Durability::Buffered,
        ..SegmentOptions::default()
    };
    // The killed child's lock is released when the kernel closes its files;
    // retry briefly in case the parent is faster than that.
    for _ in 0..100 {
        match SegmentStore::open_with(dir, options.clone()) {
            Ok(store) => return store,
            Err(strata_store::StoreError::Locked { .. }) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("reopening the store: {e}"),
        }
    }
    panic!("the store stayed locked")
}

/// The child: follows the log into the tally while four writers append,
/// until it is killed. Not a test of its own (ignored); the parent runs it.
#[test]
#[ignore = "child process of crash_resumes_exactly_once"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = open(dir.as_ref());
        let shared: Arc<dyn EventStore> = Arc::new(store.clone());
        let model = ModelStore::open_sled(&store, NAME).unwrap();
        let start = model.checkpoint();
        // The head before this child's writers start: the parent checks
        // that every cycle appended something, so READY waits for an event
        // past it (under load, a writer may not have run yet otherwise).
        let before = store.head_position().await.unwrap();
        // Small batches: many commits, so kills land among them.
        let runner = ProjectionRunner::start(
            shared.clone(),
            model,
            Arc::new(Tally::new(NAME)),
            RunnerOptions {
                batch_size: 8,
                ..RunnerOptions::default()
            },
        )
        .await
        .unwrap();
        for w in 0..4u8 {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = StreamId::new(format!("writer-{w}")).unwrap();
                let mut i = 0u64;
                loop {
                    i += 1;
                    let events = (0..1 + i % 3).map(|_| NewEvent::new("Tick", vec![w])).collect();
                    store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
                }
            });
        }
        // Tell the parent the runner has applied an event this child
        // appended, then go on until killed.
        runner
            .wait_for(before.max(start) + 1, Duration::from_secs(30))
            .await
            .unwrap();
        println!("{READY}");
        runner.join().await.unwrap();
        unreachable!("the runner never stops by itself here");
    });
}

fn cycles() -> usize {
    std::env::var("STRATA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[test]
fn crash_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut last_head = 0;
    for cycle in 0..cycles() {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains(READY));
        assert!(ready, "cycle {cycle}: the child ended before it was ready");
        std::thread::sleep(Duration::from_millis(rng.random_range(5..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // What survived: a checkpoint no further than the log, and every
        // position up to it applied exactly once.
        let store = open(dir.path());
        let model = ModelStore::open_sled(&store, NAME).unwrap();
        let head = futures::executor::block_on(store.head_position()).unwrap();
        let checkpoint = model.checkpoint();
        assert!(
            checkpoint <= head,
            "cycle {cycle}: checkpoint {checkpoint} beyond head {head}"
        );
        assert!(head > last_head, "cycle {cycle}: the child appended nothing");
        assert_exactly_once(&read_tally(&model), checkpoint);
        last_head = head;
    }

    // Resume in this process: the projection catches up from its
    // checkpoint and ends equal to a rebuild.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open(dir.path());
        let shared: Arc<dyn EventStore> = Arc::new(store.clone());
        let model = ModelStore::open_sled(&store, NAME).unwrap();
        let projection: Arc<dyn Projection> = Arc::new(Tally::new(NAME));
        let runner = ProjectionRunner::start(
            shared.clone(),
            model.clone(),
            projection.clone(),
            RunnerOptions::default(),
        )
        .await
        .unwrap();
        let head = store.head_position().await.unwrap();
        runner.wait_for(head, Duration::from_secs(60)).await.unwrap();
        runner.stop().await.unwrap();
        let resumed = read_tally(&model);
        assert_exactly_once(&resumed, head);
        // The event ids too: the tally holds, per position, the id of the event there.
        let log = store.read_all(1, head as usize).await.unwrap();
        let ids: Vec<[u8; 16]> = log.iter().map(|e| *e.id.as_bytes()).collect();
        assert_eq!(resumed.positions.iter().map(|p| p.2).collect::<Vec<_>>(), ids);

        let fresh = ModelStore::memory(NAME).unwrap();
        rebuild(&*shared, &fresh, &*projection, RebuildOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(
            model.entries().unwrap(),
            fresh.entries().unwrap(),
            "resumed model vs rebuild"
        );
    });
}
