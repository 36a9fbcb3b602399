//! Drills on other images and layouts: the foundation drills on etcd 3.4.23 (built from
//! Debian's packages, restored with `etcdctl`), `server-b-loss` with the members and the
//! restore tools running as uid 1001, one drill on two images reported side by side, and
//! drills with authentication on (the password never in a report; a missing or wrong one
//! is a clear error).

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_drill::clock::Clock;
use etcd_drill::cluster::{Cluster, ClusterImage};
use etcd_drill::docker::image::DEFAULT_IMAGE;
use etcd_drill::docker::runtime::{DockerRuntime, RunGuard};
use etcd_drill::etcd::security::{RootPassword, PASSWORD_ENV};
use etcd_drill::etcd::MemberClient;
use etcd_drill::scenario;
use etcd_drill::ExitClass;
use libtest_mimic::Failed;

pub mod scripted;
pub mod upgrade;

use super::{binary, common_assertions, ensure, run_scenario_as, run_scenario_on, TestResult};

/// The local 3.4 image (`etcd-drill image build --debian-suite bookworm`: 3.4.23 today),
/// by its minor tag so that another 3.4 patch in the archive changes nothing here.
pub const IMAGE_3_4: &str = "etcd-drill/etcd:3.4";
/// The scripted test image (`etcd-drill image build --scripted`): the Bitnami layout and
/// its start-up traps, from our own script.
pub const SCRIPTED_IMAGE: &str = "etcd-drill/etcd-scripted:3.5.1";

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

/// The restore runs as uid 1001, and the procedure hands the restored data dirs to it and
/// checks that it can write them; the members then run as 1001 on them (etcd could not open a root-owned 0700 dir).
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
    for step in [
        "give the restored data dirs to uid 1001",
        "check that uid 1001 can write",
    ] {
        let recorded = report
            .commands
            .iter()
            .find(|c| c.step.contains(step))
            .ok_or_else(|| format!("no step `{step}` recorded"))?;
        ensure(recorded.ok, || format!("`{step}` failed: {}", recorded.command))?;
    }
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

/// The root password the auth drills use; no report file may contain it.
const PASSWORD: &str = "drill-Pw-7f3a9c";

/// A scenario (built in) with `[security] auth = true` added.
pub(crate) fn with_auth(name: &str) -> Result<String, Failed> {
    let (_, text) = scenario::BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("no built-in scenario {name}"))?;
    let text = text.replace(&format!("name = \"{name}\""), &format!("name = \"{name}-auth\""));
    Ok(format!("{text}\n[security]\nauth = true\n"))
}

/// Every file of a report folder, searched byte by byte for the password.
fn assert_password_absent(dir: &Path) -> TestResult {
    let mut searched = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            assert_password_absent(&path)?;
            continue;
        }
        let bytes = std::fs::read(&path)?;
        searched += 1;
        ensure(!bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()), || {
            format!("{} contains the root password", path.display())
        })?;
    }
    ensure(searched > 0, || format!("nothing to search in {}", dir.display()))
}

/// An auth drill passes, reports that auth survived the recovery, shows `--user root:***`
/// in its commands, and never writes the password into its report folder.
fn auth_drill(text: &str, seed: u64, image: &str) -> TestResult {
    auth_drill_report(text, seed, image).map(|_| ())
}

/// [`auth_drill`], giving the report and its folder for further checks.
pub(crate) fn auth_drill_report(
    text: &str,
    seed: u64,
    image: &str,
) -> Result<(etcd_drill::report::DrillReport, tempfile::TempDir), Failed> {
    let password = Some(RootPassword::new(PASSWORD));
    let (report, out) = run_scenario_as(text, seed, image, None, password)?;
    common_assertions(&report, out.path())?;
    let auth = report
        .checks
        .iter()
        .find(|c| c.name == "auth_after_recovery")
        .ok_or("no auth_after_recovery check")?;
    ensure(
        auth.passed && auth.actual.contains("refused") && auth.actual.contains("accepted"),
        || format!("{auth:?}"),
    )?;
    let with_user = report
        .commands
        .iter()
        .filter(|c| c.command.contains("etcdctl --user root:*** --endpoints"))
        .count();
    ensure(with_user > 0, || {
        "no recorded etcdctl command carries --user root:***".into()
    })?;
    assert_password_absent(out.path())?;
    Ok((report, out))
}

pub fn server_b_loss_with_auth() -> TestResult {
    auth_drill(
        scenario::BUILTIN
            .iter()
            .find(|(n, _)| *n == "server-b-loss-auth")
            .ok_or("no server-b-loss-auth")?
            .1,
        51,
        DEFAULT_IMAGE,
    )
}

pub fn foundation_drills_with_auth_on_3_5_1() -> TestResult {
    auth_drill(&with_auth("minority-kill")?, 52, DEFAULT_IMAGE)?;
    auth_drill(&with_auth("quorum-loss-restart")?, 53, DEFAULT_IMAGE)
}

pub fn foundation_drills_with_auth_on_3_4_23() -> TestResult {
    auth_drill(&with_auth("server-b-loss")?, 54, IMAGE_3_4)?;
    auth_drill(&with_auth("minority-kill")?, 55, IMAGE_3_4)?;
    auth_drill(&with_auth("quorum-loss-restart")?, 56, IMAGE_3_4)
}

