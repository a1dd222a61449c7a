//! Wakes live subscriptions when another process commits: `LISTEN` on a
//! connection of its own, reconnecting when it drops, and a poll of the head
//! row as a fallback.
//!
//! Each append transaction sends `pg_notify(channel, last_position)`;
//! PostgreSQL delivers it after the commit, so the position it carries is
//! committed, and so is every lower one (commit order is position order).
//! The listener moves the store's head watch to it, which wakes every
//! subscription waiting for it (`EventSubscription::follow`). Subscriptions
//! read the events themselves with `read_all`, so a notification that is
//! lost or late costs latency, never an event: after each (re)connection
//! the listener reads the head row, and while anyone is subscribed it reads
//! it every `poll_interval` in case a notification went missing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, info, warn};

use super::schema::quote_ident;
use super::{Shared, describe};

/// The first wait before reconnecting; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `stop` fires or its sender is dropped (with the store).
pub(super) async fn run(
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    poll_interval: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = MIN_BACKOFF;
    loop {
        // Connect and listen; then wait for the connection to end.
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = config.connect(NoTls) => c,
        };
        match connected {
            Ok((client, mut connection)) => {
                let notify_shared = shared.clone();
                // Drives the connection and turns notifications into head moves.
                let mut driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => match n.payload().parse::<u64>() {
                                Ok(position) => notify_shared.advance_head(position),
                                Err(_) => warn!(payload = n.payload(), "ignoring a malformed head notification"),
                            },
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %describe(&e), "the PostgreSQL listener connection failed");
                                return;
                            }
                        }
                    }
                });
                let listen = format!("LISTEN {}", quote_ident(&shared.sql.channel));
                match client.batch_execute(&listen).await {
                    Ok(()) => {
                        info!(channel = %shared.sql.channel, "listening for commits");
                        backoff = MIN_BACKOFF;
                        // Whatever committed while we were not listening.
                        refresh(&shared).await;
                        loop {
                            tokio::select! {
                                _ = &mut stop => {
                                    driver.abort();
                                    return;
                                }
                                _ = &mut driver => break,
                                _ = poll.tick() => {
                                    if shared.head.receiver_count() > 0 {
                                        refresh(&shared).await;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %describe(&e), "LISTEN failed");
                        driver.abort();
                    }
                }
            }
            Err(e) => warn!(error = %describe(&e), "cannot connect the PostgreSQL listener"),
        }
        // Disconnected: keep polling until the wait is over, then reconnect.
        let reconnect_at = Instant::now() + backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep_until(reconnect_at) => break,
                _ = poll.tick() => {
                    if shared.head.receiver_count() > 0 {
                        refresh(&shared).await;
                    }
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
