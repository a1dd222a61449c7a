//! `SimDisk`: a simulated disk for crash tests (feature `sim`).
//!
//! It keeps what was synced apart from what was only written, in the manner
//! of SQLite's crash-test VFS, TigerBeetle's simulated storage and LazyFS:
//!
//! - a file's writes are *pending* until `sync_data`; a directory's
//!   creates, renames and removes are pending until `sync_dir` of it;
//! - [`SimDisk::power_loss`] keeps, drops or tears each pending write at
//!   sector granularity (512 B or 4 KiB, chosen by the seed), applies the
//!   kept pieces in a shuffled order (so a later write may survive an
//!   earlier one), keeps a random prefix of the pending directory changes,
//!   and forgets everything else; the disk then serves the result;
//! - [`SimDisk::crash_after`] makes the disk die after a number of
//!   operations (that call and every later one fail, as the machine
//!   losing power mid-flight would look to the process);
//! - [`SimDisk::fail_once`] fails one chosen call with an I/O error and
//!   keeps working;
//! - [`SimDisk::flip_bit`] damages synced data.
//!
//! Directories themselves are durable as soon as they are created.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{Storage, StorageFile};

/// A call of the storage seam, for [`SimDisk::fail_once`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SimOp {
    /// [`StorageFile::write_at`] (preallocation included).
    Write,
    /// [`StorageFile::sync_data`].
    Sync,
    /// [`Storage::create`].
    Create,
    /// [`Storage::sync_dir`].
    SyncDir,
    /// [`Storage::rename`].
    Rename,
    /// [`StorageFile::read_at`].
    Read,
}

/// What a [`SimDisk::power_loss`] did with the pending writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PowerLoss {
    /// Sector pieces of pending writes that reached the disk.
    pub kept: u64,
    /// Sector pieces that were lost.
    pub dropped: u64,
    /// Pending directory changes kept, of `dir_pending`.
    pub dir_kept: usize,
    /// Pending directory changes in all.
    pub dir_pending: usize,
    /// The sector size used for tearing.
    pub sector: usize,
}

#[derive(Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Default)]
struct Inode {
    synced: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    /// Paths as the running process sees them.
    current: BTreeMap<PathBuf, u64>,
    /// Paths as they would be after a power loss with no pending change kept.
    durable: BTreeMap<PathBuf, u64>,
    /// Directory changes not yet synced: (directory, change).
    dir_pending: Vec<(PathBuf, DirOp)>,
    dirs: Vec<PathBuf>,
    next_inode: u64,
    /// Bumped at each power loss: handles from before it are dead.
    generation: u64,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    fail: Vec<(SimOp, u64)>,
    counts: HashMap<SimOp, u64>,
    locks: HashMap<PathBuf, u64>,
    next_lock: u64,
}

/// A simulated disk: see the module documentation. Cheap to clone; clones
/// share the disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("SimDisk")
            .field("files", &s.current.len())
            .field("ops", &s.ops)
            .field("crashed", &s.crashed)
            .finish()
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated I/O error in {what}"))
}

/// splitmix64: a small deterministic generator, so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn apply(content: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*offset as usize..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => content.resize(*len as usize, 0),
    }
}

impl State {
    /// Counts a mutating call; fails it if the disk died or a failure was planned.
    fn step(&mut self, op: SimOp) -> io::Result<()> {
        if self.crashed {
            return Err(eio("a disk that lost power"));
        }
        let count = self.counts.entry(op).or_insert(0);
        *count += 1;
        let n = *count;
        if let Some(i) = self.fail.iter().position(|(o, at)| *o == op && *at == n) {
            self.fail.remove(i);
            return Err(eio(&format!("{op:?} (planned failure)")));
        }
        if op == SimOp::Read {
            return Ok(());
        }
        self.ops += 1;
        if self.crash_at.is_some_and(|at| self.ops > at) {
            self.crashed = true;
            return Err(eio("a disk that lost power"));
        }
        Ok(())
    }

