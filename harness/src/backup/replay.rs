//! Restore from a backup store: pick a full snapshot (the newest or a chosen one), check
//! the chain of deltas after it (names, hashes, content), then replay it through a
//! temporary single-member etcd of the cluster's image: restore the full snapshot, apply
//! each revision's events as one transaction so the revisions come out the same (checked
//! on every transaction), and save the result as a new snapshot. That snapshot restores
//! into the data dirs of a new cluster like any `snapshot save` file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::{LeaseGrantOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::chain::{self, ChainError};
use super::naming::{DeltaName, FullName, StoredName};
use super::record::{by_revision, decode, DeltaEvent, EventKind};
use super::store::BackupStore;
use crate::cluster::{free_local_port, ClusterImage};
use crate::docker::runtime::{ContainerSpec, DockerRuntime, ToolFile, ROLE_LABEL};
use crate::error::{Error, Result};
use crate::etcd::{snapshot_hash_is_valid, MemberClient};
use crate::readiness::Wait;
use crate::topology::CLIENT_PORT;

/// TTL given to a lease a replayed key refers to when the full snapshot does not have it.
pub const REPLAYED_LEASE_TTL_S: i64 = 3600;

/// A full snapshot and the checked deltas to replay on it.
pub struct Prepared {
    pub full: FullName,
    pub full_bytes: Vec<u8>,
    pub deltas: Vec<(DeltaName, Vec<DeltaEvent>)>,
    /// Deltas after the full in the store (planned or not).
    pub deltas_available: usize,
    pub head: Option<i64>,
    /// Where the chain broke, when the restore stopped at the last good point.
    pub stopped: Option<ChainError>,
    pub fetch_ms: u64,
}

impl Prepared {
    pub fn target_revision(&self) -> i64 {
        self.deltas.last().map_or(self.full.revision, |(d, _)| d.last)
    }
}

/// What a restore from a backup store did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub store: String,
    pub full: String,
    pub full_revision: i64,
    pub deltas_replayed: Vec<String>,
    pub deltas_available: usize,
    pub events: u64,
    pub transactions: u64,
    /// The revision of the restored data.
    pub revision: i64,
    /// The last revision the agent recorded as saved.
    pub head: Option<i64>,
    /// Why the restore stopped before the end of the chain (with stop-at-last-good).
    pub stopped_early: Option<String>,
    /// Reading and checking the files.
    pub fetch_ms: u64,
    /// The temporary etcd: restore, replay, snapshot save.
    pub replay_ms: u64,
    /// The resulting snapshot (a `snapshot save` file).
    pub snapshot: String,
}

fn chain_error(store: &BackupStore, source: ChainError) -> Error {
    Error::BackupChain {
        store: store.location.describe(),
        source,
    }
}

/// Reads and checks everything a restore needs, without replaying: fails on the first
/// broken link unless `stop_at_last_good`, in which case it keeps the good part.
pub async fn prepare(store: &BackupStore, full_revision: Option<i64>, stop_at_last_good: bool) -> Result<Prepared> {
    let started = Instant::now();
    let catalog = store.catalog().await?;
    let full = match full_revision {
        None => catalog.fulls.last().copied(),
        Some(rev) => catalog.fulls.iter().rev().find(|f| f.revision == rev).copied(),
    };
    let full = full.ok_or_else(|| {
        let which = match full_revision {
            Some(rev) => format!(
                " at revision {rev}; the store has {:?}",
                catalog.fulls.iter().map(|f| f.revision).collect::<Vec<_>>()
            ),
            None => String::from(" in the store"),
        };
        chain_error(store, ChainError::NoFull(which))
    })?;
    let full_bytes = store
        .fetch_verified(&StoredName::Full(full))
        .await
        .map_err(|e| chain_error(store, e))?;
    if !snapshot_hash_is_valid(&full_bytes) {
        return Err(chain_error(
            store,
            ChainError::BadContent {
                file: full.file(),
                message: "the snapshot does not end in etcd's SHA-256".into(),
            },
        ));
    }
    let plan = chain::plan(full, &catalog.deltas, catalog.head);
    let mut stopped = plan.broken.clone();
    if let (Some(e), false) = (&stopped, stop_at_last_good) {
        return Err(chain_error(store, e.clone()));
    }
    let mut deltas = Vec::new();
    for name in &plan.deltas {
        let checked = async {
            let bytes = store.fetch_verified(&StoredName::Delta(*name)).await?;
            let events = decode(&bytes).map_err(|message| ChainError::BadContent {
                file: name.file(),
                message,
            })?;
            chain::check_content(name, &events)?;
            Ok::<_, ChainError>(events)
        }
        .await;
        match checked {
            Ok(events) => deltas.push((*name, events)),
            Err(e) if stop_at_last_good => {
                stopped = Some(e);
                break;
            }
            Err(e) => return Err(chain_error(store, e)),
        }
    }
    Ok(Prepared {
        full,
        full_bytes,
        deltas_available: catalog.deltas.iter().filter(|d| d.last > full.revision).count(),
        deltas,
        head: catalog.head,
        stopped,
        fetch_ms: started.elapsed().as_millis() as u64,
    })
}

