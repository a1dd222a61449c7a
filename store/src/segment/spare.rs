//! The next segment file, prepared in the background.
//!
//! A segment's first slice is preallocated by writing zeros (see
//! [`StorageFile::preallocate`] and `grow.rs`): 16 MiB by default, tens of
//! milliseconds of disk time. Done when the writer rolls, every append
//! waiting behind the roll waits for it too. So once the current segment
//! is half full, a thread prepares the next file under a name that is not
//! a segment's (`NNNNNNNNNN.seg.spare`), zeroed and synced a slice at a
//! time so the log's own `fdatasync`s are not stuck behind one huge
//! write-back. The roll then only writes the header, syncs it, renames the
//! file into place and syncs the directory.
//!
//! Crash safety: a spare holds nothing but zeros until it is renamed, and
//! its header is synced before the rename; a spare left by a crash is
//! removed when the log opens ([`remove_stale`]). If preparing fails, the
//! roll creates the segment itself as before; a spare is a speed-up, never
//! a dependency.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, warn};

use super::format::{SEGMENT_HEADER_BYTES, SEGMENT_VERSION, SegmentHeader, segment_name};
use super::log::{Log, Segment, show_path};
use super::storage::{Storage, StorageFile};
use crate::error::StoreError;

/// What a spare's file name ends with.
const SPARE_SUFFIX: &str = ".spare";

/// Zeros written (and then synced) per slice while preparing.
const SLICE_BYTES: u64 = 8 * 1024 * 1024;

/// The path of the spare for segment `seq` in `dir`.
fn spare_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{}{SPARE_SUFFIX}", segment_name(seq)))
}

/// Whether a file name in the log directory is a spare.
pub(crate) fn is_spare_name(name: &str) -> bool {
    name.strip_suffix(SPARE_SUFFIX)
        .is_some_and(|seg| super::format::parse_segment_name(seg).is_some())
}

/// Removes spares a crash left behind (they hold only zeros).
pub(crate) fn remove_stale(storage: &dyn Storage, dir: &Path, names: &[String]) -> Result<(), StoreError> {
    let mut removed = false;
    for name in names.iter().filter(|n| is_spare_name(n)) {
        let path = dir.join(name);
        debug!(file = %show_path(&path), "removing a spare segment file left by an earlier run");
        storage
            .remove(&path)
            .map_err(|e| StoreError::io(format!("removing {}", show_path(&path)), e))?;
        removed = true;
    }
    if removed {
        storage
            .sync_dir(dir)
            .map_err(|e| StoreError::io(format!("syncing {}", show_path(dir)), e))?;
    }
    Ok(())
}

/// A spare being prepared (or ready) for segment `seq`.
pub(crate) struct Spare {
    seq: u64,
    capacity: u64,
    /// How much of it is zero-filled.
    allocated: u64,
    path: PathBuf,
    job: io::Result<JoinHandle<io::Result<Arc<dyn StorageFile>>>>,
}

impl Spare {
    /// Starts preparing the spare for segment `seq`, `capacity` bytes long,
    /// its first `allocated` zero-filled.
    pub(crate) fn start(log: &Log, seq: u64, capacity: u64, allocated: u64) -> Spare {
        let allocated = allocated.clamp(SEGMENT_HEADER_BYTES, capacity);
        let storage = log.storage.clone();
        let path = spare_path(&log.dir, seq);
        let job_path = path.clone();
        // No thread: a job that has already failed, so the roll does the work.
        let job = std::thread::Builder::new()
            .name("strata-spare".into())
            .spawn(move || prepare(&*storage, &job_path, allocated));
        Spare {
            seq,
            capacity,
            allocated,
            path,
            job,
        }
    }

    /// Turns the spare into segment `seq` starting at `first_position`: the
    /// header written and synced, the file renamed into place and the
    /// directory synced. Waits for the preparation if it is still running.
    /// `Ok(None)` when the spare does not fit (another `seq`, too small, or
    /// not enough of it zero-filled for a first record of `record` bytes)
    /// or its preparation failed: the caller creates the segment itself.
    pub(crate) fn install(
        self,
        log: &Log,
        seq: u64,
        first_position: u64,
        capacity: u64,
        record: u64,
    ) -> Result<Option<Arc<Segment>>, StoreError> {
        let prepared = join(self.job);
        let fits = self.seq == seq && self.capacity >= capacity && self.allocated >= SEGMENT_HEADER_BYTES + record;
        let file = match prepared {
            Ok(file) if fits => file,
            Ok(_) => {
                discard(log, &self.path);
                return Ok(None);
            }
            Err(e) => {
                warn!(file = %show_path(&self.path), error = %e, "preparing the next segment failed; creating it on the roll");
                discard(log, &self.path);
                return Ok(None);
            }
        };
        let target = log.path_of(seq);
        let ctx = |what: &str| format!("{what} segment file {}", show_path(&target));
        let header = SegmentHeader {
            seq,
            first_position,
            version: SEGMENT_VERSION,
        };
        file.write_at(&header.encode(), 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io(ctx("writing the header of"), e))?;
        log.storage
            .rename(&self.path, &target)
            .map_err(|e| StoreError::io(ctx("renaming the spare into"), e))?;
        log.storage
            .sync_dir(&log.dir)
            .map_err(|e| StoreError::io(ctx("syncing the directory entry of"), e))?;
        Ok(Some(Arc::new(Segment::new(
            seq,
            first_position,
            file,
            self.capacity,
            self.allocated,
        ))))
    }
}

impl Spare {
    /// Waits for the preparation and removes the file (the store closes).
    pub(crate) fn discard(self, log: &Log) {
        let _ = join(self.job);
        discard(log, &self.path);
    }
}

/// Waits for a preparation: its file, or why there is none.
fn join(job: io::Result<JoinHandle<io::Result<Arc<dyn StorageFile>>>>) -> io::Result<Arc<dyn StorageFile>> {
    job?.join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread preparing it panicked")))
}

/// Removes a spare that will not be used; a failure only leaves a file the
/// next open removes.
fn discard(log: &Log, path: &Path) {
    if let Err(e) = log.storage.remove(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(file = %show_path(path), error = %e, "could not remove an unused spare segment file");
    }
}

/// Creates `path` (replacing a leftover) and zero-fills it to `capacity`
/// bytes, one synced slice at a time.
fn prepare(storage: &dyn Storage, path: &Path, capacity: u64) -> io::Result<Arc<dyn StorageFile>> {
    match storage.remove(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = storage.create(path)?;
    let mut len = 0;
    while len < capacity {
        len = (len + SLICE_BYTES).min(capacity);
        file.preallocate(len)?;
        file.sync_data()?;
    }
    debug_assert!(capacity >= SEGMENT_HEADER_BYTES);
    Ok(file)
}
