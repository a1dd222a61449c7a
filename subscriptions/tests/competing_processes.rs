//! Competing consumers as processes on PostgreSQL: three child processes
//! (this test binary again, running `consumer_process`) serve one group
//! from one database while the parent appends jobs and kills a child with
//! SIGKILL at random moments, starting another in its place. The children
//! print every handling as it starts and as it ends; a handling that never
//! ended belongs to a killed child. When the group has drained, the same
//! checks as the task version (`competing.rs`): nothing lost, parked only
//! after its retries, and with the pinned strategy no two current leases of
//! one stream handled at once and each stream acknowledged in order,
//! across processes.
//!
//! `STRATA_COMPETING_SEED` replays a run; `STRATA_COMPETING_JOBS` makes it longer.

mod common;

/// Declares each test, ignored unless built for a server.
macro_rules! postgres_tests {
    ($($name:ident => $strategy:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
            async fn $name() {
                #[cfg(feature = "postgres")]
                imp::run(strata_subscriptions::Strategy::$strategy).await;
            }
        )*
    };
}

postgres_tests!(
    round_robin_consumer_processes_killed_at_random_lose_nothing => RoundRobin,
    pinned_consumer_processes_killed_at_random_keep_each_stream_in_order => PinnedPerStream,
);

/// A child process (ignored: the parent runs it).
#[cfg(feature = "postgres")]
#[test]
#[ignore = "a child process of the competing_processes tests"]
fn consumer_process() {
    imp::consumer_process();
}

#[cfg(feature = "postgres")]
mod imp {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use strata_subscriptions::{Strategy, Subscriptions};

    use crate::common::ledger::{End, Handling, check};
    use crate::common::work::{MAX_RETRIES, consume, jobs, parked, seed, settings, write_jobs};
    use crate::common::{consumer, group};

    /// Set in a child: `url \t schema \t name \t seed`.
    const CHILD: &str = "STRATA_SUBS_CHILD";
    const PROCESSES: usize = 3;
    const KILLS: usize = 4;

    /// Handlings by (child, position, start): the last line about each wins.
    type Ledger = Arc<Mutex<HashMap<(usize, u64, u64), Handling>>>;

    struct Children {
        exe: std::path::PathBuf,
        url: String,
        schema: String,
        seed: u64,
        next: usize,
        running: Vec<Child>,
        readers: Vec<std::thread::JoinHandle<()>>,
        ledger: Ledger,
    }

    impl Children {
        fn spawn(&mut self) {
            let id = self.next;
            self.next += 1;
            let name = format!("proc-{id}");
            let spec = format!("{}\t{}\t{}\t{}", self.url, self.schema, name, self.seed ^ id as u64);
            let mut child = Command::new(&self.exe)
                .args([
                    "--exact",
                    "consumer_process",
                    "--include-ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, spec)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("starting a consumer process");
            let stdout = child.stdout.take().unwrap();
            let ledger = self.ledger.clone();
            self.readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(h) = Handling::parse(&line) {
                        ledger.lock().unwrap().insert((id, h.position, h.started), h);
                    }
                }
            }));
            self.running.push(child);
        }

        fn kill(&mut self, which: usize) {
            let mut child = self.running.remove(which);
            // A consumer ends only when it is killed: one that exited by
            // itself failed (its panic is on stderr).
            if let Some(status) = child.try_wait().expect("polling a child") {
                panic!("a consumer process exited by itself ({status}) before it was killed");
            }
            child.kill().expect("SIGKILL");
            child.wait().expect("reaping the child");
        }
    }

    pub async fn run(strategy: Strategy) {
        let seed = seed();
        println!("STRATA_COMPETING_SEED={seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let db = Arc::new(strata_testkit::TestDatabase::new());
        let store = db.store("parent").await;
        let subs = Subscriptions::postgres(store.clone()).await.unwrap();
        let g = group("work");
        subs.create_group(&g, settings(strategy)).await.unwrap();
        let mut children = Children {
            exe: std::env::current_exe().unwrap(),
            url: db.url().to_string(),
            schema: db.schema().to_string(),
            seed: rng.random(),
            next: 0,
            running: Vec::new(),
            readers: Vec::new(),
            ledger: Arc::new(Mutex::new(HashMap::new())),
        };
        for _ in 0..PROCESSES {
            children.spawn();
        }
        let writer = tokio::spawn(write_jobs(Arc::new(store.clone()), jobs(), rng.random()));
        // Kill a child at random moments while the jobs come in, and start
        // another in its place. (The pauses are the workload's randomness, not
        // a wait for anything.)
        for _ in 0..KILLS {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
            let which = rng.random_range(0..children.running.len());
            children.kill(which);
            children.spawn();
        }
        let (events, poison) = writer.await.unwrap();
        let head = strata_store::EventStore::head_position(&store).await.unwrap();
        strata_testkit::until_async("the group to drain", || async {
            let info = subs.group(&g).await.unwrap();
            info.examined == head && info.pending == 0 && info.in_flight == 0
        })
        .await;
        while !children.running.is_empty() {
            children.kill(0);
        }
        for reader in children.readers.drain(..) {
            reader.join().unwrap();
        }
        let parked = parked(&subs, &g).await;
        let handlings: Vec<Handling> = children.ledger.lock().unwrap().values().cloned().collect();
        let info = subs.group(&g).await.unwrap();
        check(
            &handlings,
            &events,
            &poison,
            &parked,
            MAX_RETRIES,
            strategy == Strategy::PinnedPerStream,
            info.counters.acked,
        );
        assert_eq!(info.checkpoint, head);
        println!(
            "{} jobs over {} processes ({} killed): {} handlings ({} in doubt: killed while answering), {} timed out, {} redelivered, {} parked",
            events.len(),
            children.next,
            KILLS,
            handlings.len(),
            handlings
                .iter()
                .filter(|h| matches!(h.end, End::Acking | End::Retrying | End::Parking))
                .count(),
            info.counters.timed_out,
            info.counters.redelivered,
            parked.len()
        );
    }

    /// A child process: one consumer of group `work` until it is killed.
    pub fn consumer_process() {
        let Ok(spec) = std::env::var(CHILD) else {
            return;
        };
        let parts: Vec<&str> = spec.split('\t').collect();
        let [url, schema, name, seed] = parts[..] else {
            panic!("bad {CHILD}: {spec:?}");
        };
        let seed: u64 = seed.parse().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let db = strata_testkit::TestDatabase::existing(url.to_string(), schema.to_string());
            let store = db.store(name).await;
            let subs = Subscriptions::postgres(store).await.expect("open the groups");
            consume(
                subs,
                group("work"),
                consumer(name),
                seed,
                Arc::new(AtomicU32::new(0)),
                Arc::new(AtomicBool::new(false)),
                |h, _| {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", h.line());
                    let _ = out.flush();
                },
            )
            .await;
        });
    }
}
