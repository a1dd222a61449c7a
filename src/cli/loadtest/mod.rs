//! `strata loadtest`: concurrent read-modify-write clients against a
//! running `strata serve`, then a check that no acknowledged update was
//! lost. `--target stock` (the default) adjusts stock items; `--target
//! docs` runs the spec's read–merge–PUT loop on documents through
//! strata-client, and a race of writers for one unique value.

mod docs;
mod options;
mod stock;

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::CliResult;
use options::{Options, loopback_url};

/// What the clients write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Stock items: GET, then `adjust` to on-hand + 1 with If-Match.
    Stock,
    /// Documents: the spec's read–merge–PUT loop with strata-client, a
    /// shared counter (If-Match) and a field per client (merge base), then
    /// a race of all clients for one unique value.
    Docs,
}

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
    /// What the clients write.
    #[arg(long, value_enum, default_value_t = Target::Stock)]
    target: Target,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long the clients run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Hot stock items (or documents) the clients share.
    #[arg(long, default_value_t = 1)]
    resources: usize,
    /// Attempts per update before giving up on it.
    #[arg(long, default_value_t = 50)]
    max_attempts: u32,
    /// Send an Idempotency-Key with every write (stock; the document client always does).
    #[arg(long)]
    idempotency_keys: bool,
    /// A bearer token of scope write or above, for a service that requires
    /// tokens (`strata token create --scope write --name loadtest`).
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn loadtest(args: LoadtestArgs) -> CliResult {
    let urls = args
        .url
        .iter()
        .map(|u| loopback_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let options = Options {
        urls,
        clients: args.clients,
        duration: args.duration,
        resources: args.resources,
        max_attempts: args.max_attempts,
        idempotency_keys: args.idempotency_keys,
        bearer: args.token.as_deref().map(options::bearer).transpose()?,
        ..Options::default()
    };
    match args.target {
        Target::Stock => {
            let report = stock::run(options).await?;
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
        }
        Target::Docs => {
            let report = docs::run(options).await?;
            println!("{report}");
            if let Some(failure) = report.failure() {
                return Err(failure.into());
            }
            println!("invariants hold: every acknowledged update is in its document; one writer won the unique value");
        }
    }
    Ok(())
}
