//! `subscribe_all` and `subscribe_filtered`: the log from a position on,
//! history then live.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::filter::EventFilter;
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
/// On a backend whose reads hold a pooled connection (PostgreSQL, see
/// [`EventSubscription::follow_detached`]), each read runs to its end on a
/// task of its own, whether or not the stream is polled meanwhile.
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
    /// Reads run on a task of their own (see [`to_the_end`]).
    detached: bool,
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
    /// event seen. Checks that positions arrive in order; a position skipped
    /// at or below the head is a removed event (see the trait's contract),
    /// passed over.
    pub fn follow<S: EventStore + Clone>(store: S, head: watch::Receiver<u64>, after: u64) -> Self {
        Self::follow_with(store, head, after, false)
    }

    /// [`EventSubscription::follow`] for a backend whose reads hold one of
    /// its pooled connections until they end: each read runs to its end on
    /// a task of its own (inside a tokio runtime), whether or not the
    /// stream is polled meanwhile. A consumer that takes what is ready and
    /// then works on it for a while (e.g. with `ready_chunks`) must not keep
    /// a connection idle with the read it started: on PostgreSQL, a
    /// projection runner waiting for a rebuild's commit lock so held a
    /// connection the rebuild then waited for. (A read in flight when the
    /// subscription is dropped still ends, with its clone of the store: not
    /// for a backend whose files a drop must release at once.)
    pub fn follow_detached<S: EventStore + Clone>(store: S, head: watch::Receiver<u64>, after: u64) -> Self {
        Self::follow_with(store, head, after, true)
    }

    fn follow_with<S: EventStore + Clone>(store: S, head: watch::Receiver<u64>, after: u64, detached: bool) -> Self {
        let state = Follow {
            store,
            head,
            next: after.saturating_add(1),
            buffer: VecDeque::new(),
            done: false,
            detached,
        };
        Self::from_stream(futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(event) = st.buffer.pop_front() {
                    return Some((Ok(event), st));
                }
                if st.done {
                    return None;
                }
                // The head before the read: every position up to it was
                // visible when the read began, so one the read skips is
                // removed, never one still to come.
                let head_before = *st.head.borrow();
                let (store, next) = (st.store.clone(), st.next);
                let read = async move { store.read_all(next, SUBSCRIPTION_BATCH).await };
                let read = if st.detached {
                    to_the_end(read).await
                } else {
                    read.await
                };
                match read {
                    Ok(events) if !events.is_empty() => {
                        let mut expected = st.next;
                        for e in &events {
                            if e.position < expected {
                                st.done = true;
                                let err = StoreError::Corrupt {
                                    location: format!("log at position {expected}"),
                                    detail: format!("read_all returned position {} out of order", e.position),
                                };
                                return Some((Err(err), st));
                            }
                            expected = e.position + 1;
                        }
                        st.next = expected;
                        st.buffer.extend(events);
                    }
                    Ok(_) if head_before >= st.next => {
                        // Everything up to the head is removed: move past it.
                        st.next = head_before + 1;
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

/// Runs a subscription's `read` on a task of its own when there is a
/// tokio runtime (else in place), so it finishes, and gives back whatever
/// connection it holds, even while the subscription is not polled. A
/// panic in the read is the subscription's; a runtime shutting down ends
/// the subscription with [`StoreError::Unavailable`].
async fn to_the_end<T: Send + 'static>(
    read: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return read.await;
    };
    match runtime.spawn(read).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Unavailable {
            reason: format!("a subscription's read did not finish: {e}"),
        }),
    }
}

/// One item of a [`FilteredSubscription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// An event that matches the filter.
    Event(RecordedEvent),
    /// Every event up to this position has been examined: those that
    /// matched came before this item. Store it as the consumer's
    /// checkpoint as you would an event's position.
    Checkpoint(u64),
}

impl SubscriptionItem {
    /// The position this item lets a consumer resume after: the event's,
    /// or the checkpoint's.
    pub fn position(&self) -> u64 {
        match self {
            SubscriptionItem::Event(e) => e.position,
            SubscriptionItem::Checkpoint(p) => *p,
        }
    }
}

