//! `report.html`: one self-contained page (inline CSS and SVG, no network fetches) with the
//! verdict and figures, charts of write throughput and latency over the drill with the
//! fault and recovery phases shaded, a latency histogram, the checks, the timeline, and a
//! table of the commands each phase ran.

use std::fmt::Write;

use super::markdown::ms;
use super::seconds;
use super::svg::{escape, histogram_chart, latency_chart, throughput_chart, Marker, PhaseBand};
use super::DrillReport;
use crate::drill::event::Outcome;

pub(super) const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:960px;color:#222;padding:0 12px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#2e7d32}.fail{background:#c62828}
table{border-collapse:collapse;width:100%;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;white-space:nowrap}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
td code{word-break:break-all}.bad{color:#c62828;font-weight:600}
svg.chart{max-width:100%;height:auto;display:block;margin:8px 0;background:#fff}
.muted{color:#666}";

/// Counts the charts whose plotted marks have a size once the browser laid them out and
/// records it on the root element (`data-charts-drawn`), so a headless browser can check it.
const DRAWN_CHECK: &str = "document.addEventListener('DOMContentLoaded',function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(svg){var drawn=0;svg.querySelectorAll('.mark').forEach(function(m){var b=m.getBBox();if(b.width>0||b.height>0){drawn++;}});svg.setAttribute('data-marks-drawn',drawn);if(drawn>0){n++;}});document.documentElement.setAttribute('data-charts-drawn',n);});";

/// The phases to shade on the time charts: outage, procedure, and the wait for health.
pub fn phase_bands(r: &DrillReport) -> Vec<PhaseBand> {
    let rec = &r.recovery;
    let mut bands = Vec::new();
    if let Some(started) = rec.started_at_ms {
        bands.push(PhaseBand {
            from_ms: rec.fault_at_ms,
            to_ms: started,
            label: "outage".into(),
            color: "#c62828",
        });
        if let Some(finished) = rec.finished_at_ms {
            bands.push(PhaseBand {
                from_ms: started,
                to_ms: finished,
                label: format!("{} procedure", rec.procedure),
                color: "#e08a00",
            });
            if let Some(healthy) = rec.healthy_ms.map(|h| rec.fault_at_ms + h) {
                if healthy > finished {
                    bands.push(PhaseBand {
                        from_ms: finished,
                        to_ms: healthy,
                        label: "until all healthy".into(),
                        color: "#2e7d32",
                    });
                }
            }
        }
    }
    bands
}

/// The faults, as vertical markers.
pub fn fault_markers(r: &DrillReport) -> Vec<Marker> {
    r.timeline
        .iter()
        .filter(|t| t.what.starts_with("fault:"))
        .map(|t| Marker {
            at_ms: t.at_ms,
            label: t.what.trim_start_matches("fault: ").to_string(),
        })
        .collect()
}

fn row(s: &mut String, cells: &[String]) {
    s.push_str("<tr>");
    for c in cells {
        let _ = write!(s, "<td>{c}</td>");
    }
    s.push_str("</tr>\n");
}

pub fn render_html(r: &DrillReport) -> String {
    let mut s = String::new();
    let (verdict, class) = match r.outcome {
        Outcome::Pass => ("PASS", "pass"),
        Outcome::Fail => ("FAIL", "fail"),
        Outcome::Skipped => ("SKIPPED", "skipped"),
        Outcome::Running => ("RUNNING", "skipped"),
        Outcome::Interrupted => ("INTERRUPTED", "fail"),
    };
    let title = format!("etcd-drill: {} — {verdict}", r.scenario.name);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(
        s,
        "<h1>etcd-drill: {} <span class=\"verdict {class}\">{verdict}</span></h1>",
        escape(&r.scenario.name)
    );
    if !r.scenario.description.is_empty() {
        let _ = writeln!(s, "<p>{}</p>", escape(&r.scenario.description));
    }
    let _ = writeln!(
        s,
        "<p class=\"muted\">Run <code>{}</code>, image <code>{}</code>, seed {}, started {}, took {}.</p>",
        escape(&r.run_id),
        escape(&r.image),
        r.seed,
        escape(&r.started_at),
        seconds(r.duration_ms)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(s, "<p class=\"bad\">The drill broke down: {}</p>", escape(e));
    }
    if let Some(reason) = &r.skip_reason {
        let _ = writeln!(
            s,
            "<p class=\"skipped-reason\"><strong>Skipped:</strong> {}</p>",
            escape(reason)
        );
    }

    let rec = &r.recovery;
    let d = &r.data;
    s.push_str("<h2>Figures</h2>\n<table>\n");
    let mut figures: Vec<(&str, String)> = vec![
        ("procedure", escape(&rec.procedure)),
        ("RTO: fault to writes resumed for good", ms(rec.rto_ms)),
        ("fault to first acknowledged write", ms(rec.first_write_ms)),
        ("procedure start to first acknowledged write", ms(rec.procedure_ms)),
        ("fault to every member healthy", ms(rec.healthy_ms)),
        (
            "longest gap between acknowledged writes",
            ms(Some(rec.max_write_gap_ms)),
        ),
        ("acknowledged writes", d.acked_writes.to_string()),
        ("lost acknowledged writes", d.lost_acked_writes.to_string()),
        ("RPO: time span of the lost writes", ms(Some(d.rpo_ms))),
        ("failed puts (outcome unknown)", d.failed_writes.to_string()),
    ];
    if let Some(series) = &r.series {
        figures.push((
            "mean throughput",
            format!("{:.1} acknowledged writes/s", series.mean_acked_per_s),
        ));
        figures.push((
            "latency p50 / p99 / max",
            format!(
                "{} / {} / {}",
                ms(series.latency_p50_ms),
                ms(series.latency_p99_ms),
                ms(series.latency_max_ms)
            ),
        ));
    }
    if let Some(c) = &r.consistency {
        figures.push((
            "HashKV equal on every member",
            format!("{} (revision {})", c.hashkv_equal, c.revision),
        ));
    }
    for (name, value) in figures {
        let _ = writeln!(s, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    s.push_str("</table>\n");
    if !d.lost_keys_sample.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Lost keys</h2>\n<p class=\"muted\">The first {} of the {} acknowledged writes the cluster no longer holds.</p>\n<ul class=\"lost-keys\">",
            d.lost_keys_sample.len(),
            d.lost_acked_writes
        );
        for key in &d.lost_keys_sample {
            let _ = writeln!(s, "<li><code>{}</code></li>", escape(key));
        }
        s.push_str("</ul>\n");
    }

    s.push_str("<h2>Writes over the drill</h2>\n");
    match &r.series {
        Some(series) => {
            let bands = phase_bands(r);
            let markers = fault_markers(r);
            s.push_str(&throughput_chart(series, &bands, &markers));
            s.push_str(&latency_chart(series, &bands, &markers));
            let _ = writeln!(
                s,
                "<p class=\"muted\">Buckets of {} ms. Shaded: the outage (fault to the start of recovery), the procedure, and the wait until every member was healthy. Dashed lines: the faults.</p>",
                series.bucket_ms
            );
            s.push_str("<h2>Latency histogram</h2>\n");
            s.push_str(&histogram_chart(series));
        }
        None => s.push_str("<p class=\"muted\">No workload ran: the drill stopped before its writers did.</p>\n"),
    }

    for table in super::incident_tables(&r.recovery) {
        let _ = writeln!(s, "<h2>{}</h2>", escape(&table.heading));
        if let Some(note) = &table.note {
            let _ = writeln!(s, "<p class=\"muted\">{}</p>", escape(note));
        }
        s.push_str("<table><tr>");
        for column in &table.columns {
            let _ = write!(s, "<th>{}</th>", escape(column));
        }
        s.push_str("</tr>\n");
        for cells in &table.rows {
            row(&mut s, &cells.iter().map(|c| escape(c)).collect::<Vec<_>>());
        }
        s.push_str("</table>\n");
    }

    s.push_str("<h2>Checks</h2>\n<table><tr><th>check</th><th>result</th><th>expected</th><th>actual</th></tr>\n");
    for c in &r.checks {
        let result = if c.passed {
            "pass".to_string()
        } else {
            "<span class=\"bad\">FAIL</span>".to_string()
        };
        row(
            &mut s,
            &[escape(&c.name), result, escape(&c.expected), escape(&c.actual)],
        );
    }
    s.push_str("</table>\n");

    s.push_str("<h2>Timeline</h2>\n<table><tr><th>at</th><th>event</th><th>detail</th></tr>\n");
    for t in &r.timeline {
        row(&mut s, &[seconds(t.at_ms), escape(&t.what), escape(&t.detail)]);
    }
    s.push_str("</table>\n");

    for (phase, heading) in [
        ("recovery", "Commands the recovery procedure ran"),
        ("fault", "Commands that injected the faults"),
        ("setup", "Commands that set the cluster up"),
    ] {
        let commands: Vec<_> = r.commands.iter().filter(|c| c.phase == phase).collect();
        if commands.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<h2>{heading}</h2>\n<table><tr><th>#</th><th>step</th><th>at</th><th>took</th><th>ok</th><th>command</th></tr>"
        );
        for (i, c) in commands.iter().enumerate() {
            let ok = if c.ok {
                "yes".to_string()
            } else {
                "<span class=\"bad\">no</span>".to_string()
            };
            let _ = writeln!(
                s,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} ms</td><td>{ok}</td><td><code>{}</code></td></tr>",
                i + 1,
                escape(&c.step),
                seconds(c.at_ms),
                c.duration_ms,
                escape(&c.command)
            );
        }
        s.push_str("</table>\n");
    }
    let _ = write!(s, "<script>{DRAWN_CHECK}</script>\n</body></html>\n");
    s
}
