//! Docker, through bollard: containers, networks and volumes of one run, all labelled
//! `io.etcd-drill.run=<run id>`, and the cleanup that removes them whatever happens
//! (explicit at the end of a run, [`RunGuard`]'s Drop on a panic or an early return,
//! and the CLI's signal handler on Ctrl-C/SIGTERM).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, Mount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig, PortBinding,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::docker::owner;
pub use crate::docker::owner::RunObjects;
use crate::error::{Error, Result};

/// Every Docker object a run creates carries this label, with the run id as value.
pub const RUN_LABEL: &str = "io.etcd-drill.run";
/// What names a run's split containers (`etcd-drill-<run>-netsplit-<host>`, the
/// network-fault tool): cleanup stops them before removing them, so that their rules go
/// with them.
pub const SPLIT_MARK: &str = "-netsplit-";
/// Which member a container or volume belongs to.
pub const MEMBER_LABEL: &str = "io.etcd-drill.member";
/// What a container is for: `member` or `tool` (a one-off etcdctl/etcdutl run).
pub const ROLE_LABEL: &str = "io.etcd-drill.role";

/// How to create one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub hostname: Option<String>,
    pub user: Option<String>,
    /// Replaces the image's entrypoint (an image whose entrypoint is a script).
    pub entrypoint: Option<Vec<String>>,
    /// Empty: the image's own command.
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// (network, alias on it): the network the container is created on; published ports
    /// go through it.
    pub network: Option<(String, String)>,
    /// A second network, connected before the start (the members' peer network).
    pub peer_network: Option<NetworkAttachment>,
    /// (volume name, mount point)
    pub volumes: Vec<(String, String)>,
    /// (container TCP port, host port on 127.0.0.1)
    pub publish: Option<(u16, u16)>,
    /// `host:ip` lines added to the container's /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// No network at all (tools that only read and write files start faster).
    pub isolated: bool,
    /// On the host's own network (`--network host`): a member of a host-networked topology.
    pub host_network: bool,
    /// Join this container's network namespace (`--network container:NAME`).
    pub network_of: Option<String>,
    /// Capabilities added (`--cap-add`): NET_ADMIN for the network-fault tool.
    pub cap_add: Vec<String>,
    /// Host files mounted read-only: (host path, path in the container).
    pub bind_files: Vec<(PathBuf, String)>,
    /// Host files copied into the container once it is created, before it starts
    /// (`docker cp`): (host path, path in the container). Unlike a bind mount, this works
    /// with a daemon on another machine.
    pub copied_files: Vec<(PathBuf, String)>,
}

/// A container's place on a network: its alias there and, optionally, a fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAttachment {
    pub network: String,
    pub alias: String,
    pub ipv4: Option<String>,
}

/// A host file a tool container needs, at `container_path`.
#[derive(Debug, Clone)]
pub struct ToolFile {
    pub host_path: PathBuf,
    pub container_path: String,
}

/// Who owns one file or directory in a container, and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// As the archive names it: relative, starting with the base name of the path asked for.
    pub path: String,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
}

impl Ownership {
    /// Whether a process running as `uid:gid` (no supplementary groups) may write it.
    pub fn writable_by(&self, uid: u64, gid: u64) -> bool {
        let bit = if uid == 0 {
            return true;
        } else if self.uid == uid {
            0o200
        } else if self.gid == gid {
            0o020
        } else {
            0o002
        };
        self.mode & bit != 0
    }
}

/// What a one-off tool container printed and how it ended.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub exit_code: i64,
    /// From creating the container to its exit.
    pub elapsed_ms: u64,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Whether the daemon sees this machine's files (a local daemon). Cleared the first
    /// time a bind mount fails; files are then copied into containers instead.
    binds_work: Arc<AtomicBool>,
    /// This process as the owner of what it creates, and the deadline of its runs
    /// (`reaper`'s labels), added to every container, network and volume.
    owner_labels: Arc<Vec<(String, String)>>,
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

/// The daemon refused a bind mount: it runs elsewhere and cannot see the source path.
fn is_bad_mount(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 400 | 500, message }
        if message.contains("bind source path does not exist") || message.contains("invalid mount config"))
}

fn is_not_modified(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }
    )
}

impl DockerRuntime {
    /// Connects to the daemon named by DOCKER_HOST (or the local socket) and checks it answers.
    pub async fn connect() -> Result<DockerRuntime> {
        DockerRuntime::connect_to(None).await
    }

