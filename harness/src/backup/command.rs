//! What `etcd-drill backup`, `etcd-drill backup compact` and `etcd-drill restore-backup`
//! do, as library functions: the binary only parses flags and calls these. Every Docker
//! object they create (verification tools, the temporary etcd) carries a run label and is
//! removed at the end, also on Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::agent::{unix_ms, Agent, AgentFigures, Verifier};
use super::config::RawAgentConfig;
use super::naming::FullName;
use super::replay::{self, restore_into_volume, Prepared, ReplayPlace, ReplayReport, RestoredMember};
use super::store::{BackupStore, StoreLocation};
use crate::clock::Clock;
use crate::cluster::ClusterImage;
use crate::docker::image::DEFAULT_IMAGE;
use crate::docker::runtime::{DockerRuntime, RunGuard};
use crate::error::{Error, Result};

/// Where a store is, as the flags give it.
#[derive(Debug, Clone, Default)]
pub struct StoreArgs {
    pub store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
}

impl StoreArgs {
    pub fn open(&self) -> Result<BackupStore> {
        let spec = self.store.as_deref().ok_or_else(|| Error::InvalidArgument {
            argument: "--store".into(),
            message: "is required: a directory or s3://bucket/prefix".into(),
        })?;
        BackupStore::open(StoreLocation::parse(
            spec,
            self.s3_endpoint.as_deref(),
            self.s3_region.as_deref(),
        )?)
    }
}

/// Docker, the image (its layout and tools read from it), and a run id whose objects are
/// removed at the end.
struct ToolRun {
    docker: DockerRuntime,
    image: ClusterImage,
    run_id: String,
    guard: RunGuard,
}

impl ToolRun {
    async fn start(image: Option<&str>) -> Result<ToolRun> {
        let docker = DockerRuntime::connect().await?;
        let image = image.unwrap_or(DEFAULT_IMAGE);
        docker.ensure_image(image, DEFAULT_IMAGE).await?;
        let run_id = crate::docker::runtime::new_run_id();
        let guard = RunGuard::new(&run_id);
        let image = ClusterImage::inspect(&docker, image, None, None, &run_id).await?;
        Ok(ToolRun {
            docker,
            image,
            guard,
            run_id,
        })
    }

    async fn finish(mut self) {
        if self.docker.remove_run(Some(&self.run_id)).await.is_ok() {
            self.guard.disarm();
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `etcd-drill backup`: runs the agent until Ctrl-C/SIGTERM (or for `run_for`), printing
/// what it saved every `report_every`.
pub async fn run_agent(
    raw: RawAgentConfig,
    config_path: &Path,
    image: Option<&str>,
    run_for: Option<Duration>,
    access: &crate::etcd::access::ClientAccess,
) -> Result<AgentFigures> {
    let config = raw.compile(config_path)?;
    let endpoints = crate::etcd::parse_endpoints(&raw.endpoints)?;
    if endpoints.is_empty() {
        return Err(Error::InvalidArgument {
            argument: "--endpoints".into(),
            message: "give the members' client URLs (flag or `endpoints` in the config file)".into(),
        });
    }
    let store = StoreArgs {
        store: raw.store.clone(),
        s3_endpoint: raw.s3_endpoint.clone(),
        s3_region: raw.s3_region.clone(),
    }
    .open()?;
    let tools = ToolRun::start(image.or(raw.image.as_deref())).await?;
    let mut members = Vec::new();
    for e in &endpoints {
        let name = e.trim_start_matches("http://").trim_start_matches("https://");
        members.push(access.connect(name, e).await?);
    }
    let scratch = std::env::temp_dir().join(format!("etcd-drill-backup-{}", tools.run_id));
    println!(
        "backup agent: {} -> {} (full every {} ms, deltas {}, {}); run {}",
        endpoints.join(","),
        store.location.describe(),
        config.full_interval_ms,
        config
            .delta_period_ms
            .map(|ms| format!("every {ms} ms"))
            .unwrap_or_else(|| "off".into()),
        config.compression.as_str(),
        tools.run_id
    );
    let agent = Agent::start(
        config,
        members,
        0,
        store,
        Verifier {
            docker: tools.docker.clone(),
            image: tools.image.clone(),
            run_id: tools.run_id.clone(),
        },
        scratch.clone(),
        Clock::start(),
    );
    let wait = async {
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let f = agent.figures();
            println!(
                "  {} fulls, {} deltas ({} events), saved up to revision {}, {} errors",
                f.fulls.len(),
                f.deltas,
                f.delta_events,
                f.last_saved_revision,
                f.errors.len()
            );
        }
    };
    match run_for {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = interrupted() => {}
                _ = wait => {}
            }
        }
        None => {
            tokio::select! {
                _ = interrupted() => {}
                _ = wait => {}
            }
        }
    }
    let figures = agent.stop(0).await;
    tools.finish().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(figures)
}

