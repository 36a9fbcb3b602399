//! The combined report of a suite run (`etcd-drill run --all`): every scenario ran in its
//! own folder with its own five files; the suite folder gets `suite.json` (one line of
//! figures per run), `report.md` (a table of the runs, for a CI step summary) and one
//! `junit.xml` with a test suite per run.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{render_junit, write_file, DrillReport, REPORT_FORMAT_VERSION};
use crate::drill::event::Outcome;
use crate::error::{Error, Result};
use crate::scenario::{self, Scenario};

#[derive(Debug, Clone, Serialize)]
pub struct SuiteRun {
    pub scenario: String,
    pub image: String,
    pub run_id: String,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// The run's folder, relative to the suite's.
    pub folder: String,
    pub rto_ms: Option<u64>,
    pub procedure_ms: Option<u64>,
    pub healthy_ms: Option<u64>,
    pub acked_writes: u64,
    pub lost_acked_writes: u64,
    pub mean_acked_per_s: Option<f64>,
    /// The longest time without an acknowledged write while the workload ran.
    pub max_write_gap_ms: u64,
    /// Kept-alive leases that expired (runs whose workload keeps leases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases_expired: Option<u64>,
    pub failed_checks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub format_version: u32,
    pub tool_version: String,
    pub suite_id: String,
    pub started_at: String,
    pub image: String,
    pub outcome: Outcome,
    pub runs: Vec<SuiteRun>,
}

/// The scenarios a suite runs: every `.toml` in `dir` (sorted by file name), or the
/// built-in ones when `dir` does not exist. Every file must be valid: a suite with a
/// broken scenario stops before it starts any cluster.
pub fn suite_scenarios(dir: &Path) -> Result<Vec<Scenario>> {
    if !dir.is_dir() {
        return scenario::BUILTIN.iter().map(|(name, _)| scenario::load(name)).collect();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::InvalidArgument {
            argument: "--all".into(),
            message: format!("{} holds no scenario (.toml) files", dir.display()),
        });
    }
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|p| scenario::load(&p.to_string_lossy()))
        .collect::<Result<_>>()?;
    for (i, s) in scenarios.iter().enumerate() {
        if let Some(j) = scenarios[..i].iter().position(|o| o.name == s.name) {
            return Err(Error::ScenarioKey {
                path: files[i].clone(),
                key: "name".into(),
                message: format!(
                    "`{}` is also the name of {}; names must differ",
                    s.name,
                    files[j].display()
                ),
            });
        }
    }
    Ok(scenarios)
}

/// A run's folder in the suite's: the scenario's name, and below it the image's (`/` and
/// `:` made `-`) when the suite runs on several images.
pub fn run_folder(scenario: &str, image: &str, several_images: bool) -> String {
    if several_images {
        format!("{scenario}/{}", image.replace(['/', ':', '@'], "-"))
    } else {
        scenario.to_string()
    }
}

impl SuiteRun {
    pub fn from_report(r: &DrillReport, folder: &str) -> SuiteRun {
        SuiteRun {
            scenario: r.scenario.name.clone(),
            image: r.image.clone(),
            run_id: r.run_id.clone(),
            outcome: r.outcome,
            error: r.error.clone(),
            folder: folder.to_string(),
            rto_ms: r.recovery.rto_ms,
            procedure_ms: r.recovery.procedure_ms,
            healthy_ms: r.recovery.healthy_ms,
            acked_writes: r.data.acked_writes,
            lost_acked_writes: r.data.lost_acked_writes,
            mean_acked_per_s: r.series.as_ref().map(|s| s.mean_acked_per_s),
            max_write_gap_ms: r.recovery.max_write_gap_ms,
            leases_expired: r.recovery.leases.as_ref().map(|l| l.expired_at_ms.len() as u64),
            failed_checks: r.checks.iter().filter(|c| !c.passed).map(|c| c.name.clone()).collect(),
        }
    }
}

/// Builds the suite report of `runs` (each report with its folder, relative to `dir`) and
/// writes `suite.json`, `report.md` and `junit.xml` into `dir`.
pub fn write_suite_files(
    suite_id: &str,
    started_at: &str,
    image: &str,
    runs: &[(DrillReport, String)],
    dir: &Path,
) -> Result<SuiteReport> {
    let outcome = if runs.iter().any(|(r, _)| r.outcome == Outcome::Fail) {
        Outcome::Fail
    } else if runs.iter().any(|(r, _)| r.outcome == Outcome::Interrupted) {
        Outcome::Interrupted
    } else {
        Outcome::Pass
    };
    let suite = SuiteReport {
        format_version: REPORT_FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        suite_id: suite_id.to_string(),
        started_at: started_at.to_string(),
        image: image.to_string(),
        outcome,
        runs: runs
            .iter()
            .map(|(r, folder)| SuiteRun::from_report(r, folder))
            .collect(),
    };
    let json = serde_json::to_string_pretty(&suite).expect("a suite report always serializes");
    write_file(&dir.join("suite.json"), &(json + "\n"))?;
    write_file(&dir.join("report.md"), &render_suite_markdown(&suite))?;
    write_file(&dir.join("index.html"), &render_suite_html(&suite))?;
    let reports: Vec<&DrillReport> = runs.iter().map(|(r, _)| r).collect();
    write_file(
        &dir.join("junit.xml"),
        &render_junit(&format!("etcd-drill suite {suite_id}"), &reports),
    )?;
    Ok(suite)
}

