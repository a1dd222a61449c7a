//! The append rules, written once for every backend: expected versions and
//! idempotent retries by event id.

use crate::error::StoreError;
use crate::retention::{
    DeleteMode, EVENT_METADATA, EVENT_STREAM_DELETED, EVENT_STREAM_TOMBSTONED, EVENT_STREAM_TRUNCATED, StreamOperation,
    StreamState, check_metadata, is_metadata_stream, metadata_stream, state_event,
};
use crate::types::{AppendResult, EventId, NewEvent, StreamAppend, StreamId};

/// Where an event id sits in its stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct IdEntry {
    pub(crate) version: u64,
    pub(crate) position: u64,
}

/// What a backend knows about its streams, as the rules need it. The view
/// must include every write decided before in the same commit.
pub(crate) trait StreamView {
    /// The stream's last version ever written (0 when never written): it
    /// never goes down, not even across a delete.
    fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError>;
    /// The stream's state: what the newest event of its metadata stream
    /// `$$<stream>` holds (the default when it has none).
    fn state(&mut self, stream: &StreamId) -> Result<StreamState, StoreError>;
    /// Where `id` sits in `stream`, if it does.
    fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError>;
}

/// The outcome of judging one stream's part of an append.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Plan {
    /// Write the events after version `current`.
    Write { current: u64 },
    /// The events are already there: answer with the original result, write nothing.
    Done(AppendResult),
}

/// Judges one stream's part of an append.
///
/// - No id of the append is in the stream: the expected version decides.
/// - Every id is, as one contiguous run in order, starting where the expected
///   version points (`Exact(n)`: at `n + 1`; `Any`/`StreamExists`: anywhere):
///   a retry, answered with the original result.
/// - Otherwise, when the expected version names the current version exactly,
///   the ids clash with older events ([`StoreError::DuplicateEventId`]); in
///   every other case the retry only partly matches, or the stream moved:
///   [`StoreError::WrongExpectedVersion`].
///
/// The expected version is judged against the version the stream reports
/// (0 while it is soft-deleted and not written since); new events go on
/// from its last version ever. A tombstoned stream refuses every append
/// ([`StoreError::StreamDeleted`]), a `$$` metadata stream every direct one.
pub(crate) fn plan(view: &mut impl StreamView, append: &StreamAppend) -> Result<Plan, StoreError> {
    let stream = &append.stream;
    if is_metadata_stream(stream) {
        return Err(StoreError::InvalidStreamId {
            stream: stream.to_string(),
            reason: "streams whose id starts with `$$` are metadata streams, written only by stream operations",
        });
    }
    let expected = append.expected.normalized();
    let last = view.version(stream)?;
    let state = view.state(stream)?;
    if state.tombstoned {
        return Err(StoreError::StreamDeleted { stream: stream.clone() });
    }
    let current = state.reported_version(last);
    let mut found = Vec::with_capacity(append.events.len());
    let mut first_found = None;
    for event in &append.events {
        let entry = if last == 0 {
            None
        } else {
            view.find_id(stream, &event.id)?
        };
        if let (Some(e), None) = (entry, first_found) {
            first_found = Some((event.id, e.version));
        }
        found.push(entry);
    }
    let conflict = || StoreError::WrongExpectedVersion {
        stream: stream.clone(),
        expected: append.expected,
        actual: current,
    };
    let Some((clash_id, clash_version)) = first_found else {
        return if expected.accepts(current) {
            Ok(Plan::Write { current: last })
        } else {
            Err(conflict())
        };
    };
    if let Some((first, last)) = contiguous_run(&found) {
        let at_expected_place = expected.exact().is_none_or(|n| first.version == n + 1);
        if at_expected_place {
            return Ok(Plan::Done(AppendResult {
                stream_version: last.version,
                first_position: first.position,
                last_position: last.position,
            }));
        }
    }
    if expected.exact().is_some() && expected.accepts(current) {
        Err(StoreError::DuplicateEventId {
            stream: stream.clone(),
            event_id: clash_id,
            existing_version: Some(clash_version),
        })
    } else {
        Err(conflict())
    }
}

/// A stream operation judged and accepted: write `event` as the next event
/// of `meta` (after its version `meta_version`); `state` is what it records.
#[derive(Clone, Debug)]
pub(crate) struct OpWrite {
    pub(crate) meta: StreamId,
    pub(crate) meta_version: u64,
    pub(crate) event: NewEvent,
    pub(crate) state: StreamState,
}

