//! Checks shared by the test suites on a run's report folder: the five report files are
//! there, `report.json` validates against the committed JSON Schema, `junit.xml` parses
//! with one case per check, `runbook.sh` is valid shell, and `report.html` opens in
//! headless Chromium with its charts drawn (through `scripts/check-html`).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_drill::report::{DrillReport, REPORT_FILES};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in a workspace")
        .to_path_buf()
}

/// Every schema error of the `report.json` at `path`, or Ok.
pub fn validate_report_json(path: &Path) -> Result<(), String> {
    let schema_path = repo_root().join("reports/schema/report.schema.json");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&schema_path).map_err(|e| format!("{}: {e}", schema_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", schema_path.display()))?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("the schema itself is invalid: {e}"))?;
    let instance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} does not match the schema:\n{}",
            path.display(),
            errors.join("\n")
        ))
    }
}

/// Parses `junit.xml` and checks it has, for each report, one suite with one case for the
/// scenario and one per check, failures where checks failed, and the figures as properties.
pub fn check_junit(path: &Path, reports: &[&DrillReport]) -> Result<quick_junit::Report, String> {
    let xml = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed = quick_junit::Report::deserialize_from_str(&xml).map_err(|e| format!("{}: {e}", path.display()))?;
    if parsed.test_suites.len() != reports.len() {
        return Err(format!("{} suites, want {}", parsed.test_suites.len(), reports.len()));
    }
    for (suite, report) in parsed.test_suites.iter().zip(reports) {
        let cases = &suite.test_cases;
        if cases.len() != report.checks.len() + 1 {
            return Err(format!(
                "{} cases, want 1 + {} checks",
                cases.len(),
                report.checks.len()
            ));
        }
        for check in &report.checks {
            let name = format!("{}.{}", report.scenario.name, check.name);
            let case = cases
                .iter()
                .find(|c| c.name.as_str() == name)
                .ok_or_else(|| format!("no test case {name}"))?;
            let failed = !matches!(case.status, quick_junit::TestCaseStatus::Success { .. });
            if failed == check.passed {
                return Err(format!(
                    "case {name}: failed={failed} but the check passed={}",
                    check.passed
                ));
            }
        }
        for property in ["rto_ms", "lost_acked_writes", "run_id"] {
            if !suite.properties.iter().any(|p| p.name.as_str() == property) {
                return Err(format!("suite {} has no property {property}", suite.name.as_str()));
            }
        }
    }
    if !xml.contains("<testsuites") || !xml.contains("tests=\"") {
        return Err("no <testsuites tests=...> root, as CI viewers expect".into());
    }
    Ok(parsed)
}

/// Runs `scripts/check-html` on `html`, leaving the screenshot at `screenshot`.
pub fn check_html_in_browser(html: &Path, screenshot: &Path) -> Result<String, String> {
    let out = Command::new(repo_root().join("scripts/check-html"))
        .arg(html)
        .arg(screenshot)
        .output()
        .map_err(|e| format!("cannot run scripts/check-html: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("scripts/check-html failed ({}): {text}", out.status))
    }
}

/// The whole folder of one run: the five files, each checked as above.
pub fn check_report_folder(dir: &Path, report: &DrillReport, screenshot: &Path) -> Result<(), String> {
    for file in REPORT_FILES {
        if !dir.join(file).is_file() {
            return Err(format!("{file} is missing from {}", dir.display()));
        }
    }
    validate_report_json(&dir.join("report.json"))?;
    check_junit(&dir.join("junit.xml"), &[report])?;
    let runbook = dir.join("runbook.sh");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&runbook)
        .output()
        .map_err(|e| e.to_string())?;
    if !syntax.status.success() {
        return Err(format!(
            "runbook.sh is not valid bash: {}",
            String::from_utf8_lossy(&syntax.stderr)
        ));
    }
    let md = std::fs::read_to_string(dir.join("report.md")).map_err(|e| e.to_string())?;
    if !md.contains("RTO") || !md.contains("## Timeline") {
        return Err("report.md lacks the RTO or the timeline".into());
    }
    check_html_in_browser(&dir.join("report.html"), screenshot).map(|_| ())
}
