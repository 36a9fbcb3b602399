//! `junit.xml` for CI test-result viewers: one test suite per drill run, one test case for
//! the scenario as a whole and one per check, failures with their reason, and the run's
//! figures (the run id among them) as properties. Names carry the scenario and the image,
//! never the run id, so a nightly's test history lines up from night to night and the same
//! scenario on two images never collides.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::DrillReport;
use crate::drill::event::Outcome;

/// The figures every suite carries as properties, in this order.
fn figures(r: &DrillReport) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut props = vec![
        ("run_id", r.run_id.clone()),
        ("seed", r.seed.to_string()),
        ("image", r.image.clone()),
        ("procedure", r.recovery.procedure.clone()),
        ("rto_ms", opt(r.recovery.rto_ms)),
        ("procedure_ms", opt(r.recovery.procedure_ms)),
        ("healthy_ms", opt(r.recovery.healthy_ms)),
        ("max_write_gap_ms", r.recovery.max_write_gap_ms.to_string()),
        ("acked_writes", r.data.acked_writes.to_string()),
        ("lost_acked_writes", r.data.lost_acked_writes.to_string()),
        ("rpo_ms", r.data.rpo_ms.to_string()),
    ];
    if let Some(s) = &r.series {
        props.push(("mean_acked_per_s", s.mean_acked_per_s.to_string()));
        props.push(("latency_p99_ms", opt(s.latency_p99_ms)));
    }
    props
}

/// The JUnit class of a run's test cases: the scenario under the image it ran on, the image
/// written with `-` for every character that is not a letter, digit, `-` or `_` (viewers
/// split class names at dots): `etcd-drill.etcd-drill-etcd-3-5-1.server-b-loss`.
fn classname(r: &DrillReport) -> String {
    let image: String = r
        .image
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            true => c,
            false => '-',
        })
        .collect();
    format!("etcd-drill.{image}.{}", r.scenario.name)
}

/// The test suite of one run.
pub fn test_suite(r: &DrillReport) -> TestSuite {
    let scenario = &r.scenario.name;
    let classname = classname(r);
    let mut suite = TestSuite::new(format!("etcd-drill {scenario} on {}", r.image));
    suite.set_time(Duration::from_millis(r.duration_ms));
    if let Ok(ts) = time::OffsetDateTime::parse(&r.started_at, &time::format_description::well_known::Rfc3339) {
        if let Some(dt) = to_chrono(ts) {
            suite.set_timestamp(dt);
        }
    }
    suite.add_properties(figures(r).into_iter().map(|(k, v)| Property::new(k, v)));

    let failed: Vec<String> = r
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: expected {}, got {}", c.name, c.expected, c.actual))
        .collect();
    let status = match (&r.outcome, &r.error) {
        (Outcome::Pass, _) => TestCaseStatus::success(),
        (Outcome::Skipped, _) => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(r.skip_reason.clone().unwrap_or_else(|| "skipped".into()));
            s
        }
        // An interrupted run is an error of the run, not a finding about etcd; one still
        // running when the file is read is one too.
        (Outcome::Interrupted | Outcome::Running, error) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(error.clone().unwrap_or_else(|| "the run had not finished".into()));
            s.set_type("interrupted");
            s
        }
        (Outcome::Fail, Some(error)) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(format!("the drill broke down: {error}"));
            s.set_type("drill-error");
            s
        }
        (Outcome::Fail, None) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("{} check(s) failed: {}", failed.len(), failed.join("; ")));
            s.set_type("check-failed");
            s
        }
    };
    let mut whole = TestCase::new(scenario.clone(), status);
    whole.set_classname(classname.clone());
    whole.set_time(Duration::from_millis(r.duration_ms));
    whole.add_properties(figures(r).into_iter().map(|(k, v)| Property::new(k, v)));
    suite.add_test_case(whole);

    for c in &r.checks {
        let status = if c.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("expected {}, got {}", c.expected, c.actual));
            s.set_type("check-failed");
            s
        };
        let mut case = TestCase::new(format!("{scenario}.{}", c.name), status);
        case.set_classname(classname.clone());
        case.add_property(Property::new("expected", c.expected.clone()));
        case.add_property(Property::new("actual", c.actual.clone()));
        suite.add_test_case(case);
    }
    suite
}

/// `junit.xml` for one or more runs (a suite run gives one test suite per scenario).
pub fn render_junit(name: &str, reports: &[&DrillReport]) -> String {
    let mut report = Report::new(name);
    report.set_time(Duration::from_millis(reports.iter().map(|r| r.duration_ms).sum()));
    report.add_test_suites(reports.iter().map(|r| test_suite(r)));
    report.to_string().expect("an in-memory JUnit report always serializes")
}

/// quick-junit takes chrono timestamps; the rest of the crate uses `time`.
fn to_chrono(t: time::OffsetDateTime) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let utc = chrono::DateTime::<chrono::Utc>::from_timestamp(t.unix_timestamp(), t.nanosecond())?;
    Some(utc.fixed_offset())
}
