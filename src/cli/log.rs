//! `strata append` and `strata read`: the log of a data directory, by hand;
//! and how every subcommand opens that directory ([`DataDir::open`]).

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use strata_aggregates::Aggregate;
use strata_aggregates::domain::order::Order;
use strata_aggregates::domain::stock::StockItem;
use strata_store::{
    Direction, EventStore, ExpectedVersion, NewEvent, RecordedEvent, SegmentOptions, SegmentStore, StoreError, StreamId,
};

use super::CliResult;

/// Where the embedded store lives.
#[derive(Args)]
pub struct DataDir {
    /// The data directory (created when absent).
    #[arg(long, env = "STRATA_DATA", default_value = "./strata-data")]
    pub data: PathBuf,
}

impl DataDir {
    /// Opens the embedded store in the directory, off the runtime's
    /// threads, with a progress bar on a terminal while it indexes the log
    /// (after a crash, or when `index/` was deleted).
    pub async fn open(
        &self,
        options: SegmentOptions,
    ) -> Result<SegmentStore, Box<dyn std::error::Error + Send + Sync>> {
        let path = self.data.clone();
        SegmentStore::check_layout(&path).map_err(explain_layout)?;
        let store = tokio::task::spawn_blocking(move || {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{spinner} indexing the log: segment {pos}/{len} ({msg} events)")
                    .expect("valid template"),
            );
            let store = SegmentStore::open_with_progress(&path, options, &mut |p| {
                bar.set_length(p.segments);
                bar.set_position(p.segments_done);
                bar.set_message(p.events.to_string());
            });
            bar.finish_and_clear();
            store
        })
        .await??;
        Ok(store)
    }
}

/// The error for a data directory in a layout this build does not open,
/// with what to do about it; other errors as they are.
pub fn explain_layout(e: StoreError) -> Box<dyn std::error::Error + Send + Sync> {
    match &e {
        StoreError::UnsupportedLayout { path, .. } => format!(
            "{e}.\nNothing in it was changed. Keep using it with the strata version that wrote it, \
             or give this one a new directory (--data or STRATA_DATA, e.g. --data {}-segments); \
             to carry the events over, read them with the old version (`strata read`) and append \
             them with this one.",
            path.display()
        )
        .into(),
        _ => e.into(),
    }
}

/// Arguments of `strata append`.
#[derive(Args)]
pub struct AppendArgs {
    #[command(flatten)]
    data: DataDir,
    /// The stream to append to.
    #[arg(long)]
    stream: String,
    /// The event type.
    #[arg(long = "type")]
    event_type: String,
    /// The version the append was decided on: a number, `no-stream`, `exists` or `any`.
    #[arg(long, default_value = "any", value_parser = parse_expected)]
    expected: ExpectedVersion,
    /// The payloads, one event each.
    #[arg(required = true)]
    payloads: Vec<String>,
}

/// Arguments of `strata read`.
#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    data: DataDir,
    /// The stream to read; the whole log when absent.
    #[arg(long)]
    stream: Option<String>,
    /// First version (with --stream) or position to read.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Most events to print.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Newest first (with --stream; --from defaults to the newest).
    #[arg(long)]
    backward: bool,
}

/// Parses `--expected`.
pub fn parse_expected(s: &str) -> Result<ExpectedVersion, String> {
    match s {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n => n
            .parse()
            .map(ExpectedVersion::Exact)
            .map_err(|_| format!("{s:?} is not a version, `no-stream`, `exists` or `any`")),
    }
}

/// Streams only the domain writes: the order and stock aggregates decide
/// their events, and their read models stop on an event they did not
/// decide; `$`-streams are the system's (snapshots).
fn domain_owner(stream: &str) -> Option<&'static str> {
    let kind = |k: &str| stream.strip_prefix(k).is_some_and(|rest| rest.starts_with('-'));
    if kind(Order::KIND) {
        Some("the order aggregate")
    } else if kind(StockItem::KIND) {
        Some("the stock aggregate")
    } else if stream.starts_with('$') {
        Some("the system (snapshots)")
    } else {
        None
    }
}

pub async fn append(args: AppendArgs) -> CliResult {
    if let Some(owner) = domain_owner(&args.stream) {
        return Err(format!(
            "stream {} belongs to {owner}: write it through the service's API (`strata serve`), not by hand",
            args.stream
        )
        .into());
    }
    let store = args.data.open(SegmentOptions::default()).await?;
    let stream = StreamId::new(&args.stream)?;
    let events = args
        .payloads
        .into_iter()
        .map(|p| NewEvent::new(args.event_type.clone(), Bytes::from(p)))
        .collect();
    let r = store.append(&stream, args.expected, events).await?;
    println!(
        "appended to {stream}: version {}, positions {}..={}",
        r.stream_version, r.first_position, r.last_position
    );
    Ok(())
}

pub async fn read(args: ReadArgs) -> CliResult {
    let store = args.data.open(SegmentOptions::default()).await?;
    let events = match &args.stream {
        Some(s) => {
            let stream = StreamId::new(s)?;
            let (from, direction) = if args.backward {
                let from = if args.from == 1 { u64::MAX } else { args.from };
                (from, Direction::Backward)
            } else {
                (args.from, Direction::Forward)
            };
            store.read_stream(&stream, from, direction, args.limit).await?
        }
        None => store.read_all(args.from, args.limit).await?,
    };
    let mut out = std::io::stdout().lock();
    for e in &events {
        writeln!(out, "{}", serde_json::to_string(&event_json(e))?)?;
    }
    Ok(())
}

/// An event as one JSON line; the payload as text when it is UTF-8.
fn event_json(e: &RecordedEvent) -> serde_json::Value {
    let payload = match std::str::from_utf8(&e.payload) {
        Ok(text) => serde_json::Value::String(text.to_string()),
        Err(_) => serde_json::Value::Array(e.payload.iter().map(|b| (*b).into()).collect()),
    };
    serde_json::json!({
        "stream": e.stream_id.as_str(),
        "version": e.version,
        "position": e.position,
        "id": e.id.to_string(),
        "type": e.event_type,
        "payload": payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_streams_are_refused_and_others_allowed() {
        assert!(domain_owner("order-1").is_some());
        assert!(domain_owner("stock-tea").is_some());
        assert!(domain_owner("$snapshot-order-1").is_some());
        assert!(domain_owner("orders").is_none());
        assert!(domain_owner("stockpile-1").is_none());
        assert!(domain_owner("account-7").is_none());
    }
}
