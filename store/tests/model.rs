//! Model-based test: random sequences of appends (every expected-version
//! mode, retries of earlier batches, multi-stream appends), stream
//! operations (soft and hard deletes, truncations, `max_count` retention)
//! and reads, run
//! against each backend and checked against a plain in-memory model of the
//! rules, written here independently of the store's code.
//!
//! `PROPTEST_CASES` raises the case count (default 48 per backend).

mod common;
#[path = "model/rules.rs"]
mod rules;

use proptest::prelude::*;
use strata_store::{
    DeleteMode, Direction, EventId, EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamId, StreamMetadata,
    StreamOperation,
};

use common::{Backend, Fixture, sid};
use rules::{Model, Outcome};

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
    Delete {
        stream: usize,
        expect: Expect,
        hard: bool,
    },
    /// Truncate before the stream's last version plus this offset.
    Truncate {
        stream: usize,
        expect: Expect,
        before: i64,
    },
    /// Set `max_count`; `expect` is judged against the metadata version.
    MaxCount {
        stream: usize,
        expect: Expect,
        count: u64,
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
        1 => (0..STREAMS.len(), expect_strategy(), prop::bool::weighted(0.2)).prop_map(|(stream, expect, hard)| Op::Delete { stream, expect, hard }),
        1 => (0..STREAMS.len(), expect_strategy(), -3i64..=2).prop_map(|(stream, expect, before)| Op::Truncate { stream, expect, before }),
        1 => (0..STREAMS.len(), expect_strategy(), 0u64..4).prop_map(|(stream, expect, count)| Op::MaxCount { stream, expect, count }),
        1 => Just(Op::Reopen),
    ]
}

fn expected_version(model: &Model, stream: &str, e: &Expect) -> ExpectedVersion {
    expected_of(model.version(stream), e)
}

fn expected_of(current: u64, e: &Expect) -> ExpectedVersion {
    match e {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::StreamExists => ExpectedVersion::StreamExists,
        Expect::Exact(off) => ExpectedVersion::Exact((current as i64 + off).max(0) as u64),
    }
}

/// Checks a read of the whole log against the model's kept events.
fn check_all(model: &Model, got: &[strata_store::RecordedEvent], from: u64, limit: usize) -> Result<(), TestCaseError> {
    let want: Vec<(u64, &String, &Option<EventId>, &Vec<u8>)> = model
        .log
        .iter()
        .enumerate()
        .map(|(i, (s, id, p))| (i as u64 + 1, s, id, p))
        .filter(|(pos, s, _, _)| {
            *pos >= from.max(1) && {
                let version = model.streams.get(*s).and_then(|v| v.iter().position(|(_, p)| p == pos));
                version.is_none_or(|v| !model.removed(s, v as u64 + 1))
            }
        })
        .take(limit)
        .collect();
    prop_assert_eq!(got.len(), want.len(), "read_all({}, {})", from, limit);
    for (e, (pos, s, id, payload)) in got.iter().zip(want) {
        prop_assert_eq!((e.position, e.stream_id.as_str()), (pos, s.as_str()));
        if let Some(id) = id {
            prop_assert_eq!((e.id, &e.payload[..]), (*id, &payload[..]));
        }
    }
    Ok(())
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
                let kept = model.kept(name);
                let want: Vec<u64> = if backward {
                    kept.iter().rev().filter(|v| **v <= from).take(limit).copied().collect()
                } else {
                    kept.iter().filter(|v| **v >= from).take(limit).copied().collect()
                };
                prop_assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), want.clone());
                for (e, v) in got.iter().zip(&want) {
                    prop_assert_eq!((e.id, e.position), all[*v as usize - 1]);
                }
                continue;
            }
            Op::ReadAll { from, limit } => {
                let got = fx.store.read_all(from, limit).await.unwrap();
                check_all(&model, &got, from, limit)?;
                continue;
            }
            Op::Delete { stream, expect, hard } => {
                let name = STREAMS[stream];
                let op = StreamOperation::Delete {
                    stream: sid(name),
                    expected: expected_version(&model, name, &expect),
                    mode: if hard { DeleteMode::Hard } else { DeleteMode::Soft },
                };
                operate(&mut model, &fx, op, step).await?;
                continue;
            }
            Op::Truncate { stream, expect, before } => {
                let name = STREAMS[stream];
                let op = StreamOperation::Truncate {
                    stream: sid(name),
                    expected: expected_version(&model, name, &expect),
                    before: (model.last(name) as i64 + before).max(0) as u64,
                };
                operate(&mut model, &fx, op, step).await?;
                continue;
            }
            Op::MaxCount { stream, expect, count } => {
                let name = STREAMS[stream];
                let meta_version = model.life.get(name).map_or(0, |(_, v)| *v);
                let op = StreamOperation::SetMetadata {
                    stream: sid(name),
                    expected: expected_of(meta_version, &expect),
                    metadata: StreamMetadata {
                        max_count: Some(count),
                        max_age: None,
                    },
                };
                operate(&mut model, &fx, op, step).await?;
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
    check_all(&model, &all, 0, usize::MAX)?;
    for name in STREAMS {
        let s: StreamId = sid(name);
        prop_assert_eq!(fx.store.stream_version(&s).await.unwrap(), model.version(name));
        let versions: Vec<u64> = fx
            .store
            .read_stream(&s, 1, Direction::Forward, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        prop_assert_eq!(versions, model.kept(name));
    }
    Ok(())
}

/// Runs a stream operation on the store and the model and compares them.
async fn operate(model: &mut Model, fx: &Fixture, op: StreamOperation, step: usize) -> Result<(), TestCaseError> {
    let want = model.operate(&op);
    let got = match fx.store.modify_stream(op.clone()).await {
        Ok(r) => Outcome::Operation(r),
        Err(e) => Outcome::error(e),
    };
    prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);
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
fn segment_store_follows_the_model() {
    check(Backend::Segment);
}

#[test]
#[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
fn postgres_store_follows_the_model() {
    check(Backend::Postgres);
}
