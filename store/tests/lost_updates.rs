//! Lost updates cannot happen: 16 tasks do read-modify-write on one stream
//! with `Exact` and retry on conflict; every successful command is in the
//! stream exactly once, decided on the state just before it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use strata_store::{Direction, EventStore, ExpectedVersion, NewEvent, StoreError};

use common::{Fixture, sid};

const TASKS: usize = 16;
const COMMANDS_PER_TASK: usize = 15;

async fn read_modify_write(store: Arc<dyn EventStore>) {
    let s = sid("counter");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for cmd in 0..COMMANDS_PER_TASK {
                loop {
                    // Read the state: the counter is the number of events.
                    let version = store.stream_version(&s).await.unwrap();
                    // Let other writers run between the read and the write,
                    // as a real service's decision step would.
                    tokio::task::yield_now().await;
                    // Decide: the event records the value it was decided on.
                    let payload = format!("{task}:{cmd}:{version}");
                    let event = NewEvent::new("Incremented", payload);
                    match store.append(&s, ExpectedVersion::Exact(version), vec![event]).await {
                        Ok(r) => {
                            assert_eq!(r.stream_version, version + 1);
                            break;
                        }
                        Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                            assert!(actual > version, "a conflict means the stream moved on");
                            conflicts += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let n = (TASKS * COMMANDS_PER_TASK) as u64;
    let events = store.read_stream(&s, 1, Direction::Forward, usize::MAX).await.unwrap();
    assert_eq!(events.len() as u64, n, "one event per successful command");
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let mut commands = HashSet::new();
    let mut ids = HashSet::new();
    for e in &events {
        let text = std::str::from_utf8(&e.payload).unwrap();
        let mut parts = text.split(':');
        let (task, cmd, decided_on) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        assert!(
            commands.insert((task.to_string(), cmd.to_string())),
            "command {task}:{cmd} applied twice"
        );
        assert_eq!(
            decided_on.parse::<u64>().unwrap(),
            e.version - 1,
            "each event was decided on the state before it"
        );
        assert!(ids.insert(e.id), "duplicate event id");
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), n);
    // With 16 writers on one stream some must have lost a race and retried.
    assert!(conflicts > 0, "the test did not exercise conflicts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_updates_on_memory() {
    read_modify_write(Fixture::memory().store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_updates_on_sled() {
    let fx = Fixture::sled();
    read_modify_write(fx.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_updates_on_segment() {
    let fx = Fixture::segment();
    read_modify_write(fx.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
async fn no_lost_updates_on_postgres() {
    let fx = Fixture::postgres().await;
    read_modify_write(fx.store.clone()).await;
}
