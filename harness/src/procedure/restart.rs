//! `restart`: start the members that went down again, with their data, and wait for quorum.

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;

pub struct Restart;

impl Procedure for Restart {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let running = cx.cluster.running().await?;
            let stopped: Vec<String> = cx
                .cluster
                .topology
                .names()
                .into_iter()
                .filter(|n| !running.contains(n))
                .collect();
            for name in &stopped {
                cx.cluster.start(name).await?;
            }
            wait_writable(cx.cluster).await?;
            Ok(ProcedureOutcome {
                members: stopped,
                ..ProcedureOutcome::default()
            })
        })
    }
}
