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
/// and what waits to be freed stays bounded (two values waiting, one
/// being freed). Only for values whose drop just frees memory: at
/// process exit, what waits may never be dropped.
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Each part runs once, the results keep the parts' order, and a part
    /// runs on a thread of its own (the first waits, up to 10 s, for a
    /// part to report from one).
    #[test]
    fn parts_run_once_each_side_by_side_and_results_keep_their_order() {
        let runs: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        let (seen, on_thread) = std::sync::mpsc::channel::<()>();
        let (seen, on_thread) = (Mutex::new(seen), Mutex::new(on_thread));
        let results = side_by_side("t", (0..5).collect(), |i: usize| {
            runs[i].fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                let on_thread = on_thread.lock().unwrap();
                return on_thread.recv_timeout(std::time::Duration::from_secs(10)).is_ok();
            }
            if std::thread::current().name() == Some("t") {
                let _ = seen.lock().unwrap().send(());
            }
            true
        });
        assert!(results[0], "no part ran on a thread of its own");
        assert_eq!(results.len(), 5);
        assert!(runs.iter().all(|n| n.load(Ordering::SeqCst) == 1), "each part ran once");
        assert_eq!(side_by_side("t", Vec::<u32>::new(), |i| i), Vec::<u32>::new());
    }

    /// A part on a thread runs in the caller's Tokio runtime context.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_on_threads_run_in_the_callers_runtime_context() {
        let contexts = side_by_side("t", (0..4).collect(), |_: u32| {
            (
                std::thread::current().name().map(str::to_string),
                tokio::runtime::Handle::try_current().is_ok(),
            )
        });
        assert!(contexts.iter().all(|(_, runtime)| *runtime), "{contexts:?}");
    }

    #[test]
    #[should_panic(expected = "part 3 fails")]
    fn a_panic_in_a_part_reaches_the_caller() {
        side_by_side("t", (0..4).collect(), |i: u32| {
            assert!(i != 3, "part {i} fails");
            i
        });
    }

    /// Records the thread a value was dropped on.
    struct Noted(Arc<Mutex<Vec<Option<String>>>>);

    impl Drop for Noted {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(str::to_string);
            self.0.lock().unwrap().push(name);
        }
    }

    /// Holds the dropper up until released (or 10 s), and says which.
    struct Blocker(std::sync::mpsc::Receiver<()>, Arc<AtomicUsize>);

    impl Drop for Blocker {
        fn drop(&mut self) {
            if self.0.recv_timeout(std::time::Duration::from_secs(10)).is_ok() {
                self.1.store(1, Ordering::SeqCst);
            }
        }
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        for _ in 0..1_000 {
            if done() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{what}: not within 10 s");
    }

    /// Values are dropped on the dropper thread; while it is held up, no
    /// more than two wait for it and the rest are dropped by their caller,
    /// which never waits.
    #[test]
    fn values_are_dropped_on_the_dropper_and_what_waits_is_bounded() {
        // On the dropper (another test's values may take its slots for a
        // moment: tried until one of ours gets there).
        let mut elsewhere = false;
        for _ in 0..100 {
            let noted = Arc::new(Mutex::new(Vec::new()));
            drop_elsewhere(Noted(noted.clone()));
            wait_for("a value dropped", || noted.lock().unwrap().len() == 1);
            if noted.lock().unwrap()[0].as_deref() == Some("strata-dropper") {
                elsewhere = true;
                break;
            }
        }
        assert!(elsewhere, "no value was dropped on the dropper");
        // Held up: of three values, at least one is dropped here.
        let (release, held) = std::sync::mpsc::channel();
        let released = Arc::new(AtomicUsize::new(0));
        drop_elsewhere(Blocker(held, released.clone()));
        let noted = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..3 {
            drop_elsewhere(Noted(noted.clone()));
        }
        let here = std::thread::current().name().map(str::to_string);
        assert!(
            noted.lock().unwrap().contains(&here),
            "a value beyond the bound is dropped here"
        );
        release.send(()).unwrap();
        wait_for("every value dropped", || noted.lock().unwrap().len() == 3);
        wait_for("the blocker dropped", || released.load(Ordering::SeqCst) == 1);
    }
}
