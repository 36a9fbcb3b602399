//! The measurements of a drill, computed in one place from what the runner lived through
//! (the moments of the fault, the recovery and the return to health) and from the write
//! ledger: RTO, procedure time, time to all-healthy, the longest write gap and the watch
//! figures, with the facts the recovery produced (quorum probe, procedure outcome,
//! backups, the agent's report). The result is one value the checks and reports read.

use serde::{Deserialize, Serialize};

use crate::backup::agent::AgentFigures;
use crate::backup::periodic::BackupRecord;
use crate::drill::watcher::{WatchFigures, WatchLog};
use crate::procedure::ProcedureOutcome;
use crate::workload::leases::LeaseFigures;
use crate::workload::{Ledger, NO_SPACE};

/// Recovery figures, in milliseconds of the run's monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveryFigures {
    pub procedure: String,
    /// When the first fault that took members down began.
    pub fault_at_ms: u64,
    /// When that fault had taken effect on every member it hits.
    pub fault_done_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// From the fault's start until writes resumed for good: the acknowledgement of the
    /// first write sent after the fault took effect, or, when writes stopped again for
    /// longer than [`OUTAGE_MS`] before the recovery finished, the first one after that.
    pub rto_ms: Option<u64>,
    /// From the fault's start to the first acknowledged write sent after it took effect
    /// (equal to the RTO unless the cluster served for a moment and went away again).
    pub first_write_ms: Option<u64>,
    /// Start of the procedure to the first acknowledged write sent after it.
    pub procedure_ms: Option<u64>,
    /// Fault to every member healthy.
    pub healthy_ms: Option<u64>,
    /// Why the members were not all healthy after the procedure, when they were not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<String>,
    /// The leases the workload kept alive (workloads with `leases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<LeaseFigures>,
    /// Longest time without an acknowledged write, and where it fell.
    pub max_write_gap_ms: u64,
    pub max_write_gap_at_ms: (u64, u64),
    /// Did a put with a short timeout fail on every surviving member after the faults?
    pub quorum_lost: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ProcedureOutcome>,
    /// The watch follower's figures (workloads with `watch = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchFigures>,
    /// The drill's periodic backups (scenarios with a [backup] table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupRecord>,
    /// The incremental backup agent (scenarios with an [agent] table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<DrillAgentReport>,
}

/// The agent's part of a drill's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillAgentReport {
    /// The writes a restore may lose by design: the delta period (or the full interval).
    pub rpo_bound_ms: u64,
    /// `lost at the fault`, `stopped before the recovery` or `stopped at the end`.
    pub ended: String,
    pub figures: AgentFigures,
    /// The store's chain after the agent ended, checked from its oldest full snapshot:
    /// None when whole, else why not.
    pub chain_error: Option<String>,
    /// The revision the checked chain reaches.
    pub chain_revision: i64,
}

/// The moments of a drill, in run milliseconds, as the runner lived them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Milestones {
    pub workload_started_ms: u64,
    pub workload_stopped_ms: u64,
    /// When the first fault that disrupted writes began (a fault that takes members down;
    /// for `fill-quota`, the refusal that ended it), and when it had taken effect on every
    /// member it hits. None when no fault disrupted writes.
    pub fault_began_ms: Option<u64>,
    pub fault_done_ms: Option<u64>,
    pub recovery_started_ms: Option<u64>,
    pub recovery_finished_ms: Option<u64>,
    pub healthy_at_ms: Option<u64>,
    /// When the last fault of the scenario began (0 before any).
    pub last_fault_began_ms: u64,
}

impl Milestones {
    /// When the disruption began: the first fault that took members down, or the start of
    /// the workload when none did.
    pub fn fault_at_ms(&self) -> u64 {
        self.fault_began_ms.unwrap_or(self.workload_started_ms)
    }

    /// When that fault had taken effect (the start of the workload when none did).
    pub fn fault_done_ms(&self) -> u64 {
        self.fault_done_ms.unwrap_or(self.workload_started_ms)
    }
}

/// What the recovery produced besides its moments.
#[derive(Debug, Clone, Default)]
pub struct RecoveryFacts {
    pub procedure: String,
    /// Did a put with a short timeout fail on every surviving member after the faults?
    pub quorum_lost: Option<bool>,
    pub outcome: Option<ProcedureOutcome>,
    pub backups: Vec<BackupRecord>,
    pub agent: Option<DrillAgentReport>,
    /// Why the members were not all healthy after the procedure, when they were not.
    pub unhealthy: Option<String>,
    /// What the workload's lease keepers saw.
    pub leases: Option<LeaseFigures>,
}

