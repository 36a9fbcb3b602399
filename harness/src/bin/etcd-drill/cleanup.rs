//! `etcd-drill clean`, the hidden `etcd-drill watchdog` each run starts beside itself, and
//! the removal of abandoned runs before a run starts. The rules live in
//! `etcd_drill::docker::reaper`; this file only speaks for them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use etcd_drill::docker::owner::RunState;
use etcd_drill::docker::reaper::{self, Watchdog};
use etcd_drill::docker::runtime::{DockerRuntime, RunObjects};
use etcd_drill::topology::DockerEndpoint;
use etcd_drill::Result;
use serde::Serialize;

use crate::{print_json, say, OutputArgs};

#[derive(Args)]
pub(crate) struct CleanArgs {
    /// Only this run's objects, whatever its state.
    #[arg(long, conflicts_with = "all")]
    run: Option<String>,
    /// Every run's objects, including runs whose harness is still running (another
    /// terminal's drill, a CI job on the same daemon). Without it, live runs are left alone.
    #[arg(long)]
    all: bool,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also clean the Docker daemons of the hosts in this file (the `--hosts` file of
    /// `run`), besides the harness's own.
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Serialize)]
struct RunLine {
    run_id: String,
    /// The daemon the objects are on: `local` for the harness's own, else its endpoint.
    daemon: String,
    #[serde(flatten)]
    state: RunState,
    objects: RunObjects,
}

/// `clean`: without arguments, the runs whose harness is gone (stale), kept runs and runs
/// of an etcd-drill too old to label its owner; live runs stay unless `--all`.
pub(crate) async fn clean_command(args: CleanArgs) -> Result<u8> {
    let daemons = match &args.hosts {
        Some(file) => etcd_drill::scenario::hosts_file_daemons(file)?,
        None => Vec::new(),
    };
    let mut removed = Vec::new();
    let mut left = Vec::new();
    for endpoint in etcd_drill::docker::hosts::with_home(&daemons) {
        let docker = DockerRuntime::connect_to(endpoint).await?;
        let daemon = endpoint.map(|e| e.url.clone()).unwrap_or_else(|| "local".into());
        let (chosen, unchosen) = clean_daemon(&docker, &daemon, &args).await?;
        removed.extend(chosen);
        left.extend(unchosen);
    }
    let mut all = RunObjects::default();
    for line in &removed {
        all.absorb(&line.objects);
    }
    if args.output.json() {
        print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "run": args.run,
            "all": args.all,
            "runs": removed,
            "left": if args.run.is_some() { Vec::new() } else { left },
            "containers": all.containers,
            "networks": all.networks,
            "volumes": all.volumes,
        }))?;
        return Ok(0);
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    say(format_args!("{verb} {} of {} runs", all.summary(), removed.len()));
    say_runs(&removed);
    let live_removed = removed.iter().filter(|l| l.state == RunState::Live).count();
    if live_removed > 0 {
        say(format_args!(
            "{live_removed} of them {} still running: their drills will break down",
            if live_removed == 1 { "was" } else { "were" }
        ));
    }
    if args.run.is_none() && !left.is_empty() {
        say(format_args!(
            "left {} runs in use (`clean --all` removes them too, `clean --run ID` one of them):",
            left.len()
        ));
        say_runs(&left);
    }
    Ok(0)
}

/// Cleans one daemon as `args` says: the runs it removed (or would), and the live runs
/// it left.
async fn clean_daemon(docker: &DockerRuntime, daemon: &str, args: &CleanArgs) -> Result<(Vec<RunLine>, Vec<RunLine>)> {
    let runs = reaper::survey(docker).await?;
    let (chosen, left): (Vec<_>, Vec<_>) = runs.into_iter().partition(|(run, state)| match &args.run {
        Some(id) => &run.run_id == id,
        None => args.all || matches!(state, RunState::Stale(_) | RunState::Kept | RunState::Unowned),
    });
    let mut removed = Vec::new();
    for (run, state) in chosen {
        let objects = match args.dry_run {
            true => run.objects,
            false => docker.remove_run(Some(&run.run_id)).await?,
        };
        removed.push(RunLine {
            run_id: run.run_id,
            daemon: daemon.to_string(),
            state,
            objects,
        });
    }
    let left = left
        .into_iter()
        .filter(|(_, state)| matches!(state, RunState::Live | RunState::Elsewhere(_)))
        .map(|(run, state)| RunLine {
            run_id: run.run_id,
            daemon: daemon.to_string(),
            state,
            objects: run.objects,
        })
        .collect();
    Ok((removed, left))
}

/// One line per run: its id, its state and its objects (and the daemon, when not the
/// harness's own).
fn say_runs(lines: &[RunLine]) {
    for line in lines {
        let on = match line.daemon.as_str() {
            "local" => String::new(),
            other => format!(" on {other}"),
        };
        say(format_args!(
            "  run {}{on} ({}): {}",
            line.run_id,
            describe(&line.state),
            line.objects.summary()
        ));
    }
}

