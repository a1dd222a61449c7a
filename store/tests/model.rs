//! Model-based test: random sequences of appends (every expected-version
//! mode, retries of earlier batches, multi-stream appends) and reads, run
//! against each backend and checked against a plain in-memory model of the
//! rules, written here independently of the store's code.
//!
//! `PROPTEST_CASES` raises the case count (default 48 per backend).

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use strata_store::{
    AppendResult, Direction, EventId, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend, StreamId,
};

use common::{Backend, Fixture, sid};

const STREAMS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The stream's current version plus this offset (may be stale or ahead).
    Exact(i64),
}

#[derive(Clone, Copy, Debug)]
enum RetryMode {
    Original,
    Any,
    /// `Exact` of the stream's current version: the ids sit elsewhere.
    ExactCurrent,
    NoStream,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        n: usize,
    },
    Multi {
        parts: Vec<(usize, Expect, usize)>,
    },
    /// Retry batch `which` (modulo the batches so far) with its original
    /// expectation or another one.
    Retry {
        which: usize,
        mode: RetryMode,
    },
    /// Append a batch that reuses one id of an earlier batch plus a new one.
    Partial {
        which: usize,
    },
    ReadStream {
        stream: usize,
        from: u64,
        backward: bool,
        limit: usize,
    },
    ReadAll {
        from: u64,
        limit: usize,
    },
    Reopen,
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        (-2i64..=1).prop_map(Expect::Exact),
        Just(Expect::Exact(0)),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..STREAMS.len(), expect_strategy(), 1..4usize).prop_map(|(stream, expect, n)| Op::Append { stream, expect, n }),
        1 => prop::collection::vec((0..STREAMS.len(), expect_strategy(), 1..3usize), 1..3).prop_map(|parts| Op::Multi { parts }),
        3 => (any::<usize>(), prop_oneof![
            3 => Just(RetryMode::Original),
            1 => Just(RetryMode::Any),
            1 => Just(RetryMode::ExactCurrent),
            1 => Just(RetryMode::NoStream),
        ]).prop_map(|(which, mode)| Op::Retry { which, mode }),
        1 => any::<usize>().prop_map(|which| Op::Partial { which }),
        2 => (0..STREAMS.len(), 0u64..8, any::<bool>(), 0..6usize).prop_map(|(stream, from, backward, limit)| Op::ReadStream { stream, from, backward, limit }),
        1 => (0u64..30, 0..10usize).prop_map(|(from, limit)| Op::ReadAll { from, limit }),
        1 => Just(Op::Reopen),
    ]
}

/// The rules, as plainly as they can be written.
#[derive(Default)]
struct Model {
    /// Per stream: (id, position) of each version.
    streams: HashMap<String, Vec<(EventId, u64)>>,
    /// (stream, id, payload) in position order.
    log: Vec<(String, EventId, Vec<u8>)>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Vec<AppendResult>),
    Conflict { stream: String, actual: u64 },
    Duplicate { stream: String },
    Other(String),
}

impl From<Result<Vec<AppendResult>, StoreError>> for Outcome {
    fn from(r: Result<Vec<AppendResult>, StoreError>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(StoreError::WrongExpectedVersion { stream, actual, .. }) => Outcome::Conflict {
                stream: stream.to_string(),
                actual,
            },
            Err(StoreError::DuplicateEventId { stream, .. }) => Outcome::Duplicate {
                stream: stream.to_string(),
            },
            Err(e) => Outcome::Other(e.to_string()),
        }
    }
}

enum Judged {
    Write,
    Done(AppendResult),
}

impl Model {
    fn version(&self, s: &str) -> u64 {
        self.streams.get(s).map_or(0, |v| v.len() as u64)
    }

    fn judge(&self, part: &StreamAppend) -> Result<Judged, Outcome> {
        let name = part.stream.as_str();
        let current = self.version(name);
        let stored = self.streams.get(name).cloned().unwrap_or_default();
        let exact = match part.expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(n) => Some(n),
            _ => None,
        };
        let accepts = match part.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::StreamExists => current > 0,
            _ => exact == Some(current),
        };
        let places: Vec<Option<usize>> = part
            .events
            .iter()
            .map(|e| stored.iter().position(|(id, _)| *id == e.id))
            .collect();
        let conflict = Outcome::Conflict {
            stream: name.to_string(),
            actual: current,
        };
        if places.iter().all(Option::is_none) {
            return if accepts { Ok(Judged::Write) } else { Err(conflict) };
        }
        if let Some(Some(start)) = places.first().copied() {
            let run = places.iter().enumerate().all(|(i, p)| *p == Some(start + i));
            let placed = exact.is_none_or(|n| start as u64 == n);
            if run && placed {
                let end = start + places.len() - 1;
                return Ok(Judged::Done(AppendResult {
                    stream_version: end as u64 + 1,
                    first_position: stored[start].1,
                    last_position: stored[end].1,
                }));
            }
        }
        if exact.is_some() && accepts {
            Err(Outcome::Duplicate {
                stream: name.to_string(),
            })
        } else {
            Err(conflict)
        }
    }

    fn append(&mut self, parts: &[StreamAppend]) -> Outcome {
        let mut judged = Vec::new();
        for p in parts {
            match self.judge(p) {
                Ok(j) => judged.push(j),
                Err(o) => return o,
            }
        }
        let done: Vec<_> = judged
            .iter()
            .filter_map(|j| match j {
                Judged::Done(r) => Some(*r),
                Judged::Write => None,
            })
            .collect();
        if done.len() == parts.len() {
            return Outcome::Ok(done);
        }
        if !done.is_empty() {
            let first = parts
                .iter()
                .zip(&judged)
                .find(|(_, j)| matches!(j, Judged::Done(_)))
                .unwrap()
                .0;
            return Outcome::Conflict {
                stream: first.stream.to_string(),
                actual: self.version(first.stream.as_str()),
            };
        }
        let mut results = Vec::new();
        for p in parts {
            let name = p.stream.to_string();
            let first_position = self.log.len() as u64 + 1;
            for e in &p.events {
                self.log.push((name.clone(), e.id, e.payload.to_vec()));
                let pos = self.log.len() as u64;
                self.streams.entry(name.clone()).or_default().push((e.id, pos));
            }
            results.push(AppendResult {
                stream_version: self.version(&name),
                first_position,
                last_position: self.log.len() as u64,
            });
        }
        Outcome::Ok(results)
    }
}

