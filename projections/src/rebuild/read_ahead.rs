//! Pages of the log for a rebuild: read in turn with the fold, or read
//! ahead on a task of their own, so the next page is read and decoded
//! while the last one is folded (on a multi-threaded runtime, on another
//! core).

use std::sync::Arc;

use strata_store::{EventStore, RecordedEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ProjectionError;

/// Pages read ahead and not folded yet, at most: what the read-ahead may
/// hold in memory beside the page being folded.
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
/// error is the last page), when the pages are dropped, and with them.
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
