//! The crate's use of threads beside its caller's: how many cores there
//! are (a rebuild folds its models in lanes, and a large commit is sorted
//! on two threads, only when there is more than one), and large values
//! freed on another thread.

use std::sync::OnceLock;

/// The cores this process may use (read once: the standard library reads
/// the cgroup's quota from files on every call).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Drops `value` on one of the Tokio runtime's blocking threads (inline
/// outside a runtime): freeing a page of events or a commit's hundreds of
/// thousands of keys and values takes a tenth of what building them took,
/// and the caller need not wait for it.
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // Not awaited: nothing depends on it, and a drop cannot fail.
        drop(runtime.spawn_blocking(move || drop(value)));
    }
}
