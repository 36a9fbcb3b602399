//! What a running drill tells the world. The runner emits [`Event`]s in order; reporters
//! (terminal, report files) consume them and never reach back into the runner.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cluster::RecordedCommand;
use crate::drill::check::{CheckResult, Consistency, DataLoss};
use crate::drill::measure::RecoveryFigures;
use crate::drill::series::WorkloadSeries;
use crate::etcd::known_bugs::ApplicableBug;
use crate::scenario::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The drill could not be run on this image (see `skip_reason`); not a failure.
    Skipped,
    /// The drill is still going: what `report.json` says while the run is on.
    Running,
    /// A signal, or the harness's unannounced end, stopped the drill (see `interruption`).
    Interrupted,
}

impl Outcome {
    pub fn verdict(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIPPED",
            Outcome::Running => "RUNNING",
            Outcome::Interrupted => "INTERRUPTED",
        }
    }

    /// The CLI's exit code for a run with this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass | Outcome::Skipped => 0,
            Outcome::Fail => 1,
            Outcome::Running => crate::ExitClass::HarnessBroken as u8,
            Outcome::Interrupted => crate::ExitClass::Interrupted as u8,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run_id: String,
        scenario: Box<Scenario>,
        image: String,
        seed: u64,
        out_dir: PathBuf,
        started_at: String,
    },
    /// What the image under test is, read from the image itself before any cluster starts:
    /// the etcd release, the snapshot tool, and the known bugs of that release.
    ImageInspected {
        etcd_version: String,
        snapshot_tool: String,
        bump_revision: bool,
        known_bugs: Vec<ApplicableBug>,
    },
    /// A step of the drill's timeline: cluster ready, workload started, checks begun...
    Phase {
        at_ms: u64,
        name: String,
        detail: String,
    },
    FaultInjected {
        at_ms: u64,
        action: String,
        target: String,
        members: Vec<String>,
    },
    QuorumProbed {
        at_ms: u64,
        writable: bool,
    },
    RecoveryStarted {
        at_ms: u64,
        procedure: String,
    },
    RecoveryFinished {
        at_ms: u64,
        ok: bool,
    },
    AllHealthy {
        at_ms: u64,
    },
    Command(RecordedCommand),
    /// The workload over time (throughput, latency, histogram), once the writers stopped.
    WorkloadSeries(Box<WorkloadSeries>),
    Measured {
        recovery: Box<RecoveryFigures>,
        data: Box<DataLoss>,
        consistency: Option<Box<Consistency>>,
    },
    Check(CheckResult),
    RunFinished {
        at_ms: u64,
        outcome: Outcome,
        error: Option<String>,
        /// Why the drill was skipped (outcome `skipped`).
        skip_reason: Option<String>,
        /// Endpoints of the cluster left running with `--keep`.
        kept: Option<Vec<(String, String)>>,
    },
}

/// Consumes events. Implementations must not fail the run: they report their own errors.
pub trait Reporter {
    fn on_event(&mut self, event: &Event);
}
