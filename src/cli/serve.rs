//! `strata serve`: the HTTP service over a sled directory, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use strata_http::{Config, ConflictStatus, Server};
use strata_store::{Durability, SledOptions};

use super::CliResult;
use super::log::DataDir;

/// What an acknowledged append survives (see docs/log.md).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    /// sled flush + fdatasync: survives power loss (the default).
    Fsync,
    /// sled flush only: survives a process crash.
    Flush,
    /// No flush before the acknowledgement: benchmarks only.
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
    /// How long a shutdown waits for open requests before dropping their connections.
    #[arg(long, env = "STRATA_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// What an acknowledged write survives.
    #[arg(long, env = "STRATA_DURABILITY", value_enum, default_value = "fsync")]
    durability: DurabilityArg,
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
        sled: SledOptions {
            durability: match args.durability {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Flush => Durability::Flush,
                DurabilityArg::Buffered => Durability::Buffered,
            },
            ..SledOptions::default()
        },
        conflict_status: ConflictStatus::from_code(args.conflict_status).unwrap_or_default(),
        require_if_match: args.require_if_match,
        body_limit: args.body_limit,
        idempotency_retention: args.idempotency_retention,
        read_wait_timeout: args.read_wait,
        shutdown_grace: args.shutdown_grace,
        ..Config::default()
    };
    let server = Server::start(&args.data.data, args.addr, config).await?;
    eprintln!(
        "strata serving {} on {} (openapi: {}/openapi.json); Ctrl-C to stop",
        args.data.data.display(),
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
