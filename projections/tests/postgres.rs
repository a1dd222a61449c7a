//! Read models in PostgreSQL: exactly once across a killed writer process,
//! rebuild equals live, several processes on one database (one writes, all
//! read and wait, nothing applied twice), read-your-writes across
//! processes.
//!
//! A "process" here is a `PostgresStore` with its own pool, listeners and
//! application name, as another process would open it; the crash test runs
//! real child processes. Needs a server: without `STRATA_POSTGRES_URL` at
//! build time (or without the `postgres` feature) each test is reported as
//! ignored; `scripts/test-postgres.sh cargo test -p strata-projections
//! --features postgres --test postgres` runs them.

mod support;

/// Declares each test, ignored unless built for a server.
macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
            fn $name() {
                #[cfg(feature = "postgres")]
                imp::$name();
            }
        )*
    };
}

postgres_tests!(
    a_killed_writer_process_resumes_exactly_once,
    rebuild_equals_live_across_two_processes,
    two_runners_on_one_database_write_once_and_both_serve_reads,
    wait_for_reads_your_writes_in_a_process_that_does_not_write,
    a_model_without_the_status_index_is_rebuilt_on_start,
);

/// The child process of the crash test (ignored: the parent runs it).
#[cfg(feature = "postgres")]
#[test]
#[ignore = "child process of a_killed_writer_process_resumes_exactly_once"]
fn pg_crash_child() {
    imp::crash_child();
}

#[cfg(feature = "postgres")]
mod imp {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use rand::Rng;
    use strata_aggregates::domain::order::{OrderEvent, OrderLine, OrderStatus};
    use strata_aggregates::{Format, encode};
    use strata_projections::{
        ModelStore, ORDER_SUMMARY, OrderFilter, OrderSummaryProjection, ProjectionError, ProjectionRunner, Projections,
        RebuildOptions, RunState, RunnerOptions, STOCK_LEVELS, StockLevelsProjection, rebuild,
    };
    use strata_store::{EventStore, ExpectedVersion, NewEvent, PostgresStore, StoreError, StreamId};
    use tokio::task::JoinHandle;

    use strata_testkit::{STALL, TestDatabase, until, until_async};

    use crate::support::pg::store;
    use crate::support::world::{World, assert_models_match, walk_orders};
    use crate::support::{Tally, assert_exactly_once, read_tally, runtime};

    const TALLY: &str = "tally";
    const CHILD_URL: &str = "STRATA_PG_CRASH_URL";
    const CHILD_SCHEMA: &str = "STRATA_PG_CRASH_SCHEMA";
    const READY: &str = "pg-crash-child-ready";

    /// A tally runner on `store`.
    async fn tally_runner(store: &PostgresStore, batch_size: usize) -> (ModelStore, ProjectionRunner) {
        let model = ModelStore::open_postgres(store, TALLY).await.unwrap();
        let runner = ProjectionRunner::start(
            Arc::new(store.clone()),
            model.clone(),
            Arc::new(Tally::new(TALLY)),
            RunnerOptions {
                batch_size,
                ..RunnerOptions::default()
            },
        )
        .await
        .unwrap();
        (model, runner)
    }

