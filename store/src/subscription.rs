//! `subscribe_all`: the log from a position on, history then live.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::store::EventStore;
use crate::types::RecordedEvent;

/// How many events a subscriber reads from the log at a time.
pub const SUBSCRIPTION_BATCH: usize = 512;

/// A stream of every event after a position, in position order: the
/// history, then live events as they commit.
///
/// It reads the log itself in batches and, once caught up, waits for the
/// store's head position to move. So history and live events come through
/// the same path (no gap or duplicate at the handover), a slow subscriber
/// costs writers nothing, and it never holds more than one batch.
///
/// After an error the stream ends; resubscribe from the last position seen.
pub struct EventSubscription {
    inner: BoxStream<'static, Result<RecordedEvent, StoreError>>,
}

struct Follow<S> {
    store: S,
    head: watch::Receiver<u64>,
    next: u64,
    buffer: VecDeque<RecordedEvent>,
    done: bool,
}

impl EventSubscription {
    /// Wraps any stream of events (for backends with their own mechanism).
    pub fn from_stream(stream: impl Stream<Item = Result<RecordedEvent, StoreError>> + Send + 'static) -> Self {
        EventSubscription {
            inner: Box::pin(stream),
        }
    }

    /// Follows `store` from `after`: reads with `read_all`, and when caught up
    /// waits until `head` (the store's visible head position) passes the last
    /// event seen. Checks that positions arrive gapless.
    pub fn follow<S: EventStore + Clone>(store: S, head: watch::Receiver<u64>, after: u64) -> Self {
        let state = Follow {
            store,
            head,
            next: after.saturating_add(1),
            buffer: VecDeque::new(),
            done: false,
        };
        Self::from_stream(futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(event) = st.buffer.pop_front() {
                    return Some((Ok(event), st));
                }
                if st.done {
                    return None;
                }
                match st.store.read_all(st.next, SUBSCRIPTION_BATCH).await {
                    Ok(events) if !events.is_empty() => {
                        for (i, e) in events.iter().enumerate() {
                            if e.position != st.next + i as u64 {
                                st.done = true;
                                let err = StoreError::Corrupt {
                                    location: format!("log at position {}", st.next + i as u64),
                                    detail: format!("read_all returned position {} instead", e.position),
                                };
                                return Some((Err(err), st));
                            }
                        }
                        st.next += events.len() as u64;
                        st.buffer.extend(events);
                    }
                    Ok(_) => {
                        let wanted = st.next;
                        if st.head.wait_for(|h| *h >= wanted).await.is_err() {
                            st.done = true;
                            let err = StoreError::Unavailable {
                                reason: "the store was closed".into(),
                            };
                            return Some((Err(err), st));
                        }
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        }))
    }
}

impl Stream for EventSubscription {
    type Item = Result<RecordedEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscription").finish_non_exhaustive()
    }
}
