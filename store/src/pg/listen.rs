//! `LISTEN` on a connection of its own, reconnecting with backoff.
//!
//! Pooled connections drop notifications, so a listener holds a dedicated
//! one. When it breaks (the server restarted, a network cut, a terminated
//! backend) the listener connects again after a pause that doubles up to
//! a bound, for as long as it lives. Notifications sent while nobody
//! listened are lost: after every (re)connection the listener says so
//! ([`Heard::Listening`]), and the caller reads whatever they would have
//! announced. So a notification is only ever a wake-up, never the data.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{info, warn};

use super::quote_ident;
use crate::error::describe_postgres;

/// How many notifications wait for the caller before the listener stops
/// reading its connection (the server then keeps them in its queue).
const QUEUE: usize = 1024;

/// The pauses between attempts to connect: `first`, doubled after each
/// failure up to `max`, back to `first` once listening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first pause (default 100 ms).
    pub first: Duration,
    /// The longest pause (default 5 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// What a [`Listener`] hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// `LISTEN` is in place on a new connection (the first, or after the
    /// last one broke). Anything sent before now was missed: read the
    /// state the notifications announce.
    Listening,
    /// A notification on one of the channels.
    Notification {
        /// The channel it was sent on.
        channel: String,
        /// Its payload.
        payload: String,
    },
}

/// `LISTEN`s to channels on a connection of its own, reconnecting with
/// [`Backoff`] when it breaks, until dropped.
///
/// ```no_run
/// # async fn run(store: strata_store::PostgresStore) -> Result<(), strata_store::StoreError> {
/// use strata_store::pg::{Heard, Listener, Schema};
///
/// let channel = store.schema().channel("models")?;
/// let mut listener = Listener::start(store.connection_config().clone(), vec![channel]);
/// loop {
///     match listener.recv().await {
///         Heard::Listening => { /* read what may have been missed */ }
///         Heard::Notification { payload, .. } => { /* a wake-up: read what it announces */ }
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    heard: mpsc::Receiver<Heard>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts listening to `channels` with the default [`Backoff`], on a
    /// connection opened from `config` (the store's
    /// [`connection_config`](crate::PostgresStore::connection_config), with
    /// an `application_name` of its own if it should be told apart). Must
    /// be called inside a tokio runtime.
    pub fn start(config: tokio_postgres::Config, channels: Vec<String>) -> Listener {
        Listener::start_with(config, channels, Backoff::default())
    }

    /// [`Listener::start`] with another [`Backoff`].
    pub fn start_with(config: tokio_postgres::Config, channels: Vec<String>, backoff: Backoff) -> Listener {
        let (tx, heard) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(config, channels, backoff, tx));
        Listener { heard, task }
    }

    /// The next thing heard; waits for it. Cancel-safe: dropping the
    /// future loses nothing.
    pub async fn recv(&mut self) -> Heard {
        match self.heard.recv().await {
            Some(heard) => heard,
            // The task ends only when the listener is dropped (or panicked,
            // which leaves nothing to hear).
            None => std::future::pending().await,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Aborts a task when dropped (with the listener's, when it is aborted).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects, listens, forwards; on a broken connection waits and starts
/// again. Returns when the receiver is gone.
async fn run(config: tokio_postgres::Config, channels: Vec<String>, backoff: Backoff, tx: mpsc::Sender<Heard>) {
    let listen: String = channels.iter().map(|c| format!("LISTEN {};", quote_ident(c))).collect();
    let mut pause = backoff.first;
    loop {
        let connected = tokio::select! {
            _ = tx.closed() => return,
            c = config.connect(NoTls) => c,
        };
        match connected {
            Ok((client, mut connection)) => {
                let forward = tx.clone();
                // Drives the connection, forwarding notifications, until it breaks.
                let mut driver = AbortOnDrop(tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let heard = Heard::Notification {
                                    channel: n.channel().to_string(),
                                    payload: n.payload().to_string(),
                                };
                                if forward.send(heard).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %describe_postgres(&e), "the PostgreSQL listener connection failed");
                                return;
                            }
                        }
                    }
                }));
                match client.batch_execute(&listen).await {
                    Ok(()) => {
                        info!(?channels, "listening for notifications");
                        pause = backoff.first;
                        if tx.send(Heard::Listening).await.is_err() {
                            return;
                        }
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = &mut driver.0 => {}
                        }
                    }
                    Err(e) => warn!(?channels, error = %describe_postgres(&e), "LISTEN failed"),
                }
            }
            Err(e) => warn!(?channels, error = %describe_postgres(&e), "cannot connect the PostgreSQL listener"),
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(backoff.max);
    }
}
