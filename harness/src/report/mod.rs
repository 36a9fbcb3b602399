//! Reports built from a run's events, all from the same [`DrillReport`]: `report.json`
//! (the versioned, machine-readable record), `report.md` (verdict, figures, timeline),
//! `junit.xml` (for CI test viewers), `report.html` (charts) and `runbook.sh` (the
//! procedure's commands). The terminal reporter prints progress while the drill runs;
//! `compare`, `suite` and `release` work on finished reports.

pub mod compare;
mod html;
mod junit;
mod markdown;
pub mod release;
mod runbook;
pub mod suite;
mod svg;
mod terminal;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use html::render_html;
pub use junit::render_junit;
pub use markdown::render_markdown;
pub use runbook::render_runbook;
pub use terminal::TerminalReporter;

use crate::cluster::RecordedCommand;
use crate::drill::check::{CheckResult, Consistency, DataLoss};
use crate::drill::event::{Event, Outcome, Reporter};
use crate::drill::measure::RecoveryFigures;
use crate::drill::series::WorkloadSeries;
use crate::error::{Error, Result};
use crate::etcd::known_bugs::ApplicableBug;
use crate::scenario::Scenario;
use crate::topology::Topology;

/// The files every run writes, whatever happened; `ledger.jsonl` and `snapshot.db` are
/// listed in `files` only when the run wrote them.
pub const REPORT_FILES: &[&str] = &["report.json", "report.md", "junit.xml", "report.html", "runbook.sh"];
const OPTIONAL_FILES: &[&str] = &[
    "ledger.jsonl",
    "history.jsonl",
    "snapshot.db",
    "copied-db.db",
    "pre-upgrade.db",
];

/// Bumped whenever a field of `report.json` changes meaning or goes away.
pub const REPORT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at_ms: u64,
    pub what: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub description: String,
    pub procedure: String,
    pub definition: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub format_version: u32,
    pub tool_version: String,
    pub run_id: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub seed: u64,
    pub image: String,
    /// The etcd release the image runs (`etcd --version`); None when the image could not
    /// be inspected.
    pub etcd_version: Option<String>,
    /// The known etcd bugs of that release (`etcd::known_bugs`): a failure they explain is
    /// a defect of the release, not news.
    pub known_bugs: Vec<ApplicableBug>,
    pub scenario: ScenarioSummary,
    pub topology: Topology,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// Why the drill was skipped (outcome `skipped`), e.g. a restore flag the image lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    pub recovery: RecoveryFigures,
    pub data: DataLoss,
    pub consistency: Option<Consistency>,
    /// Throughput and latency over the drill; None when the workload never ran.
    pub series: Option<WorkloadSeries>,
    pub checks: Vec<CheckResult>,
    pub timeline: Vec<TimelineEntry>,
    pub commands: Vec<RecordedCommand>,
    pub kept_endpoints: Option<Vec<(String, String)>>,
    pub files: Vec<String>,
    /// How the run was stopped, when it was (outcome `interrupted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption: Option<Interruption>,
}

/// How a run was stopped before its end, and whether its objects went with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// The signal the harness caught (SIGINT, SIGTERM). None when the harness ended
    /// without a word (SIGKILL, an OOM kill, a crash) and its watchdog recorded the run.
    pub signal: Option<String>,
    /// `harness` (it caught the signal) or `watchdog` (the harness was gone).
    pub recorded_by: String,
    /// The last step of the timeline before the interruption.
    pub phase: String,
    /// Time into the run of the interruption (the harness), or of the last step heard of
    /// (the watchdog).
    pub at_ms: u64,
    /// Whether every container, network and volume of the run is gone.
    pub cleanup_ok: bool,
    /// What was removed after the interruption, e.g. "5 containers, 2 networks, 5 volumes".
    pub removed: String,
    /// Why the cleanup did not finish, when it did not.
    pub cleanup_error: Option<String>,
}

