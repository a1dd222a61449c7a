//! `strata bench`'s report: the ratios of each row to the naive append,
//! the disk's ceiling and plain `INSERT`s, the table and the plot.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::CliResult;
use super::super::workload::{AppendSpec, FileMode, Streams};
use super::read::print_read;
use super::{Contender, Report, Row};

/// Fills in every strata row's ratios to the naive append and the disk.
pub(super) fn add_ratios(rows: &mut [Row]) {
    let naive: BTreeMap<(AppendSpecKey, usize), f64> = rows
        .iter()
        .filter(|r| r.contender == Contender::Naive.label())
        .map(|r| ((key(&r.workload), r.round), r.events_per_sec))
        .collect();
    let disk: Vec<(usize, usize, f64)> = rows
        .iter()
        .filter(|r| r.contender == "disk ceiling" && r.file_mode == Some(FileMode::Growing))
        .map(|r| (r.workload.event_bytes, r.workload.events_per_append, r.events_per_sec))
        .collect();
    let plain: BTreeMap<(AppendSpecKey, usize), f64> = rows
        .iter()
        .filter(|r| r.contender == Contender::PlainInsert.label())
        .map(|r| ((key(&r.workload), r.round), r.events_per_sec))
        .collect();
    for r in rows.iter_mut().filter(|r| r.contender == Contender::Postgres.label()) {
        r.ratio_to_plain_insert = plain.get(&(key(&r.workload), r.round)).map(|n| r.events_per_sec / n);
    }
    // The local disk's ceiling and the naive sled append say nothing of a
    // database server's disk and protocol: only the embedded rows get them.
    for r in rows
        .iter_mut()
        .filter(|r| r.contender.starts_with("strata") && r.contender != Contender::Postgres.label())
    {
        r.ratio_to_naive = naive.get(&(key(&r.workload), r.round)).map(|n| r.events_per_sec / n);
        // The batch the disk saw: what one flush carried, or one append's events.
        let achieved = r
            .events_per_flush
            .unwrap_or(r.workload.events_per_append as f64)
            .max(1.0);
        let nearest = disk
            .iter()
            .filter(|(size, _, _)| *size == r.workload.event_bytes)
            .min_by(|a, b| {
                let da = ((a.1 as f64).ln() - achieved.ln()).abs();
                let db = ((b.1 as f64).ln() - achieved.ln()).abs();
                da.total_cmp(&db)
            });
        if let Some((_, batch, eps)) = nearest {
            r.ratio_to_disk = Some(r.events_per_sec / eps);
            r.disk_batch = Some(*batch);
        }
    }
}

type AppendSpecKey = (usize, usize, usize, bool);

fn key(w: &AppendSpec) -> AppendSpecKey {
    (w.writers, w.event_bytes, w.events_per_append, w.streams == Streams::Hot)
}

pub(super) fn print_table(report: &Report) {
    if report.rows.is_empty() {
        return print_read(&report.read);
    }
    println!(
        "{:<24} {:>7} {:>6} {:>5} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>8} {:>12} {:>8} {:>8} {:>6}",
        "contender",
        "writers",
        "bytes",
        "batch",
        "streams",
        "events/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "conflicts",
        "ev/flush",
        "×naive",
        "×insert",
        "×disk(batch)",
        "idx lag",
        "catch ms",
        "B/ev"
    );
    for r in &report.rows {
        let streams = match (r.file_mode, r.workload.streams) {
            (Some(FileMode::Preallocated), _) => "prealloc",
            (Some(FileMode::Growing), _) => "growing",
            (None, Streams::Distinct) => "distinct",
            (None, Streams::Hot) => "hot",
        };
        println!(
            "{:<24} {:>7} {:>6} {:>5} {:>8} {:>12.0} {:>9.1} {:>9} {:>9} {:>9} {:>8} {:>7} {:>8} {:>12} {:>8} {:>8} {:>6}",
            r.contender,
            r.workload.writers,
            r.workload.event_bytes,
            r.workload.events_per_append,
            streams,
            r.events_per_sec,
            r.mb_per_sec,
            r.p50_us,
            r.p99_us,
            r.conflicts,
            r.events_per_flush.map(|v| format!("{v:.1}")).unwrap_or_default(),
            r.ratio_to_naive.map(|v| format!("{v:.2}")).unwrap_or_default(),
            r.ratio_to_plain_insert.map(|v| format!("{v:.2}")).unwrap_or_default(),
            match (r.ratio_to_disk, r.disk_batch) {
                (Some(v), Some(b)) => format!("{v:.2} ({b})"),
                _ => String::new(),
            },
            r.index_lag.map(|v| v.to_string()).unwrap_or_default(),
            r.catch_up_ms.map(|v| format!("{v:.0}")).unwrap_or_default(),
            r.bytes_per_event.map(|v| format!("{v:.0}")).unwrap_or_default(),
        );
    }
    print_read(&report.read);
}

/// Per contender, (writers, events/s) points.
type Lines = BTreeMap<String, Vec<(usize, f64)>>;

/// Throughput against writers, one panel per workload, one line per contender.
pub(super) fn plot(report: &Report, path: &Path) -> CliResult {
    use plotters::prelude::*;

    let mut panels: BTreeMap<(usize, usize, bool), Lines> = BTreeMap::new();
    for r in report.rows.iter().filter(|r| r.file_mode.is_none()) {
        let w = &r.workload;
        panels
            .entry((w.event_bytes, w.events_per_append, w.streams == Streams::Hot))
            .or_default()
            .entry(r.contender.clone())
            .or_default()
            .push((w.writers, r.events_per_sec));
    }
    if panels.is_empty() {
        return Err("nothing to plot".into());
    }
    let cols = panels.len().min(4);
    let rows = panels.len().div_ceil(cols);
    let root = SVGBackend::new(path, (420 * cols as u32, 320 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    for (area, ((bytes, batch, hot), lines)) in areas.iter().zip(&panels) {
        let max_writers = lines.values().flatten().map(|p| p.0).max().unwrap_or(1).max(2);
        let max_y = lines.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.15;
        let title = format!(
            "{bytes} B, {batch}/append, {}",
            if *hot { "hot stream" } else { "distinct" }
        );
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((1usize..max_writers).log_scale(), 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc("writers")
            .y_desc("events/s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (i, (name, points)) in lines.iter().enumerate() {
            let color = palette[i % palette.len()];
            let mut points = points.clone();
            points.sort_by_key(|p| p.0);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
