//! The command log of a cluster: every step it runs is recorded as the `docker`/`etcdctl`
//! command an operator would type for it (secrets masked), so a drill's log reads as a
//! runbook. Each record goes to the [`CommandSink`] the cluster was created with the moment
//! the step finishes; the sink knows the drill's phase and stamps it, and the runner's sink
//! turns the record into an event. Nothing is kept in the cluster to be collected later.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterState};
use crate::docker::runtime::ContainerSpec;
use crate::docker::shell::docker_run_line;

/// One command the drill ran, written as the equivalent command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCommand {
    /// `setup`, `fault`, `recovery` or `check`.
    pub phase: String,
    /// What the step does, in a few words.
    pub step: String,
    pub command: String,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub ok: bool,
}

/// Where a cluster's recorded commands go, stamped with the phase the drill is in.
/// Cheap to clone; every clone shares the phase.
#[derive(Clone)]
pub struct CommandSink {
    phase: Arc<Mutex<&'static str>>,
    deliver: Arc<dyn Fn(RecordedCommand) + Send + Sync>,
}

impl CommandSink {
    /// A sink that hands every command to `deliver`, starting in the `setup` phase.
    pub fn new(deliver: impl Fn(RecordedCommand) + Send + Sync + 'static) -> Self {
        CommandSink {
            phase: Arc::new(Mutex::new("setup")),
            deliver: Arc::new(deliver),
        }
    }

    /// A sink that drops what it is given: for clusters outside a drill (perf, tests).
    pub fn discard() -> Self {
        CommandSink::new(|_| {})
    }

    /// Commands from now on belong to `phase` (`setup`, `fault`, `recovery`, `check`).
    pub fn enter(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = phase;
    }

    fn phase(&self) -> &'static str {
        *self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(&self, command: RecordedCommand) {
        (self.deliver)(command);
    }
}

impl Cluster {
    /// Records a command that began at `started` and has just finished.
    pub fn record(&mut self, step: impl Into<String>, command: impl Into<String>, started: Instant, ok: bool) {
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record_span(step, command, started, duration_ms, ok);
    }

    /// Records a command that began at `started` and took `duration_ms`.
    pub fn record_span(
        &mut self,
        step: impl Into<String>,
        command: impl Into<String>,
        started: Instant,
        duration_ms: u64,
        ok: bool,
    ) {
        self.commands.send(RecordedCommand {
            phase: self.commands.phase().to_string(),
            step: step.into(),
            // No report may carry a password: mask it where commands are recorded.
            command: crate::docker::shell::mask_secrets(&self.with_credentials(command.into())),
            at_ms: self.clock.at_ms(started),
            duration_ms,
            ok,
        });
    }

    /// Records a member's start as the `docker run` that creates and starts it.
    pub fn record_member_start(
        &mut self,
        spec: &ContainerSpec,
        state: ClusterState,
        started: Instant,
        duration_ms: u64,
        ok: bool,
    ) {
        let member = super::containers::member_of(spec);
        let step = format!("start {member} (initial-cluster-state={})", state.as_str());
        let line = self.on_host(member, docker_run_line(spec, true, &[]));
        self.record_span(step, line, started, duration_ms, ok);
    }
}
