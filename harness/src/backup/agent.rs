//! The backup agent: full snapshots on a schedule (each verified after writing: etcd's
//! appended SHA-256, then `etcdutl snapshot status` for its real revision and key count,
//! which names the file), and deltas: a watch on the whole key space from the last saved
//! revision + 1, written out every delta period and whenever the buffer passes its memory
//! limit. When the watch breaks, or the member dies, the agent resumes on the next member
//! from the last revision it holds; when the revision it needs was compacted, it takes a new
//! full snapshot (the chain then continues from that full, never with a silent hole).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::config::AgentConfig;
use super::naming::{DeltaName, FullName};
use super::record::DeltaEvent;
use super::retention;
use super::store::BackupStore;
use crate::clock::Clock;
use crate::docker::runtime::DockerRuntime;
use crate::error::{Error, Result};
use crate::etcd::MemberClient;
use crate::readiness::Wait;

/// The largest watch message the agent accepts (etcd sends a revision's events together).
pub const MAX_WATCH_MESSAGE: usize = 1 << 31;

/// A full snapshot the agent saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullRecord {
    pub file: String,
    pub from: String,
    pub revision: i64,
    pub total_keys: u64,
    /// The snapshot's size, and what the store holds after compression.
    pub size: u64,
    pub stored_bytes: u64,
    pub taken_ms: u64,
    /// `start`, `schedule` or `compacted` (the watch's revision was compacted away).
    pub reason: String,
}

/// What the agent did, updated as it works (so that it survives an abort).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFigures {
    pub fulls: Vec<FullRecord>,
    pub deltas: u64,
    pub delta_events: u64,
    /// Encoded size of the deltas, and what the store holds after compression.
    pub delta_bytes: u64,
    pub delta_stored_bytes: u64,
    /// Deltas written early because the buffer passed the memory limit.
    pub flushes_by_memory: u64,
    /// The most the buffer held, in bytes.
    pub peak_buffer_bytes: u64,
    /// The newest revision a delta holds.
    pub last_saved_revision: i64,
    /// When that delta was written, in run milliseconds.
    pub last_saved_ms: u64,
    /// Times the watch was opened again (after a break), and on a different member.
    pub watch_restarts: u64,
    pub endpoint_switches: u64,
    /// Why the watch broke, the first 20 times.
    pub watch_breaks: Vec<String>,
    /// The members the watch ran on, in order (a member once per stretch).
    pub watched: Vec<String>,
    pub defrags: u64,
    /// Events received but not yet written out (what an abort loses).
    pub unsaved_events: u64,
    pub errors: Vec<String>,
}

/// Where the agent runs its verification tool (`etcdutl`, or `etcdctl` on 3.4, in a
/// one-off container of the cluster's image).
#[derive(Clone)]
pub struct Verifier {
    pub docker: DockerRuntime,
    pub image: crate::cluster::ClusterImage,
    pub run_id: String,
}

/// A running agent. `stop` writes out what it holds and ends it; `abort` ends it at once
/// (the buffer is lost, as when its machine dies).
pub struct Agent {
    stop: Arc<AtomicBool>,
    drain_to: Arc<AtomicI64>,
    figures: Arc<Mutex<AgentFigures>>,
    task: Option<JoinHandle<()>>,
}

struct Worker {
    config: AgentConfig,
    members: Vec<MemberClient>,
    store: BackupStore,
    verifier: Verifier,
    scratch: PathBuf,
    clock: Clock,
    figures: Arc<Mutex<AgentFigures>>,
    stop: Arc<AtomicBool>,
    /// On stop, keep watching (a little while) until this revision is held.
    drain_to: Arc<AtomicI64>,
    /// The revision the buffer continues from: the next delta's first revision.
    next_first: i64,
    /// The newest revision received (buffered or saved).
    last_revision: i64,
    buffer: Vec<DeltaEvent>,
    buffer_bytes: u64,
    cursor: usize,
}

