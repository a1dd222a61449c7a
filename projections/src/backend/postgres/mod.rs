//! Read models in PostgreSQL, beside a `PostgresStore`'s log (feature
//! `postgres`). See `docs/postgres.md` "Read models" for the decisions,
//! and [`sql`] for the tables.
//!
//! A batch is committed in one transaction: the checkpoint row moves from
//! the position the batch was applied on to the batch's last position (a
//! compare-and-set, refused once a rebuild retired the generation or
//! anyone else moved it) and the batch's entries are written only if it
//! did, in one statement. So a checkpoint never names changes that are
//! missing, nor the other way round, and no batch is applied twice,
//! whoever else tries.
//!
//! Every process keeps the current generation in memory
//! ([`generation::PgGeneration`]) and refreshes it from the committed
//! rows: entries written after its checkpoint (deletes are kept as NULL
//! rows, "tombstones", so they show), read in one snapshot with the
//! checkpoint. Tombstones older than a window are purged now and then;
//! `refresh_from` records the oldest checkpoint from which changes are
//! still complete, and a process further behind reloads the whole
//! generation. Commits and swaps are announced on a `NOTIFY` channel,
//! heard through the toolkit's reconnecting [`Listener`]; a notification
//! only wakes the follower, which reads the rows, so a lost one costs
//! latency (up to the poll interval), never a change.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_store::PostgresStore;
use strata_store::pg::{Heard, Listener};
use tokio::sync::mpsc;

use super::contract::{GenerationRef, Hint, ModelBackend, Opened, Swapped, own_generations};
use crate::error::ProjectionError;

mod bulk;
mod generation;
mod sql;
mod swap;
mod tables;
#[cfg(test)]
mod tests;

use self::generation::PgGeneration;
use self::tables::PgModel;

/// Read models in the tables beside a `PostgresStore`'s log, shared by
/// every process that opens them.
pub(crate) struct PgBackend {
    model: Arc<PgModel>,
}

impl PgBackend {
    /// Opens (or creates) model `name` in `store`'s database and schema and
    /// loads its current generation.
    pub(crate) async fn open(store: &PostgresStore, name: &str) -> Result<Opened, ProjectionError> {
        let (model, state, entries) = PgModel::open(store, name).await?;
        let current = PgGeneration::live(model.clone(), state, entries);
        Ok(Opened {
            backend: Arc::new(PgBackend { model }),
            current: Arc::new(current),
        })
    }
}

#[async_trait]
impl ModelBackend for PgBackend {
    fn name(&self) -> &str {
        &self.model.name
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    fn retry_interval(&self) -> Duration {
        self.model.poll_interval
    }

    async fn try_lease(&self) -> Result<bool, ProjectionError> {
        self.model.try_lease().await
    }

    fn drop_lease(&self) {
        self.model.drop_lease();
    }

    async fn begin_generation(&self) -> Result<GenerationRef, ProjectionError> {
        Ok(Arc::new(PgGeneration::begin(&self.model).await?))
    }

    async fn swap(&self, built: &[&GenerationRef], checkpoint: u64) -> Result<Swapped, ProjectionError> {
        swap::swap(&own_generations::<PgGeneration>(&self.model.name, built)?, checkpoint).await
    }

    fn commit_hints(&self) -> Option<mpsc::Receiver<Hint>> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(hints(self.model.clone(), tx));
        Some(rx)
    }
}

/// Turns what the listener hears about this model, and the poll interval
/// passing, into hints, until the receiver is dropped.
async fn hints(model: Arc<PgModel>, tx: mpsc::Sender<Hint>) {
    let mut config = model.config.clone();
    let app = format!("{}-models", config.get_application_name().unwrap_or("strata"));
    config.application_name(app);
    let mut listener = Listener::start(config, vec![model.channel.clone()]);
    let mut poll = tokio::time::interval(model.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        let hint = tokio::select! {
            _ = tx.closed() => return,
            _ = poll.tick() => Hint::Check,
            heard = listener.recv() => match heard {
                // Whatever was committed while nobody listened.
                Heard::Listening => Hint::Check,
                Heard::Notification { payload, .. } => match parse(&payload, &model.name) {
                    Some(hint) => hint,
                    None => continue,
                },
            },
        };
        if tx.send(hint).await.is_err() {
            return;
        }
    }
}

/// A notification's payload, `<generation> <position> <model>`, as a hint
/// if it names this model (a payload that does not parse: check anyway).
fn parse(payload: &str, name: &str) -> Option<Hint> {
    let mut parts = payload.splitn(3, ' ');
    let (g, p, m) = (parts.next(), parts.next(), parts.next());
    if m != Some(name) {
        return None;
    }
    match g.and_then(|g| g.parse().ok()).zip(p.and_then(|p| p.parse().ok())) {
        Some((generation, position)) => Some(Hint::Committed { generation, position }),
        None => Some(Hint::Check),
    }
}
