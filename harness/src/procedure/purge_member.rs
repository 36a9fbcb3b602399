//! `purge-member`: a member whose stored state is damaged (after `corrupt`): stop it, keep
//! a copy of its `member/snap`, empty that directory, restart it with
//! `initial-cluster-state=existing`, and check that it catches up from the leader.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::{Error, Result};
use crate::readiness::{Seen, Wait};

pub struct PurgeMember {
    /// The damaged members; empty means every member that is not running.
    pub members: Vec<String>,
}

impl Procedure for PurgeMember {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let targets: Vec<String> = if self.members.is_empty() {
                let running = cx.cluster.running().await?;
                cx.cluster
                    .topology
                    .names()
                    .into_iter()
                    .filter(|n| !running.contains(n))
                    .collect()
            } else {
                self.members.clone()
            };
            for name in &targets {
                cx.cluster.purge_member(name, cx.out_dir).await?;
            }
            wait_writable(cx.cluster).await?;
            // Caught up: the purged members report the revision the others have.
            let cluster = &*cx.cluster;
            let caught_up = Wait::new(
                "the purged members to catch up",
                Duration::from_millis(200),
                Duration::from_secs(20),
            )
            .until(|| async {
                let mut revisions = Vec::new();
                for m in &cluster.members {
                    match m.client.status(Duration::from_secs(2)).await {
                        Ok(status) => revisions.push((m.spec.name.clone(), status.revision)),
                        Err(e) => return Seen::Ready(Err(e)),
                    }
                }
                let newest = revisions.iter().map(|(_, r)| *r).max().unwrap_or(0);
                let behind: Vec<&(String, i64)> = revisions
                    .iter()
                    .filter(|(n, r)| targets.contains(n) && *r + 50 < newest)
                    .collect();
                match behind.is_empty() {
                    true => Seen::Ready(Ok(())),
                    false => Seen::NotYet(format!("still behind revision {newest}: {behind:?}")),
                }
            })
            .await;
            match caught_up {
                Ok(result) => result?,
                Err(t) => {
                    return Err(Error::Procedure {
                        step: "wait for the purged members to catch up".into(),
                        message: t.last.unwrap_or_default(),
                    })
                }
            }
            Ok(ProcedureOutcome {
                members: targets,
                ..ProcedureOutcome::default()
            })
        })
    }
}
