//! `rolling-upgrade`: the members, started on the scenario's `from_image`, move to the
//! run's image one at a time on their own data volumes (graceful stop, new container,
//! wait until healthy), followers first and the leader of the moment last, while the
//! workload writes. The cluster version (`/version`'s `etcdcluster`) is read before,
//! after each member and at the end, once it has settled. With `rollback_after = N`,
//! N members move and then go back to `from_image`, newest first: a partial upgrade
//! rolled back while the cluster version is still the old one. With `rollback =
//! "restore"`, a snapshot is saved before the first member moves, every member moves, one
//! upgraded member is then started on `from_image` to record what the old etcd does with
//! the upgraded data, and the cluster goes back to `from_image` through a restore of that
//! snapshot (new token, fresh data dirs): the writes acknowledged since it are lost.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::snapshot_restore::{Obtained, SnapshotRestore};
use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::cluster::{Cluster, ClusterImage};
use crate::error::{Error, Result};
use crate::scenario::{RestoreBy, SnapshotSource, UpgradeOrder, UpgradePlan};
use crate::version::EtcdVersion;

/// How long a member may take to serve again on its new image.
const MEMBER_HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an upgraded member started on the old image gets to serve, or to give up.
const OLD_IMAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// The pre-upgrade snapshot's file in the run's folder.
const PRE_UPGRADE_SNAPSHOT: &str = "pre-upgrade.db";
/// How long the leader may take to move the cluster version once every member runs the
/// new minor (etcd checks the members' versions every few seconds).
const CLUSTER_VERSION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RollingUpgrade {
    pub plan: UpgradePlan,
    /// The run's image: where the members go.
    pub target: ClusterImage,
}

/// The upgrade's part of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeFigures {
    pub from_image: String,
    pub from_version: String,
    pub to_image: String,
    pub to_version: String,
    pub order: String,
    /// The cluster version before the first member moved, and at the end once settled.
    pub cluster_version_before: Option<String>,
    /// Pre-upgrade check: the storage version `/version` reports before the first move
    /// and at the end (etcd 3.6 on; None before 3.6, which does not report one).
    pub storage_version_before: Option<String>,
    pub storage_version_after: Option<String>,
    pub cluster_version_after: Option<String>,
    /// Pre-upgrade check: the members the member list showed as learners before the first
    /// move (None when the list could not be read). A learner must be promoted or removed
    /// before an upgrade (etcd 3.6 requires it; etcd-io/etcd#19557 loses promotions on
    /// 3.5.1-3.5.19).
    pub learners_before: Option<Vec<String>>,
    pub steps: Vec<UpgradeStep>,
    /// Pre-upgrade check: `etcdutl check v2store` of the run's image on the data of the
    /// first member to move, while it is stopped (None when it did not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v2store_check: Option<V2storeCheck>,
    /// With `rollback = "restore"`: what etcd did when an upgraded member was started on
    /// the old image with its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_image_on_upgraded_data: Option<OldImageAttempt>,
}

/// `etcdutl check v2store` (etcd 3.5.18 and later) on one member's stopped data dir: etcd
/// 3.6 refuses data whose v2 store holds more than membership, so its upgrade runbook runs
/// this on 3.5 first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2storeCheck {
    pub member: String,
    /// The image whose etcdutl ran.
    pub image: String,
    /// The tool has the command (false: an etcdutl older than 3.5.18, or none at all).
    pub available: bool,
    /// It ran and exited 0.
    pub passed: bool,
    pub exit_code: Option<i64>,
    /// Its last lines of output.
    pub output: String,
}

/// An upgraded member started on the old image with the data the new version wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldImageAttempt {
    pub member: String,
    pub image: String,
    /// The cluster version when it was tried: settled after the complete upgrade.
    pub cluster_version: Option<String>,
    /// It answered a linearizable read within the wait.
    pub served: bool,
    /// Its container's exit code, when it had stopped.
    pub exit_code: Option<i64>,
    /// The last lines of its log.
    pub last_log_lines: String,
}

/// One member moved to one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStep {
    pub member: String,
    /// `upgrade` or `rollback`.
    pub action: String,
    pub image: String,
    /// The member led the cluster when its turn came.
    pub was_leader: bool,
    /// When the graceful stop began, in run milliseconds.
    pub started_at_ms: u64,
    /// From the stop to the member answering a linearizable read on its new image.
    pub healthy_after_ms: Option<u64>,
    /// The longest stretch without an acknowledged write while this member moved (from
    /// its stop until it was healthy), filled in from the ledger.
    pub longest_write_gap_ms: u64,
    /// What the member and the cluster said (`/version`) once it was healthy.
    pub server_version: Option<String>,
    pub cluster_version: Option<String>,
}

