//! The tail of the log that the sled index does not hold yet, in memory:
//! what the append path and the readers need of it (stream chunks, event
//! ids), bounded by `SegmentOptions::max_index_lag_events`.

use std::collections::{HashMap, VecDeque};

use crate::decide::IdEntry;
use crate::types::{EventId, StreamId};

/// A run of one stream's versions inside one record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Chunk {
    pub(crate) first_version: u64,
    pub(crate) count: u32,
    pub(crate) first_position: u64,
    /// The record's log address and length.
    pub(crate) address: u64,
    pub(crate) len: u32,
}

impl Chunk {
    pub(crate) fn last_version(&self) -> u64 {
        self.first_version + self.count as u64 - 1
    }

    pub(crate) fn last_position(&self) -> u64 {
        self.first_position + self.count as u64 - 1
    }
}

/// What the index needs of one record.
#[derive(Clone, Debug)]
pub(crate) struct TailRecord {
    pub(crate) address: u64,
    pub(crate) len: u32,
    pub(crate) first_position: u64,
    pub(crate) event_count: u32,
    /// Whether the record is a sparse point of the position map.
    pub(crate) sparse: bool,
    pub(crate) parts: Vec<(StreamId, Chunk)>,
    /// Every event id, in position order.
    pub(crate) ids: Vec<EventId>,
}

impl TailRecord {
    pub(crate) fn last_position(&self) -> u64 {
        self.first_position + self.event_count as u64 - 1
    }

    /// The stream, version and position of each id, in position order.
    pub(crate) fn id_entries(&self) -> impl Iterator<Item = (&StreamId, EventId, IdEntry)> + '_ {
        let mut ids = self.ids.iter();
        self.parts.iter().flat_map(move |(stream, chunk)| {
            (0..chunk.count as u64)
                .map(|i| {
                    let id = *ids.next().expect("one id per event");
                    (
                        stream,
                        id,
                        IdEntry {
                            version: chunk.first_version + i,
                            position: chunk.first_position + i,
                        },
                    )
                })
                .collect::<Vec<_>>()
        })
    }
}

/// The records written but not yet in the sled index.
#[derive(Default)]
pub(crate) struct Tail {
    records: VecDeque<TailRecord>,
    events: usize,
    streams: HashMap<StreamId, VecDeque<Chunk>>,
    ids: HashMap<(StreamId, EventId), IdEntry>,
    /// Bumped each time records leave for the index: a lookup of the index
    /// made while this stayed the same, together with the tail, saw every
    /// record.
    epoch: u64,
}

impl Tail {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn events(&self) -> usize {
        self.events
    }

    pub(crate) fn push(&mut self, record: TailRecord) {
        for (stream, id, entry) in record.id_entries() {
            self.ids.insert((stream.clone(), id), entry);
        }
        for (stream, chunk) in &record.parts {
            self.streams.entry(stream.clone()).or_default().push_back(*chunk);
        }
        self.events += record.event_count as usize;
        self.records.push_back(record);
    }

    /// The stream's newest version in the tail, written or not yet visible.
    pub(crate) fn version(&self, stream: &StreamId) -> Option<u64> {
        self.streams.get(stream)?.back().map(Chunk::last_version)
    }

    /// The streams of the tail whose id starts with `prefix` and sorts after `after`.
    pub(crate) fn stream_ids<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a StreamId>,
    ) -> impl Iterator<Item = &'a StreamId> + 'a {
        self.streams
            .keys()
            .filter(move |id| id.as_str().starts_with(prefix) && after.is_none_or(|a| id.as_str() > a.as_str()))
    }

    /// The stream's newest version at or below position `visible`.
    pub(crate) fn visible_version(&self, stream: &StreamId, visible: u64) -> Option<u64> {
        self.streams
            .get(stream)?
            .iter()
            .rev()
            .find(|c| c.last_position() <= visible)
            .map(Chunk::last_version)
    }

    pub(crate) fn find_id(&self, stream: &StreamId, id: &EventId) -> Option<IdEntry> {
        self.ids.get(&(stream.clone(), *id)).copied()
    }

    /// The stream's chunks that hold a version in `lo..=hi`.
    pub(crate) fn chunks(&self, stream: &StreamId, lo: u64, hi: u64) -> Vec<Chunk> {
        self.streams.get(stream).map_or_else(Vec::new, |chunks| {
            chunks
                .iter()
                .filter(|c| c.last_version() >= lo && c.first_version <= hi)
                .copied()
                .collect()
        })
    }

    /// Copies of the oldest records that are wholly at or below `upto`,
    /// at most `max_events` events of them (at least one record).
    pub(crate) fn indexable(&self, upto: u64, max_events: usize) -> Vec<TailRecord> {
        let mut out = Vec::new();
        let mut events = 0;
        for r in &self.records {
            if r.last_position() > upto || (events > 0 && events + r.event_count as usize > max_events) {
                break;
            }
            events += r.event_count as usize;
            out.push(r.clone());
        }
        out
    }

    /// Forgets the oldest `n` records: the index holds them now.
    pub(crate) fn pop_indexed(&mut self, n: usize) {
        self.epoch += 1;
        for _ in 0..n {
            let Some(record) = self.records.pop_front() else {
                return;
            };
            for (stream, id, _) in record.id_entries() {
                self.ids.remove(&(stream.clone(), id));
            }
            for (stream, _) in &record.parts {
                if let Some(chunks) = self.streams.get_mut(stream) {
                    chunks.pop_front();
                    if chunks.is_empty() {
                        self.streams.remove(stream);
                    }
                }
            }
            self.events -= record.event_count as usize;
        }
    }
}
