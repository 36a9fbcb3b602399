//! `snapshot-restore`: the quorum-loss runbook. Save a snapshot from a surviving member
//! (this works without quorum), or take the newest periodic backup, or copy `member/snap/db`
//! out of a member's data dir; verify it with `etcdutl snapshot status`, restore it into a
//! fresh data volume for every member with a new cluster token (each restore runs in a
//! one-off container of the cluster's own image, so the tool matches the server), then
//! start every member with `initial-cluster-state=new` and wait for a write to succeed.
//!
//! `restore-beside` is the same restore into a second cluster beside the broken one (new
//! containers, peer network, client ports and token, the old members left untouched), as
//! the runbooks that rehearse a restore safely do; once it takes writes, the application
//! is switched over to its endpoints and the old members are stopped, kept as a fallback.

use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use serde::{Deserialize, Serialize};

use super::{wait_writable, Procedure, ProcedureOutcome, RecoveryContext};
use crate::cluster::flavor::INIT_SNAPSHOTS_DIR;
use crate::cluster::snapshot::{parse_snapshot_status, status_args, SNAPSHOT_IN_CONTAINER};
use crate::cluster::{Cluster, ClusterState};
use crate::docker::runtime::{ContainerSpec, ToolFile};
use crate::docker::shell::{docker_run_line, docker_run_line_copying};
use crate::error::{Error, Result};
use crate::scenario::{RestoreBy, SnapshotSource};

/// What `etcdutl snapshot status` says about the snapshot, plus where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// `member`, `backup`, `copied-db` or `pre-upgrade` (saved before a rolling upgrade).
    pub source: String,
    /// The member it was saved or copied from.
    pub from: String,
    /// Path relative to the run's folder.
    pub file: String,
    /// How old the snapshot was when the first fault struck (0 when taken after it).
    pub age_at_fault_ms: u64,
    /// Restored with `--skip-hash-check` (a copied db file has no hash).
    pub skip_hash_check: bool,
    /// For a copied db file: whether a restore without `--skip-hash-check` was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_without_skip_hash_check: Option<bool>,
    pub hash: u64,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
    /// Run milliseconds at which the snapshot was taken.
    pub taken_ms: u64,
}

pub struct SnapshotRestore {
    pub source: SnapshotSource,
    /// Restore with `--bump-revision N --mark-compacted`.
    pub bump_revision: Option<u64>,
    /// Restore into a new cluster beside the old one, then switch the application over.
    pub beside: bool,
    /// Who restores the data dirs: etcd-drill with the image's tool, or the image's own
    /// start-up from the snapshot put into each member's container.
    pub restore_by: RestoreBy,
    /// A snapshot file another procedure already produced (a replayed backup): used
    /// instead of `source`.
    pub(crate) prepared: Option<Obtained>,
}

/// The snapshot file a restore works from, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Obtained {
    pub(crate) path: std::path::PathBuf,
    /// Path relative to the run's folder.
    pub(crate) file: String,
    pub(crate) source: &'static str,
    pub(crate) from: String,
    pub(crate) taken_ms: u64,
    pub(crate) skip_hash_check: bool,
}

