//! "Cut off until the leader must send a snapshot": a member kept from its peers (a
//! partition or a peer blackhole) while the others write until the leader's raft log has
//! been compacted past the member's last entry, so that, once healed, it can only catch
//! up from a full snapshot of the leader's: the path where etcd's snapshot-apply bugs
//! live. The harness writes filler entries (small puts under `/etcd-drill/<run>-filler/`,
//! never read back) beside the workload to get there in seconds, and after the heal
//! checks the member's log for the snapshot it received.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::Cluster;
use crate::error::{Error, Result};
use crate::readiness::{Seen, Wait};

/// The entries etcd 3.5's leader keeps in its raft log after each snapshot
/// (`SnapshotCatchUpEntries`): a follower further behind gets a snapshot.
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5_000;

/// How long the hold may take before the fault fails.
const HOLD_TIMEOUT: Duration = Duration::from_secs(300);

/// Concurrent filler writers.
const FILLERS: usize = 8;

/// What a member's log says when it has caught up from the leader's snapshot.
const SNAPSHOT_RECEIVED: [&str; 2] = ["applied incoming Raft snapshot", "received and saved database snapshot"];

impl Cluster {
    /// Holds `member` cut off until the leader's log no longer has the entries after the
    /// member's last one: the others' raft index is ahead of the member's by more than
    /// [`SNAPSHOT_CATCH_UP_ENTRIES`] plus the snapshot count.
    pub async fn hold_until_snapshot_needed(&mut self, member: &str) -> Result<()> {
        let started = Instant::now();
        let step = format!("hold {member} cut off until the leader's log is compacted past it");
        let snapshot_count = self.settings.snapshot_count.unwrap_or(100_000);
        let needed = SNAPSHOT_CATCH_UP_ENTRIES + snapshot_count + snapshot_count / 2;
        let timeout = Duration::from_secs(2);
        let behind = self.member(member)?.client.status(timeout).await?.raft_index;
        // Snapshots it received before: the heal looks for one more.
        let received_before = self.snapshots_received(member).await;
        let others: Vec<_> = self
            .members
            .iter()
            .filter(|m| m.spec.name != member && !m.paused && !m.partitioned)
            .map(|m| m.client.clone())
            .collect();
        if others.is_empty() {
            return Err(Error::Procedure {
                step,
                message: "no member is left to write through".into(),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = format!("/etcd-drill/{}-filler/", self.run_id);
        let fillers: Vec<_> = (0..FILLERS)
            .map(|i| {
                let (stop, client, key) = (stop.clone(), others[i % others.len()].clone(), format!("{prefix}{i}"));
                tokio::spawn(async move {
                    let mut written = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if client.put(key.clone(), written.to_string(), timeout).await.is_ok() {
                            written += 1;
                        }
                    }
                    written
                })
            })
            .collect();
        let reached = Wait::new(
            format!("the leader's raft index {needed} past {member}'s {behind}"),
            Duration::from_millis(250),
            HOLD_TIMEOUT,
        )
        .until(|| async {
            let ahead = join_all(others.iter().map(|c| c.status(timeout)))
                .await
                .into_iter()
                .flatten()
                .map(|s| s.raft_index)
                .max()
                .unwrap_or(0);
            match ahead.saturating_sub(behind) > needed {
                true => Seen::Ready(ahead),
                false => Seen::NotYet(format!("{} entries ahead", ahead.saturating_sub(behind))),
            }
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let filled: u64 = join_all(fillers).await.into_iter().flatten().sum();
        self.record(
            step.clone(),
            format!(
                "# {member} stays cut off while the others write ({filled} filler puts under {prefix}) until their raft index is {needed} entries past its {behind}: the leader keeps {SNAPSHOT_CATCH_UP_ENTRIES} entries after each snapshot (every {snapshot_count})"
            ),
            started,
            reached.is_ok(),
        );
        self.member_mut(member)?.awaits_snapshot = Some(received_before);
        reached.map(|_| ()).map_err(|timed_out| Error::Procedure {
            step,
            message: Error::from(timed_out).to_string(),
        })
    }

    /// After the heal of a member held until a snapshot was needed: waits (up to 60 s) for
    /// its log to show the leader's snapshot received, and records it.
    pub(super) async fn confirm_snapshot_received(&mut self, member: &str) -> Result<()> {
        let Some(received_before) = self.member_mut(member)?.awaits_snapshot.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let container = self.container_name(member);
        let received = Wait::new(
            format!("{member} to catch up from the leader's snapshot"),
            Duration::from_millis(250),
            Duration::from_secs(60),
        )
        .until(|| async {
            match self.snapshots_received(member).await > received_before {
                true => Seen::Ready(()),
                false => Seen::NotYet(format!(
                    "no snapshot received in its log since the hold ({received_before} before it)"
                )),
            }
        })
        .await;
        self.record(
            format!("check that {member} caught up from the leader's snapshot"),
            self.on_host(
                member,
                format!(
                    "docker logs {container} 2>&1 | grep -E '{}'",
                    SNAPSHOT_RECEIVED.join("|")
                ),
            ),
            started,
            received.is_ok(),
        );
        received.map_err(|timed_out| Error::Procedure {
            step: format!("heal {member}"),
            message: format!(
                "{}: it caught up without the snapshot the fault was for",
                Error::from(timed_out)
            ),
        })
    }

    /// How many times `member`'s log says it received a snapshot from the leader (0 when
    /// the log cannot be read).
    async fn snapshots_received(&self, member: &str) -> usize {
        let (out, err) = self
            .docker_of(member)
            .logs(&self.container_name(member))
            .await
            .unwrap_or_default();
        count_snapshot_lines(&out) + count_snapshot_lines(&err)
    }
}

/// The lines of `log` that say a snapshot from the leader was received.
fn count_snapshot_lines(log: &str) -> usize {
    log.lines()
        .filter(|line| SNAPSHOT_RECEIVED.iter().any(|said| line.contains(said)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_snapshot_lines;

    #[test]
    fn a_snapshot_counts_once_per_line() {
        let log = "{\"msg\":\"applied incoming Raft snapshot\"}\n{\"msg\":\"other\"}\n\
                   {\"msg\":\"received and saved database snapshot\"}\n";
        assert_eq!(count_snapshot_lines(log), 2);
        assert_eq!(count_snapshot_lines(""), 0);
    }
}
