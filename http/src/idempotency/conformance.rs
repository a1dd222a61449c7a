//! The idempotency-record conformance suite: written once, run on every
//! backend (sled here; PostgreSQL too, ignored without a server:
//! `scripts/test-postgres.sh cargo test -p strata-http --features postgres`).
//!
//! A backend is a [`Place`] where runs of a process open the records one
//! after another (a restart), each with its own boot id; all share one
//! hand-set clock, so retention is tested without waiting.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_testkit::until_async;

use super::backend::Records;
use super::rules::{Begin, Clock, Fingerprint, Key, Rules, StoredResponse};

/// How long records are kept in the suite.
const RETENTION: Duration = Duration::from_secs(3600);

/// Where a backend keeps its records across runs of a process.
#[async_trait]
pub(super) trait Place: Send + Sync {
    /// Opens the records as a new run of a process with `rules`. A run ends
    /// when its [`Records`] (and every clone) are dropped.
    async fn open(&self, rules: Rules) -> Records;
}

/// The runs of one test: a shared clock, a new boot per run.
struct Runs<'a> {
    place: &'a dyn Place,
    clock: Clock,
}

impl Runs<'_> {
    fn new(place: &dyn Place) -> Runs<'_> {
        Runs {
            place,
            clock: Clock::manual(1_700_000_000_000),
        }
    }

    /// A new run of the process.
    async fn start(&self) -> Records {
        self.place.open(Rules::with_clock(RETENTION, self.clock.clone())).await
    }
}

/// A key of the suite.
pub(super) fn key(k: &str) -> Key {
    Key::parse(k.as_bytes()).unwrap()
}

/// A response of `records`' run to a request with `fingerprint`.
pub(super) fn response(records: &Records, fingerprint: Fingerprint, body: &str) -> StoredResponse {
    records.rules().response(
        fingerprint,
        axum::http::StatusCode::CREATED,
        vec![("etag".into(), b"\"1\"".to_vec())],
        body.as_bytes().to_vec(),
    )
}

/// A claim of a free key.
pub(super) const PROCEED: Begin = Begin::Proceed { after_crash: false };