/// No password for an auth scenario: exit 2 at once, naming the variable and the file
/// option, before any container starts.
pub fn auth_without_a_password_is_bad_input() -> TestResult {
    let started = Instant::now();
    let output = binary()
        .args(["run", "server-b-loss-auth"])
        .env_remove(PASSWORD_ENV)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure(output.status.code() == Some(2), || {
        format!("exit {:?}: {stderr}", output.status)
    })?;
    ensure(
        stderr.contains(PASSWORD_ENV) && stderr.contains("--root-password-file"),
        || format!("the error does not say what to do: {stderr}"),
    )?;
    ensure(started.elapsed() < Duration::from_secs(10), || {
        format!("took {:?}", started.elapsed())
    })
}

/// A wrong password against a cluster with auth on: a clear error of the environment class
/// (exit code 3), within seconds, not a hang.
pub fn a_wrong_password_is_refused_quickly() -> TestResult {
    let run_id = format!("auth{:04x}", super::rand_suffix());
    let result = super::rt().block_on(async {
        let docker = DockerRuntime::connect().await?;
        let _guard = RunGuard::new(&run_id);
        let image = ClusterImage {
            root_password: Some(RootPassword::new(PASSWORD)),
            ..ClusterImage::upstream(DEFAULT_IMAGE)
        };
        let topology = etcd_drill::perf::local_topology(1)?;
        let cluster = Cluster::create(
            etcd_drill::docker::hosts::HostRuntimes::single(docker.clone()),
            &run_id,
            &image,
            &topology,
            &etcd_drill::topology::ServerSettings::default(),
            Clock::start(),
            etcd_drill::cluster::CommandSink::discard(),
        )
        .await?;
        let endpoint = cluster.members[0].client.endpoint.clone();
        let started = Instant::now();
        let wrong = RootPassword::new("not-the-password");
        let refused = MemberClient::connect_as("etcd1", &endpoint, Some(&wrong), None).await;
        let took = started.elapsed();
        docker.remove_run(Some(&run_id)).await?;
        Ok::<_, etcd_drill::Error>((refused.err(), took))
    });
    let (refused, took) = result.map_err(|e| e.to_string())?;
    let err = refused.ok_or("a wrong password was accepted")?;
    ensure(err.exit_class() == ExitClass::Environment, || {
        format!("exit class {:?}: {err}", err.exit_class())
    })?;
    ensure(
        err.to_string().contains("refused the password") && err.to_string().contains("ETCD_DRILL_ROOT_PASSWORD"),
        || err.to_string(),
    )?;
    ensure(took < Duration::from_secs(5), || format!("took {took:?}"))?;
    super::assert_no_objects(Some(&run_id))
}

/// `server-b-loss-secure`: auth and TLS on together. The drill passes over TLS, its
/// commands show the flags a runbook needs, and no report file holds the password or a
/// private key.
pub fn server_b_loss_with_auth_and_tls() -> TestResult {
    let text = scenario::BUILTIN
        .iter()
        .find(|(n, _)| *n == "server-b-loss-secure")
        .ok_or("no server-b-loss-secure")?
        .1;
    let password = Some(RootPassword::new(PASSWORD));
    let (report, out) = run_scenario_as(text, 57, DEFAULT_IMAGE, None, password)?;
    common_assertions(&report, out.path())?;
    ensure(
        report
            .checks
            .iter()
            .any(|c| c.name == "auth_after_recovery" && c.passed),
        || format!("{:?}", report.checks),
    )?;
    let secure = report
        .commands
        .iter()
        .filter(|c| {
            c.command.contains(
                "etcdctl --cacert=ca.crt --cert=client.crt --key=client.key --user root:*** --endpoints=https://",
            )
        })
        .count();
    ensure(secure >= 2, || {
        format!("{secure} etcdctl commands carry the TLS and user flags")
    })?;
    let started = report
        .commands
        .iter()
        .filter(|c| c.step.starts_with("start etcd") && c.command.contains("ETCD_CLIENT_CERT_AUTH=true"))
        .count();
    ensure(started >= 10, || {
        format!("{started} member starts with client certificates required")
    })?;
    let runbook = std::fs::read_to_string(out.path().join("runbook.sh"))?;
    ensure(
        runbook.contains("# --initial-cluster etcd1=https://etcd1:2380,"),
        || "the runbook does not show the https peer URLs".into(),
    )?;
    assert_password_absent(out.path())?;
    for entry in std::fs::read_dir(out.path())? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        ensure(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), || {
            format!("{} holds a private key", path.display())
        })?;
    }
    Ok(())
}

/// The Bitnami layout forced onto the local image: its tools are not where the flavor says,
/// which is a clear environment error (exit 3) before any cluster starts.
pub fn a_wrong_flavor_is_an_environment_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let output = binary()
        .args(["run", "minority-kill", "--flavor", "bitnami", "--out"])
        .arg(dir.path().join("out"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure(output.status.code() == Some(3), || {
        format!("exit {:?}: {stderr}", output.status)
    })?;
    ensure(
        stderr.contains("/opt/bitnami/etcd/bin/etcdutl") && stderr.contains("--flavor"),
        || format!("the error does not explain: {stderr}"),
    )
}
