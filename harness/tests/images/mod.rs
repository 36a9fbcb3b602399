//! Drills on other images and layouts: the foundation drills on etcd 3.4.23 (built from
//! Debian's packages, restored with `etcdctl`), `server-b-loss` with the members and the
//! restore tools running as uid 1001, and one drill on two images reported side by side.

use etcd_drill::image::DEFAULT_IMAGE;

use super::{binary, common_assertions, ensure, run_scenario_on, TestResult};

/// The local 3.4 image (`etcd-drill image build --debian 3.4.23`).
pub const IMAGE_3_4: &str = "etcd-drill/etcd:3.4.23";

pub fn minority_kill_on_3_4_23() -> TestResult {
    let (report, out) = run_scenario_on("minority-kill", 41, IMAGE_3_4, None)?;
    common_assertions(&report, out.path())?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })
}

pub fn quorum_loss_restart_on_3_4_23() -> TestResult {
    let (report, out) = run_scenario_on("quorum-loss-restart", 42, IMAGE_3_4, None)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(true), || {
        "quorum was not lost".into()
    })
}

/// The restore runs as uid 1001 and the procedure checks that the restored data dirs belong
/// to it; the members then run as 1001 on them (etcd could not open a root-owned 0700 dir).
pub fn server_b_loss_as_uid_1001() -> TestResult {
    let (report, out) = run_scenario_on("server-b-loss", 43, DEFAULT_IMAGE, Some("1001"))?;
    common_assertions(&report, out.path())?;
    let recovery: Vec<&str> = report
        .commands
        .iter()
        .filter(|c| c.phase == "recovery")
        .map(|c| c.command.as_str())
        .collect();
    let restores = recovery.iter().filter(|c| c.contains("snapshot restore")).count();
    let as_1001 = recovery
        .iter()
        .filter(|c| c.contains("snapshot restore") && c.contains("--user 1001"))
        .count();
    ensure(restores == 5 && as_1001 == 5, || {
        format!("{as_1001} of {restores} restores ran as uid 1001")
    })?;
    let owner_check = report
        .commands
        .iter()
        .find(|c| c.step.contains("belong to uid 1001"))
        .ok_or("no ownership check recorded")?;
    ensure(owner_check.ok, || {
        format!("ownership check failed: {}", owner_check.command)
    })?;
    let starts = recovery
        .iter()
        .filter(|c| c.contains("docker create") && c.contains("--user 1001"))
        .count();
    ensure(starts == 5, || format!("{starts} of 5 members started as uid 1001"))
}

/// `run server-b-loss --image 3.5.1 --image 3.4.23`: both pass, each restored with its own
/// image's tool, and the suite report puts them side by side.
pub fn run_on_two_images_side_by_side() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let output = binary()
        .args([
            "run",
            "server-b-loss",
            "--seed",
            "44",
            "--image",
            DEFAULT_IMAGE,
            "--image",
            IMAGE_3_4,
            "--out",
        ])
        .arg(&out)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    ensure(output.status.code() == Some(0), || {
        format!(
            "exit {:?}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let suite: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("suite.json"))?)?;
    let runs = suite["runs"].as_array().ok_or("suite.json has no runs")?;
    let images: Vec<&str> = runs.iter().filter_map(|r| r["image"].as_str()).collect();
    ensure(images == [DEFAULT_IMAGE, IMAGE_3_4], || format!("images {images:?}"))?;
    ensure(runs.iter().all(|r| r["outcome"] == "pass"), || format!("{runs:?}"))?;
    for (image, tool) in [(DEFAULT_IMAGE, "etcdutl"), (IMAGE_3_4, "etcdctl")] {
        let folder = out.join("server-b-loss").join(image.replace(['/', ':'], "-"));
        let runbook = std::fs::read_to_string(folder.join("runbook.sh"))?;
        ensure(runbook.contains(&format!("{tool} snapshot restore")), || {
            format!("{image}: the runbook does not restore with {tool}")
        })?;
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(folder.join("report.json"))?)?;
        ensure(report["image"] == image && report["outcome"] == "pass", || {
            format!("{image}: {}", report["outcome"])
        })?;
    }
    let table = std::fs::read_to_string(out.join("report.md"))?;
    ensure(
        table.contains("| image |") && table.contains(&format!("`{IMAGE_3_4}`")),
        || format!("report.md has no image column: {table}"),
    )?;
    Ok(())
}