/// A stretch without any acknowledged write longer than this, beginning before the
/// recovery finished, means the cluster was not back yet: the RTO runs past it.
pub const OUTAGE_MS: u64 = 1_000;

/// The drill's recovery figures. Writes count as resumed only when sent after the fault
/// had taken effect; the RTO runs from the moment the fault began to the acknowledgement
/// of the first such write after which writes kept being acknowledged
/// ([`Ledger::resumed_for_good`]).
pub fn recovery_figures(
    moments: &Milestones,
    facts: RecoveryFacts,
    ledger: &Ledger,
    watch: Option<&WatchLog>,
) -> RecoveryFigures {
    let (fault_at, fault_done) = (moments.fault_at_ms(), moments.fault_done_ms());
    let first_write_ms = ledger.first_ack_sent_after(fault_done).map(|w| w.acked_ms - fault_at);
    let settled = moments.recovery_finished_ms.unwrap_or(fault_done);
    let rto_ms = ledger
        .resumed_for_good(fault_done, settled, OUTAGE_MS)
        .map(|w| w.acked_ms - fault_at);
    let procedure_ms = moments
        .recovery_started_ms
        .and_then(|start| ledger.first_ack_sent_after(start).map(|w| w.acked_ms - start));
    let gap = ledger.longest_ack_gap(moments.workload_started_ms, moments.workload_stopped_ms);
    let watch = watch.map(|log| {
        // Nothing is acknowledged while the cluster is down, so every write acknowledged
        // after the fault was made on the recovered cluster.
        let missed = ledger
            .acked
            .iter()
            .filter(|w| w.acked_ms > fault_done && !log.seen.contains(&ledger.key(w)))
            .count() as u64;
        WatchFigures {
            events: log.events,
            last_revision: log.last_revision,
            resumes: log.resumes,
            relists: log.relists,
            missed_after_recovery: missed,
        }
    });
    let mut outcome = facts.outcome;
    if let Some(upgrade) = outcome.as_mut().and_then(|o| o.upgrade.as_mut()) {
        for step in &mut upgrade.steps {
            let end = step.started_at_ms + step.healthy_after_ms.unwrap_or(0);
            let (from, to) = ledger.longest_ack_gap(step.started_at_ms, end);
            step.longest_write_gap_ms = to - from;
        }
    }
    if let Some(outcome) = outcome.as_mut() {
        for defrag in &mut outcome.defrags {
            let end = defrag.started_at_ms + defrag.took_ms;
            defrag.longest_write_gap_ms = ledger.longest_ack_gap_overlapping(defrag.started_at_ms, end);
            // A lease expires a TTL after its last renewal: one found expired up to a TTL
            // after the defragmentation ended may have been starved by it.
            if let Some(leases) = &facts.leases {
                let after = end + leases.ttl_s * 1000;
                defrag.leases_expired = leases
                    .expired_at_ms
                    .iter()
                    .filter(|at| **at >= defrag.started_at_ms && **at <= after)
                    .count() as u64;
            }
        }
        if let Some(quota) = outcome.quota.as_mut() {
            // The fault's moment is the alarm: the filler's write refused for space.
            let refused: Vec<u64> = ledger
                .failed
                .iter()
                .filter(|f| f.kind == NO_SPACE)
                .map(|f| f.failed_ms)
                .collect();
            quota.refused_writes = refused.len() as u64;
            quota.alarm_to_first_refusal_ms = refused.iter().min().map(|at| at.saturating_sub(fault_at));
            quota.read_only_ms = first_write_ms;
        }
    }
    RecoveryFigures {
        procedure: facts.procedure,
        fault_at_ms: fault_at,
        fault_done_ms: fault_done,
        started_at_ms: moments.recovery_started_ms,
        finished_at_ms: moments.recovery_finished_ms,
        rto_ms,
        first_write_ms,
        procedure_ms,
        healthy_ms: moments.healthy_at_ms.map(|at| at - fault_at),
        unhealthy: facts.unhealthy,
        leases: facts.leases,
        max_write_gap_ms: gap.1 - gap.0,
        max_write_gap_at_ms: gap,
        quorum_lost: facts.quorum_lost,
        outcome,
        watch,
        backups: facts.backups,
        agent: facts.agent,
    }
}
