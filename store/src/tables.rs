//! [`LocalTables`]: what other crates keep beside the embedded log (read
//! models, HTTP idempotency records), as named sled trees, with one call
//! that makes them as durable as the log's appends.
//!
//! Callers get the tables from the store ([`SegmentStore::tables`]) and
//! never learn which sled database backs them: for the segment log, whose
//! sled holds only indexes derived from the log, a database of their own in
//! `tables/` under the data directory. Data that cannot be rebuilt from the
//! log lives here, never in a derived index.
//!
//! [`SegmentStore::tables`]: crate::SegmentStore::tables

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::warn;

use crate::durability::{Durability, SledFiles};
use crate::error::StoreError;

/// sled's page cache for tables in a database of their own.
const TABLES_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Named tables (sled trees) beside the embedded log.
///
/// Each crate names its trees with a prefix of its own
/// (`projection.<name>.*`, `http.idempotency`). Names reserved for
/// strata's own trees (`strata-*`) and sled's (`__sled__*`) are refused. A tree is written
/// with sled's API (batches are atomic within one tree; a transaction may
/// span trees of one `LocalTables`); [`LocalTables::sync`] makes every
/// write so far as durable as the log's appends.
///
/// Cheap to clone; clones share the database, which stays open (and the
/// data directory locked) while any clone lives.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use strata_store::SegmentStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = SegmentStore::open(dir.path())?;
/// let tables = store.tables()?;
/// let records = tables.open_tree("example.records")?;
/// records.insert("k", "v")?;
/// tables.sync().await?; // on disk, as durable as an append
/// assert!(tables.tree_names().contains(&"example.records".to_string()));
/// assert!(tables.open_tree("strata-log").is_err());
/// # Ok::<(), strata_store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct LocalTables {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    /// The database's directory (its files are synced in `Fsync` mode).
    dir: PathBuf,
    durability: Durability,
    /// Tickets of [`LocalTables::sync`]: every call takes one; a sync
    /// covers every ticket taken before it started.
    requested: AtomicU64,
    done: AtomicU64,
    /// Held by the one sync running; `None` unless the mode is `Fsync`
    /// (or while a sync that was cancelled or failed had them: they are
    /// opened again).
    files: tokio::sync::Mutex<Option<SledFiles>>,
    /// The data directory's lock, when the tables belong to a store's
    /// directory: kept while the tables are in use.
    _lock: Option<Arc<dyn Any + Send + Sync>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.db.flush() {
            warn!(error = %e, "flushing the tables on close failed");
        }
    }
}

impl std::fmt::Debug for LocalTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTables")
            .field("durability", &self.inner.durability)
            .field("trees", &self.tree_names())
            .finish()
    }
}