impl SnapshotRestore {
    /// Step 1: get the snapshot file, recording how.
    async fn obtain(&self, cx: &mut RecoveryContext<'_>) -> Result<Obtained> {
        if let Some(prepared) = &self.prepared {
            return Ok(prepared.clone());
        }
        let cluster = &mut *cx.cluster;
        match &self.source {
            SnapshotSource::Member { from } => {
                let path = cx.out_dir.join("snapshot.db");
                let started = Instant::now();
                let client = cluster.member(from)?.client.clone();
                let saved = client.save_snapshot(&path, Duration::from_secs(60)).await;
                cluster.record(
                    format!("save a snapshot from {from}"),
                    format!("etcdctl --endpoints={} snapshot save snapshot.db", client.endpoint),
                    started,
                    saved.is_ok(),
                );
                saved?;
                Ok(Obtained {
                    path,
                    file: "snapshot.db".into(),
                    source: "member",
                    from: from.clone(),
                    taken_ms: cluster.clock.now_ms(),
                    skip_hash_check: false,
                })
            }
            SnapshotSource::NewestBackup => {
                let started = Instant::now();
                let newest = crate::backup::periodic::newest(&cx.backups).cloned();
                let taken = cx.backups.iter().filter(|b| b.ok()).count();
                let note = match &newest {
                    Some(b) => format!(
                        "ls -t backups/*.db | head -n 1   # {} of {taken} backups, taken at {} ms from {}",
                        b.file, b.taken_ms, b.from
                    ),
                    None => format!(
                        "ls -t backups/*.db | head -n 1   # none of {} attempts worked",
                        cx.backups.len()
                    ),
                };
                cluster.record("pick the newest backup", note, started, newest.is_some());
                let b = newest.ok_or_else(|| Error::Procedure {
                    step: "pick the newest backup".into(),
                    message: format!("none of the {} backup attempts worked", cx.backups.len()),
                })?;
                Ok(Obtained {
                    path: cx.out_dir.join(&b.file),
                    file: b.file.clone(),
                    source: "backup",
                    from: b.from.clone(),
                    taken_ms: b.taken_ms,
                    skip_hash_check: false,
                })
            }
            SnapshotSource::CopiedDb { from } => {
                let path = cx.out_dir.join("copied-db.db");
                let container = cluster.container_name(from);
                let db = format!("{}/member/snap/db", cluster.image.flavor.data_dir);
                let started = Instant::now();
                let copied = cluster.docker_of(from).read_file(&container, &db).await;
                cluster.record(
                    format!("copy {from}'s member/snap/db out of its data dir"),
                    cluster.on_host(from, format!("docker cp {container}:{db} copied-db.db")),
                    started,
                    copied.is_ok(),
                );
                std::fs::write(&path, copied?).map_err(Error::io(&path))?;
                Ok(Obtained {
                    path,
                    file: "copied-db.db".into(),
                    source: "copied-db",
                    from: from.clone(),
                    taken_ms: cluster.clock.now_ms(),
                    skip_hash_check: true,
                })
            }
        }
    }
}

/// A one-off container of the cluster's image running its snapshot tool (`etcdutl`, or
/// `etcdctl` on 3.4) with `args`, as the image's user. The drill probes the tools before
/// the cluster starts; a cluster whose tools were not probed cannot restore.
fn snapshot_tool_spec(
    cluster: &Cluster,
    name: String,
    args: Vec<String>,
    volumes: Vec<(String, String)>,
) -> Result<ContainerSpec> {
    if cluster.image.tools.is_none() {
        return Err(Error::Procedure {
            step: "snapshot restore".into(),
            message: format!("the tools of {} were not probed", cluster.image.name),
        });
    }
    Ok(cluster.image.snapshot_tool_container(name, args, volumes))
}

/// The snapshot's file name in each member's [`INIT_SNAPSHOTS_DIR`].
const IMAGE_SNAPSHOT_FILE: &str = "snapshot.db";

/// Creates (without starting) the containers of `names` so that the image's own start-up
/// restores the snapshot `file` into their empty data dirs: the flavor's variables are set
/// and the file is copied into every container (no bind mount, so that it works with any
/// Docker daemon).
async fn create_members_restoring(
    cluster: &Cluster,
    names: &[String],
    file: &std::path::Path,
) -> Result<Vec<ContainerSpec>> {
    let env = cluster
        .image
        .flavor
        .start_from_snapshot_env(IMAGE_SNAPSHOT_FILE)
        .ok_or_else(|| Error::Procedure {
            step: "restore by the image".into(),
            message: format!("the start-up of {} does not restore snapshots", cluster.image.name),
        })?;
    let in_container = format!("{INIT_SNAPSHOTS_DIR}/{IMAGE_SNAPSHOT_FILE}");
    let specs: Vec<ContainerSpec> = names
        .iter()
        .map(|n| {
            cluster.member(n).map(|m| {
                let mut spec = cluster.member_container_spec(m, ClusterState::New);
                spec.env.extend(env.iter().cloned());
                spec.copied_files.push((file.to_path_buf(), in_container.clone()));
                spec
            })
        })
        .collect::<Result<_>>()?;
    let created = join_all(specs.iter().map(|spec| cluster.create_member_container(spec))).await;
    created.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(specs)
}

