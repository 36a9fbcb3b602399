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
    // The reason names the member, its exit and the cause etcd logged.
    ensure(
        unhealthy.actual.contains("etcd3 exited with code") && unhealthy.actual.contains("removed from the cluster"),
        || format!("{unhealthy:?}"),
    )?;
    ensure(report.data.lost_acked_writes == 0, || explain(&report))
}

/// The quota fills, the NOSPACE alarm is raised, reads go on, and the runbook (compact,
/// defragment one at a time, disarm) makes the cluster writable again with nothing lost.
pub fn quota_exhaustion() -> TestResult {
    let report = lossless_quota_drill(run_scenario("quota-exhaustion", 44)?)?;
    ensure(report.recovery.quorum_lost.is_none(), || {
        format!("a full quota is not a quorum loss: {:?}", report.recovery.quorum_lost)
    })
}

pub fn quota_exhaustion_with_auth() -> TestResult {
    lossless_quota_drill(auth_drill_report(&with_auth("quota-exhaustion")?, 45, DEFAULT_IMAGE)?).map(|_| ())
}

fn lossless_quota_drill(
    (report, out): (etcd_drill::report::DrillReport, tempfile::TempDir),
) -> Result<etcd_drill::report::DrillReport, libtest_mimic::Failed> {
    super::common_assertions(&report, out.path())?;
    let outcome = report.recovery.outcome.as_ref().ok_or("no procedure outcome")?;
    let quota = outcome.quota.as_ref().ok_or("no quota figures")?;
    ensure(quota.alarms.iter().any(|a| a.ends_with("NOSPACE")), || {
        format!("{quota:?}")
    })?;
    ensure(quota.read_during_alarm && quota.disarmed >= 1, || format!("{quota:?}"))?;
    ensure(quota.refused_writes > 0 && quota.read_only_ms.is_some(), || {
        format!("the workload was never refused, or never resumed: {quota:?}")
    })?;
    let steps: Vec<&str> = outcome.size_steps.iter().map(|s| s.step.as_str()).collect();
    ensure(
        steps
            == [
                "at the alarm",
                "after compaction",
                "after defragmentation",
                "after alarm disarm",
            ],
        || format!("{steps:?}"),
    )?;
    let limit = 16 * 1024 * 1024;
    let at_alarm = &outcome.size_steps[0].sizes;
    let after = &outcome.size_steps[3].sizes;
    ensure(
        at_alarm.len() == 5 && at_alarm.values().all(|s| *s >= limit * 9 / 10),
        || format!("sizes at the alarm: {at_alarm:?}"),
    )?;
    ensure(after.len() == 5 && after.values().all(|s| *s < limit / 2), || {
        format!("sizes after the runbook: {after:?}")
    })?;
    let recovery = commands(&report, "recovery");
    ensure(
        count_containing(&recovery, "alarm list") == 1
            && count_containing(&recovery, "alarm disarm") == 1
            && count_containing(&recovery, " compact ") == 1
            && count_containing(&recovery, " defrag") == 5,
        || format!("{recovery:#?}"),
    )?;
    ensure(report.data.lost_acked_writes == 0, || explain(&report))?;
    Ok(report)
}

/// Both defragmentation policies on a 256 MiB history under writes and leases: one at a
/// time (the leader last, windows apart, writes flowing) and all at once (windows
/// together); every member shrinks, every window has its write gap measured.
pub fn defrag_policies() -> TestResult {
    let (one, out) = run_scenario("defrag-one-at-a-time", 46)?;
    super::common_assertions(&one, out.path())?;
    let defrags = defrags_of(&one)?;
    ensure(
        defrags.last().is_some_and(|d| d.leader) && defrags.iter().filter(|d| d.leader).count() == 1,
        || format!("the leader is not last: {defrags:#?}"),
    )?;
    // One at a time, a quorum keeps writing: no defragmentation stalls the writers.
    for d in &defrags {
        ensure(d.longest_write_gap_ms < 2_000, || {
            format!("{} stalled writes: {d:?}", d.member)
        })?;
    }
    for pair in defrags.windows(2) {
        ensure(pair[1].started_at_ms >= pair[0].started_at_ms + pair[0].took_ms, || {
            format!("defragmentations overlap: {pair:#?}")
        })?;
    }
    let (all, out) = run_scenario("defrag-all-at-once", 47)?;
    ensure(all.data.lost_acked_writes == 0 && all.error.is_none(), || explain(&all))?;
    common_files(&all, out.path())?;
    let together = defrags_of(&all)?;
    let first = together.iter().map(|d| d.started_at_ms).min().unwrap_or(0);
    let last = together.iter().map(|d| d.started_at_ms).max().unwrap_or(0);
    ensure(last - first < 1_000, || format!("not at once: {together:#?}"))?;
    // At once, every member's window holds the same stall: the gap is measured in each.
    ensure(together.iter().all(|d| d.longest_write_gap_ms > 0), || {
        format!("{together:#?}")
    })?;
    let runbook = commands(&all, "recovery");
    ensure(
        count_containing(&runbook, "defrag --command-timeout=120s &") == 5 && runbook.contains(&"wait"),
        || format!("the runbook does not start them together: {runbook:#?}"),
    )?;
    ensure(all.recovery.leases.is_some(), || "no lease figures".into())
}

fn common_files(report: &etcd_drill::report::DrillReport, out: &Path) -> TestResult {
    for file in ["report.json", "report.md", "junit.xml", "report.html"] {
        ensure(out.join(file).is_file(), || {
            format!("{file} missing\n{}", explain(report))
        })?;
    }
    Ok(())
}

fn defrags_of(
    report: &etcd_drill::report::DrillReport,
) -> Result<Vec<etcd_drill::procedure::DefragStep>, libtest_mimic::Failed> {
    let outcome = report.recovery.outcome.as_ref().ok_or("no procedure outcome")?;
    let defrags = outcome.defrags.clone();
    ensure(defrags.len() == 5, || format!("{defrags:#?}"))?;
    for d in &defrags {
        let shrank =
            matches!((d.size_before, d.size_after), (Some(before), Some(after)) if after > 0 && after < before / 2);
        ensure(shrank, || format!("{} did not shrink: {d:?}", d.member))?;
    }
    Ok(defrags)
}

pub fn defrag_one_at_a_time_with_auth() -> TestResult {
    let (report, _out) = auth_drill_report(&with_auth("defrag-one-at-a-time")?, 48, DEFAULT_IMAGE)?;
    defrags_of(&report).map(|_| ())
}
