//! Model-based test: random sequences of appends (every expected-version
//! mode, retries of earlier batches, multi-stream appends), stream
//! operations (soft and hard deletes, truncations, `max_count` retention)
//! and reads, run
//! against each backend and checked against a plain in-memory model of the
//! rules, written here independently of the store's code.
//!
//! `PROPTEST_CASES` raises the case count (default 48 per backend).

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use strata_store::{
    AppendResult, DeleteMode, Direction, EventId, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend,
    StreamId, StreamMetadata, StreamOperation, StreamOperationResult,
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

/// The rules, as plainly as they can be written.
#[derive(Default)]
struct Model {
    /// Per stream: (id, position) of each version ever written.
    streams: HashMap<String, Vec<(EventId, u64)>>,
    /// (stream, id, payload) in position order; the metadata events of
    /// stream operations have no id or payload the model knows.
    log: Vec<(String, Option<EventId>, Vec<u8>)>,
    /// Per stream: its life (truncated before, deleted, tombstoned,
    /// max_count) and the number of operations on it (its metadata version).
    life: HashMap<String, (Life, u64)>,
}

#[derive(Clone, Copy, Default, Debug)]
struct Life {
    truncate_before: u64,
    deleted: bool,
    tombstoned: bool,
    max_count: Option<u64>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Vec<AppendResult>),
    Conflict { stream: String, actual: u64 },
    Duplicate { stream: String },
    Deleted,
    Invalid,
    Operation(StreamOperationResult),
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
            Err(e) => Outcome::error(e),
        }
    }
}

impl Outcome {
    fn error(e: StoreError) -> Outcome {
        match e {
            StoreError::WrongExpectedVersion { stream, actual, .. } => Outcome::Conflict {
                stream: stream.to_string(),
                actual,
            },
            StoreError::DuplicateEventId { stream, .. } => Outcome::Duplicate {
                stream: stream.to_string(),
            },
            StoreError::StreamDeleted { .. } => Outcome::Deleted,
            StoreError::InvalidStreamOperation { .. } => Outcome::Invalid,
            e => Outcome::Other(e.to_string()),
        }
    }
}

enum Judged {
    Write,
    Done(AppendResult),
}

impl Model {
    /// The last version ever written.
    fn last(&self, s: &str) -> u64 {
        self.streams.get(s).map_or(0, |v| v.len() as u64)
    }

    fn life(&self, s: &str) -> Life {
        self.life.get(s).map(|(l, _)| *l).unwrap_or_default()
    }

    /// The version expected versions are judged against: 0 while the
    /// stream is tombstoned or deleted and not written since.
    fn version(&self, s: &str) -> u64 {
        let (last, life) = (self.last(s), self.life(s));
        if life.tombstoned || (life.deleted && last < life.truncate_before) {
            0
        } else {
            last
        }
    }

    fn removed(&self, s: &str, version: u64) -> bool {
        let life = self.life(s);
        life.tombstoned || version < life.truncate_before || life.max_count.is_some_and(|c| version + c <= self.last(s))
    }

    /// The versions a reader sees.
    fn kept(&self, s: &str) -> Vec<u64> {
        (1..=self.last(s)).filter(|v| !self.removed(s, *v)).collect()
    }

    fn operate(&mut self, op: &StreamOperation) -> Outcome {
        let name = op.stream().to_string();
        let mut life = self.life(&name);
        let meta_version = self.life.get(&name).map_or(0, |(_, v)| *v);
        if life.tombstoned {
            return Outcome::Deleted;
        }
        let (last, current) = (self.last(&name), self.version(&name));
        let conflict = |stream: String, actual| Outcome::Conflict { stream, actual };
        match op {
            StreamOperation::Delete { expected, mode, .. } => {
                if !accepts(*expected, current) {
                    return conflict(name, current);
                }
                life.truncate_before = life.truncate_before.max(last + 1);
                match mode {
                    DeleteMode::Soft => life.deleted = true,
                    DeleteMode::Hard => life.tombstoned = true,
                }
            }
            StreamOperation::TruncateForRetention { .. } => unreachable!("the model does not generate it"),
            StreamOperation::Truncate { expected, before, .. } => {
                if !accepts(*expected, current) {
                    return conflict(name, current);
                }
                if *before == 0 || *before > last + 1 {
                    return Outcome::Invalid;
                }
                life.truncate_before = life.truncate_before.max(*before);
            }
            StreamOperation::SetMetadata { expected, metadata, .. } => {
                if !accepts(*expected, meta_version) {
                    return conflict(format!("$${name}"), meta_version);
                }
                if metadata.max_count == Some(0) {
                    return Outcome::Invalid;
                }
                life.max_count = metadata.max_count;
            }
            // The enum is non-exhaustive: an operation added later.
            _ => unreachable!("the model does not know it"),
        }
        self.log.push((format!("$${name}"), None, Vec::new()));
        self.life.insert(name, (life, meta_version + 1));
        Outcome::Operation(StreamOperationResult {
            position: self.log.len() as u64,
            metadata_version: meta_version + 1,
        })
    }

    fn judge(&self, part: &StreamAppend) -> Result<Judged, Outcome> {
        let name = part.stream.as_str();
        if self.life(name).tombstoned {
            return Err(Outcome::Deleted);
        }
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
                self.log.push((name.clone(), Some(e.id), e.payload.to_vec()));
                let pos = self.log.len() as u64;
                self.streams.entry(name.clone()).or_default().push((e.id, pos));
            }
            results.push(AppendResult {
                stream_version: self.last(&name),
                first_position,
                last_position: self.log.len() as u64,
            });
        }
        Outcome::Ok(results)
    }
}

fn accepts(expected: ExpectedVersion, actual: u64) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::StreamExists => actual > 0,
        ExpectedVersion::Exact(n) => n == actual,
    }
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
