//! The model of `model.rs`: the rules of appends and stream operations,
//! as plainly as they can be written, independently of the store's code.

use std::collections::HashMap;

use strata_store::{
    AppendResult, DeleteMode, EventId, ExpectedVersion, StoreError, StreamAppend, StreamOperation,
    StreamOperationResult,
};

/// The rules, as plainly as they can be written.
#[derive(Default)]
pub(crate) struct Model {
    /// Per stream: (id, position) of each version ever written.
    pub(crate) streams: HashMap<String, Vec<(EventId, u64)>>,
    /// (stream, id, payload) in position order; the metadata events of
    /// stream operations have no id or payload the model knows.
    pub(crate) log: Vec<(String, Option<EventId>, Vec<u8>)>,
    /// Per stream: its life (truncated before, deleted, tombstoned,
    /// max_count) and the number of operations on it (its metadata version).
    pub(crate) life: HashMap<String, (Life, u64)>,
}

#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Life {
    pub(crate) truncate_before: u64,
    pub(crate) deleted: bool,
    pub(crate) tombstoned: bool,
    pub(crate) max_count: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
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
    pub(crate) fn error(e: StoreError) -> Outcome {
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

pub(crate) enum Judged {
    Write,
    Done(AppendResult),
}

impl Model {
    /// The last version ever written.
    pub(crate) fn last(&self, s: &str) -> u64 {
        self.streams.get(s).map_or(0, |v| v.len() as u64)
    }

    pub(crate) fn life(&self, s: &str) -> Life {
        self.life.get(s).map(|(l, _)| *l).unwrap_or_default()
    }

    /// The version expected versions are judged against: 0 while the
    /// stream is tombstoned or deleted and not written since.
    pub(crate) fn version(&self, s: &str) -> u64 {
        let (last, life) = (self.last(s), self.life(s));
        if life.tombstoned || (life.deleted && last < life.truncate_before) {
            0
        } else {
            last
        }
    }

    pub(crate) fn removed(&self, s: &str, version: u64) -> bool {
        let life = self.life(s);
        life.tombstoned || version < life.truncate_before || life.max_count.is_some_and(|c| version + c <= self.last(s))
    }

    /// The versions a reader sees.
    pub(crate) fn kept(&self, s: &str) -> Vec<u64> {
        (1..=self.last(s)).filter(|v| !self.removed(s, *v)).collect()
    }

    pub(crate) fn operate(&mut self, op: &StreamOperation) -> Outcome {
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

    pub(crate) fn judge(&self, part: &StreamAppend) -> Result<Judged, Outcome> {
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

    pub(crate) fn append(&mut self, parts: &[StreamAppend]) -> Outcome {
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

pub(crate) fn accepts(expected: ExpectedVersion, actual: u64) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::StreamExists => actual > 0,
        ExpectedVersion::Exact(n) => n == actual,
    }
}
