//! Wakes live subscriptions when another process commits: a
//! [`pg::Listener`](crate::pg::Listener) on the head channel, and a poll of
//! the head row as a fallback.
//!
//! Each append transaction sends `pg_notify(channel, last_position)`;
//! PostgreSQL delivers it after the commit, so the position it carries is
//! committed, and so is every lower one (commit order is position order).
//! The listener moves the store's head watch to it, which wakes every
//! subscription waiting for it (`EventSubscription::follow`). Subscriptions
//! read the events themselves with `read_all`, so a notification that is
//! lost or late costs latency, never an event: after each (re)connection
//! the listener reads the head row, and while anyone is subscribed it reads
//! it every `poll_interval` in case a notification went missing (also
//! while the listener's connection is down).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use super::Shared;
use crate::pg::{Heard, Listener};

/// Runs until `stop` fires or its sender is dropped (with the store).
pub(super) async fn run(
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    poll_interval: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut listener = Listener::start(config, vec![shared.sql.channel.clone()]);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            heard = listener.recv() => match heard {
                // Whatever committed while we were not listening.
                Heard::Listening => refresh(&shared).await,
                Heard::Notification { payload, .. } => match payload.parse::<u64>() {
                    Ok(position) => shared.advance_head(position),
                    Err(_) => warn!(%payload, "ignoring a malformed head notification"),
                },
            },
            _ = poll.tick() => {
                if shared.head.receiver_count() > 0 {
                    refresh(&shared).await;
                }
            }
        }
    }
}

/// Reads the head row and moves the head watch to it.
async fn refresh(shared: &Shared) {
    match shared.read_head().await {
        Ok(head) => shared.advance_head(head),
        Err(e) => debug!(error = %e, "polling the head position failed"),
    }
}
