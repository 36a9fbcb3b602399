//! Runs one drill from start to verdict: start the topology, write, inject the faults,
//! probe quorum, run the recovery procedure, wait for health, check the data, and emit
//! every step as an [`Event`]. Events flow one way, through one channel, to the reporters;
//! the cluster's recorded commands join that channel the moment they run (its
//! [`CommandSink`]). The run's Docker objects are removed at the end, whatever happened,
//! unless the user asked to keep the cluster.

use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backup::periodic::BackupSchedule;
use crate::clock::Clock;
use crate::cluster::flavor::FlavorKind;
use crate::cluster::{Cluster, ClusterImage, CommandSink};
use crate::docker::hosts::HostRuntimes;
use crate::docker::image::DEFAULT_IMAGE;
use crate::docker::runtime::{new_run_id, DockerRuntime, RunGuard};
use crate::drill::agent::DrillAgentRun;
use crate::drill::check::{self, CheckResult};
use crate::drill::event::{Event, Outcome, Reporter};
use crate::drill::measure::{self, Milestones, RecoveryFacts};
use crate::drill::series::WorkloadSeries;
use crate::drill::watcher::WatchFollower;
use crate::error::{Error, Result};
use crate::etcd::security::RootPassword;
use crate::etcd::ClientSet;
use crate::fault::{ClusterView, Target};
use crate::procedure::{self, RecoveryContext};
use crate::scenario::{ProcedureSpec, Scenario};
use crate::workload::leases::LeaseKeepers;
use crate::workload::registers::RegisterClients;
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
    /// Why the run has no verdict on etcd, when the drill broke down for a reason of the
    /// machine or the harness (a Docker call, a file, the cleanup), not of etcd.
    pub broke_down: Option<crate::ExitClass>,
}

impl RunSummary {
    /// The CLI's exit code for this run: the breakdown's class, else the verdict's.
    pub fn exit_code(&self) -> u8 {
        crate::ExitClass::code(self.broke_down, self.outcome.exit_code())
    }
}

/// How long the watcher has, once the writers stop, to reach the newest acknowledged write.
const WATCH_CATCH_UP: Duration = Duration::from_secs(10);

/// How long the members have after the procedure to all answer a linearizable read.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// A seed for runs that were not given one.
pub fn new_seed() -> u64 {
    rand::random::<u64>() >> 11
}

/// The sending end of the run's one event stream.
#[derive(Clone)]
struct Emitter {
    events: tokio::sync::mpsc::UnboundedSender<Event>,
}

impl Emitter {
    fn emit(&self, event: Event) {
        // The reporters outlive every sender; a send can only fail once the run is over.
        let _ = self.events.send(event);
    }

    /// A command sink that turns every recorded command into an event as it runs.
    fn command_sink(&self) -> CommandSink {
        let events = self.events.clone();
        CommandSink::new(move |command| {
            let _ = events.send(Event::Command(command));
        })
    }
}

/// Runs `scenario`. Returns Err only when the drill could not start (no Docker, missing
/// image, unwritable output folder); a drill that breaks down midway is a failed run.
pub async fn run(
    scenario: &Scenario,
    options: &RunOptions,
    mut reporters: Vec<&mut dyn Reporter>,
) -> Result<RunSummary> {
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    // The reporters hear every event in order, while the drill goes on: both run in this
    // task, so a reporter need not be Send.
    let deliver = async move {
        while let Some(event) = received.recv().await {
            let last = matches!(event, Event::RunFinished { .. });
            for reporter in reporters.iter_mut() {
                reporter.on_event(&event);
            }
            if last {
                break;
            }
        }
    };
    let (summary, ()) = tokio::join!(play(scenario, options, Emitter { events }), deliver);
    summary
}