    fn inode(&mut self, ino: u64, generation: u64) -> io::Result<&mut Inode> {
        if generation != self.generation {
            return Err(eio("a file handle from before a power loss"));
        }
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating calls (writes, syncs, creates, renames, removes) made so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The disk loses power after `ops` more mutating calls: the next call
    /// after them and every call after that fail, until [`SimDisk::power_loss`].
    pub fn crash_after(&self, ops: u64) {
        let mut s = self.lock();
        s.crash_at = Some(s.ops + ops);
    }

    /// Whether the disk has lost power (and not been revived by [`SimDisk::power_loss`]).
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The `nth` next call of `op` (1 = the very next) fails once with an I/O error.
    pub fn fail_once(&self, op: SimOp, nth: u64) {
        let mut s = self.lock();
        let at = s.counts.get(&op).copied().unwrap_or(0) + nth;
        s.fail.push((op, at));
    }

    /// A power loss, decided by `seed`: each pending write is kept, dropped
    /// or torn at sector boundaries, kept pieces land in a shuffled order,
    /// a random prefix of pending directory changes is kept. Then the disk
    /// works again, holding only that; handles opened before are dead.
    pub fn power_loss(&self, seed: u64) -> PowerLoss {
        let mut rng = Rng(seed);
        let mut s = self.lock();
        let mut report = PowerLoss {
            sector: if rng.below(2) == 0 { 512 } else { 4096 },
            ..PowerLoss::default()
        };
        // How likely a sector piece survives: all, none, or a coin per piece.
        let keep_per_mille = [1000, 0, 500, 900, 100][rng.below(5) as usize];
        let mut inos: Vec<u64> = s.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let inode = s.inodes.get_mut(&ino).expect("listed");
            let mut pieces = Vec::new();
            for op in inode.pending.drain(..) {
                match op {
                    Pending::Write { offset, data } => {
                        let mut at = 0usize;
                        while at < data.len() {
                            let abs = offset as usize + at;
                            let end = ((abs / report.sector + 1) * report.sector - offset as usize).min(data.len());
                            pieces.push(Pending::Write {
                                offset: abs as u64,
                                data: data[at..end].to_vec(),
                            });
                            at = end;
                        }
                    }
                    other => pieces.push(other),
                }
            }
            // Fisher-Yates: the disk writes back in an order of its own.
            for i in (1..pieces.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                pieces.swap(i, j);
            }
            let mut content = inode.synced.clone();
            for piece in pieces {
                if rng.below(1000) < keep_per_mille {
                    apply(&mut content, &piece);
                    report.kept += 1;
                } else {
                    report.dropped += 1;
                }
            }
            inode.synced = content.clone();
            inode.current = content;
        }
        report.dir_pending = s.dir_pending.len();
        report.dir_kept = rng.below(s.dir_pending.len() as u64 + 1) as usize;
        let kept: Vec<(PathBuf, DirOp)> = s.dir_pending.drain(..).take(report.dir_kept).collect();
        for (_, op) in kept {
            match op {
                DirOp::Link(p, ino) => {
                    s.durable.insert(p, ino);
                }
                DirOp::Unlink(p) => {
                    s.durable.remove(&p);
                }
            }
        }
        s.current = s.durable.clone();
        let live: std::collections::HashSet<u64> = s.current.values().copied().collect();
        s.inodes.retain(|ino, _| live.contains(ino));
        s.generation += 1;
        s.crashed = false;
        s.crash_at = None;
        s.fail.clear();
        s.locks.clear();
        report
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` of the file at `path`,
    /// in its synced data and in what reads see.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut s = self.lock();
        let ino = *s
            .current
            .get(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        let inode = s.inodes.get_mut(&ino).expect("linked inode exists");
        for content in [&mut inode.synced, &mut inode.current] {
            if let Some(b) = content.get_mut(offset as usize) {
                *b ^= 1 << (bit % 8);
            }
        }
        Ok(())
    }

    /// What reads of the file at `path` see now.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        let ino = s.current.get(path)?;
        Some(s.inodes[ino].current.clone())
    }

    /// Every file path, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().current.keys().cloned().collect()
    }
}

struct SimFile {
    disk: SimDisk,
    ino: u64,
    generation: u64,
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.step(SimOp::Read)?;
        let inode = s.inode(self.ino, self.generation)?;
        let end = offset as usize + buf.len();
        if end > inode.current.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        buf.copy_from_slice(&inode.current[offset as usize..end]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.step(SimOp::Write)?;
        let inode = s.inode(self.ino, self.generation)?;
        let op = Pending::Write {
            offset,
            data: buf.to_vec(),
        };
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut s = self.disk.lock();
        let generation = self.generation;
        Ok(s.inode(self.ino, generation)?.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.step(SimOp::Write)?;
        let inode = s.inode(self.ino, self.generation)?;
        let op = Pending::SetLen(len);
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn preallocate(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len > current {
            self.write_at(&vec![0u8; (len - current) as usize], current)?;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.step(SimOp::Sync)?;
        let inode = s.inode(self.ino, self.generation)?;
        inode.synced = inode.current.clone();
        inode.pending.clear();
        Ok(())
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

struct SimLock {
    disk: SimDisk,
    dir: PathBuf,
    token: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.disk.lock();
        if s.locks.get(&self.dir) == Some(&self.token) {
            s.locks.remove(&self.dir);
        }
    }
}

impl Storage for SimDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.crashed {
            return Err(eio("a disk that lost power"));
        }
        if !s.dirs.iter().any(|d| d == path) {
            s.dirs.push(path.to_path_buf());
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = self.lock();
        s.step(SimOp::Create)?;
        if s.current.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        s.next_inode += 1;
        let ino = s.next_inode;
        s.inodes.insert(ino, Inode::default());
        s.current.insert(path.to_path_buf(), ino);
        s.dir_pending.push((parent(path), DirOp::Link(path.to_path_buf(), ino)));
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            ino,
            generation: s.generation,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let s = self.lock();
        if s.crashed {
            return Err(eio("a disk that lost power"));
        }
        let ino = *s
            .current
            .get(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())))?;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            ino,
            generation: s.generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step(SimOp::Rename)?;
        let ino = s
            .current
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        s.current.insert(to.to_path_buf(), ino);
        s.dir_pending.push((parent(to), DirOp::Link(to.to_path_buf(), ino)));
        s.dir_pending.push((parent(from), DirOp::Unlink(from.to_path_buf())));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step(SimOp::Write)?;
        s.current
            .remove(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        s.dir_pending.push((parent(path), DirOp::Unlink(path.to_path_buf())));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step(SimOp::SyncDir)?;
        let pending = std::mem::take(&mut s.dir_pending);
        for (dir, op) in pending {
            if dir != path {
                s.dir_pending.push((dir, op));
                continue;
            }
            match op {
                DirOp::Link(p, ino) => {
                    s.durable.insert(p, ino);
                }
                DirOp::Unlink(p) => {
                    s.durable.remove(&p);
                }
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        Ok(s.current
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn lock(&self, dir: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let mut s = SimDisk::lock(self);
        if s.locks.contains_key(dir) {
            return Ok(None);
        }
        s.next_lock += 1;
        let token = s.next_lock;
        s.locks.insert(dir.to_path_buf(), token);
        Ok(Some(Box::new(SimLock {
            disk: self.clone(),
            dir: dir.to_path_buf(),
            token,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_survives_and_unsynced_may_not() {
        let disk = SimDisk::new();
        let dir = Path::new("/d");
        let p = dir.join("f");
        let f = disk.create(&p).unwrap();
        f.write_at(b"synced", 0).unwrap();
        f.sync_data().unwrap();
        disk.sync_dir(dir).unwrap();
        f.write_at(&[7u8; 8192], 6).unwrap();
        let mut seen_dropped = false;
        let mut seen_kept = false;
        for seed in 0..20 {
            let copy = SimDisk::new();
            {
                let mut a = copy.lock();
                let b = disk.lock();
                a.inodes = b.inodes.clone();
                a.current = b.current.clone();
                a.durable = b.durable.clone();
            }
            let r = copy.power_loss(seed);
            let content = copy.read_file(&p).unwrap();
            assert_eq!(&content[..6], b"synced", "seed {seed}");
            seen_dropped |= r.dropped > 0;
            seen_kept |= r.kept > 0;
        }
        assert!(seen_dropped && seen_kept);
        assert!(f.read_at(&mut [0u8; 1], 0).is_ok(), "the original disk still works");
    }

    #[test]
    fn an_unsynced_create_can_vanish_and_old_handles_die() {
        let (mut vanished, mut stayed) = (false, false);
        for seed in 0..20 {
            let disk = SimDisk::new();
            let p = Path::new("/d/f");
            let f = disk.create(p).unwrap();
            f.write_at(b"x", 0).unwrap();
            f.sync_data().unwrap();
            // The directory was never synced: the entry may or may not stay.
            disk.power_loss(seed);
            vanished |= disk.files().is_empty();
            stayed |= disk.read_file(p).as_deref() == Some(&b"x"[..]);
            assert!(f.write_at(b"y", 0).is_err(), "a handle from before the loss is dead");
        }
        assert!(vanished && stayed);
    }

    #[test]
    fn crash_after_and_fail_once() {
        let disk = SimDisk::new();
        let f = disk.create(Path::new("/d/f")).unwrap();
        disk.fail_once(SimOp::Sync, 1);
        assert!(f.sync_data().is_err());
        assert!(f.sync_data().is_ok(), "a planned failure happens once");
        disk.crash_after(1);
        assert!(f.write_at(b"a", 0).is_ok());
        assert!(f.write_at(b"b", 0).is_err());
        assert!(disk.has_crashed());
        assert!(f.sync_data().is_err(), "everything fails after the power is gone");
        disk.flip_bit(Path::new("/d/f"), 0, 0).unwrap();
    }
}
