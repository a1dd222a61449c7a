//! Snapshots: an aggregate's state every N events, kept in a stream of its
//! own beside the aggregate's stream (see `docs/snapshots.md`).
//!
//! The snapshot of stream `s` lives in `$snapshot-{s}` (or, when that name
//! would pass the 256-byte limit of stream ids, `$snapshot-#{hash}`); each
//! snapshot is one event of type `$snapshot` whose payload is the state and
//! whose metadata says which stream, version and event it was taken at and
//! the state's shape version. A loader reads the newest one (one backward
//! read of one event) and trusts it only when every one of those matches.

use strata_store::{
    Direction, EventId, EventStore, ExpectedVersion, MAX_STREAM_ID_BYTES, Metadata, NewEvent, RecordedEvent,
    StreamAppend, StreamId, from_bincode, to_bincode,
};
use tracing::{debug, warn};

use crate::aggregate::{Aggregate, Snapshottable};
use crate::codec::{FORMAT_KEY, Format};

/// The prefix of every snapshot stream. Streams whose id starts with `$` are
/// strata's own; a projection that folds the whole log skips them.
pub const SNAPSHOT_STREAM_PREFIX: &str = "$snapshot-";
/// The event type of a snapshot.
pub const SNAPSHOT_EVENT_TYPE: &str = "$snapshot";

const KEY_OF: &str = "strata.snapshot.of";
const KEY_KIND: &str = "strata.snapshot.kind";
const KEY_VERSION: &str = "strata.snapshot.version";
const KEY_EVENT_ID: &str = "strata.snapshot.event_id";
const KEY_SCHEMA: &str = "strata.snapshot.schema";

/// The stream that holds the snapshots of `stream`.
///
/// ```
/// use strata_aggregates::{is_snapshot_stream, snapshot_stream};
/// use strata_store::StreamId;
/// let s = snapshot_stream(&StreamId::new("order-42").unwrap());
/// assert_eq!(s.as_str(), "$snapshot-order-42");
/// assert!(is_snapshot_stream(&s));
/// // A stream id too long to prefix gets a hashed name, still valid.
/// let long = StreamId::new("x".repeat(256)).unwrap();
/// assert!(snapshot_stream(&long).as_str().starts_with("$snapshot-#"));
/// ```
pub fn snapshot_stream(stream: &StreamId) -> StreamId {
    let name = if SNAPSHOT_STREAM_PREFIX.len() + stream.as_str().len() <= MAX_STREAM_ID_BYTES {
        format!("{SNAPSHOT_STREAM_PREFIX}{stream}")
    } else {
        // Two FNV-1a hashes with different offsets: 128 bits. A collision
        // would only make two streams share a snapshot stream; the loader
        // checks whose snapshot it reads, so it cannot be misread.
        let bytes = stream.as_str().as_bytes();
        format!(
            "{SNAPSHOT_STREAM_PREFIX}#{:016x}{:016x}",
            fnv1a(0xcbf2_9ce4_8422_2325, bytes),
            fnv1a(0x6c62_272e_07bb_0142, bytes)
        )
    };
    StreamId::new(name).expect("a snapshot stream id is at most 256 bytes with no control characters")
}

/// Whether `stream` is a snapshot stream (which projections skip).
pub fn is_snapshot_stream(stream: &StreamId) -> bool {
    stream.as_str().starts_with(SNAPSHOT_STREAM_PREFIX)
}