/// Builds a [`DrillReport`] from events; on `RunFinished` writes `report.json` and
/// `report.md` into the run's folder.
///
/// While the run goes on, `report.json` is rewritten at every step of the timeline with
/// the outcome `running`, so a run that is stopped leaves a record of how far it came.
#[derive(Default)]
pub struct ReportBuilder {
    report: Option<DrillReport>,
    out_dir: Option<PathBuf>,
    write_error: Option<String>,
    started: Option<std::time::Instant>,
}

impl ReportBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn report(&self) -> Option<&DrillReport> {
        self.report.as_ref()
    }

    /// The error of writing the report files, if that failed.
    pub fn write_error(&self) -> Option<&str> {
        self.write_error.as_deref()
    }

    fn started(run_id: &str, scenario: &Scenario, image: &str, seed: u64, started_at: &str) -> DrillReport {
        DrillReport {
            format_version: REPORT_FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: run_id.to_string(),
            started_at: started_at.to_string(),
            duration_ms: 0,
            seed,
            image: image.to_string(),
            etcd_version: None,
            known_bugs: Vec::new(),
            scenario: ScenarioSummary {
                name: scenario.name.clone(),
                description: scenario.description.clone(),
                procedure: scenario.recovery.procedure.name().to_string(),
                definition: scenario.to_toml(),
            },
            topology: scenario.topology.clone(),
            outcome: Outcome::Running,
            error: None,
            skip_reason: None,
            recovery: RecoveryFigures::default(),
            data: DataLoss::default(),
            consistency: None,
            series: None,
            checks: Vec::new(),
            timeline: Vec::new(),
            commands: Vec::new(),
            kept_endpoints: None,
            files: Vec::new(),
            interruption: None,
        }
    }

    /// Rewrites `report.json` with the run so far (outcome `running`). Best effort: the
    /// files written at the end are the ones that count.
    fn write_progress(&self) {
        if let (Some(report), Some(dir)) = (&self.report, &self.out_dir) {
            let json = serde_json::to_string_pretty(report).expect("a report always serializes");
            let _ = write_file(&dir.join("report.json"), &(json + "\n"));
        }
    }

    /// The run was stopped by `signal` before it finished: records the interruption with
    /// the phase it was in and the cleanup's result, and writes every report file. None
    /// when the run had not started (no report to write).
    pub fn interrupted(&mut self, signal: &str, cleanup: std::result::Result<String, String>) -> Option<&DrillReport> {
        let at_ms = self.started.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0);
        let report = self.report.as_mut()?;
        if report.outcome != Outcome::Running {
            return Some(report);
        }
        let interruption = Interruption {
            signal: Some(signal.to_string()),
            recorded_by: "harness".into(),
            phase: current_phase(report),
            at_ms,
            cleanup_ok: cleanup.is_ok(),
            removed: cleanup.clone().unwrap_or_default(),
            cleanup_error: cleanup.err(),
        };
        mark_interrupted(report, interruption);
        if let Some(dir) = &self.out_dir {
            report.files = files_in(dir);
            if let Err(e) = write_report_files(report, dir) {
                self.write_error = Some(e.to_string());
            }
        }
        Some(report)
    }
}

/// The last step of the report's timeline, as the phase the run was in.
fn current_phase(report: &DrillReport) -> String {
    report
        .timeline
        .last()
        .map(|t| t.what.clone())
        .unwrap_or_else(|| "starting".into())
}

fn mark_interrupted(report: &mut DrillReport, interruption: Interruption) {
    report.timeline.push(TimelineEntry {
        at_ms: interruption.at_ms,
        what: "interrupted".into(),
        detail: match &interruption.signal {
            Some(signal) => format!("{signal} during {}", interruption.phase),
            None => format!("the harness ended without a word during {}", interruption.phase),
        },
    });
    report.duration_ms = interruption.at_ms;
    report.outcome = Outcome::Interrupted;
    report.error = Some(match (&interruption.signal, interruption.cleanup_ok) {
        (Some(signal), true) => format!("interrupted by {signal}; the run's objects were removed"),
        (None, true) => {
            "the harness ended without a word (SIGKILL, an OOM kill or a crash); its watchdog removed the run's objects"
                .into()
        }
        (_, false) => format!(
            "interrupted; the run's objects could not all be removed: {}",
            interruption.cleanup_error.as_deref().unwrap_or("unknown")
        ),
    });
    report.interruption = Some(interruption);
}