    /// Writers appending single events to streams of their own on `store`
    /// until `stop` is set.
    fn writers(store: &PostgresStore, tag: &str, n: usize, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<u64>> {
        (0..n)
            .map(|w| {
                let (store, stop) = (store.clone(), stop.clone());
                let stream = StreamId::new(format!("{tag}-{w}")).unwrap();
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let e = NewEvent::new("Tick", vec![w as u8]);
                        // A lost connection (the tests kill some): retry
                        // with the same event id, answered idempotently.
                        loop {
                            match store.append(&stream, ExpectedVersion::Any, vec![e.clone()]).await {
                                Ok(_) => break,
                                Err(StoreError::Unavailable { .. }) => {
                                    tokio::time::sleep(Duration::from_millis(10)).await
                                }
                                Err(other) => panic!("append: {other}"),
                            }
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect()
    }

    async fn join_all(tasks: Vec<JoinHandle<u64>>) -> u64 {
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    }

    /// The child: opens the tally on the parent's schema, runs its writer
    /// while four writers append, until it is killed.
    pub fn crash_child() {
        let (Ok(url), Ok(schema)) = (std::env::var(CHILD_URL), std::env::var(CHILD_SCHEMA)) else {
            return;
        };
        runtime().block_on(async move {
            let db = TestDatabase::existing(url, schema);
            let store = store(&db, "child").await;
            let (model, runner) = tally_runner(&store, 8).await;
            let start = model.checkpoint();
            let stop = Arc::new(AtomicBool::new(false));
            let _writers = writers(&store, "crash", 4, &stop);
            // Ready once this process writes the model and has applied
            // events its writers appended.
            let head = store.head_position().await.unwrap();
            runner.wait_for(head.max(start) + 1, STALL).await.unwrap();
            assert_eq!(model.run_state(), RunState::Running);
            println!("{READY}");
            runner.join().await.unwrap();
            unreachable!("the runner never stops by itself here");
        });
    }

    fn cycles() -> usize {
        std::env::var("STRATA_CRASH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
    }

    /// A child process writes the model while it appends; it is killed
    /// (SIGKILL) at a random moment, several times. After each kill, the
    /// committed model has every position up to its checkpoint applied
    /// exactly once, and the next child (which must wait for the dead one's
    /// writer lock to go with its connection) resumes from there.
    pub fn a_killed_writer_process_resumes_exactly_once() {
        let db = TestDatabase::new();
        let exe = std::env::current_exe().unwrap();
        let rt = runtime();
        let mut rng = rand::rng();
        let mut last_head = 0;
        for cycle in 0..cycles() {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "pg_crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_URL, db.url())
                .env(CHILD_SCHEMA, db.schema())
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
            child.kill().unwrap();
            child.wait().unwrap();

            rt.block_on(async {
                let store = store(&db, "check").await;
                let model = ModelStore::open_postgres(&store, TALLY).await.unwrap();
                let head = store.head_position().await.unwrap();
                let checkpoint = model.checkpoint();
                assert!(
                    checkpoint <= head,
                    "cycle {cycle}: checkpoint {checkpoint} beyond head {head}"
                );
                assert!(head > last_head, "cycle {cycle}: the child appended nothing");
                assert_exactly_once(&read_tally(&model), checkpoint);
                last_head = head;
            });
        }
        // Resume here: catch up from the checkpoint, and equal a rebuild.
        rt.block_on(async {
            let store = store(&db, "resume").await;
            let (model, runner) = tally_runner(&store, 512).await;
            let head = store.head_position().await.unwrap();
            runner.wait_for(head, STALL).await.unwrap();
            runner.stop().await.unwrap();
            let resumed = read_tally(&model);
            assert_exactly_once(&resumed, head);
            let log = store.read_all(1, head as usize).await.unwrap();
            let ids: Vec<[u8; 16]> = log.iter().map(|e| *e.id.as_bytes()).collect();
            assert_eq!(resumed.positions.iter().map(|p| p.2).collect::<Vec<_>>(), ids);
            let fresh = ModelStore::memory(TALLY).unwrap();
            rebuild(&store, &fresh, &Tally::new(TALLY), RebuildOptions::default(), |_| {})
                .await
                .unwrap();
            assert_eq!(model.entries().unwrap(), fresh.entries().unwrap(), "resumed vs rebuilt");
        });
    }

    /// Both read models, followed live by two processes on one database
    /// from a random order and stock history appended through both: each
    /// process's models show what the history says, equal a rebuild into
    /// memory byte for byte; a rebuild in place started by the process that
    /// does not write, while the history goes on, is swapped in for both
    /// and still equals a rebuild from scratch.
    pub fn rebuild_equals_live_across_two_processes() {
        let db = TestDatabase::new();
        runtime().block_on(async {
            let a = store(&db, "a").await;
            let b = store(&db, "b").await;
            let pa = Projections::open_postgres(&a).await.unwrap();
            pa.start().await.unwrap();
            let pb = Projections::open_postgres(&b)
                .await
                .unwrap()
                .with_options(RunnerOptions {
                    batch_size: 7,
                    ..RunnerOptions::default()
                });
            pb.start().await.unwrap();

            let mut world = World::default();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut step = |world: &mut World| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                world.step(seed as u8, (seed >> 8) as u32, (seed >> 40) as u32)
            };
            for i in 0..600 {
                if let Some(parts) = step(&mut world) {
                    let store = if i % 2 == 0 { &a } else { &b };
                    store.append_multi(parts).await.unwrap();
                }
            }
            let head = a.head_position().await.unwrap();
            for p in [&pa, &pb] {
                p.wait_for(head, STALL).await.unwrap();
                assert_models_match(&world, p.orders(), p.stock());
            }
            let expected = rebuilt_in_memory(&a).await;
            assert_eq!(entries(&pa), expected, "process a: live vs rebuilt");
            assert_eq!(entries(&pb), expected, "process b: live vs rebuilt");

            // Rebuild in place from process b while the history goes on.
            let generation = pa.orders().model().generation();
            let (ops_done, ops) = (Arc::new(AtomicBool::new(false)), 300);
            let appender = {
                let (a, done) = (a.clone(), ops_done.clone());
                let parts: Vec<_> = (0..ops).filter_map(|_| step(&mut world)).collect();
                tokio::spawn(async move {
                    for p in parts {
                        a.append_multi(p).await.unwrap();
                    }
                    done.store(true, Ordering::SeqCst);
                })
            };
            pb.rebuild(|_| {}).await.unwrap();
            appender.await.unwrap();
            assert!(ops_done.load(Ordering::SeqCst));
            let head = a.head_position().await.unwrap();
            for p in [&pa, &pb] {
                p.wait_for(head, STALL).await.unwrap();
                until("the swap to reach both processes", || {
                    p.orders().model().generation() != generation && p.stock().model().generation() != generation
                })
                .await;
                assert_models_match(&world, p.orders(), p.stock());
            }
            let expected = rebuilt_in_memory(&a).await;
            assert_eq!(entries(&pa), expected, "process a after the rebuild");
            assert_eq!(entries(&pb), expected, "process b after the rebuild");
            pa.stop().await.unwrap();
            pb.stop().await.unwrap();
        });
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn entries(p: &Projections) -> (Entries, Entries) {
        (
            p.orders().model().entries().unwrap(),
            p.stock().model().entries().unwrap(),
        )
    }

    async fn rebuilt_in_memory(store: &PostgresStore) -> (Entries, Entries) {
        let orders = ModelStore::memory(ORDER_SUMMARY).unwrap();
        let stock = ModelStore::memory(STOCK_LEVELS).unwrap();
        let options = RebuildOptions {
            batch_size: 50,
            flush_keys: 20,
            ..RebuildOptions::default()
        };
        rebuild(store, &orders, &OrderSummaryProjection, options, |_| {})
            .await
            .unwrap();
        rebuild(store, &stock, &StockLevelsProjection, options, |_| {})
            .await
            .unwrap();
        (orders.entries().unwrap(), stock.entries().unwrap())
    }

    /// Two processes run a runner on one model: one writes, the other
    /// stands by and follows; both serve the same model. When the writer's
    /// connections are all killed (as if its network went), one of them
    /// (whichever takes the lock first) writes on; when the writing runner
    /// stops, the other takes over. Writers append through both processes
    /// all along. At each settled point exactly one runner writes, and both
    /// models hold every position exactly once (a position applied by both
    /// writers would count 2).
    pub fn two_runners_on_one_database_write_once_and_both_serve_reads() {
        let db = TestDatabase::new();
        runtime().block_on(async {
            let a = store(&db, "a").await;
            let b = store(&db, "b").await;
            let (ma, ra) = tally_runner(&a, 16).await;
            until("process a to write", || ma.run_state() == RunState::Running).await;
            let (mb, rb) = tally_runner(&b, 16).await;
            // b tries the writer lock (every poll interval), finds it held
            // by a and must stay in standby: wait until one of its tries
            // is seen (the last statement of one of b's connections).
            let admin = db.admin().await;
            let b_name = db.application_name("b");
            until_async("process b to try the writer lock", || async {
                let tries: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE application_name = $1 AND query LIKE '%pg_try_advisory_lock%'",
                        &[&b_name],
                    )
                    .await
                    .unwrap()
                    .get(0);
                tries > 0
            })
            .await;
            assert_eq!((ma.run_state(), mb.run_state()), (RunState::Running, RunState::Standby));
            let one_writes = || {
                matches!(
                    (ma.run_state(), mb.run_state()),
                    (RunState::Running, RunState::Standby) | (RunState::Standby, RunState::Running)
                )
            };

            // Phase 1: a writes, b follows.
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = writers(&a, "a", 2, &stop);
            tasks.extend(writers(&b, "b", 2, &stop));
            until("some appends", || ma.checkpoint() > 200).await;
            stop.store(true, Ordering::SeqCst);
            assert!(join_all(tasks).await > 0);
            let head = a.head_position().await.unwrap();
            ra.wait_for(head, STALL).await.unwrap();
            rb.wait_for(head, STALL).await.unwrap();
            assert_eq!((ma.run_state(), mb.run_state()), (RunState::Running, RunState::Standby));
            assert_exactly_once(&read_tally(&ma), head);
            assert_exactly_once(&read_tally(&mb), head);

            // Phase 2: every connection of a dies while both append.
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = writers(&b, "b2", 2, &stop);
            tasks.extend(writers(&a, "a2", 2, &stop));
            until("b to apply appends", || mb.checkpoint() > head + 50).await;
            assert!(db.kill_connections("a").await > 0);
            let killed_at = b.head_position().await.unwrap();
            until("writes to go on after the kill", || {
                ma.checkpoint().max(mb.checkpoint()) > killed_at + 100
            })
            .await;
            stop.store(true, Ordering::SeqCst);
            join_all(tasks).await;
            let head = b.head_position().await.unwrap();
            ra.wait_for(head, STALL).await.unwrap();
            rb.wait_for(head, STALL).await.unwrap();
            until("one runner to write, the other to stand by", one_writes).await;
            assert_exactly_once(&read_tally(&ma), head);
            assert_exactly_once(&read_tally(&mb), head);

            // Phase 3: the writing runner stops; the other takes over. The
            // stopped one's model, with no runner of its own, is not waited for.
            let (writing, standing, other_store) = if ma.run_state() == RunState::Running {
                ((ma, ra), (mb, rb), b.clone())
            } else {
                ((mb, rb), (ma, ra), a.clone())
            };
            writing.1.stop().await.unwrap();
            until("the other runner to take over", || {
                standing.0.run_state() == RunState::Running
            })
            .await;
            let stop = Arc::new(AtomicBool::new(false));
            let tasks = writers(&other_store, "c", 2, &stop);
            until("appends after the handover", || standing.0.checkpoint() > head + 50).await;
            stop.store(true, Ordering::SeqCst);
            join_all(tasks).await;
            let head = other_store.head_position().await.unwrap();
            standing.1.wait_for(head, STALL).await.unwrap();
            assert_exactly_once(&read_tally(&standing.0), head);
            assert!(matches!(
                writing.0.wait_for(head + 1, STALL).await,
                Err(ProjectionError::NotRunning { .. })
            ));
            standing.1.stop().await.unwrap();
        });
    }

    /// Read your writes across processes: an append through the process
    /// that does not write the model is visible there once `wait_for` its
    /// position returns; a position nobody appends times out.
    pub fn wait_for_reads_your_writes_in_a_process_that_does_not_write() {
        let db = TestDatabase::new();
        runtime().block_on(async {
            let a = store(&db, "a").await;
            let b = store(&db, "b").await;
            let (ma, ra) = tally_runner(&a, 512).await;
            until("process a to write", || ma.run_state() == RunState::Running).await;
            let (mb, rb) = tally_runner(&b, 512).await;
            assert_eq!(mb.run_state(), RunState::Standby);
            let stream = StreamId::new("ryw").unwrap();
            for i in 0..20u8 {
                let r = b
                    .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Tick", vec![i])])
                    .await
                    .unwrap();
                rb.wait_for(r.last_position, STALL).await.unwrap();
                let state = read_tally(&mb);
                assert_eq!(state.last, r.last_position, "b reads its own write");
                assert_eq!(state.positions.last().map(|p| p.1), Some(1));
            }
            let head = b.head_position().await.unwrap();
            assert!(matches!(
                rb.wait_for(head + 1, Duration::from_millis(300)).await,
                Err(ProjectionError::Timeout { applied, .. }) if applied == head
            ));
            assert_eq!(mb.run_state(), RunState::Standby, "b never wrote");
            rb.stop().await.unwrap();
            ra.stop().await.unwrap();
        });
    }

    /// The model version lives with the checkpoint row: an order summary
    /// as it stood before the status index (version 0, which migration 2
    /// gives every existing model, and no `t` keys) is refused by a page by
    /// status and rebuilt by `start`; every process then reads version 1
    /// and the index.
    pub fn a_model_without_the_status_index_is_rebuilt_on_start() {
        let db = TestDatabase::new();
        runtime().block_on(async {
            let a = store(&db, "a").await;
            let paid = OrderFilter {
                status: Some(OrderStatus::Paid),
                customer: None,
            };
            let mut head = 0;
            for id in ["o1", "o2", "o3"] {
                let placed = OrderEvent::OrderPlaced {
                    order_id: id.into(),
                    customer: "ada".into(),
                    lines: vec![OrderLine {
                        sku: "tea".into(),
                        quantity: 1,
                        unit_price_cents: 5,
                    }],
                    total_cents: 5,
                };
                let mut events = vec![encode(&placed, Format::Bincode).unwrap()];
                if id == "o2" {
                    events.push(encode(&OrderEvent::OrderPaid { amount_cents: 5 }, Format::Bincode).unwrap());
                }
                let stream = StreamId::new(format!("order-{id}")).unwrap();
                head = a
                    .append(&stream, ExpectedVersion::NoStream, events)
                    .await
                    .unwrap()
                    .last_position;
            }
            let pa = Projections::open_postgres(&a).await.unwrap();
            pa.start().await.unwrap();
            pa.wait_for(head, STALL).await.unwrap();
            assert_eq!(pa.orders().model().model_version().unwrap(), 1);
            assert_eq!(walk_orders(pa.orders(), &paid, 10), ["o2"]);
            pa.stop().await.unwrap();
            drop(pa);

            let admin = db.admin().await;
            let schema = format!("\"{}\"", db.schema());
            admin
                .batch_execute(&format!(
                    "UPDATE {schema}.projection_checkpoints SET model_version = 0 WHERE model = 'order_summary'; \
                     DELETE FROM {schema}.projection_entries WHERE model = 'order_summary' \
                         AND key >= '\\x74'::bytea AND key < '\\x75'::bytea;"
                ))
                .await
                .unwrap();

            let b = store(&db, "b").await;
            let pb = Projections::open_postgres(&b).await.unwrap();
            let generation = pb.orders().model().generation();
            assert_eq!(pb.orders().model().model_version().unwrap(), 0);
            assert!(matches!(
                pb.orders().page(&paid, None, 10),
                Err(ProjectionError::ModelVersionMismatch {
                    stored: 0,
                    expected: 1,
                    ..
                })
            ));
            pb.start().await.unwrap();
            assert_ne!(pb.orders().model().generation(), generation, "rebuilt");
            assert_eq!(pb.orders().model().model_version().unwrap(), 1);
            assert_eq!(walk_orders(pb.orders(), &paid, 10), ["o2"]);

            // Another process loads what b committed: version and index.
            let c = store(&db, "c").await;
            let pc = Projections::open_postgres(&c).await.unwrap();
            assert_eq!(pc.orders().model().model_version().unwrap(), 1);
            assert_eq!(walk_orders(pc.orders(), &paid, 1), ["o2"]);
            assert_eq!(
                pc.orders().model().entries().unwrap(),
                rebuilt_in_memory(&a).await.0,
                "the rebuilt model, index included"
            );
            pb.stop().await.unwrap();
        });
    }
}