impl Procedure for RollingUpgrade {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            let cluster = &mut *cx.cluster;
            let from = cluster.image.clone();
            let from_image = from.name.clone();
            let before = first_versions(cluster).await;
            let version = |image: &ClusterImage| image.tools.as_ref().map(|t| t.version.clone()).unwrap_or_default();
            let mut figures = UpgradeFigures {
                from_image: from_image.clone(),
                from_version: version(&cluster.image),
                to_image: self.target.name.clone(),
                to_version: version(&self.target),
                order: self.plan.order.as_str().to_string(),
                cluster_version_before: before.as_ref().map(|v| v.cluster.clone()),
                storage_version_before: before.and_then(|v| v.storage),
                learners_before: learners(cluster).await,
                ..UpgradeFigures::default()
            };
            let pre_upgrade = match self.plan.rollback_by_restore {
                true => Some(save_pre_upgrade_snapshot(cluster, cx.out_dir).await?),
                false => None,
            };
            let mut remaining: Vec<String> = cluster.members.iter().map(|m| m.spec.name.clone()).collect();
            let upgrade_count = self.plan.rollback_after.unwrap_or(remaining.len());
            let mut upgraded: Vec<String> = Vec::new();
            while upgraded.len() < upgrade_count {
                let leader = cluster.leader().await;
                let next = next_member(&remaining, leader.as_deref(), self.plan.order);
                remaining.retain(|m| *m != next);
                let was_leader = leader.as_deref() == Some(next.as_str());
                if upgraded.is_empty() {
                    figures.v2store_check = Some(check_v2store(cluster, &next, &self.target).await?);
                }
                let step = move_member(cluster, &next, &self.target.name, "upgrade", was_leader).await;
                figures.steps.push(step?);
                upgraded.push(next);
            }
            if self.plan.rollback_after.is_some() {
                for name in upgraded.iter().rev() {
                    let was_leader = cluster.leader().await.as_deref() == Some(name.as_str());
                    let step = move_member(cluster, name, &from_image, "rollback", was_leader).await;
                    figures.steps.push(step?);
                }
            } else {
                // Every member runs the new image: it is the cluster's image from now on
                // (the checks' and any later tool's), with the run's auth and TLS.
                cluster.image = ClusterImage {
                    root_password: cluster.image.root_password.clone(),
                    tls: cluster.image.tls,
                    ..self.target.clone()
                };
                for member in &mut cluster.members {
                    member.image = None;
                }
            }
            figures.cluster_version_after = settled_cluster_version(cluster).await;
            figures.storage_version_after = storage_version(cluster).await;
            let Some(snapshot) = pre_upgrade else {
                wait_writable(cluster).await?;
                return Ok(ProcedureOutcome {
                    members: figures.steps.iter().map(|s| s.member.clone()).collect(),
                    upgrade: Some(figures),
                    ..ProcedureOutcome::default()
                });
            };

            // The way back after a complete upgrade: first what the old etcd makes of the
            // upgraded data, then the restore of the pre-upgrade snapshot on the old image.
            let first = cluster.topology.names()[0].clone();
            let mut attempt = try_old_image(cluster, &first, &from_image).await?;
            attempt.cluster_version = figures.cluster_version_after.clone();
            figures.old_image_on_upgraded_data = Some(attempt);
            cluster.image = from;
            for member in &mut cluster.members {
                member.image = None;
            }
            let restore = SnapshotRestore {
                source: SnapshotSource::Member {
                    from: snapshot.from.clone(),
                },
                bump_revision: None,
                beside: false,
                restore_by: RestoreBy::Harness,
                prepared: Some(snapshot),
            };
            let restored = restore.run(cx).await?;
            figures.cluster_version_after = settled_cluster_version(cx.cluster).await;
            figures.storage_version_after = storage_version(cx.cluster).await;
            Ok(ProcedureOutcome {
                upgrade: Some(figures),
                ..restored
            })
        })
    }
}