/// The report files present in `dir`: every one of [`REPORT_FILES`] and the optional ones
/// the run wrote.
fn files_in(dir: &Path) -> Vec<String> {
    REPORT_FILES
        .iter()
        .chain(OPTIONAL_FILES.iter().filter(|f| dir.join(f).exists()))
        .map(|f| f.to_string())
        .collect()
}

/// The watchdog's record of a run whose harness ended without a word: when `dir` holds a
/// report still `running`, it becomes `interrupted` (in the phase it had reached, with the
/// reaping's result) and every report file is written. A folder without such a report
/// (the run had not begun, or had finished) is left as it is.
pub fn record_unannounced_end(dir: &Path, reaped: &crate::docker::reaper::Reaped) -> Result<()> {
    let path = dir.join("report.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut report: DrillReport = serde_json::from_str(&text).map_err(|e| Error::ReportFile {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if report.outcome != Outcome::Running {
        return Ok(());
    }
    let at_ms = report.timeline.last().map(|t| t.at_ms).unwrap_or(0);
    let interruption = Interruption {
        signal: None,
        recorded_by: "watchdog".into(),
        phase: current_phase(&report),
        at_ms,
        cleanup_ok: reaped.error.is_none(),
        removed: reaped.removed.as_ref().map(|r| r.summary()).unwrap_or_default(),
        cleanup_error: reaped.error.clone(),
    };
    mark_interrupted(&mut report, interruption);
    report.files = files_in(dir);
    write_report_files(&report, dir)
}

impl Reporter for ReportBuilder {
    fn on_event(&mut self, event: &Event) {
        if let Event::RunStarted {
            run_id,
            scenario,
            image,
            seed,
            out_dir,
            started_at,
        } = event
        {
            self.report = Some(Self::started(run_id, scenario, image, *seed, started_at));
            self.out_dir = Some(out_dir.clone());
            self.started = Some(std::time::Instant::now());
            self.write_progress();
            return;
        }
        let Some(report) = self.report.as_mut() else { return };
        let mut timeline = |at_ms: u64, what: &str, detail: String| {
            report.timeline.push(TimelineEntry {
                at_ms,
                what: what.to_string(),
                detail,
            })
        };
        match event {
            Event::RunStarted { .. } => {}
            Event::ImageInspected {
                etcd_version,
                known_bugs,
                ..
            } => {
                report.etcd_version = Some(etcd_version.clone());
                report.known_bugs = known_bugs.clone();
            }
            Event::Phase { at_ms, name, detail } => timeline(*at_ms, name, detail.clone()),
            Event::FaultInjected {
                at_ms,
                action,
                target,
                members,
            } => timeline(
                *at_ms,
                &format!("fault: {action}"),
                format!("{target}: {}", members.join(", ")),
            ),
            Event::QuorumProbed { at_ms, writable } => timeline(
                *at_ms,
                "quorum-probe",
                if *writable {
                    "a put succeeded: quorum held".into()
                } else {
                    "puts timed out on every survivor: quorum lost".into()
                },
            ),
            Event::RecoveryStarted { at_ms, procedure } => timeline(*at_ms, "recovery-started", procedure.clone()),
            Event::RecoveryFinished { at_ms, ok } => timeline(
                *at_ms,
                "recovery-finished",
                if *ok {
                    "the cluster takes writes".into()
                } else {
                    "the procedure failed".into()
                },
            ),
            Event::AllHealthy { at_ms } => {
                timeline(*at_ms, "all-healthy", "every member answers a linearizable read".into())
            }
            Event::Command(c) => report.commands.push(c.clone()),
            Event::WorkloadSeries(series) => report.series = Some((**series).clone()),
            Event::Measured {
                recovery,
                data,
                consistency,
            } => {
                report.recovery = (**recovery).clone();
                report.data = (**data).clone();
                report.consistency = consistency.as_deref().cloned();
            }
            Event::Check(c) => report.checks.push(c.clone()),
            Event::RunFinished {
                at_ms,
                outcome,
                error,
                skip_reason,
                kept,
            } => {
                timeline(*at_ms, "finished", format!("{outcome:?}").to_lowercase());
                report.duration_ms = *at_ms;
                report.outcome = *outcome;
                report.error = error.clone();
                report.skip_reason = skip_reason.clone();
                report.kept_endpoints = kept.clone();
                if let Some(dir) = &self.out_dir {
                    report.files = files_in(dir);
                    if let Err(e) = write_report_files(report, dir) {
                        self.write_error = Some(e.to_string());
                    }
                }
            }
        }
        let new_step = matches!(
            event,
            Event::Phase { .. }
                | Event::FaultInjected { .. }
                | Event::QuorumProbed { .. }
                | Event::RecoveryStarted { .. }
                | Event::RecoveryFinished { .. }
                | Event::AllHealthy { .. }
        );
        if new_step {
            self.write_progress();
        }
    }
}

