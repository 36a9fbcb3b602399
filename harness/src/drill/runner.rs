//! Runs one drill from start to verdict: start the topology, write, inject the faults,
//! probe quorum, run the recovery procedure, wait for health, check the data, and emit
//! every step as an [`Event`]. The run's Docker objects are removed at the end, whatever
//! happened, unless the user asked to keep the cluster.

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backup::periodic::BackupSchedule;
use crate::clock::Clock;
use crate::cluster::flavor::FlavorKind;
use crate::cluster::{Cluster, ClusterImage};
use crate::docker::image::DEFAULT_IMAGE;
use crate::docker::runtime::{DockerRuntime, RunGuard};
use crate::drill::agent::DrillAgentRun;
use crate::drill::check::{self, CheckResult};
use crate::drill::event::{Event, Outcome, RecoveryFigures, Reporter};
use crate::drill::series::WorkloadSeries;
use crate::drill::watcher::{WatchFigures, WatchFollower};
use crate::error::{Error, Result};
use crate::etcd::security::RootPassword;
use crate::etcd::ClientSet;
use crate::fault::{ClusterView, Target};
use crate::procedure::{self, RecoveryContext};
use crate::scenario::{ProcedureSpec, Scenario};
use crate::workload::Workload;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub image: String,
    /// The folder this run writes into; created if missing.
    pub out_dir: PathBuf,
    /// Leave the final cluster running for inspection.
    pub keep: bool,
    /// Seeds every random choice of the run (targets chosen by count, follower picks).
    pub seed: u64,
    /// Fixed run id (tests); random when None.
    pub run_id: Option<String>,
    /// The image's layout (`--flavor`); detected from the image when None.
    pub flavor: Option<FlavorKind>,
    /// `uid[:gid]` the members and restore tools run as (`--user`); the flavor's when None.
    pub user: Option<String>,
    /// The root password, for scenarios that turn authentication on.
    pub root_password: Option<RootPassword>,
}

/// What the CLI needs after a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub outcome: Outcome,
    pub out_dir: PathBuf,
}

/// A fresh run id: 8 hex digits from the OS's randomness.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A seed for runs that were not given one.
pub fn new_seed() -> u64 {
    rand::random::<u64>() >> 11
}

struct Emitter<'a> {
    reporters: Vec<&'a mut dyn Reporter>,
}

impl Emitter<'_> {
    fn emit(&mut self, event: Event) {
        for r in self.reporters.iter_mut() {
            r.on_event(&event);
        }
    }

    /// Emits the commands the cluster recorded since the last call.
    fn flush_commands(&mut self, cluster: &Cluster, sent: &mut usize) {
        for c in &cluster.commands[*sent..] {
            self.emit(Event::Command(c.clone()));
        }
        *sent = cluster.commands.len();
    }
}

