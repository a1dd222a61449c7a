//! `strata verify DIR`: checks every record of a segment log and that its
//! index equals a rebuild; exits non-zero on any problem.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use strata_store::{SegmentOptions, SegmentStore};

use super::CliResult;

/// Arguments of `strata verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The data directory of a segment log (it holds `log/`).
    dir: PathBuf,
}

pub async fn verify(args: VerifyArgs) -> CliResult {
    if !args.dir.join("log").is_dir() {
        return Err(format!("{} holds no segment log (no log/ directory)", args.dir.display()).into());
    }
    let report = tokio::task::spawn_blocking(move || {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} indexing segment {pos}/{len} ({msg} events)")
                .expect("valid template"),
        );
        let store = SegmentStore::open_with_progress(&args.dir, SegmentOptions::default(), &mut |p| {
            bar.set_length(p.segments);
            bar.set_position(p.segments_done);
            bar.set_message(p.events.to_string());
        });
        bar.finish_and_clear();
        store?.verify()
    })
    .await??;
    println!("{report}");
    if report.is_ok() {
        Ok(())
    } else {
        Err(format!("{} problems found", report.problems.len()).into())
    }
}
