//! `etcd-drill chaos`: draws a schedule (or reads one), plays it as a drill, and shrinks it
//! when it fails. The schedule and its shrinking live in `etcd_drill::chaos`; this file
//! only ties them to the runner and the report folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use etcd_drill::chaos::schedule::{IncidentKind, Schedule};
use etcd_drill::chaos::shrink;
use etcd_drill::docker::image::DEFAULT_IMAGE;
use etcd_drill::drill::runner;
use etcd_drill::perf::parse_duration;
use etcd_drill::{scenario, Error, ExitClass, Result};

use crate::drill::{run_one, RunArgs};

/// The longest `--duration` taken: a day of incidents is some 30,000 of them.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Args)]
pub(crate) struct ChaosArgs {
    /// The scenario whose topology, hosts, etcd settings and security the run uses (its
    /// faults, recovery and workload are replaced by the schedule's).
    #[arg(default_value = "server-b-loss")]
    scenario: String,
    /// How long the schedule's incidents go on (after a 3 s warm-up; the ending, its
    /// recovery and the checks come after): 90s, 10m.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    duration: Duration,
    /// The seed the schedule (and every random choice of the run) is drawn from; printed
    /// at the start, and the same seed draws the same schedule.
    #[arg(long, conflicts_with = "replay")]
    seed: Option<u64>,
    /// Let the ending cost quorum: a majority killed, then restarted or restored from a
    /// snapshot.
    #[arg(long, conflicts_with = "replay")]
    beyond_quorum: bool,
    /// Draw incidents of these kinds only (comma-separated: kill, stop, pause, partition,
    /// host-partition, peer-blackhole, peer-loss); by default all but the two peer-traffic
    /// kinds, which are drawn only when named.
    #[arg(long, value_delimiter = ',', conflicts_with = "replay", value_parser = parse_kind)]
    kinds: Vec<IncidentKind>,
    /// Play a saved schedule (a run's schedule.json or shrunk-schedule.json) instead of
    /// drawing one.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Candidates tried when shrinking a failing schedule (each replays a shorter schedule
    /// in full, up to --tries times); 0 does not shrink.
    #[arg(long, default_value_t = 8)]
    shrink_runs: usize,
    /// Play the schedule, and each shrinking candidate, up to this many times until it
    /// fails: for a bug that does not strike on every run (a race), a candidate counts as
    /// failing when any of its tries fails (--shrink-runs counts candidates, each up to
    /// this many runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=20))]
    tries: u16,
    /// Write and print the schedule (schedule.json in --out, JSON on stdout), run nothing.
    #[arg(long)]
    plan_only: bool,
    /// The etcd image to run.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Folder for the run's reports, its schedule and history (default:
    /// reports/chaos-<seed>-<run id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A TOML file of `[hosts.NAME]` tables, as for `run --hosts`.
    #[arg(long)]
    hosts: Option<PathBuf>,
    /// A file whose first line is the root password, for scenarios with authentication.
    #[arg(long)]
    root_password_file: Option<PathBuf>,
}

