//! `strata subscribe`: a live, filtered tail of the log of a store
//! directory or of a running server; `strata subscriptions`: the
//! persistent subscription groups with their lag.

use std::io::Write;
use std::sync::Arc;

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use strata_client::{Client, LiveFilter, LiveItem};
use strata_store::{EventFilter, EventStore, SegmentOptions, StreamId, SubscriptionItem};
use strata_subscriptions::{GroupInfo, Subscriptions};

use super::CliResult;
use super::log::DataDir;

/// Which events: every term may be repeated (types OR type prefixes, AND
/// streams OR stream prefixes OR categories).
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// An exact event type.
    #[arg(long = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// An event type prefix.
    #[arg(long = "event-type-prefix", value_name = "PREFIX")]
    event_type_prefixes: Vec<String>,
    /// An exact stream id.
    #[arg(long = "stream", value_name = "STREAM")]
    streams: Vec<String>,
    /// A stream id prefix.
    #[arg(long = "stream-prefix", value_name = "PREFIX")]
    stream_prefixes: Vec<String>,
    /// A category: the stream id before its first `-`.
    #[arg(long = "category", value_name = "CATEGORY")]
    categories: Vec<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> Result<EventFilter, Box<dyn std::error::Error + Send + Sync>> {
        let mut f = EventFilter::all();
        for t in &self.event_types {
            f = f.event_type(t.clone());
        }
        for t in &self.event_type_prefixes {
            f = f.event_type_prefix(t.clone());
        }
        for s in &self.streams {
            f = f.stream(StreamId::new(s.clone())?);
        }
        for t in &self.stream_prefixes {
            f = f.stream_prefix(t.clone());
        }
        for t in &self.categories {
            f = f.category(t.clone());
        }
        f.check()?;
        Ok(f)
    }

    fn to_live(&self) -> LiveFilter {
        LiveFilter {
            event_types: self.event_types.clone(),
            event_type_prefixes: self.event_type_prefixes.clone(),
            streams: self.streams.clone(),
            stream_prefixes: self.stream_prefixes.clone(),
            categories: self.categories.clone(),
        }
    }
}

/// Arguments of `strata subscribe`.
#[derive(Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    data: DataDir,
    /// Follow a running server (`http://host:port`) instead of a store
    /// directory; reconnects with Last-Event-ID when the connection ends.
    #[arg(long, env = "STRATA_URL", value_name = "URL")]
    url: Option<String>,
    /// A bearer token (scope read or above) for a server that requires tokens.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Start after this position (0: from the first event).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    limit: Option<u64>,
}

/// One event as a JSON line: its place, type, and payload (JSON as it is,
/// other payloads as text or base64).
fn line(position: u64, stream: &str, version: u64, event_type: &str, data: Value) -> String {
    json!({"position": position, "stream": stream, "version": version, "type": event_type, "data": data}).to_string()
}

pub async fn subscribe(args: SubscribeArgs) -> CliResult {
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let done = |printed: u64| args.limit.is_some_and(|l| printed >= l);
    if done(printed) {
        return Ok(());
    }
    match &args.url {
        Some(url) => {
            let client = client(url, args.token.as_deref())?;
            let mut live = client.follow(args.filter.to_live(), args.after);
            loop {
                if let LiveItem::Event(e) = live.next().await? {
                    let data = match (e.data, e.data_base64) {
                        (Some(v), _) => v,
                        (None, Some(b)) => json!({ "base64": b }),
                        (None, None) => Value::Null,
                    };
                    writeln!(out, "{}", line(e.position, &e.stream, e.version, &e.event_type, data))?;
                    out.flush()?;
                    printed += 1;
                    if done(printed) {
                        return Ok(());
                    }
                }
            }
        }
        None => {
            // The directory is this process's while it runs: no server may
            // serve it meanwhile (follow a server with --url).
            let store = args.data.open(SegmentOptions::default()).await?;
            let mut items = store.subscribe_filtered(args.after, args.filter.to_filter()?);
            while let Some(item) = items.next().await {
                if let SubscriptionItem::Event(e) = item? {
                    let data = serde_json::from_slice(&e.payload)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.payload).into_owned()));
                    writeln!(
                        out,
                        "{}",
                        line(e.position, e.stream_id.as_str(), e.version, &e.event_type, data)
                    )?;
                    out.flush()?;
                    printed += 1;
                    if done(printed) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
    }
}

