//! `force-new-cluster`: after quorum is lost for good, one survivor becomes a one-member
//! cluster with its data (`--force-new-cluster`), is restarted without the flag, and every
//! other member rejoins as a new, empty member (`member add`, `initial-cluster-state=existing`).

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;

pub struct ForceNewCluster {
    /// The survivor whose data the new cluster keeps.
    pub from: String,
}

impl Procedure for ForceNewCluster {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let cluster = &mut *cx.cluster;
            let others: Vec<String> = cluster
                .topology
                .names()
                .into_iter()
                .filter(|n| *n != self.from)
                .collect();
            // Members that still run hold a different history: stop them before the survivor
            // takes over alone. Their data is replaced when they rejoin.
            let running = cluster.running().await?;
            for name in others.iter().filter(|n| running.contains(n)) {
                cluster.stop(name).await?;
            }
            cluster
                .recreate_member(&self.from, &[("ETCD_FORCE_NEW_CLUSTER", "true")])
                .await?;
            wait_writable(cluster).await?;
            // The flag must not stay: a restart with it would drop every member added since.
            cluster.recreate_member(&self.from, &[]).await?;
            wait_writable(cluster).await?;
            for name in &others {
                cluster.rejoin_member(name, crate::cluster::Rejoin::Voter).await?;
            }
            wait_writable(cluster).await?;
            let mut members = vec![self.from.clone()];
            members.extend(others);
            Ok(ProcedureOutcome {
                snapshot: None,
                members,
                ..ProcedureOutcome::default()
            })
        })
    }
}
