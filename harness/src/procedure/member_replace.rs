//! `member-replace`: members that lost their data rejoin under new identities, one at a
//! time, as the runbook says: `member remove`, wipe the data dir, `member add`, start with
//! `initial-cluster-state=existing`, and wait until the member serves before the next.

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;

pub struct MemberReplace {
    /// The members to replace; empty means every member whose data volume is gone.
    pub members: Vec<String>,
}

impl Procedure for MemberReplace {
    fn name(&self) -> &'static str {
        "member-replace"
    }

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
                cx.cluster.replace_member(name).await?;
            }
            wait_writable(cx.cluster).await?;
            Ok(ProcedureOutcome {
                members: targets,
                ..ProcedureOutcome::default()
            })
        })
    }
}
