//! The harness under faults of its own: drills interrupted at random moments by random
//! signals (SIGKILL among them) and reaped with nobody typing `clean`; two drills and a
//! perf run at once on one daemon, with `clean` run in the middle; the Docker daemon
//! restarted in the middle of a drill (a daemon of a lab namespace, `scripts/lab`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::{binary, ensure, leftovers, run_id_from, write_short_scenario, TestResult};

/// How long a run's objects may outlive its harness: the watchdog retries every 2 s.
const REAP_BOUND: Duration = Duration::from_secs(60);

/// The lines a child prints on stdout, read on a thread so a wait can time out.
fn stdout_lines(child: &mut Child) -> Result<Receiver<String>, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Waits for a line containing `marker`; None when the output ended or `limit` passed.
fn wait_for_line(lines: &Receiver<String>, marker: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return Some(line),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn send_signal(pid: u32, signal: &str) -> TestResult {
    let status = Command::new("kill").args(["-s", signal, &pid.to_string()]).status()?;
    ensure(status.success(), || format!("kill -s {signal} {pid} failed"))
}

/// Whether a watchdog process for `run_id` still runs.
fn watchdog_running(run_id: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("watchdog --run {run_id}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits until no object of `run_id` is left and its watchdog has exited; the time that
/// took, or an error naming what is left.
fn wait_until_reaped(run_id: &str, bound: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let left = leftovers(Some(run_id)).map_err(|e| format!("{e:?}"))?;
        let watchdog = watchdog_running(run_id);
        if left.is_empty() && !watchdog {
            return Ok(start.elapsed());
        }
        if start.elapsed() > bound {
            return Err(format!(
                "run {run_id}: after {} s, {} left{}",
                bound.as_secs(),
                left.summary(),
                if watchdog { " and its watchdog still runs" } else { "" }
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[derive(Debug, Clone, Copy)]
enum Moment {
    /// A random time after the start.
    AfterStart(u64),
    /// A random time after the recovery procedure began.
    DuringRecovery(u64),
    /// A random time after the harness began removing its objects.
    DuringCleanup(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Blow {
    Int,
    Term,
    Kill,
    /// SIGTERM, then SIGKILL while the harness is removing its objects after it.
    TermThenKill(u64),
}

impl Blow {
    fn describe(self) -> String {
        match self {
            Blow::Int => "SIGINT".into(),
            Blow::Term => "SIGTERM".into(),
            Blow::Kill => "SIGKILL".into(),
            Blow::TermThenKill(ms) => format!("SIGTERM, SIGKILL {ms} ms later"),
        }
    }
}

struct Interrupted {
    scenario: String,
    moment: Moment,
    blow: Blow,
    exit: Option<i32>,
    outcome: String,
    phase: String,
    recorded_by: String,
    reaped_ms: u128,
}

/// N drills (`ETCD_DRILL_TORTURE_RUNS`, default 3) interrupted at random moments (after
/// the start, during the recovery procedure, during the harness's own cleanup) by random
/// signals (SIGINT, SIGTERM, SIGKILL, SIGTERM then SIGKILL); after each, every object of the
/// run must be gone within a bounded time with no `clean` typed, and its report must say
/// `interrupted` unless the run had finished first. Seeded (`ETCD_DRILL_TORTURE_SEED`); the
/// seed is printed and replays the same moments and signals.
pub fn interruption_torture() -> TestResult {
    let runs: usize = std::env::var("ETCD_DRILL_TORTURE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("ETCD_DRILL_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("interruption torture: {runs} runs, seed {seed} (replay with ETCD_DRILL_TORTURE_SEED={seed})");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir()?;
    let short = write_short_scenario(dir.path())?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for i in 0..runs {
        let (scenario, name): (PathBuf, &str) = match rng.random_range(0..3) {
            0 => (PathBuf::from("server-b-loss"), "server-b-loss"),
            _ => (short.clone(), "short (kill + restart)"),
        };
        let moment = match rng.random_range(0..3) {
            0 => Moment::AfterStart(rng.random_range(300..9_000)),
            1 => Moment::DuringRecovery(rng.random_range(0..2_500)),
            _ => Moment::DuringCleanup(rng.random_range(0..400)),
        };
        let blow = match rng.random_range(0..4) {
            0 => Blow::Int,
            1 => Blow::Term,
            2 => Blow::Kill,
            _ => Blow::TermThenKill(rng.random_range(50..600)),
        };
        let out = dir.path().join(format!("run{i}"));
        match interrupt_once(&scenario, &out, moment, blow) {
            Ok((run_id, mut row)) => {
                row.scenario = name.into();
                println!(
                    "  [{}/{runs}] run {run_id} {name}: {} at {moment:?}; exit {:?}, report {} (phase {}, by {}), reaped in {} ms",
                    i + 1,
                    blow.describe(),
                    row.exit,
                    row.outcome,
                    row.phase,
                    row.recorded_by,
                    row.reaped_ms
                );
                results.push(row);
            }
            Err(e) => {
                println!(
                    "  [{}/{runs}] {name}: {} at {moment:?}: FAILED: {e}",
                    i + 1,
                    blow.describe()
                );
                failures.push(format!(
                    "interruption {} ({name}, {}, {moment:?}): {e}",
                    i + 1,
                    blow.describe()
                ));
            }
        }
    }
    write_torture_table(seed, &results);
    ensure(failures.is_empty(), || {
        format!(
            "seed {seed}: {} of {runs} interruptions failed:\n{}",
            failures.len(),
            failures.join("\n")
        )
    })
}

fn interrupt_once(scenario: &Path, out: &Path, moment: Moment, blow: Blow) -> Result<(String, Interrupted), String> {
    let mut child = binary()
        .args(["run", scenario.to_str().unwrap_or_default(), "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let lines = stdout_lines(&mut child)?;
    let first = lines.recv_timeout(Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let run_id = run_id_from(&first).ok_or_else(|| format!("no run id in {first:?}"))?;
    let (marker, extra) = match moment {
        Moment::AfterStart(ms) => (None, ms),
        Moment::DuringRecovery(ms) => (Some("recovery: "), ms),
        Moment::DuringCleanup(ms) => (Some("cleanup: "), ms),
    };
    if let Some(marker) = marker {
        wait_for_line(&lines, marker, Duration::from_secs(180))
            .ok_or_else(|| format!("run {run_id}: no `{marker}` line within 180 s"))?;
    }
    std::thread::sleep(Duration::from_millis(extra));
    let pid = child.id();
    match blow {
        Blow::Int => send_signal(pid, "INT"),
        Blow::Term => send_signal(pid, "TERM"),
        Blow::Kill => send_signal(pid, "KILL"),
        Blow::TermThenKill(ms) => send_signal(pid, "TERM").and_then(|()| {
            std::thread::sleep(Duration::from_millis(ms));
            send_signal(pid, "KILL")
        }),
    }
    .map_err(|e| format!("{e:?}"))?;
    let exit = child.wait().map_err(|e| e.to_string())?.code();
    let reaped = wait_until_reaped(&run_id, REAP_BOUND)?;
    let report: Option<serde_json::Value> = std::fs::read_to_string(out.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("-").to_string();
    let outcome = report
        .as_ref()
        .map(|r| field(r, "outcome"))
        .unwrap_or_else(|| "none".into());
    let interruption = report.as_ref().map(|r| r["interruption"].clone()).unwrap_or_default();
    // A SIGINT or SIGTERM that came after the run had ended finds nothing to interrupt.
    let finished_first = matches!(outcome.as_str(), "pass" | "fail") && matches!(exit, Some(0 | 1));
    if !finished_first {
        match blow {
            Blow::Int | Blow::Term => ensure(exit == Some(4), || {
                format!("exit {exit:?} after {}, want 4", blow.describe())
            }),
            _ => ensure(exit.is_none(), || format!("exit {exit:?} after SIGKILL")),
        }
        .map_err(|e| format!("run {run_id}: {e:?}"))?;
        // Before the run's first event there is no report to write.
        if report.is_some() {
            ensure(outcome == "interrupted", || format!("report.json says {outcome}"))
                .map_err(|e| format!("run {run_id}: {e:?}"))?;
            ensure(interruption["cleanup_ok"] == serde_json::Value::Bool(true), || {
                format!("the report says the cleanup did not finish: {interruption}")
            })
            .map_err(|e| format!("run {run_id}: {e:?}"))?;
        }
    }
    Ok((
        run_id,
        Interrupted {
            scenario: String::new(),
            moment,
            blow,
            exit,
            outcome,
            phase: field(&interruption, "phase"),
            recorded_by: field(&interruption, "recorded_by"),
            reaped_ms: reaped.as_millis(),
        },
    ))
}

/// The figures as a Markdown table under the test target's folder (for the docs).
fn write_torture_table(seed: u64, rows: &[Interrupted]) {
    let mut s = format!(
        "seed {seed}, {} interruptions\n\n| # | scenario | moment | signal | exit | report | phase | recorded by | reaped after |\n|---|---|---|---|---|---|---|---|---|\n",
        rows.len()
    );
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!(
            "| {} | {} | {:?} | {} | {} | {} | {} | {} | {} ms |\n",
            i + 1,
            r.scenario,
            r.moment,
            r.blow.describe(),
            r.exit.map(|c| c.to_string()).unwrap_or_else(|| "killed".into()),
            r.outcome,
            r.phase,
            r.recorded_by,
            r.reaped_ms
        ));
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interruption-torture.md");
    let _ = std::fs::write(&path, s);
    println!("  figures: {}", path.display());
}

/// Two drills and a perf run at once on one daemon: distinct names, subnets, ports and
/// report folders, all pass; a plain `clean` in the middle removes nothing of theirs and
/// says it left them; `clean --dry-run --all` would have.
pub fn concurrent_runs_stay_apart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let short = write_short_scenario(dir.path())?;
    let spawn_drill = |name: &str| {
        binary()
            .args(["run", short.to_str().unwrap_or_default(), "--out"])
            .arg(dir.path().join(name))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let mut first = spawn_drill("first")?;
    let mut second = spawn_drill("second")?;
    let perf = binary()
        .args([
            "perf",
            "--members",
            "1",
            "--duration",
            "15s",
            "--rate",
            "100",
            "-o",
            "json",
            "--out",
        ])
        .arg(dir.path().join("perf"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let first_lines = stdout_lines(&mut first)?;
    let second_lines = stdout_lines(&mut second)?;
    let ids: Vec<String> = [&first_lines, &second_lines]
        .iter()
        .map(|l| {
            l.recv_timeout(Duration::from_secs(60))
                .ok()
                .and_then(|line| run_id_from(&line))
                .ok_or("a drill printed no run id")
        })
        .collect::<Result<_, _>>()?;
    ensure(ids[0] != ids[1], || "two runs with one id".into())?;
    for lines in [&first_lines, &second_lines] {
        ensure(
            wait_for_line(lines, "workload-started", Duration::from_secs(120)).is_some(),
            || "a drill never started its workload".into(),
        )?;
    }
    let clean = binary().args(["clean", "-o", "json"]).output()?;
    ensure(clean.status.success(), || {
        format!("clean failed: {}", String::from_utf8_lossy(&clean.stderr))
    })?;
    let cleaned: serde_json::Value = serde_json::from_slice(&clean.stdout)?;
    let removed_ids: Vec<&str> = cleaned["runs"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["run_id"].as_str()).collect())
        .unwrap_or_default();
    let left: Vec<&serde_json::Value> = cleaned["left"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for id in &ids {
        ensure(!removed_ids.contains(&id.as_str()), || {
            format!("plain clean removed live run {id}: {cleaned}")
        })?;
        ensure(
            left.iter().any(|r| r["run_id"] == id.as_str() && r["state"] == "live"),
            || format!("clean does not say it left live run {id}: {cleaned}"),
        )?;
    }
    let all = binary().args(["clean", "--all", "--dry-run", "-o", "json"]).output()?;
    let all: serde_json::Value = serde_json::from_slice(&all.stdout)?;
    ensure(
        ids.iter().all(|id| {
            all["runs"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r["run_id"] == id.as_str()))
        }),
        || format!("clean --all --dry-run would not remove the live runs: {all}"),
    )?;
    let drain = |rx: Receiver<String>| rx.iter().collect::<Vec<_>>().join("\n");
    let (first_exit, second_exit) = (first.wait()?, second.wait()?);
    let (first_out, second_out) = (drain(first_lines), drain(second_lines));
    let perf_out = perf.wait_with_output()?;
    ensure(first_exit.success() && second_exit.success(), || {
        format!("a drill failed beside the others: {first_exit:?} {first_out}\n---\n{second_exit:?} {second_out}")
    })?;
    ensure(perf_out.status.success(), || {
        format!(
            "perf failed beside two drills: {:?} {} {}",
            perf_out.status,
            String::from_utf8_lossy(&perf_out.stdout),
            String::from_utf8_lossy(&perf_out.stderr)
        )
    })?;
    for (name, id) in [("first", &ids[0]), ("second", &ids[1])] {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(name).join("report.json"))?)?;
        ensure(report["outcome"] == "pass" && report["run_id"] == id.as_str(), || {
            format!("{name}: {}", report["outcome"])
        })?;
        super::assert_no_objects(Some(id))?;
    }
    Ok(())
}

/// The Docker daemon restarted in the middle of a drill (the lab's own daemon, so the
/// machine's is untouched): the drill ends with the environment exit code (3) and a message
/// naming the daemon; once the daemon is back, the run's watchdog removes every object of
/// the run, with no `clean` typed. The lab is removed afterwards.
pub fn daemon_restart_mid_drill() -> TestResult {
    let lab = super::lab::Lab::up("drdaemon", &[etcd_drill::docker::image::DEFAULT_IMAGE])?;
    let dir = tempfile::tempdir()?;
    let short = write_short_scenario(dir.path())?;
    let out = dir.path().join("out");
    let mut child = lab
        .etcd_drill()
        .args(["run", short.to_str().unwrap_or_default(), "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let lines = stdout_lines(&mut child)?;
    ensure(
        wait_for_line(&lines, "workload-started", Duration::from_secs(120)).is_some(),
        || "the drill in the lab never started its workload".into(),
    )?;
    let restarted_at = Instant::now();
    lab.restart_daemon()?;
    let restart_ms = restarted_at.elapsed().as_millis();
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = lines.iter().collect::<Vec<_>>().join("\n");
    ensure(output.status.code() == Some(3), || {
        format!(
            "exit {:?} after the daemon restarted, want 3 (environment)\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        )
    })?;
    ensure(
        stdout.contains("Docker daemon") || stderr.contains("Docker daemon"),
        || format!("no message names the daemon\nstdout: {stdout}\nstderr: {stderr}"),
    )?;
    let start = Instant::now();
    loop {
        let left = lab.labelled()?;
        if left.is_empty() {
            break;
        }
        ensure(start.elapsed() < REAP_BOUND, || {
            format!("objects left on the lab daemon: {left:?}")
        })?;
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "  daemon restart took {restart_ms} ms; objects gone {} ms after the drill ended; the drill said: {}",
        start.elapsed().as_millis(),
        stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| l.contains("Docker daemon"))
            .unwrap_or_default()
    );
    drop(lab);
    ensure(!Path::new("/var/run/netns/drdaemon").exists(), || {
        "the lab namespace is still there".into()
    })
}

/// The data check's read of a long run: 4,500 keys with 1 KiB values (4.4 MiB, more than
/// gRPC's 4 MiB message limit, which one range read of them would pass) come back whole, in
/// pages, every value intact.
pub fn read_back_pages_past_the_message_limit() -> TestResult {
    super::with_single_member(|bench| async move {
        let member = bench.members[0].clone();
        let prefix = "/etcd-drill/paged/";
        let value = |i: u32| format!("{i:08}-{}", "v".repeat(1015));
        for chunk in (0..4_500u32).collect::<Vec<_>>().chunks(100) {
            let puts = chunk
                .iter()
                .map(|i| member.put(format!("{prefix}{i:06}"), value(*i), Duration::from_secs(10)));
            for r in futures_util::future::join_all(puts).await {
                r.map_err(|e| format!("put: {e}"))?;
            }
        }
        let read = member.get_prefix(prefix, Duration::from_secs(10)).await?;
        ensure(read.len() == 4_500, || format!("{} keys read back of 4500", read.len()))?;
        let bad = (0..4_500u32)
            .filter(|i| read.get(&format!("{prefix}{i:06}")).map(|v| v.as_slice()) != Some(value(*i).as_bytes()))
            .count();
        ensure(bad == 0, || format!("{bad} values differ"))?;
        member.delete_prefix(prefix, Duration::from_secs(10)).await?;
        Ok(bench)
    })
}

/// A run whose harness and watchdog were both SIGKILLed (the machine's OOM killer taking
/// both, say): `clean --dry-run` calls it abandoned, and the next run on the daemon removes
/// it before it starts, and says so.
pub fn a_run_abandoned_with_its_watchdog_goes_at_the_next_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let short = write_short_scenario(dir.path())?;
    let mut child = binary()
        .args(["run", short.to_str().unwrap_or_default(), "--out"])
        .arg(dir.path().join("abandoned"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let lines = stdout_lines(&mut child)?;
    let first = lines.recv_timeout(Duration::from_secs(60))?;
    let run_id = run_id_from(&first).ok_or_else(|| format!("no run id in {first:?}"))?;
    ensure(
        wait_for_line(&lines, "workload-started", Duration::from_secs(120)).is_some(),
        || "the drill never started its workload".into(),
    )?;
    let watchdog = Command::new("pgrep")
        .args(["-f", &format!("watchdog --run {run_id}")])
        .output()?;
    let watchdog_pid = String::from_utf8_lossy(&watchdog.stdout).trim().to_string();
    ensure(!watchdog_pid.is_empty(), || format!("no watchdog runs for {run_id}"))?;
    send_signal(watchdog_pid.parse()?, "KILL")?;
    send_signal(child.id(), "KILL")?;
    child.wait()?;
    ensure(!leftovers(Some(&run_id))?.is_empty(), || {
        "nothing was left to find: the test proves nothing".into()
    })?;
    let dry = binary().args(["clean", "--dry-run", "-o", "json"]).output()?;
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout)?;
    let listed = dry["runs"].as_array().and_then(|runs| {
        runs.iter()
            .find(|r| r["run_id"] == run_id.as_str())
            .map(|r| (r["state"].clone(), r["why"].clone()))
    });
    ensure(
        listed
            .as_ref()
            .is_some_and(|(state, why)| state == "stale" && why.as_str().is_some_and(|w| w.contains("has exited"))),
        || format!("clean --dry-run does not call run {run_id} abandoned: {dry}"),
    )?;
    let next = binary()
        .args(["run", short.to_str().unwrap_or_default(), "--out"])
        .arg(dir.path().join("next"))
        .output()?;
    let stderr = String::from_utf8_lossy(&next.stderr);
    ensure(next.status.success(), || format!("the next run failed: {stderr}"))?;
    ensure(stderr.contains(&format!("removed abandoned run {run_id}")), || {
        format!("the next run did not say it removed {run_id}: {stderr}")
    })?;
    super::assert_no_objects(Some(&run_id))
}