fn expected_version(model: &Model, stream: &str, e: &Expect) -> ExpectedVersion {
    match e {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::StreamExists => ExpectedVersion::StreamExists,
        Expect::Exact(off) => ExpectedVersion::Exact((model.version(stream) as i64 + off).max(0) as u64),
    }
}

fn batch(n: usize, tag: &str) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::new("T", format!("{tag}-{i}"))).collect()
}

async fn run(mut fx: Fixture, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut batches: Vec<Vec<StreamAppend>> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let tag = format!("op{step}");
        let parts = match op {
            Op::Append { stream, expect, n } => {
                let name = STREAMS[stream];
                vec![StreamAppend::new(
                    sid(name),
                    expected_version(&model, name, &expect),
                    batch(n, &tag),
                )]
            }
            Op::Multi { parts } => {
                let mut seen = std::collections::HashSet::new();
                parts
                    .into_iter()
                    .filter(|(s, _, _)| seen.insert(*s))
                    .map(|(s, e, n)| {
                        let name = STREAMS[s];
                        StreamAppend::new(sid(name), expected_version(&model, name, &e), batch(n, &tag))
                    })
                    .collect()
            }
            Op::Retry { which, mode } if !batches.is_empty() => {
                let mut parts = batches[which % batches.len()].clone();
                for p in &mut parts {
                    p.expected = match mode {
                        RetryMode::Original => p.expected,
                        RetryMode::Any => ExpectedVersion::Any,
                        RetryMode::ExactCurrent => ExpectedVersion::Exact(model.version(p.stream.as_str())),
                        RetryMode::NoStream => ExpectedVersion::NoStream,
                    };
                }
                parts
            }
            Op::Partial { which } if !batches.is_empty() => {
                let original = &batches[which % batches.len()][0];
                let mut events = vec![original.events[0].clone()];
                events.extend(batch(1, &tag));
                vec![StreamAppend::new(original.stream.clone(), original.expected, events)]
            }
            Op::ReadStream {
                stream,
                from,
                backward,
                limit,
            } => {
                let name = STREAMS[stream];
                let dir = if backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let got = fx.store.read_stream(&sid(name), from, dir, limit).await.unwrap();
                let all = model.streams.get(name).cloned().unwrap_or_default();
                let want: Vec<u64> = if backward {
                    (1..=from.min(all.len() as u64)).rev().take(limit).collect()
                } else {
                    (from.max(1)..=all.len() as u64).take(limit).collect()
                };
                prop_assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), want.clone());
                for (e, v) in got.iter().zip(&want) {
                    prop_assert_eq!((e.id, e.position), all[*v as usize - 1]);
                }
                continue;
            }
            Op::ReadAll { from, limit } => {
                let got = fx.store.read_all(from, limit).await.unwrap();
                let want: Vec<_> = model.log.iter().skip(from.max(1) as usize - 1).take(limit).collect();
                prop_assert_eq!(got.len(), want.len());
                for (i, (e, (s, id, payload))) in got.iter().zip(want).enumerate() {
                    prop_assert_eq!(e.position, from.max(1) + i as u64);
                    prop_assert_eq!(
                        (e.stream_id.as_str(), e.id, &e.payload[..]),
                        (s.as_str(), *id, &payload[..])
                    );
                }
                continue;
            }
            Op::Reopen => {
                fx = fx.reopen().await;
                continue;
            }
            Op::Retry { .. } | Op::Partial { .. } => continue,
        };
        let want = model.append(&parts);
        let got = Outcome::from(fx.store.append_multi(parts.clone()).await);
        prop_assert_eq!(&got, &want, "step {}: {:?}", step, parts);
        if matches!(got, Outcome::Ok(_)) {
            batches.push(parts);
        }
    }
    // Finally the whole log and every stream agree with the model.
    prop_assert_eq!(fx.store.head_position().await.unwrap(), model.log.len() as u64);
    let all = fx.store.read_all(0, usize::MAX).await.unwrap();
    prop_assert_eq!(all.len(), model.log.len());
    for name in STREAMS {
        let s: StreamId = sid(name);
        prop_assert_eq!(fx.store.stream_version(&s).await.unwrap(), model.version(name));
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

fn check(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op_strategy(), 1..40))| {
        rt.block_on(async {
            run(Fixture::new(backend).await, ops).await
        })?;
    });
}

#[test]
fn memory_store_follows_the_model() {
    check(Backend::Memory);
}

#[test]
fn sled_store_follows_the_model() {
    check(Backend::Sled);
}

#[test]
fn segment_store_follows_the_model() {
    check(Backend::Segment);
}

#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn postgres_store_follows_the_model() {
    check(Backend::Postgres);
}