async fn play(scenario: &Scenario, options: &RunOptions, emitter: Emitter) -> Result<RunSummary> {
    let root_password =
        crate::etcd::security::password_for(&scenario.name, scenario.security.auth, options.root_password.clone())?;
    // Every host's daemon, connected before anything is created: a host that does not
    // answer stops the run here. The run's image must be on each of them.
    let hosts = HostRuntimes::connect(DockerRuntime::connect().await?, &scenario.topology).await?;
    let docker = hosts.home().clone();
    hosts.ensure_image(&options.image, DEFAULT_IMAGE).await?;
    if scenario.splits_hosts() {
        for (endpoint, daemon) in hosts.daemons() {
            if !daemon.image_exists(crate::docker::netfault::NETFAULT_IMAGE).await? {
                let daemon = match endpoint.is_empty() {
                    true => "this machine's daemon".to_string(),
                    false => format!("the daemon at {endpoint}"),
                };
                return Err(Error::ImageUnusable {
                    image: crate::docker::netfault::NETFAULT_IMAGE.into(),
                    message: format!(
                        "it is not on {daemon}, and a partition between hosts on host networking runs it there: build it with `etcd-drill image build --netfault`, and for a remote host run with `--copy-images` (or `docker save {0} | DOCKER_HOST=... docker load`)",
                        crate::docker::netfault::NETFAULT_IMAGE
                    ),
                });
            }
        }
    }
    let upgrade = match &scenario.recovery.procedure {
        ProcedureSpec::RollingUpgrade(plan) => Some(plan),
        _ => None,
    };
    if let Some(plan) = upgrade {
        hosts.ensure_image(&plan.from_image, &plan.from_image).await?;
    }
    std::fs::create_dir_all(&options.out_dir).map_err(|e| Error::InvalidArgument {
        argument: "--out".into(),
        message: format!("cannot create {}: {e}", options.out_dir.display()),
    })?;
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let mut guard = RunGuard::new(&run_id).with_daemons(crate::docker::hosts::remote_endpoints(&scenario.topology));
    let clock = Clock::start();
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
    if let Some(tools) = &image.tools {
        emitter.emit(Event::ImageInspected {
            etcd_version: tools.version.clone(),
            snapshot_tool: tools.snapshot_tool.binary().to_string(),
            bump_revision: tools.bump_revision,
            known_bugs: crate::etcd::known_bugs::applicable_to(&tools.version),
        });
    }
    // A rolling upgrade starts the members on its `from_image` and moves them to the
    // run's image; every other drill runs the run's image throughout.
    let cluster_image = match upgrade {
        None => Ok(image.clone()),
        Some(plan) => ClusterImage::inspect(&docker, &plan.from_image, options.flavor, options.user.clone(), &run_id)
            .await
            .map(|from| ClusterImage {
                root_password: image.root_password.clone(),
                tls: image.tls,
                ..from
            }),
    };
    let cluster_image = match cluster_image {
        Ok(cluster_image) => cluster_image,
        Err(e) => {
            let _ = docker.remove_run(Some(&run_id)).await;
            return Err(e);
        }
    };
    let unsupported = image
        .tools
        .as_ref()
        .and_then(|tools| crate::procedure::unsupported(&scenario.recovery, tools, &image.flavor, &options.image))
        .or_else(|| upgrade.and_then(|_| crate::procedure::upgrade_unsupported(&cluster_image, &image)));
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
            broke_down: None,
        });
    }

    let mut drill = Drill {
        scenario,
        options,
        image: &cluster_image,
        run_image: &image,
        run_id: run_id.clone(),
        clock,
        commands: emitter.command_sink(),
        emitter: emitter.clone(),
        cluster: None,
        checks: Vec::new(),
    };
    let result = drill.drive(hosts.clone()).await;
    let checks_failed = drill.checks.iter().any(|c| !c.passed);
    let kept = match (&drill.cluster, options.keep) {
        (Some(cluster), true) => Some(cluster.endpoints()),
        _ => None,
    };
    // A kept cluster with TLS is of use only with its client certificate: the run's CA,
    // the client certificate and its key go into the report folder (the key readable by
    // the owner only), for etcdctl and `perf`/`backup --cacert --cert --key`.
    if let (Some(cluster), true) = (&drill.cluster, options.keep) {
        if let Some(tls) = &cluster.tls {
            let dir = options.out_dir.join("tls");
            match tls.write_client_files(&dir) {
                Ok(()) => emitter.emit(Event::Phase {
                    at_ms: clock.now_ms(),
                    name: "kept-tls".into(),
                    detail: format!(
                        "client files for the kept cluster: {0}/ca.crt, {0}/client.crt, {0}/client.key",
                        dir.display()
                    ),
                }),
                Err(e) => emitter.emit(Event::Phase {
                    at_ms: clock.now_ms(),
                    name: "kept-tls".into(),
                    detail: format!("the client files could not be written: {e}"),
                }),
            }
        }
    }
    drop(drill);

    let cleanup = if options.keep {
        docker.mark_kept(&run_id).await
    } else {
        emitter.emit(Event::Phase {
            at_ms: clock.now_ms(),
            name: "cleanup".into(),
            detail: "removing the run's containers, networks and volumes".into(),
        });
        hosts.remove_run(Some(&run_id)).await.map(|_| ())
    };
    if cleanup.is_ok() {
        guard.disarm();
    }
    let error = match (&result, &cleanup) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(()), Err(e)) => Some(format!("cleanup failed: {e}")),
        _ => None,
    };
    let broke_down = match (&result, &cleanup) {
        (Err(e), _) => Some(e.exit_class()).filter(|c| *c != crate::ExitClass::DrillFailed),
        (Ok(()), Err(_)) => Some(crate::ExitClass::HarnessBroken),
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
        broke_down,
    })
}

