//! The crate's use of threads beside its caller's: how many cores there
//! are, work run side by side on scoped threads (a rebuild's models, the
//! two halves of a large commit's sort), and large values freed on a
//! thread of their own.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The cores this process may use (read once: the standard library reads
/// the cgroup's quota from files on every call). At least 2 under test,
/// so the tests run the paths that use a second thread on any machine.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if cfg!(test) { cores.max(2) } else { cores }
}

/// Runs `work` on each of `parts` and returns the results in the order of
/// `parts`: the first part on this thread, each other on a scoped thread
/// named `name`, which runs in the caller's context (its Tokio runtime, if
/// any, its tracing dispatcher and its current span).
///
/// A part whose thread cannot be started, or has not started yet when
/// this thread is done with its own, is run here: the OS refusing a
/// thread costs speed, never the work. A panic in `work` is raised here
/// once every thread has ended.
pub(crate) fn side_by_side<P: Send, R: Send>(name: &str, parts: Vec<P>, work: impl Fn(P) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<P>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    // Each part is taken once, by whichever thread comes first.
    let run = |i: usize| {
        let part = slots[i].lock().unwrap_or_else(PoisonError::into_inner).take();
        part.map(&work)
    };
    let run = &run;
    let runtime = tokio::runtime::Handle::try_current().ok();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (1..slots.len())
            .filter_map(|i| {
                let (runtime, dispatch, span) = (runtime.clone(), dispatch.clone(), span.clone());
                let started = std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn_scoped(scope, move || {
                        let _runtime = runtime.as_ref().map(|r| r.enter());
                        tracing::dispatcher::with_default(&dispatch, || span.in_scope(|| run(i)))
                    });
                match started {
                    Ok(thread) => Some((i, thread)),
                    Err(e) => {
                        tracing::debug!(thread = name, error = %e, "no thread: the work is done on the caller's");
                        None
                    }
                }
            })
            .collect();
        let mut results: Vec<Option<R>> = (0..slots.len()).map(run).collect();
        for (i, thread) in threads {
            let done = thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if done.is_some() {
                results[i] = done;
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every part is taken and run once"))
            .collect()
    })
}

/// Values waiting for the dropper thread, at most: beyond that, or without
/// the thread, a value is dropped by its caller.
const DROPS_WAITING: usize = 2;

/// Drops `value` on a thread of its own (`strata-dropper`, started on first
/// use), or here if that thread is behind by [`DROPS_WAITING`] values or
/// could not be started: freeing a page of events or a commit's hundreds
/// of thousands of keys and values is work the caller need not wait for,
/// and what waits to be freed stays bounded.
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T) {
    static DROPPER: OnceLock<Option<SyncSender<Box<dyn Send>>>> = OnceLock::new();
    let dropper = DROPPER.get_or_init(|| {
        let (send, values) = sync_channel::<Box<dyn Send>>(DROPS_WAITING);
        std::thread::Builder::new()
            .name("strata-dropper".into())
            .spawn(move || values.into_iter().for_each(drop))
            .ok()
            .map(|_| send)
    });
    if let Some(dropper) = dropper {
        // Refused (full): the value comes back in the error, dropped here.
        let _ = dropper.try_send(Box::new(value));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn parts_run_once_each_and_results_keep_their_order() {
        let threads = Mutex::new(HashSet::new());
        let results = side_by_side("t", (0..5).collect(), |i: u32| {
            threads.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_millis(20));
            i * 10
        });
        assert_eq!(results, vec![0, 10, 20, 30, 40]);
        assert!(threads.lock().unwrap().len() >= 2, "the parts ran side by side");
        assert_eq!(side_by_side("t", Vec::<u32>::new(), |i| i), Vec::<u32>::new());
    }

    #[test]
    #[should_panic(expected = "part 3 fails")]
    fn a_panic_in_a_part_reaches_the_caller() {
        side_by_side("t", (0..4).collect(), |i: u32| {
            assert!(i != 3, "part {i} fails");
            i
        });
    }

    /// A value is dropped (on the dropper or here), never kept.
    #[test]
    fn values_dropped_elsewhere_are_dropped() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            drop_elsewhere(Counted(dropped.clone()));
        }
        for _ in 0..500 {
            if dropped.load(Ordering::SeqCst) == 100 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{} of 100 values dropped", dropped.load(Ordering::SeqCst));
    }
}