impl OpWrite {
    /// The operation as the one-part append that records it.
    pub(crate) fn append(&self) -> StreamAppend {
        StreamAppend::new(
            self.meta.clone(),
            crate::types::ExpectedVersion::Exact(self.meta_version),
            vec![self.event.clone()],
        )
    }
}

/// Judges a stream operation: a delete or a truncation against the
/// stream's reported version, new metadata and a truncation for retention
/// against the metadata version;
/// a tombstoned stream refuses every one ([`StoreError::StreamDeleted`]).
pub(crate) fn plan_op(view: &mut impl StreamView, op: &StreamOperation) -> Result<OpWrite, StoreError> {
    let stream = op.stream();
    let invalid = |reason: String| StoreError::InvalidStreamOperation {
        stream: stream.clone(),
        reason,
    };
    if is_metadata_stream(stream) {
        return Err(invalid("a `$$` metadata stream has no metadata of its own".into()));
    }
    let last = view.version(stream)?;
    let old = view.state(stream)?;
    if old.tombstoned {
        return Err(StoreError::StreamDeleted { stream: stream.clone() });
    }
    let meta = metadata_stream(stream);
    let meta_version = view.version(&meta)?;
    let reported = old.reported_version(last);
    let judge = |expected: crate::types::ExpectedVersion, target: &StreamId, actual: u64| {
        if expected.normalized().accepts(actual) {
            Ok(())
        } else {
            Err(StoreError::WrongExpectedVersion {
                stream: target.clone(),
                expected,
                actual,
            })
        }
    };
    let mut state = old;
    let event_type = match op {
        StreamOperation::Delete { expected, mode, .. } => {
            judge(*expected, stream, reported)?;
            state.truncate_before = state.truncate_before.max(last + 1);
            match mode {
                DeleteMode::Soft => {
                    state.deleted = true;
                    EVENT_STREAM_DELETED
                }
                DeleteMode::Hard => {
                    state.tombstoned = true;
                    EVENT_STREAM_TOMBSTONED
                }
            }
        }
        StreamOperation::Truncate { expected, before, .. }
        | StreamOperation::TruncateForRetention {
            metadata_expected: expected,
            before,
            ..
        } => {
            if matches!(op, StreamOperation::Truncate { .. }) {
                judge(*expected, stream, reported)?;
            } else {
                judge(*expected, &meta, meta_version)?;
            }
            if *before == 0 || *before > last + 1 {
                return Err(invalid(format!(
                    "truncate before version {before}: it must be within 1..={} (the version after the last)",
                    last + 1
                )));
            }
            state.truncate_before = state.truncate_before.max(*before);
            EVENT_STREAM_TRUNCATED
        }
        StreamOperation::SetMetadata { expected, metadata, .. } => {
            judge(*expected, &meta, meta_version)?;
            check_metadata(stream, metadata)?;
            state.metadata = *metadata;
            EVENT_METADATA
        }
    };
    Ok(OpWrite {
        event: state_event(event_type, &state),
        meta,
        meta_version,
        state,
    })
}

/// The first and last entry of `found` when every id was found at
/// consecutive versions, in order.
fn contiguous_run(found: &[Option<IdEntry>]) -> Option<(IdEntry, IdEntry)> {
    let first = (*found.first()?)?;
    let mut last = first;
    for (i, entry) in found.iter().enumerate() {
        last = (*entry)?;
        if last.version != first.version + i as u64 {
            return None;
        }
    }
    Some((first, last))
}

/// Judges every part of a multi-stream append. It is a retry only as a whole:
/// when some parts are already in the log and others are not, the first part
/// found is reported as [`StoreError::WrongExpectedVersion`].
pub(crate) fn plan_multi(view: &mut impl StreamView, appends: &[StreamAppend]) -> Result<Vec<Plan>, StoreError> {
    let plans = appends.iter().map(|a| plan(view, a)).collect::<Result<Vec<_>, _>>()?;
    let done = plans.iter().filter(|p| matches!(p, Plan::Done(_))).count();
    if done == 0 || done == plans.len() {
        return Ok(plans);
    }
    let (append, _) = appends
        .iter()
        .zip(&plans)
        .find(|(_, p)| matches!(p, Plan::Done(_)))
        .expect("a done plan exists");
    Err(StoreError::WrongExpectedVersion {
        stream: append.stream.clone(),
        expected: append.expected,
        actual: view.version(&append.stream)?,
    })
}