impl Agent {
    /// Starts the agent; `watch_first` is the index of the member it watches first.
    pub fn start(
        config: AgentConfig,
        members: Vec<MemberClient>,
        watch_first: usize,
        store: BackupStore,
        verifier: Verifier,
        scratch: PathBuf,
        clock: Clock,
    ) -> Agent {
        let stop = Arc::new(AtomicBool::new(false));
        let drain_to = Arc::new(AtomicI64::new(0));
        let figures = Arc::new(Mutex::new(AgentFigures::default()));
        let mut worker = Worker {
            drain_to: drain_to.clone(),
            config,
            cursor: watch_first % members.len().max(1),
            members,
            store,
            verifier,
            scratch,
            clock,
            figures: figures.clone(),
            stop: stop.clone(),
            next_first: 0,
            last_revision: 0,
            buffer: Vec::new(),
            buffer_bytes: 0,
        };
        let task = tokio::spawn(async move { worker.run().await });
        Agent {
            stop,
            drain_to,
            figures,
            task: Some(task),
        }
    }

    /// What the agent has done so far.
    pub fn figures(&self) -> AgentFigures {
        self.figures.lock().expect("figures lock").clone()
    }

    /// Waits (up to 3 s) until the watch has delivered `drain_to` (0: nothing to wait
    /// for), writes out the buffered events, then ends the agent.
    pub async fn stop(mut self, drain_to: i64) -> AgentFigures {
        self.drain_to.store(drain_to, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.figures()
    }

    /// Ends the agent at once; what it had not written out is lost.
    pub async fn abort(mut self) -> AgentFigures {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.figures()
    }

    /// Waits until the agent has saved its first full snapshot (or `timeout` passes).
    pub async fn wait_first_full(&self, timeout: Duration) -> bool {
        Wait::new("the agent's first full snapshot", Duration::from_millis(50), timeout)
            .until_some(|| async { (!self.figures.lock().expect("figures lock").fulls.is_empty()).then_some(()) })
            .await
            .is_some()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How one watch stretch ended.
enum WatchEnd {
    Stopped,
    /// The stream broke or the member is gone (why): try the next member.
    Broken(String),
    /// The revision the watch needs was compacted.
    Compacted(i64),
}

impl Worker {
    fn note<T>(&self, update: impl FnOnce(&mut AgentFigures) -> T) -> T {
        update(&mut self.figures.lock().expect("figures lock"))
    }

    fn error(&self, message: String) {
        tracing::warn!("backup agent: {message}");
        self.note(|f| {
            if f.errors.len() < 100 {
                f.errors.push(message)
            }
        });
    }

    async fn run(&mut self) {
        // A store the agent wrote before continues from its head; otherwise a full first.
        let head = self.store.catalog().await.ok().and_then(|c| c.head);
        match head {
            Some(head) if self.config.delta_period_ms.is_some() => {
                self.last_revision = head;
                self.next_first = head + 1;
            }
            _ => loop {
                match self.take_full("start").await {
                    Ok(revision) => {
                        self.last_revision = revision;
                        self.next_first = revision + 1;
                        break;
                    }
                    Err(e) => self.error(format!("first full snapshot: {e}")),
                }
                if self.stopped_for(Duration::from_secs(1)).await {
                    return;
                }
            },
        }
        let mut next_full = Instant::now() + self.config.full_interval();
        let mut next_defrag = self
            .config
            .defrag_interval_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let Some(period) = self.config.delta_period_ms.map(Duration::from_millis) else {
            // Full snapshots only.
            while !self.stop.load(Ordering::Relaxed) {
                self.scheduled_work(&mut next_full, &mut next_defrag).await;
                self.stopped_for(Duration::from_millis(100)).await;
            }
            return;
        };
        let mut next_flush = Instant::now() + period;
        let mut previous_member: Option<usize> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let index = self.cursor % self.members.len();
            if previous_member.is_some_and(|p| p != index) {
                self.note(|f| f.endpoint_switches += 1);
            }
            if previous_member.is_some() {
                self.note(|f| f.watch_restarts += 1);
            }
            previous_member = Some(index);
            let end = self
                .watch_stretch(index, period, &mut next_flush, &mut next_full, &mut next_defrag)
                .await;
            match end {
                WatchEnd::Stopped => break,
                WatchEnd::Broken(why) => {
                    self.note(|f| {
                        if f.watch_breaks.len() < 20 {
                            f.watch_breaks.push(why)
                        }
                    });
                    self.cursor += 1;
                    self.stopped_for(Duration::from_millis(100)).await;
                }
                WatchEnd::Compacted(compact_revision) => {
                    self.error(format!(
                        "revision {} was compacted (compact revision {compact_revision}); taking a new full snapshot",
                        self.last_revision + 1
                    ));
                    self.flush(false).await;
                    match self.take_full("compacted").await {
                        Ok(revision) => {
                            self.last_revision = revision;
                            self.next_first = revision + 1;
                        }
                        Err(e) => {
                            self.error(format!("full snapshot after compaction: {e}"));
                            self.stopped_for(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        }
        self.flush(false).await;
    }

    /// Sleeps up to `d`; true when the agent was told to stop.
    async fn stopped_for(&self, d: Duration) -> bool {
        Wait::new("the agent's stop signal", Duration::from_millis(20), d)
            .until_some(|| async { self.stop.load(Ordering::Relaxed).then_some(()) })
            .await
            .is_some()
    }

    async fn scheduled_work(&mut self, next_full: &mut Instant, next_defrag: &mut Option<Instant>) {
        if Instant::now() >= *next_full {
            if let Err(e) = self.take_full("schedule").await {
                self.error(format!("scheduled full snapshot: {e}"));
            }
            *next_full = Instant::now() + self.config.full_interval();
        }
        if let (Some(at), Some(ms)) = (*next_defrag, self.config.defrag_interval_ms) {
            if Instant::now() >= at {
                for m in &self.members {
                    match m.defragment(Duration::from_secs(60)).await {
                        Ok(()) => self.note(|f| f.defrags += 1),
                        Err(e) => self.error(format!("defragment {}: {e}", m.name)),
                    }
                }
                *next_defrag = Some(Instant::now() + Duration::from_millis(ms));
            }
        }
    }

    /// Watches through one member until the stream breaks, compaction or stop.
    async fn watch_stretch(
        &mut self,
        index: usize,
        period: Duration,
        next_flush: &mut Instant,
        next_full: &mut Instant,
        next_defrag: &mut Option<Instant>,
    ) -> WatchEnd {
        let member = self.members[index].clone();
        // One revision's events come in one message: a delete of many keys can be far
        // larger than gRPC's default 4 MiB limit, and would break the watch at every try.
        let mut client = member
            .raw_client()
            .watch_client()
            .max_decoding_message_size(MAX_WATCH_MESSAGE);
        let options = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(self.last_revision + 1);
        let opened = tokio::time::timeout(Duration::from_secs(1), client.watch(vec![0u8], Some(options))).await;
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return WatchEnd::Broken(format!("watch on {}: {e}", member.name)),
            Err(_) => return WatchEnd::Broken(format!("watch on {}: no answer within 1 s", member.name)),
        };
        self.note(|f| {
            if f.watched.last() != Some(&member.name) {
                f.watched.push(member.name.clone());
            }
        });
        // A member that lost quorum keeps the stream open and silent: after this long
        // without a message, the agent checks the member still serves, else moves on.
        let silence_limit = Duration::from_secs(5);
        let mut last_heard = Instant::now();
        let mut stop_seen: Option<Instant> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if self.last_revision >= self.drain_to.load(Ordering::Relaxed)
                    || since.elapsed() > Duration::from_secs(3)
                {
                    return WatchEnd::Stopped;
                }
            }
            if Instant::now() >= *next_flush {
                self.flush(false).await;
                *next_flush = Instant::now() + period;
            }
            self.scheduled_work(next_full, next_defrag).await;
            let wait = next_flush
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            let message = match tokio::time::timeout(wait, stream.message()).await {
                Err(_) => {
                    if last_heard.elapsed() > silence_limit {
                        if self.members.len() > 1 && !member.is_healthy(Duration::from_millis(500)).await {
                            return WatchEnd::Broken(format!("{} is silent and does not serve", member.name));
                        }
                        last_heard = Instant::now();
                    }
                    continue;
                }
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => return WatchEnd::Broken(format!("{} ended the watch stream", member.name)),
                Ok(Err(e)) => return WatchEnd::Broken(format!("watch on {}: {e}", member.name)),
            };
            last_heard = Instant::now();
            if message.compact_revision() > 0 {
                return WatchEnd::Compacted(message.compact_revision());
            }
            if message.canceled() {
                return WatchEnd::Broken(format!(
                    "{} cancelled the watch: {}",
                    member.name,
                    message.cancel_reason()
                ));
            }
            for event in message.events() {
                let Some(e) = DeltaEvent::from_watch(event) else {
                    continue;
                };
                // Never twice: a resumed watch starts after the last revision held.
                if e.revision <= self.last_revision && self.buffer.last().is_none_or(|b| b.revision != e.revision) {
                    continue;
                }
                self.last_revision = e.revision;
                self.buffer_bytes += e.footprint() as u64;
                self.buffer.push(e);
            }
            let (bytes, events) = (self.buffer_bytes, self.buffer.len() as u64);
            self.note(|f| {
                f.peak_buffer_bytes = f.peak_buffer_bytes.max(bytes);
                f.unsaved_events = events;
            });
            if self.buffer_bytes >= self.config.memory_limit_bytes {
                self.flush(true).await;
            }
        }
    }

    /// Writes the buffer out as one delta (nothing when it is empty). On a store error the
    /// events stay buffered for the next attempt.
    async fn flush(&mut self, by_memory: bool) {
        let Some(last) = self.buffer.last() else {
            return;
        };
        let name = DeltaName {
            first: self.next_first,
            last: last.revision,
            compression: self.config.compression,
        };
        let (encoded_len, stored_len) = match self.store.put_delta(&name, &self.buffer).await {
            Ok(sizes) => sizes,
            Err(e) => {
                self.error(format!("write {}: {e}", name.file()));
                return;
            }
        };
        let events = self.buffer.len() as u64;
        let now = self.clock.now_ms();
        self.note(|f| {
            f.deltas += 1;
            f.delta_events += events;
            f.delta_bytes += encoded_len;
            f.delta_stored_bytes += stored_len;
            f.flushes_by_memory += by_memory as u64;
            f.last_saved_revision = name.last;
            f.last_saved_ms = now;
            f.unsaved_events = 0;
        });
        self.next_first = name.last + 1;
        self.buffer.clear();
        self.buffer_bytes = 0;
    }

    /// Saves, verifies and stores a full snapshot from the first member that gives one;
    /// returns its revision.
    async fn take_full(&mut self, reason: &str) -> Result<i64> {
        std::fs::create_dir_all(&self.scratch).map_err(Error::io(&self.scratch))?;
        let path = self.scratch.join("full.db");
        let mut last_error = String::from("no member answered");
        let order: Vec<MemberClient> = (0..self.members.len())
            .map(|i| self.members[(self.cursor + i) % self.members.len()].clone())
            .collect();
        for member in order {
            // `save_snapshot` checks the SHA-256 etcd appends before it writes the file.
            let size = match member.save_snapshot(&path, Duration::from_secs(120)).await {
                Ok(size) => size,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let v = &self.verifier;
            let status =
                crate::cluster::snapshot::snapshot_status(&v.docker, &v.image, &v.run_id, "agent-full-status", &path)
                    .await?;
            // A key space that never held a key reports revision 0; etcd counts it as 1.
            let revision = status.revision.max(1);
            let name = FullName {
                revision,
                taken_unix_ms: unix_ms(),
                compression: self.config.compression,
            };
            let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
            let stored = self.config.compression.compress(&bytes);
            let stored_bytes = stored.len() as u64;
            self.store.put_with_hash(&name.file(), stored).await?;
            let record = FullRecord {
                file: name.file(),
                from: member.name.clone(),
                revision,
                total_keys: status.total_keys,
                size,
                stored_bytes,
                taken_ms: self.clock.now_ms(),
                reason: reason.to_string(),
            };
            tracing::info!(file = %record.file, keys = record.total_keys, "backup agent: full snapshot saved");
            self.note(|f| f.fulls.push(record));
            self.apply_retention().await;
            return Ok(revision);
        }
        Err(Error::Procedure {
            step: "full snapshot".into(),
            message: last_error,
        })
    }

    async fn apply_retention(&self) {
        let Ok(catalog) = self.store.catalog().await else {
            return;
        };
        let doomed = retention::fulls_to_delete(self.config.retention, &catalog.fulls, unix_ms());
        let kept: Vec<FullName> = catalog.fulls.iter().copied().filter(|f| !doomed.contains(f)).collect();
        let stale_deltas = retention::deltas_to_delete(&kept, &catalog.deltas);
        let files = doomed
            .iter()
            .map(|f| f.file())
            .chain(stale_deltas.iter().map(|d| d.file()));
        for file in files {
            if let Err(e) = self.store.delete_with_hash(&file).await {
                self.error(format!("retention: {e}"));
            }
        }
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