/// What `restore-backup` should produce.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub store: StoreArgs,
    pub full_revision: Option<i64>,
    pub stop_at_last_good: bool,
    /// Only check the chain; restore nothing.
    pub check_only: bool,
    /// `name=peer URL` of every member of the new cluster.
    pub members: Vec<(String, String)>,
    pub token: Option<String>,
    pub out: PathBuf,
    pub image: Option<String>,
}

impl RestoreRequest {
    /// The `--initial-cluster` value of the new cluster.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|(n, u)| format!("{n}={u}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What `restore-backup` did.
#[derive(Debug, Clone)]
pub struct RestoreResult {
    pub replay: Option<ReplayReport>,
    pub prepared_revision: i64,
    pub stopped: Option<String>,
    pub token: String,
    pub data_dirs: Vec<(String, PathBuf)>,
}

/// `etcd-drill restore-backup`.
pub async fn restore_backup(request: &RestoreRequest) -> Result<RestoreResult> {
    let store = request.store.open()?;
    let prepared = replay::prepare(&store, request.full_revision, request.stop_at_last_good).await?;
    let token = request
        .token
        .clone()
        .unwrap_or_else(|| format!("etcd-drill-restored-{}", unix_ms()));
    let mut result = RestoreResult {
        replay: None,
        prepared_revision: prepared.target_revision(),
        stopped: prepared.stopped.as_ref().map(|e| e.to_string()),
        token: token.clone(),
        data_dirs: Vec::new(),
    };
    if request.check_only {
        return Ok(result);
    }
    let tools = ToolRun::start(request.image.as_deref()).await?;
    let done = async {
        let report = replay_with(&tools, &store, &prepared, &request.out).await?;
        let snapshot = PathBuf::from(&report.snapshot);
        let initial_cluster = request.initial_cluster();
        for (name, peer_url) in &request.members {
            let dir = request.out.join(name);
            restore_data_dir(&tools, &snapshot, name, peer_url, &initial_cluster, &token, &dir).await?;
            result.data_dirs.push((name.clone(), dir));
        }
        result.replay = Some(report);
        Ok::<_, Error>(())
    }
    .await;
    tools.finish().await;
    done?;
    Ok(result)
}

async fn replay_with(tools: &ToolRun, store: &BackupStore, prepared: &Prepared, out: &Path) -> Result<ReplayReport> {
    let network = format!("etcd-drill-{}-replay", tools.run_id);
    tools
        .docker
        .create_network(&network, &tools.run_id, None, false)
        .await?;
    let place = ReplayPlace {
        docker: &tools.docker,
        image: &tools.image,
        run_id: &tools.run_id,
        network: &network,
        work_dir: out,
    };
    replay::replay(store, prepared, &place).await
}

/// `etcdutl snapshot restore` for one member into a volume, then copied out to `dir`.
async fn restore_data_dir(
    tools: &ToolRun,
    snapshot: &Path,
    name: &str,
    peer_url: &str,
    initial_cluster: &str,
    token: &str,
    dir: &Path,
) -> Result<()> {
    if dir.exists() {
        return Err(Error::InvalidArgument {
            argument: "--out".into(),
            message: format!("{} exists; etcd needs a new data dir", dir.display()),
        });
    }
    let volume = format!("etcd-drill-{}-{name}-restored", tools.run_id);
    tools.docker.create_volume(&volume, &tools.run_id, name).await?;
    let member = RestoredMember {
        name,
        peer_url,
        initial_cluster,
        token: Some(token),
    };
    let container = format!("etcd-drill-{}-restore-{name}", tools.run_id);
    restore_into_volume(
        &tools.docker,
        &tools.image,
        &tools.run_id,
        &container,
        snapshot,
        &volume,
        &member,
    )
    .await?;
    // A stopped container on the volume, to copy the data dir out of.
    let flavor = &tools.image.flavor;
    let holder = tools.image.snapshot_tool_container(
        format!("etcd-drill-{}-export-{name}", tools.run_id),
        vec!["version".into()],
        vec![(volume, flavor.data_mount.into())],
    );
    tools.docker.create_container(&holder, &tools.run_id).await?;
    let archive = tools.docker.read_archive(&holder.name, flavor.data_dir).await?;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut tar = tar::Archive::new(archive.as_slice());
    for entry in tar.entries().map_err(Error::io(dir))? {
        let mut entry = entry.map_err(Error::io(dir))?;
        let path = entry.path().map_err(Error::io(dir))?.into_owned();
        // The archive's top directory is `data`; the member's dir takes its place.
        let inner: PathBuf = path.components().skip(1).collect();
        if inner.as_os_str().is_empty() {
            continue;
        }
        entry.unpack(dir.join(&inner)).map_err(Error::io(dir.join(&inner)))?;
    }
    Ok(())
}

/// `etcd-drill backup compact`: replays a full snapshot and its deltas and stores the
/// result as a new full snapshot at the chain's last revision.
pub async fn compact(store_args: &StoreArgs, full_revision: Option<i64>, image: Option<&str>) -> Result<FullName> {
    let store = store_args.open()?;
    let prepared = replay::prepare(&store, full_revision, false).await?;
    let tools = ToolRun::start(image).await?;
    let work = std::env::temp_dir().join(format!("etcd-drill-compact-{}", tools.run_id));
    let done = async {
        let report = replay_with(&tools, &store, &prepared, &work).await?;
        let path = PathBuf::from(&report.snapshot);
        let status = crate::cluster::snapshot::snapshot_status(
            &tools.docker,
            &tools.image,
            &tools.run_id,
            "compact-status",
            &path,
        )
        .await?;
        if status.revision.max(1) != report.revision {
            return Err(Error::Procedure {
                step: "check the compacted snapshot".into(),
                message: format!(
                    "etcdutl says revision {}, the replay reached {}",
                    status.revision, report.revision
                ),
            });
        }
        let name = FullName {
            revision: report.revision,
            taken_unix_ms: unix_ms(),
            compression: prepared.full.compression,
        };
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        store
            .put_with_hash(&name.file(), name.compression.compress(&bytes))
            .await?;
        Ok::<_, Error>(name)
    }
    .await;
    tools.finish().await;
    let _ = std::fs::remove_dir_all(&work);
    done
}

/// Parses `name=peer URL,...` (default: the reference topology's members).
pub fn parse_members(spec: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(spec) = spec else {
        let topology = crate::topology::Topology::reference();
        return Ok(topology
            .members
            .iter()
            .map(|m| (m.name.clone(), m.peer_url()))
            .collect());
    };
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.trim().split_once('=') {
            Some((name, url)) if !name.is_empty() && url.contains("://") => Ok((name.to_string(), url.to_string())),
            _ => Err(Error::InvalidArgument {
                argument: "--initial-cluster".into(),
                message: format!("`{pair}` is not name=http://host:2380"),
            }),
        })
        .collect()
}

