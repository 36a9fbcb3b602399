//! Small hand-built SVG charts for `report.html`: the drill's write throughput and latency
//! over its time line with the fault and recovery phases shaded, and a latency histogram.
//! Plotted marks carry the class `mark` so that a browser test can tell they were drawn.

use std::fmt::Write;

use crate::drill::series::{HistogramBin, SeriesBucket, WorkloadSeries};

/// Escapes text for HTML and SVG (element content and attribute values).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A span of the time line to shade, e.g. the outage or the procedure.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseBand {
    pub from_ms: u64,
    pub to_ms: u64,
    pub label: String,
    pub color: &'static str,
}

/// A moment to mark with a vertical line, e.g. a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at_ms: u64,
    pub label: String,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// The plotting area of one chart and its time axis.
struct TimeFrame {
    from_ms: u64,
    to_ms: u64,
}

impl TimeFrame {
    fn x(&self, ms: u64) -> f64 {
        let span = (self.to_ms - self.from_ms).max(1) as f64;
        LEFT + (ms.clamp(self.from_ms, self.to_ms) - self.from_ms) as f64 / span * (WIDTH - LEFT - RIGHT)
    }
}

fn plot_bottom() -> f64 {
    HEIGHT - BOTTOM
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn open(out: &mut String, id: &str, title: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
}

/// A "nice" axis maximum and tick step for values up to `max`.
fn nice_scale(max: f64) -> (f64, f64) {
    let max = if max <= 0.0 { 1.0 } else { max };
    let raw_step = max / 4.0;
    let magnitude = 10f64.powf(raw_step.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw_step)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn format_tick(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Shaded phases, fault markers, the time axis and its grid.
fn time_axis(out: &mut String, frame: &TimeFrame, bands: &[PhaseBand], markers: &[Marker]) {
    for (row, b) in bands.iter().enumerate() {
        let (x0, x1) = (frame.x(b.from_ms), frame.x(b.to_ms));
        let _ = write!(
            out,
            r#"<rect class="phase" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.18"><title>{}</title></rect><text x="{:.1}" y="{:.1}" font-size="10" fill="{}">{}</text>"#,
            (x1 - x0).max(1.0),
            plot_height(),
            b.color,
            escape(&b.label),
            x0 + 3.0,
            // One row per band, so that the labels of narrow bands do not overlap.
            TOP + 11.0 + 11.0 * row as f64,
            b.color,
            escape(&b.label)
        );
    }
    // Faults a few pixels apart (kill, then wipe) share one line and one label.
    let mut merged: Vec<(f64, String)> = Vec::new();
    for m in markers {
        let x = frame.x(m.at_ms);
        match merged.last_mut() {
            Some((last_x, label)) if x - *last_x < 40.0 => {
                label.push_str(", ");
                label.push_str(&m.label);
            }
            _ => merged.push((x, m.label.clone())),
        }
    }
    for (x, label) in &merged {
        let x = *x;
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#b00020" stroke-dasharray="4 3"><title>{}</title></line>"##,
            TOP - 6.0,
            plot_bottom(),
            escape(label)
        );
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#b00020">{}</text>"##,
            x + 3.0,
            TOP - 8.0,
            escape(label)
        );
    }
    let span_s = (frame.to_ms - frame.from_ms) as f64 / 1000.0;
    let (_, step) = nice_scale(span_s);
    let mut t = (frame.from_ms as f64 / 1000.0 / step).ceil() * step;
    while t * 1000.0 <= frame.to_ms as f64 {
        let x = frame.x((t * 1000.0) as u64);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{} s</text>"##,
            plot_bottom(),
            plot_bottom() + 4.0,
            plot_bottom() + 16.0,
            format_tick(t)
        );
        t += step;
    }
    x_axis_line(out, "time in the drill");
}

/// The horizontal axis line under the plot, and its title.
fn x_axis_line(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
        WIDTH - RIGHT,
        plot_bottom(),
        plot_bottom(),
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 4.0,
        escape(title)
    );
}

