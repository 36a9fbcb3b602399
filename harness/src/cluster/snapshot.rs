//! Snapshot files and the image's own snapshot tool: `snapshot status` of a local file,
//! run in a one-off container of the cluster's image (`etcdutl`, or `etcdctl` on 3.4) so the
//! tool matches the server, and its answer parsed. The restore procedures, the backup agent
//! and `backup compact` all verify snapshots through it.

use std::time::Duration;

use serde::Deserialize;

use super::ClusterImage;
use crate::docker::runtime::{DockerRuntime, ToolFile};
use crate::error::{Error, Result};

/// Where the snapshot file sits inside the one-off tool containers.
pub const SNAPSHOT_IN_CONTAINER: &str = "/snapshot.db";

/// The JSON `etcdutl snapshot status -w json` prints.
#[derive(Debug, Deserialize)]
struct StatusJson {
    hash: u64,
    revision: i64,
    #[serde(rename = "totalKey")]
    total_key: u64,
    #[serde(rename = "totalSize")]
    total_size: u64,
}

/// Parses `etcdutl snapshot status --write-out=json` output.
pub fn parse_snapshot_status(stdout: &str) -> Option<(u64, i64, u64, u64)> {
    let line = stdout.lines().find(|l| l.trim_start().starts_with('{'))?;
    let s: StatusJson = serde_json::from_str(line.trim()).ok()?;
    Some((s.hash, s.revision, s.total_key, s.total_size))
}

/// What `etcdutl snapshot status` says about a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// Runs `snapshot status` (etcdutl, or etcdctl on 3.4) on a local snapshot file in a
/// one-off container of `image` (so the tool matches the server), and parses its answer.
pub async fn snapshot_status(
    docker: &DockerRuntime,
    image: &ClusterImage,
    run_id: &str,
    label: &str,
    path: &std::path::Path,
) -> Result<SnapshotStatus> {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spec = image.snapshot_tool_container(format!("etcd-drill-{run_id}-{label}-{n}"), status_args(), vec![]);
    let files = [ToolFile {
        host_path: path.to_path_buf(),
        container_path: SNAPSHOT_IN_CONTAINER.into(),
    }];
    let output = docker.run_tool(&spec, run_id, &files, Duration::from_secs(120)).await?;
    let parsed = parse_snapshot_status(&output.stdout).filter(|_| output.exit_code == 0);
    let (hash, revision, total_keys, total_size) = parsed.ok_or_else(|| Error::Procedure {
        step: format!("{} snapshot status {}", image.snapshot_tool().binary(), path.display()),
        message: format!(
            "exit code {}: {}{}",
            output.exit_code,
            output.stdout.trim(),
            output.stderr.trim()
        ),
    })?;
    Ok(SnapshotStatus {
        hash,
        revision,
        total_keys,
        total_size,
    })
}

/// `snapshot status` of the snapshot mounted in a tool container, as JSON.
pub fn status_args() -> Vec<String> {
    ["snapshot", "status", SNAPSHOT_IN_CONTAINER, "--write-out=json"]
        .map(String::from)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_parsed() {
        let out = "{\"hash\":3223386946,\"revision\":202,\"totalKey\":211,\"totalSize\":45056}\n";
        assert_eq!(parse_snapshot_status(out), Some((3223386946, 202, 211, 45056)));
        assert_eq!(parse_snapshot_status("Error: snapshot file has no hash"), None);
    }
}