pub(crate) async fn chaos_command(args: ChaosArgs) -> Result<u8> {
    let mut base = scenario::load(&args.scenario)?;
    if let Some(hosts) = &args.hosts {
        base = scenario::with_hosts_file(&base, hosts)?;
    }
    if args.duration > MAX_DURATION {
        return Err(Error::InvalidArgument {
            argument: "--duration".into(),
            message: format!(
                "{} s is longer than a day ({} s): run several seeds instead",
                args.duration.as_secs(),
                MAX_DURATION.as_secs()
            ),
        });
    }
    let schedule = match &args.replay {
        Some(path) => read_schedule(path, &base)?,
        None => Schedule::generate_of(
            args.seed.unwrap_or_else(runner::new_seed),
            args.duration.as_millis() as u64,
            &base.topology,
            args.beyond_quorum,
            &args.kinds,
        ),
    };
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("chaos-{}-{run_id}", schedule.seed)));
    std::fs::create_dir_all(&out).map_err(|e| Error::InvalidArgument {
        argument: "--out".into(),
        message: format!("cannot create {}: {e}", out.display()),
    })?;
    write_json(&out.join("schedule.json"), &schedule)?;
    if args.plan_only {
        let text = serde_json::to_string_pretty(&schedule).map_err(|e| Error::io("<stdout>")(e.into()))?;
        println!("{text}");
        return Ok(0);
    }
    println!(
        "chaos: seed {}, {} incidents over {} s, then {}; schedule: {} (replay with --replay)",
        schedule.seed,
        schedule.incidents.len(),
        schedule.duration_ms / 1000,
        schedule.ending.describe(),
        out.join("schedule.json").display()
    );
    for incident in &schedule.incidents {
        println!("chaos: {}", incident.describe());
    }
    println!(
        "chaos: {:>9.1} s  ending: {}",
        schedule.ending_at_ms as f64 / 1000.0,
        schedule.ending.describe()
    );
    let (code, tried) = play_until_failed(&schedule, &base, &args, &out, run_id).await?;
    if tried > 1 {
        println!("chaos: {tried} tries, the last in {}", try_dir(&out, tried).display());
    }
    if code != ExitClass::DrillFailed as u8 || args.shrink_runs == 0 {
        return Ok(code);
    }
    println!(
        "chaos: the run failed; shrinking its schedule with up to {} more runs",
        args.shrink_runs
    );
    let shrunk = shrink::shrink(schedule, args.shrink_runs, |candidate, n| {
        let dir = out.join(format!("shrink-{n:02}"));
        let (base, args) = (&base, &args);
        async move {
            write_json(&dir.join("schedule.json"), &candidate)?;
            let run_id = etcd_drill::docker::runtime::new_run_id();
            let (code, _) = play_until_failed(&candidate, base, args, &dir, run_id).await?;
            if code != ExitClass::DrillFailed as u8 && code != 0 {
                // Not a verdict on etcd (an interruption, a breakdown): stop here.
                return Err(Error::InvalidArgument {
                    argument: "--shrink-runs".into(),
                    message: format!(
                        "shrink run {n} ended with exit code {code}, not a verdict; the schedule so far is kept"
                    ),
                });
            }
            Ok(code == ExitClass::DrillFailed as u8)
        }
    })
    .await?;
    write_json(&out.join("shrunk-schedule.json"), &shrunk.schedule)?;
    write_json(&out.join("shrink.json"), &shrunk.attempts)?;
    println!(
        "chaos: shrunk to {} incidents and {} after {} candidates: {} (replay with --replay)",
        shrunk.schedule.incidents.len(),
        shrunk.schedule.ending.describe(),
        shrunk.attempts.len(),
        out.join("shrunk-schedule.json").display()
    );
    Ok(code)
}

/// The folder of try `n` (1: `out` itself, then `out/try-2`, ...).
fn try_dir(out: &Path, n: u16) -> PathBuf {
    match n {
        1 => out.to_path_buf(),
        n => out.join(format!("try-{n}")),
    }
}

/// Plays `schedule` up to `--tries` times, until a run fails: the last run's exit code and
/// how many runs it took.
async fn play_until_failed(
    schedule: &Schedule,
    base: &scenario::Scenario,
    args: &ChaosArgs,
    out: &Path,
    run_id: String,
) -> Result<(u8, u16)> {
    let mut run_id = Some(run_id);
    for n in 1..=args.tries {
        let id = run_id.take().unwrap_or_else(etcd_drill::docker::runtime::new_run_id);
        let (code, _) = play(schedule, base, args, try_dir(out, n), id).await?;
        if code != 0 || n == args.tries {
            return Ok((code, n));
        }
    }
    Ok((0, args.tries))
}

/// Plays `schedule` on `base` as a drill with every report into `out`.
async fn play(
    schedule: &Schedule,
    base: &scenario::Scenario,
    args: &ChaosArgs,
    out: PathBuf,
    run_id: String,
) -> Result<(u8, Option<etcd_drill::report::DrillReport>)> {
    let mut raw = base.to_raw();
    // The schedule brings its own expectations and recovery (and its workload, unless the
    // base has one with registers); the base's extras (backups, the agent, a history to
    // grow) are not part of a chaos run.
    raw.backup = None;
    raw.agent = None;
    raw.history = None;
    let raw = schedule.to_scenario(&raw);
    let scenario = scenario::compile(raw, Path::new(&format!("chaos-{}", schedule.seed)))?;
    let run_args = RunArgs::single(&args.image, out.clone(), schedule.seed, args.root_password_file.clone());
    run_one(&scenario, &run_args, &args.image, out, run_id).await
}

/// A saved schedule, checked against the scenario's topology.
fn read_schedule(path: &Path, base: &scenario::Scenario) -> Result<Schedule> {
    let text = std::fs::read_to_string(path).map_err(Error::input(path))?;
    let schedule: Schedule = serde_json::from_str(&text).map_err(|e| Error::ScenarioFile {
        path: path.to_path_buf(),
        message: format!("{e}; give a schedule.json that `etcd-drill chaos` wrote"),
    })?;
    schedule.validate(&base.topology, path)?;
    Ok(schedule)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::io(path)(e.into()))?;
    std::fs::write(path, text + "\n").map_err(Error::io(path))
}

fn parse_kind(text: &str) -> std::result::Result<IncidentKind, String> {
    IncidentKind::parse(text).ok_or_else(|| {
        let known: Vec<&str> = IncidentKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown incident kind `{text}`; use {}", known.join(", "))
    })
}
