//! Recovery procedures: each one does what an operator's runbook says, step by step,
//! against the live cluster, and every step is recorded as the command an operator
//! would type. [`Procedure`] is the seam where drills differ.

mod force_new_cluster;
mod incremental_restore;
mod maintenance;
mod member_replace;
mod purge_member;
mod repair;
mod restart;
mod snapshot_restore;

use std::path::Path;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

pub use force_new_cluster::ForceNewCluster;
pub use incremental_restore::{IncrementalRestore, IncrementalRestoreInfo, AGENT_STORE_DIR};
pub use maintenance::Maintenance;
pub use member_replace::MemberReplace;
pub use purge_member::PurgeMember;
pub use repair::Repair;
pub use restart::Restart;
pub use snapshot_restore::{SnapshotInfo, SnapshotRestore};

use crate::cluster::tools::ImageTools;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::scenario::{ProcedureSpec, Recovery};

/// What a procedure hands back for the report, beyond the commands it recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcedureOutcome {
    /// The snapshot a restore used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    /// Members the procedure brought back (or worked on).
    pub members: Vec<String>,
    /// Each member's DB size in bytes before and after, where the procedure changes it.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub db_sizes: std::collections::BTreeMap<String, [i64; 2]>,
    /// What a restore from the backup agent's store replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalRestoreInfo>,
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

pub fn for_recovery(recovery: &Recovery) -> Box<dyn Procedure> {
    match &recovery.procedure {
        ProcedureSpec::Restart => Box::new(Restart),
        ProcedureSpec::SnapshotRestore { source } => Box::new(SnapshotRestore {
            source: source.clone(),
            bump_revision: recovery.bump_revision,
            beside: false,
            prepared: None,
        }),
        ProcedureSpec::RestoreBeside { source } => Box::new(SnapshotRestore {
            source: source.clone(),
            bump_revision: recovery.bump_revision,
            beside: true,
            prepared: None,
        }),
        ProcedureSpec::Repair => Box::new(Repair),
        ProcedureSpec::MemberReplace { members } => Box::new(MemberReplace {
            members: members.clone(),
        }),
        ProcedureSpec::Maintenance => Box::new(Maintenance),
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
    }
}

/// How long a procedure waits for the cluster to take a write once it is back.
pub const WRITABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls with puts every 50 ms until one succeeds, and records it as the runbook's check.
pub async fn wait_writable(cluster: &mut Cluster) -> Result<()> {
    let started = std::time::Instant::now();
    // With auth on, the clients' tokens may be void (a restored cluster): log in afresh.
    for member in &cluster.members {
        member.client.log_in_again();
    }
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

/// Why this image cannot run `recovery`, if it cannot: a restore flag its tools lack.
pub fn unsupported(recovery: &Recovery, tools: &ImageTools, image: &str) -> Option<String> {
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
        };
        let tools = ImageTools {
            snapshot_tool: SnapshotTool::Etcdctl,
            bump_revision: false,
            version: "3.4.23".into(),
        };
        let reason = unsupported(&recovery, &tools, "etcd-drill/etcd:3.4.23").unwrap();
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
            "x"
        )
        .is_none());
        recovery.bump_revision = None;
        assert!(unsupported(&recovery, &tools, "x").is_none());
    }
}
