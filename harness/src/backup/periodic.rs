//! Periodic `snapshot save` backups taken while a drill runs, as a backup cron job would:
//! every interval, from the first member that answers, into `backups/` of the run's folder,
//! each checked against the SHA-256 that etcd appends. A restore can then use the newest one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::etcd::MemberClient;

/// One backup attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Path relative to the run's folder, e.g. `backups/backup-003.db`.
    pub file: String,
    pub from: String,
    /// When the save finished, in run milliseconds.
    pub taken_ms: u64,
    /// The member's revision just before the save: the backup holds at least this much.
    pub revision_at_least: i64,
    pub size: u64,
    /// Why the attempt failed (no member answered, a bad hash); None when it worked.
    pub error: Option<String>,
}

impl BackupRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// The newest backup that worked.
pub fn newest(records: &[BackupRecord]) -> Option<&BackupRecord> {
    records.iter().filter(|r| r.ok()).max_by_key(|r| r.taken_ms)
}

/// A running backup schedule; `stop` ends it and returns every attempt.
pub struct BackupSchedule {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Vec<BackupRecord>>>,
}

impl BackupSchedule {
    pub fn start(members: Vec<MemberClient>, interval: Duration, out_dir: &Path, clock: Clock) -> BackupSchedule {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = out_dir.join("backups");
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut records = Vec::new();
            if let Err(e) = std::fs::create_dir_all(&dir) {
                records.push(failed(String::new(), &clock, format!("{}: {e}", dir.display())));
                return records;
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            while !flag.load(Ordering::Relaxed) {
                ticker.tick().await;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("backups/backup-{:03}.db", records.len() + 1);
                records.push(
                    take_backup(
                        &members,
                        &dir.join(format!("backup-{:03}.db", records.len() + 1)),
                        name,
                        &clock,
                    )
                    .await,
                );
            }
            records
        });
        BackupSchedule { stop, task: Some(task) }
    }

    pub async fn stop(mut self) -> Vec<BackupRecord> {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for BackupSchedule {
    /// A drill that breaks down midway ends the schedule too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn failed(file: String, clock: &Clock, error: String) -> BackupRecord {
    BackupRecord {
        file,
        from: String::new(),
        taken_ms: clock.now_ms(),
        revision_at_least: 0,
        size: 0,
        error: Some(error),
    }
}

async fn take_backup(members: &[MemberClient], path: &Path, file: String, clock: &Clock) -> BackupRecord {
    let timeout = Duration::from_secs(5);
    let mut last_error = String::from("no member answered");
    for m in members {
        let Ok(status) = m.status(Duration::from_millis(500)).await else {
            continue;
        };
        match m.save_snapshot(path, timeout).await {
            Ok(size) => {
                return BackupRecord {
                    file,
                    from: m.name.clone(),
                    taken_ms: clock.now_ms(),
                    revision_at_least: status.revision,
                    size,
                    error: None,
                }
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    failed(file, clock, last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(taken_ms: u64, error: Option<&str>) -> BackupRecord {
        BackupRecord {
            file: format!("b{taken_ms}"),
            from: "etcd1".into(),
            taken_ms,
            revision_at_least: taken_ms as i64,
            size: 1,
            error: error.map(String::from),
        }
    }

    #[test]
    fn the_newest_backup_that_worked_is_chosen() {
        let records = vec![
            record(1000, None),
            record(3000, None),
            record(5000, Some("no member answered")),
        ];
        assert_eq!(newest(&records).map(|r| r.taken_ms), Some(3000));
        assert_eq!(newest(&[record(1, Some("x"))]), None);
    }
}