    /// Connects to `endpoint` (`unix://` or `tcp://` with TLS), or with `None` to the
    /// daemon `DOCKER_HOST` names, else the local socket.
    pub async fn connect_to(endpoint: Option<&crate::topology::DockerEndpoint>) -> Result<DockerRuntime> {
        use bollard::API_DEFAULT_VERSION;
        let docker = match endpoint {
            None => Docker::connect_with_defaults(),
            Some(e) => match (&e.tls, e.url.strip_prefix("unix://")) {
                (None, Some(path)) => Docker::connect_with_unix(path, 120, API_DEFAULT_VERSION),
                (Some(tls), _) => {
                    Docker::connect_with_ssl(&e.url, &tls.key, &tls.cert, &tls.ca, 120, API_DEFAULT_VERSION)
                }
                (None, None) => Docker::connect_with_http(&e.url, 120, API_DEFAULT_VERSION),
            },
        };
        let docker = docker.map_err(|source| Error::DockerUnavailable { source })?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|source| Error::DockerUnavailable { source })?;
        docker
            .ping()
            .await
            .map_err(|source| Error::DockerUnavailable { source })?;
        let deadline = std::time::SystemTime::now() + owner::RUN_LEASE;
        Ok(DockerRuntime {
            docker,
            binds_work: Arc::new(AtomicBool::new(true)),
            owner_labels: Arc::new(owner::Owner::this_process().labels(deadline)),
        })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::docker("inspect image", image)(e)),
        }
    }

    /// Makes sure `image` is present: pulls it if it is not; if that fails, says how to
    /// build the local image instead.
    pub async fn ensure_image(&self, image: &str, local_image: &str) -> Result<()> {
        if self.image_exists(image).await? {
            return Ok(());
        }
        let (name, tag) = split_image_reference(image);
        let options = CreateImageOptionsBuilder::default().from_image(name).tag(tag).build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        let mut failure = None;
        while let Some(step) = pull.next().await {
            if let Err(e) = step {
                failure = Some(e.to_string());
                break;
            }
        }
        if failure.is_none() && self.image_exists(image).await? {
            return Ok(());
        }
        Err(Error::ImageMissing {
            image: image.to_string(),
            reason: failure.unwrap_or_else(|| "the pull finished but the image is still missing".into()),
            local: local_image.to_string(),
        })
    }

    /// `image` as the archive `docker save` writes.
    pub async fn save_image(&self, image: &str) -> Result<Vec<u8>> {
        let mut stream = self.docker.export_image(image);
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.map_err(Error::docker("save image", image))?);
        }
        Ok(archive)
    }

    /// Loads an archive of [`DockerRuntime::save_image`] (`docker load`).
    pub async fn load_image(&self, image: &str, archive: Vec<u8>) -> Result<()> {
        let options = bollard::query_parameters::ImportImageOptions::default();
        let mut stream = self
            .docker
            .import_image(options, bollard::body_full(archive.into()), None);
        while let Some(step) = stream.next().await {
            let info = step.map_err(Error::docker("load image", image))?;
            if let Some(detail) = info.error_detail {
                return Err(Error::ImageUnusable {
                    image: image.to_string(),
                    message: format!("the daemon refused to load it: {}", detail.message.unwrap_or_default()),
                });
            }
        }
        Ok(())
    }

    /// Runs a command in a throwaway container of `image` and returns its exit code.
    pub async fn image_command(
        &self,
        image: &str,
        run_id: &str,
        entrypoint: Option<Vec<String>>,
        cmd: Vec<String>,
    ) -> Result<ToolOutput> {
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let spec = ContainerSpec {
            name: format!("etcd-drill-{run_id}-probe{n}"),
            isolated: true,
            image: image.to_string(),
            entrypoint,
            cmd,
            labels: vec![(ROLE_LABEL.into(), "tool".into())],
            ..ContainerSpec::default()
        };
        self.run_tool(&spec, run_id, &[], Duration::from_secs(60)).await
    }

    /// Creates a bridge network, on `subnet` if given. An `internal` network has no way
    /// out: no gateway, no published ports, no outside DNS. Returns Ok(false) when the subnet
    /// overlaps one in use, so the caller can try another.
    pub async fn create_network(&self, name: &str, run_id: &str, subnet: Option<&str>, internal: bool) -> Result<bool> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(internal),
            labels: Some(self.labels_for(run_id, &[])),
            ipam: subnet.map(|subnet| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) if message.contains("overlap") => {
                Ok(false)
            }
            Err(e) => Err(Error::docker("create network", name)(e)),
        }
    }

    pub async fn create_volume(&self, name: &str, run_id: &str, member: &str) -> Result<()> {
        self.create_labelled_volume(name, self.labels_for(run_id, &[(MEMBER_LABEL, member)]))
            .await
    }

    async fn create_labelled_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map_err(Error::docker("create volume", name))?;
        Ok(())
    }

    /// The labels of an object of `run_id`: the run, its owner and deadline, and `extra`.
    fn labels_for(&self, run_id: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = self.owner_labels.iter().cloned().collect();
        labels.insert(RUN_LABEL.to_string(), run_id.to_string());
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels
    }

    /// Marks `run_id` as kept on purpose (`--keep`): a small labelled volume that tells
    /// later starts and `clean` its objects are not abandoned, though their owner exited.
    pub async fn mark_kept(&self, run_id: &str) -> Result<()> {
        let name = format!("etcd-drill-{run_id}-kept");
        self.create_labelled_volume(&name, self.labels_for(run_id, &[(owner::KEPT_LABEL, "true")]))
            .await
    }

    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::docker("remove volume", name)(e)),
        }
    }

    pub async fn create_container(&self, spec: &ContainerSpec, run_id: &str) -> Result<()> {
        let mut labels = self.labels_for(run_id, &[]);
        labels.extend(spec.labels.iter().cloned());
        let port_key = spec.publish.map(|(port, _)| format!("{port}/tcp"));
        let mounts: Vec<Mount> = spec
            .bind_files
            .iter()
            .map(|(host, target)| Mount {
                target: Some(target.clone()),
                source: Some(host.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        let host_config = HostConfig {
            mounts: (!mounts.is_empty()).then_some(mounts),
            binds: (!spec.volumes.is_empty())
                .then(|| spec.volumes.iter().map(|(v, target)| format!("{v}:{target}")).collect()),
            network_mode: match (&spec.network, spec.isolated) {
                _ if spec.host_network => Some("host".into()),
                _ if spec.network_of.is_some() => spec.network_of.as_ref().map(|c| format!("container:{c}")),
                (Some((n, _)), _) => Some(n.clone()),
                (None, true) => Some("none".into()),
                (None, false) => None,
            },
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            port_bindings: spec.publish.map(|(port, host_port)| {
                HashMap::from([(
                    format!("{port}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(host_port.to_string()),
                    }]),
                )])
            }),
            ..Default::default()
        };
        let networking_config = spec.network.as_ref().map(|(network, alias)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: Some(vec![alias.clone()]),
                    ..Default::default()
                },
            )])),
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: spec.hostname.clone(),
            user: spec.user.clone(),
            entrypoint: spec.entrypoint.clone(),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            exposed_ports: port_key.map(|k| vec![k]),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(Error::docker("create container", &spec.name))?;
        // Daemons before API 1.44 take one network at creation; the second is connected.
        if let Some(peer) = &spec.peer_network {
            self.connect_network(&spec.name, peer).await?;
        }
        if !spec.copied_files.is_empty() {
            let mut contents = Vec::new();
            for (host, target) in &spec.copied_files {
                contents.push((target.as_str(), std::fs::read(host).map_err(Error::io(host))?));
            }
            let files: Vec<(&str, &[u8])> = contents.iter().map(|(t, b)| (*t, b.as_slice())).collect();
            let archive = tar_archive(&files).map_err(Error::io(&spec.copied_files[0].0))?;
            self.write_archive(&spec.name, "/", archive).await?;
        }
        Ok(())
    }

    /// Attaches a container to a network with its alias and, if given, its fixed address.
    pub async fn connect_network(&self, container: &str, attachment: &NetworkAttachment) -> Result<()> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![attachment.alias.clone()]),
                ipam_config: attachment.ipv4.as_ref().map(|ip| EndpointIpamConfig {
                    ipv4_address: Some(ip.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(&attachment.network, request)
            .await
            .map_err(Error::docker(
                "connect network",
                format!("{container} to {}", attachment.network),
            ))
    }

    /// Cuts a container off a network (it keeps running).
    pub async fn disconnect_network(&self, container: &str, network: &str) -> Result<()> {
        let request = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .map_err(Error::docker(
                "disconnect network",
                format!("{container} from {network}"),
            ))
    }

    pub async fn pause(&self, name: &str) -> Result<()> {
        self.docker
            .pause_container(name)
            .await
            .map_err(Error::docker("pause container", name))
    }

    pub async fn unpause(&self, name: &str) -> Result<()> {
        self.docker
            .unpause_container(name)
            .await
            .map_err(Error::docker("unpause container", name))
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(Error::docker("start container", name)(e)),
        }
    }

    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::default().signal(signal).build();
        let t0 = std::time::Instant::now();
        let result = self.docker.kill_container(name, Some(options)).await;
        tracing::debug!(
            container = name,
            ms = t0.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "kill"
        );
        match result {
            Ok(()) => Ok(()),
            // 409: not running; 404: gone. Either way it is where a kill leaves it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409, ..
            }) => Ok(()),
            Err(e) => Err(Error::docker("kill container", name)(e)),
        }
    }

    pub async fn stop(&self, name: &str, grace_secs: i32) -> Result<()> {
        let options = StopContainerOptionsBuilder::default().t(grace_secs).build();
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(Error::docker("stop container", name)(e)),
        }
    }

    pub async fn remove_container(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Another removal of it (a tool container's own clean-up) is under way: wait for it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => {
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Err(e) = self.docker.inspect_container(name, None).await {
                        if is_not_found(&e) {
                            return Ok(());
                        }
                    }
                }
                Err(Error::Timeout {
                    what: format!("the removal of container {name}"),
                    waited_ms: 5_000,
                })
            }
            Err(e) => Err(Error::docker("remove container", name)(e)),
        }
    }

    pub async fn is_running(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(c.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::docker("inspect container", name)(e)),
        }
    }

    /// The exit code of a container that has stopped; None while it runs or if it is gone.
    pub async fn exit_code(&self, name: &str) -> Result<Option<i64>> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(c.state.filter(|s| s.running != Some(true)).and_then(|s| s.exit_code)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::docker("inspect container", name)(e)),
        }
    }

    /// Everything the container wrote to stdout and stderr so far.
    pub async fn logs(&self, name: &str) -> Result<(String, String)> {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(name, Some(options));
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(Error::docker("read logs", name))? {
                bollard::container::LogOutput::StdErr { message } => err.push_str(&String::from_utf8_lossy(&message)),
                other => out.push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
        Ok((out, err))
    }

    /// The last `n` non-empty lines the container wrote (stdout, then stderr): what a
    /// member said before it stopped or while it would not serve.
    pub async fn log_tail(&self, name: &str, n: usize) -> Result<String> {
        let (out, err) = self.logs(name).await?;
        Ok(last_lines(&format!("{out}{err}"), n))
    }

    /// Creates a container with `files` in it, runs it to the end and removes it. Used for
    /// etcdctl/etcdutl steps, so the tool matches the server's version. Files are mounted
    /// read-only where the daemon sees this machine's disk, and copied in where it does not.
    pub async fn run_tool(
        &self,
        spec: &ContainerSpec,
        run_id: &str,
        files: &[ToolFile],
        timeout: Duration,
    ) -> Result<ToolOutput> {
        let t0 = std::time::Instant::now();
        let mut spec = spec.clone();
        let mut copy_in = !files.is_empty();
        if copy_in && self.binds_work.load(Ordering::Relaxed) {
            spec.bind_files = files
                .iter()
                .map(|f| {
                    (
                        std::path::absolute(&f.host_path).unwrap_or_else(|_| f.host_path.clone()),
                        f.container_path.clone(),
                    )
                })
                .collect();
            match self.create_container(&spec, run_id).await {
                Ok(()) => copy_in = false,
                Err(Error::Docker { source, .. }) if is_bad_mount(&source) => {
                    tracing::info!(
                        "the Docker daemon cannot see local files ({source}); copying them into containers instead"
                    );
                    self.binds_work.store(false, Ordering::Relaxed);
                    spec.bind_files.clear();
                    self.create_container(&spec, run_id).await?;
                }
                Err(e) => return Err(e),
            }
        } else {
            self.create_container(&spec, run_id).await?;
        }
        let result = async {
            if copy_in {
                let mut contents = Vec::new();
                for f in files {
                    contents.push((
                        f.container_path.as_str(),
                        std::fs::read(&f.host_path).map_err(Error::io(&f.host_path))?,
                    ));
                }
                let borrowed: Vec<(&str, &[u8])> = contents.iter().map(|(p, b)| (*p, b.as_slice())).collect();
                let archive = tar_archive(&borrowed).map_err(Error::io("<tar archive>"))?;
                self.write_archive(&spec.name, "/", archive).await?;
            }
            self.start(&spec.name).await?;
            let wait_options = WaitContainerOptionsBuilder::default().condition("not-running").build();
            let mut wait = self.docker.wait_container(&spec.name, Some(wait_options));
            let exit_code = match tokio::time::timeout(timeout, wait.next()).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!("tool container {} to finish", spec.name),
                        waited_ms: timeout.as_millis() as u64,
                    })
                }
                Ok(Some(Ok(r))) => r.status_code,
                Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
                Ok(Some(Err(e))) => return Err(Error::docker("wait for container", &spec.name)(e)),
                Ok(None) => -1,
            };
            let elapsed_ms = t0.elapsed().as_millis() as u64;
            tracing::debug!(container = %spec.name, ms = elapsed_ms, copied = copy_in, "tool exited");
            let (stdout, stderr) = self.logs(&spec.name).await?;
            Ok(ToolOutput {
                exit_code,
                elapsed_ms,
                stdout,
                stderr,
            })
        }
        .await;
        // The result is known; the removal need not hold up the caller. Anything it misses
        // goes with the rest of the run's objects at the end.
        let docker = self.clone();
        let name = spec.name.clone();
        tokio::spawn(async move {
            if let Err(e) = docker.remove_container(&name).await {
                tracing::warn!("removing tool container {name}: {e}");
            }
        });
        result
    }

    /// A tar archive of `path` (a file or a directory) in a container, running or stopped.
    pub async fn read_archive(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(container, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.map_err(Error::docker("copy files out of", container))?);
        }
        Ok(archive)
    }

    /// Unpacks a tar archive into `path` in a container (running, stopped or just created).
    pub async fn write_archive(&self, container: &str, path: &str, archive: Vec<u8>) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::default().path(path).build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(Error::docker("copy files into", container))
    }

    /// The command line of every process running in a container (`docker top`).
    pub async fn container_commands(&self, container: &str) -> Result<Vec<String>> {
        let top = self
            .docker
            .top_processes(container, None)
            .await
            .map_err(Error::docker("list the processes of", container))?;
        let column = top
            .titles
            .unwrap_or_default()
            .iter()
            .position(|t| t == "CMD" || t == "COMMAND");
        Ok(top
            .processes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|row| column.and_then(|c| row.get(c).cloned()))
            .collect())
    }

    /// Owner, group and mode of `path` and of everything under it in a container
    /// (running, stopped or just created), as the archive API reports them.
    pub async fn ownership(&self, container: &str, path: &str) -> Result<Vec<Ownership>> {
        let archive = self.read_archive(container, path).await?;
        let mut tar = tar::Archive::new(archive.as_slice());
        let mut found = Vec::new();
        for entry in tar.entries().map_err(Error::io(path))? {
            let entry = entry.map_err(Error::io(path))?;
            let header = entry.header();
            found.push(Ownership {
                path: entry.path().map_err(Error::io(path))?.to_string_lossy().into_owned(),
                uid: header.uid().map_err(Error::io(path))?,
                gid: header.gid().map_err(Error::io(path))?,
                mode: header.mode().map_err(Error::io(path))?,
            });
        }
        Ok(found)
    }

    /// `chown -R uid:gid path` in a container (running, stopped or just created), done
    /// through the archive API so that it works on images without a shell or `chown`: the
    /// tree is copied out, its entries' owners rewritten, and copied back over itself.
    /// Returns how many entries it changed.
    pub async fn chown_tree(&self, container: &str, path: &str, uid: u64, gid: u64) -> Result<usize> {
        let archive = self.read_archive(container, path).await?;
        let mut rewritten = tar::Builder::new(Vec::new());
        let mut tar = tar::Archive::new(archive.as_slice());
        let mut entries_count = 0;
        for entry in tar.entries().map_err(Error::io(path))? {
            let mut entry = entry.map_err(Error::io(path))?;
            let mut header = entry.header().clone();
            header.set_uid(uid);
            header.set_gid(gid);
            header.set_cksum();
            let name = entry.path().map_err(Error::io(path))?.into_owned();
            match header.entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(Error::io(path))?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    rewritten
                        .append_link(&mut header, &name, &target)
                        .map_err(Error::io(path))?;
                }
                _ => rewritten
                    .append_data(&mut header, &name, &mut entry)
                    .map_err(Error::io(path))?,
            }
            entries_count += 1;
        }
        let rewritten = rewritten.into_inner().map_err(Error::io(path))?;
        let parent = std::path::Path::new(path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        self.write_archive(container, &parent, rewritten).await?;
        Ok(entries_count)
    }

    /// Reads one file out of a container (running or stopped), through the archive API.
    pub async fn read_file(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        let archive = self.read_archive(container, path).await?;
        let mut tar = tar::Archive::new(archive.as_slice());
        let entries = tar.entries().map_err(Error::io(path))?;
        for entry in entries {
            let mut entry = entry.map_err(Error::io(path))?;
            if entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(Error::io(path))?;
                return Ok(bytes);
            }
        }
        Err(Error::Procedure {
            step: format!("docker cp {container}:{path}"),
            message: "the archive holds no file".into(),
        })
    }

    /// Lists the objects labelled with `run_id`, or with any run id when `None`.
    pub async fn run_objects(&self, run_id: Option<&str>) -> Result<RunObjects> {
        let mut all = RunObjects::default();
        for run in self.runs_labelled(run_id).await? {
            all.absorb(&run.objects);
        }
        Ok(all)
    }

    /// Every run's objects on the daemon, grouped by run, with the owner labels.
    pub async fn runs(&self) -> Result<Vec<owner::RunRecord>> {
        self.runs_labelled(None).await
    }

    /// The objects of `run_id` (of every run when None), grouped by run.
    async fn runs_labelled(&self, run_id: Option<&str>) -> Result<Vec<owner::RunRecord>> {
        let label = match run_id {
            Some(id) => format!("{RUN_LABEL}={id}"),
            None => RUN_LABEL.to_string(),
        };
        let filters = HashMap::from([("label".to_string(), vec![label])]);
        let mut objects = Vec::new();
        let run_of = |labels: &HashMap<String, String>| labels.get(RUN_LABEL).cloned();
        let sorted = |labels: HashMap<String, String>| labels.into_iter().collect();
        for c in self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(Error::docker("list containers", RUN_LABEL))?
        {
            let labels = c.labels.unwrap_or_default();
            let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
            if let Some(run) = run_of(&labels) {
                let name = name.trim_start_matches('/').to_string();
                objects.push((run, sorted(labels), owner::ObjectKind::Container, name));
            }
        }
        for n in self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
            .await
            .map_err(Error::docker("list networks", RUN_LABEL))?
        {
            let labels = n.labels.unwrap_or_default();
            if let (Some(run), Some(name)) = (run_of(&labels), n.name) {
                objects.push((run, sorted(labels), owner::ObjectKind::Network, name));
            }
        }
        for v in self
            .docker
            .list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build()))
            .await
            .map_err(Error::docker("list volumes", RUN_LABEL))?
            .volumes
            .unwrap_or_default()
        {
            if let Some(run) = run_of(&v.labels) {
                objects.push((run, sorted(v.labels), owner::ObjectKind::Volume, v.name));
            }
        }
        Ok(owner::group_runs(objects))
    }

    /// Removes every container, network and volume of `run_id` (all runs when `None`).
    /// Containers go first, since they hold the networks and volumes.
    pub async fn remove_run(&self, run_id: Option<&str>) -> Result<RunObjects> {
        let found = self.run_objects(run_id).await?;
        // A split between hosts is stopped first: its tool takes its rules out on SIGTERM,
        // which a forced removal would not give it.
        let splits = found
            .containers
            .iter()
            .filter(|c| c.contains(SPLIT_MARK))
            .map(|c| self.stop(c, 10));
        // A split that is already gone is no error; what cannot be removed says so below.
        let _ = futures_util::future::join_all(splits).await;
        let removals = found.containers.iter().map(|c| self.remove_container(c));
        for r in futures_util::future::join_all(removals).await {
            r?;
        }
        for n in &found.networks {
            match self.docker.remove_network(n).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::docker("remove network", n)(e)),
            }
        }
        for v in &found.volumes {
            self.remove_volume(v).await?;
        }
        Ok(found)
    }
}

