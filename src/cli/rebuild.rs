//! `strata rebuild`: rebuild the read models of a store directory from its log.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use strata_projections::Projections;
use strata_store::SegmentOptions;

use super::CliResult;
use super::log::DataDir;

/// Arguments of `strata rebuild`.
#[derive(Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    data: DataDir,
}

/// Replays the whole log into fresh copies of the read models (order
/// summary, stock levels, document listing) and swaps them in, with a
/// progress bar. The server must not be running (one process owns the
/// directory).
pub async fn rebuild(args: RebuildArgs) -> CliResult {
    let store = args.data.open(SegmentOptions::default()).await?;
    let projections = Projections::open(&store)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} rebuilding [{elapsed_precise}] {bar:40} {pos}/{len} events ({msg})")
            .expect("valid template"),
    );
    let reports = projections
        .rebuild(|p| {
            bar.set_length(p.total);
            bar.set_position(p.done);
            let left = p
                .remaining()
                .map_or_else(|| "?".to_string(), |d| format!("{:.0} s", d.as_secs_f64()));
            bar.set_message(format!("{:.0} events/s, {left} left", p.events_per_sec()));
        })
        .await?;
    bar.finish_and_clear();
    for (model, r) in projections.models().into_iter().zip(&reports) {
        println!(
            "rebuilt {} events in {:.2} s ({:.0} events/s) into {}, now serving generation {}",
            r.events,
            r.elapsed.as_secs_f64(),
            r.events as f64 / r.elapsed.as_secs_f64().max(1e-9),
            model.name(),
            r.generation
        );
    }
    Ok(())
}
