//! Recovery procedures: each one does what an operator's runbook says, step by step,
//! against the live cluster, and every step is recorded as the command an operator
//! would type. [`Procedure`] is the seam where drills differ.

mod force_new_cluster;
mod incremental_restore;
mod maintenance;
mod member_replace;
mod purge_member;
mod quota_recovery;
mod repair;
mod restart;
mod rolling_upgrade;
mod snapshot_restore;

use std::path::Path;
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use serde::{Deserialize, Serialize};

pub use force_new_cluster::ForceNewCluster;
pub use incremental_restore::{IncrementalRestore, IncrementalRestoreInfo, AGENT_STORE_DIR};
pub use maintenance::{DefragStep, Maintenance, SizeStep};
pub use member_replace::MemberReplace;
pub use purge_member::PurgeMember;
pub use quota_recovery::{QuotaFigures, QuotaRecovery};
pub use repair::Repair;
pub use restart::Restart;
pub use rolling_upgrade::{RollingUpgrade, UpgradeFigures, UpgradeStep};
pub use snapshot_restore::{SnapshotInfo, SnapshotRestore};

use crate::cluster::flavor::Flavor;
use crate::cluster::tools::ImageTools;
use crate::cluster::{Cluster, Rejoin};
use crate::error::Result;
use crate::scenario::{ProcedureSpec, Recovery};

/// What a procedure hands back for the report, beyond the commands it recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureOutcome {
    /// The snapshot a restore used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    /// Members the procedure brought back (or worked on).
    pub members: Vec<String>,
    /// After a restore beside the old cluster on host networking: where each member
    /// serves now (the same addresses, ports +100). Empty when the members kept their ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_to: Vec<crate::topology::MemberSpec>,
    /// Each member's DB size in bytes before and after, where the procedure changes it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub db_sizes: std::collections::BTreeMap<String, [i64; 2]>,
    /// What a restore from the backup agent's store replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalRestoreInfo>,
    /// What a rolling upgrade did, member by member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeFigures>,
    /// Every member's DB size after each step of a maintenance or quota runbook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub size_steps: Vec<SizeStep>,
    /// Each member's defragmentation, in the order they began.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defrags: Vec<DefragStep>,
    /// What a recovery from an exhausted quota found and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaFigures>,
}

/// Everything a procedure may touch.
pub struct RecoveryContext<'a> {
    pub cluster: &'a mut Cluster,
    /// The run's report folder, for files the procedure keeps (a snapshot).
    pub out_dir: &'a Path,
    /// Members the faults took down, in the order they fell.
    pub down: Vec<String>,
    /// When the first fault took effect, in run milliseconds.
    pub fault_at_ms: u64,
    /// The drill's periodic backups so far.
    pub backups: Vec<crate::backup::periodic::BackupRecord>,
    /// The endpoints the application (the workload) uses; a procedure that moves the
    /// cluster to new endpoints switches them.
    pub app_clients: crate::etcd::ClientSet,
}

/// A recovery procedure. Its name is the scenario's (`ProcedureSpec::name`): one table.
pub trait Procedure: Send + Sync {
    /// Runs the procedure until the cluster accepts writes again.
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>>;
}

/// The procedure of `recovery`; `run_image` is the run's image (where a rolling upgrade
/// takes the members).
pub fn for_recovery(recovery: &Recovery, run_image: &crate::cluster::ClusterImage) -> Box<dyn Procedure> {
    match &recovery.procedure {
        ProcedureSpec::Restart => Box::new(Restart),
        ProcedureSpec::SnapshotRestore { source } => Box::new(SnapshotRestore {
            source: source.clone(),
            bump_revision: recovery.bump_revision,
            beside: false,
            restore_by: recovery.restore_by,
            prepared: None,
        }),
        ProcedureSpec::RestoreBeside { source } => Box::new(SnapshotRestore {
            source: source.clone(),
            bump_revision: recovery.bump_revision,
            beside: true,
            restore_by: recovery.restore_by,
            prepared: None,
        }),
        ProcedureSpec::Repair => Box::new(Repair),
        ProcedureSpec::MemberReplace {
            members,
            started_as_new,
        } => Box::new(MemberReplace {
            members: members.clone(),
            rejoin: if *started_as_new {
                Rejoin::StartedAsNew
            } else {
                Rejoin::Voter
            },
        }),
        ProcedureSpec::LearnerReplace { members } => Box::new(MemberReplace {
            members: members.clone(),
            rejoin: Rejoin::Learner,
        }),
        ProcedureSpec::Maintenance { defrag } => Box::new(Maintenance { defrag: *defrag }),
        ProcedureSpec::QuotaRecovery => Box::new(QuotaRecovery),
        ProcedureSpec::PurgeMember { members } => Box::new(PurgeMember {
            members: members.clone(),
        }),
        ProcedureSpec::ForceNewCluster { from } => Box::new(ForceNewCluster { from: from.clone() }),
        ProcedureSpec::IncrementalRestore {
            stop_at_last_good,
            damage,
        } => Box::new(IncrementalRestore {
            stop_at_last_good: *stop_at_last_good,
            damage: *damage,
        }),
        ProcedureSpec::RollingUpgrade(plan) => Box::new(RollingUpgrade {
            plan: plan.clone(),
            target: run_image.clone(),
        }),
    }
}

