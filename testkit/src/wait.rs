//! Waiting for a condition with a deadline, instead of a fixed sleep.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long the waits here last before they fail: generous, so that
/// reaching it means a stall, never a slow machine. Not a measurement.
pub const STALL: Duration = Duration::from_secs(60);

/// How often the condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// Waits (in a tokio test) until `condition` holds, checking it every
/// 10 ms; panics naming `what` after [`STALL`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let started = std::time::Instant::now();
/// strata_testkit::until("a moment to pass", || started.elapsed().as_millis() >= 20).await;
/// # });
/// ```
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    until_async(what, || std::future::ready(condition())).await
}

/// [`until`] for a condition that is itself async (a query, a request).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (tx, rx) = tokio::sync::watch::channel(0);
/// tokio::spawn(async move { tx.send_replace(7); std::future::pending::<()>().await });
/// strata_testkit::until_async("the value to be set", || {
///     let rx = rx.clone();
///     async move { *rx.borrow() == 7 }
/// })
/// .await;
/// # });
/// ```
pub async fn until_async<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + STALL;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled: waited {STALL:?} for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for a thread outside a runtime (a synchronous test, or a
/// parent process waiting on a child).
pub fn until_blocking(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STALL;
    while !condition() {
        assert!(Instant::now() < deadline, "stalled: waited {STALL:?} for {what}");
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn until_returns_once_the_condition_holds() {
        let mut calls = 0;
        until("the third check", || {
            calls += 1;
            calls == 3
        })
        .await;
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "stalled: waited 60s for something that never happens")]
    async fn until_fails_loudly_at_the_deadline() {
        until_async("something that never happens", || async { false }).await;
    }

    #[test]
    fn until_blocking_returns_once_the_condition_holds() {
        let mut n = 0;
        until_blocking("the second check", || {
            n += 1;
            n == 2
        });
        assert_eq!(n, 2);
    }
}