/// `uid[:gid]` as numbers; the group is 0 when not given, as Docker runs a numeric user
/// with no entry in the image's /etc/passwd.
pub(crate) fn numeric_user(user: &str) -> Result<(u64, u64)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(Error::InvalidArgument {
            argument: "--user".into(),
            message: format!(
                "`{user}` is not uid[:gid] in numbers; give the member's uid as a number, e.g. --user 1001"
            ),
        }),
    }
}

/// The runbooks' step before starting restored members that run as a non-root uid: hand
/// each restored data dir to that uid (`chown -R`; an image may create the data dir
/// root-owned, and Docker copies it into every fresh volume), then check that the member
/// can write everything in it.
pub(crate) async fn hand_data_dirs_to(
    cluster: &mut crate::cluster::Cluster,
    specs: &[ContainerSpec],
    volumes: &[String],
    user: &str,
) -> Result<()> {
    let (uid, gid) = numeric_user(user)?;
    let data_dir = cluster.image.flavor.data_dir;
    let data_mount = cluster.image.flavor.data_mount;
    let started = Instant::now();
    let chowned = join_all(specs.iter().map(|s| {
        cluster
            .docker_of_object(&s.name)
            .chown_tree(&s.name, data_dir, uid, gid)
    }))
    .await;
    let chowned: Result<Vec<usize>> = chowned.into_iter().collect();
    let image = cluster.image.name.clone();
    cluster.record(
        format!("give the restored data dirs to uid {uid}"),
        format!(
            "for v in {}; do docker run --rm --user 0 -v $v:{data_mount} --entrypoint chown {image} -R {uid}:{gid} {data_dir}; done   # etcd-drill does this through the archive API, which needs no shell or chown in the image",
            volumes.join(" ")
        ),
        started,
        chowned.is_ok(),
    );
    chowned?;

    let started = Instant::now();
    let owners = join_all(
        specs
            .iter()
            .map(|s| cluster.docker_of_object(&s.name).ownership(&s.name, data_dir)),
    )
    .await;
    let mut wrong = Vec::new();
    for (spec, owners) in specs.iter().zip(owners) {
        let owners = owners?;
        if owners.is_empty() {
            wrong.push(format!("{} has no {data_dir}", spec.name));
        }
        if let Some(o) = owners.iter().find(|o| !o.writable_by(uid, gid)) {
            wrong.push(format!(
                "{}: {} is owned by {}:{} with mode {:o}",
                spec.name, o.path, o.uid, o.gid, o.mode
            ));
        }
    }
    cluster.record(
        format!("check that uid {uid} can write the restored data dirs"),
        format!(
            "for c in {}; do docker cp $c:{data_dir} - | tar -tvf -; done   # every entry writable by {uid}:{gid}",
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" ")
        ),
        started,
        wrong.is_empty(),
    );
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::Procedure {
            step: format!("check the owner of {data_dir}"),
            message: format!("{}; chown -R {user} the data dirs before starting", wrong.join("; ")),
        })
    }
}

