//! `etcd-drill report compare OLD NEW`: reads two sets of `report.json` files (files or
//! folders of them), puts each scenario's RTO, procedure time, lost writes and throughput
//! side by side with the change, and flags the changes that break the scenario's
//! regression budget (`[regression]` in the scenario, or a `--budgets` file).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::REPORT_FORMAT_VERSION;
use crate::error::{Error, Result};
use crate::scenario::{RawRegression, RawScenario, RegressionBudget};

/// The parts of a `report.json` a comparison reads. Older reports lack `series`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportFigures {
    pub format_version: u32,
    pub run_id: String,
    pub started_at: String,
    pub outcome: String,
    pub scenario: ScenarioFigures,
    pub recovery: RecoveryNumbers,
    pub data: DataNumbers,
    #[serde(default)]
    pub series: Option<SeriesNumbers>,
    /// Where the report was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScenarioFigures {
    pub name: String,
    #[serde(default)]
    pub definition: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecoveryNumbers {
    pub rto_ms: Option<u64>,
    pub procedure_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataNumbers {
    pub acked_writes: u64,
    pub lost_acked_writes: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeriesNumbers {
    pub mean_acked_per_s: f64,
}

/// Reads one `report.json`, or every `report.json` under a folder (at any depth).
pub fn load_reports(path: &Path) -> Result<Vec<ReportFigures>> {
    let files = if path.is_dir() {
        let mut found = Vec::new();
        find_report_files(path, &mut found)?;
        found.sort();
        if found.is_empty() {
            return Err(Error::ReportFile {
                path: path.to_path_buf(),
                message: "no report.json in this folder or below it; give a report file or a folder of run reports"
                    .into(),
            });
        }
        found
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        return Err(Error::ReportFile {
            path: path.to_path_buf(),
            message: "no such file or folder; give a report.json or a folder of reports".into(),
        });
    };
    files.iter().map(|f| load_report(f)).collect()
}

fn find_report_files(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.is_dir() {
            find_report_files(&path, found)?;
        } else if path.file_name().is_some_and(|n| n == "report.json") {
            found.push(path);
        }
    }
    Ok(())
}

fn load_report(path: &Path) -> Result<ReportFigures> {
    let text = std::fs::read_to_string(path).map_err(Error::input(path))?;
    parse_report(&text, path)
}

/// A report.json's text, read from `path` (named in every error), as the figures a
/// comparison uses.
pub fn parse_report(text: &str, path: &Path) -> Result<ReportFigures> {
    let mut report: ReportFigures = serde_json::from_str(text).map_err(|e| Error::ReportFile {
        path: path.to_path_buf(),
        message: format!("not an etcd-drill report.json: {e}"),
    })?;
    if report.format_version > REPORT_FORMAT_VERSION {
        return Err(Error::ReportFile {
            path: path.to_path_buf(),
            message: format!(
                "format_version {} is newer than this etcd-drill reads ({REPORT_FORMAT_VERSION}); use a newer etcd-drill",
                report.format_version
            ),
        });
    }
    report.path = path.to_path_buf();
    Ok(report)
}

/// Reads a `--budgets` file: the keys of a scenario's `[regression]` table, at the top level.
pub fn load_budgets(path: &Path) -> Result<RawRegression> {
    let text = std::fs::read_to_string(path).map_err(Error::input(path))?;
    parse_budgets(&text, path)
}

/// A `--budgets` file's text, read from `path` (named in every error), checked.
pub fn parse_budgets(text: &str, path: &Path) -> Result<RawRegression> {
    let raw: RawRegression = toml::from_str(text).map_err(|e| Error::ScenarioFile {
        path: path.to_path_buf(),
        message: e.message().trim().to_string(),
    })?;
    // Validate the values now, so that a bad file fails before any comparison.
    RegressionBudget::compile(&raw, &RegressionBudget::default(), path, "")?;
    Ok(raw)
}

/// The budget a comparison holds `new` to: the scenario's `[regression]` as recorded in the
/// new report, then the `--budgets` file over it.
fn budget_for(new: &ReportFigures, overrides: Option<(&RawRegression, &Path)>) -> Result<RegressionBudget> {
    let from_scenario = if new.scenario.definition.is_empty() {
        RawRegression::default()
    } else {
        toml::from_str::<RawScenario>(&new.scenario.definition)
            .map_err(|e| Error::ReportFile {
                path: new.path.clone(),
                message: format!("key `scenario.definition` is not a scenario: {}", e.message().trim()),
            })?
            .regression
            .unwrap_or_default()
    };
    let budget = RegressionBudget::compile(&from_scenario, &RegressionBudget::default(), &new.path, "regression.")?;
    match overrides {
        Some((raw, path)) => RegressionBudget::compile(raw, &budget, path, ""),
        None => Ok(budget),
    }
}

/// One figure of one scenario, old against new.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureChange {
    pub figure: &'static str,
    pub unit: &'static str,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// Why this change breaks the budget, if it does.
    pub regression: Option<String>,
}

