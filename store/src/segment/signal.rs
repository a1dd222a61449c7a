//! How the threads of a `SegmentStore` wait for one another: a general
//! signal for whoever waits for a change of state ([`Shared::wait`], free
//! to notify when nobody waits) and the indexer's own, so that a commit
//! does not wake it for every append.

use std::sync::atomic::{Ordering, fence};

use super::Shared;
use super::writer::WAKE;

impl Shared {
    /// Wakes every thread waiting in [`Shared::wait`], if there is one.
    pub(super) fn notify(&self) {
        // Pairs with the fence in `wait`: either the waiter is counted
        // here, or it sees the new state before it sleeps.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let (lock, cv) = &self.signal;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cv.notify_all();
    }

    /// Wakes the indexer when a full batch waits for it, or someone waits
    /// for the index.
    pub(super) fn nudge_indexer(&self) {
        let lag = self.visible().saturating_sub(self.indexed.load(Ordering::Acquire));
        if lag >= self.index_batch_events || self.lagging.load(Ordering::Acquire) {
            self.wake_indexer();
        }
    }

    /// Wakes the indexer (a failure, the close, a writer or caller waiting
    /// for the index, a full batch).
    pub(super) fn wake_indexer(&self) {
        let (lock, cv) = &self.index_signal;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cv.notify_one();
    }

    /// What the indexer reads before it looks at the state; its
    /// [`Shared::indexer_sleep`] returns at once if a wake came since.
    pub(super) fn indexer_wakes(&self) -> u64 {
        *self.index_signal.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The indexer waits for a wake (or [`WAKE`] at most).
    pub(super) fn indexer_sleep(&self, seen: u64) {
        let (lock, cv) = &self.index_signal;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if *guard == seen {
            let _ = cv.wait_timeout(guard, WAKE);
        }
    }

    /// Waits until `ready` returns something.
    pub(super) fn wait<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        let (lock, cv) = &self.signal;
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let result = loop {
            let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let seen = *guard;
            drop(guard);
            if let Some(t) = ready() {
                break t;
            }
            let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            if *guard == seen {
                let _ = cv.wait_timeout(guard, WAKE);
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}
