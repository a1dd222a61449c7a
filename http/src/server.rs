//! Starting and stopping the service.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use strata_projections::Projections;
use strata_store::SegmentStore;
use strata_subscriptions::Subscriptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::TokenFile;
use crate::auth::access::{Access, refresh_loop};
use crate::auth::store::TokenSource;
use crate::config::Config;
use crate::error::HttpError;
use crate::idempotency::Records;
use crate::router::router;
use crate::state::{AppState, Shared};

/// A running service: the HTTP server, the read models following the log,
/// and the purge of expired idempotency keys.
///
/// [`Server::shutdown`] stops it gracefully: the listener stops accepting,
/// requests in flight finish (their appends are acknowledged only once
/// durable), the read models stop, and the store is closed (flushed) before
/// it returns, so the directory can be opened again at once.
///
/// ```no_run
/// # async fn run() -> Result<(), strata_http::HttpError> {
/// use strata_http::{Config, Server};
/// let server = Server::start("./strata-data", "127.0.0.1:8080".parse().unwrap(), Config::default()).await?;
/// println!("listening on {}", server.url());
/// tokio::signal::ctrl_c().await.ok();
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Server {
    addr: SocketAddr,
    tokens_required: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), HttpError>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the embedded log in `data` (created when absent) and serves it on `addr`.
    pub async fn start(data: impl AsRef<Path>, addr: SocketAddr, config: Config) -> Result<Server, HttpError> {
        let (path, options) = (data.as_ref().to_path_buf(), config.store.clone());
        // Opening reads the log's tail (and after a crash indexes it): off the runtime's threads.
        let store = tokio::task::spawn_blocking(move || SegmentStore::open_with(path, options))
            .await
            .map_err(|e| HttpError::Internal {
                reason: format!("opening the store did not finish: {e}"),
            })??;
        let listener = TcpListener::bind(addr).await.map_err(|source| HttpError::Io {
            context: format!("binding {addr}"),
            source,
        })?;
        Server::serve(store, listener, config).await
    }

    /// Serves an open store on a bound listener (e.g. port 0 in tests).
    ///
    /// Bearer tokens are those of `<data>/auth/tokens` ([`TokenFile`]):
    /// without any, a non-loopback listener is refused
    /// ([`HttpError::InsecureBind`]) unless [`Config::insecure`].
    pub async fn serve(store: SegmentStore, listener: TcpListener, config: Config) -> Result<Server, HttpError> {
        let tokens: TokenSource = Arc::new(TokenFile::in_data_dir(store.path()));
        let access = Access::start(Some(&tokens), local_addr(&listener)?, config.insecure).await?;
        let projections = Projections::open(&store)?;
        let tables = store.tables()?;
        let subscriptions = Subscriptions::local(Arc::new(store.clone()), tables.clone())?;
        let idempotency = Records::open_local(&tables, config.idempotency_retention)?;
        let segments = store.clone();
        let mut state = AppState::new(Arc::new(store), projections, subscriptions, idempotency, config);
        state.segments = Some(segments);
        state.access = access;
        Server::serve_state(state, listener, Some(tokens)).await
    }

    /// Connects to the PostgreSQL database at `url` (schema `strata`; see
    /// `strata_store::PostgresStore`) and serves it on `addr`: the log, the
    /// read models and the idempotency records all in that database.
    /// Several processes may serve one database at once (see
    /// `docs/postgres.md`).
    #[cfg(feature = "postgres")]
    pub async fn start_postgres(url: &str, addr: SocketAddr, config: Config) -> Result<Server, HttpError> {
        let store = strata_store::PostgresStore::connect(url).await?;
        let listener = TcpListener::bind(addr).await.map_err(|source| HttpError::Io {
            context: format!("binding {addr}"),
            source,
        })?;
        Server::serve_postgres(store, listener, config).await
    }

    /// Serves a connected PostgreSQL store on a bound listener: the read
    /// models (`Projections::open_postgres`: one process writes each, every
    /// process reads) and the idempotency records live in its database and
    /// schema. `config.store` is not used.
    #[cfg(feature = "postgres")]
    pub async fn serve_postgres(
        store: strata_store::PostgresStore,
        listener: TcpListener,
        config: Config,
    ) -> Result<Server, HttpError> {
        let tokens: TokenSource = Arc::new(crate::auth::PgTokens::open(&store).await?);
        let access = Access::start(Some(&tokens), local_addr(&listener)?, config.insecure).await?;
        let projections = Projections::open_postgres(&store).await?;
        let subscriptions = Subscriptions::postgres(store.clone()).await?;
        let idempotency = Records::open_postgres(&store, config.idempotency_retention).await?;
        let postgres = store.clone();
        let mut state = AppState::new(Arc::new(store), projections, subscriptions, idempotency, config);
        state.postgres = Some(postgres);
        state.access = access;
        Server::serve_state(state, listener, Some(tokens)).await
    }

    /// Serves `state` on `listener`; `tokens` is where `state.access`
    /// reloads its tokens from while it serves.
    pub(crate) async fn serve_state(
        state: AppState,
        listener: TcpListener,
        tokens: Option<TokenSource>,
    ) -> Result<Server, HttpError> {
        let addr = local_addr(&listener)?;
        let tokens_required = state.access.required();
        let state: Shared = state.shared();
        let removed = state.idempotency.purge().await?;
        state.projections.start().await?;
        let purge_stop = CancellationToken::new();
        let purge = tokio::spawn(purge_loop(
            state.idempotency.clone(),
            state.config.idempotency_purge_interval,
            purge_stop.clone(),
        ));
        // Stopped with the purge: it lets go of the token source.
        let refresh = tokens.map(|tokens| {
            tokio::spawn(refresh_loop(
                state.access.clone(),
                tokens,
                state.config.token_refresh,
                purge_stop.clone(),
            ))
        });
        let app = router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        info!(%addr, purged_keys = removed, "strata-http listening");
        let grace = state.config.shutdown_grace;
        let closing = state.closing.0.clone();
        let task = tokio::spawn(async move {
            let served = accept_loop(listener, app, stopped, grace, closing).await;
            info!("no more connections; finishing detached requests");
            state.stopping.cancel();
            state.tasks.close();
            state.tasks.wait().await;
            purge_stop.cancel();
            if let Err(e) = purge.await {
                warn!(error = %e, "the idempotency purge task failed");
            }
            if let Some(refresh) = refresh
                && let Err(e) = refresh.await
            {
                warn!(error = %e, "the token refresh task failed");
            }
            let projections = state.projections.stop().await;
            // The groups' feeds let go of the store (their state is durable).
            state.subscriptions.stop().await;
            // The last handle on the store: dropping it stops the writer and
            // flushes sled (or closes the PostgreSQL connections). It may
            // block, so not on a runtime thread.
            tokio::task::spawn_blocking(move || drop(state))
                .await
                .map_err(|e| HttpError::Internal {
                    reason: format!("closing the store: {e}"),
                })?;
            info!("stopped");
            served?;
            projections.map_err(HttpError::from)
        });
        Ok(Server {
            addr,
            tokens_required,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether every request (but the open routes) needed a bearer token
    /// at start (a service that started open becomes guarded when its
    /// first token is created: `docs/security.md`).
    pub fn tokens_required(&self) -> bool {
        self.tokens_required
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops gracefully (see [`Server`]) and returns once the store is closed.
    pub async fn shutdown(mut self) -> Result<(), HttpError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(|e| HttpError::Internal {
            reason: format!("the server task failed: {e}"),
        })?
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, HttpError> {
    listener.local_addr().map_err(|source| HttpError::Io {
        context: "reading the listener's address".into(),
        source,
    })
}

/// Serves connections until `stopped` fires, then stops accepting, ends
/// the live streams (`closing`), lets requests in flight finish, and after
/// `grace` drops the connections still open (a client that never finishes
/// its request cannot hold the shutdown).
async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    stopped: oneshot::Receiver<()>,
    grace: std::time::Duration,
    closing: CancellationToken,
) -> Result<(), HttpError> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: go on serving.
                        warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            // Finished connections are reaped as they go.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut stopped => break,
        }
    }
    drop(listener);
    closing.cancel();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            warn!(?grace, open = connections.len(), "connections still open after the shutdown grace period: dropping them");
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Purges expired idempotency keys every `every` (at least 10 ms) until `stop`.
async fn purge_loop(records: Records, every: std::time::Duration, stop: CancellationToken) {
    let every = every.max(std::time::Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match records.purge().await {
            Ok(n) if n > 0 => info!(removed = n, "purged expired idempotency keys"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "purging idempotency keys failed"),
        }
    }
}
