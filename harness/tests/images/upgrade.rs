//! Rolling upgrades for real: a 3.4 cluster moved member by member to the default image
//! under writes (the leader last, the cluster version moving to 3.5 only at the end), a
//! partial upgrade rolled back to 3.4, and an upgrade to an older image refused before
//! any cluster starts; and `etcd-drill release` failing a candidate that cannot do a
//! drill the baseline passes.

use etcd_drill::drill::event::Outcome;
use etcd_drill::procedure::UpgradeFigures;
use etcd_drill::report::DrillReport;
use libtest_mimic::Failed;

use super::IMAGE_3_4;
use crate::{binary, common_assertions, ensure, run_scenario, run_scenario_on, TestResult};

fn upgrade_figures(report: &DrillReport) -> Result<&UpgradeFigures, Failed> {
    report
        .recovery
        .outcome
        .as_ref()
        .and_then(|o| o.upgrade.as_ref())
        .ok_or_else(|| Failed::from("the report has no rolling-upgrade figures"))
}

fn minor(version: Option<&str>) -> String {
    version
        .unwrap_or_default()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// Every member moves once, followers first: only the last move may find its member
/// leading. The cluster version is 3.4 before and while any member still runs 3.4, and
/// 3.5 once all run 3.5. Nothing acknowledged is lost.
pub fn rolling_upgrade_from_3_4() -> TestResult {
    let (report, out) = run_scenario("upgrade-from-3-4", 91)?;
    common_assertions(&report, out.path())?;
    let u = upgrade_figures(&report)?;
    ensure(
        u.from_version.starts_with("3.4.") && u.to_version.starts_with("3.5."),
        || format!("from {} to {}", u.from_version, u.to_version),
    )?;
    ensure(u.learners_before.as_ref().is_some_and(|l| l.is_empty()), || {
        format!("pre-upgrade learners {:?}", u.learners_before)
    })?;
    // Neither 3.4 nor 3.5 reports a storage version (etcd 3.6 does).
    ensure(
        u.storage_version_before.is_none() && u.storage_version_after.is_none(),
        || {
            format!(
                "storage versions {:?} {:?}",
                u.storage_version_before, u.storage_version_after
            )
        },
    )?;
    // The default image (3.5.30) has `etcdutl check v2store`; a 3.4 data dir holds only
    // membership in its v2 store.
    ensure(
        u.v2store_check
            .as_ref()
            .is_some_and(|c| c.available && c.passed && c.member == u.steps[0].member),
        || format!("v2store check {:?}", u.v2store_check),
    )?;
    let mut members: Vec<&str> = u.steps.iter().map(|s| s.member.as_str()).collect();
    members.sort();
    ensure(members == ["etcd1", "etcd2", "etcd3", "etcd4", "etcd5"], || {
        format!("moved {members:?}")
    })?;
    ensure(
        u.steps
            .iter()
            .all(|s| s.action == "upgrade" && s.server_version.as_deref().is_some_and(|v| v.starts_with("3.5."))),
        || format!("steps {:?}", u.steps),
    )?;
    let early_leaders: Vec<&str> = u.steps[..4]
        .iter()
        .filter(|s| s.was_leader)
        .map(|s| s.member.as_str())
        .collect();
    ensure(early_leaders.is_empty(), || {
        format!("leaders moved before the last step: {early_leaders:?}")
    })?;
    let during: Vec<String> = u.steps[..4]
        .iter()
        .map(|s| minor(s.cluster_version.as_deref()))
        .collect();
    ensure(during.iter().all(|v| v == "3.4"), || {
        format!("cluster version while 3.4 members remained: {during:?}")
    })?;
    ensure(
        minor(u.cluster_version_before.as_deref()) == "3.4" && minor(u.cluster_version_after.as_deref()) == "3.5",
        || {
            format!(
                "cluster version before {:?}, after {:?}",
                u.cluster_version_before, u.cluster_version_after
            )
        },
    )?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} lost", report.data.lost_acked_writes)
    })
}

/// Two members upgraded, then rolled back in reverse order onto 3.4 with the data they
/// wrote on 3.5: 3.4 takes it back because the cluster version never left 3.4.
pub fn rolling_upgrade_rolled_back_to_3_4() -> TestResult {
    let (report, out) = run_scenario("upgrade-rollback-partial", 92)?;
    common_assertions(&report, out.path())?;
    let u = upgrade_figures(&report)?;
    let moves: Vec<(&str, &str)> = u.steps.iter().map(|s| (s.member.as_str(), s.action.as_str())).collect();
    ensure(
        moves.len() == 4
            && moves[0].1 == "upgrade"
            && moves[1].1 == "upgrade"
            && moves[2] == (moves[1].0, "rollback")
            && moves[3] == (moves[0].0, "rollback"),
        || format!("moves {moves:?}"),
    )?;
    ensure(
        u.steps[2..]
            .iter()
            .all(|s| s.image == IMAGE_3_4 && s.server_version.as_deref().is_some_and(|v| v.starts_with("3.4."))),
        || format!("rollback steps {:?}", &u.steps[2..]),
    )?;
    ensure(minor(u.cluster_version_after.as_deref()) == "3.4", || {
        format!("cluster version after the rollback {:?}", u.cluster_version_after)
    })?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} lost", report.data.lost_acked_writes)
    })
}

