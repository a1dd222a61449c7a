//! Pages of the log for a rebuild: read in turn with the fold, or read
//! ahead on a task of their own, so the next page is read and decoded
//! while the last one is folded (on a multi-threaded runtime, on another
//! core).

use std::sync::Arc;

use strata_store::{EventStore, RecordedEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ProjectionError;

/// Pages read ahead and waiting in the channel, at most: the read-ahead
/// holds these, one more it is sending, beside the page being folded.
const PAGES_AHEAD: usize = 2;

/// One page of the log, as a rebuild reads it.
pub(crate) struct Page {
    /// The log's head position, taken just before the read: positions up
    /// to it that the read skipped were removed from the log.
    pub(crate) head_before: u64,
    /// The events read, in position order.
    pub(crate) events: Vec<RecordedEvent>,
}

impl Page {
    /// Reads the (at most `limit`) events after position `done`.
    pub(crate) async fn read(
        store: &dyn EventStore,
        name: &str,
        done: u64,
        limit: usize,
    ) -> Result<Page, ProjectionError> {
        let head_before = store
            .head_position()
            .await
            .map_err(|e| ProjectionError::store(name, e))?;
        let events = store
            .read_all(done + 1, limit)
            .await
            .map_err(|e| ProjectionError::store(name, e))?;
        Ok(Page { head_before, events })
    }
}

/// Pages of the log after a position, read ahead by a task of their own,
/// each page starting after the last event of the one before.
///
/// The task stops after an empty page (the head was reached: a caller
/// that wants more reads in turn from there), after a failed read (the
/// error is the last page), and when the pages are dropped. Should the
/// task panic, the pages end as at the head and the caller reads on in
/// turn, which loses nothing. Needs a Tokio runtime (it spawns a task).
pub(crate) struct ReadAhead {
    pages: mpsc::Receiver<Result<Page, ProjectionError>>,
    task: JoinHandle<()>,
}

impl ReadAhead {
    /// Starts reading pages of `limit` events after position `done`.
    pub(crate) fn start(store: Arc<dyn EventStore>, name: &str, done: u64, limit: usize) -> ReadAhead {
        let (send, pages) = mpsc::channel(PAGES_AHEAD);
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let mut done = done;
            loop {
                let page = Page::read(&*store, &name, done, limit).await;
                let next = match &page {
                    Ok(page) => page.events.last().map(|e| e.position),
                    Err(_) => None,
                };
                if send.send(page).await.is_err() {
                    return;
                }
                match next {
                    Some(position) => done = position,
                    None => return,
                }
            }
        });
        ReadAhead { pages, task }
    }

    /// The next page, or `None` once the task has stopped (after an empty
    /// page).
    pub(crate) async fn next(&mut self) -> Option<Result<Page, ProjectionError>> {
        self.pages.recv().await
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A store of `n` events, shared.
    async fn store_of(n: usize) -> (tempfile::TempDir, Arc<dyn EventStore>) {
        let (dir, store) = crate::rebuild::tests::ticks(n).await;
        (dir, Arc::new(store))
    }

    /// The pages follow each other without a gap or a repeat, up to the
    /// head; an empty page says the head was reached and ends the task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_cover_the_log_once_in_order_then_stop() {
        let (_dir, store) = store_of(1_000).await;
        let mut ahead = ReadAhead::start(store.clone(), "t", 0, 7);
        let mut seen = Vec::new();
        loop {
            let page = ahead.next().await.expect("a page before the end").unwrap();
            assert!(page.events.len() <= 7, "a page holds at most the limit");
            assert_eq!(page.head_before, 1_000);
            if page.events.is_empty() {
                break;
            }
            seen.extend(page.events.iter().map(|e| e.position));
        }
        assert_eq!(seen, (1..=1_000).collect::<Vec<u64>>());
        assert!(ahead.next().await.is_none(), "nothing after the empty page");
        // Started in the middle: from the event after it.
        let mut ahead = ReadAhead::start(store, "t", 995, 100);
        let page = ahead.next().await.unwrap().unwrap();
        let positions: Vec<u64> = page.events.iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![996, 997, 998, 999, 1_000]);
    }

    /// Dropping the pages stops the task, which lets go of the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_pages_stop_the_task() {
        let (_dir, store) = store_of(1_000).await;
        let mut ahead = ReadAhead::start(store.clone(), "t", 0, 10);
        ahead.next().await.unwrap().unwrap();
        drop(ahead);
        for _ in 0..500 {
            if Arc::strong_count(&store) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the read-ahead task still holds the store after its pages were dropped");
    }
}