/// Runs `scenario`. Returns Err only when the drill could not start (no Docker, missing
/// image, unwritable output folder); a drill that breaks down midway is a failed run.
pub async fn run(scenario: &Scenario, options: &RunOptions, reporters: Vec<&mut dyn Reporter>) -> Result<RunSummary> {
    let root_password =
        crate::etcd::security::password_for(&scenario.name, scenario.security.auth, options.root_password.clone())?;
    let docker = DockerRuntime::connect().await?;
    docker.ensure_image(&options.image, DEFAULT_IMAGE).await?;
    std::fs::create_dir_all(&options.out_dir).map_err(|e| Error::InvalidArgument {
        argument: "--out".into(),
        message: format!("cannot create {}: {e}", options.out_dir.display()),
    })?;
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let mut guard = RunGuard::new(&run_id);
    let clock = Clock::start();
    let mut emitter = Emitter { reporters };
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    emitter.emit(Event::RunStarted {
        run_id: run_id.clone(),
        scenario: Box::new(scenario.clone()),
        image: options.image.clone(),
        seed: options.seed,
        out_dir: options.out_dir.clone(),
        started_at,
    });

    // How to run the image, and what its tools can do, read from the image itself. A
    // drill this image cannot do is skipped, with the reason, before any cluster starts.
    let image = ClusterImage::inspect(&docker, &options.image, options.flavor, options.user.clone(), &run_id)
        .await
        .map(|image| ClusterImage {
            root_password,
            tls: scenario.security.tls,
            ..image
        });
    let image = match image {
        Ok(image) => image,
        Err(e) => {
            let _ = docker.remove_run(Some(&run_id)).await;
            return Err(e);
        }
    };
    let unsupported = image
        .tools
        .as_ref()
        .and_then(|tools| crate::cluster::tools::unsupported(&scenario.recovery, tools, &options.image));
    if let Some(reason) = unsupported {
        if docker.remove_run(Some(&run_id)).await.is_ok() {
            guard.disarm();
        }
        emitter.emit(Event::RunFinished {
            at_ms: clock.now_ms(),
            outcome: Outcome::Skipped,
            error: None,
            skip_reason: Some(reason),
            kept: None,
        });
        return Ok(RunSummary {
            run_id,
            outcome: Outcome::Skipped,
            out_dir: options.out_dir.clone(),
        });
    }

    let mut drill = Drill {
        scenario,
        options,
        image: &image,
        run_id: run_id.clone(),
        clock,
        emitter: &mut emitter,
        cluster: None,
        commands_sent: 0,
        checks: Vec::new(),
    };
    let result = drill.drive(docker.clone()).await;
    if let Some(cluster) = &drill.cluster {
        let mut sent = drill.commands_sent;
        drill.emitter.flush_commands(cluster, &mut sent);
    }
    let checks_failed = drill.checks.iter().any(|c| !c.passed);
    let kept = match (&drill.cluster, options.keep) {
        (Some(cluster), true) => Some(cluster.endpoints()),
        _ => None,
    };
    drop(drill);

    let cleanup = if options.keep {
        Ok(())
    } else {
        docker.remove_run(Some(&run_id)).await.map(|_| ())
    };
    if cleanup.is_ok() {
        guard.disarm();
    }
    let error = match (&result, &cleanup) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(()), Err(e)) => Some(format!("cleanup failed: {e}")),
        _ => None,
    };
    let outcome = if error.is_none() && !checks_failed {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    emitter.emit(Event::RunFinished {
        at_ms: clock.now_ms(),
        outcome,
        error,
        skip_reason: None,
        kept,
    });
    Ok(RunSummary {
        run_id,
        outcome,
        out_dir: options.out_dir.clone(),
    })
}

struct Drill<'a, 'r> {
    scenario: &'a Scenario,
    options: &'a RunOptions,
    image: &'a ClusterImage,
    run_id: String,
    clock: Clock,
    emitter: &'a mut Emitter<'r>,
    cluster: Option<Cluster>,
    commands_sent: usize,
    checks: Vec<CheckResult>,
}

impl Drill<'_, '_> {
    fn phase(&mut self, name: &str, detail: impl Into<String>) {
        self.emitter.emit(Event::Phase {
            at_ms: self.clock.now_ms(),
            name: name.to_string(),
            detail: detail.into(),
        });
    }

    fn flush(&mut self) {
        if let Some(cluster) = &self.cluster {
            self.emitter.flush_commands(cluster, &mut self.commands_sent);
        }
    }

    fn check(&mut self, check: CheckResult) {
        self.emitter.emit(Event::Check(check.clone()));
        self.checks.push(check);
    }

