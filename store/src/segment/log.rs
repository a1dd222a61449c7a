//! The segment files of an open log: which exist, where a position is, and
//! reading records back (one at a time, or sequentially in large reads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::format::{
    HeaderError, RECORD_HEADER_BYTES, RecordHeader, SEGMENT_HEADER_BYTES, SEGMENT_VERSION, SegmentHeader, address,
    record_len, segment_name, split_address,
};
use super::storage::{Storage, StorageFile};
use crate::error::StoreError;

/// A record starting in a new block of this many bytes is a sparse point:
/// the in-memory position map keeps one entry per block.
pub(crate) const SPARSE_BLOCK: u64 = 64 * 1024;

/// How much a sequential read takes from a segment at a time.
const READ_CHUNK: usize = 1 << 20;

/// One segment file.
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) first_position: u64,
    pub(crate) file: Arc<dyn StorageFile>,
    /// The most bytes the writer fills it to (the segment size it was
    /// created with); then it rolls to the next segment.
    pub(crate) capacity: u64,
    /// How much of the file is there to read: zero-filled and synced ahead
    /// of the writer, which never writes past it (see `grow.rs`).
    pub(crate) allocated: AtomicU64,
    /// Where its records end, as far as this process wrote or scanned them.
    pub(crate) end: AtomicU64,
    /// The record format its header names (records appended to it are
    /// written in that format).
    pub(crate) version: u32,
}

impl Segment {
    /// A segment whose records (as far as this process knows) end right
    /// after its header, `allocated` bytes long so far.
    pub(crate) fn new(
        seq: u64,
        first_position: u64,
        file: Arc<dyn StorageFile>,
        capacity: u64,
        allocated: u64,
    ) -> Segment {
        Segment {
            seq,
            first_position,
            file,
            capacity,
            allocated: AtomicU64::new(allocated),
            end: AtomicU64::new(SEGMENT_HEADER_BYTES),
            version: SEGMENT_VERSION,
        }
    }

    /// The segment, found on disk in record format `version`.
    pub(crate) fn with_version(mut self, version: u32) -> Segment {
        self.version = version;
        self
    }

    /// How much of the file can be read.
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Acquire)
    }
}

/// The segments of a log and the sparse position → address map.
pub(crate) struct Log {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    segments: RwLock<Vec<Arc<Segment>>>,
    sparse: RwLock<BTreeMap<u64, u64>>,
}

/// Whether a record at `offset` (after a record at `previous`, if any, in
/// the same segment) is a sparse point.
pub(crate) fn is_sparse_point(previous: Option<u64>, offset: u64) -> bool {
    previous.is_none_or(|p| p / SPARSE_BLOCK != offset / SPARSE_BLOCK)
}

/// A record read back: where it is, its header and its checked body.
pub(crate) struct RawRecord {
    pub(crate) address: u64,
    pub(crate) header: RecordHeader,
    pub(crate) body: Bytes,
    /// The record format of its segment.
    pub(crate) version: u32,
}

impl RawRecord {
    pub(crate) fn len(&self) -> u64 {
        record_len(self.header.body_len as usize)
    }
}

impl Log {
    pub(crate) fn new(storage: Arc<dyn Storage>, dir: PathBuf) -> Log {
        Log {
            storage,
            dir,
            segments: RwLock::new(Vec::new()),
            sparse: RwLock::new(BTreeMap::new()),
        }
    }