/// Writes every file of [`REPORT_FILES`] into `dir`.
pub fn write_report_files(report: &DrillReport, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report).expect("a report always serializes");
    let junit = render_junit(&format!("etcd-drill {}", report.scenario.name), &[report]);
    for (file, text) in [
        ("report.json", json + "\n"),
        ("report.md", render_markdown(report)),
        ("junit.xml", junit),
        ("report.html", render_html(report)),
        ("runbook.sh", render_runbook(report)),
    ] {
        write_file(&dir.join(file), &text)?;
    }
    make_executable(&dir.join("runbook.sh"))
}

/// Writes `text` to `path`, with the path in the error.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(Error::io(path))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(Error::io(path))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

/// A table of a report section, as data: the Markdown and HTML reporters each render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub heading: String,
    /// A sentence above the table, when one is needed to read it.
    pub note: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A run time in milliseconds as seconds with two decimals: `12.35 s`.
pub(crate) fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// The tables of the backend incidents: a quota recovery's figures, every member's DB size
/// after each step of a maintenance or quota runbook, each defragmentation with its write
/// gap and expired leases, and the leases kept alive. Empty for other drills.
pub fn incident_tables(figures: &RecoveryFigures) -> Vec<Table> {
    let mut tables = Vec::new();
    let outcome = figures.outcome.as_ref();
    if let Some(q) = outcome.and_then(|o| o.quota.as_ref()) {
        tables.push(Table {
            heading: "Quota exhaustion".into(),
            note: None,
            columns: vec!["figure".into(), "value".into()],
            rows: vec![
                vec!["alarms listed".into(), q.alarms.join(", ")],
                vec![
                    "alarm to the first refused workload write".into(),
                    q.alarm_to_first_refusal_ms
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_else(|| "none refused".into()),
                ],
                vec!["workload writes refused for space".into(), q.refused_writes.to_string()],
                vec![
                    "read served during the alarm".into(),
                    if q.read_during_alarm { "yes" } else { "no" }.into(),
                ],
                vec!["alarms disarmed".into(), q.disarmed.to_string()],
                vec![
                    "read-only for the application (alarm to the first accepted write)".into(),
                    q.read_only_ms
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_else(|| "until the end of the run".into()),
                ],
            ],
        });
    }
    if let Some(steps) = outcome.map(|o| &o.size_steps).filter(|s| !s.is_empty()) {
        let members: std::collections::BTreeSet<&String> = steps.iter().flat_map(|s| s.sizes.keys()).collect();
        let mut columns = vec!["step".to_string(), "at".to_string()];
        columns.extend(members.iter().map(|m| m.to_string()));
        tables.push(Table {
            heading: "Database size after each step".into(),
            note: Some("Each member's backend size as etcdctl endpoint status reports it.".into()),
            columns,
            rows: steps
                .iter()
                .map(|step| {
                    let mut row = vec![step.step.clone(), seconds(step.at_ms)];
                    row.extend(
                        members
                            .iter()
                            .map(|m| step.sizes.get(*m).map(|b| mib(*b)).unwrap_or_else(|| "-".into())),
                    );
                    row
                })
                .collect(),
        });
    }
    if let Some(defrags) = outcome.map(|o| &o.defrags).filter(|d| !d.is_empty()) {
        tables.push(Table {
            heading: "Defragmentation, member by member".into(),
            note: Some(
                "The write gap is the longest time between two acknowledged writes that overlaps the member's defragmentation; a lease counts against it when found expired during it or within one TTL after.".into(),
            ),
            columns: ["member", "leader", "began", "took", "before", "after", "longest write gap", "leases expired"]
                .map(String::from)
                .to_vec(),
            rows: defrags
                .iter()
                .map(|d| {
                    vec![
                        d.member.clone(),
                        if d.leader { "yes" } else { "" }.into(),
                        seconds(d.started_at_ms),
                        format!("{} ms", d.took_ms),
                        d.size_before.map(mib).unwrap_or_else(|| "-".into()),
                        d.size_after.map(mib).unwrap_or_else(|| "-".into()),
                        format!("{} ms", d.longest_write_gap_ms),
                        d.leases_expired.to_string(),
                    ]
                })
                .collect(),
        });
    }
    if let Some(l) = &figures.leases {
        tables.push(Table {
            heading: "Leases kept alive".into(),
            note: None,
            columns: vec!["figure".into(), "value".into()],
            rows: vec![
                vec!["leases (TTL)".into(), format!("{} ({} s)", l.leases, l.ttl_s)],
                vec![
                    "renewals (failed)".into(),
                    format!("{} ({})", l.renewals, l.failed_renewals),
                ],
                vec![
                    "longest between two renewals of one lease".into(),
                    format!("{} ms", l.longest_renewal_gap_ms),
                ],
                vec![
                    "found expired at".into(),
                    if l.expired_at_ms.is_empty() {
                        "none".into()
                    } else {
                        l.expired_at_ms
                            .iter()
                            .map(|ms| seconds(*ms))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ],
            ],
        });
    }
    tables
}

/// The agent's figures as (label, value) lines for the terminal and `report.md`: the RPO
/// bound next to the measured RPO, what the agent saved, and what the restore replayed.
pub fn agent_summary(figures: &RecoveryFigures, measured_rpo_ms: u64) -> Vec<(String, String)> {
    let Some(a) = &figures.agent else {
        return Vec::new();
    };
    let f = &a.figures;
    let full_bytes: u64 = f.fulls.iter().map(|x| x.size).sum();
    let full_stored: u64 = f.fulls.iter().map(|x| x.stored_bytes).sum();
    let mut lines = vec![
        ("RPO bound (agent)".to_string(), format!("{} ms", a.rpo_bound_ms)),
        ("RPO measured".to_string(), format!("{measured_rpo_ms} ms")),
        (
            "agent saved".to_string(),
            format!(
                "{} fulls ({} -> {} bytes), {} deltas ({} events, {} -> {} bytes), {}",
                f.fulls.len(),
                full_bytes,
                full_stored,
                f.deltas,
                f.delta_events,
                f.delta_bytes,
                f.delta_stored_bytes,
                a.ended
            ),
        ),
    ];
    if let Some(info) = figures.outcome.as_ref().and_then(|o| o.incremental.as_ref()) {
        let r = &info.replay;
        lines.push((
            "restore from backup".to_string(),
            format!(
                "{} + {} deltas: revision {} -> {}, {} events; read {} ms, replay {} ms",
                r.full,
                r.deltas_replayed.len(),
                r.full_revision,
                r.revision,
                r.events,
                r.fetch_ms,
                r.replay_ms
            ),
        ));
    }
    lines
}

/// The scheme of the members' URLs: a drill with TLS on ran them on https.
pub(crate) fn member_scheme(r: &DrillReport) -> &'static str {
    let tls = toml::from_str::<crate::scenario::RawScenario>(&r.scenario.definition)
        .ok()
        .and_then(|raw| raw.security)
        .and_then(|security| security.tls)
        .unwrap_or(false);
    if tls {
        "https"
    } else {
        "http"
    }
}
