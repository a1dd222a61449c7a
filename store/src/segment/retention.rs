//! The life of streams on the segment log: the states of the streams that
//! have a metadata stream, kept in memory, and the filter every read passes
//! events through (see `crate::retention` for the rules).
//!
//! The states are few (one per stream ever deleted, truncated or given a
//! retention) and derived from the log: the newest event of each `$$`
//! stream, read from the index when the store opens. The writer records a
//! state when it writes the operation's record, at the record's position;
//! a reader uses the newest state at or below its visible head, so an
//! operation takes effect for readers exactly when its record becomes
//! visible.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Shared;
use crate::error::StoreError;
use crate::retention::{METADATA_STREAM_PREFIX, StreamState, described_stream};
use crate::types::{Direction, RecordedEvent, StreamId, now_micros, to_micros};

/// The states of the streams with a metadata stream: per stream, the
/// states recorded at their positions, oldest first (only the newest
/// visible one and any newer are kept).
#[derive(Default)]
pub(super) struct States {
    by_stream: HashMap<StreamId, Vec<(u64, StreamState)>>,
}

impl Shared {
    fn states(&self) -> std::sync::MutexGuard<'_, States> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest state of `stream` the writer recorded, visible or not.
    pub(super) fn written_state(&self, stream: &StreamId) -> StreamState {
        if !self.any_states.load(Ordering::Acquire) {
            return StreamState::default();
        }
        self.states()
            .by_stream
            .get(stream)
            .and_then(|v| v.last())
            .map(|(_, s)| *s)
            .unwrap_or_default()
    }

    /// The state of `stream` for a reader whose visible head is `visible`.
    pub(super) fn state_at(&self, stream: &StreamId, visible: u64) -> Option<StreamState> {
        if !self.any_states.load(Ordering::Acquire) {
            return None;
        }
        let states = self.states();
        let list = states.by_stream.get(stream)?;
        // A reader that took its head before a newer state became visible
        // may find its own state dropped (`record_state` keeps only the
        // newest visible one): the oldest kept state is then the nearest,
        // and a state holds every deletion and truncation before it, so the
        // reader never sees removed events again.
        list.iter()
            .rev()
            .find(|(p, _)| *p <= visible)
            .or_else(|| list.first())
            .map(|(_, s)| *s)
    }

    /// Every stream not tombstoned whose state at `visible` has a `max_count`
    /// or a `max_age` (what a scavenge makes permanent).
    pub(super) fn states_with_retention(&self, visible: u64) -> Vec<(StreamId, StreamState)> {
        if !self.any_states.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.states()
            .by_stream
            .iter()
            .filter_map(|(stream, list)| {
                let (_, s) = list.iter().rev().find(|(p, _)| *p <= visible)?;
                let retains = s.metadata.max_count.is_some() || s.metadata.max_age.is_some();
                (retains && !s.tombstoned).then(|| (stream.clone(), *s))
            })
            .collect()
    }

    /// Records `state` for `stream`, written at `position`.
    pub(super) fn record_state(&self, stream: &StreamId, position: u64, state: StreamState) {
        let visible = self.visible();
        let mut states = self.states();
        let list = states.by_stream.entry(stream.clone()).or_default();
        list.push((position, state));
        // Keep the newest visible state and every newer one.
        if let Some(keep_from) = list.iter().rposition(|(p, _)| *p <= visible) {
            list.drain(..keep_from);
        }
        self.any_states.store(true, Ordering::Release);
    }

    /// Reads the state of every stream with a metadata stream from the
    /// index (which holds the whole log when the store opens).
    pub(super) fn load_states(&self) -> Result<(), StoreError> {
        let visible = self.visible();
        for meta in self.index.streams_with_prefix(METADATA_STREAM_PREFIX)? {
            let Some(stream) = described_stream(&meta) else {
                continue;
            };
            let newest = self.read_stream_range(&meta, u64::MAX, Direction::Backward, 1, visible)?;
            if let Some(e) = newest.first() {
                let state = StreamState::decode(&e.payload).map_err(|detail| StoreError::Corrupt {
                    location: format!("stream {meta} version {} (position {})", e.version, e.position),
                    detail,
                })?;
                self.record_state(&stream, e.position, state);
            }
        }
        Ok(())
    }
}

impl Shared {
    /// [`Shared::read_stream_range`] without the removed events: starts at
    /// the first version the count rules keep and reads on past events
    /// removed by age until `limit` are found or the stream ends.
    pub(super) fn read_stream_kept(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
        visible: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let Some(state) = self.state_at(stream, visible).filter(StreamState::removes_any) else {
            return self.read_stream_range(stream, from, direction, limit, visible);
        };
        let last = self.visible_version(stream, visible)?;
        let floor = Removal::first_kept(&state, last);
        let now = now_micros();
        let kept = |e: &RecordedEvent| !state.removes(e.version, to_micros(e.recorded_at), last, now);
        let mut out = Vec::new();
        match direction {
            Direction::Forward => {
                let mut next = from.max(floor);
                while out.len() < limit && next <= last {
                    let batch = self.read_stream_range(stream, next, direction, limit - out.len(), visible)?;
                    let Some(newest) = batch.last() else { break };
                    next = newest.version + 1;
                    out.extend(batch.into_iter().filter(kept));
                }
            }
            Direction::Backward => {
                let mut next = from.min(last);
                while from > 0 && out.len() < limit && next >= floor {
                    let want = (limit - out.len()).min((next - floor + 1) as usize);
                    let batch = self.read_stream_range(stream, next, direction, want, visible)?;
                    let Some(oldest) = batch.last() else { break };
                    let low = oldest.version;
                    out.extend(batch.into_iter().filter(kept));
                    if low <= floor {
                        break;
                    }
                    next = low - 1;
                }
            }
        }
        Ok(out)
    }
}

/// Decides, for one read at one visible head, which events are removed;
/// remembers the last version of each stream it had to look up.
pub(super) struct Removal<'a> {
    shared: &'a Shared,
    visible: u64,
    now: u64,
    last_versions: HashMap<StreamId, u64>,
}

impl<'a> Removal<'a> {
    pub(super) fn new(shared: &'a Shared, visible: u64) -> Removal<'a> {
        Removal {
            shared,
            visible,
            now: now_micros(),
            last_versions: HashMap::new(),
        }
    }

    /// Whether `event` is removed for this read.
    pub(super) fn removes(&mut self, event: &RecordedEvent) -> Result<bool, StoreError> {
        let Some(state) = self.shared.state_at(&event.stream_id, self.visible) else {
            return Ok(false);
        };
        if !state.removes_any() {
            return Ok(false);
        }
        let last = match self.last_versions.get(&event.stream_id) {
            Some(v) => *v,
            None => {
                let v = self.shared.visible_version(&event.stream_id, self.visible)?;
                self.last_versions.insert(event.stream_id.clone(), v);
                v
            }
        };
        Ok(state.removes(event.version, to_micros(event.recorded_at), last, self.now))
    }

    /// The first version of a stream whose last version is `last` that
    /// the count rules (truncation, `max_count`) keep; `max_age` is
    /// checked per event.
    pub(super) fn first_kept(state: &StreamState, last: u64) -> u64 {
        if state.tombstoned {
            return last.saturating_add(1);
        }
        let by_count = state
            .metadata
            .max_count
            .map_or(1, |c| last.saturating_sub(c).saturating_add(1));
        state.truncate_before.max(by_count).max(1)
    }
}
