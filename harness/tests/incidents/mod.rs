//! The operational incidents, drilled for real: learner-based member replacement beside
//! the plain one, the mistake of starting a replacement with `initial-cluster-state=new`
//! (which the checks must catch), quota exhaustion with its runbook, and defragmentation
//! under load with two policies; the incidents' drills also run with auth on.

use std::path::Path;

use etcd_drill::drill::event::Outcome;

use super::images::{auth_drill_report, with_auth};
use super::{commands, count_containing, ensure, explain, lossless_drill, run_scenario, TestResult};
use etcd_drill::docker::image::DEFAULT_IMAGE;

/// The learner path: `member add --learner`, a wait until it has caught up, `member
/// promote`; no write lost, every check passes.
pub fn member_data_loss_learner() -> TestResult {
    let report = lossless_drill("member-data-loss-learner", 41, false)?;
    learner_steps(&report)
}

fn learner_steps(report: &etcd_drill::report::DrillReport) -> TestResult {
    let recovery = commands(report, "recovery");
    ensure(count_containing(&recovery, "member add etcd3") == 1, || {
        format!("{recovery:#?}")
    })?;
    ensure(count_containing(&recovery, "--learner") == 1, || {
        format!("{recovery:#?}")
    })?;
    ensure(count_containing(&recovery, "raftAppliedIndex") == 1, || {
        format!("{recovery:#?}")
    })?;
    ensure(count_containing(&recovery, "member promote") == 1, || {
        format!("{recovery:#?}")
    })
}

pub fn member_data_loss_learner_with_auth() -> TestResult {
    let (report, _out) = auth_drill_report(&with_auth("member-data-loss-learner")?, 42, DEFAULT_IMAGE)?;
    learner_steps(&report)
}

/// A replacement started with `initial-cluster-state=new` by mistake: the drill fails, and
/// the checks say why (the member never serves; the member list names a member that never
/// started).
pub fn member_replace_started_new_is_caught() -> TestResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/mistakes/member-replace-started-new.toml");
    let text = std::fs::read_to_string(&path)?;
    let (report, _out) = run_scenario(&text, 43)?;
    ensure(report.outcome == Outcome::Fail, || {
        format!("the mistake was not caught:\n{}", explain(&report))
    })?;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    ensure(
        failed.contains(&"member_list") && failed.contains(&"all_healthy"),
        || format!("failed checks {failed:?}\n{}", explain(&report)),
    )?;
    let unhealthy = report
        .checks
        .iter()
        .find(|c| c.name == "all_healthy")
        .ok_or("no all_healthy check")?;
    ensure(unhealthy.actual.contains("etcd3"), || format!("{unhealthy:?}"))?;
    ensure(report.data.lost_acked_writes == 0, || explain(&report))
}
