//! Where the `strata` command's log lines go and how they look: stderr,
//! through a bounded queue drained by a thread of its own (a slow reader
//! of stderr holds up no request until 128k lines wait), plain text
//! without colours unless stderr is a terminal, or one JSON object per
//! line for log shippers. `strata serve` writes one line per request (the
//! access log, target `strata::access`) unless told `--access-log false`.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (`key=value` fields); colours only on a
    /// terminal, never with `NO_COLOR` set.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// The target of the access log's lines (written by strata-http).
const ACCESS: &str = strata_http::ACCESS_LOG;

/// Installs the subscriber; the guard flushes the queued lines when it is
/// dropped, so keep it until the command has finished.
///
/// Without `RUST_LOG`: warnings and errors, plus the access log when
/// `access_log`. `RUST_LOG` replaces that default; `access_log = false`
/// turns the access log off either way.
pub fn init(format: LogFormat, access_log: bool) -> WorkerGuard {
    let default = if access_log {
        format!("warn,{ACCESS}=info")
    } else {
        "warn".to_string()
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if !access_log {
        filter = filter.add_directive(format!("{ACCESS}=off").parse().expect("a valid directive"));
    }
    let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal() && !no_color;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