/// Why a rolling upgrade from `from` to `to` cannot run: the run's image is older than
/// the one the members start on, or the two are run differently (another flavor).
pub fn upgrade_unsupported(from: &crate::cluster::ClusterImage, to: &crate::cluster::ClusterImage) -> Option<String> {
    use crate::version::EtcdVersion;
    if from.flavor.kind != to.flavor.kind {
        return Some(format!(
            "unsupported: a rolling upgrade keeps the members' layout, but {} runs with the {} flavor and {} with the {} flavor",
            from.name,
            from.flavor.kind.as_str(),
            to.name,
            to.flavor.kind.as_str()
        ));
    }
    let version =
        |image: &crate::cluster::ClusterImage| image.tools.as_ref().and_then(|t| EtcdVersion::parse(&t.version));
    match (version(from), version(to)) {
        (Some(old), Some(new)) if new < old => Some(format!(
            "unsupported: the run's image {} (etcd {new}) is older than from_image {} (etcd {old}); a rolling upgrade needs a newer image (run it with --image naming one)",
            to.name, from.name
        )),
        _ => None,
    }
}

/// How long a procedure waits for the cluster to take a write once it is back.
pub const WRITABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the members of an image whose scripts start etcd must agree on one leader
/// before a recovery counts as done: etcd's default election timeout.
pub const LEADER_QUIET: Duration = Duration::from_secs(1);

/// Polls with puts every 50 ms until one succeeds, and records it as the runbook's check.
/// Before that, with an image whose scripts start etcd, waits until every running member's
/// scripts have finished, so that the write is not taken by a temporary etcd.
pub async fn wait_writable(cluster: &mut Cluster) -> Result<()> {
    let running = cluster.running().await?;
    if cluster.image.flavor.image_entrypoint_starts_etcd {
        let started = std::time::Instant::now();
        let finished = cluster
            .wait_setup_finished(&running, crate::cluster::SETUP_TIMEOUT)
            .await;
        let containers: Vec<String> = running.iter().map(|n| cluster.container_name(n)).collect();
        cluster.record(
            "wait until the members' start-up scripts have finished",
            format!(
                "for c in {}; do until [ \"$(docker top $c -o comm | tail -n +2)\" = etcd ]; do sleep 0.2; done; done",
                containers.join(" ")
            ),
            started,
            finished.is_ok(),
        );
        finished?;
    }
    let started = std::time::Instant::now();
    // With auth on, the clients' tokens may be void (a restored cluster): every running
    // member's client logs in afresh before the cluster counts as back. One write taken by
    // one member is not enough: a client still holding an old token would have its writes
    // held by its member until they time out.
    // Paused or partitioned members cannot log in until a repair; they are left out.
    let logins = join_all(
        cluster
            .members
            .iter()
            .filter(|m| running.contains(&m.spec.name) && !m.paused && !m.partitioned)
            .map(|m| m.client.log_in_now(WRITABLE_TIMEOUT)),
    )
    .await;
    if let Err(refused) = logins.into_iter().collect::<Result<Vec<()>>>() {
        let endpoints: Vec<String> = cluster.endpoints().into_iter().map(|(_, e)| e).collect();
        cluster.record(
            "log in as root again on every running member",
            format!(
                "for e in {}; do etcdctl --user root:*** --endpoints=$e endpoint health; done",
                endpoints.join(" ")
            ),
            started,
            false,
        );
        return Err(refused);
    }
    if cluster.image.flavor.image_entrypoint_starts_etcd {
        // Their members started etcd for good one after another: one that started late
        // can still call an election after the first write. Wait until all of them name
        // the same leader in the same term for an election timeout.
        let started = std::time::Instant::now();
        let reachable: Vec<String> = cluster
            .members
            .iter()
            .filter(|m| running.contains(&m.spec.name) && !m.paused && !m.partitioned)
            .map(|m| m.spec.name.clone())
            .collect();
        let settled = cluster
            .wait_leader_settled(&reachable, LEADER_QUIET, WRITABLE_TIMEOUT)
            .await;
        let endpoints: Vec<String> = reachable
            .iter()
            .filter_map(|n| cluster.member(n).ok().map(|m| m.client.endpoint.clone()))
            .collect();
        cluster.record(
            "wait until every member names the same leader in the same term for 1 s",
            format!(
                "etcdctl --endpoints={} endpoint status -w table   # repeat until LEADER and RAFT TERM agree on every row for 1 s",
                endpoints.join(",")
            ),
            started,
            settled.is_ok(),
        );
        settled?;
    }
    let started = std::time::Instant::now();
    let ok = cluster
        .probe_writable(WRITABLE_TIMEOUT, Duration::from_millis(500))
        .await
        .is_some();
    let endpoints = cluster
        .endpoints()
        .into_iter()
        .map(|(_, e)| e)
        .collect::<Vec<_>>()
        .join(",");
    cluster.record(
        "wait until the cluster takes a write",
        format!("until etcdctl --endpoints={endpoints} --command-timeout=500ms put /etcd-drill/{}/probe probe; do sleep 0.05; done", cluster.run_id),
        started,
        ok,
    );
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::Timeout {
            what: "the recovered cluster to accept a write".into(),
            waited_ms: WRITABLE_TIMEOUT.as_millis() as u64,
        })
    }
}

