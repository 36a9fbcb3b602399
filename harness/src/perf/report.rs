//! The perf report: `report.json` (every figure, versioned), the terminal rendering
//! (etcdctl's verdict lines at the end, the figures etcdctl does not give above them),
//! `report.md` (for a CI step summary) and `junit.xml` (one test case per verdict rule,
//! named the same from night to night: the image or the endpoints are properties).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::perf::load::ErrorTally;
use crate::perf::metrics::ServerActivity;
use crate::perf::profile::Load;
use crate::perf::stats::{Interval, LatencySummary};
use crate::perf::usage::GeneratorCost;
use crate::perf::verdict::{Verdict, VerdictInput};
use crate::perf::Mode;

/// Bumped whenever a field of the perf `report.json` changes meaning or goes away.
pub const PERF_REPORT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSummary {
    pub endpoints: Vec<String>,
    /// Members of the cluster the harness started; None for `--endpoints`.
    pub members: Option<usize>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    pub load: Option<Load>,
    /// Writes per second offered; None for no limit.
    pub rate_limit: Option<f64>,
    /// Requests in flight at most (etcdctl's "clients").
    pub clients: usize,
    /// HTTP/2 connections the requests were spread over.
    pub connections: usize,
    pub duration_s: Option<f64>,
    /// Datascale: keys to put.
    pub keys: Option<u64>,
    pub prefix: String,
    /// Whole key length, prefix included.
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub request_timeout_ms: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResults {
    pub requests: u64,
    pub successes: u64,
    pub errors: u64,
    /// From the first request to the last answer.
    pub elapsed_s: f64,
    /// Successes per second of `elapsed_s`.
    pub throughput: f64,
    /// Successful requests only, as etcdctl counts them.
    pub latency: LatencySummary,
    pub errors_by_kind: BTreeMap<String, ErrorTally>,
    pub timeline: Vec<Interval>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    pub deleted_keys: u64,
    pub compacted_at: Option<i64>,
    pub defragmented: Vec<String>,
}

/// `datascale`: the first member's resident memory before and after the puts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatascaleFigures {
    pub member: String,
    pub memory_before_bytes: Option<f64>,
    pub memory_after_bytes: Option<f64>,
}