impl LocalTables {
    /// Opens (or creates) tables in a sled database of their own in
    /// directory `dir`, with nothing else in it: for a data directory's
    /// tables apart from its log, or tables a test needs without a store.
    /// One process opens a directory at a time: a second open is
    /// [`StoreError::Locked`].
    pub fn open(dir: impl AsRef<Path>, durability: Durability) -> Result<LocalTables, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let db = open_sled(dir, TABLES_CACHE_BYTES)?;
        LocalTables::new(db, dir, durability, None)
    }

    /// Opens (or creates) tables in a sled database of their own in `dir`,
    /// for a store whose directory `lock` they keep while in use.
    pub(crate) fn open_locked(
        dir: &Path,
        durability: Durability,
        lock: Arc<dyn Any + Send + Sync>,
    ) -> Result<LocalTables, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io(format!("syncing {}", parent.display()), e))?;
        }
        let db = open_sled(dir, TABLES_CACHE_BYTES)?;
        LocalTables::new(db, dir, durability, Some(lock))
    }

    fn new(
        db: sled::Db,
        dir: &Path,
        durability: Durability,
        lock: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Result<LocalTables, StoreError> {
        let files = match durability {
            Durability::Fsync => {
                Some(SledFiles::open(dir).map_err(|e| StoreError::io("opening sled's files for fsync", e))?)
            }
            _ => None,
        };
        Ok(LocalTables {
            inner: Arc::new(Inner {
                db,
                dir: dir.to_path_buf(),
                durability,
                requested: AtomicU64::new(0),
                done: AtomicU64::new(0),
                files: tokio::sync::Mutex::new(files),
                _lock: lock,
            }),
        })
    }

    /// What [`LocalTables::sync`] makes writes survive: the log's
    /// [`Durability`].
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Opens (creating when absent) the tree `name`. Errors:
    /// [`StoreError::InvalidTableName`] for a name the tables refuse.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        check_name(name)?;
        Ok(self.inner.db.open_tree(name)?)
    }

    /// Removes the tree `name` and everything in it; false when there was
    /// none.
    pub fn drop_tree(&self, name: &str) -> Result<bool, StoreError> {
        check_name(name)?;
        Ok(self.inner.db.drop_tree(name)?)
    }

    /// The names of the trees there are, in no particular order (the
    /// log's and sled's own left out).
    pub fn tree_names(&self) -> Vec<String> {
        self.inner
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| check_name(n).is_ok())
            .collect()
    }

    /// Writes everything written so far out to the operating system, with
    /// sled's `flush()` (which ends in `sync_file_range`, not a cache flush
    /// of the disk): enough to order writes across a process crash, e.g. a
    /// new generation of a read model before the pointer that names it.
    /// Blocks; see [`LocalTables::sync`] for durability.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Makes every write to the tables so far as durable as the log's
    /// appends: with [`Durability::Fsync`] sled's flush and an `fdatasync`
    /// of its files (the same as an append's group commit); with
    /// [`Durability::Buffered`] the flush alone (written to the operating
    /// system, as a buffered append is). Concurrent callers share one
    /// flush. Errors: [`StoreError::Sled`], or [`StoreError::Io`] when the
    /// `fdatasync` failed (what is on disk is then unknown).
    pub async fn sync(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let ticket = inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut files = inner.files.lock().await;
        if inner.done.load(Ordering::SeqCst) >= ticket {
            // A sync that started after this call's writes covered them.
            return Ok(());
        }
        let target = inner.requested.load(Ordering::SeqCst);
        inner.db.flush_async().await?;
        if inner.durability == Durability::Fsync {
            let taken = match files.take() {
                Some(taken) => taken,
                None => SledFiles::open(&inner.dir).map_err(|e| StoreError::io("opening sled's files for fsync", e))?,
            };
            let (back, synced) = tokio::task::spawn_blocking(move || {
                let mut taken = taken;
                let synced = taken.sync();
                (taken, synced)
            })
            .await
            .map_err(|e| StoreError::Unavailable {
                reason: format!("the fsync of the tables did not finish: {e}"),
            })?;
            *files = Some(back);
            synced.map_err(|e| StoreError::io("fsyncing sled's files for the tables", e))?;
        }
        inner.done.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }
}

/// Refuses names that are not the tables' to use.
fn check_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.starts_with("strata-") {
        "names starting with `strata-` are reserved for strata's own"
    } else if name.starts_with("__sled__") {
        "names starting with `__sled__` are sled's"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidTableName {
        name: name.to_string(),
        reason,
    })
}

/// Opens the sled database in `dir`, waiting a little while its own file
/// lock is still held.
///
/// sled 0.34 releases its lock on `db` only when the last of its background
/// threads of a previous open in this process lets go of its files, which
/// can be a moment after that database was dropped. Reopening at once (a
/// restart in tests, or a service that closes and reopens) then failed now
/// and then with "could not acquire lock". Still held after the wait: the
/// directory is another owner's, [`StoreError::Locked`].
pub(crate) fn open_sled(dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, StoreError> {
    const WAIT: Duration = Duration::from_secs(5);
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(500));
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= WAIT {
                    return Err(StoreError::Locked {
                        path: PathBuf::from(dir),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_log_and_of_sled_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
        for bad in ["", "strata-log", "strata-anything", "__sled__default"] {
            assert!(
                matches!(tables.open_tree(bad), Err(StoreError::InvalidTableName { .. })),
                "{bad:?}"
            );
            assert!(tables.drop_tree(bad).is_err(), "{bad:?}");
        }
        assert!(tables.tree_names().is_empty(), "sled's default tree is not listed");
    }

    #[tokio::test]
    async fn trees_survive_a_reopen_after_sync_and_drop_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let tables = LocalTables::open(dir.path(), Durability::Fsync).unwrap();
            let t = tables.open_tree("a.records").unwrap();
            t.insert("k", "v").unwrap();
            tables.open_tree("b.gone").unwrap().insert("x", "y").unwrap();
            // Concurrent syncs share one flush and all return once it is done.
            let (x, y) = tokio::join!(tables.sync(), tables.sync());
            x.unwrap();
            y.unwrap();
            assert!(tables.drop_tree("b.gone").unwrap());
            assert!(!tables.drop_tree("b.gone").unwrap());
            tables.flush().unwrap();
        }
        let tables = LocalTables::open(dir.path(), Durability::Fsync).unwrap();
        assert_eq!(tables.tree_names(), vec!["a.records".to_string()]);
        let t = tables.open_tree("a.records").unwrap();
        assert_eq!(t.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_second_open_of_the_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _tables = LocalTables::open(dir.path(), Durability::Buffered).unwrap();
        assert!(matches!(
            LocalTables::open(dir.path(), Durability::Buffered),
            Err(StoreError::Locked { .. })
        ));
    }
}