/// Stops `name` (gracefully, as its move would) and runs `etcdutl check v2store` of
/// `target` on its data dir, which must not be in use. An image without the command gets
/// a record that says so; the check's own verdict is recorded, never fatal.
async fn check_v2store(cluster: &mut Cluster, name: &str, target: &ClusterImage) -> Result<V2storeCheck> {
    let mut check = V2storeCheck {
        member: name.to_string(),
        image: target.name.clone(),
        ..V2storeCheck::default()
    };
    let has_etcdutl = target
        .tools
        .as_ref()
        .is_some_and(|t| t.snapshot_tool == crate::cluster::tools::SnapshotTool::Etcdutl);
    if !has_etcdutl {
        check.output = "no etcdutl in the image (etcd 3.4): nothing to run".into();
        return Ok(check);
    }
    let container = cluster.container_name(name);
    let started = Instant::now();
    let stopped = cluster.docker_of(name).stop(&container, 10).await;
    cluster.record(
        format!("stop {name} for the pre-upgrade check"),
        cluster.on_host(name, format!("docker stop {container}")),
        started,
        stopped.is_ok(),
    );
    stopped?;
    let member = cluster.member(name)?;
    let volume = cluster.volume_name(name, member.volume_generation);
    let spec = crate::cluster::tools::tool_container(
        &target.name,
        &target.flavor,
        format!("etcd-drill-{}-check-v2store-{name}", cluster.run_id),
        "etcdutl",
        vec![
            "check".into(),
            "v2store".into(),
            format!("--data-dir={}", target.flavor.data_dir),
        ],
        vec![(volume, target.flavor.data_mount.into())],
    );
    let started = Instant::now();
    let output = cluster
        .docker_of(name)
        .run_tool(&spec, &cluster.run_id, &[], Duration::from_secs(60))
        .await?;
    let text = format!("{}{}", output.stdout, output.stderr);
    check.available = !text.contains("unknown command");
    check.passed = check.available && output.exit_code == 0;
    check.exit_code = Some(output.exit_code);
    check.output = crate::docker::runtime::last_lines(&text, 3);
    cluster.record_span(
        format!(
            "pre-upgrade check: etcdutl check v2store on {name}'s data ({})",
            match (check.available, check.passed) {
                (false, _) => "this etcdutl lacks it: 3.5.18 and later have it",
                (true, true) => "passed",
                (true, false) => "FAILED",
            }
        ),
        crate::docker::shell::docker_run_line(&spec, false, &[]),
        started,
        output.elapsed_ms,
        true,
    );
    Ok(check)
}

/// Saves the snapshot an upgrade runbook takes before the first member moves: the way
/// back once the cluster version has moved.
async fn save_pre_upgrade_snapshot(cluster: &mut Cluster, out_dir: &std::path::Path) -> Result<Obtained> {
    let path = out_dir.join(PRE_UPGRADE_SNAPSHOT);
    let started = Instant::now();
    let client = cluster.healthy_member(&[]).await?;
    let saved = client.save_snapshot(&path, Duration::from_secs(60)).await;
    cluster.record(
        format!("save a snapshot from {} before the upgrade (the way back)", client.name),
        format!(
            "etcdctl --endpoints={} snapshot save {PRE_UPGRADE_SNAPSHOT}",
            client.endpoint
        ),
        started,
        saved.is_ok(),
    );
    saved?;
    Ok(Obtained {
        path,
        file: PRE_UPGRADE_SNAPSHOT.into(),
        source: "pre-upgrade",
        from: client.name.clone(),
        taken_ms: cluster.clock.now_ms(),
        skip_hash_check: false,
    })
}