/// `rounds` times, 8 claims of a new key at once, spread over `processes`:
/// exactly one runs, the others find it in flight.
pub(super) async fn race(processes: &[Records], rounds: usize) {
    for round in 0..rounds {
        let k = key(&format!("race-{round}"));
        let claims: Vec<_> = (0..8)
            .map(|i| {
                let (records, k) = (processes[i % processes.len()].clone(), k.clone());
                tokio::spawn(async move { records.begin(&k, Fingerprint::test(9)).await.unwrap() })
            })
            .collect();
        let mut proceeded = 0;
        for claim in claims {
            match claim.await.unwrap() {
                Begin::Proceed { after_crash: false } => proceeded += 1,
                Begin::InFlight => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(proceeded, 1, "round {round}: exactly one claim runs");
    }
}

/// The first answer to claims of `k` that is not "in flight": a dead
/// run's marker stops blocking its key once the backend learns the run is
/// gone (at once in sled; when its connection closes on PostgreSQL).
pub(super) async fn once_not_in_flight(records: &Records, k: &Key, fingerprint: Fingerprint) -> Begin {
    let answer = std::sync::Mutex::new(None);
    until_async("the dead run's marker to stop blocking its key", || async {
        match records.begin(k, fingerprint).await.unwrap() {
            Begin::InFlight => false,
            other => {
                *answer.lock().unwrap() = Some(other);
                true
            }
        }
    })
    .await;
    answer.into_inner().unwrap().expect("an answer")
}

/// Claim, complete, replay: one run, then the stored answer, to the same
/// request only.
pub(super) async fn claim_complete_replay(place: &dyn Place) {
    let runs = Runs::new(place);
    let ids = runs.start().await;
    let (k, f, g) = (key("k"), Fingerprint::test(1), Fingerprint::test(2));
    assert_eq!(ids.begin(&k, f).await.unwrap(), PROCEED);
    let stored = response(&ids, f, "first");
    ids.complete(&k, &stored).await.unwrap();
    assert_eq!(ids.begin(&k, f).await.unwrap(), Begin::Replay(stored.clone()));
    assert_eq!(
        ids.begin(&k, f).await.unwrap(),
        Begin::Replay(stored),
        "replayed as often as asked"
    );
    assert_eq!(ids.begin(&k, g).await.unwrap(), Begin::Mismatch);
}

/// A second claim while the first runs is in flight; many at once: exactly
/// one runs.
pub(super) async fn concurrent_claims_are_in_flight(place: &dyn Place) {
    let runs = Runs::new(place);
    let ids = runs.start().await;
    let f = Fingerprint::test(1);
    assert_eq!(ids.begin(&key("k"), f).await.unwrap(), PROCEED);
    assert_eq!(ids.begin(&key("k"), f).await.unwrap(), Begin::InFlight);
    race(&[ids], 10).await;
}

/// The same key with another payload is a mismatch, in flight and done;
/// it takes nothing from the first request.
pub(super) async fn another_payload_is_a_mismatch(place: &dyn Place) {
    let runs = Runs::new(place);
    let ids = runs.start().await;
    let (k, f, g) = (key("k"), Fingerprint::test(1), Fingerprint::test(2));
    assert_eq!(ids.begin(&k, f).await.unwrap(), PROCEED);
    assert_eq!(ids.begin(&k, g).await.unwrap(), Begin::Mismatch);
    assert_eq!(
        ids.begin(&k, f).await.unwrap(),
        Begin::InFlight,
        "still the first one's"
    );
    let stored = response(&ids, f, "first");
    ids.complete(&k, &stored).await.unwrap();
    assert_eq!(ids.begin(&k, g).await.unwrap(), Begin::Mismatch);
    assert_eq!(ids.begin(&k, f).await.unwrap(), Begin::Replay(stored));
}

/// An abandoned key is free for any request.
pub(super) async fn released_keys_are_free(place: &dyn Place) {
    let runs = Runs::new(place);
    let ids = runs.start().await;
    let (k, f, g) = (key("released"), Fingerprint::test(1), Fingerprint::test(2));
    assert_eq!(ids.begin(&k, f).await.unwrap(), PROCEED);
    ids.abandon(&k).await;
    assert_eq!(ids.begin(&k, g).await.unwrap(), PROCEED, "an abandoned key is free");
    ids.abandon(&k).await;
    ids.abandon(&k).await; // nothing to release: no error
    assert_eq!(ids.begin(&k, f).await.unwrap(), PROCEED);
}

/// A completion retried (its first attempt failed, maybe after writing)
/// records the same response again; another answer, or one for a key this
/// run does not hold, records nothing.
pub(super) async fn completions_are_idempotent(place: &dyn Place) {
    let runs = Runs::new(place);
    let ids = runs.start().await;
    let (k, f) = (key("k"), Fingerprint::test(1));
    assert_eq!(ids.begin(&k, f).await.unwrap(), PROCEED);
    let stored = response(&ids, f, "first");
    assert!(ids.complete(&k, &stored).await.unwrap());
    assert!(ids.complete(&k, &stored).await.unwrap(), "the same response again");
    assert!(
        !ids.complete(&k, &response(&ids, f, "second")).await.unwrap(),
        "another answer does not overwrite the first"
    );
    assert_eq!(ids.begin(&k, f).await.unwrap(), Begin::Replay(stored));
    let never = key("never-claimed");
    assert!(!ids.complete(&never, &response(&ids, f, "late")).await.unwrap());
    assert_eq!(
        ids.begin(&never, f).await.unwrap(),
        PROCEED,
        "a completion of a key this run does not hold records nothing"
    );
}

/// Records expire after the retention: the key is free again and the purge
/// removes them; this run's markers stay whatever their age.
pub(super) async fn retention_expires_records(place: &dyn Place) {
    let runs = Runs::new(place);
    let ids = runs.start().await;
    let (f, g) = (Fingerprint::test(1), Fingerprint::test(2));
    for k in ["done-1", "done-2", "mine"] {
        assert_eq!(ids.begin(&key(k), f).await.unwrap(), PROCEED);
    }
    for k in ["done-1", "done-2"] {
        ids.complete(&key(k), &response(&ids, f, k)).await.unwrap();
    }
    runs.clock.advance(RETENTION);
    assert_eq!(ids.purge().await.unwrap(), 0, "exactly the retention: kept");
    assert!(matches!(ids.begin(&key("done-1"), f).await.unwrap(), Begin::Replay(_)));
    runs.clock.advance(Duration::from_millis(1));
    assert_eq!(
        ids.begin(&key("done-1"), g).await.unwrap(),
        PROCEED,
        "an expired answer frees its key, even for another payload"
    );
    assert_eq!(
        ids.purge().await.unwrap(),
        1,
        "the other expired answer; this run's markers stay"
    );
    assert_eq!(ids.begin(&key("done-2"), f).await.unwrap(), PROCEED, "purged");
    assert_eq!(
        ids.begin(&key("mine"), f).await.unwrap(),
        Begin::InFlight,
        "this run's marker"
    );
    assert_eq!(ids.begin(&key("done-1"), f).await.unwrap(), Begin::Mismatch);
}

/// The crash window: a run died holding a key (its write may have landed,
/// its answer was not recorded). The next run lets the same request run
/// again, told to look for its write, and refuses another; the dead run's
/// marker is kept by the purge within the retention and removed after.
pub(super) async fn a_dead_runs_marker_is_recovered(place: &dyn Place) {
    let runs = Runs::new(place);
    let (f, g) = (Fingerprint::test(1), Fingerprint::test(2));
    {
        let dead = runs.start().await;
        for k in ["crashed", "other", "old"] {
            assert_eq!(dead.begin(&key(k), f).await.unwrap(), PROCEED);
        }
    } // the process ends: dropped, never completed or released
    let ids = runs.start().await;
    assert_eq!(
        once_not_in_flight(&ids, &key("crashed"), f).await,
        Begin::Proceed { after_crash: true }
    );
    assert_eq!(
        ids.begin(&key("crashed"), f).await.unwrap(),
        Begin::InFlight,
        "now this run's"
    );
    assert_eq!(
        ids.begin(&key("other"), g).await.unwrap(),
        Begin::Mismatch,
        "another request under a dead run's key"
    );
    assert_eq!(
        ids.purge().await.unwrap(),
        0,
        "a dead run's marker is kept within the retention"
    );
    let stored = response(&ids, f, "recovered");
    ids.complete(&key("crashed"), &stored).await.unwrap();
    assert_eq!(ids.begin(&key("crashed"), f).await.unwrap(), Begin::Replay(stored));
    runs.clock.advance(RETENTION + Duration::from_millis(1));
    assert_eq!(
        ids.purge().await.unwrap(),
        3,
        "the dead run's two expired markers and the expired answer"
    );
    assert_eq!(ids.begin(&key("old"), g).await.unwrap(), PROCEED);
}

/// What a run recorded survives its end: the next run replays it and
/// refuses other payloads.
pub(super) async fn records_survive_a_restart(place: &dyn Place) {
    let runs = Runs::new(place);
    let (k, f, g) = (key("survives"), Fingerprint::test(1), Fingerprint::test(2));
    let stored = {
        let first = runs.start().await;
        assert_eq!(first.begin(&k, f).await.unwrap(), PROCEED);
        let stored = response(&first, f, "before the restart");
        first.complete(&k, &stored).await.unwrap();
        stored
    };
    let second = runs.start().await;
    assert_eq!(second.begin(&k, f).await.unwrap(), Begin::Replay(stored.clone()));
    assert_eq!(second.begin(&k, g).await.unwrap(), Begin::Mismatch);
    drop(second);
    let third = runs.start().await;
    assert_eq!(third.begin(&k, f).await.unwrap(), Begin::Replay(stored));
}

/// Instantiates the suite: one test per scenario on the place `$place`
/// (an expression, evaluated in each test), with `$attr`s on each test.
macro_rules! conformance_suite {
    ($place:expr $(, #[$attr:meta])*) => {
        conformance_suite!(@each ($place) [$(#[$attr])*]
            claim_complete_replay,
            concurrent_claims_are_in_flight,
            another_payload_is_a_mismatch,
            released_keys_are_free,
            completions_are_idempotent,
            retention_expires_records,
            a_dead_runs_marker_is_recovered,
            records_survive_a_restart,
        );
    };
    (@each ($place:expr) $attrs:tt $($name:ident,)*) => {
        $(conformance_suite!(@one ($place) $attrs $name);)*
    };
    (@one ($place:expr) [$($attr:tt)*] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let place = $place;
            crate::idempotency::conformance::$name(&place).await;
        }
    };
}

/// The records in sled tables of their own in a temporary directory (the
/// tables beside a log are the same [`LocalTables`](strata_store::LocalTables)).
mod sled {
    use strata_store::{Durability, LocalTables};

    use super::*;
    use crate::idempotency::local::SledRecords;

    pub(super) struct SledPlace(tempfile::TempDir);

    #[async_trait]
    impl Place for SledPlace {
        async fn open(&self, rules: Rules) -> Records {
            // A run's end drops its tables; sled lets go of its lock a
            // moment later, and the open waits for it.
            let tables = LocalTables::open(self.0.path(), Durability::Fsync).unwrap();
            Records::new(rules, Arc::new(SledRecords::open(&tables).unwrap()))
        }
    }

    conformance_suite!(SledPlace(tempfile::tempdir().unwrap()));
}

/// The records in a PostgreSQL schema of their own; each run a process of
/// its own (its own pool, its own liveness lock).
#[cfg(feature = "postgres")]
mod postgres {
    use strata_testkit::TestDatabase;

    use super::*;
    use crate::idempotency::postgres::PgRecords;

    pub(super) struct PgPlace {
        db: TestDatabase,
        runs: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Place for PgPlace {
        async fn open(&self, rules: Rules) -> Records {
            let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let store = self.db.store(&format!("run-{n}")).await;
            let records = PgRecords::open(&store, rules.boot()).await.unwrap();
            Records::new(rules, Arc::new(records))
        }
    }

    fn place() -> PgPlace {
        PgPlace {
            db: TestDatabase::new(),
            runs: Default::default(),
        }
    }

    conformance_suite!(
        place(),
        #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    );
}