impl Procedure for SnapshotRestore {
    fn run<'a>(&'a self, cx: &'a mut RecoveryContext<'_>) -> BoxFuture<'a, Result<ProcedureOutcome>> {
        Box::pin(async move {
            // 1. The snapshot: saved from a survivor, the newest backup, or a copied db.
            let obtained = self.obtain(cx).await?;
            let file = obtained.path.clone();
            let fault_at_ms = cx.fault_at_ms;
            let cluster = &mut *cx.cluster;
            let mount_word = format!("\"$PWD/{}\"", obtained.file);
            let mount = [(mount_word.as_str(), SNAPSHOT_IN_CONTAINER)];
            let files = [ToolFile {
                host_path: file.clone(),
                container_path: SNAPSHOT_IN_CONTAINER.into(),
            }];

            // A db file copied out of a data dir has no integrity hash: show that a plain
            // restore refuses it, as the runbooks warn, before restoring with the flag.
            let refused_without_skip_hash_check = if obtained.skip_hash_check {
                let spec = snapshot_tool_spec(
                    cluster,
                    format!("etcd-drill-{}-restore-without-skip", cluster.run_id),
                    vec![
                        "snapshot".into(),
                        "restore".into(),
                        SNAPSHOT_IN_CONTAINER.into(),
                        "--data-dir=/restore-check".into(),
                    ],
                    vec![],
                )?;
                // Its output is thrown away: root may write it wherever the image allows.
                let spec = ContainerSpec { user: None, ..spec };
                let started = Instant::now();
                let output = cluster
                    .docker
                    .run_tool(&spec, &cluster.run_id, &files, Duration::from_secs(60))
                    .await?;
                let refused = output.exit_code != 0;
                cluster.record(
                    format!(
                        "restore without --skip-hash-check ({})",
                        if refused { "refused, as expected" } else { "NOT refused" }
                    ),
                    docker_run_line(&spec, false, &mount),
                    started,
                    true,
                );
                Some(refused)
            } else {
                None
            };

            // 2. A new identity for the restored cluster: a token, and a fresh volume (and
            //    container name) for every member; beside the old cluster, also a new peer
            //    network and new client ports.
            let old_volumes: Vec<String> = cluster
                .members
                .iter()
                .map(|m| cluster.volume_name(&m.spec.name, m.volume_generation))
                .collect();
            cluster.token = format!("etcd-drill-{}-restored-{}", cluster.run_id, cluster.clock.now_ms());
            let names = cluster.topology.names();
            let old_containers: Vec<String> = if self.beside {
                cluster.move_beside().await?
            } else {
                let old = cluster
                    .members
                    .iter()
                    .filter(|m| m.has_container)
                    .map(|m| cluster.container_name(&m.spec.name))
                    .collect();
                for m in cluster.members.iter_mut() {
                    m.volume_generation += 1;
                }
                old
            };
            let volumes: Vec<String> = cluster
                .members
                .iter()
                .map(|m| cluster.volume_name(&m.spec.name, m.volume_generation))
                .collect();
            let created = join_all(
                names
                    .iter()
                    .zip(&volumes)
                    .map(|(name, v)| cluster.docker_of(name).create_volume(v, &cluster.run_id, name)),
            )
            .await;
            created.into_iter().collect::<Result<Vec<()>>>()?;

            // 3. All at once, since none depends on another: verify the snapshot
            //    (`etcdutl snapshot status`), restore every member's data dir from it, stop
            //    the old members that still run (their containers and volumes are removed
            //    once the new cluster takes writes; beside, they stay up until the switch),
            //    and create the new member containers. Nothing starts before the checks pass.
            let docker = cluster.docker.clone();
            let status_spec = snapshot_tool_spec(
                cluster,
                format!("etcd-drill-{}-snapshot-status", cluster.run_id),
                status_args(),
                vec![],
            )?;
            let initial_cluster = cluster.initial_cluster();
            let scheme = cluster.scheme();
            let (data_dir, data_mount) = (cluster.image.flavor.data_dir, cluster.image.flavor.data_mount);
            let restore_specs: Vec<ContainerSpec> = cluster
                .members
                .iter()
                .zip(&volumes)
                .filter(|_| self.restore_by == RestoreBy::Harness)
                .map(|(m, volume)| {
                    let name = &m.spec.name;
                    let cmd = vec![
                        "snapshot".into(),
                        "restore".into(),
                        SNAPSHOT_IN_CONTAINER.into(),
                        format!("--name={name}"),
                        format!("--initial-cluster={initial_cluster}"),
                        format!("--initial-cluster-token={}", cluster.token),
                        format!("--initial-advertise-peer-urls={}", m.spec.peer_url_in(scheme)),
                        format!("--data-dir={data_dir}"),
                    ];
                    let mut cmd = cmd;
                    if obtained.skip_hash_check {
                        cmd.push("--skip-hash-check".into());
                    }
                    if let Some(n) = self.bump_revision {
                        cmd.push(format!("--bump-revision={n}"));
                        cmd.push("--mark-compacted".into());
                    }
                    // The restore resolves the member's own peer URL; with no network its
                    // name must still point somewhere, and any address will do.
                    snapshot_tool_spec(
                        cluster,
                        format!("etcd-drill-{}-restore-{name}", cluster.run_id),
                        cmd,
                        vec![(volume.clone(), data_mount.into())],
                    )
                    .map(|spec| ContainerSpec {
                        extra_hosts: vec![format!("{name}:127.0.0.1")],
                        ..spec
                    })
                })
                .collect::<Result<_>>()?;
            let run_id = cluster.run_id.clone();
            let files = [ToolFile {
                host_path: file.clone(),
                container_path: SNAPSHOT_IN_CONTAINER.into(),
            }];
            let tool_timeout = Duration::from_secs(120);
            let started = Instant::now();
            let (status, restored, stopped, created) = tokio::join!(
                docker.run_tool(&status_spec, &run_id, &files, tool_timeout),
                join_all(
                    restore_specs
                        .iter()
                        .zip(&names)
                        .map(|(spec, name)| cluster.docker_of(name).run_tool(spec, &run_id, &files, tool_timeout))
                ),
                async {
                    let doomed = if self.beside { &[][..] } else { &old_containers[..] };
                    let stopped = join_all(doomed.iter().map(|c| cluster.docker_of_object(c).kill(c, "SIGKILL"))).await;
                    (
                        stopped.into_iter().collect::<Result<Vec<()>>>(),
                        started.elapsed().as_millis() as u64,
                    )
                },
                async {
                    match self.restore_by {
                        RestoreBy::Harness => cluster.create_members(&names, ClusterState::New).await,
                        RestoreBy::Image => create_members_restoring(cluster, &names, &file).await,
                    }
                },
            );

            let (stopped, stop_ms) = stopped;
            if !self.beside {
                cluster.record_span(
                    "stop the old members",
                    cluster.on_hosts_of(&old_containers, |c| format!("docker kill {c}")),
                    started,
                    stop_ms,
                    stopped.is_ok(),
                );
            }
            stopped?;
            let status = status?;
            let parsed = parse_snapshot_status(&status.stdout).filter(|_| status.exit_code == 0);
            cluster.record_span(
                "verify the snapshot",
                docker_run_line(&status_spec, false, &mount),
                started,
                status.elapsed_ms,
                parsed.is_some(),
            );
            let (hash, revision, total_keys, total_size) = parsed.ok_or_else(|| Error::Procedure {
                step: "snapshot status".into(),
                message: format!(
                    "exit code {}: {}{}",
                    status.exit_code,
                    status.stdout.trim(),
                    status.stderr.trim()
                ),
            })?;
            let snapshot = SnapshotInfo {
                source: obtained.source.to_string(),
                from: obtained.from.clone(),
                file: obtained.file.clone(),
                age_at_fault_ms: fault_at_ms.saturating_sub(obtained.taken_ms),
                skip_hash_check: obtained.skip_hash_check,
                refused_without_skip_hash_check,
                hash,
                revision,
                total_keys,
                total_size,
                taken_ms: obtained.taken_ms,
            };
            for (spec, (member, result)) in restore_specs.iter().zip(names.iter().zip(restored)) {
                let ok = matches!(&result, Ok(o) if o.exit_code == 0);
                let elapsed = result
                    .as_ref()
                    .map(|o| o.elapsed_ms)
                    .unwrap_or_else(|_| started.elapsed().as_millis() as u64);
                let line = match cluster.on_own_daemon(member) {
                    true => docker_run_line_copying(spec, &mount),
                    false => docker_run_line(spec, false, &mount),
                };
                cluster.record_span(
                    format!("restore {member}'s data dir"),
                    cluster.on_host(member, line),
                    started,
                    elapsed,
                    ok,
                );
                let output = result?;
                if output.exit_code != 0 {
                    return Err(Error::Procedure {
                        step: format!("snapshot restore for {member}"),
                        message: format!("exit code {}: {}", output.exit_code, output.stderr.trim()),
                    });
                }
            }
            let specs = created?;
            // With restore_by = "image", each member's start line copies the snapshot in
            // (`docker cp`) for the image's start-up to restore: no data dir to hand over.
            if self.restore_by != RestoreBy::Image {
                if let Some(user) = cluster.image.flavor.user.clone() {
                    hand_data_dirs_to(cluster, &specs, &volumes, &user).await?;
                }
            }

            // 4. Start every member on its restored dir, as a new cluster, and wait for a write.
            let started = Instant::now();
            cluster.start_members(&specs, ClusterState::New, started).await?;
            if self.beside {
                // New endpoints: with auth on, their clients log in once the members serve.
                cluster.log_in_clients(super::WRITABLE_TIMEOUT).await?;
            }
            wait_writable(cluster).await?;

            if self.beside {
                switch_over(cluster, &cx.app_clients, &old_containers).await?;
                return Ok(ProcedureOutcome {
                    snapshot: Some(snapshot),
                    members: names,
                    moved_to: moved_ports(cluster, self.beside),
                    ..ProcedureOutcome::default()
                });
            }

            // 5. The old members and their data are no longer needed.
            let started = Instant::now();
            let dropped = async {
                join_all(
                    old_containers
                        .iter()
                        .map(|c| cluster.docker_of_object(c).remove_container(c)),
                )
                .await
                .into_iter()
                .collect::<Result<Vec<()>>>()?;
                join_all(old_volumes.iter().map(|v| cluster.docker_of_object(v).remove_volume(v)))
                    .await
                    .into_iter()
                    .collect::<Result<Vec<()>>>()
            }
            .await;
            cluster.record(
                "remove the old members and their data",
                format!(
                    "{} && {}",
                    cluster.on_hosts_of(&old_containers, |c| format!("docker rm {c}")),
                    cluster.on_hosts_of(&old_volumes, |v| format!("docker volume rm {v}"))
                ),
                started,
                dropped.is_ok(),
            );
            dropped?;
            Ok(ProcedureOutcome {
                snapshot: Some(snapshot),
                members: names,
                moved_to: moved_ports(cluster, self.beside),
                ..ProcedureOutcome::default()
            })
        })
    }
}