    pub(crate) fn path_of(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_name(seq))
    }

    /// `log/NNNNNNNNNN.seg at byte offset N`, for errors.
    pub(crate) fn describe(&self, address: u64) -> String {
        let (seq, offset) = split_address(address);
        format!("segment file {} at byte offset {offset}", show_path(&self.path_of(seq)))
    }

    pub(crate) fn push_segment(&self, segment: Arc<Segment>) {
        self.segments.write().unwrap_or_else(|p| p.into_inner()).push(segment);
    }

    /// Puts `segment` in the place of the segment of the same sequence
    /// number (a scavenged copy swapped in); readers that hold the old one
    /// finish on it.
    pub(crate) fn replace_segment(&self, segment: Arc<Segment>) {
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        if let Ok(i) = segs.binary_search_by_key(&segment.seq, |s| s.seq) {
            segs[i] = segment;
        }
    }

    pub(crate) fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn segment(&self, seq: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let i = segs.binary_search_by_key(&seq, |s| s.seq).ok()?;
        Some(segs[i].clone())
    }

    pub(crate) fn next_segment(&self, seq: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segs.iter().find(|s| s.seq > seq).cloned()
    }

    pub(crate) fn add_sparse(&self, position: u64, address: u64) {
        self.sparse
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(position, address);
    }

    pub(crate) fn clear_sparse(&self) {
        self.sparse.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The address of a record at or before the one holding `position`.
    pub(crate) fn seek(&self, position: u64) -> Option<(u64, u64)> {
        let sparse = self.sparse.read().unwrap_or_else(|p| p.into_inner());
        sparse.range(..=position).next_back().map(|(p, a)| (*p, *a))
    }

    /// Creates segment `seq` of `capacity` bytes, its first `allocated`
    /// preallocated, its header and its directory entry durable before it
    /// is returned.
    pub(crate) fn create_segment(
        &self,
        seq: u64,
        first_position: u64,
        capacity: u64,
        allocated: u64,
    ) -> Result<Arc<Segment>, StoreError> {
        let allocated = allocated.clamp(SEGMENT_HEADER_BYTES, capacity);
        let path = self.path_of(seq);
        let ctx = |what: &str| format!("{what} segment file {}", show_path(&path));
        let file = self
            .storage
            .create(&path)
            .map_err(|e| StoreError::io(ctx("creating"), e))?;
        file.preallocate(allocated)
            .map_err(|e| StoreError::io(ctx("preallocating"), e))?;
        let header = SegmentHeader {
            seq,
            first_position,
            version: SEGMENT_VERSION,
        };
        file.write_at(&header.encode(), 0)
            .map_err(|e| StoreError::io(ctx("writing the header of"), e))?;
        file.sync_data().map_err(|e| StoreError::io(ctx("syncing"), e))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io(ctx("syncing the directory entry of"), e))?;
        Ok(Arc::new(Segment::new(seq, first_position, file, capacity, allocated)))
    }

    /// Reads and checks the record at `address`; `Corrupt` naming the
    /// segment file and offset when it is damaged or missing.
    pub(crate) fn read_record(&self, address: u64, len_hint: Option<u32>) -> Result<RawRecord, StoreError> {
        let (seq, offset) = split_address(address);
        let corrupt = |detail: String| StoreError::Corrupt {
            location: self.describe(address),
            detail,
        };
        let segment = self
            .segment(seq)
            .ok_or_else(|| corrupt("the index points into a segment that does not exist".into()))?;
        let room = segment.allocated().saturating_sub(offset);
        if room < RECORD_HEADER_BYTES as u64 {
            return Err(corrupt("the address is past the end of the segment".into()));
        }
        let want = len_hint
            .map_or(RECORD_HEADER_BYTES as u64, u64::from)
            .max(RECORD_HEADER_BYTES as u64)
            .min(room);
        let mut buf = vec![0u8; want as usize];
        segment
            .file
            .read_at(&mut buf, offset)
            .map_err(|e| StoreError::io(format!("reading {}", self.describe(address)), e))?;
        let header = match RecordHeader::decode(&buf) {
            Ok(h) => h,
            Err(HeaderError::Zero) => return Err(corrupt("no record there (zeros)".into())),
            Err(HeaderError::Bad(d)) => return Err(corrupt(d)),
        };
        let total = RECORD_HEADER_BYTES as u64 + header.body_len as u64;
        if total > room {
            return Err(corrupt(format!(
                "a body of {} bytes runs past the segment",
                header.body_len
            )));
        }
        if (buf.len() as u64) < total {
            let have = buf.len();
            buf.resize(total as usize, 0);
            segment
                .file
                .read_at(&mut buf[have..], offset + have as u64)
                .map_err(|e| StoreError::io(format!("reading {}", self.describe(address)), e))?;
        }
        let mut bytes = Bytes::from(buf);
        let body = bytes.split_off(RECORD_HEADER_BYTES).slice(..header.body_len as usize);
        header.check_body(&body).map_err(corrupt)?;
        Ok(RawRecord {
            address,
            header,
            body,
            version: segment.version,
        })
    }
}

