//! `maintenance`: compact the key space to the current revision, then defragment every
//! member one at a time, recording each member's DB size before and after (as
//! `etcdctl endpoint status` shows it). Writes must go on throughout.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;

pub struct Maintenance;

impl Procedure for Maintenance {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let timeout = Duration::from_secs(30);
            let cluster = &mut *cx.cluster;
            let mut outcome = ProcedureOutcome::default();
            for m in &cluster.members {
                let before = m.client.status(timeout).await?.db_size;
                outcome.db_sizes.insert(m.spec.name.clone(), [before, before]);
            }

            let via = cluster.healthy_member(&[]).await?;
            let revision = via.status(timeout).await?.revision;
            let started = Instant::now();
            let compacted = via.compact(revision, timeout).await;
            let command = format!("etcdctl --endpoints={} compact {revision} --physical", via.endpoint);
            cluster.record("compact the key space", command, started, compacted.is_ok());
            compacted?;

            let members: Vec<_> = cluster
                .members
                .iter()
                .map(|m| (m.spec.name.clone(), m.client.clone()))
                .collect();
            for (name, client) in members {
                let started = Instant::now();
                let defragged = client.defragment(timeout).await;
                let command = format!("etcdctl --endpoints={} defrag", client.endpoint);
                cluster.record(format!("defragment {name}"), command, started, defragged.is_ok());
                defragged?;
                let after = client.status(timeout).await?.db_size;
                if let Some(sizes) = outcome.db_sizes.get_mut(&name) {
                    sizes[1] = after;
                }
                outcome.members.push(name);
            }
            wait_writable(cluster).await?;
            Ok(outcome)
        })
    }
}
