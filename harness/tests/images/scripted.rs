//! Drills on the scripted test image (`etcd-drill image build --scripted`): the Bitnami
//! layout with a root-owned data dir in the image, a first member that turns auth on with
//! a temporary etcd, and a restart path that serves from a temporary etcd before etcd
//! starts for good. The drills must pass, and the waits must outlast the temporary etcds:
//! no write sent after the recovery finished fails.

use etcd_drill::drill::event::Outcome;
use etcd_drill::report::DrillReport;
use libtest_mimic::Failed;

use super::super::{common_assertions, ensure, run_scenario_on, TestResult};
use super::SCRIPTED_IMAGE;

/// The steps of `report` whose name starts with `step`.
fn steps<'a>(report: &'a DrillReport, step: &str) -> Vec<&'a etcd_drill::cluster::RecordedCommand> {
    report.commands.iter().filter(|c| c.step.starts_with(step)).collect()
}

/// A recorded step that worked.
fn step_ok(report: &DrillReport, step: &str) -> TestResult {
    let found = steps(report, step);
    ensure(!found.is_empty(), || format!("no step `{step}` recorded"))?;
    ensure(found.iter().all(|c| c.ok), || format!("`{step}` failed: {found:?}"))
}

/// No write sent once the recovery had finished failed: the procedure's waits outlasted
/// every temporary etcd of the start-up scripts.
fn no_write_failed_after_recovery(report: &DrillReport, out: &std::path::Path) -> TestResult {
    let finished = report.recovery.finished_at_ms.ok_or("the recovery has no end")?;
    let ledger = std::fs::read_to_string(out.join("ledger.jsonl"))?;
    let mut failed_after = Vec::new();
    for line in ledger.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        let sent = entry["sent_ms"].as_u64().unwrap_or(0);
        if entry["outcome"] != "acked" && sent >= finished {
            failed_after.push(line.to_string());
        }
    }
    ensure(failed_after.is_empty(), || {
        format!(
            "{} writes sent after the recovery finished ({finished} ms) failed, first: {}",
            failed_after.len(),
            failed_after[0]
        )
    })
}

/// The waits for the start-up scripts ran, worked, and took the time the scripts take
/// (the restart path probes for about 2 s before its temporary etcd starts).
fn waited_for_the_scripts(report: &DrillReport) -> TestResult {
    let step = "wait until the members' start-up scripts have finished";
    step_ok(report, step)?;
    let longest = steps(report, step).iter().map(|c| c.duration_ms).max().unwrap_or(0);
    ensure(longest >= 2_000, || {
        format!("the wait for the start-up scripts took only {longest} ms")
    })
}

fn scripted_drill(name: &str, seed: u64) -> Result<(DrillReport, tempfile::TempDir), Failed> {
    let (report, out) = run_scenario_on(name, seed, SCRIPTED_IMAGE, None)?;
    common_assertions(&report, out.path())?;
    // Detected as the Bitnami layout: its members run as uid 1001 through the image's script.
    let as_1001 = report
        .commands
        .iter()
        .any(|c| c.command.contains("docker create") && c.command.contains("--user 1001"));
    ensure(as_1001, || {
        "the scripted image was not run in the Bitnami layout".into()
    })?;
    no_write_failed_after_recovery(&report, out.path())?;
    Ok((report, out))
}

/// The default drill: the restored data dirs (root-owned in the image) are handed to uid
/// 1001, and the restored members' temporary etcds are waited out.
pub fn server_b_loss_on_the_scripted_image() -> TestResult {
    let (report, _out) = scripted_drill("server-b-loss", 81)?;
    step_ok(&report, "give the restored data dirs to uid 1001")?;
    step_ok(&report, "check that uid 1001 can write the restored data dirs")?;
    waited_for_the_scripts(&report)
}

/// The image turns auth on itself with a temporary etcd on etcd1; the harness waits for
/// it instead of racing it, and finds auth on.
pub fn server_b_loss_auth_on_the_scripted_image() -> TestResult {
    let text = etcd_drill::scenario::BUILTIN
        .iter()
        .find(|(n, _)| *n == "server-b-loss-auth")
        .ok_or("no server-b-loss-auth")?
        .1;
    let (report, out) = super::auth_drill_report(text, 82, SCRIPTED_IMAGE)?;
    step_ok(&report, "check that the image turned authentication on (on)")?;
    ensure(steps(&report, "turn on authentication").is_empty(), || {
        "the harness turned auth on although the image did".into()
    })?;
    no_write_failed_after_recovery(&report, out.path())
}

pub fn member_data_loss_on_the_scripted_image() -> TestResult {
    scripted_drill("member-data-loss", 83).map(|_| ())
}

pub fn minority_kill_on_the_scripted_image() -> TestResult {
    let (report, _out) = scripted_drill("minority-kill", 84)?;
    waited_for_the_scripts(&report)
}

pub fn restore_beside_on_the_scripted_image() -> TestResult {
    let (report, _out) = scripted_drill("restore-beside", 85)?;
    waited_for_the_scripts(&report)
}

/// The image's own restore: no restore tool runs, every member gets the snapshot and
/// restores it at start-up.
pub fn restore_by_image_on_the_scripted_image() -> TestResult {
    let (report, _out) = scripted_drill("restore-by-image", 86)?;
    let tool_restores = steps(&report, "restore etcd");
    ensure(tool_restores.is_empty(), || {
        format!("the harness restored data dirs itself: {tool_restores:?}")
    })?;
    let starts = report
        .commands
        .iter()
        .filter(|c| {
            c.phase == "recovery"
                && c.command.starts_with("docker create")
                && c.command.contains("-e ETCD_START_FROM_SNAPSHOT=yes")
                && c.command.contains("&& docker cp snapshot.db ")
                && c.command.ends_with(&format!(
                    "docker start {}",
                    c.command.split_whitespace().nth(3).unwrap_or_default()
                ))
        })
        .count();
    ensure(starts == 5, || {
        format!("{starts} of 5 members were created with ETCD_START_FROM_SNAPSHOT=yes, given the snapshot (docker cp) and started")
    })
}

/// On an image whose start-up cannot restore (upstream), `restore-by-image` is skipped
/// with the reason, before any cluster starts.
pub fn restore_by_image_is_skipped_on_upstream() -> TestResult {
    let (report, _out) = run_scenario_on("restore-by-image", 87, etcd_drill::docker::image::DEFAULT_IMAGE, None)?;
    ensure(report.outcome == Outcome::Skipped, || {
        format!("outcome {:?}", report.outcome)
    })?;
    let reason = report.skip_reason.clone().unwrap_or_default();
    ensure(reason.contains("restore_by") && reason.contains("upstream"), || reason)
}