fn describe(state: &RunState) -> String {
    match state {
        RunState::Live => "its harness is running".into(),
        RunState::Kept => "kept with --keep".into(),
        RunState::Stale(why) => format!("abandoned: {why}"),
        RunState::Elsewhere(why) => why.clone(),
        RunState::Unowned => "no owner labelled".into(),
    }
}

#[derive(Args)]
pub(crate) struct WatchdogArgs {
    /// The run to remove when the harness goes away without releasing it.
    #[arg(long)]
    run: String,
    /// The run's report folder, where an interrupted run is recorded.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Another daemon of the run (a host of its own), as JSON: {"url": ..., "tls": ...}.
    #[arg(long = "daemon")]
    daemons: Vec<String>,
}

/// The watchdog process: see `etcd_drill::docker::reaper::watch`. Exit 0 when released or
/// when the run was removed, 5 when objects remain after its patience ran out.
pub(crate) async fn watchdog_command(args: WatchdogArgs) -> Result<u8> {
    let mut daemons = Vec::new();
    for text in &args.daemons {
        let endpoint = serde_json::from_str(text).map_err(|e| etcd_drill::error::Error::InvalidArgument {
            argument: "--daemon".into(),
            message: format!("`{text}`: {e}; give the JSON of a Docker endpoint, as etcd-drill run does"),
        })?;
        daemons.push(endpoint);
    }
    let reaped = reaper::watch(&args.run, &daemons).await;
    if let (Some(dir), Some(_)) = (&args.report_dir, &reaped.removed) {
        if let Err(e) = etcd_drill::report::record_unannounced_end(dir, &reaped) {
            eprintln!(
                "etcd-drill watchdog: the report of run {} could not be updated: {e}",
                args.run
            );
        }
    }
    match (&reaped.removed, &reaped.error) {
        (None, None) => Ok(0),
        (Some(removed), None) => {
            eprintln!(
                "etcd-drill watchdog: removed run {} ({}) after {} attempts",
                args.run,
                removed.summary(),
                reaped.attempts
            );
            Ok(0)
        }
        (_, Some(e)) => {
            eprintln!(
                "etcd-drill watchdog: run {} could not be removed: {e}; run `etcd-drill clean --run {}`",
                args.run, args.run
            );
            Ok(etcd_drill::ExitClass::HarnessBroken as u8)
        }
    }
}

/// Before a run: removes the runs other harnesses abandoned on this daemon (a SIGKILL
/// whose watchdog died too, a reboot, a deadline passed) and says so; then starts this
/// run's watchdog. A watchdog that cannot start is said and not fatal: the labels still
/// let the next start or `clean` find the run.
pub(crate) async fn prepare_run(
    run_id: &str,
    report_dir: Option<&Path>,
    daemons: &[DockerEndpoint],
) -> Option<Watchdog> {
    for endpoint in etcd_drill::docker::hosts::with_home(daemons) {
        let Ok(docker) = DockerRuntime::connect_to(endpoint).await else {
            continue;
        };
        for (id, result) in reaper::reap_stale(&docker).await {
            match result {
                Ok(objects) => eprintln!("etcd-drill: removed abandoned run {id} ({})", objects.summary()),
                Err(e) => eprintln!("etcd-drill: abandoned run {id} could not be removed: {e}"),
            }
        }
    }
    let exe = std::env::current_exe().ok()?;
    match Watchdog::spawn(&exe, run_id, report_dir, daemons) {
        Ok(watchdog) => Some(watchdog),
        Err(e) => {
            eprintln!("etcd-drill: the run's watchdog did not start ({e}); if this process is killed, `etcd-drill clean` removes the run");
            None
        }
    }
}

/// The run's objects on the daemon now; None when the daemon does not answer.
pub(crate) async fn objects_of(run_id: &str, daemons: &[DockerEndpoint]) -> Option<RunObjects> {
    let mut objects = RunObjects::default();
    for endpoint in etcd_drill::docker::hosts::with_home(daemons) {
        let docker = DockerRuntime::connect_to(endpoint).await.ok()?;
        objects.absorb(&docker.run_objects(Some(run_id)).await.ok()?);
    }
    Some(objects)
}

/// After a run: removes whatever of it is left (unless it was kept), and releases the
/// watchdog once nothing is. When the daemon does not answer or objects remain, the
/// watchdog is left to keep trying, and the error says so.
pub(crate) async fn settle(
    run_id: &str,
    kept: bool,
    watchdog: Option<Watchdog>,
    daemons: &[DockerEndpoint],
) -> std::result::Result<(), String> {
    // One attempt of what the watchdog would do, without its patience.
    let result = match kept {
        true => Ok(()),
        false => reaper::reap_with_patience(run_id, daemons, Duration::ZERO)
            .await
            .error
            .map_or(Ok(()), Err),
    };
    match (&result, watchdog) {
        (Ok(()), Some(watchdog)) => watchdog.release(),
        (Err(_), Some(watchdog)) => {
            eprintln!("etcd-drill: the run's watchdog goes on removing run {run_id} in the background");
            drop(watchdog);
        }
        (_, None) => {}
    }
    result.map_err(|e| format!("{e}; the watchdog goes on trying"))
}