/// Reads the records of one segment in order, in large reads.
pub(crate) struct SegmentCursor {
    pub(crate) segment: Arc<Segment>,
    /// Offset of the next record.
    pub(crate) offset: u64,
    /// Offset of the previous record, for the sparse-point rule.
    pub(crate) previous: Option<u64>,
    buf: Bytes,
    buf_at: u64,
    chunk: usize,
}

/// Why a cursor stopped.
pub(crate) enum Stop {
    /// Zeros, or the end of what the segment has allocated: no record here.
    End,
    /// Not a valid record at this offset; what is wrong.
    Bad(String),
    /// The storage failed.
    Io(std::io::Error),
}

impl SegmentCursor {
    pub(crate) fn new(segment: Arc<Segment>, offset: u64) -> SegmentCursor {
        SegmentCursor {
            segment,
            offset,
            previous: None,
            buf: Bytes::new(),
            buf_at: 0,
            chunk: READ_CHUNK,
        }
    }

    /// Reads at least `chunk` bytes at a time (at most the default 1 MiB).
    pub(crate) fn with_chunk(mut self, chunk: usize) -> SegmentCursor {
        self.chunk = chunk.clamp(RECORD_HEADER_BYTES, READ_CHUNK);
        self
    }

    pub(crate) fn address(&self) -> u64 {
        address(self.segment.seq, self.offset)
    }

    /// `n` bytes at `at`, from the buffer or a new read of at least a chunk.
    fn bytes(&mut self, at: u64, n: usize) -> Result<Bytes, Stop> {
        let have_end = self.buf_at + self.buf.len() as u64;
        if at < self.buf_at || at + n as u64 > have_end {
            let len = (n.max(self.chunk) as u64).min(self.segment.allocated().saturating_sub(at)) as usize;
            if len < n {
                return Err(Stop::End);
            }
            let mut v = vec![0u8; len];
            self.segment.file.read_at(&mut v, at).map_err(Stop::Io)?;
            self.buf = Bytes::from(v);
            self.buf_at = at;
        }
        let start = (at - self.buf_at) as usize;
        Ok(self.buf.slice(start..start + n))
    }

    /// The next record, checked; the cursor moves past it.
    pub(crate) fn next_record(&mut self) -> Result<RawRecord, Stop> {
        if self.offset + RECORD_HEADER_BYTES as u64 > self.segment.allocated() {
            return Err(Stop::End);
        }
        let head = self.bytes(self.offset, RECORD_HEADER_BYTES)?;
        let header = match RecordHeader::decode(&head) {
            Ok(h) => h,
            Err(HeaderError::Zero) => return Err(Stop::End),
            Err(HeaderError::Bad(d)) => return Err(Stop::Bad(d)),
        };
        let body_at = self.offset + RECORD_HEADER_BYTES as u64;
        if body_at + header.body_len as u64 > self.segment.allocated() {
            return Err(Stop::Bad(format!(
                "a body of {} bytes runs past the segment",
                header.body_len
            )));
        }
        let body = match self.bytes(body_at, header.body_len as usize) {
            Ok(b) => b,
            Err(Stop::End) => return Err(Stop::Bad("the body runs past the segment".into())),
            Err(e) => return Err(e),
        };
        header.check_body(&body).map_err(Stop::Bad)?;
        let record = RawRecord {
            address: self.address(),
            header,
            body,
            version: self.segment.version,
        };
        self.previous = Some(self.offset);
        self.offset += record.len();
        Ok(record)
    }
}

pub(crate) fn show_path(path: &Path) -> String {
    path.display().to_string()
}