/// Why this image cannot run `recovery`, if it cannot: a restore flag its tools lack, or a
/// restore by the image's own start-up on an image whose start-up does not restore.
pub fn unsupported(recovery: &Recovery, tools: &ImageTools, flavor: &Flavor, image: &str) -> Option<String> {
    if recovery.restore_by == crate::scenario::RestoreBy::Image && flavor.start_from_snapshot_env("x").is_none() {
        return Some(format!(
            "unsupported by this image: `restore_by = \"image\"` needs an image whose start-up restores a snapshot (the bitnami flavor's ETCD_START_FROM_SNAPSHOT); {image} runs with the {} flavor",
            flavor.kind.as_str()
        ));
    }
    if recovery.bump_revision.is_none() || tools.bump_revision {
        return None;
    }
    Some(format!(
        "unsupported by this etcd version: `{} snapshot restore` of {image} has no --bump-revision (etcd {}; the flag exists from 3.5.10 and 3.4.27)",
        tools.snapshot_tool.binary(),
        tools.version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tools::SnapshotTool;
    use crate::scenario::SnapshotSource;

    #[test]
    fn bump_revision_is_unsupported_only_when_asked_for_and_missing() {
        let mut recovery = Recovery {
            procedure: ProcedureSpec::SnapshotRestore {
                source: SnapshotSource::Member { from: "etcd1".into() },
            },
            delay_ms: 0,
            bump_revision: Some(1_000_000),
            restore_by: crate::scenario::RestoreBy::Harness,
        };
        let tools = ImageTools {
            snapshot_tool: SnapshotTool::Etcdctl,
            bump_revision: false,
            version: "3.4.23".into(),
        };
        let upstream = Flavor::upstream();
        let reason = unsupported(&recovery, &tools, &upstream, "etcd-drill/etcd:3.4.23").unwrap();
        assert!(
            reason.contains("etcdctl snapshot restore") && reason.contains("3.4.23"),
            "{reason}"
        );
        assert!(unsupported(
            &recovery,
            &ImageTools {
                bump_revision: true,
                ..tools.clone()
            },
            &upstream,
            "x"
        )
        .is_none());
        recovery.bump_revision = None;
        assert!(unsupported(&recovery, &tools, &upstream, "x").is_none());
        recovery.restore_by = crate::scenario::RestoreBy::Image;
        let reason = unsupported(&recovery, &tools, &upstream, "quay.io/coreos/etcd:v3.5.21").unwrap();
        assert!(
            reason.contains("restore_by") && reason.contains("upstream flavor"),
            "{reason}"
        );
        assert!(unsupported(&recovery, &tools, &Flavor::bitnami(), "x").is_none());
    }
}