/// A linear value axis with grid lines, for values up to `max`; returns the axis maximum.
fn value_axis(out: &mut String, max: f64, label: &str) -> f64 {
    let (top, step) = nice_scale(max);
    let mut v = 0.0;
    while v <= top + step / 1000.0 {
        let y = plot_bottom() - v / top * plot_height();
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            format_tick(v)
        );
        v += step;
    }
    let _ = write!(
        out,
        r#"<text transform="translate(14 {:.1}) rotate(-90)" font-size="11" text-anchor="middle">{}</text>"#,
        TOP + plot_height() / 2.0,
        escape(label)
    );
    top
}

fn legend(out: &mut String, entries: &[(&str, &str)]) {
    let mut x = WIDTH - RIGHT - 10.0;
    for (label, color) in entries.iter().rev() {
        x -= 8.0 * label.len() as f64 + 22.0;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="4" width="10" height="10" fill="{color}"/><text x="{:.1}" y="13" font-size="11">{}</text>"#,
            x + 14.0,
            escape(label)
        );
    }
}

fn frame_of(series: &WorkloadSeries) -> TimeFrame {
    let last = series.buckets.last().map(|b| b.at_ms + series.bucket_ms).unwrap_or(0);
    TimeFrame {
        from_ms: series.workload_started_ms,
        to_ms: last.max(series.workload_stopped_ms).max(series.workload_started_ms + 1),
    }
}

/// Acknowledged and failed writes per second over the drill, stacked bars per bucket.
pub fn throughput_chart(series: &WorkloadSeries, bands: &[PhaseBand], markers: &[Marker]) -> String {
    let mut out = String::new();
    open(&mut out, "chart-throughput", "Writes per second over the drill");
    let frame = frame_of(series);
    let per_s = 1000.0 / series.bucket_ms.max(1) as f64;
    let max = series
        .buckets
        .iter()
        .map(|b| (b.acked + b.failed) as f64 * per_s)
        .fold(0.0, f64::max);
    let top = value_axis(&mut out, max, "writes/s");
    time_axis(&mut out, &frame, bands, markers);
    for b in &series.buckets {
        let x0 = frame.x(b.at_ms);
        let w = (frame.x(b.at_ms + series.bucket_ms) - x0 - 1.0).max(1.0);
        let acked_h = b.acked as f64 * per_s / top * plot_height();
        let failed_h = b.failed as f64 * per_s / top * plot_height();
        if b.acked > 0 {
            let _ = write!(
                out,
                r##"<rect class="mark" x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{acked_h:.1}" fill="#2f6fb3"><title>{:.2} s: {} acknowledged</title></rect>"##,
                plot_bottom() - acked_h,
                b.at_ms as f64 / 1000.0,
                b.acked
            );
        }
        if b.failed > 0 {
            let _ = write!(
                out,
                r##"<rect class="mark" x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{failed_h:.1}" fill="#d9534f"><title>{:.2} s: {} failed</title></rect>"##,
                plot_bottom() - acked_h - failed_h,
                b.at_ms as f64 / 1000.0,
                b.failed
            );
        }
    }
    legend(
        &mut out,
        &[("acknowledged", "#2f6fb3"), ("failed or timed out", "#d9534f")],
    );
    out.push_str("</svg>");
    out
}

/// Reads one latency figure of a bucket.
type LatencyOf = fn(&SeriesBucket) -> Option<u64>;

