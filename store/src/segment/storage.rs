//! The storage seam of [`SegmentStore`](super::SegmentStore): every byte the
//! segment log reads or writes goes through [`Storage`] and [`StorageFile`].
//!
//! [`FileStorage`] is the real thing (positional I/O, `fdatasync`, directory
//! `fsync`, `flock`); `SimDisk` (feature `sim`) is a simulated disk for
//! crash tests. The contract every implementation keeps:
//!
//! - [`StorageFile::write_at`] may be lost, torn or reordered with other
//!   unsynced writes at a power loss, until [`StorageFile::sync_data`]
//!   returns: then every write to the file before it is durable, and so is
//!   the file's length.
//! - A file's directory entry (create, rename, remove) is durable only after
//!   [`Storage::sync_dir`] of its directory returns.
//! - A failed call may have done part of its work: after an error the caller
//!   must assume nothing about what reached the disk.

use std::any::Any;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One open file of a [`Storage`].
pub trait StorageFile: Send + Sync + 'static {
    /// Fills `buf` from `offset`; an error (`UnexpectedEof`) if the file ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the file if needed. Not
    /// durable until [`StorageFile::sync_data`].
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) the file to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file `len` bytes long with every block allocated and
    /// written (zeros), so later writes into it overwrite blocks and a
    /// `fdatasync` has no file metadata to write.
    fn preallocate(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: every write before it, and the length, are durable.
    fn sync_data(&self) -> io::Result<()>;
}

/// A directory tree of files: what the segment log needs of a file system.
pub trait Storage: Send + Sync + 'static {
    /// Creates `path` and its parents (durable only after [`Storage::sync_dir`] of each parent).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a new, empty file; an error if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created, renamed, removed) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The names of the files in a directory (not recursive), in no order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Takes the exclusive lock of the directory `dir` for this process:
    /// `Ok(None)` when another owner holds it. The lock is held until the
    /// returned guard is dropped.
    fn lock(&self, dir: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>>;
}

/// The real file system: positional reads and writes, `fdatasync`, the
/// directory synced with `fsync`, and the directory lock an `flock` on
/// `strata.lock`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStorage;

struct RealFile(File);

/// Zeros written at a time when preallocating.
const ZERO_CHUNK: usize = 1 << 20;

impl StorageFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        // Zeros written, not `fallocate`: an extent allocated but unwritten
        // has to be converted when first written, which `fdatasync` then
        // journals, and that costs what preallocating was meant to save.
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut at = self.len()?;
        while at < len {
            let n = (len - at).min(ZERO_CHUNK as u64) as usize;
            self.0.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FileStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }

    fn lock(&self, dir: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("strata.lock"))?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(Box::new(lock))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_round_trip_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStorage;
        let path = dir.path().join("a");
        let f = fs.create(&path).unwrap();
        assert!(fs.create(&path).is_err(), "create refuses an existing file");
        f.preallocate(10_000).unwrap();
        assert_eq!(f.len().unwrap(), 10_000);
        f.write_at(b"hello", 4096).unwrap();
        f.sync_data().unwrap();
        let mut buf = [0u8; 5];
        fs.open(&path).unwrap().read_at(&mut buf, 4096).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(f.read_at(&mut buf, 9_998).is_err(), "a read past the end fails");
        fs.rename(&path, &dir.path().join("b")).unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert!(fs.list(dir.path()).unwrap().contains(&"b".to_string()));
        let guard = fs.lock(dir.path()).unwrap();
        assert!(guard.is_some());
        assert!(fs.lock(dir.path()).unwrap().is_none(), "a second lock is refused");
        drop(guard);
        assert!(fs.lock(dir.path()).unwrap().is_some());
    }
}