impl FigureChange {
    /// The change in percent of the old value, when both exist and the old is not zero.
    pub fn change_pct(&self) -> Option<f64> {
        match (self.old, self.new) {
            (Some(o), Some(n)) if o != 0.0 => Some((n - o) / o * 100.0),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioComparison {
    pub scenario: String,
    pub old_run: String,
    pub new_run: String,
    pub budget: RegressionBudget,
    pub changes: Vec<FigureChange>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    pub scenarios: Vec<ScenarioComparison>,
    /// Scenarios only one side has.
    pub only_old: Vec<String>,
    pub only_new: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> Vec<(&str, &FigureChange)> {
        self.scenarios
            .iter()
            .flat_map(|s| {
                s.changes
                    .iter()
                    .filter(|c| c.regression.is_some())
                    .map(move |c| (s.scenario.as_str(), c))
            })
            .collect()
    }
}

/// Keeps the latest report (by start time) of each scenario.
fn latest_by_scenario(reports: &[ReportFigures]) -> BTreeMap<String, &ReportFigures> {
    let mut latest: BTreeMap<String, &ReportFigures> = BTreeMap::new();
    for r in reports {
        let slot = latest.entry(r.scenario.name.clone()).or_insert(r);
        if r.started_at > slot.started_at {
            *slot = r;
        }
    }
    latest
}

/// More lost acknowledged writes is a regression: always when the old run lost none, and
/// beyond `lost_worse_pct` percent when it lost some too (a drill that loses writes by
/// design loses a few more or fewer from run to run).
fn lost_regression(old_lost: u64, new_lost: u64, b: &RegressionBudget) -> Option<String> {
    if b.allow_new_data_loss || new_lost <= old_lost {
        return None;
    }
    if old_lost == 0 {
        return Some(format!(
            "{new_lost} acknowledged writes lost, none before: new data loss"
        ));
    }
    let ceiling = old_lost as f64 * (1.0 + b.lost_worse_pct as f64 / 100.0);
    (new_lost as f64 > ceiling).then(|| {
        format!(
            "{new_lost} acknowledged writes lost, {old_lost} before: more than {}% more (budget {})",
            b.lost_worse_pct,
            ceiling.floor() as u64
        )
    })
}

/// A time figure is worse when it grew by more than `pct` percent and by more than the
/// noise floor, or when it went missing (writes never resumed).
fn time_regression(old: Option<u64>, new: Option<u64>, pct: u64, noise_ms: u64) -> Option<String> {
    match (old, new) {
        (Some(o), Some(n)) => {
            let limit = o as f64 * (1.0 + pct as f64 / 100.0);
            (n as f64 > limit && n.saturating_sub(o) > noise_ms)
                .then(|| format!("{n} ms is more than {pct}% above {o} ms (budget {limit:.0} ms)"))
        }
        (Some(_), None) => Some("writes never resumed in the new run".into()),
        _ => None,
    }
}

fn compare_one(old: &ReportFigures, new: &ReportFigures, budget: RegressionBudget) -> ScenarioComparison {
    let b = &budget;
    let as_f = |v: Option<u64>| v.map(|v| v as f64);
    let mut changes = vec![
        FigureChange {
            figure: "RTO",
            unit: "ms",
            old: as_f(old.recovery.rto_ms),
            new: as_f(new.recovery.rto_ms),
            regression: time_regression(old.recovery.rto_ms, new.recovery.rto_ms, b.rto_worse_pct, b.noise_ms),
        },
        FigureChange {
            figure: "procedure time",
            unit: "ms",
            old: as_f(old.recovery.procedure_ms),
            new: as_f(new.recovery.procedure_ms),
            regression: time_regression(
                old.recovery.procedure_ms,
                new.recovery.procedure_ms,
                b.procedure_worse_pct,
                b.noise_ms,
            ),
        },
    ];
    let (old_lost, new_lost) = (old.data.lost_acked_writes, new.data.lost_acked_writes);
    changes.push(FigureChange {
        figure: "lost acknowledged writes",
        unit: "",
        old: Some(old_lost as f64),
        new: Some(new_lost as f64),
        regression: lost_regression(old_lost, new_lost, b),
    });
    let (old_tp, new_tp) = (
        old.series.as_ref().map(|s| s.mean_acked_per_s),
        new.series.as_ref().map(|s| s.mean_acked_per_s),
    );
    let throughput_regression = match (old_tp, new_tp) {
        (Some(o), Some(n)) => {
            let floor = o * (1.0 - b.throughput_worse_pct as f64 / 100.0);
            (n < floor).then(|| {
                format!(
                    "{n:.1} writes/s is more than {}% below {o:.1} (budget {floor:.1})",
                    b.throughput_worse_pct
                )
            })
        }
        _ => None,
    };
    changes.push(FigureChange {
        figure: "throughput",
        unit: "writes/s",
        old: old_tp,
        new: new_tp,
        regression: throughput_regression,
    });
    changes.push(FigureChange {
        figure: "verdict passed",
        unit: "",
        old: Some(if old.outcome == "pass" { 1.0 } else { 0.0 }),
        new: Some(if new.outcome == "pass" { 1.0 } else { 0.0 }),
        regression: (old.outcome == "pass" && new.outcome != "pass")
            .then(|| "the old run passed, the new one failed".to_string()),
    });
    ScenarioComparison {
        scenario: new.scenario.name.clone(),
        old_run: old.run_id.clone(),
        new_run: new.run_id.clone(),
        budget,
        changes,
    }
}

/// Compares the latest report of each scenario in `old` with the one in `new`.
pub fn compare(
    old: &[ReportFigures],
    new: &[ReportFigures],
    overrides: Option<(&RawRegression, &Path)>,
) -> Result<Comparison> {
    let (old, new) = (latest_by_scenario(old), latest_by_scenario(new));
    let mut comparison = Comparison::default();
    for (name, n) in &new {
        match old.get(name) {
            Some(o) => comparison.scenarios.push(compare_one(o, n, budget_for(n, overrides)?)),
            None => comparison.only_new.push(name.clone()),
        }
    }
    comparison.only_old = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    Ok(comparison)
}

fn cell(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "—".into(),
        Some(v) if unit == "writes/s" => format!("{v:.1} {unit}"),
        Some(v) if unit.is_empty() => format!("{v:.0}"),
        Some(v) => format!("{v:.0} {unit}"),
    }
}

/// The comparison as Markdown: a table per scenario, fit for a CI step summary.
pub fn render_comparison(c: &Comparison) -> String {
    let mut s = String::new();
    let regressions = c.regressions();
    let _ = writeln!(
        s,
        "# etcd-drill: report comparison — {}\n",
        if regressions.is_empty() {
            "no regression".to_string()
        } else {
            format!("{} REGRESSION(S)", regressions.len())
        }
    );
    for sc in &c.scenarios {
        let b = &sc.budget;
        let _ = writeln!(
            s,
            "## {} (run {} → {})\n\nBudget: RTO +{}%, procedure +{}%, throughput −{}%, new data loss {}, lost writes +{}% where some were lost before, noise {} ms.\n",
            sc.scenario,
            sc.old_run,
            sc.new_run,
            b.rto_worse_pct,
            b.procedure_worse_pct,
            b.throughput_worse_pct,
            if b.allow_new_data_loss { "allowed" } else { "not allowed" },
            b.lost_worse_pct,
            b.noise_ms
        );
        let _ = writeln!(s, "| figure | old | new | change | verdict |\n|---|---|---|---|---|");
        for ch in &sc.changes {
            let change = match (ch.old, ch.new, ch.change_pct()) {
                (Some(o), Some(n), Some(p)) => format!("{:+.0} ({p:+.1}%)", n - o),
                (Some(o), Some(n), None) => format!("{:+.0}", n - o),
                _ => "—".into(),
            };
            let verdict = match &ch.regression {
                Some(why) => format!("**REGRESSION**: {why}"),
                None => "ok".into(),
            };
            let (old, new) = if ch.figure == "verdict passed" {
                let word = |v: Option<f64>| if v == Some(1.0) { "pass" } else { "fail" }.to_string();
                (word(ch.old), word(ch.new))
            } else {
                (cell(ch.old, ch.unit), cell(ch.new, ch.unit))
            };
            let change = if ch.figure == "verdict passed" {
                "".into()
            } else {
                change
            };
            let _ = writeln!(s, "| {} | {old} | {new} | {change} | {verdict} |", ch.figure);
        }
        s.push('\n');
    }
    if !c.only_new.is_empty() {
        let _ = writeln!(s, "New scenarios, nothing to compare with: {}\n", c.only_new.join(", "));
    }
    if !c.only_old.is_empty() {
        let _ = writeln!(s, "Scenarios missing from the new reports: {}\n", c.only_old.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, rto: u64, procedure: u64, lost: u64, tp: f64, definition: &str) -> ReportFigures {
        ReportFigures {
            format_version: 1,
            run_id: format!("run-{rto}"),
            started_at: "2026-11-21T06:00:00Z".into(),
            outcome: "pass".into(),
            scenario: ScenarioFigures {
                name: name.into(),
                definition: definition.into(),
            },
            recovery: RecoveryNumbers {
                rto_ms: Some(rto),
                procedure_ms: Some(procedure),
            },
            data: DataNumbers {
                acked_writes: 500,
                lost_acked_writes: lost,
            },
            series: Some(SeriesNumbers { mean_acked_per_s: tp }),
            path: PathBuf::from(format!("{name}/report.json")),
        }
    }

    fn flagged(c: &Comparison) -> Vec<&'static str> {
        c.regressions().iter().map(|(_, ch)| ch.figure).collect()
    }

    #[test]
    fn a_slower_lossier_run_breaks_the_default_budget() {
        let old = [report("s", 5_000, 2_500, 0, 95.0, "")];
        let new = [report("s", 6_100, 2_600, 3, 94.0, "")];
        let c = compare(&old, &new, None).unwrap();
        assert_eq!(flagged(&c), vec!["RTO", "lost acknowledged writes"]);
        let md = render_comparison(&c);
        assert!(md.contains("2 REGRESSION(S)"), "{md}");
        assert!(
            md.contains("| RTO | 5000 ms | 6100 ms | +1100 (+22.0%) | **REGRESSION**"),
            "{md}"
        );
    }

    #[test]
    fn changes_within_budget_or_noise_pass() {
        let old = [report("s", 1_000, 500, 2, 95.0, "")];
        // Exactly +20% is within the default budget.
        let same = [report("s", 1_200, 600, 2, 80.0, "")];
        assert!(flagged(&compare(&old, &same, None).unwrap()).is_empty());
        let tiny_old = [report("s", 400, 200, 0, 95.0, "")];
        let tiny_new = [report("s", 600, 400, 0, 95.0, "")];
        assert!(flagged(&compare(&tiny_old, &tiny_new, None).unwrap()).is_empty());
        let slow_tp = [report("s", 1_000, 500, 2, 70.0, "")];
        assert_eq!(flagged(&compare(&old, &slow_tp, None).unwrap()), vec!["throughput"]);
    }

    #[test]
    fn a_drill_that_loses_writes_by_design_regresses_only_beyond_its_budget() {
        let old = [report("s", 5_000, 2_500, 158, 95.0, "")];
        // One write more, and exactly +20%: within the default budget.
        for lost in [159, 189] {
            let new = [report("s", 5_000, 2_500, lost, 95.0, "")];
            assert!(flagged(&compare(&old, &new, None).unwrap()).is_empty(), "{lost}");
        }
        let worse = [report("s", 5_000, 2_500, 190, 95.0, "")];
        let c = compare(&old, &worse, None).unwrap();
        assert_eq!(flagged(&c), vec!["lost acknowledged writes"]);
        assert!(
            render_comparison(&c).contains("190 acknowledged writes lost, 158 before: more than 20% more (budget 189)")
        );
        let strict = "[regression]\nlost_worse_pct = 0\n";
        let old = [report("s", 5_000, 2_500, 158, 95.0, strict)];
        let new = [report("s", 5_000, 2_500, 159, 95.0, strict)];
        assert_eq!(
            flagged(&compare(&old, &new, None).unwrap()),
            vec!["lost acknowledged writes"]
        );
    }

    #[test]
    fn budgets_come_from_the_scenario_then_the_file() {
        let definition = "[regression]\nrto_worse_pct = 50\nallow_new_data_loss = true\n";
        let old = [report("s", 5_000, 2_500, 0, 95.0, definition)];
        let new = [report("s", 7_000, 2_500, 9, 95.0, definition)];
        assert!(flagged(&compare(&old, &new, None).unwrap()).is_empty());
        let file = RawRegression {
            rto_worse_pct: Some(10),
            ..RawRegression::default()
        };
        let c = compare(&old, &new, Some((&file, Path::new("budgets.toml")))).unwrap();
        assert_eq!(flagged(&c), vec!["RTO"]);
        assert!(c.scenarios[0].budget.allow_new_data_loss);
    }

    #[test]
    fn unmatched_scenarios_are_listed_not_failed() {
        let c = compare(
            &[report("a", 1, 1, 0, 1.0, ""), report("b", 1, 1, 0, 1.0, "")],
            &[report("b", 1, 1, 0, 1.0, ""), report("c", 1, 1, 0, 1.0, "")],
            None,
        )
        .unwrap();
        assert_eq!(
            (c.only_old.clone(), c.only_new.clone()),
            (vec!["a".into()], vec!["c".to_string()])
        );
        assert_eq!(c.scenarios.len(), 1);
    }

    #[test]
    fn bad_paths_and_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_reports(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("no such file or folder"), "{e}");
        assert_eq!(e.exit_class(), crate::error::ExitClass::InvalidInput);
        let e = load_reports(dir.path()).unwrap_err();
        assert!(e.to_string().contains("no report.json"), "{e}");
        let bad = dir.path().join("report.json");
        std::fs::write(&bad, "{\"format_version\": 1}").unwrap();
        let e = load_reports(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not an etcd-drill report.json"), "{e}");
        let budgets = dir.path().join("budgets.toml");
        std::fs::write(&budgets, "rto_worse_pct = -5\n").unwrap();
        let e = load_budgets(&budgets).unwrap_err();
        assert!(
            e.to_string().contains("rto_worse_pct") && e.to_string().contains("budgets.toml"),
            "{e}"
        );
    }
}
