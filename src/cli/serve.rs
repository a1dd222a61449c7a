//! `strata serve`: the HTTP service over a data directory (or, with
//! `--postgres`, a PostgreSQL database), until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use strata_http::{Config, ConflictStatus, Server};
use strata_store::{Durability, PostgresOptions, PostgresStore, SegmentOptions};

use super::CliResult;
use super::log::DataDir;

/// What an acknowledged append survives (see docs/log.md).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    /// fdatasync before the acknowledgement: survives power loss (the default).
    Fsync,
    /// Written to the OS before the acknowledgement, synced within ~100 ms:
    /// survives a process crash (`flush`, the old name, is accepted).
    #[value(alias = "flush")]
    Buffered,
}

/// Arguments of `strata serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "STRATA_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// Serve from this PostgreSQL database instead of the data directory:
    /// the log, the read models and the idempotency records, shared with
    /// other `strata serve --postgres` processes on the same database and
    /// schema. A libpq URL, e.g. postgres://app@db:5432/shop.
    #[arg(long, env = "STRATA_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// The PostgreSQL schema that holds the tables (created when absent).
    #[arg(
        long,
        env = "STRATA_POSTGRES_SCHEMA",
        default_value = "strata",
        requires = "postgres"
    )]
    postgres_schema: String,
    /// The status of a stale If-Match: 409 (Conflict) or 412 (Precondition Failed).
    #[arg(long, env = "STRATA_CONFLICT_STATUS", default_value_t = 409, value_parser = parse_conflict_status)]
    conflict_status: u16,
    /// Refuse writes to existing resources without If-Match (or expected_version) with 428.
    #[arg(long, env = "STRATA_REQUIRE_IF_MATCH")]
    require_if_match: bool,
    /// The largest request body, in bytes (larger is 413).
    #[arg(long, env = "STRATA_BODY_LIMIT", default_value_t = 2 * 1024 * 1024)]
    body_limit: usize,
    /// How long completed Idempotency-Keys are kept, e.g. 24h, 30m.
    #[arg(long, env = "STRATA_IDEMPOTENCY_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    idempotency_retention: Duration,
    /// The longest a read with min_position waits for the read model, e.g. 5s.
    #[arg(long, env = "STRATA_READ_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    read_wait: Duration,
    /// The most bytes of documents a page of GET /docs/{collection} holds (it always holds one).
    #[arg(long, env = "STRATA_LIST_PAGE_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    list_page_bytes: u64,
    /// How long a shutdown waits for open requests before dropping their connections.
    #[arg(long, env = "STRATA_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// What an acknowledged write survives.
    #[arg(long, env = "STRATA_DURABILITY", value_enum, default_value = "fsync")]
    durability: DurabilityArg,
    /// One line per request on stderr (method, route, path, status,
    /// problem type, latency, request id); `false` turns it off.
    #[arg(long, env = "STRATA_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Serve the web console at /ui (on the address above only); `false` turns it off.
    #[arg(long, env = "STRATA_UI", default_value_t = true, action = clap::ArgAction::Set)]
    ui: bool,
    /// Serve a non-loopback address even though no bearer token exists
    /// (`strata token create`): anyone who reaches it may read, write and
    /// delete. Without it such a server refuses to start.
    #[arg(long, env = "STRATA_INSECURE")]
    insecure: bool,
    /// How often the tokens are read again, so that tokens created or
    /// revoked meanwhile take effect, e.g. 5s.
    #[arg(long, env = "STRATA_TOKEN_REFRESH", default_value = "5s", value_parser = humantime::parse_duration)]
    token_refresh: Duration,
}

/// The database a URL names, without its password.
fn describe(url: &str) -> String {
    match url.parse::<strata_store::tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    strata_store::tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    #[cfg(unix)]
                    strata_store::tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default();
            format!("{}@{host}/{}", c.get_user().unwrap_or(""), c.get_dbname().unwrap_or(""))
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

fn parse_conflict_status(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(code) if ConflictStatus::from_code(code).is_some() => Ok(code),
        _ => Err(format!("{s:?}: the conflict status is 409 or 412")),
    }
}

#[cfg(unix)]
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn terminated() {
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn serve(args: ServeArgs) -> CliResult {
    let config = Config {
        store: SegmentOptions {
            durability: match args.durability {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Buffered => Durability::Buffered,
            },
            ..SegmentOptions::default()
        },
        conflict_status: ConflictStatus::from_code(args.conflict_status).unwrap_or_default(),
        require_if_match: args.require_if_match,
        body_limit: args.body_limit,
        idempotency_retention: args.idempotency_retention,
        read_wait_timeout: args.read_wait,
        list_page_bytes: args.list_page_bytes,
        shutdown_grace: args.shutdown_grace,
        ui: args.ui,
        insecure: args.insecure,
        token_refresh: args.token_refresh,
        ..Config::default()
    };
    let (server, what) = match &args.postgres {
        Some(url) => {
            let options = PostgresOptions {
                schema: args.postgres_schema.clone(),
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect_with(url, options).await?;
            let listener = tokio::net::TcpListener::bind(args.addr)
                .await
                .map_err(|e| format!("binding {}: {e}", args.addr))?;
            let what = format!("PostgreSQL {} (schema {})", describe(url), args.postgres_schema);
            (Server::serve_postgres(store, listener, config).await?, what)
        }
        None => {
            let store = args.data.open(config.store.clone()).await?;
            let listener = tokio::net::TcpListener::bind(args.addr)
                .await
                .map_err(|e| format!("binding {}: {e}", args.addr))?;
            (
                Server::serve(store, listener, config).await?,
                args.data.data.display().to_string(),
            )
        }
    };
    let access = if server.tokens_required() {
        "bearer tokens required"
    } else if server.local_addr().ip().is_loopback() {
        "open: a loopback address and no tokens"
    } else {
        "OPEN to anyone who reaches it: --insecure and no tokens"
    };
    eprintln!(
        "strata serving {what} on {} ({access}; openapi: {}/openapi.json); Ctrl-C to stop",
        server.url(),
        server.url()
    );
    terminated().await;
    eprintln!("shutting down: finishing requests in flight (a second signal stops at once)");
    tokio::select! {
        done = server.shutdown() => done?,
        () = terminated() => {
            // Every acknowledged append is already as durable as the mode
            // promises; what is cut short was never acknowledged.
            eprintln!("second signal: stopping now");
            std::process::exit(130);
        }
    }
    eprintln!("stopped; the store is closed");
    Ok(())
}