    async fn drive(&mut self, docker: DockerRuntime) -> Result<()> {
        let scenario = self.scenario;
        let mut rng = ChaCha8Rng::seed_from_u64(self.options.seed);

        let flavor = &self.image.flavor;
        let tools = self.image.tools.as_ref();
        self.phase(
            "cluster-starting",
            format!(
                "{} members from {} ({} layout{}, etcd {}, snapshots restored with {})",
                scenario.topology.len(),
                self.options.image,
                flavor.kind.as_str(),
                flavor.user.as_ref().map(|u| format!(", uid {u}")).unwrap_or_default(),
                tools.map(|t| t.version.as_str()).unwrap_or("unknown"),
                tools.map(|t| t.snapshot_tool.binary()).unwrap_or("unknown"),
            ),
        );
        let created = Cluster::create(
            docker,
            &self.run_id,
            self.image,
            &scenario.topology,
            &scenario.etcd,
            self.clock,
        )
        .await;
        let cluster = created?;
        self.cluster = Some(cluster);
        self.flush();
        self.phase("cluster-ready", "every member answers a linearizable read");
        if let Some(seed) = &scenario.seed {
            check::write_seed(self.cluster_ref(), seed).await?;
            self.phase(
                "seeded",
                format!("{} application keys under {}", seed.keys, seed.prefix),
            );
        }

        let mut agent = match &scenario.agent {
            Some(plan) => {
                let started = DrillAgentRun::start(plan, self.cluster_ref(), &self.options.out_dir).await?;
                self.phase(
                    "agent-started",
                    format!(
                        "backup agent: first full snapshot saved; deltas {}",
                        match plan.config.delta_period_ms {
                            Some(ms) => format!("every {ms} ms"),
                            None => "off".into(),
                        }
                    ),
                );
                Some(started)
            }
            None => None,
        };
        let prefix = format!("/etcd-drill/{}/", self.run_id);
        let clients = self.cluster_ref().clients();
        let backups = scenario.backup.as_ref().map(|plan| {
            BackupSchedule::start(
                clients.clone(),
                Duration::from_millis(plan.interval_ms),
                &self.options.out_dir,
                self.clock,
            )
        });
        // The application's view of the cluster: a procedure that moves the cluster to new
        // endpoints switches it for the writers and the watcher alike.
        let app_clients = ClientSet::new(clients);
        let follower = scenario
            .workload
            .watch
            .then(|| WatchFollower::start(app_clients.clone(), prefix.clone()));
        let workload = Workload::start(&scenario.workload, prefix, app_clients.clone(), self.clock);
        let workload_started = self.clock.now_ms();
        self.phase(
            "workload-started",
            format!(
                "{} writers, {} writes/s in total",
                scenario.workload.writers, scenario.workload.rate
            ),
        );
        // Whatever happens from here on, the writers are stopped and the ledger kept.
        let outcome = self
            .fault_and_recover(&mut rng, workload_started, backups, &app_clients, agent.as_mut())
            .await;
        let ledger = workload.stop().await;
        if let Some(agent) = agent.as_mut() {
            let newest = ledger.acked.iter().map(|w| w.revision).max().unwrap_or(0);
            agent.stop(newest, "stopped at the end").await;
            agent.check_chain().await;
        }
        let watch_log = match follower {
            Some(follower) => Some(follower.stop().await),
            None => None,
        };
        let workload_stopped = self.clock.now_ms();
        self.phase(
            "workload-stopped",
            format!("{} acknowledged, {} failed", ledger.acked.len(), ledger.failed.len()),
        );
        self.emitter
            .emit(Event::WorkloadSeries(Box::new(WorkloadSeries::from_ledger(
                &ledger,
                workload_started,
                workload_stopped,
            ))));
        let ledger_path = self.options.out_dir.join("ledger.jsonl");
        ledger.write_jsonl(&ledger_path)?;
        let mut figures = outcome?;

        let (rto, procedure_ms) = (
            ledger
                .first_ack_sent_after(figures.fault_done_ms)
                .map(|w| w.acked_ms - figures.fault_at_ms),
            figures
                .started_at_ms
                .and_then(|start| ledger.first_ack_sent_after(start).map(|w| w.acked_ms - start)),
        );
        figures.rto_ms = rto;
        figures.procedure_ms = procedure_ms;
        if let Some(log) = &watch_log {
            // Nothing is acknowledged while the cluster is down, so every write acknowledged
            // after the fault was made on the recovered cluster.
            let after = figures.fault_done_ms;
            let missed = ledger
                .acked
                .iter()
                .filter(|w| w.acked_ms > after && !log.seen.contains(&ledger.key(w)))
                .count() as u64;
            figures.watch = Some(WatchFigures {
                events: log.events,
                last_revision: log.last_revision,
                resumes: log.resumes,
                relists: log.relists,
                missed_after_recovery: missed,
            });
        }
        let gap = ledger.longest_ack_gap(workload_started, workload_stopped);
        figures.max_write_gap_at_ms = gap;
        figures.max_write_gap_ms = gap.1 - gap.0;

        self.phase("checking", "reading every acknowledged key back");
        let present = check::read_back(self.cluster_ref(), &ledger.prefix).await?;
        let mut data = check::account_data_loss(&ledger, &present);
        let agent_checks = match &agent {
            Some(agent) => {
                figures.agent = Some(agent.report.clone());
                let faulted: Vec<String> = scenario
                    .faults
                    .iter()
                    .flat_map(|f| match &f.target {
                        crate::fault::Target::Members(m) => m.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                agent.checks(&ledger, &present, &figures, &faulted)
            }
            None => Vec::new(),
        };
        if let Some(seed) = &scenario.seed {
            let app_keys = check::read_back(self.cluster_ref(), &seed.prefix).await?;
            (data.app_keys_expected, data.app_keys_missing) = check::account_seed(seed, &app_keys);
        }
        if scenario.security.auth {
            let auth = self.cluster_mut().check_auth().await;
            self.flush();
            self.check(auth);
        }
        let consistency = check::check_consistency(self.cluster_ref()).await?;
        self.emitter.emit(Event::Measured {
            recovery: Box::new(figures.clone()),
            data: Box::new(data.clone()),
            consistency: Some(Box::new(consistency.clone())),
        });
        for result in check::judge(&scenario.expect, &scenario.topology, &figures, &data, &consistency) {
            self.check(result);
        }
        for result in agent_checks {
            self.check(result);
        }
        Ok(())
    }

    fn cluster_ref(&self) -> &Cluster {
        self.cluster.as_ref().expect("the cluster exists once created")
    }

    fn cluster_mut(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("the cluster exists once created")
    }

    /// Warm-up, faults, quorum probe, outage, procedure, health. Returns the figures known
    /// before the ledger is read.
    async fn fault_and_recover(
        &mut self,
        rng: &mut ChaCha8Rng,
        workload_started: u64,
        backups: Option<BackupSchedule>,
        app_clients: &ClientSet,
        mut agent: Option<&mut DrillAgentRun>,
    ) -> Result<RecoveryFigures> {
        let scenario = self.scenario;
        tokio::time::sleep(Duration::from_millis(scenario.workload.warmup_ms)).await;
        let mut figures = RecoveryFigures {
            procedure: scenario.recovery.procedure.name().to_string(),
            fault_at_ms: workload_started,
            ..RecoveryFigures::default()
        };
        let mut fault_at = None;
        let mut fault_done = None;
        let mut down: Vec<String> = Vec::new();
        self.cluster_mut().phase = "fault".into();
        for fault in &scenario.faults {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
            let cluster = self.cluster_ref();
            let running = cluster.running().await?;
            let leader = if matches!(fault.target, Target::Leader | Target::Followers { .. }) {
                // Right after a fault the survivors may still name a dead leader, or none
                // while they elect one: wait (briefly) for a leader that is running.
                cluster.wait_for_leader(&running, Duration::from_secs(10)).await
            } else {
                None
            };
            let view = ClusterView {
                topology: &scenario.topology,
                running,
                leader,
            };
            let targets = fault.target.resolve(&view, rng).map_err(|e| Error::Procedure {
                step: format!("{} {}", fault.action.as_str(), fault.target.describe()),
                message: e.to_string(),
            })?;
            if fault.action.takes_members_down() {
                if let Some(agent) = agent.as_mut().filter(|a| a.plan.lost_at_fault && a.running()) {
                    // The agent's machine fails with the hosts: its buffer is lost.
                    agent.lose().await;
                    self.phase("agent-lost", "the backup agent died with the fault");
                }
            }
            let began_ms = self.clock.now_ms();
            let members = fault.apply(self.cluster_mut(), targets, &view.running).await?;
            // The disruption counts from the moment the fault began; writes count as
            // resumed only when sent after it had taken effect on every member it hits.
            let at_ms = self.clock.now_ms();
            if fault.action.takes_members_down() {
                fault_at.get_or_insert(began_ms);
                fault_done.get_or_insert(at_ms);
                for m in &members {
                    if !down.contains(m) {
                        down.push(m.clone());
                    }
                }
            } else if fault.action.brings_members_back() {
                down.retain(|d| !members.contains(d));
            }
            self.flush();
            self.emitter.emit(Event::FaultInjected {
                at_ms,
                action: fault.action.as_str().to_string(),
                target: fault.target.describe(),
                members,
            });
        }
        figures.fault_at_ms = fault_at.unwrap_or(workload_started);
        figures.fault_done_ms = fault_done.unwrap_or(workload_started);

        // Is the cluster still writable? A put with a short timeout on every survivor,
        // retried for a few seconds to ride out an election.
        let window = Duration::from_millis(3_000);
        let writable = self
            .cluster_ref()
            .probe_writable(window, Duration::from_millis(1_000))
            .await
            .is_some();
        figures.quorum_lost = Some(!writable);
        self.emitter.emit(Event::QuorumProbed {
            at_ms: self.clock.now_ms(),
            writable,
        });

        let recovery_at = figures.fault_at_ms + scenario.recovery.delay_ms;
        let now = self.clock.now_ms();
        if recovery_at > now {
            tokio::time::sleep(Duration::from_millis(recovery_at - now)).await;
        }
        // The backup job has done what it could before the recovery starts.
        if let Some(schedule) = backups {
            figures.backups = schedule.stop().await;
            let worked = figures.backups.iter().filter(|b| b.ok()).count();
            self.phase(
                "backups",
                format!("{worked} of {} periodic backups worked", figures.backups.len()),
            );
        }
        if let Some(agent) = agent.as_mut().filter(|a| a.running()) {
            if matches!(scenario.recovery.procedure, ProcedureSpec::IncrementalRestore { .. }) {
                // The restore reads what the agent saved: it writes out what it holds first.
                agent.stop(0, "stopped before the recovery").await;
            }
        }
        let procedure = procedure::for_recovery(&scenario.recovery);
        let started = self.clock.now_ms();
        figures.started_at_ms = Some(started);
        self.emitter.emit(Event::RecoveryStarted {
            at_ms: started,
            procedure: procedure.name().to_string(),
        });
        let out_dir = self.options.out_dir.clone();
        let cluster = self.cluster_mut();
        cluster.phase = "recovery".into();
        let mut cx = RecoveryContext {
            cluster,
            out_dir: &out_dir,
            down,
            fault_at_ms: figures.fault_at_ms,
            backups: figures.backups.clone(),
            app_clients: app_clients.clone(),
        };
        let result = procedure.run(&mut cx).await;
        let finished = self.clock.now_ms();
        self.flush();
        self.emitter.emit(Event::RecoveryFinished {
            at_ms: finished,
            ok: result.is_ok(),
        });
        figures.finished_at_ms = Some(finished);
        figures.outcome = Some(result?);

        let names = scenario.topology.names();
        self.cluster_mut().phase = "check".into();
        self.cluster_ref().wait_healthy(&names, Duration::from_secs(60)).await?;
        let healthy_at = self.clock.now_ms();
        figures.healthy_ms = Some(healthy_at - figures.fault_at_ms);
        self.emitter.emit(Event::AllHealthy { at_ms: healthy_at });

        tokio::time::sleep(Duration::from_millis(scenario.workload.cooldown_ms)).await;
        Ok(figures)
    }
}