fn fnv1a(offset: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(offset, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// How a repository snapshots `A`: how often, and the state's codec, bound
/// where `A: Snapshottable` is known so the repository needs no such bound.
pub(crate) struct SnapshotConfig<A> {
    pub(crate) every: u64,
    schema: u32,
    encode: fn(&A, Format) -> Result<Vec<u8>, String>,
    decode: fn(&[u8], Format) -> Result<A, String>,
}

impl<A> Clone for SnapshotConfig<A> {
    fn clone(&self) -> Self {
        SnapshotConfig {
            every: self.every,
            schema: self.schema,
            encode: self.encode,
            decode: self.decode,
        }
    }
}

fn encode_state<A: Snapshottable>(state: &A, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Bincode => to_bincode(state).map_err(|e| e.to_string()),
        Format::Json => serde_json::to_vec(state).map_err(|e| e.to_string()),
    }
}

fn decode_state<A: Snapshottable>(bytes: &[u8], format: Format) -> Result<A, String> {
    match format {
        Format::Bincode => from_bincode(bytes, || "snapshot".to_string()).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

impl<A: Snapshottable> SnapshotConfig<A> {
    pub(crate) fn new(every: u64) -> SnapshotConfig<A> {
        SnapshotConfig {
            every: every.max(1),
            schema: A::SNAPSHOT_VERSION,
            encode: encode_state::<A>,
            decode: decode_state::<A>,
        }
    }
}

/// A snapshot that passed every check.
pub(crate) struct Snapshot<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    pub(crate) event_id: EventId,
}

impl<A: Aggregate> SnapshotConfig<A> {
    /// Whether a state at `version`, loaded from a snapshot at `base`
    /// (0: none), is due for a new snapshot.
    pub(crate) fn due(&self, base: u64, version: u64) -> bool {
        version.saturating_sub(base) >= self.every
    }

    /// The append that stores `state`, taken at `version` whose event has id
    /// `event_id`, or `None` when it cannot be encoded (logged).
    pub(crate) fn append(
        &self,
        stream: &StreamId,
        state: &A,
        version: u64,
        event_id: EventId,
        format: Format,
    ) -> Option<StreamAppend> {
        let payload = match (self.encode)(state, format) {
            Ok(p) => p,
            Err(e) => {
                warn!(%stream, version, error = %e, "cannot encode a snapshot; skipping it");
                return None;
            }
        };
        let mut metadata = Metadata::default();
        let extra = &mut metadata.extra;
        extra.insert(FORMAT_KEY.into(), format.as_str().into());
        extra.insert(KEY_OF.into(), stream.to_string());
        extra.insert(KEY_KIND.into(), A::KIND.into());
        extra.insert(KEY_VERSION.into(), version.to_string());
        extra.insert(KEY_EVENT_ID.into(), event_id.to_string());
        extra.insert(KEY_SCHEMA.into(), self.schema.to_string());
        let event = NewEvent::new(SNAPSHOT_EVENT_TYPE, payload).with_metadata(metadata);
        Some(StreamAppend::new(
            snapshot_stream(stream),
            ExpectedVersion::Any,
            vec![event],
        ))
    }

    /// The newest usable snapshot of `stream`, or `None`. Every reason to
    /// distrust a snapshot (another shape version, another stream, an
    /// unreadable record) makes it `None`: the caller replays the events.
    /// The caller still checks `event_id` against the stream.
    pub(crate) async fn load(&self, store: &dyn EventStore, stream: &StreamId) -> Option<Snapshot<A>> {
        let snapshots = snapshot_stream(stream);
        let newest = match store.read_stream(&snapshots, u64::MAX, Direction::Backward, 1).await {
            Ok(mut events) => events.pop()?,
            Err(e) => {
                warn!(%stream, error = %e, "cannot read the snapshot stream; replaying the events");
                return None;
            }
        };
        match self.check(stream, &newest) {
            Ok(snapshot) => Some(snapshot),
            Err(reason) => {
                debug!(%stream, snapshot_position = newest.position, reason, "ignoring snapshot");
                None
            }
        }
    }

    fn check(&self, stream: &StreamId, recorded: &RecordedEvent) -> Result<Snapshot<A>, String> {
        let extra = &recorded.metadata.extra;
        let get = |key: &str| extra.get(key).ok_or_else(|| format!("no {key}"));
        if recorded.event_type != SNAPSHOT_EVENT_TYPE {
            return Err(format!("event type {}", recorded.event_type));
        }
        if get(KEY_OF)? != stream.as_str() {
            return Err("taken of another stream".into());
        }
        if get(KEY_KIND)? != A::KIND {
            return Err("taken of another aggregate kind".into());
        }
        let schema: u32 = get(KEY_SCHEMA)?.parse().map_err(|_| "unreadable schema version")?;
        if schema != self.schema {
            return Err(format!("state shape version {schema}, this code has {}", self.schema));
        }
        let version: u64 = get(KEY_VERSION)?.parse().map_err(|_| "unreadable version")?;
        let event_id: EventId = get(KEY_EVENT_ID)?.parse().map_err(|_| "unreadable event id")?;
        let format = Format::parse(get(FORMAT_KEY)?).ok_or("unknown format")?;
        if version == 0 {
            return Err("version 0".into());
        }
        let state = (self.decode)(&recorded.payload, format)?;
        Ok(Snapshot {
            state,
            version,
            event_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_stream_names_are_valid_and_distinct() {
        let a = StreamId::new(format!("order-{}", "a".repeat(250))).unwrap();
        let b = StreamId::new(format!("order-{}", "b".repeat(250))).unwrap();
        assert_ne!(snapshot_stream(&a), snapshot_stream(&b));
        assert!(snapshot_stream(&a).as_str().len() <= MAX_STREAM_ID_BYTES);
        let short = StreamId::new("stock-x").unwrap();
        assert_eq!(snapshot_stream(&short).as_str(), "$snapshot-stock-x");
    }
}
