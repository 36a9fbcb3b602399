//! A client that follows the workload's key space with a watch and, whenever the watch
//! breaks, resumes from the last revision it saw, as Kubernetes informers do. A restore that
//! moves revisions backwards makes it miss writes without any error; a restore with
//! `--bump-revision --mark-compacted` makes it hear "compacted" and re-list instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::etcd::{ClientSet, MemberClient};

/// What the follower saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    /// Keys it received a put event for (or found when it re-listed).
    #[serde(skip)]
    pub seen: HashSet<String>,
    pub events: u64,
    /// The highest revision it saw.
    pub last_revision: i64,
    /// Times it resumed a broken watch from `last_revision + 1`.
    pub resumes: u64,
    /// Times the server answered "compacted" and it re-listed the key space.
    pub relists: u64,
    /// Every response in arrival order, across its watches (each resumed where the last
    /// left off): what the watch guarantees are judged on (`history::watch`).
    #[serde(skip)]
    pub responses: crate::history::watch::WatchLog,
    /// Whether, when the workload stopped, it caught up with the newest acknowledged
    /// write (None: not asked).
    #[serde(skip)]
    pub catch_up: Option<CatchUp>,
}

/// How the follower's last catch-up went: the newest acknowledged write reached, and after
/// how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    pub caught_up: bool,
    pub waited_ms: u64,
}

/// The watch follower's figures for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchFigures {
    pub events: u64,
    pub last_revision: i64,
    pub resumes: u64,
    pub relists: u64,
    /// Writes acknowledged after the fault (so: on the recovered cluster) that the follower
    /// never heard of.
    pub missed_after_recovery: u64,
}

pub struct WatchFollower {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<WatchLog>>,
    /// The highest revision it has seen, as it goes.
    seen_revision: tokio::sync::watch::Receiver<i64>,
}

impl WatchFollower {
    /// Follows `prefix` through `members`, moving to the next member (of the set as it is
    /// then) whenever a watch ends.
    pub fn start(members: ClientSet, prefix: String) -> WatchFollower {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tell, seen_revision) = tokio::sync::watch::channel(0i64);
        let task = tokio::spawn(async move {
            let mut log = WatchLog::default();
            log.responses.start_revision = 1;
            let mut cursor = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let current = members.current();
                let member = &current[cursor % current.len()];
                cursor += 1;
                follow(member, &prefix, &mut log, &flag, &tell).await;
                if !flag.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    log.resumes += 1;
                }
            }
            log
        });
        WatchFollower {
            stop,
            task: Some(task),
            seen_revision,
        }
    }

    /// Lets it catch up to `revision` (the newest acknowledged write), for up to
    /// `patience`, then stops it: a watcher still short of it then has missed what it has
    /// not seen, which the watch check reports. The time it waited, and whether it caught
    /// up, are in its log's `catch_up`.
    pub async fn stop_once_caught_up(mut self, revision: i64, patience: Duration) -> WatchLog {
        let started = std::time::Instant::now();
        let caught_up = tokio::time::timeout(patience, self.seen_revision.wait_for(|seen| *seen >= revision))
            .await
            .is_ok_and(|told| told.is_ok());
        let waited_ms = started.elapsed().as_millis() as u64;
        let mut log = self.stop().await;
        log.catch_up = Some(CatchUp { caught_up, waited_ms });
        log
    }

    pub async fn stop(mut self) -> WatchLog {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => WatchLog::default(),
        }
    }
}

impl Drop for WatchFollower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Watches through one member until the stream ends, fails or the follower is stopped.
async fn follow(
    member: &MemberClient,
    prefix: &str,
    log: &mut WatchLog,
    stop: &AtomicBool,
    tell: &tokio::sync::watch::Sender<i64>,
) {
    let mut client = member.raw_client();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(log.last_revision + 1);
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), client.watch(prefix, Some(options))).await
    else {
        return;
    };
    // Where this watch starts in the log, for the check that it continues right there.
    if log.last_revision > 0 {
        let at = log.responses.responses.len();
        log.responses.resumes.push((at, log.last_revision + 1));
    }
    while !stop.load(Ordering::Relaxed) {
        let message = match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
            Err(_) => continue,
            Ok(Ok(Some(message))) => message,
            Ok(_) => return,
        };
        if message.compact_revision() > 0 {
            // The revision it asked for is gone: re-list, then watch from there.
            log.relists += 1;
            if let Ok(Ok(listing)) = tokio::time::timeout(
                Duration::from_secs(2),
                client.get(prefix, Some(GetOptions::new().with_prefix().with_keys_only())),
            )
            .await
            {
                log.seen.extend(
                    listing
                        .kvs()
                        .iter()
                        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
                );
                log.last_revision = listing.header().map(|h| h.revision()).unwrap_or(log.last_revision);
                tell.send_replace(log.last_revision);
                // The listing stands for every event up to its revision: for the checks,
                // as a compaction there (nothing at or below it is expected as an event).
                log.responses.responses.push(crate::history::watch::WatchResponse {
                    events: Vec::new(),
                    compact_revision: Some(log.last_revision),
                });
            }
            return;
        }
        if message.canceled() {
            return;
        }
        let mut response = crate::history::watch::WatchResponse::default();
        for event in message.events() {
            if let Some(kv) = event.kv() {
                response.events.push(crate::history::watch::WatchEvent {
                    revision: kv.mod_revision(),
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                });
                log.events += 1;
                log.seen.insert(String::from_utf8_lossy(kv.key()).into_owned());
                log.last_revision = log.last_revision.max(kv.mod_revision());
            }
        }
        if !response.events.is_empty() {
            log.responses.responses.push(response);
            tell.send_replace(log.last_revision);
        }
    }
}
