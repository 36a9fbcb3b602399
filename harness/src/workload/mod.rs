//! The write workload: concurrent writers put sequenced keys under a per-run prefix and
//! record every acknowledged put in a ledger (key, value, revision, time), which the
//! data-loss check later compares with what the cluster holds. Beside the writers, the
//! application may keep leases alive (`leases.rs`).

pub mod leases;
pub mod registers;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::etcd::ClientSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadConfig {
    /// Concurrent writers, each with its own sequence of keys.
    pub writers: usize,
    /// Target writes per second, summed over all writers.
    pub rate: u32,
    /// A put that takes longer counts as failed (its outcome is unknown).
    pub put_timeout_ms: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Writes before the first fault.
    pub warmup_ms: u64,
    /// Writes after recovery, before the checks.
    pub cooldown_ms: u64,
    /// Follow the key space with a watch that resumes from its last revision.
    #[serde(default)]
    pub watch: bool,
    /// Leases kept alive beside the writers, each with one key attached.
    #[serde(default)]
    pub leases: usize,
    /// Their TTL in seconds.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// Registers the mixed clients work on (0: none), with a history of every operation.
    #[serde(default)]
    pub registers: usize,
}

fn default_lease_ttl_s() -> u64 {
    5
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            writers: 4,
            rate: 100,
            put_timeout_ms: 500,
            value_size: 128,
            warmup_ms: 3_000,
            cooldown_ms: 2_000,
            watch: false,
            leases: 0,
            lease_ttl_s: default_lease_ttl_s(),
            registers: 0,
        }
    }
}

/// Key of a writer's `seq`-th put under `prefix`.
pub fn key_for(prefix: &str, writer: u32, seq: u64) -> String {
    format!("{prefix}w{writer:02}/{seq:010}")
}

/// Value of a writer's `seq`-th put: readable, unique, padded to `size` bytes.
pub fn value_for(writer: u32, seq: u64, size: usize) -> String {
    let mut v = format!("w{writer:02}-s{seq:010}-");
    let fill = b"abcdefghijklmnopqrstuvwxyz";
    let mut i = 0;
    while v.len() < size {
        v.push(fill[i % fill.len()] as char);
        i += 1;
    }
    v.truncate(size.max(1));
    v
}

/// One acknowledged put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedWrite {
    pub writer: u32,
    pub seq: u64,
    /// Revision the cluster returned for the put.
    pub revision: i64,
    /// When the put was sent and when it was acknowledged, in run milliseconds.
    pub sent_ms: u64,
    pub acked_ms: u64,
    /// Member the put went to.
    pub member: String,
}

/// One put that failed or timed out: the cluster may or may not have applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedWrite {
    pub writer: u32,
    pub seq: u64,
    pub sent_ms: u64,
    pub failed_ms: u64,
    pub kind: String,
}

/// Every put the workload made, acknowledged or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub prefix: String,
    pub value_size: usize,
    pub acked: Vec<AckedWrite>,
    pub failed: Vec<FailedWrite>,
}

impl Ledger {
    pub fn key(&self, w: &AckedWrite) -> String {
        key_for(&self.prefix, w.writer, w.seq)
    }

