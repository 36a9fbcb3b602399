//! `perf sweep`: the same perf run over cluster sizes × loads, one cluster per size, the
//! loads one after the other (the prefix is deleted, compacted and defragmented between
//! them). Writes the results as a Markdown table and an SVG chart of throughput and p99
//! against load for each cluster size.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::perf::profile::Load;
use crate::perf::report::PerfReport;
use crate::perf::stats::Interval;
use crate::perf::{Bench, RunSettings, Target};

/// One cell of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    pub members: usize,
    pub load: Load,
    pub rate_limit: f64,
    pub clients: usize,
    pub throughput: f64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub slowest_s: f64,
    pub stddev_s: f64,
    pub errors: u64,
    pub pass: bool,
    pub generator_cpu_s: f64,
    /// All members' CPU together, in cores (CPU seconds per second).
    pub cluster_cpu_cores: f64,
}

impl SweepRow {
    pub fn from_report(members: usize, load: Load, report: &PerfReport) -> SweepRow {
        let r = &report.results;
        SweepRow {
            members,
            load,
            rate_limit: report.config.rate_limit.unwrap_or(0.0),
            clients: report.config.clients,
            throughput: r.throughput,
            p50_s: r.latency.p50_s,
            p99_s: r.latency.p99_s,
            slowest_s: r.latency.slowest_s,
            stddev_s: r.latency.stddev_s,
            errors: r.errors,
            pass: report.verdict.pass,
            generator_cpu_s: report.generator.cpu_total_s,
            cluster_cpu_cores: report.server.iter().map(|s| s.cpu_cores).sum(),
        }
    }
}

/// Runs every load on a fresh cluster of every size. `on_row` sees each result as it comes.
pub async fn run_sweep(
    sizes: &[usize],
    loads: &[Load],
    duration: Duration,
    image: &str,
    run_id: &str,
    seed: u64,
    on_row: &mut dyn FnMut(&SweepRow),
) -> Result<Vec<SweepRow>> {
    let mut rows = Vec::new();
    for &members in sizes {
        let bench = Bench::open(&Target::Members(members), image, run_id).await?;
        let mut outcome = Ok(());
        for (i, &load) in loads.iter().enumerate() {
            let mut settings = RunSettings::perf(load, Some(duration), seed.wrapping_add(i as u64));
            settings.auto_compact = true;
            settings.auto_defrag = true;
            match bench.run(&settings, &mut |_: &Interval| {}).await {
                Ok(report) => {
                    let row = SweepRow::from_report(members, load, &report);
                    on_row(&row);
                    rows.push(row);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        bench.close().await?;
        outcome?;
    }
    Ok(rows)
}

/// The sweep as a Markdown table.
pub fn markdown_table(rows: &[SweepRow]) -> String {
    let mut out = String::from(
        "| members | load | rate limit | clients | throughput (writes/s) | p50 ms | p99 ms | slowest ms | stddev ms | errors | verdict | generator CPU s | cluster CPU cores |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2} | {:.2} |",
            r.members,
            r.load,
            r.rate_limit,
            r.clients,
            r.throughput,
            r.p50_s * 1e3,
            r.p99_s * 1e3,
            r.slowest_s * 1e3,
            r.stddev_s * 1e3,
            r.errors,
            if r.pass { "PASS" } else { "FAIL" },
            r.generator_cpu_s,
            r.cluster_cpu_cores
        );
    }
    out
}

fn chart_error(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(message),
    }
}

/// Two panels, throughput and p99 against load, one line per cluster size.
pub fn write_chart(rows: &[SweepRow], path: &Path) -> Result<()> {
    let fail = chart_error(path);
    let mut loads: Vec<Load> = rows.iter().map(|r| r.load).collect();
    loads.sort();
    loads.dedup();
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.members).collect();
    sizes.sort();
    sizes.dedup();
    if loads.is_empty() {
        return Err(fail("no results to chart".into()));
    }
    let x_of = |load: Load| loads.iter().position(|l| *l == load).unwrap_or(0) as f64;
    let x_range = -0.5..(loads.len() as f64 - 0.5);
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            loads.get(i as usize).map(|l| l.to_string()).unwrap_or_default()
        } else {
            String::new()
        }
    };
    let max_throughput = rows.iter().map(|r| r.throughput.max(r.rate_limit)).fold(1.0, f64::max);
    let max_p99_ms = rows.iter().map(|r| r.p99_s * 1e3).fold(1.0, f64::max);

    let root = SVGBackend::new(path, (1100, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let (left, right) = root.split_horizontally(550);
    let panels: [(&DrawingArea<_, _>, &str, &str, f64); 2] = [
        (&left, "Throughput against load", "writes/s", max_throughput * 1.1),
        (&right, "p99 latency against load", "p99 ms", max_p99_ms * 1.1),
    ];
    for (panel_index, (area, caption, unit, y_max)) in panels.into_iter().enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), 0.0..y_max)
            .map_err(|e| fail(e.to_string()))?;
        chart
            .configure_mesh()
            .x_labels(loads.len() * 2 + 1)
            .x_label_formatter(&label)
            .x_desc("load")
            .y_desc(unit)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        for (i, &size) in sizes.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.members == size)
                .map(|r| {
                    let y = if panel_index == 0 { r.throughput } else { r.p99_s * 1e3 };
                    (x_of(r.load), y)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| fail(e.to_string()))?
                .label(format!("{size} member{}", if size == 1 { "" } else { "s" }))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(|e| fail(e.to_string()))?;
        }
        if panel_index == 0 {
            // The offered rate, for reference.
            let offered: Vec<(f64, f64)> = loads.iter().map(|l| (x_of(*l), l.perf().rate_limit as f64)).collect();
            chart
                .draw_series(LineSeries::new(offered, BLACK.mix(0.4).stroke_width(1)))
                .map_err(|e| fail(e.to_string()))?
                .label("rate limit")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<SweepRow> {
        let mut out = Vec::new();
        for members in [1, 3] {
            for (load, throughput) in [(Load::S, 150.0), (Load::M, 990.0), (Load::L, 2500.0)] {
                out.push(SweepRow {
                    members,
                    load,
                    rate_limit: load.perf().rate_limit as f64,
                    clients: load.perf().clients,
                    throughput: throughput / members as f64,
                    p50_s: 0.002,
                    p99_s: 0.010 * members as f64,
                    slowest_s: 0.1,
                    stddev_s: 0.01,
                    errors: 0,
                    pass: load == Load::S,
                    generator_cpu_s: 0.5,
                    cluster_cpu_cores: 1.2,
                });
            }
        }
        out
    }

    #[test]
    fn table_has_a_row_per_cell() {
        let table = markdown_table(&rows());
        assert_eq!(table.lines().count(), 2 + 6);
        assert!(table.contains("| 3 | l | 8000 | 500 | 833.3 |"), "{table}");
    }

    #[test]
    fn chart_is_an_svg_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.svg");
        write_chart(&rows(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50.min(svg.len())]);
        assert!(svg.contains("Throughput against load") && svg.contains("p99 latency against load"));
        assert!(svg.contains("3 members"));
        assert!(write_chart(&[], &path).is_err());
    }
}