/// Where the members serve after a restore beside the old cluster on host networking
/// (ports of their own on the same hosts); empty otherwise, where the report's topology
/// still says where they serve.
fn moved_ports(cluster: &Cluster, beside: bool) -> Vec<crate::topology::MemberSpec> {
    match beside && cluster.topology.network_mode() == crate::topology::NetworkMode::Host {
        true => cluster.topology.members.clone(),
        false => Vec::new(),
    }
}

/// Beside the old cluster, once the new one takes writes: point the application at the new
/// endpoints, then stop the old members; they and their volumes stay as the fallback until
/// the new cluster is verified (the run's cleanup removes them).
async fn switch_over(
    cluster: &mut crate::cluster::Cluster,
    app_clients: &crate::etcd::ClientSet,
    old_containers: &[String],
) -> Result<()> {
    let started = Instant::now();
    app_clients.switch(cluster.clients());
    let endpoints: Vec<String> = cluster.endpoints().into_iter().map(|(_, e)| e).collect();
    cluster.record(
        "switch the application to the new cluster",
        format!(
            "export ETCDCTL_ENDPOINTS={}   # the application's etcd endpoints",
            endpoints.join(",")
        ),
        started,
        true,
    );
    let started = Instant::now();
    let stopped = join_all(old_containers.iter().map(|c| cluster.docker_of_object(c).stop(c, 10)))
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>();
    cluster.record(
        "stop the old cluster (kept, with its volumes, as the fallback)",
        cluster.on_hosts_of(old_containers, |c| format!("docker stop --time 10 {c}")),
        started,
        stopped.is_ok(),
    );
    stopped.map(|_| ())
}
