//! `quota-recovery`: the runbook for `mvcc: database space exceeded`. With the NOSPACE
//! alarm raised the cluster serves reads and refuses writes; the operator lists the
//! alarms, confirms that reads still work, compacts to the current revision, defragments
//! every member one at a time (the leader last), disarms the alarm and waits for writes.
//! Each member's DB size is recorded after every step.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::maintenance::{compact_and_defragment, record_sizes};
use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::error::Result;
use crate::scenario::DefragPolicy;

pub struct QuotaRecovery;

/// What the quota runbook found, and (filled in from the write ledger once the writers
/// have stopped) how long the cluster refused writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaFigures {
    /// The alarms listed when the procedure began, as etcdctl prints them.
    pub alarms: Vec<String>,
    /// A linearizable read was served while the alarm was raised.
    pub read_during_alarm: bool,
    /// How many alarms `alarm disarm` deactivated.
    pub disarmed: usize,
    /// From the alarm (the first write refused for space) to the first workload write
    /// refused with "database space exceeded".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_to_first_refusal_ms: Option<u64>,
    /// Workload writes refused for space.
    pub refused_writes: u64,
    /// From the alarm to the first workload write accepted after it: how long the cluster
    /// was read-only for the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_ms: Option<u64>,
}

impl Procedure for QuotaRecovery {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let timeout = Duration::from_secs(10);
            let cluster = &mut *cx.cluster;
            let mut outcome = ProcedureOutcome::default();
            let mut quota = QuotaFigures::default();

            let via = cluster.healthy_member(&[]).await?;
            let started = Instant::now();
            let alarms = via.alarms(timeout).await;
            if let Ok(list) = &alarms {
                quota.alarms = list.iter().map(|(id, a)| crate::etcd::alarm_line(*id, a)).collect();
            }
            cluster.record(
                "list the alarms",
                format!(
                    "etcdctl --endpoints={} alarm list   # {}",
                    via.endpoint,
                    quota.alarms.join(", ")
                ),
                started,
                alarms.is_ok(),
            );
            alarms?;

            // Reads must still be served: the application can read its configuration.
            let started = Instant::now();
            let prefix = format!("/etcd-drill/{}/", cluster.run_id);
            let read = via.has_keys_under(&prefix, timeout).await;
            quota.read_during_alarm = read.is_ok();
            cluster.record(
                "read while the alarm is raised",
                format!(
                    "etcdctl --endpoints={} get {prefix} --prefix --limit=1 --keys-only",
                    via.endpoint
                ),
                started,
                read.is_ok(),
            );

            compact_and_defragment(cluster, &mut outcome, DefragPolicy::OneAtATime, "at the alarm").await?;

            let started = Instant::now();
            let disarmed = via.disarm_alarms(timeout).await;
            if let Ok(n) = &disarmed {
                quota.disarmed = *n;
            }
            cluster.record(
                "disarm the NOSPACE alarm",
                format!("etcdctl --endpoints={} alarm disarm", via.endpoint),
                started,
                disarmed.is_ok(),
            );
            disarmed?;
            record_sizes(cluster, &mut outcome, "after alarm disarm").await;
            outcome.quota = Some(quota);
            wait_writable(cluster).await?;
            Ok(outcome)
        })
    }
}
