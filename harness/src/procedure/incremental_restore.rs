//! `incremental-restore`: the cluster is rebuilt from the backup agent's store: the newest
//! full snapshot plus every delta after it, checked (names, hashes, revisions) and replayed
//! through a temporary single-member etcd, then restored into every member like
//! `snapshot-restore` does. For drills of a broken chain it first damages a delta and shows
//! the restore refusing it, naming the file, before it restores up to the last good point.

use std::time::Instant;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::snapshot_restore::{Obtained, SnapshotRestore};
use super::{Procedure, ProcedureOutcome, RecoveryContext};
use crate::backup::replay::{self, ReplayPlace, ReplayReport};
use crate::backup::store::{BackupStore, StoreLocation};
use crate::backup::{chain, DeltaName};
use crate::error::{Error, Result};
use crate::scenario::{ChainDamage, SnapshotSource};

/// The agent's store inside a drill's folder.
pub const AGENT_STORE_DIR: &str = "agent-store";

/// What the restore from the agent's store did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalRestoreInfo {
    pub replay: ReplayReport,
    /// The delta the drill damaged before the restore, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    /// The error a restore of the damaged chain stopped with (None: it was not refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

pub struct IncrementalRestore {
    pub stop_at_last_good: bool,
    pub damage: Option<ChainDamage>,
}

impl IncrementalRestore {
    /// Damages a delta in the middle of the chain after the newest full; returns its name.
    async fn damage(&self, store: &BackupStore, damage: ChainDamage, cx: &mut RecoveryContext<'_>) -> Result<String> {
        let started = Instant::now();
        let catalog = store.catalog().await?;
        let full = catalog.fulls.last().copied().ok_or_else(|| Error::Procedure {
            step: "damage a delta".into(),
            message: "the agent saved no full snapshot".into(),
        })?;
        let plan = chain::plan(full, &catalog.deltas, catalog.head);
        let victim: DeltaName = *plan.deltas.get(plan.deltas.len() / 2).ok_or_else(|| Error::Procedure {
            step: "damage a delta".into(),
            message: format!("the agent saved no delta after {}", full.file()),
        })?;
        let file = victim.file();
        let command = match damage {
            ChainDamage::RemoveDelta => {
                store.delete_with_hash(&file).await?;
                format!("rm {AGENT_STORE_DIR}/{file} {AGENT_STORE_DIR}/{file}.sha256")
            }
            ChainDamage::CorruptDelta => {
                let mut bytes = store.get(&file).await?;
                let at = bytes.len() / 2;
                bytes[at] ^= 0xff;
                store.put(&file, bytes).await?;
                format!(
                    "printf '\\xff' | dd of={AGENT_STORE_DIR}/{file} bs=1 seek={at} conv=notrunc   # one byte flipped"
                )
            }
        };
        cx.cluster
            .record(format!("{} {file}", damage.as_str()), command, started, true);
        Ok(victim.describe())
    }
}

impl Procedure for IncrementalRestore {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let store = BackupStore::open(StoreLocation::Local(cx.out_dir.join(AGENT_STORE_DIR)))?;
            let mut info = IncrementalRestoreInfo::default();
            let line = format!("etcd-drill restore-backup --store {AGENT_STORE_DIR}");

            // A damaged chain must be refused, with the file named.
            if let Some(damage) = self.damage {
                info.damaged = Some(format!(
                    "{}: {}",
                    damage.as_str(),
                    self.damage(&store, damage, cx).await?
                ));
                let started = Instant::now();
                let strict = replay::prepare(&store, None, false).await;
                info.refusal = strict.err().map(|e| e.to_string());
                let note = match &info.refusal {
                    Some(e) => format!("{line}   # refused: {e}"),
                    None => format!("{line}   # NOT refused"),
                };
                cx.cluster
                    .record("restore the damaged chain (must be refused)", note, started, true);
            }

            // 1. Check the chain and read it.
            let stop_at_last_good = self.stop_at_last_good || self.damage.is_some();
            let started = Instant::now();
            let prepared = replay::prepare(&store, None, stop_at_last_good).await;
            let flag = if stop_at_last_good { " --stop-at-last-good" } else { "" };
            cx.cluster.record(
                "check the backup chain (names, hashes, revisions)",
                format!("{line}{flag} --check-only"),
                started,
                prepared.is_ok(),
            );
            let prepared = prepared?;

            // 2. Replay it through a temporary single-member etcd.
            let started = Instant::now();
            let work_dir = replay::default_work_dir(cx.out_dir);
            let cluster = &*cx.cluster;
            let place = ReplayPlace {
                docker: &cluster.docker,
                image: &cluster.image,
                run_id: &cluster.run_id,
                network: &cluster.network,
                work_dir: &work_dir,
            };
            let replayed = replay::replay(&store, &prepared, &place).await;
            let note = match &replayed {
                Ok(r) => format!(
                    "   # {} + {} deltas, {} events in {} transactions, revision {} -> {}",
                    r.full,
                    r.deltas_replayed.len(),
                    r.events,
                    r.transactions,
                    r.full_revision,
                    r.revision
                ),
                Err(e) => format!("   # {e}"),
            };
            cx.cluster.record(
                "replay the deltas on a temporary etcd and save the result",
                format!(
                    "{line}{flag} --image {} --out restore-backup{note}",
                    cx.cluster.image.name
                ),
                started,
                replayed.is_ok(),
            );
            info.replay = replayed?;

            // 3. Restore every member from the result, as `snapshot-restore` does.
            let obtained = Obtained {
                path: work_dir.join("restored.db"),
                file: "restore-backup/restored.db".into(),
                source: "incremental-backup",
                from: info.replay.full.clone(),
                taken_ms: cx.cluster.clock.now_ms(),
                skip_hash_check: false,
            };
            let restore = SnapshotRestore {
                source: SnapshotSource::NewestBackup,
                bump_revision: None,
                beside: false,
                restore_by: crate::scenario::RestoreBy::Harness,
                prepared: Some(obtained),
            };
            let mut outcome = restore.run(cx).await?;
            outcome.incremental = Some(info);
            Ok(outcome)
        })
    }
}