/// Starts the upgraded member `name` on `image` (the old one) with its data, and records
/// what etcd did: served, or stopped with an exit code and log lines. The member is left
/// as it is; the restore that follows replaces every member.
async fn try_old_image(cluster: &mut Cluster, name: &str, image: &str) -> Result<OldImageAttempt> {
    let started = Instant::now();
    cluster.change_member_image(name, image).await?;
    let container = cluster.container_name(name);
    let client = cluster.member(name)?.client.clone();
    let deadline = Instant::now() + OLD_IMAGE_TIMEOUT;
    let served = loop {
        if client.is_healthy(Duration::from_millis(500)).await {
            break true;
        }
        if !cluster.docker_of(name).is_running(&container).await.unwrap_or(false) || Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // None while it still runs.
    let exit_code = cluster.docker_of(name).exit_code(&container).await.ok().flatten();
    let attempt = OldImageAttempt {
        member: name.to_string(),
        image: image.to_string(),
        cluster_version: None,
        served,
        exit_code,
        last_log_lines: cluster
            .docker_of(name)
            .log_tail(&container, 3)
            .await
            .unwrap_or_default(),
    };
    cluster.record(
        format!("see what {image} does with {name}'s upgraded data"),
        format!(
            "docker logs --tail 3 {container}; docker inspect -f '{{{{.State.ExitCode}}}}' {container}   # {}",
            match (served, exit_code) {
                (true, _) => "it served".to_string(),
                (false, Some(code)) => format!("it exited with code {code}"),
                (false, None) => format!("it did not serve within {} s", OLD_IMAGE_TIMEOUT.as_secs()),
            }
        ),
        started,
        true,
    );
    Ok(attempt)
}

/// The next member to move: in topology order, skipping the leader of the moment while
/// any other member is left (`followers-first`).
pub fn next_member(remaining: &[String], leader: Option<&str>, order: UpgradeOrder) -> String {
    let first_follower = remaining.iter().find(|m| Some(m.as_str()) != leader);
    match (order, first_follower) {
        (UpgradeOrder::FollowersFirst, Some(follower)) => follower.clone(),
        _ => remaining[0].clone(),
    }
}

/// Moves `name` to `image` and waits until it serves; says what etcd said when it does not.
async fn move_member(
    cluster: &mut Cluster,
    name: &str,
    image: &str,
    action: &str,
    was_leader: bool,
) -> Result<UpgradeStep> {
    let started_at_ms = cluster.clock.now_ms();
    let started = Instant::now();
    cluster.change_member_image(name, image).await?;
    let healthy = cluster.wait_healthy(&[name.to_string()], MEMBER_HEALTHY_TIMEOUT).await;
    let healthy_after_ms = started.elapsed().as_millis() as u64;
    let container = cluster.container_name(name);
    cluster.record(
        format!("wait until {name} serves on {image}"),
        format!(
            "until etcdctl --endpoints={} endpoint health; do sleep 1; done",
            cluster.member(name)?.client.endpoint
        ),
        started,
        healthy.is_ok(),
    );
    if let Err(e) = healthy {
        let running = cluster.docker_of(name).is_running(&container).await.unwrap_or(false);
        let tail = cluster
            .docker_of(name)
            .log_tail(&container, 6)
            .await
            .unwrap_or_default();
        return Err(Error::Procedure {
            step: format!("{action} {name} to {image}"),
            message: format!(
                "{name} did not serve on {image} within {} s ({e}); its container is {}; its last log lines:\n{tail}",
                MEMBER_HEALTHY_TIMEOUT.as_secs(),
                if running { "running" } else { "stopped" }
            ),
        });
    }
    let versions = crate::etcd::http::versions(&cluster.member(name)?.client.endpoint, Duration::from_secs(2))
        .await
        .ok();
    Ok(UpgradeStep {
        member: name.to_string(),
        action: action.to_string(),
        image: image.to_string(),
        was_leader,
        started_at_ms,
        healthy_after_ms: Some(healthy_after_ms),
        longest_write_gap_ms: 0,
        server_version: versions.as_ref().map(|v| v.server.clone()),
        cluster_version: versions.map(|v| v.cluster),
    })
}

/// The learners in the member list of the first member that answers it.
async fn learners(cluster: &Cluster) -> Option<Vec<String>> {
    for client in cluster.clients() {
        if let Ok(list) = client.member_list(Duration::from_secs(2)).await {
            return Some(list.into_iter().filter(|m| m.is_learner).map(|m| m.name).collect());
        }
    }
    None
}

/// The cluster version as the first member that answers `/version` reports it; None when
/// none does (members with TLS on are not read).
async fn cluster_version(cluster: &Cluster) -> Option<String> {
    first_versions(cluster).await.map(|v| v.cluster)
}

/// The storage version as the first member that answers `/version` reports it (etcd 3.6
/// on; None before).
async fn storage_version(cluster: &Cluster) -> Option<String> {
    first_versions(cluster).await.and_then(|v| v.storage)
}

/// `/version` of the first member that answers it.
async fn first_versions(cluster: &Cluster) -> Option<crate::etcd::http::Versions> {
    for member in &cluster.members {
        if let Ok(v) = crate::etcd::http::versions(&member.client.endpoint, Duration::from_secs(2)).await {
            return Some(v);
        }
    }
    None
}

/// The cluster version once it has caught up with the members: the lowest minor among
/// their server versions, waited for up to [`CLUSTER_VERSION_TIMEOUT`]; what it is then
/// if it never does.
async fn settled_cluster_version(cluster: &Cluster) -> Option<String> {
    let deadline = Instant::now() + CLUSTER_VERSION_TIMEOUT;
    loop {
        let mut lowest: Option<EtcdVersion> = None;
        for member in &cluster.members {
            let server = crate::etcd::http::versions(&member.client.endpoint, Duration::from_secs(2))
                .await
                .ok()
                .and_then(|v| EtcdVersion::parse(&v.server));
            lowest = match (lowest, server) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let current = cluster_version(cluster).await;
        let settled = match (lowest, current.as_deref().and_then(EtcdVersion::parse)) {
            (Some(low), Some(cur)) => low.minor_line() == cur.minor_line(),
            _ => true,
        };
        if settled || Instant::now() >= deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_leader_goes_last_unless_the_order_is_as_listed() {
        let all = names(&["etcd1", "etcd2", "etcd3"]);
        assert_eq!(next_member(&all, Some("etcd1"), UpgradeOrder::FollowersFirst), "etcd2");
        assert_eq!(next_member(&all, Some("etcd2"), UpgradeOrder::FollowersFirst), "etcd1");
        assert_eq!(next_member(&all, None, UpgradeOrder::FollowersFirst), "etcd1");
        assert_eq!(
            next_member(&names(&["etcd3"]), Some("etcd3"), UpgradeOrder::FollowersFirst),
            "etcd3"
        );
        assert_eq!(next_member(&all, Some("etcd1"), UpgradeOrder::AsListed), "etcd1");
    }
}