impl DatascaleFigures {
    pub fn used_mb(&self) -> Option<f64> {
        Some((self.memory_after_bytes? - self.memory_before_bytes?) / (1024.0 * 1024.0))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfReport {
    pub format_version: u32,
    pub tool_version: String,
    pub mode: Mode,
    pub run_id: String,
    pub started_at: String,
    pub target: TargetSummary,
    pub config: RunConfig,
    pub results: RunResults,
    pub generator: GeneratorCost,
    /// Per member, from /metrics before and after the load (empty if unreadable).
    pub server: Vec<ServerActivity>,
    pub metrics_problems: Vec<String>,
    pub cleanup: Cleanup,
    pub datascale: Option<DatascaleFigures>,
    pub verdict: Verdict,
}

/// etcdctl's datascale verdict: errors fail; otherwise the memory the puts took.
pub fn datascale_verdict(input: &VerdictInput, figures: &DatascaleFigures) -> Verdict {
    let mut lines = Vec::new();
    let errors_ok = input.errors.is_empty();
    let memory_ok = figures.memory_before_bytes.is_some() && figures.memory_after_bytes.is_some();
    if figures.memory_before_bytes.is_none() {
        lines.push("FAIL: Could not read process_resident_memory_bytes before the put operations.".into());
    }
    if figures.memory_after_bytes.is_none() {
        lines.push("FAIL: Could not read process_resident_memory_bytes after the put operations.".into());
    }
    if !errors_ok {
        lines.push("FAIL: too many errors".into());
        for (kind, (count, example)) in &input.errors {
            lines.push(format!("FAIL: ERROR({kind}: {example}) -> {count}"));
        }
    }
    if let (true, true, Some(mb)) = (errors_ok, memory_ok, figures.used_mb()) {
        lines.push(format!("PASS: Approximate system memory used : {mb:.2} MB."));
    }
    let pass = errors_ok && memory_ok;
    lines.push(if pass { "PASS" } else { "FAIL" }.into());
    Verdict {
        pass,
        errors_ok,
        throughput_ok: true,
        slowest_ok: true,
        stddev_ok: true,
        lines,
    }
}

impl PerfReport {
    /// A representative report (a 60 s run at load s on one member, 9000 writes), for
    /// tests and benches of the rendering.
    pub fn example() -> PerfReport {
        let input = VerdictInput {
            rate_limit: Some(150.0),
            throughput: 149.9,
            slowest_s: 0.11,
            stddev_s: 0.004,
            errors: BTreeMap::new(),
        };
        PerfReport {
            format_version: PERF_REPORT_FORMAT_VERSION,
            tool_version: "0".into(),
            mode: Mode::Perf,
            run_id: "r1".into(),
            started_at: "now".into(),
            target: TargetSummary {
                endpoints: vec!["http://127.0.0.1:1".into()],
                members: Some(1),
                image: None,
            },
            config: RunConfig {
                load: Some(Load::S),
                rate_limit: Some(150.0),
                clients: 50,
                connections: 1,
                duration_s: Some(60.0),
                keys: None,
                prefix: "/etcdctl-check-perf/".into(),
                key_bytes: 276,
                value_bytes: 1024,
                request_timeout_ms: 10_000,
                seed: 1,
            },
            results: RunResults {
                requests: 9000,
                successes: 9000,
                errors: 0,
                elapsed_s: 60.0,
                throughput: 149.9,
                latency: LatencySummary::default(),
                errors_by_kind: BTreeMap::new(),
                timeline: (0..60)
                    .map(|s| Interval {
                        second: s,
                        successes: 150,
                        ..Interval::default()
                    })
                    .collect(),
            },
            generator: GeneratorCost::default(),
            server: Vec::new(),
            metrics_problems: Vec::new(),
            cleanup: Cleanup {
                deleted_keys: 9000,
                compacted_at: Some(9001),
                defragmented: vec![],
            },
            datascale: None,
            verdict: crate::perf::verdict::judge(&input),
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(path, text).map_err(Error::io(path))
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.1}", seconds * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Throughput per `window` seconds, as one line of numbers (writes/s).
pub fn throughput_line(timeline: &[Interval], window: usize) -> String {
    timeline
        .chunks(window.max(1))
        .map(|c| {
            let ok: u64 = c.iter().map(|i| i.successes).sum();
            format!("{:.0}", ok as f64 / c.len() as f64)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line for the start of a run.
pub fn render_header(config: &RunConfig, target: &TargetSummary, run_id: &str) -> String {
    let what = match (config.rate_limit, config.keys) {
        (_, Some(keys)) => format!("{keys} keys, no rate limit"),
        (Some(rate), None) => format!("{rate:.0} writes/s"),
        (None, None) => "no rate limit".into(),
    };
    let load = config.load.map(|l| format!("load {l}: ")).unwrap_or_default();
    let cluster = match target.members {
        Some(n) => format!("{n}-member cluster started by the harness"),
        None => target.endpoints.join(","),
    };
    let duration = config.duration_s.map(|d| format!(", {d:.0} s")).unwrap_or_default();
    format!(
        "etcd-drill perf | run {run_id} | {load}{what}, {} clients over {} connections{duration}, {}+{} byte puts | {cluster}",
        config.clients, config.connections, config.key_bytes, config.value_bytes
    )
}

/// The whole run for the terminal: figures first, etcdctl's verdict lines last.
/// What was measured, for the names of the Markdown and JUnit files: `perf s` or
/// `datascale m`.
fn run_name(report: &PerfReport) -> String {
    let mode = match report.mode {
        Mode::Perf => "perf",
        Mode::Datascale => "datascale",
    };
    match report.config.load {
        Some(load) => format!("{mode} {}", load.name()),
        None => mode.to_string(),
    }
}

/// Where the load went: the image of the cluster the harness started, or the endpoints.
fn target_label(report: &PerfReport) -> String {
    match (&report.target.image, report.target.members) {
        (Some(image), Some(n)) => format!("{image}, {n} members"),
        _ => report.target.endpoints.join(","),
    }
}

/// `report.md`: the verdict, the figures, and etcdctl's verdict lines.
pub fn render_markdown(report: &PerfReport) -> String {
    let r = &report.results;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# etcd-drill {}: {}\n\nRun `{}` on {}, started {}.\n",
        run_name(report),
        if report.verdict.pass { "PASS" } else { "FAIL" },
        report.run_id,
        target_label(report),
        report.started_at
    );
    let _ = writeln!(s, "| figure | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| requests / successes / errors | {} / {} / {} |",
        r.requests, r.successes, r.errors
    );
    let _ = writeln!(
        s,
        "| throughput | {:.1} writes/s over {:.2} s |",
        r.throughput, r.elapsed_s
    );
    let l = &r.latency;
    let _ = writeln!(
        s,
        "| latency p50 / p99 / slowest | {:.1} / {:.1} / {:.1} ms |",
        l.p50_s * 1e3,
        l.p99_s * 1e3,
        l.slowest_s * 1e3
    );
    let _ = writeln!(s, "\n## Verdict (etcdctl's rules)\n");
    for line in &report.verdict.lines {
        let _ = writeln!(s, "- {line}");
    }
    s
}

/// `junit.xml`: a test suite named after the run (`perf s`), a test case per rule of the
/// verdict, failing when the rule does; the run id, image and endpoints as properties.
pub fn render_junit(report: &PerfReport) -> String {
    use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
    let name = run_name(report);
    let mut suite = TestSuite::new(name.clone());
    suite.add_property(Property::new("run_id", report.run_id.clone()));
    suite.add_property(Property::new("target", target_label(report)));
    if let Some(image) = &report.target.image {
        suite.add_property(Property::new("image", image.clone()));
    }
    let v = &report.verdict;
    // The rules etcdctl names, then the verdict as a whole (for datascale, the memory
    // rule is only in it).
    let rules = [
        ("errors", v.errors_ok),
        ("throughput", v.throughput_ok),
        ("slowest_request", v.slowest_ok),
        ("stddev", v.stddev_ok),
        ("verdict", v.pass),
    ];
    for (rule, ok) in rules {
        let status = match ok {
            true => TestCaseStatus::success(),
            false => {
                let mut failed = TestCaseStatus::non_success(NonSuccessKind::Failure);
                failed.set_message(v.lines.join("; "));
                failed
            }
        };
        let mut case = TestCase::new(format!("{name}.{rule}"), status);
        case.set_classname(format!("etcd-drill.{}", name.replace(' ', ".")));
        suite.add_test_case(case);
    }
    let mut junit = Report::new("etcd-drill perf");
    junit.add_test_suite(suite);
    junit.to_string().unwrap_or_default()
}

/// Writes `report.md` and `junit.xml` beside `report.json` in `dir`.
pub fn write_summaries(report: &PerfReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    for (name, text) in [
        ("report.md", render_markdown(report)),
        ("junit.xml", render_junit(report)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(Error::io(&path))?;
    }
    Ok(())
}

pub fn render_terminal(report: &PerfReport) -> String {
    let r = &report.results;
    let l = &r.latency;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  requests {}  successes {}  errors {}  elapsed {:.2} s  throughput {:.1} writes/s",
        r.requests, r.successes, r.errors, r.elapsed_s, r.throughput
    );
    let _ = writeln!(
        out,
        "  latency ms  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}  stddev {}",
        ms(l.p50_s),
        ms(l.p90_s),
        ms(l.p99_s),
        ms(l.p999_s),
        ms(l.slowest_s),
        ms(l.mean_s),
        ms(l.stddev_s)
    );
    if r.errors_by_kind.is_empty() {
        let _ = writeln!(out, "  errors by kind: none");
    } else {
        for (kind, tally) in &r.errors_by_kind {
            let _ = writeln!(out, "  errors {kind}: {} (e.g. {})", tally.count, tally.example);
        }
    }
    // The seconds of the run proper; answers that came in after the deadline (the drain
    // of the last puts in flight) would show as a nearly empty last window.
    let seconds = report
        .config
        .duration_s
        .map(|d| d.ceil() as usize)
        .unwrap_or(usize::MAX);
    let timeline = &r.timeline[..r.timeline.len().min(seconds)];
    if !timeline.is_empty() {
        let window = if timeline.len() > 20 { 5 } else { 1 };
        let _ = writeln!(out, "  writes/s per {window} s: {}", throughput_line(timeline, window));
    }
    let g = &report.generator;
    let _ = writeln!(
        out,
        "  generator  CPU {:.2} s (user {:.2}, system {:.2}) = {:.3} ms a request; peak RSS {}",
        g.cpu_total_s,
        g.cpu_user_s,
        g.cpu_system_s,
        g.cpu_ms_per_request,
        mb(g.peak_rss_bytes)
    );
    for s in &report.server {
        let _ = writeln!(
            out,
            "  {:<10} CPU {:.2} cores, {} WAL fsyncs at {:.2} ms, backend commit {:.2} ms, RSS {}",
            s.member,
            s.cpu_cores,
            s.wal_fsyncs,
            s.wal_fsync_mean_ms,
            s.backend_commit_mean_ms,
            mb(s.resident_memory_after_bytes)
        );
    }
    for p in &report.metrics_problems {
        let _ = writeln!(out, "  (metrics: {p})");
    }
    let c = &report.cleanup;
    let _ = write!(
        out,
        "  cleanup: deleted {} keys under {}",
        c.deleted_keys, report.config.prefix
    );
    if let Some(rev) = c.compacted_at {
        let _ = write!(out, ", compacted at revision {rev}");
    }
    if !c.defragmented.is_empty() {
        let _ = write!(out, ", defragmented {}", c.defragmented.join(", "));
    }
    out.push('\n');
    for line in &report.verdict.lines {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_names_stay_the_same_between_runs_and_a_broken_rule_fails() {
        let mut report = PerfReport::example();
        let first = render_junit(&report);
        report.run_id = "another".into();
        let second = render_junit(&report);
        let names = |xml: &str| -> Vec<String> {
            xml.split("<testcase name=\"")
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(names(&first), names(&second));
        assert_eq!(names(&first).len(), 5);
        assert!(!first.contains("<failure"), "{first}");
        assert!(second.contains("another"), "the run id is a property: {second}");
        report.verdict.throughput_ok = false;
        report.verdict.pass = false;
        let failed = render_junit(&report);
        assert_eq!(
            failed.matches("<failure").count(),
            2,
            "the rule and the verdict: {failed}"
        );
        let md = render_markdown(&report);
        assert!(md.contains("FAIL") && md.contains("| throughput |"), "{md}");
    }

    #[test]
    fn terminal_ends_with_etcdctls_verdict() {
        let text = render_terminal(&PerfReport::example());
        assert!(text.ends_with("PASS: Stddev is 0.004000s\nPASS\n"), "{text}");
        assert!(text.contains("writes/s per 5 s: 150 150"), "{text}");
        assert!(text.contains("compacted at revision 9001"), "{text}");
    }

    #[test]
    fn json_names_the_documented_fields() {
        let json = serde_json::to_value(PerfReport::example()).unwrap();
        for pointer in [
            "/results/throughput",
            "/results/latency/p99_s",
            "/results/latency/p999_s",
            "/generator/peak_rss_bytes",
            "/verdict/pass",
            "/config/load",
        ] {
            assert!(json.pointer(pointer).is_some(), "{pointer}");
        }
        assert_eq!(json.pointer("/config/load").unwrap(), "s");
    }

    #[test]
    fn datascale_reports_memory_or_says_why_not() {
        let input = VerdictInput {
            rate_limit: None,
            throughput: 1.0,
            slowest_s: 0.0,
            stddev_s: 0.0,
            errors: BTreeMap::new(),
        };
        let mut f = DatascaleFigures {
            member: "etcd1".into(),
            memory_before_bytes: Some(10.0 * 1024.0 * 1024.0),
            memory_after_bytes: Some(22.5 * 1024.0 * 1024.0),
        };
        let v = datascale_verdict(&input, &f);
        assert!(v.pass);
        assert_eq!(v.lines[0], "PASS: Approximate system memory used : 12.50 MB.");
        f.memory_after_bytes = None;
        let v = datascale_verdict(&input, &f);
        assert!(!v.pass);
        assert!(v.lines[0].contains("after the put operations"));
    }
}
