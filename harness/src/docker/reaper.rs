//! Runs whose harness is gone are removed without anyone typing `clean`. Every object a
//! run creates names its owner (machine, boot, process) and a deadline in its labels
//! (`owner`). A [`Watchdog`] process per run removes the run as soon as the harness ends
//! without releasing it (SIGKILL, an OOM kill, a crash); the CLI then records the
//! interruption in the run's report. When the watchdog died too, or the harness ran on
//! another machine against the same daemon, the next start and `clean` find the run stale:
//! its owner is known dead, or its deadline passed. `clean` leaves live runs of other
//! processes alone unless `--all`.
//!
//! Hand-written rather than testcontainers' Ryuk: Ryuk is an image pulled from a registry
//! and a port the harness must reach on the daemon's machine; a process of our own binary
//! needs neither, and the labels hold for a remote daemon too.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::docker::owner::{local_process_alive, unix_now, Owner, RunRecord, RunState};
use crate::docker::runtime::{DockerRuntime, RunObjects};
use crate::error::{Error, Result};
use crate::topology::DockerEndpoint;

/// How long a watchdog keeps trying to remove a run whose daemon does not answer (a daemon
/// restarting, a remote host rebooting).
pub const REAP_PATIENCE: Duration = Duration::from_secs(600);

/// The line a harness writes to its watchdog once its run's objects are gone or kept.
const RELEASE: &str = "release";

/// Every run on the daemon with its state, seen from this process.
pub async fn survey(docker: &DockerRuntime) -> Result<Vec<(RunRecord, RunState)>> {
    let here = Owner::this_process();
    let now = unix_now();
    Ok(docker
        .runs()
        .await?
        .into_iter()
        .map(|run| {
            let state = run.state(&here, now, local_process_alive);
            (run, state)
        })
        .collect())
}

/// Removes the runs found stale (owner gone, deadline passed). Every drill and perf run
/// calls it before it starts; a run that cannot be removed is reported, not fatal.
pub async fn reap_stale(docker: &DockerRuntime) -> Vec<(String, std::result::Result<RunObjects, String>)> {
    let Ok(runs) = survey(docker).await else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for (run, state) in runs {
        if let RunState::Stale(_) = state {
            let removed = docker.remove_run(Some(&run.run_id)).await.map_err(|e| e.to_string());
            reaped.push((run.run_id, removed));
        }
    }
    reaped
}

/// The harness's side of a run's watchdog: a second process of this binary that removes
/// the run when this process ends without calling [`Watchdog::release`]. Dropping it
/// unreleased closes the pipe, which is the watchdog's cue, exactly as an unexpected end is.
pub struct Watchdog {
    child: Option<Child>,
    pipe: Option<ChildStdin>,
    log_path: Option<PathBuf>,
}

impl Watchdog {
    /// Starts `exe watchdog --run RUN_ID [--report-dir DIR]` in its own process group (so
    /// Ctrl-C at a terminal does not reach it), its messages in `DIR/watchdog.log` (removed
    /// again when the watchdog is released with nothing to say).
    /// Starts the watchdog of `run_id`, which reaps it from the harness's own daemon and
    /// from `daemons` (the run's other hosts).
    pub fn spawn(exe: &Path, run_id: &str, report_dir: Option<&Path>, daemons: &[DockerEndpoint]) -> Result<Watchdog> {
        let mut command = Command::new(exe);
        command.args(["watchdog", "--run", run_id]);
        for daemon in daemons {
            command
                .arg("--daemon")
                .arg(serde_json::to_string(daemon).unwrap_or_default());
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut log_path = None;
        if let Some(dir) = report_dir {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
            let path = dir.join("watchdog.log");
            let log = std::fs::File::create(&path).map_err(Error::io(&path))?;
            command.arg("--report-dir").arg(dir).stderr(log);
            log_path = Some(path);
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(Error::io(exe))?;
        let pipe = child.stdin.take();
        Ok(Watchdog {
            child: Some(child),
            pipe,
            log_path,
        })
    }

    /// The run's objects are gone (or kept on purpose): the watchdog exits without
    /// touching anything.
    pub fn release(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "{RELEASE}");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if let Some(path) = self.log_path.take() {
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing the pipe unreleased hands the run to the watchdog; it is not waited for,
        // it may need minutes (a daemon that is restarting).
        self.pipe.take();
        self.child.take();
    }
}

/// What a watchdog did after its harness went away without releasing the run.
#[derive(Debug, Clone, Serialize)]
pub struct Reaped {
    pub removed: Option<RunObjects>,
    pub attempts: u32,
    pub error: Option<String>,
}

/// The watchdog process: waits on stdin until the harness writes `release` (exit quietly)
/// or the pipe closes without it. Then it removes the run's objects, retrying while the
/// daemon does not answer for up to [`REAP_PATIENCE`]. `removed` is None when released.
pub async fn watch(run_id: &str, daemons: &[DockerEndpoint]) -> Reaped {
    let released = tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        lines.any(|line| line.is_ok_and(|l| l.trim() == RELEASE))
    })
    .await
    .unwrap_or(false);
    if released {
        return Reaped {
            removed: None,
            attempts: 0,
            error: None,
        };
    }
    eprintln!("etcd-drill watchdog: the harness of run {run_id} ended without releasing it; removing its objects");
    reap_with_patience(run_id, daemons, REAP_PATIENCE).await
}

/// Removes `run_id`'s objects from the harness's own daemon and from `daemons`, retrying
/// every 2 s while a daemon does not answer or objects remain, for at most `patience`.
pub async fn reap_with_patience(run_id: &str, daemons: &[DockerEndpoint], patience: Duration) -> Reaped {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    let mut removed = RunObjects::default();
    loop {
        attempts += 1;
        let result = async {
            let (mut found, mut left) = (RunObjects::default(), RunObjects::default());
            for endpoint in crate::docker::hosts::with_home(daemons) {
                let docker = DockerRuntime::connect_to(endpoint).await?;
                found.absorb(&docker.remove_run(Some(run_id)).await?);
                left.absorb(&docker.run_objects(Some(run_id)).await?);
            }
            Ok::<_, Error>((found, left))
        }
        .await;
        let error = match result {
            Ok((found, left)) => {
                removed.absorb(&found);
                if left.is_empty() {
                    return Reaped {
                        removed: Some(removed),
                        attempts,
                        error: None,
                    };
                }
                format!("still there: {}", left.summary())
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= patience {
            return Reaped {
                removed: Some(removed),
                attempts,
                error: Some(error),
            };
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