/// The events that match a filter after a position, history then live,
/// with checkpoints that report how far the log was examined (see
/// [`EventStore::subscribe_filtered`]).
///
/// It reads the log with [`EventStore::read_filtered`], one bounded window
/// at a time, and when caught up waits for the store's head to move: like
/// [`EventSubscription`], a slow consumer costs writers nothing and the
/// subscription never holds more than one read's worth of events. After
/// every read that examined past its last matching event it yields one
/// [`SubscriptionItem::Checkpoint`]. After an error the stream ends;
/// resubscribe from the last position seen.
pub struct FilteredSubscription {
    inner: BoxStream<'static, Result<SubscriptionItem, StoreError>>,
}

struct FollowFiltered<S> {
    store: S,
    head: watch::Receiver<u64>,
    filter: EventFilter,
    next: u64,
    buffer: VecDeque<SubscriptionItem>,
    done: bool,
    /// Reads run on a task of their own (see [`to_the_end`]).
    detached: bool,
}

impl FilteredSubscription {
    /// Wraps any stream of items (for backends with their own mechanism).
    pub fn from_stream(stream: impl Stream<Item = Result<SubscriptionItem, StoreError>> + Send + 'static) -> Self {
        FilteredSubscription {
            inner: Box::pin(stream),
        }
    }

    /// Follows `store` from `after` with `filter`: reads with
    /// `read_filtered`, and when a read examined nothing waits until `head`
    /// (the store's visible head position) reaches the next position.
    /// Checks that what each read returns is in order and within what it
    /// says it examined.
    pub fn follow<S: EventStore + Clone>(
        store: S,
        head: watch::Receiver<u64>,
        after: u64,
        filter: EventFilter,
    ) -> Self {
        Self::follow_with(store, head, after, filter, false)
    }

    /// [`FilteredSubscription::follow`] with each read on a task of its
    /// own, for a backend whose reads hold a pooled connection (see
    /// [`EventSubscription::follow_detached`]).
    pub fn follow_detached<S: EventStore + Clone>(
        store: S,
        head: watch::Receiver<u64>,
        after: u64,
        filter: EventFilter,
    ) -> Self {
        Self::follow_with(store, head, after, filter, true)
    }

    fn follow_with<S: EventStore + Clone>(
        store: S,
        head: watch::Receiver<u64>,
        after: u64,
        filter: EventFilter,
        detached: bool,
    ) -> Self {
        let state = FollowFiltered {
            store,
            head,
            filter,
            next: after.saturating_add(1),
            buffer: VecDeque::new(),
            done: false,
            detached,
        };
        Self::from_stream(futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.buffer.pop_front() {
                    return Some((Ok(item), st));
                }
                if st.done {
                    return None;
                }
                let head_before = *st.head.borrow();
                let (store, next, filter) = (st.store.clone(), st.next, st.filter.clone());
                let read = async move { store.read_filtered(next, SUBSCRIPTION_BATCH, &filter).await };
                let read = if st.detached {
                    to_the_end(read).await
                } else {
                    read.await
                };
                match read {
                    Ok(read) if read.examined >= st.next => {
                        let mut expected = st.next;
                        for e in &read.events {
                            if e.position < expected || e.position > read.examined {
                                st.done = true;
                                let err = StoreError::Corrupt {
                                    location: format!("log after position {}", expected - 1),
                                    detail: format!(
                                        "a filtered read returned position {} out of order (examined up to {})",
                                        e.position, read.examined
                                    ),
                                };
                                return Some((Err(err), st));
                            }
                            expected = e.position + 1;
                        }
                        let last_event = read.events.last().map(|e| e.position);
                        st.buffer.extend(read.events.into_iter().map(SubscriptionItem::Event));
                        if last_event != Some(read.examined) {
                            st.buffer.push_back(SubscriptionItem::Checkpoint(read.examined));
                        }
                        st.next = read.examined + 1;
                    }
                    Ok(_) if head_before >= st.next => {
                        // Nothing to examine up to the head: every position
                        // there is removed. Say so, and move past it.
                        st.buffer.push_back(SubscriptionItem::Checkpoint(head_before));
                        st.next = head_before + 1;
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

impl Stream for FilteredSubscription {
    type Item = Result<SubscriptionItem, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for FilteredSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilteredSubscription").finish_non_exhaustive()
    }
}
