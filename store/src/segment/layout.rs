//! Which layout a data directory is in: the segment log's, or one this
//! build refuses to open ([`DataLayout`]).

use std::path::Path;

use super::storage::Storage;
use crate::error::StoreError;

/// A layout of a data directory that this build does not open, named in
/// [`StoreError::UnsupportedLayout`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DataLayout {
    /// strata's former embedded log (`SledStore`, strata 0.1 before the
    /// segment log): one sled database at the top of the directory (its
    /// files `conf` and `db`) holding every event as sled keys.
    Sled,
}

impl std::fmt::Display for DataLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataLayout::Sled => f.write_str(
                "the sled layout of strata before the segment log (a sled database at the top of the directory)",
            ),
        }
    }
}

/// Refuses a directory in a layout this build does not open, before
/// anything in it is created or changed. An empty directory, one that does
/// not exist, or one in the segment layout (`log/`, `index/`, `tables/`)
/// passes.
pub(crate) fn check(storage: &dyn Storage, path: &Path) -> Result<(), StoreError> {
    let names = match storage.list(path) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(format!("listing {}", path.display()), e)),
    };
    let has = |n: &str| names.iter().any(|name| name == n);
    if has("conf") && has("db") && !has("log") {
        return Err(StoreError::UnsupportedLayout {
            path: path.to_path_buf(),
            layout: DataLayout::Sled,
        });
    }
    Ok(())
}
