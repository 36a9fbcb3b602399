//! `maintenance`: compact the key space to the current revision, then defragment every
//! member, recording each member's DB size (as `etcdctl endpoint status` shows it) after
//! every step and each defragmentation's moment and length. Two policies: one member at a
//! time with the leader last (the default), or all members at once. Writes must go on
//! throughout. The compaction and defragmentation steps are shared with
//! `quota-recovery`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use serde::{Deserialize, Serialize};

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::scenario::DefragPolicy;

/// How long one compaction or defragmentation may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Maintenance {
    pub defrag: DefragPolicy,
}

/// Every member's DB size after one step of a runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeStep {
    pub step: String,
    /// When the step ended, in run milliseconds.
    pub at_ms: u64,
    pub sizes: BTreeMap<String, i64>,
}

/// One member's defragmentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefragStep {
    pub member: String,
    /// The member led the cluster when the defragmentations began.
    pub leader: bool,
    pub started_at_ms: u64,
    pub took_ms: u64,
    /// The member's DB size before and after, as `endpoint status` reported it (None
    /// when it did not answer).
    pub size_before: Option<i64>,
    pub size_after: Option<i64>,
    /// The longest time between two acknowledged writes that overlaps the
    /// defragmentation (from the ledger, once the writers have stopped).
    pub longest_write_gap_ms: u64,
    /// Leases kept alive by the workload that expired while it ran, or within a TTL after.
    pub leases_expired: u64,
}

impl Procedure for Maintenance {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let cluster = &mut *cx.cluster;
            let mut outcome = ProcedureOutcome::default();
            compact_and_defragment(cluster, &mut outcome, self.defrag, "before").await?;
            wait_writable(cluster).await?;
            Ok(outcome)
        })
    }
}

/// The shared middle of `maintenance` and `quota-recovery`: every member's DB size (as
/// `first_step`), compaction to the current revision, the sizes again, the
/// defragmentations with `policy`, the sizes once more; the outcome gets each step's sizes,
/// each member's defragmentation and its size before and after.
pub(super) async fn compact_and_defragment(
    cluster: &mut Cluster,
    outcome: &mut ProcedureOutcome,
    policy: DefragPolicy,
    first_step: &str,
) -> Result<()> {
    record_sizes(cluster, outcome, first_step).await;
    compact_to_current(cluster).await?;
    record_sizes(cluster, outcome, "after compaction").await;
    let defrags = defragment(cluster, policy).await?;
    for d in &defrags {
        if let (Some(before), Some(after)) = (d.size_before, d.size_after) {
            outcome.db_sizes.insert(d.member.clone(), [before, after]);
        }
        outcome.members.push(d.member.clone());
    }
    outcome.defrags = defrags;
    record_sizes(cluster, outcome, "after defragmentation").await;
    Ok(())
}

/// Appends every member's DB size now to the outcome's size steps.
pub(super) async fn record_sizes(cluster: &Cluster, outcome: &mut ProcedureOutcome, step: &str) {
    let sizes = cluster.db_sizes().await;
    outcome.size_steps.push(SizeStep {
        step: step.to_string(),
        at_ms: cluster.clock.now_ms(),
        sizes,
    });
}

/// Compacts the key space to the current revision (physically); returns the revision.
async fn compact_to_current(cluster: &mut Cluster) -> Result<i64> {
    let via = cluster.healthy_member(&[]).await?;
    let revision = via.status(STEP_TIMEOUT).await?.revision;
    let started = Instant::now();
    let compacted = via.compact(revision, STEP_TIMEOUT).await;
    let command = format!("etcdctl --endpoints={} compact {revision} --physical", via.endpoint);
    cluster.record(
        format!("compact the key space to the current revision {revision}"),
        command,
        started,
        compacted.is_ok(),
    );
    compacted.map(|()| revision)
}

/// Defragments every member with `policy`: one at a time, the member leading at the
/// start last (a leader busy defragmenting holds up the whole cluster, and it may lose its
/// leadership meanwhile), or all at once. Each defragmentation is recorded as its own step.
async fn defragment(cluster: &mut Cluster, policy: DefragPolicy) -> Result<Vec<DefragStep>> {
    let leader = cluster.leader().await;
    let mut members: Vec<(String, crate::etcd::MemberClient)> = cluster
        .members
        .iter()
        .map(|m| (m.spec.name.clone(), m.client.clone()))
        .collect();
    // Followers first, in topology order, then the leader.
    members.sort_by_key(|(name, _)| Some(name) == leader.as_ref());
    let clock = cluster.clock;
    let one = |name: String, client: crate::etcd::MemberClient| {
        let is_leader = Some(&name) == leader.as_ref();
        async move {
            let size_before = client.status(STEP_TIMEOUT).await.map(|s| s.db_size).ok();
            let started = Instant::now();
            let started_at_ms = clock.now_ms();
            let result = client.defragment(STEP_TIMEOUT).await;
            let took_ms = started.elapsed().as_millis() as u64;
            let size_after = client.status(STEP_TIMEOUT).await.map(|s| s.db_size).ok();
            let step = DefragStep {
                member: name,
                leader: is_leader,
                started_at_ms,
                took_ms,
                size_before,
                size_after,
                ..DefragStep::default()
            };
            (step, client.endpoint.clone(), started, result)
        }
    };
    let done = match policy {
        DefragPolicy::OneAtATime => {
            let mut done = Vec::new();
            for (name, client) in members {
                let finished = one(name, client).await;
                let failed = finished.3.is_err();
                record_defrag(cluster, &finished, "");
                done.push(finished);
                if failed {
                    break;
                }
            }
            done
        }
        DefragPolicy::AllAtOnce => {
            let started = Instant::now();
            let done = join_all(members.into_iter().map(|(name, client)| one(name, client))).await;
            // The runbook starts them together, in the background, and waits for all.
            for finished in &done {
                record_defrag(cluster, finished, " &");
            }
            cluster.record(
                "wait for every defragmentation",
                "wait",
                started,
                done.iter().all(|d| d.3.is_ok()),
            );
            done
        }
    };
    let mut steps = Vec::new();
    for (step, _, _, result) in done {
        result?;
        steps.push(step);
    }
    Ok(steps)
}

/// Records one member's defragmentation; `background` is `" &"` when the runbook starts
/// it beside the others.
fn record_defrag(
    cluster: &mut Cluster,
    (step, endpoint, started, result): &(DefragStep, String, Instant, Result<()>),
    background: &str,
) {
    let role = if step.leader { " (the leader)" } else { "" };
    let size = |s: Option<i64>| s.map(|b| b.to_string()).unwrap_or_else(|| "?".into());
    cluster.record_span(
        format!(
            "defragment {}{role}: {} -> {} bytes",
            step.member,
            size(step.size_before),
            size(step.size_after)
        ),
        format!("etcdctl --endpoints={endpoint} defrag --command-timeout=120s{background}"),
        *started,
        step.took_ms,
        result.is_ok(),
    );
}
