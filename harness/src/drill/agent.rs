//! The backup agent inside a drill: started beside the cluster with its store in the run's
//! folder, lost with the faults or stopped at the end, and the checks that prove what it
//! promises: its chain is whole, it moved on when its member died, it saved every
//! acknowledged write, and a restore from it kept every write it had saved.

use std::path::Path;
use std::time::Duration;

use crate::backup::agent::{Agent, Verifier};
use crate::backup::config::DrillAgent;
use crate::backup::replay;
use crate::backup::store::{BackupStore, StoreLocation};
use crate::cluster::Cluster;
use crate::drill::check::CheckResult;
use crate::drill::measure::DrillAgentReport;
use crate::error::{Error, Result};
use crate::procedure::{IncrementalRestoreInfo, AGENT_STORE_DIR};
use crate::workload::Ledger;

/// An agent running beside a drill's cluster.
pub struct DrillAgentRun {
    pub plan: DrillAgent,
    agent: Option<Agent>,
    store: BackupStore,
    pub report: DrillAgentReport,
}

impl DrillAgentRun {
    /// Starts the agent on the cluster's members and waits for its first full snapshot.
    pub async fn start(plan: &DrillAgent, cluster: &Cluster, out_dir: &Path) -> Result<DrillAgentRun> {
        let store = BackupStore::open(StoreLocation::Local(out_dir.join(AGENT_STORE_DIR)))?;
        let names = cluster.topology.names();
        let first = plan
            .watch
            .as_ref()
            .and_then(|w| names.iter().position(|n| n == w))
            .unwrap_or(0);
        let verifier = Verifier {
            docker: cluster.docker.clone(),
            image: cluster.image.clone(),
            run_id: cluster.run_id.clone(),
        };
        let agent = Agent::start(
            plan.config.clone(),
            cluster.clients(),
            first,
            store.clone(),
            verifier,
            out_dir.join("agent-scratch"),
            cluster.clock,
        );
        if !agent.wait_first_full(Duration::from_secs(60)).await {
            let errors = agent.figures().errors.join("; ");
            return Err(Error::Procedure {
                step: "the backup agent's first full snapshot".into(),
                message: format!("none within 60 s: {errors}"),
            });
        }
        Ok(DrillAgentRun {
            report: DrillAgentReport {
                rpo_bound_ms: plan.config.rpo_bound_ms(),
                ..DrillAgentReport::default()
            },
            plan: plan.clone(),
            agent: Some(agent),
            store,
        })
    }

    pub fn running(&self) -> bool {
        self.agent.is_some()
    }

    /// The agent dies at once: what it had not written out is lost.
    pub async fn lose(&mut self) {
        if let Some(agent) = self.agent.take() {
            self.report.figures = agent.abort().await;
            self.report.ended = "lost at the fault".into();
        }
    }

    /// The agent writes out what it holds (after the watch delivered `drain_to`) and ends.
    pub async fn stop(&mut self, drain_to: i64, when: &str) {
        if let Some(agent) = self.agent.take() {
            self.report.figures = agent.stop(drain_to).await;
            self.report.ended = when.to_string();
        }
    }

    /// Checks the chain the agent left in its store, from the oldest full snapshot.
    pub async fn check_chain(&mut self) {
        let oldest = self
            .store
            .catalog()
            .await
            .ok()
            .and_then(|c| c.fulls.first().map(|f| f.revision));
        match replay::prepare(&self.store, oldest, false).await {
            Ok(p) => {
                self.report.chain_error = None;
                self.report.chain_revision = p.target_revision();
            }
            Err(e) => self.report.chain_error = Some(e.to_string()),
        }
    }

    /// The agent's checks, once the data was read back.
    pub fn checks(
        &self,
        ledger: &Ledger,
        present: &crate::drill::check::ReadBack,
        restore: Option<&IncrementalRestoreInfo>,
        fault_at_ms: u64,
        faulted: &[String],
    ) -> Vec<CheckResult> {
        let mut checks = Vec::new();
        let r = &self.report;
        // A drill that damages the chain on purpose judges the restore's refusal instead.
        let damaged = restore.is_some_and(|i| i.damaged.is_some());
        if self.plan.config.delta_period_ms.is_some() && !damaged {
            checks.push(CheckResult::new(
                "agent_chain_whole",
                r.chain_error.is_none(),
                "the agent's deltas continue each other with no gap or overlap, hashes and revisions right",
                match &r.chain_error {
                    None => format!("whole up to revision {}", r.chain_revision),
                    Some(e) => e.clone(),
                },
            ));
        }
        let watched = self.plan.watch.clone().unwrap_or_default();
        if r.ended == "stopped at the end" && faulted.contains(&watched) && self.plan.config.delta_period_ms.is_some() {
            checks.push(CheckResult::new(
                "agent_moved_on",
                r.figures.watched.len() > 1,
                format!("the watch moves off {watched} when it dies"),
                format!(
                    "watched {} ({} restarts)",
                    r.figures.watched.join(" then "),
                    r.figures.watch_restarts
                ),
            ));
            let newest = ledger.acked.iter().map(|w| w.revision).max().unwrap_or(0);
            checks.push(CheckResult::new(
                "agent_saved_every_write",
                r.chain_revision >= newest && r.chain_error.is_none(),
                format!("the chain reaches revision {newest}, the newest acknowledged write"),
                format!("it reaches revision {}", r.chain_revision),
            ));
        }
        if let Some(info) = restore {
            // Writes acknowledged before the fault, against the revision the restore reached:
            // everything up to it must be back, and only writes after it may be missing.
            let reached = info.replay.revision;
            let before = ledger.acked.iter().filter(|w| w.acked_ms <= fault_at_ms);
            let (mut kept, mut missing_saved, mut lost_after) = (0u64, 0u64, 0u64);
            for w in before {
                let here = present.contains(&ledger.key(w));
                match (w.revision <= reached, here) {
                    (true, true) => kept += 1,
                    (true, false) => missing_saved += 1,
                    (false, false) => lost_after += 1,
                    (false, true) => {}
                }
            }
            checks.push(CheckResult::new(
                "restore_kept_saved_writes",
                missing_saved == 0,
                format!("every write acknowledged up to revision {reached} (what the backup held) is back"),
                format!("{kept} back, {missing_saved} missing; {lost_after} lost after revision {reached}"),
            ));
            if let Some(damaged) = &info.damaged {
                let file = damaged
                    .split(": ")
                    .nth(1)
                    .and_then(|d| d.split(' ').next())
                    .unwrap_or("");
                let named = info
                    .refusal
                    .as_deref()
                    .is_some_and(|e| !file.is_empty() && e.contains(file));
                checks.push(CheckResult::new(
                    "broken_chain_refused",
                    named,
                    format!("a restore of the damaged chain is refused, naming {file}"),
                    info.refusal.clone().unwrap_or_else(|| "NOT refused".into()),
                ));
                checks.push(CheckResult::new(
                    "stopped_at_last_good",
                    info.replay.stopped_early.is_some(),
                    "the restore says where it stopped",
                    format!(
                        "revision {} of the agent's {}: {}",
                        reached,
                        info.replay.head.map(|h| h.to_string()).unwrap_or_else(|| "?".into()),
                        info.replay
                            .stopped_early
                            .clone()
                            .unwrap_or_else(|| "did not stop early".into())
                    ),
                ));
            }
        }
        checks
    }
}
