//! `strata scavenge DIR`: erases the removed events (deleted streams,
//! truncations, expired retention) from the segment files of a data
//! directory, with a progress bar; see docs/retention.md.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use strata_store::{ScavengeOptions, SegmentOptions, SegmentStore, StoreError};

use super::CliResult;

/// Arguments of `strata scavenge`.
#[derive(Args)]
pub struct ScavengeArgs {
    /// The data directory of a segment log (it holds `log/`).
    dir: PathBuf,
    /// Read and write at most this many MiB per second (default: as fast
    /// as the disk goes).
    #[arg(long)]
    max_mib_per_second: Option<u64>,
}

pub async fn scavenge(args: ScavengeArgs) -> CliResult {
    SegmentStore::check_layout(&args.dir).map_err(super::log::explain_layout)?;
    if !args.dir.join("log").is_dir() {
        return Err(format!("{} holds no segment log (no log/ directory)", args.dir.display()).into());
    }
    let dir = args.dir.clone();
    let store = tokio::task::spawn_blocking(move || SegmentStore::open_with(&dir, SegmentOptions::default()))
        .await?
        .map_err(|e| match e {
            StoreError::Locked { .. } => format!(
                "{e}: a running `strata serve` (or another command) holds it, and nothing was changed. \
                 Stop it first, or let the server scavenge while it serves: POST /admin/scavenge (admin token)"
            )
            .into(),
            e => super::log::explain_layout(e),
        })?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} scavenging segment {pos}/{len} ({msg} events erased)")
            .expect("valid template"),
    );
    let options = ScavengeOptions {
        max_bytes_per_second: args.max_mib_per_second.map(|m| m.saturating_mul(1024 * 1024)),
    };
    let report = store
        .scavenge(options, &mut |p| {
            bar.set_length(p.segments_total);
            bar.set_position(p.segments_done);
            bar.set_message(p.events_erased.to_string());
        })
        .await?;
    bar.finish_and_clear();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "scavenged {}: {} segments examined, {} rewritten, {} of {} events erased ({} bytes), {} streams truncated for their retention; {:.1} s, {:.1} MB/s copied, {:.0} events/s examined",
        args.dir.display(),
        report.segments_examined,
        report.segments_rewritten,
        report.events_erased,
        report.events_examined,
        report.bytes_erased,
        report.streams_truncated,
        secs,
        report.bytes_copied as f64 / secs / 1e6,
        report.events_examined as f64 / secs,
    );
    Ok(())
}