struct Drill<'a> {
    scenario: &'a Scenario,
    options: &'a RunOptions,
    /// The image the cluster starts on (a rolling upgrade's `from_image`, else the run's).
    image: &'a ClusterImage,
    /// The run's image (`--image`).
    run_image: &'a ClusterImage,
    run_id: String,
    clock: Clock,
    emitter: Emitter,
    /// The cluster's command sink; the drill tells it which phase it is in.
    commands: CommandSink,
    cluster: Option<Cluster>,
    checks: Vec<CheckResult>,
}

impl Drill<'_> {
    fn phase(&mut self, name: &str, detail: impl Into<String>) {
        self.emitter.emit(Event::Phase {
            at_ms: self.clock.now_ms(),
            name: name.to_string(),
            detail: detail.into(),
        });
    }

    fn check(&mut self, check: CheckResult) {
        self.emitter.emit(Event::Check(check.clone()));
        self.checks.push(check);
    }

    async fn drive(&mut self, hosts: HostRuntimes) -> Result<()> {
        let scenario = self.scenario;
        let mut rng = ChaCha8Rng::seed_from_u64(self.options.seed);

        let flavor = &self.image.flavor;
        let tools = self.image.tools.as_ref();
        self.phase(
            "cluster-starting",
            format!(
                "{} members from {} ({} layout{}, etcd {}, snapshots restored with {})",
                scenario.topology.len(),
                self.image.name,
                flavor.kind.as_str(),
                flavor.user.as_ref().map(|u| format!(", uid {u}")).unwrap_or_default(),
                tools.map(|t| t.version.as_str()).unwrap_or("unknown"),
                tools.map(|t| t.snapshot_tool.binary()).unwrap_or("unknown"),
            ),
        );
        let created = Cluster::create(
            hosts,
            &self.run_id,
            self.image,
            &scenario.topology,
            &scenario.etcd,
            self.clock,
            self.commands.clone(),
        )
        .await;
        let cluster = created?;
        self.cluster = Some(cluster);
        self.phase("cluster-ready", "every member answers a linearizable read");
        if let Some(seed) = &scenario.seed {
            check::write_seed(self.cluster_ref(), seed).await?;
            self.phase(
                "seeded",
                format!("{} application keys under {}", seed.keys, seed.prefix),
            );
        }

        if let Some(history) = scenario.history {
            let puts = self
                .cluster_mut()
                .grow_history(history.bytes, history.keys, history.value_size)
                .await?;
            let sizes = self.cluster_ref().db_sizes().await;
            let largest = sizes.values().copied().max().unwrap_or(0);
            self.phase(
                "history-written",
                format!(
                    "{puts} values of {} KiB over {} keys; largest DB {} MiB",
                    history.value_size / 1024,
                    history.keys,
                    largest >> 20
                ),
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
        let leases = (scenario.workload.leases > 0).then(|| {
            LeaseKeepers::start(
                scenario.workload.leases,
                scenario.workload.lease_ttl_s,
                format!("/etcd-drill/{}-leases/", self.run_id),
                app_clients.clone(),
                self.clock,
            )
        });
        let registers = (scenario.workload.registers > 0).then(|| {
            RegisterClients::start(
                scenario.workload.registers,
                &format!("/etcd-drill/{}-registers/", self.run_id),
                app_clients.clone(),
                Duration::from_millis(scenario.workload.put_timeout_ms),
                self.options.seed,
                self.clock.started(),
            )
        });
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
        let register_history = match registers {
            Some(clients) => Some(clients.stop().await),
            None => None,
        };
        let newest_acked = ledger.acked.iter().map(|w| w.revision).max().unwrap_or(0);
        if let Some(agent) = agent.as_mut() {
            agent.stop(newest_acked, "stopped at the end").await;
            agent.check_chain().await;
        }
        // The watcher gets a moment to reach the newest acknowledged write: whatever it has
        // not seen by then, it missed.
        let watch_log = match follower {
            Some(follower) => Some(follower.stop_once_caught_up(newest_acked, WATCH_CATCH_UP).await),
            None => None,
        };
        let workload_stopped = self.clock.now_ms();
        // The keepers stop after the writers' end is taken: stopping them (a last
        // check, a revoke) takes a moment that would otherwise stretch the writers'
        // span, and with it the last write gap.
        let lease_figures = match leases {
            Some(keepers) => Some(keepers.stop().await),
            None => None,
        };
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
        if let Some(history) = &register_history {
            check::write_history(history, &self.options.out_dir.join("history.jsonl"))?;
        }
        let (mut moments, mut facts) = outcome?;
        moments.workload_stopped_ms = workload_stopped;
        facts.agent = agent.as_ref().map(|a| a.report.clone());
        facts.leases = lease_figures;
        let figures = measure::recovery_figures(&moments, facts, &ledger, watch_log.as_ref());

        self.phase("checking", "reading every acknowledged key back");
        let present = check::read_back(self.cluster_ref(), &ledger.prefix).await?;
        let mut data = check::account_data_loss(&ledger, &present);
        let agent_checks = match &agent {
            Some(agent) => {
                let faulted: Vec<String> = scenario
                    .faults
                    .iter()
                    .flat_map(|f| match &f.target {
                        crate::fault::Target::Members(m) => m.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                let restore = figures.outcome.as_ref().and_then(|o| o.incremental.as_ref());
                agent.checks(&ledger, &present, restore, figures.fault_at_ms, &faulted)
            }
            None => Vec::new(),
        };
        if let Some(seed) = &scenario.seed {
            let app_keys = check::read_back(self.cluster_ref(), &seed.prefix).await?;
            (data.app_keys_expected, data.app_keys_missing) = check::account_seed(seed, &app_keys);
        }
        if scenario.security.auth {
            let auth = check::check_auth(self.cluster_mut()).await;
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
        if let (Some(expected), Some(leases)) = (scenario.expect.lease_expiry, &figures.leases) {
            self.check(check::check_lease_expiry(&leases.judged, expected));
        }
        if let (Some(expected), Some(log)) = (scenario.expect.watch_guarantees, &watch_log) {
            self.check(check::check_watch(
                &log.responses,
                log.catch_up,
                &ledger,
                &present,
                expected,
            ));
        }
        if let Some(history) = &register_history {
            // A restore from a snapshot may lose acknowledged writes, the registers' too:
            // their history is judged up to the last fault before it.
            let cut_us = scenario
                .recovery
                .procedure
                .may_lose_writes()
                .then(|| moments.last_fault_began_ms.saturating_mul(1_000));
            let (result, _) = check::check_registers(history, cut_us);
            self.check(result);
            self.check(check::check_serializable_reads(history, cut_us));
        }
        Ok(())
    }

    fn cluster_ref(&self) -> &Cluster {
        self.cluster.as_ref().expect("the cluster exists once created")
    }

    fn cluster_mut(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("the cluster exists once created")
    }

    /// Is the cluster still writable? A put with a short timeout on every survivor,
    /// retried for a few seconds to ride out an election. Not asked when a fault keeps
    /// every member up and refusing writes (a full quota): quorum is not in question.
    async fn probe_quorum(&mut self, facts: &mut RecoveryFacts) {
        let refuses_with_quorum = self
            .scenario
            .faults
            .iter()
            .any(|f| f.action.disrupts() && !f.action.takes_members_down());
        if refuses_with_quorum {
            return;
        }
        let window = Duration::from_millis(3_000);
        let writable = self
            .cluster_ref()
            .probe_writable(window, Duration::from_millis(1_000))
            .await
            .is_some();
        facts.quorum_lost = Some(!writable);
        self.emitter.emit(Event::QuorumProbed {
            at_ms: self.clock.now_ms(),
            writable,
        });
    }

    /// Warm-up, faults, quorum probe, outage, procedure, health. Returns the moments it
    /// lived through and what the recovery produced; the figures come from them and the
    /// ledger once the writers have stopped.
    async fn fault_and_recover(
        &mut self,
        rng: &mut ChaCha8Rng,
        workload_started: u64,
        backups: Option<BackupSchedule>,
        app_clients: &ClientSet,
        mut agent: Option<&mut DrillAgentRun>,
    ) -> Result<(Milestones, RecoveryFacts)> {
        let scenario = self.scenario;
        tokio::time::sleep(Duration::from_millis(scenario.workload.warmup_ms)).await;
        let mut moments = Milestones {
            workload_started_ms: workload_started,
            ..Milestones::default()
        };
        let mut facts = RecoveryFacts {
            procedure: scenario.recovery.procedure.name().to_string(),
            ..RecoveryFacts::default()
        };
        let mut down: Vec<String> = Vec::new();
        self.commands.enter("fault");
        for fault in &scenario.faults {
            let mut delay = Duration::from_millis(fault.delay_ms);
            if fault.action.brings_members_back() && moments.fault_began_ms.is_some() && facts.quorum_lost.is_none() {
                // Whether quorum held is asked while the faults hold, before one is undone
                // (a host coming back, say), within the delay before the undo.
                let probing = std::time::Instant::now();
                self.probe_quorum(&mut facts).await;
                delay = delay.saturating_sub(probing.elapsed());
            }
            tokio::time::sleep(delay).await;
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
            moments.last_fault_began_ms = began_ms;
            let members = fault.apply(self.cluster_mut(), targets, &view.running).await?;
            // The disruption counts from the moment the fault began; writes count as
            // resumed only when sent after it had taken effect on every member it hits.
            let at_ms = self.clock.now_ms();
            if fault.action.disrupts() {
                let began_ms = if fault.action.disrupts_when_done() {
                    at_ms
                } else {
                    began_ms
                };
                moments.fault_began_ms.get_or_insert(began_ms);
                moments.fault_done_ms.get_or_insert(at_ms);
            }
            if fault.action.takes_members_down() {
                for m in &members {
                    if !down.contains(m) {
                        down.push(m.clone());
                    }
                }
            } else if fault.action.brings_members_back() {
                down.retain(|d| !members.contains(d));
            }
            self.emitter.emit(Event::FaultInjected {
                at_ms,
                action: fault.action.as_str().to_string(),
                target: fault.target.describe(),
                members,
            });
        }

        if facts.quorum_lost.is_none() {
            self.probe_quorum(&mut facts).await;
        }

        let fault_at_ms = moments.fault_at_ms();
        let recovery_at = fault_at_ms + scenario.recovery.delay_ms;
        let now = self.clock.now_ms();
        if recovery_at > now {
            tokio::time::sleep(Duration::from_millis(recovery_at - now)).await;
        }
        // The backup job has done what it could before the recovery starts.
        if let Some(schedule) = backups {
            facts.backups = schedule.stop().await;
            let worked = facts.backups.iter().filter(|b| b.ok()).count();
            self.phase(
                "backups",
                format!("{worked} of {} periodic backups worked", facts.backups.len()),
            );
        }
        if let Some(agent) = agent.as_mut().filter(|a| a.running()) {
            if matches!(scenario.recovery.procedure, ProcedureSpec::IncrementalRestore { .. }) {
                // The restore reads what the agent saved: it writes out what it holds first.
                agent.stop(0, "stopped before the recovery").await;
            }
        }
        let procedure = procedure::for_recovery(&scenario.recovery, self.run_image);
        let started = self.clock.now_ms();
        moments.recovery_started_ms = Some(started);
        self.emitter.emit(Event::RecoveryStarted {
            at_ms: started,
            procedure: scenario.recovery.procedure.name().to_string(),
        });
        let out_dir = self.options.out_dir.clone();
        self.commands.enter("recovery");
        let cluster = self.cluster_mut();
        let mut cx = RecoveryContext {
            cluster,
            out_dir: &out_dir,
            down,
            fault_at_ms,
            backups: facts.backups.clone(),
            app_clients: app_clients.clone(),
        };
        let result = procedure.run(&mut cx).await;
        let finished = self.clock.now_ms();
        self.emitter.emit(Event::RecoveryFinished {
            at_ms: finished,
            ok: result.is_ok(),
        });
        moments.recovery_finished_ms = Some(finished);
        facts.outcome = Some(result?);

        let names = scenario.topology.names();
        self.commands.enter("check");
        // A member that never comes back is the checks' finding (all_healthy, and the
        // member list or HashKV say which), not a breakdown of the drill.
        match self.cluster_ref().wait_healthy(&names, HEALTHY_TIMEOUT).await {
            Ok(()) => {
                let healthy_at = self.clock.now_ms();
                moments.healthy_at_ms = Some(healthy_at);
                self.emitter.emit(Event::AllHealthy { at_ms: healthy_at });
            }
            Err(e @ Error::Timeout { .. }) => {
                let found = self.cluster_ref().explain_unhealthy().await;
                facts.unhealthy = Some(match found.is_empty() {
                    true => e.to_string(),
                    false => format!("{e}; {}", found.join("; ")),
                });
            }
            Err(e) => return Err(e),
        }

        tokio::time::sleep(Duration::from_millis(scenario.workload.cooldown_ms)).await;
        Ok((moments, facts))
    }
}
