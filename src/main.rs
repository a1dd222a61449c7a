//! The `strata` command-line tool.

mod cli;

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: sled allocates and frees per key
/// written, and under concurrent writers glibc's arena locks showed up as
/// a large share of the append path (see README, "Performance").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// strata: an event-sourced aggregate store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// How log lines look on stderr: `text` (colours only on a terminal) or
    /// `json` (one object per line, for log shippers).
    #[arg(long, global = true, value_enum, env = "STRATA_LOG_FORMAT", default_value = "text")]
    log_format: cli::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append events to a stream of a data directory.
    Append(cli::log::AppendArgs),
    /// Read a stream, or the whole log, of a data directory.
    Read(cli::log::ReadArgs),
    /// Measure append throughput against the disk's ceiling and the naive append, side by side.
    Bench(cli::bench::BenchArgs),
    /// Rebuild the read models (order summary, stock levels) of a data directory from its log.
    Rebuild(cli::rebuild::RebuildArgs),
    /// Serve the HTTP API over a data directory (or a PostgreSQL database), with the read models running inside.
    Serve(cli::serve::ServeArgs),
    /// Erase removed events (deleted, truncated, expired) from the segment files of a data directory.
    Scavenge(cli::scavenge::ScavengeArgs),
    /// Check every record of a segment log directory and that its index equals a rebuild; non-zero exit on damage.
    Verify(cli::verify::VerifyArgs),
    /// Concurrent read-modify-write clients against a running `strata serve`; fails on a lost update.
    Loadtest(cli::loadtest::LoadtestArgs),
    /// Print the log, filtered, as JSON lines: the history, then live events (of a store directory, or of a server with --url).
    Subscribe(cli::subscribe::SubscribeArgs),
    /// List the persistent subscription groups with their lag (of a store directory, or of a server with --url).
    Subscriptions(cli::subscribe::SubscriptionsArgs),
    /// Create, list and revoke the bearer tokens `strata serve` requires (of a data directory or a PostgreSQL database).
    Token(cli::token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let access_log = matches!(&cli.command, Command::Serve(args) if args.access_log);
    // Flushes the queued log lines when main returns.
    let _log = cli::logging::init(cli.log_format, access_log);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Append(args) => cli::log::append(args).await,
            Command::Read(args) => cli::log::read(args).await,
            Command::Bench(args) => cli::bench::bench(args).await,
            Command::Rebuild(args) => cli::rebuild::rebuild(args).await,
            Command::Serve(args) => cli::serve::serve(args).await,
            Command::Loadtest(args) => cli::loadtest::loadtest(args).await,
            Command::Verify(args) => cli::verify::verify(args).await,
            Command::Scavenge(args) => cli::scavenge::scavenge(args).await,
            Command::Subscribe(args) => cli::subscribe::subscribe(args).await,
            Command::Subscriptions(args) => cli::subscribe::subscriptions(args).await,
            Command::Token(args) => cli::token::token(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