/// Latency (p50, p99, max) of the writes acknowledged in each bucket, on a log scale; a
/// bucket without acknowledgements breaks the lines, so outages show as gaps.
pub fn latency_chart(series: &WorkloadSeries, bands: &[PhaseBand], markers: &[Marker]) -> String {
    let mut out = String::new();
    open(&mut out, "chart-latency", "Write latency over the drill");
    let frame = frame_of(series);
    let max = series
        .buckets
        .iter()
        .filter_map(|b| b.latency_max_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    let decades = (max as f64).log10().ceil().max(1.0);
    let y = |ms: u64| plot_bottom() - ((ms.max(1) as f64).log10() / decades) * plot_height();
    for d in 0..=decades as u32 {
        let v = 10u64.pow(d);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{v} ms</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    let _ = write!(
        out,
        r#"<text transform="translate(14 {:.1}) rotate(-90)" font-size="11" text-anchor="middle">latency (log)</text>"#,
        TOP + plot_height() / 2.0
    );
    time_axis(&mut out, &frame, bands, markers);
    let lines: [(&str, &str, LatencyOf); 3] = [
        ("max", "#bbbbbb", |b| b.latency_max_ms),
        ("p99", "#e08a00", |b| b.latency_p99_ms),
        ("p50", "#2f6fb3", |b| b.latency_p50_ms),
    ];
    for (name, color, value) in lines {
        // One polyline per stretch of buckets that had acknowledgements.
        let mut stretches: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for b in &series.buckets {
            match value(b) {
                Some(ms) => stretches
                    .last_mut()
                    .expect("there is always a stretch")
                    .push((frame.x(b.at_ms + series.bucket_ms / 2), y(ms))),
                None => stretches.push(Vec::new()),
            }
        }
        for s in stretches.iter().filter(|s| !s.is_empty()) {
            let points: Vec<String> = s.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            if s.len() == 1 {
                let _ = write!(
                    out,
                    r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="2" fill="{color}"><title>{name}</title></circle>"#,
                    s[0].0, s[0].1
                );
            } else {
                let _ = write!(
                    out,
                    r#"<polyline class="mark" points="{}" fill="none" stroke="{color}" stroke-width="1.6"><title>{name}</title></polyline>"#,
                    points.join(" ")
                );
            }
        }
    }
    legend(&mut out, &[("p50", "#2f6fb3"), ("p99", "#e08a00"), ("max", "#bbbbbb")]);
    out.push_str("</svg>");
    out
}

fn bin_label(bins: &[HistogramBin], i: usize) -> String {
    match bins[i].le_ms {
        Some(le) => format!("≤{le}"),
        None => format!(">{}", i.checked_sub(1).and_then(|p| bins[p].le_ms).unwrap_or(0)),
    }
}

/// The latency histogram of every acknowledged write: one bar per bin, the count on top.
pub fn histogram_chart(series: &WorkloadSeries) -> String {
    let mut out = String::new();
    open(&mut out, "chart-histogram", "Latency histogram of acknowledged writes");
    let bins = &series.latency_histogram;
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let top = value_axis(&mut out, max, "writes");
    let n = bins.len().max(1) as f64;
    let slot = (WIDTH - LEFT - RIGHT) / n;
    for (i, b) in bins.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let h = b.count as f64 / top * plot_height();
        if b.count > 0 {
            let _ = write!(
                out,
                r##"<rect class="mark" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2f6fb3"><title>{} ms: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                x + 4.0,
                plot_bottom() - h,
                slot - 8.0,
                bin_label(bins, i),
                b.count,
                x + slot / 2.0,
                plot_bottom() - h - 3.0,
                b.count
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            x + slot / 2.0,
            plot_bottom() + 16.0,
            escape(&bin_label(bins, i))
        );
    }
    x_axis_line(&mut out, "latency, ms (send to acknowledgement)");
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_scales_cover_the_maximum() {
        assert_eq!(nice_scale(97.0), (100.0, 25.0));
        assert_eq!(nice_scale(23.0), (30.0, 10.0));
        for max in [0.0, 0.3, 7.0, 151.0, 12_345.0] {
            let (top, step) = nice_scale(max);
            assert!(top >= max && step > 0.0 && top / step <= 8.0, "{max}: {top} {step}");
        }
    }

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
