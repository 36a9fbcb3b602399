//! `member-replace`: members that lost their data rejoin under new identities, as the
//! runbook says: `member remove` (all of them first: etcd adds no member while a voting
//! member is down), then one at a time wipe the data dir, `member add`, start with
//! `initial-cluster-state=existing`, and wait until the member serves before the next.

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;

pub struct MemberReplace {
    /// The members to replace; empty means every member whose data volume is gone.
    pub members: Vec<String>,
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
                cx.cluster.rejoin_member(name).await?;
            }
            wait_writable(cx.cluster).await?;
            Ok(ProcedureOutcome {
                members: targets,
                ..ProcedureOutcome::default()
            })
        })
    }
}