    pub fn value(&self, w: &AckedWrite) -> String {
        value_for(w.writer, w.seq, self.value_size)
    }

    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        let mut kinds = BTreeMap::new();
        for f in &self.failed {
            *kinds.entry(f.kind.clone()).or_insert(0) += 1;
        }
        kinds
    }

    /// Longest stretch without an acknowledgement, as (from_ms, to_ms), within [start, end].
    pub fn longest_ack_gap(&self, start_ms: u64, end_ms: u64) -> (u64, u64) {
        let mut times: Vec<u64> = self.acked.iter().map(|w| w.acked_ms).collect();
        times.sort_unstable();
        let mut best = (start_ms, start_ms);
        let mut prev = start_ms;
        for t in times
            .into_iter()
            .filter(|t| *t >= start_ms && *t <= end_ms)
            .chain([end_ms])
        {
            if t.saturating_sub(prev) > best.1 - best.0 {
                best = (prev, t);
            }
            prev = t;
        }
        best
    }

    /// Longest time between two consecutive acknowledgements where that stretch overlaps
    /// [start, end] (it may begin before and end after): the write stall something that
    /// ran in that window caused, or took part in. 0 when no stretch overlaps.
    pub fn longest_ack_gap_overlapping(&self, start_ms: u64, end_ms: u64) -> u64 {
        let mut times: Vec<u64> = self.acked.iter().map(|w| w.acked_ms).collect();
        times.sort_unstable();
        times
            .windows(2)
            .filter(|pair| pair[1] >= start_ms && pair[0] <= end_ms)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or(0)
    }

    /// First acknowledgement of a put sent at or after `since_ms`.
    pub fn first_ack_sent_after(&self, since_ms: u64) -> Option<&AckedWrite> {
        self.acked
            .iter()
            .filter(|w| w.sent_ms >= since_ms)
            .min_by_key(|w| w.acked_ms)
    }

    /// The acknowledgement from which writes resumed for good: of the puts sent at or after
    /// `since_ms`, the first acknowledged after the last stretch longer than `outage_ms`
    /// without an acknowledgement that began before `settled_ms` (when the recovery
    /// finished). A cluster that serves for a moment and then goes away again (a temporary
    /// etcd of a start-up script) has not resumed yet.
    pub fn resumed_for_good(&self, since_ms: u64, settled_ms: u64, outage_ms: u64) -> Option<&AckedWrite> {
        let mut acks: Vec<&AckedWrite> = self.acked.iter().filter(|w| w.sent_ms >= since_ms).collect();
        acks.sort_by_key(|w| w.acked_ms);
        let mut resumed = acks.first().copied();
        for pair in acks.windows(2) {
            if pair[0].acked_ms < settled_ms && pair[1].acked_ms - pair[0].acked_ms > outage_ms {
                resumed = Some(pair[1]);
            }
        }
        resumed
    }

    /// Writes the ledger as JSON lines: one object per put, acknowledged or failed.
    pub fn write_jsonl(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).map_err(Error::io(path))?;
        let mut out = std::io::BufWriter::new(file);
        let mut write = |line: serde_json::Value| -> std::io::Result<()> {
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")
        };
        for w in &self.acked {
            write(serde_json::json!({
                "outcome": "acked", "key": self.key(w), "value": self.value(w),
                "revision": w.revision, "sent_ms": w.sent_ms, "acked_ms": w.acked_ms,
                "member": w.member,
            }))
            .map_err(Error::io(path))?;
        }
        for f in &self.failed {
            write(serde_json::json!({
                "outcome": "failed", "key": key_for(&self.prefix, f.writer, f.seq),
                "sent_ms": f.sent_ms, "failed_ms": f.failed_ms, "error": f.kind,
            }))
            .map_err(Error::io(path))?;
        }
        out.flush().map_err(Error::io(path))
    }
}

/// The kind of a write refused because the backend quota is exhausted.
pub const NO_SPACE: &str = "no-space";

/// Sorts an etcd client error into a short, stable kind for the report.
pub fn error_kind(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let kind = if m.contains("no leader") {
        "no-leader"
    } else if m.contains("database space exceeded") {
        NO_SPACE
    } else if m.contains("timed out") || m.contains("deadline") || m.contains("timeout") {
        "timeout"
    } else if m.contains("unavailable") || m.contains("connect") || m.contains("transport") || m.contains("broken pipe")
    {
        "unavailable"
    } else if m.contains("leader changed") || m.contains("stopped") {
        "leader-changed"
    } else {
        "other"
    };
    kind.to_string()
}

/// Running writers; `stop` ends them and hands back the ledger.
pub struct Workload {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<WriterLog>>,
    prefix: String,
    value_size: usize,
}

#[derive(Default)]
struct WriterLog {
    acked: Vec<AckedWrite>,
    failed: Vec<FailedWrite>,
}