/// `etcd-drill backup` in either form.
pub enum BackupRequest {
    Agent {
        raw: RawAgentConfig,
        config_path: PathBuf,
        run_for: Option<Duration>,
        /// TLS and a user for the members (`--cacert`, `--cert`, `--key`, `--user`).
        access: Box<crate::etcd::access::ClientAccess>,
    },
    Compact {
        store: StoreArgs,
        full: Option<i64>,
        image: Option<String>,
    },
}

/// Runs `etcd-drill backup` and prints the outcome; returns the exit code.
pub async fn dispatch_backup(request: BackupRequest) -> Result<u8> {
    match request {
        BackupRequest::Agent {
            raw,
            config_path,
            run_for,
            access,
        } => {
            let f = run_agent(raw, &config_path, None, run_for, &access).await?;
            let full_bytes: u64 = f.fulls.iter().map(|x| x.stored_bytes).sum();
            println!(
                "backup agent stopped: {} fulls ({full_bytes} bytes stored), {} deltas ({} events, {} bytes, {} stored), saved up to revision {}, {} watch restarts, {} defragmentations, {} errors",
                f.fulls.len(),
                f.deltas,
                f.delta_events,
                f.delta_bytes,
                f.delta_stored_bytes,
                f.last_saved_revision,
                f.watch_restarts,
                f.defrags,
                f.errors.len()
            );
            for e in f.errors.iter().take(5) {
                println!("  error: {e}");
            }
            for why in f.watch_breaks.iter().take(5) {
                println!("  watch break: {why}");
            }
            Ok(0)
        }
        BackupRequest::Compact { store, full, image } => {
            let name = compact(&store, full, image.as_deref()).await?;
            println!("compacted into {} (revision {})", name.file(), name.revision);
            Ok(0)
        }
    }
}

/// Runs `etcd-drill restore-backup` and prints what it did and how to start the cluster.
pub async fn print_restore(request: &RestoreRequest) -> Result<u8> {
    let result = restore_backup(request).await?;
    if let Some(stopped) = &result.stopped {
        println!(
            "stopped at the last good point, revision {}: {stopped}",
            result.prepared_revision
        );
    }
    let Some(r) = &result.replay else {
        println!("chain checked: restorable up to revision {}", result.prepared_revision);
        return Ok(0);
    };
    println!(
        "restored {} + {} deltas: revision {} -> {}, {} events in {} transactions; read {} ms, replay {} ms",
        r.full,
        r.deltas_replayed.len(),
        r.full_revision,
        r.revision,
        r.events,
        r.transactions,
        r.fetch_ms,
        r.replay_ms
    );
    println!("snapshot: {}", r.snapshot);
    let initial_cluster = request.initial_cluster();
    for (name, dir) in &result.data_dirs {
        let url = request
            .members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.as_str())
            .unwrap_or("");
        println!(
            "  {name}: etcd --name {name} --data-dir {} --initial-advertise-peer-urls {url} --initial-cluster {initial_cluster} --initial-cluster-token {} --initial-cluster-state new",
            dir.display(),
            result.token
        );
    }
    Ok(0)
}
