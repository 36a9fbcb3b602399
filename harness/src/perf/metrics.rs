//! A member's Prometheus metrics, read from `/metrics` on its client port (etcd serves
//! HTTP and gRPC on the same port), through `etcd::http`: resident memory for `datascale`,
//! and CPU, WAL fsync and backend commit figures that show what limits a perf run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The metric families a run reads, summed over their label sets.
const WANTED: [&str; 7] = [
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "etcd_disk_wal_fsync_duration_seconds_sum",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_disk_backend_commit_duration_seconds_sum",
    "etcd_disk_backend_commit_duration_seconds_count",
    "etcd_server_proposals_committed_total",
];

/// Parses Prometheus text exposition into `name -> value`, summing the samples of one
/// name over all label sets, for the names in `wanted`.
pub fn parse_exposition(text: &str, wanted: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !wanted.contains(&name) {
            continue;
        }
        let rest = match line[name_end..].rfind('}') {
            Some(close) => &line[name_end + close + 1..],
            None => &line[name_end..],
        };
        if let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            *out.entry(name.to_string()).or_insert(0.0) += value;
        }
    }
    out
}

/// `GET /metrics` from `endpoint` (`http://host:port`).
pub async fn fetch_metrics_text(endpoint: &str, timeout: Duration) -> Result<String, String> {
    crate::etcd::http::get(endpoint, "/metrics", timeout).await
}

/// One member's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerSample {
    pub resident_memory_bytes: f64,
    pub cpu_seconds: f64,
    pub wal_fsync_seconds: f64,
    pub wal_fsyncs: f64,
    pub backend_commit_seconds: f64,
    pub backend_commits: f64,
    pub proposals_committed: f64,
}

pub async fn sample(endpoint: &str, timeout: Duration) -> Result<ServerSample, String> {
    let text = fetch_metrics_text(endpoint, timeout).await?;
    let m = parse_exposition(&text, &WANTED);
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    if !m.contains_key("process_resident_memory_bytes") {
        return Err(format!("{endpoint}/metrics has no process_resident_memory_bytes"));
    }
    Ok(ServerSample {
        resident_memory_bytes: get(WANTED[0]),
        cpu_seconds: get(WANTED[1]),
        wal_fsync_seconds: get(WANTED[2]),
        wal_fsyncs: get(WANTED[3]),
        backend_commit_seconds: get(WANTED[4]),
        backend_commits: get(WANTED[5]),
        proposals_committed: get(WANTED[6]),
    })
}

/// What one member did during a run (differences between two samples).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerActivity {
    pub member: String,
    pub cpu_seconds: f64,
    /// CPU seconds per second of run: 1.0 is one core kept busy.
    pub cpu_cores: f64,
    pub wal_fsyncs: u64,
    pub wal_fsync_mean_ms: f64,
    pub backend_commit_mean_ms: f64,
    pub proposals_committed: u64,
    pub resident_memory_before_bytes: u64,
    pub resident_memory_after_bytes: u64,
}

fn mean_ms(seconds: f64, count: f64) -> f64 {
    if count > 0.0 {
        seconds / count * 1000.0
    } else {
        0.0
    }
}

pub fn activity(member: &str, before: &ServerSample, after: &ServerSample, elapsed: Duration) -> ServerActivity {
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let secs = elapsed.as_secs_f64();
    ServerActivity {
        member: member.to_string(),
        cpu_seconds: cpu,
        cpu_cores: if secs > 0.0 { cpu / secs } else { 0.0 },
        wal_fsyncs: (after.wal_fsyncs - before.wal_fsyncs).max(0.0) as u64,
        wal_fsync_mean_ms: mean_ms(
            after.wal_fsync_seconds - before.wal_fsync_seconds,
            after.wal_fsyncs - before.wal_fsyncs,
        ),
        backend_commit_mean_ms: mean_ms(
            after.backend_commit_seconds - before.backend_commit_seconds,
            after.backend_commits - before.backend_commits,
        ),
        proposals_committed: (after.proposals_committed - before.proposals_committed).max(0.0) as u64,
        resident_memory_before_bytes: before.resident_memory_bytes as u64,
        resident_memory_after_bytes: after.resident_memory_bytes as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_summed_over_labels() {
        let text = "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                    # TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes 2.5165824e+07\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 10\n\
                    etcd_disk_wal_fsync_duration_seconds_sum 0.5\n\
                    etcd_disk_wal_fsync_duration_seconds_count 100\n\
                    etcd_server_proposals_committed_total 7\n\
                    grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\"} 3\n\
                    grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Put\"} 2\n";
        let m = parse_exposition(text, &["process_resident_memory_bytes", "grpc_server_handled_total"]);
        assert_eq!(m["process_resident_memory_bytes"], 25_165_824.0);
        assert_eq!(m["grpc_server_handled_total"], 5.0);
        assert_eq!(m.len(), 2);
        let all = parse_exposition(text, &WANTED);
        assert_eq!(all["etcd_disk_wal_fsync_duration_seconds_count"], 100.0);
    }

    #[test]
    fn activity_is_the_difference() {
        let before = ServerSample {
            cpu_seconds: 10.0,
            wal_fsyncs: 100.0,
            wal_fsync_seconds: 1.0,
            ..ServerSample::default()
        };
        let after = ServerSample {
            cpu_seconds: 15.0,
            wal_fsyncs: 300.0,
            wal_fsync_seconds: 2.0,
            ..ServerSample::default()
        };
        let a = activity("etcd1", &before, &after, Duration::from_secs(10));
        assert_eq!(a.cpu_cores, 0.5);
        assert_eq!(a.wal_fsyncs, 200);
        assert_eq!(a.wal_fsync_mean_ms, 5.0);
    }
}