impl Workload {
    /// Starts `config.writers` writers spread over `members`. Writer `i` starts on member
    /// `i % n` and moves to the next member whenever a put fails. A switch of `members`
    /// takes effect from each writer's next put.
    pub fn start(config: &WorkloadConfig, prefix: String, members: ClientSet, clock: Clock) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let per_writer = Duration::from_secs_f64(config.writers as f64 / config.rate as f64);
        let timeout = Duration::from_millis(config.put_timeout_ms);
        let writers = (0..config.writers as u32)
            .map(|writer| {
                let stop = stop.clone();
                let members = members.clone();
                let prefix = prefix.clone();
                let value_size = config.value_size;
                // Stagger writers so their puts spread evenly over the period.
                let offset = per_writer.mul_f64(writer as f64 / config.writers as f64);
                tokio::spawn(async move {
                    let mut log = WriterLog::default();
                    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, per_writer);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut cursor = writer as usize;
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        ticker.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        seq += 1;
                        let current = members.current();
                        let member = &current[cursor % current.len()];
                        let key = key_for(&prefix, writer, seq);
                        let value = value_for(writer, seq, value_size);
                        let sent_ms = clock.now_ms();
                        match member.put(key, value, timeout).await {
                            Ok(revision) => log.acked.push(AckedWrite {
                                writer,
                                seq,
                                revision,
                                sent_ms,
                                acked_ms: clock.now_ms(),
                                member: member.name.clone(),
                            }),
                            Err(message) => {
                                log.failed.push(FailedWrite {
                                    writer,
                                    seq,
                                    sent_ms,
                                    failed_ms: clock.now_ms(),
                                    kind: error_kind(&message),
                                });
                                cursor += 1;
                            }
                        }
                    }
                    log
                })
            })
            .collect();
        Workload {
            stop,
            writers,
            prefix,
            value_size: config.value_size,
        }
    }

    /// Stops the writers (each finishes its put in flight) and returns the ledger.
    pub async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        let mut ledger = Ledger {
            prefix: self.prefix,
            value_size: self.value_size,
            ..Ledger::default()
        };
        for handle in self.writers {
            if let Ok(log) = handle.await {
                ledger.acked.extend(log.acked);
                ledger.failed.extend(log.failed);
            }
        }
        ledger.acked.sort_by_key(|w| (w.acked_ms, w.writer, w.seq));
        ledger.failed.sort_by_key(|f| (f.sent_ms, f.writer, f.seq));
        ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_sized() {
        assert_eq!(value_for(1, 2, 128).len(), 128);
        assert_eq!(value_for(1, 2, 16).len(), 16);
        assert_ne!(value_for(1, 2, 64), value_for(2, 1, 64));
        assert_eq!(key_for("/p/", 3, 7), "/p/w03/0000000007");
    }

    #[test]
    fn longest_gap_covers_the_edges() {
        let w = |acked_ms| AckedWrite {
            writer: 0,
            seq: acked_ms,
            revision: 1,
            sent_ms: acked_ms,
            acked_ms,
            member: "m".into(),
        };
        let ledger = Ledger {
            acked: vec![w(100), w(150), w(900), w(950)],
            ..Ledger::default()
        };
        assert_eq!(ledger.longest_ack_gap(0, 1000), (150, 900));
        assert_eq!(ledger.longest_ack_gap(0, 3000), (950, 3000));
        assert_eq!(Ledger::default().longest_ack_gap(10, 20), (10, 20));
    }

    #[test]
    fn writes_resume_for_good_after_the_last_outage_before_the_recovery_ends() {
        let w = |sent_ms, acked_ms| AckedWrite {
            writer: 0,
            seq: acked_ms,
            revision: 1,
            sent_ms,
            acked_ms,
            member: "m".into(),
        };
        // A temporary etcd takes writes at 5000-5100, goes away, etcd is back at 7000.
        let ledger = Ledger {
            acked: vec![w(100, 110), w(5000, 5010), w(5100, 5110), w(7000, 7010), w(7050, 7060)],
            ..Ledger::default()
        };
        assert_eq!(
            ledger.resumed_for_good(1000, 8000, 1000).map(|a| a.acked_ms),
            Some(7010)
        );
        // An outage after the recovery finished is not part of the RTO.
        assert_eq!(
            ledger.resumed_for_good(1000, 5100, 1000).map(|a| a.acked_ms),
            Some(5010)
        );
        // Without an outage the first write after the fault is the one.
        assert_eq!(
            ledger.resumed_for_good(1000, 8000, 5000).map(|a| a.acked_ms),
            Some(5010)
        );
        assert_eq!(ledger.resumed_for_good(8000, 9000, 1000), None);
    }

    #[test]
    fn error_kinds_are_stable() {
        assert_eq!(error_kind("etcdserver: no leader"), "no-leader");
        assert_eq!(error_kind("put timed out after 500 ms"), "timeout");
        assert_eq!(error_kind("transport error"), "unavailable");
    }
}
