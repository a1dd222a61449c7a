//! Opening a [`ModelStore`] on each backend, and following other
//! processes' commits into a shared one.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use strata_store::{LocalTables, SledStore};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::store::{Inner, ModelStore, validate_name};
use crate::backend::sled::SledBackend;
use crate::backend::{Hint, MemoryBackend, Opened};
use crate::error::ProjectionError;

impl ModelStore {
    /// Opens (or creates) the read model `name` in the tables beside the
    /// log of `store` ([`SledStore::tables`]), in trees named
    /// `projection.<name>.*`.
    pub fn open_sled(store: &SledStore, name: &str) -> Result<ModelStore, ProjectionError> {
        ModelStore::open_in_tables(&store.tables(), name)
    }

    /// Opens (or creates) the read model `name` in trees
    /// `projection.<name>.*` of `tables`. Removes the remains of a rebuild
    /// that did not finish (its generation was never swapped in).
    pub fn open_in_tables(tables: &LocalTables, name: &str) -> Result<ModelStore, ProjectionError> {
        validate_name(name)?;
        ModelStore::with_backend(name, SledBackend::open(tables, name)?)
    }

    /// An empty read model in memory (for tests and for a `MemoryStore`).
    /// Its checkpoint starts at 0; nothing survives the process.
    pub fn memory(name: &str) -> Result<ModelStore, ProjectionError> {
        validate_name(name)?;
        ModelStore::with_backend(name, MemoryBackend::open(name))
    }

    /// Opens (or creates) the read model `name` in the database and schema of
    /// `store`, beside the log, and loads its current generation into
    /// memory (see `docs/postgres.md`, "Read models").
    ///
    /// Several processes may open the same model: one runner at a time
    /// writes it (the one holding its writer lock, an advisory lock);
    /// every process serves reads from its copy, which follows the
    /// committed model within moments (notified on each commit, polled every
    /// `poll_interval` of the store's options in case a notification is
    /// lost). Must be called inside a tokio runtime.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(store: &strata_store::PostgresStore, name: &str) -> Result<ModelStore, ProjectionError> {
        validate_name(name)?;
        let opened = crate::backend::postgres::PgBackend::open(store, name).await?;
        ModelStore::with_backend(name, opened)
    }

    /// Opens a read model on a backend of another kind (see
    /// [`backend`](crate::backend)): `opened` is what its constructor
    /// returned. A backend that sends [`commit_hints`](crate::backend::ModelBackend::commit_hints)
    /// is followed by a task (so this must then be called inside a tokio
    /// runtime) that refreshes the model when other processes commit.
    pub fn from_backend(opened: Opened) -> Result<ModelStore, ProjectionError> {
        let name = opened.backend.name().to_string();
        validate_name(&name)?;
        ModelStore::with_backend(&name, opened)
    }

    /// The handle of an opened backend; a shared one is followed by a task
    /// that refreshes the model when other processes commit.
    fn with_backend(name: &str, opened: Opened) -> Result<ModelStore, ProjectionError> {
        let hints = opened.backend.commit_hints();
        let model = ModelStore::from_opened(name, opened)?;
        if let Some(hints) = hints {
            let (stop, stopped) = oneshot::channel();
            *model.inner.stop_follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
            tokio::spawn(follow_commits(Arc::downgrade(&model.inner), hints, stopped));
        }
        Ok(model)
    }
}

/// Follows the commits of other processes into a shared model: refreshes
/// when a hint names a commit newer than the model's (or anything may have
/// changed). Ends with the model.
async fn follow_commits(model: Weak<Inner>, mut hints: mpsc::Receiver<Hint>, mut stop: oneshot::Receiver<()>) {
    loop {
        let heard = tokio::select! {
            _ = &mut stop => break,
            hint = hints.recv() => match hint {
                Some(hint) => {
                    let mut heard = vec![hint];
                    while let Ok(more) = hints.try_recv() {
                        heard.push(more);
                    }
                    heard
                }
                None => break,
            },
        };
        let Some(inner) = model.upgrade() else { break };
        let model = ModelStore { inner };
        let (generation, checkpoint) = (model.generation(), model.checkpoint());
        let news = heard.iter().any(|hint| match hint {
            Hint::Check => true,
            Hint::Committed {
                generation: g,
                position,
            } => *g != generation || *position > checkpoint,
        });
        if news {
            let failures = &model.inner.refresh_failures;
            match model.refresh().await {
                Ok(()) => failures.store(0, Ordering::Relaxed),
                Err(e) => {
                    let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                    warn!(projection = %model.name(), error = %e, failures = n, "cannot refresh the read model from the database; trying again");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_trees_are_refused() {
        for bad in ["", "a.b", "a b", &"n".repeat(65)] {
            assert!(
                matches!(ModelStore::memory(bad), Err(ProjectionError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert!(ModelStore::memory("order_summary-2").is_ok());
        assert!(ModelStore::memory(&"n".repeat(64)).is_ok());
    }
}