/// Where the temporary etcd runs.
pub struct ReplayPlace<'a> {
    pub docker: &'a DockerRuntime,
    pub image: &'a ClusterImage,
    pub run_id: &'a str,
    /// An existing network the temporary etcd's client port is published through.
    pub network: &'a str,
    /// A folder for the files (the full snapshot, the result).
    pub work_dir: &'a Path,
}

/// Replays `prepared` and writes the resulting snapshot to `work_dir/restored.db`.
pub async fn replay(store: &BackupStore, prepared: &Prepared, place: &ReplayPlace<'_>) -> Result<ReplayReport> {
    let started = Instant::now();
    std::fs::create_dir_all(place.work_dir).map_err(Error::io(place.work_dir))?;
    let full_path = place.work_dir.join("full.db");
    std::fs::write(&full_path, &prepared.full_bytes).map_err(Error::io(&full_path))?;
    let out = place.work_dir.join("restored.db");
    let mut report = ReplayReport {
        store: store.location.describe(),
        full: prepared.full.file(),
        full_revision: prepared.full.revision,
        deltas_replayed: prepared.deltas.iter().map(|(d, _)| d.file()).collect(),
        deltas_available: prepared.deltas_available,
        head: prepared.head,
        stopped_early: prepared.stopped.as_ref().map(|e| e.to_string()),
        fetch_ms: prepared.fetch_ms,
        snapshot: out.display().to_string(),
        ..ReplayReport::default()
    };
    if prepared.deltas.is_empty() {
        // Nothing to replay: the full snapshot is the result.
        std::fs::write(&out, &prepared.full_bytes).map_err(Error::io(&out))?;
        report.revision = prepared.full.revision;
        report.replay_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let temp = TemporaryEtcd::start(place, &full_path).await?;
    let replayed = replay_into(&temp.client, store, prepared, &mut report).await;
    let saved = match replayed {
        Ok(()) => temp
            .client
            .save_snapshot(&out, Duration::from_secs(120))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    temp.remove(place.docker).await;
    saved?;
    report.replay_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn replay_into(
    client: &MemberClient,
    store: &BackupStore,
    prepared: &Prepared,
    report: &mut ReplayReport,
) -> Result<()> {
    let timeout = Duration::from_secs(30);
    let status = client.status(timeout).await?;
    let full = prepared.full;
    if status.revision != full.revision {
        return Err(chain_error(
            store,
            ChainError::BadContent {
                file: full.file(),
                message: format!(
                    "restored, it is at revision {}, not the {} its name says",
                    status.revision, full.revision
                ),
            },
        ));
    }
    let mut raw = client.raw_client();
    let mut leases: HashSet<i64> = HashSet::new();
    let mut revision = full.revision;
    for (name, events) in &prepared.deltas {
        let fail = |revision: i64, message: String| {
            chain_error(
                store,
                ChainError::Replay {
                    file: name.file(),
                    revision,
                    message,
                },
            )
        };
        for group in by_revision(events) {
            let rev = group[0].revision;
            if rev <= revision {
                continue; // already in the full snapshot (or replayed)
            }
            for lease in group.iter().map(|e| e.lease).filter(|l| *l != 0) {
                if leases.insert(lease) {
                    let granted = raw
                        .lease_grant(REPLAYED_LEASE_TTL_S, Some(LeaseGrantOptions::new().with_id(lease)))
                        .await;
                    if let Err(e) = granted {
                        if !e.to_string().contains("lease already exists") {
                            return Err(fail(rev, format!("lease grant {lease:x}: {e}")));
                        }
                    }
                }
            }
            let ops: Vec<TxnOp> = match range_delete(&mut raw, group).await {
                Some(op) => vec![op],
                None => group
                    .iter()
                    .map(|e| match e.kind {
                        EventKind::Put => {
                            let options = (e.lease != 0).then(|| PutOptions::new().with_lease(e.lease));
                            TxnOp::put(e.key.clone(), e.value.clone(), options)
                        }
                        EventKind::Delete => TxnOp::delete(e.key.clone(), None),
                    })
                    .collect(),
            };
            let resp = tokio::time::timeout(timeout, raw.txn(Txn::new().and_then(ops)))
                .await
                .map_err(|_| fail(rev, "timed out".into()))?
                .map_err(|e| fail(rev, e.to_string()))?;
            let got = resp.header().map(|h| h.revision()).unwrap_or(0);
            if got != rev {
                return Err(fail(
                    rev,
                    format!("the transaction made revision {got}: the chain does not continue the snapshot"),
                ));
            }
            revision = rev;
            report.transactions += 1;
            report.events += group.len() as u64;
        }
    }
    report.revision = revision;
    Ok(())
}

/// A revision that deletes many keys (a prefix deleted at once) replays as one range
/// delete when the range from its first to its last key holds exactly those keys: one
/// small request instead of one that may pass any message limit.
async fn range_delete(client: &mut etcd_client::Client, group: &[DeltaEvent]) -> Option<TxnOp> {
    if group.len() < 100 || group.iter().any(|e| e.kind != EventKind::Delete) {
        return None;
    }
    let first = group.iter().map(|e| &e.key).min()?.clone();
    let mut end = group.iter().map(|e| &e.key).max()?.clone();
    end.push(0);
    let options = etcd_client::GetOptions::new().with_range(end.clone()).with_count_only();
    let count = client.get(first.clone(), Some(options)).await.ok()?.count();
    (count == group.len() as i64).then(|| TxnOp::delete(first, Some(etcd_client::DeleteOptions::new().with_range(end))))
}

/// A single-member etcd restored from a snapshot, reachable on 127.0.0.1.
struct TemporaryEtcd {
    container: String,
    volume: String,
    client: MemberClient,
}

impl TemporaryEtcd {
    async fn start(place: &ReplayPlace<'_>, snapshot: &Path) -> Result<TemporaryEtcd> {
        let docker = place.docker;
        let name = format!("etcd-drill-{}-replay", place.run_id);
        let volume = format!("{name}-data");
        let peer = "http://localhost:2380";
        docker.create_volume(&volume, place.run_id, "replay").await?;
        let member = RestoredMember {
            name: "replay",
            peer_url: peer,
            initial_cluster: &format!("replay={peer}"),
            token: None,
        };
        restore_into_volume(
            docker,
            place.image,
            place.run_id,
            &format!("{name}-restore"),
            snapshot,
            &volume,
            &member,
        )
        .await?;
        let port = free_local_port()?;
        let flavor = &place.image.flavor;
        let env = [
            ("ETCD_NAME", "replay".to_string()),
            ("ETCD_DATA_DIR", flavor.data_dir.to_string()),
            ("ETCD_LISTEN_CLIENT_URLS", format!("http://0.0.0.0:{CLIENT_PORT}")),
            ("ETCD_ADVERTISE_CLIENT_URLS", format!("http://localhost:{CLIENT_PORT}")),
            ("ETCD_LISTEN_PEER_URLS", peer.to_string()),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS", peer.to_string()),
            ("ETCD_INITIAL_CLUSTER", format!("replay={peer}")),
            // A scratch member: its result is saved as a snapshot (with etcd's hash), so
            // it need not fsync, and one revision may hold many events.
            ("ETCD_UNSAFE_NO_FSYNC", "true".to_string()),
            ("ETCD_MAX_TXN_OPS", "1000000".to_string()),
            ("ETCD_MAX_REQUEST_BYTES", "1073741824".to_string()),
        ];
        let spec = ContainerSpec {
            name: name.clone(),
            image: place.image.name.clone(),
            hostname: Some("replay".into()),
            user: flavor.user.clone(),
            cmd: flavor.server_command(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain(flavor.server_env(None))
                .collect(),
            labels: vec![(ROLE_LABEL.into(), "replay".into())],
            network: Some((place.network.to_string(), "replay".into())),
            volumes: vec![(volume.clone(), flavor.data_mount.into())],
            publish: Some((CLIENT_PORT, port)),
            ..ContainerSpec::default()
        };
        docker.create_container(&spec, place.run_id).await?;
        docker.start(&name).await?;
        let client = MemberClient::connect("replay", &format!("http://127.0.0.1:{port}")).await?;
        let serving = Wait::new(
            format!("the temporary etcd {name} to serve"),
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .until_some(|| async { client.is_healthy(Duration::from_millis(500)).await.then_some(()) })
        .await;
        if serving.is_none() {
            let tail = docker.log_tail(&name, 5).await.unwrap_or_default();
            return Err(Error::Timeout {
                what: format!(
                    "the temporary etcd {name} to serve (last log lines: {})",
                    tail.replace('\n', " | ")
                ),
                waited_ms: 60_000,
            });
        }
        Ok(TemporaryEtcd {
            container: name,
            volume,
            client,
        })
    }

    async fn remove(self, docker: &DockerRuntime) {
        if let Err(e) = docker.remove_container(&self.container).await {
            tracing::warn!("removing {}: {e}", self.container);
        }
        if let Err(e) = docker.remove_volume(&self.volume).await {
            tracing::warn!("removing {}: {e}", self.volume);
        }
    }
}

/// One member of a restored cluster, as `etcdutl snapshot restore` needs it.
pub(crate) struct RestoredMember<'a> {
    pub name: &'a str,
    pub peer_url: &'a str,
    pub initial_cluster: &'a str,
    pub token: Option<&'a str>,
}

/// `snapshot restore` (etcdutl, or etcdctl on 3.4) of a local snapshot file into `volume`
/// (its data dir where the image's flavor keeps it), in a one-off container of `image`
/// without a network, as the flavor's user.
pub(crate) async fn restore_into_volume(
    docker: &DockerRuntime,
    image: &ClusterImage,
    run_id: &str,
    container: &str,
    snapshot: &Path,
    volume: &str,
    member: &RestoredMember<'_>,
) -> Result<()> {
    let flavor = &image.flavor;
    let mut cmd = vec![
        "snapshot".into(),
        "restore".into(),
        "/snapshot.db".into(),
        format!("--name={}", member.name),
        format!("--initial-cluster={}", member.initial_cluster),
        format!("--initial-advertise-peer-urls={}", member.peer_url),
        format!("--data-dir={}", flavor.data_dir),
    ];
    if let Some(token) = member.token {
        cmd.push(format!("--initial-cluster-token={token}"));
    }
    // The restore resolves the member's own peer URL; with no network any address will do.
    let host = member
        .peer_url
        .split("://")
        .nth(1)
        .and_then(|h| h.split(':').next())
        .unwrap_or(member.name);
    let spec = ContainerSpec {
        extra_hosts: vec![format!("{host}:127.0.0.1")],
        ..image.snapshot_tool_container(
            container.to_string(),
            cmd,
            vec![(volume.to_string(), flavor.data_mount.into())],
        )
    };
    let files = [ToolFile {
        host_path: snapshot.to_path_buf(),
        container_path: "/snapshot.db".into(),
    }];
    let output = docker.run_tool(&spec, run_id, &files, Duration::from_secs(120)).await?;
    if output.exit_code != 0 {
        return Err(Error::Procedure {
            step: format!(
                "{} snapshot restore for {}",
                image.snapshot_tool().binary(),
                member.name
            ),
            message: format!("exit code {}: {}", output.exit_code, output.stderr.trim()),
        });
    }
    Ok(())
}

/// Where a restore writes its files by default.
pub fn default_work_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("restore-backup")
}