/// A complete upgrade from 3.4 taken back: 3.4 refuses an upgraded member's data (the
/// cluster version moved to 3.5), and the restore of the pre-upgrade snapshot brings the
/// cluster back on 3.4, losing writes acknowledged after the snapshot and no others.
pub fn rolling_upgrade_rolled_back_by_restore() -> TestResult {
    let (report, out) = run_scenario("upgrade-rollback-complete", 94)?;
    common_assertions(&report, out.path())?;
    let u = upgrade_figures(&report)?;
    ensure(
        u.steps.len() == 5 && u.steps.iter().all(|s| s.action == "upgrade"),
        || format!("steps {:?}", u.steps),
    )?;
    let attempt = u
        .old_image_on_upgraded_data
        .as_ref()
        .ok_or("no record of the old image on the upgraded data")?;
    ensure(
        !attempt.served
            && attempt.exit_code.is_some_and(|c| c != 0)
            && attempt.last_log_lines.contains("cannot be downgraded"),
        || format!("3.4 on the upgraded data: {attempt:?}"),
    )?;
    ensure(minor(attempt.cluster_version.as_deref()) == "3.5", || {
        format!(
            "cluster version after the complete upgrade {:?}",
            attempt.cluster_version
        )
    })?;
    ensure(minor(u.cluster_version_after.as_deref()) == "3.4", || {
        format!("cluster version after the restore {:?}", u.cluster_version_after)
    })?;
    let snapshot = report
        .recovery
        .outcome
        .as_ref()
        .and_then(|o| o.snapshot.as_ref())
        .ok_or("no snapshot in the outcome")?;
    ensure(snapshot.source == "pre-upgrade", || format!("snapshot {snapshot:?}"))?;
    // Writes acknowledged after the save began may be lost; earlier ones may not.
    let save_began = report
        .commands
        .iter()
        .find(|c| c.step.contains("before the upgrade"))
        .map(|c| c.at_ms)
        .ok_or("no recorded pre-upgrade snapshot save")?;
    let ledger = std::fs::read_to_string(out.path().join("ledger.jsonl"))?;
    let acked_after = ledger
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|w| w["outcome"] == "acked" && w["acked_ms"].as_u64().is_some_and(|t| t >= save_began))
        .count() as u64;
    let lost = report.data.lost_acked_writes;
    ensure(lost > 0 && lost <= acked_after, || {
        format!("{lost} lost; {acked_after} writes were acknowledged after the snapshot save began")
    })
}

/// An "upgrade" onto an older etcd is refused with the reason, before any cluster starts.
pub fn rolling_upgrade_to_an_older_image_is_skipped() -> TestResult {
    let (report, _out) = run_scenario_on("upgrade-from-3-5-1", 93, IMAGE_3_4, None)?;
    ensure(report.outcome == Outcome::Skipped, || {
        format!("outcome {:?}", report.outcome)
    })?;
    let reason = report.skip_reason.clone().unwrap_or_default();
    ensure(
        reason.contains("older than from_image") && reason.contains("3.4.23"),
        || reason.clone(),
    )?;
    ensure(report.commands.is_empty(), || {
        format!("commands ran: {:?}", report.commands)
    })
}

/// `release` with 3.5.1 as the candidate against the default image as the baseline: 3.5.1
/// cannot run `bump-revision-restore` (its etcdutl lacks the flags), which the baseline
/// passes, so the release fails with exit code 1 and says why in release.md and
/// release.json. The baseline's own invalid input (the same image twice) is exit code 2.
pub fn release_fails_a_candidate_that_skips_a_drill_the_baseline_passes() -> TestResult {
    let same = binary()
        .args([
            "release",
            "--baseline",
            super::IMAGE_3_4,
            "--candidate",
            super::IMAGE_3_4,
            "--no-perf",
            "minority-kill",
        ])
        .output()?;
    ensure(same.status.code() == Some(2), || {
        format!("the same image twice gave {:?}", same.status)
    })?;
    let dir = tempfile::tempdir()?;
    let out = binary()
        .args([
            "release",
            "--baseline",
            etcd_drill::docker::image::DEFAULT_IMAGE,
            "--candidate",
        ])
        .arg(etcd_drill::docker::image::IMAGE_3_5_1)
        .args(["--no-perf", "--seed", "94", "bump-revision-restore", "--out"])
        .arg(dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(out.status.code() == Some(1), || {
        format!("release gave {:?}: {stdout}", out.status)
    })?;
    let md = std::fs::read_to_string(dir.path().join("release.md"))?;
    ensure(md.contains("FAIL") && md.contains("bump-revision-restore"), || {
        md.clone()
    })?;
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("release.json"))?)?;
    ensure(
        json["pass"] == false
            && json["drill_regressions"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["scenario"] == "bump-revision-restore")),
        || json.to_string(),
    )
}
