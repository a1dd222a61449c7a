//! `strata loadtest`: concurrent read-modify-write clients against `strata serve`.

use std::time::Duration;

use clap::Args;
use strata_http::{LoadTestOptions, run_load_test};

use super::CliResult;

/// Arguments of `strata loadtest`.
#[derive(Args)]
pub struct LoadtestArgs {
    /// The service (loopback addresses only). Several, comma-separated or
    /// repeated, for processes serving one database (`serve --postgres`):
    /// the clients are spread over them and share the same items.
    #[arg(
        long,
        env = "STRATA_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    url: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long the clients run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Hot stock items the clients share.
    #[arg(long, default_value_t = 1)]
    resources: usize,
    /// Attempts per update before giving up on it.
    #[arg(long, default_value_t = 50)]
    max_attempts: u32,
    /// Send an Idempotency-Key with every write.
    #[arg(long)]
    idempotency_keys: bool,
}

pub async fn loadtest(args: LoadtestArgs) -> CliResult {
    let mut urls = args.url.into_iter();
    let report = run_load_test(LoadTestOptions {
        url: urls.next().ok_or("--url names no service")?,
        more_urls: urls.collect(),
        clients: args.clients,
        duration: args.duration,
        resources: args.resources,
        max_attempts: args.max_attempts,
        idempotency_keys: args.idempotency_keys,
        ..LoadTestOptions::default()
    })
    .await?;
    println!("{report}");
    if report.lost_updates() > 0 || report.phantom_updates() > 0 {
        return Err(format!(
            "the invariant failed: {} lost and {} phantom updates",
            report.lost_updates(),
            report.phantom_updates()
        )
        .into());
    }
    println!("invariant holds: every acknowledged update is in the on-hand figure");
    Ok(())
}