/// Splits `repo:tag` (keeping registry ports and digests intact); the tag defaults to `latest`.
pub fn split_image_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// A tar archive of `files` (path, bytes), each mode 0644.
pub fn tar_archive(files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path.trim_start_matches('/'), *bytes)?;
    }
    builder.into_inner()
}

/// The same tar archive without the entries under `prefix` (the directory entry itself stays).
pub fn tar_without(archive: &[u8], prefix: &str) -> std::io::Result<Vec<u8>> {
    let mut out = tar::Builder::new(Vec::new());
    let mut input = tar::Archive::new(archive);
    for entry in input.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.starts_with(prefix) && path.trim_end_matches('/') != prefix.trim_end_matches('/') {
            continue;
        }
        let header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        out.append(&header, data.as_slice())?;
    }
    out.into_inner()
}

/// Names of the regular files in a tar archive.
pub fn tar_file_names(archive: &[u8]) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in tar::Archive::new(archive).entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            names.push(entry.path()?.to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Removes a run's Docker objects when dropped, unless [`RunGuard::disarm`] was called.
/// Drop runs on a panic or an early return, and when the CLI drops the run on a signal.
pub struct RunGuard {
    run_id: String,
    armed: bool,
    /// The run's daemons other than the harness's own (members on other hosts).
    daemons: Vec<crate::topology::DockerEndpoint>,
}

impl RunGuard {
    pub fn new(run_id: &str) -> RunGuard {
        RunGuard {
            run_id: run_id.to_string(),
            armed: true,
            daemons: Vec::new(),
        }
    }

    /// Also cleans `daemons` up, beside the harness's own.
    pub fn with_daemons(mut self, daemons: Vec<crate::topology::DockerEndpoint>) -> RunGuard {
        self.daemons = daemons;
        self
    }

    /// The run has cleaned up after itself, or the user asked to keep the cluster.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let run_id = self.run_id.clone();
        let daemons = self.daemons.clone();
        // A fresh thread and runtime: this may run while the run's runtime is unwinding or
        // shutting down, where its connections can no longer be driven.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let docker = DockerRuntime::connect().await.ok()?;
                let mut removed = docker.remove_run(Some(&run_id)).await.ok()?;
                for endpoint in &daemons {
                    let remote = DockerRuntime::connect_to(Some(endpoint)).await.ok()?;
                    removed.absorb(&remote.remove_run(Some(&run_id)).await.ok()?);
                }
                Some(removed)
            })
        });
        match cleanup.join() {
            Ok(Some(removed)) if !removed.is_empty() => {
                eprintln!("etcd-drill: removed run {} ({})", self.run_id, removed.summary());
            }
            Ok(Some(_)) => {}
            _ => eprintln!(
                "etcd-drill: could not remove the Docker objects of run {}; run `etcd-drill clean --run {}`",
                self.run_id, self.run_id
            ),
        }
    }
}

/// The last `n` non-empty lines of `text`, in their order.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A fresh run id: 8 hex digits from the OS's randomness.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_log_lines_are_kept() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn tar_without_drops_only_what_is_under_the_prefix() {
        let archive = tar_archive(&[
            ("data/member/snap/db", b"db"),
            ("data/member/snap/0001.snap", b"s"),
            ("data/member/wal/0.wal", b"w"),
        ])
        .unwrap();
        let kept = tar_without(&archive, "data/member/snap/").unwrap();
        assert_eq!(tar_file_names(&kept).unwrap(), vec!["data/member/wal/0.wal"]);
    }

    #[test]
    fn image_references_split_at_the_tag() {
        assert_eq!(
            split_image_reference("etcd-drill/etcd:3.5.1"),
            ("etcd-drill/etcd", "3.5.1")
        );
        assert_eq!(
            split_image_reference("quay.io/coreos/etcd"),
            ("quay.io/coreos/etcd", "latest")
        );
        assert_eq!(
            split_image_reference("localhost:5000/etcd"),
            ("localhost:5000/etcd", "latest")
        );
        assert_eq!(
            split_image_reference("localhost:5000/etcd:v3.5.9"),
            ("localhost:5000/etcd", "v3.5.9")
        );
    }
}
