//! What an acknowledged write survives on the embedded backends, and how a
//! sled database is made to survive a power loss: shared by the log's
//! writer and by the tables kept beside it ([`crate::LocalTables`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// What an acknowledged append survives. Every mode keeps appends atomic:
/// after any crash an append is wholly there or wholly absent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Durability {
    /// The default. An append returns after sled's `flush()` and an
    /// `fdatasync` of sled's files: it survives a process crash, a kernel
    /// crash and a power loss (given a disk that honours cache flushes).
    /// Concurrent appends share one flush (group commit).
    #[default]
    Fsync,
    /// An append returns after sled's `flush()`, which ends in
    /// `sync_file_range`: the data reached the kernel and the disk was asked
    /// to write it, but its write cache was not flushed. Survives a process
    /// crash; a power loss or kernel crash may lose the latest appends.
    Flush,
    /// An append returns once it is in sled's memory; sled writes it out in
    /// the background (every 500 ms). A process crash may lose the latest
    /// appends. For benchmarks and tests.
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
