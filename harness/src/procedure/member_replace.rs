//! `member-replace` and `learner-replace`: members that lost their data rejoin under new
//! identities, as the runbook says: `member remove` (all of them first: etcd adds no
//! member while a voting member is down), then one at a time wipe the data dir and add
//! the member back, before the next. `member-replace` adds a voter and starts it with
//! `initial-cluster-state=existing`; `learner-replace` adds a learner, waits until it has
//! caught up with the leader and promotes it. `member-replace` with
//! `initial_cluster_state = "new"` drills the mistake of starting the replacement as a
//! new cluster: the procedure does not wait for it, and the checks must catch it.

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::cluster::Rejoin;
use crate::error::Result;

pub struct MemberReplace {
    /// The members to replace; empty means every member whose data volume is gone.
    pub members: Vec<String>,
    pub rejoin: Rejoin,
}

impl Procedure for MemberReplace {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let targets: Vec<String> = if self.members.is_empty() {
                cx.cluster
                    .members
                    .iter()
                    .filter(|m| !m.has_container)
                    .map(|m| m.spec.name.clone())
                    .collect()
            } else {
                self.members.clone()
            };
            for name in &targets {
                cx.cluster.remove_member(name).await?;
            }
            for name in &targets {
                cx.cluster.rejoin_member(name, self.rejoin).await?;
            }
            wait_writable(cx.cluster).await?;
            Ok(ProcedureOutcome {
                members: targets,
                ..ProcedureOutcome::default()
            })
        })
    }
}