/// `index.html`: the suite's table, each drill linked to its own `report.html`; one file,
/// nothing fetched.
pub fn render_suite_html(suite: &SuiteReport) -> String {
    use super::svg::escape;
    let passed = suite.runs.iter().filter(|r| r.outcome == Outcome::Pass).count();
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>etcd-drill suite {}</title><style>{}</style></head><body>\n<h1>etcd-drill suite {} <span class=\"verdict {}\">{}</span></h1>\n<p class=\"muted\">{passed} of {} drills passed; image {}; started {}.</p>\n<table><tr><th>scenario</th><th>image</th><th>verdict</th><th>RTO</th><th>longest write gap</th><th>lost acked writes</th><th>failed checks</th></tr>\n",
        escape(&suite.suite_id),
        super::html::STYLE,
        escape(&suite.suite_id),
        match suite.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skipped | Outcome::Running => "skipped",
            Outcome::Interrupted => "fail",
        },
        format!("{:?}", suite.outcome).to_uppercase(),
        suite.runs.len(),
        escape(&suite.image),
        escape(&suite.started_at),
    );
    for r in &suite.runs {
        let verdict = match r.outcome {
            Outcome::Pass => "pass".to_string(),
            Outcome::Fail => "<span class=\"bad\">FAIL</span>".to_string(),
            Outcome::Skipped => "skipped".to_string(),
            Outcome::Running => "running".to_string(),
            Outcome::Interrupted => "<span class=\"bad\">INTERRUPTED</span>".to_string(),
        };
        let failed = match &r.error {
            Some(e) => format!("broke down: {}", escape(e)),
            None => escape(&r.failed_checks.join(", ")),
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"{}/report.html\">{}</a></td><td>{}</td><td>{verdict}</td><td>{}</td><td>{} ms</td><td>{} of {}</td><td>{failed}</td></tr>",
            escape(&r.folder),
            escape(&r.scenario),
            escape(&r.image),
            super::markdown::ms(r.rto_ms),
            r.max_write_gap_ms,
            r.lost_acked_writes,
            r.acked_writes,
        );
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

pub fn render_suite_markdown(suite: &SuiteReport) -> String {
    let mut s = String::new();
    let verdict = suite.outcome.verdict();
    let passed = suite.runs.iter().filter(|r| r.outcome == Outcome::Pass).count();
    let _ = writeln!(
        s,
        "# etcd-drill suite — {verdict}\n\n{passed} of {} scenarios passed. Suite `{}`, image `{}`, started {}.\n",
        suite.runs.len(),
        suite.suite_id,
        suite.image,
        suite.started_at
    );
    // Several images: the same drills side by side, with a column naming the image.
    let several_images = suite.runs.iter().any(|r| r.image != suite.runs[0].image);
    let (image_head, image_rule) = if several_images { (" image |", "---|") } else { ("", "") };
    // Drills that keep leases (defragmentation under load): how many expired, side by side.
    let with_leases = suite.runs.iter().any(|r| r.leases_expired.is_some());
    let (lease_head, lease_rule) = if with_leases {
        (" leases expired |", "---|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        s,
        "| scenario |{image_head} verdict | RTO | procedure → first write | longest write gap | lost acked writes |{lease_head} throughput | failed checks | report |\n|---|{image_rule}---|---|---|---|---|{lease_rule}---|---|---|"
    );
    let ms = super::markdown::ms;
    for r in &suite.runs {
        let verdict = match r.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "**FAIL**",
            Outcome::Skipped => "skipped",
            Outcome::Running => "running",
            Outcome::Interrupted => "**INTERRUPTED**",
        };
        let mut failed = r.failed_checks.join(", ");
        if let Some(e) = &r.error {
            failed = format!("broke down: {e}");
        }
        let image = if several_images {
            format!(" `{}` |", r.image)
        } else {
            String::new()
        };
        let leases = match (with_leases, r.leases_expired) {
            (false, _) => String::new(),
            (true, Some(n)) => format!(" {n} |"),
            (true, None) => " — |".to_string(),
        };
        let _ = writeln!(
            s,
            "| {} |{image} {verdict} | {} | {} | {} ms | {} of {} |{leases} {} | {} | [{}/report.html]({}/report.html) |",
            r.scenario,
            ms(r.rto_ms),
            ms(r.procedure_ms),
            r.max_write_gap_ms,
            r.lost_acked_writes,
            r.acked_writes,
            r.mean_acked_per_s
                .map(|t| format!("{t:.1} writes/s"))
                .unwrap_or_else(|| "—".into()),
            if failed.is_empty() { "—".into() } else { failed },
            r.folder,
            r.folder
        );
    }
    s
}
