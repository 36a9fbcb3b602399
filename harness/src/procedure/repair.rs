//! `repair`: undo what the faults did without touching data: resume paused members,
//! reconnect partitioned ones at their old addresses, start stopped ones, then wait for a
//! write to succeed.

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;

pub struct Repair;

impl Procedure for Repair {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let running = cx.cluster.running().await?;
            let mut repaired = Vec::new();
            for name in cx.cluster.topology.names() {
                let member = cx.cluster.member(&name)?;
                let (paused, partitioned) = (member.paused, member.partitioned);
                if paused {
                    cx.cluster.resume(&name).await?;
                }
                if partitioned {
                    cx.cluster.heal(&name).await?;
                }
                if !running.contains(&name) {
                    cx.cluster.start(&name).await?;
                }
                if paused || partitioned || !running.contains(&name) {
                    repaired.push(name);
                }
            }
            wait_writable(cx.cluster).await?;
            Ok(ProcedureOutcome {
                members: repaired,
                ..ProcedureOutcome::default()
            })
        })
    }
}
