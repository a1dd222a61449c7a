//! What an acknowledged write survives on the embedded log, and how a sled
//! database is made to survive a power loss: one [`Durability`] for the
//! log ([`crate::SegmentStore`]) and for the tables kept beside it
//! ([`crate::LocalTables`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// What an acknowledged append of the embedded log
/// ([`SegmentStore`](crate::SegmentStore)) survives, and with it a
/// [`LocalTables::sync`](crate::LocalTables::sync) of the tables beside it.
///
/// In every mode an append is atomic (one checksummed record): after any
/// crash it is wholly there or wholly absent, and a new segment is synced,
/// with its directory entry, before anything is written into it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Durability {
    /// The default. An append returns after an `fdatasync` of the segment
    /// that holds it (one per group of concurrent appends): it survives a
    /// process crash, a kernel crash and a power loss, given a disk that
    /// honours cache flushes. A sync of the tables is sled's `flush()` and
    /// an `fdatasync` of sled's files.
    #[default]
    Fsync,
    /// An append returns once its record is written to the operating
    /// system (`pwrite`), which syncs it within about 100 ms. Survives a
    /// process crash; a kernel crash or power loss may lose the appends of
    /// the last moments (never half of one). A sync of the tables is sled's
    /// `flush()` alone (written to the operating system). For benchmarks
    /// and for data that can be replayed.
    Buffered,
}

/// Makes what sled's `flush()` wrote survive a power loss.
///
/// sled 0.34's flush ends in `sync_file_range`, which does not flush the
/// disk's write cache, and writes large values to files under `blobs/`
/// without any sync. This `fdatasync`s those blob files (once each, and the
/// directory when new ones appeared), then sled's main file.
pub(crate) struct SledFiles {
    db_file: File,
    blobs: PathBuf,
    synced: HashSet<OsString>,
}

impl SledFiles {
    /// Opens the files of the sled database in `dir` (opened already) and
    /// syncs the directory, so the files sled created are reachable after a
    /// power loss too.
    pub(crate) fn open(dir: &Path) -> io::Result<SledFiles> {
        let files = SledFiles {
            db_file: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced: HashSet::new(),
        };
        File::open(dir)?.sync_all()?;
        Ok(files)
    }

    /// `fdatasync`s the blob files not synced yet (and their directory when
    /// new ones appeared), then sled's main file. Call after sled's `flush()`.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        match fs::read_dir(&self.blobs) {
            Ok(entries) => {
                let mut present = HashSet::new();
                let mut new = false;
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    if !self.synced.contains(&name) {
                        match File::open(entry.path()) {
                            Ok(f) => f.sync_data()?,
                            // Collected by sled between the listing and the open.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        }
                        new = true;
                    }
                    present.insert(name);
                }
                if new {
                    File::open(&self.blobs)?.sync_all()?;
                }
                self.synced = present;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.db_file.sync_data()
    }
}