/// Results of a multi-append whose every part is already in the log, or
/// `None` when something has to be written.
pub(crate) fn all_done(plans: &[Plan]) -> Option<Vec<AppendResult>> {
    plans
        .iter()
        .map(|p| match p {
            Plan::Done(r) => Some(*r),
            Plan::Write { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::types::{ExpectedVersion, NewEvent};

    /// A stream of ids 0..n at versions 1..=n, positions 100 + version.
    #[derive(Default)]
    struct View {
        streams: HashMap<StreamId, Vec<EventId>>,
    }

    impl StreamView for View {
        fn version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
            Ok(self.streams.get(stream).map_or(0, |s| s.len() as u64))
        }
        fn state(&mut self, _: &StreamId) -> Result<StreamState, StoreError> {
            Ok(StreamState::default())
        }
        fn find_id(&mut self, stream: &StreamId, id: &EventId) -> Result<Option<IdEntry>, StoreError> {
            Ok(self.streams.get(stream).and_then(|s| {
                s.iter().position(|e| e == id).map(|i| IdEntry {
                    version: i as u64 + 1,
                    position: 101 + i as u64,
                })
            }))
        }
    }

    fn setup(n: usize) -> (View, StreamId, Vec<EventId>) {
        let s = StreamId::new("s").unwrap();
        let ids: Vec<EventId> = (0..n).map(|_| EventId::new()).collect();
        let mut v = View::default();
        v.streams.insert(s.clone(), ids.clone());
        (v, s, ids)
    }

    fn append(s: &StreamId, expected: ExpectedVersion, ids: &[EventId]) -> StreamAppend {
        StreamAppend::new(
            s.clone(),
            expected,
            ids.iter().map(|id| NewEvent::new("T", "x").with_id(*id)).collect(),
        )
    }

    #[test]
    fn retry_at_expected_place_is_done() {
        let (mut v, s, ids) = setup(4);
        let p = plan(&mut v, &append(&s, ExpectedVersion::Exact(1), &ids[1..3])).unwrap();
        assert_eq!(
            p,
            Plan::Done(AppendResult {
                stream_version: 3,
                first_position: 102,
                last_position: 103
            })
        );
    }

    #[test]
    fn retry_elsewhere_with_exact_is_conflict() {
        let (mut v, s, ids) = setup(4);
        let e = plan(&mut v, &append(&s, ExpectedVersion::Exact(0), &ids[1..3])).unwrap_err();
        assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 4, .. }));
    }

    #[test]
    fn reused_id_at_current_version_is_duplicate() {
        let (mut v, s, ids) = setup(4);
        let e = plan(&mut v, &append(&s, ExpectedVersion::Exact(4), &ids[0..1])).unwrap_err();
        assert!(matches!(
            e,
            StoreError::DuplicateEventId {
                existing_version: Some(1),
                ..
            }
        ));
    }

    #[test]
    fn any_retry_anywhere_is_done_but_partial_is_conflict() {
        let (mut v, s, ids) = setup(4);
        assert!(matches!(
            plan(&mut v, &append(&s, ExpectedVersion::Any, &ids[2..4])).unwrap(),
            Plan::Done(_)
        ));
        let mut partial = ids[3..4].to_vec();
        partial.push(EventId::new());
        let e = plan(&mut v, &append(&s, ExpectedVersion::Any, &partial)).unwrap_err();
        assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 4, .. }));
        let reversed = vec![ids[1], ids[0]];
        let e = plan(&mut v, &append(&s, ExpectedVersion::StreamExists, &reversed)).unwrap_err();
        assert!(matches!(e, StoreError::WrongExpectedVersion { .. }));
    }

    #[test]
    fn mixed_multi_append_is_conflict() {
        let (mut v, s, ids) = setup(2);
        let other = StreamId::new("other").unwrap();
        let appends = vec![
            append(&s, ExpectedVersion::NoStream, &ids),
            append(&other, ExpectedVersion::NoStream, &[EventId::new()]),
        ];
        let e = plan_multi(&mut v, &appends).unwrap_err();
        assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 2, .. }));
    }
}