/// A client of the server at `url`, sending `token` when given.
fn client(url: &str, token: Option<&str>) -> Result<Client, strata_client::ClientError> {
    let client = Client::new(url)?;
    match token {
        Some(token) => client.with_bearer_token(token),
        None => Ok(client),
    }
}

/// Arguments of `strata subscriptions`.
#[derive(Args)]
pub struct SubscriptionsArgs {
    #[command(flatten)]
    data: DataDir,
    /// Ask a running server (`http://host:port`) instead of reading a store directory.
    #[arg(long, env = "STRATA_URL", value_name = "URL")]
    url: Option<String>,
    /// A bearer token (scope read or above) for a server that requires tokens.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the groups as JSON (as `GET /subscriptions/groups` answers).
    #[arg(long)]
    json: bool,
}

/// A group's row: what `GET /subscriptions/groups` says of it.
fn row(g: &Value) -> String {
    let n = |k: &str| g[k].as_u64().map_or_else(|| "?".into(), |v| v.to_string());
    format!(
        "{:<24} {:<18} {:>12} {:>12} {:>10} {:>9} {:>9} {:>8} {:>11}",
        g["name"].as_str().unwrap_or("?"),
        g["settings"]["strategy"].as_str().unwrap_or("?"),
        n("checkpoint"),
        n("head"),
        n("lag"),
        n("pending"),
        n("in_flight"),
        n("parked"),
        g["counters"]["redelivered"].as_u64().unwrap_or(0),
    )
}

fn local_view(g: &GroupInfo) -> Value {
    json!({
        "name": g.name.as_str(),
        "settings": {"strategy": g.settings.strategy.to_string()},
        "checkpoint": g.checkpoint,
        "examined": g.examined,
        "head": g.head,
        "lag": g.lag,
        "pending": g.pending,
        "in_flight": g.in_flight,
        "parked": g.parked,
        "counters": {
            "delivered": g.counters.delivered,
            "redelivered": g.counters.redelivered,
            "acked": g.counters.acked,
            "timed_out": g.counters.timed_out,
            "parked": g.counters.parked,
        },
    })
}

pub async fn subscriptions(args: SubscriptionsArgs) -> CliResult {
    let groups: Vec<Value> = match &args.url {
        Some(url) => {
            let client = client(url, args.token.as_deref())?;
            let r = client
                .send(client.request(strata_client::reqwest::Method::GET, "subscriptions/groups"))
                .await?;
            let status = r.status();
            let body: Value = r.json().await?;
            if !status.is_success() {
                return Err(format!("{status}: {}", body["detail"].as_str().unwrap_or("")).into());
            }
            body["groups"].as_array().cloned().unwrap_or_default()
        }
        None => {
            let store = args.data.open(SegmentOptions::default()).await?;
            let subscriptions = Subscriptions::local(Arc::new(store.clone()), store.tables()?)?;
            let groups = subscriptions.groups().await?;
            groups.iter().map(local_view).collect()
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json!({ "groups": groups }))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<18} {:>12} {:>12} {:>10} {:>9} {:>9} {:>8} {:>11}",
        "GROUP", "STRATEGY", "CHECKPOINT", "HEAD", "LAG", "PENDING", "IN_FLIGHT", "PARKED", "REDELIVERED"
    )?;
    for g in &groups {
        writeln!(out, "{}", row(g))?;
    }
    Ok(())
}
