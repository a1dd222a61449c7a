//! `strata token`: the bearer tokens of a data directory (or of a
//! PostgreSQL database) that `strata serve` checks requests against.
//! `create` prints the secret once, on stdout; nothing else ever shows it.

use clap::{Args, Subcommand};
use strata_http::{PgTokens, Scope, TokenFile, TokenInfo, TokenStore};
use strata_store::{PostgresOptions, PostgresStore};

use super::CliResult;
use super::log::DataDir;

/// Arguments of `strata token`.
#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret, once, on stdout.
    Create(CreateArgs),
    /// List the tokens: names, scopes, creation times (never secrets).
    List(ListArgs),
    /// Revoke a token: servers refuse it once they reload their tokens (every 5 s by default).
    Revoke(RevokeArgs),
}

/// Where the tokens are: a data directory's `auth/tokens`, or a database.
#[derive(Args)]
struct Place {
    #[command(flatten)]
    data: DataDir,
    /// The tokens of this PostgreSQL database (as `strata serve --postgres`) instead of the data directory.
    #[arg(long, env = "STRATA_POSTGRES", value_name = "URL")]
    postgres: Option<String>,
    /// The PostgreSQL schema that holds the tables.
    #[arg(
        long,
        env = "STRATA_POSTGRES_SCHEMA",
        default_value = "strata",
        requires = "postgres"
    )]
    postgres_schema: String,
}

#[derive(Args)]
struct CreateArgs {
    /// A unique name saying who holds it (1 to 64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    name: String,
    /// What it allows: read (GETs), write (and appends, commands, document writes) or admin (and deletions, group management).
    #[arg(long, value_parser = parse_scope)]
    scope: Scope,
    #[command(flatten)]
    place: Place,
}

#[derive(Args)]
struct ListArgs {
    /// Print the tokens as JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    place: Place,
}

#[derive(Args)]
struct RevokeArgs {
    /// The token's name.
    name: String,
    #[command(flatten)]
    place: Place,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: strata_http::HttpError| e.to_string())
}

impl Place {
    /// Where the tokens are, opened.
    async fn open(&self) -> Result<Box<dyn TokenStore>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match &self.postgres {
            Some(url) => {
                let options = PostgresOptions {
                    schema: self.postgres_schema.clone(),
                    ..PostgresOptions::default()
                };
                let store = PostgresStore::connect_with(url, options).await?;
                Box::new(PgTokens::open(&store).await?)
            }
            None => Box::new(TokenFile::in_data_dir(&self.data.data)),
        })
    }
}

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

pub async fn token(args: TokenArgs) -> CliResult {
    match args.command {
        TokenCommand::Create(a) => {
            let issued = a.place.open().await?.create(&a.name, a.scope).await?;
            eprintln!(
                "created token {} (scope {}); its secret follows on stdout, shown this once: \
                 send it as `Authorization: Bearer <secret>` (strata loadtest/subscribe --token)",
                issued.info.name, issued.info.scope
            );
            println!("{}", issued.secret.expose());
        }
        TokenCommand::List(a) => {
            let tokens: Vec<TokenInfo> = a.place.open().await?.list().await?;
            if a.json {
                for t in &tokens {
                    println!("{}", serde_json::to_string(t)?);
                }
            } else if tokens.is_empty() {
                eprintln!("no tokens: strata serve is open on a loopback address and refuses other addresses");
            } else {
                println!("{:<24} {:<6} CREATED", "NAME", "SCOPE");
                for t in &tokens {
                    println!("{:<24} {:<6} {}", t.name, t.scope.name(), when(t.created_at));
                }
            }
        }
        TokenCommand::Revoke(a) => {
            let revoked = a.place.open().await?.revoke(&a.name).await?;
            eprintln!(
                "revoked token {} (scope {}); running servers refuse it from their next reload",
                revoked.name, revoked.scope
            );
        }
    }
    Ok(())
}
