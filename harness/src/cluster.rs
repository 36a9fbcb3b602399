//! A running cluster of one drill: the members' containers, volumes and clients, and the
//! Docker-level operations on them. Every operation records the `docker`/`etcdctl`
//! command an operator would type for it, so a drill's log reads as a runbook.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::etcd::MemberClient;
use crate::fault::{damage_bytes, Damage, DamageKind, DamagedFile};
use crate::flavor::{Flavor, MemberLaunch};
use crate::runtime::{tar_archive, tar_file_names, tar_without, ContainerSpec, DockerRuntime, NetworkAttachment};
use crate::security::RootPassword;
use crate::tls::ClusterTls;
use crate::tools::ImageTools;
use crate::topology::{MemberSpec, ServerSettings, Topology};

/// The image a cluster runs, how to run it (its [`Flavor`]) and what its tools can do
/// (probed once per run; None where no procedure needs them, e.g. `perf`).
#[derive(Debug, Clone)]
pub struct ClusterImage {
    pub name: String,
    pub flavor: Flavor,
    pub tools: Option<ImageTools>,
    /// Turn authentication on with this root password once the cluster is up.
    pub root_password: Option<RootPassword>,
    /// TLS on client and peer URLs, with certificates made for the run.
    pub tls: bool,
}

impl ClusterImage {
    /// How to run `name` and what its tools can do, read from the image itself: its
    /// flavor (`kind` when given, else detected; `user` on top) and its tools' abilities
    /// (probed in one-off containers labelled with `run_id`). No auth, no TLS.
    pub async fn inspect(
        docker: &DockerRuntime,
        name: &str,
        kind: Option<crate::flavor::FlavorKind>,
        user: Option<String>,
        run_id: &str,
    ) -> Result<ClusterImage> {
        let flavor = crate::flavor::resolve(docker, name, kind, user).await?;
        let tools = crate::tools::probe(docker, name, &flavor, run_id).await?;
        Ok(ClusterImage {
            name: name.to_string(),
            flavor,
            tools: Some(tools),
            root_password: None,
            tls: false,
        })
    }

    /// The tool that saves, checks and restores snapshots: `etcdutl`, or `etcdctl` on
    /// images that have no `etcdutl` (3.4); `etcdutl` when the tools were not probed.
    pub fn snapshot_tool(&self) -> crate::tools::SnapshotTool {
        self.tools
            .as_ref()
            .map(|t| t.snapshot_tool)
            .unwrap_or(crate::tools::SnapshotTool::Etcdutl)
    }

    /// A one-off container of the image running its snapshot tool with `args`.
    pub fn snapshot_tool_container(
        &self,
        name: String,
        args: Vec<String>,
        volumes: Vec<(String, String)>,
    ) -> ContainerSpec {
        crate::tools::tool_container(
            &self.name,
            &self.flavor,
            name,
            self.snapshot_tool().binary(),
            args,
            volumes,
        )
    }

    /// The image a running cluster uses, with its flavor and probed tools.
    pub fn of(cluster: &Cluster) -> ClusterImage {
        ClusterImage {
            name: cluster.image.clone(),
            flavor: cluster.flavor.clone(),
            tools: cluster.tools.clone(),
            root_password: cluster.root_password.clone(),
            tls: cluster.tls.is_some(),
        }
    }

    /// An image of the upstream layout, run with its defaults, tools not probed.
    pub fn upstream(name: &str) -> ClusterImage {
        ClusterImage {
            name: name.to_string(),
            flavor: Flavor::upstream(),
            tools: None,
            root_password: None,
            tls: false,
        }
    }
}

/// `initial-cluster-state`: bootstrap a new cluster, or join an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// Docker verbs on one member's container.
#[derive(Debug, Clone, Copy)]
enum ContainerVerb {
    Kill,
    Stop,
    Start,
    Pause,
    Resume,
}

impl ContainerVerb {
    fn word(self) -> &'static str {
        match self {
            ContainerVerb::Kill => "kill",
            ContainerVerb::Stop => "stop",
            ContainerVerb::Start => "start",
            ContainerVerb::Pause => "pause",
            ContainerVerb::Resume => "resume",
        }
    }
}

/// One command the drill ran, written as the equivalent command line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedCommand {
    /// `setup`, `fault`, `recovery` or `check`.
    pub phase: String,
    /// What the step does, in a few words.
    pub step: String,
    pub command: String,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub ok: bool,
}

/// The runtime state of one member.
#[derive(Clone)]
pub struct Member {
    pub spec: MemberSpec,
    pub host_port: u16,
    /// Fixed address on the peer network; every member's /etc/hosts lists all of them.
    pub ip: String,
    /// Bumped whenever the member gets a fresh data volume (wipe, restore).
    pub volume_generation: u32,
    /// The container exists (it may be stopped).
    pub has_container: bool,
    /// Frozen with `docker pause`.
    pub paused: bool,
    /// Cut off the peer network.
    pub partitioned: bool,
    pub client: MemberClient,
}

pub struct Cluster {
    pub docker: DockerRuntime,
    pub run_id: String,
    pub image: String,
    /// How the image runs etcd: binaries, data dir, uid.
    pub flavor: Flavor,
    /// What the image's tools can do (which one restores snapshots).
    pub tools: Option<ImageTools>,
    /// The root password the cluster is configured with (an image that turns auth on
    /// itself gets it in its environment).
    pub root_password: Option<RootPassword>,
    /// Set once authentication is on: every client then logs in as root.
    pub auth: Option<RootPassword>,
    /// The run's CA and certificates, when the cluster runs TLS.
    pub tls: Option<std::sync::Arc<ClusterTls>>,
    pub topology: Topology,
    /// Settings every member's server runs with.
    pub settings: ServerSettings,
    /// The network the members' client ports are published through.
    pub network: String,
    /// The internal network the members talk raft on; partitions cut members off it.
    pub peer_network: String,
    pub token: String,
    pub members: Vec<Member>,
    pub clock: Clock,
    pub phase: String,
    pub commands: Vec<RecordedCommand>,
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_local_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("127.0.0.1:0"))?;
    let port = listener.local_addr().map_err(Error::io("127.0.0.1:0"))?.port();
    Ok(port)
}

/// A new client port on 127.0.0.1 for `member`, and a client for it (over TLS with the
/// run's client certificate when `tls` is given; not logged in).
async fn published_client(member: &str, scheme: &str, tls: Option<&ClusterTls>) -> Result<(u16, MemberClient)> {
    let host_port = free_local_port()?;
    let endpoint = format!("{scheme}://127.0.0.1:{host_port}");
    let client = MemberClient::connect_as(member, &endpoint, None, tls).await?;
    Ok((host_port, client))
}

/// Creates the run's internal peer network on a free /24 and returns its first three
/// octets. The subnet is fixed so that members keep their addresses across restarts.
async fn create_peer_network(docker: &DockerRuntime, network: &str, run_id: &str) -> Result<String> {
    let start = u32::from_str_radix(run_id.get(..4).unwrap_or("0"), 16).unwrap_or(0);
    for attempt in 0..64u32 {
        let third = (start + attempt * 37) % 250 + 1;
        let prefix = format!("10.213.{third}");
        if docker
            .create_network(network, run_id, Some(&format!("{prefix}.0/24")), true)
            .await?
        {
            return Ok(prefix);
        }
    }
    Err(Error::Procedure {
        step: format!("create network {network}"),
        message: "every candidate subnet 10.213.x.0/24 overlaps a network in use; remove old networks with `etcd-drill clean`".into(),
    })
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The `docker run` line that creates the same container as `spec`. `files` are host files
/// (as shell words, e.g. `"$PWD/snapshot.db"`) mounted read-only at a path in the container.
pub fn docker_run_line(spec: &ContainerSpec, detach: bool, files: &[(&str, &str)]) -> String {
    let mut words: Vec<String> = vec!["docker".into()];
    // A second network is connected between create and start.
    let connect_later = spec.peer_network.as_ref().filter(|_| detach);
    match connect_later {
        Some(_) => words.push("create".into()),
        None => words.push(if detach { "run -d".into() } else { "run --rm".into() }),
    }
    words.push(format!("--name {}", spec.name));
    if let Some((network, alias)) = &spec.network {
        words.push(format!("--network {network} --network-alias {alias}"));
    } else if spec.isolated {
        words.push("--network none".into());
    }
    if let Some(h) = &spec.hostname {
        words.push(format!("--hostname {h}"));
    }
    if let Some(u) = &spec.user {
        words.push(format!("--user {u}"));
    }
    let mut entrypoint = spec.entrypoint.iter().flatten();
    if let Some(first) = entrypoint.next() {
        words.push(format!("--entrypoint {}", shell_quote(first)));
    }
    let entrypoint_rest: Vec<&String> = entrypoint.collect();
    for host in &spec.extra_hosts {
        words.push(format!("--add-host {host}"));
    }
    if let Some((port, host_port)) = spec.publish {
        words.push(format!("-p 127.0.0.1:{host_port}:{port}"));
    }
    for (volume, target) in &spec.volumes {
        words.push(format!("-v {volume}:{target}"));
    }
    for (host, target) in files {
        words.push(format!("-v {host}:{target}:ro"));
    }
    for (k, v) in &spec.env {
        words.push(format!("-e {}", shell_quote(&format!("{k}={v}"))));
    }
    words.push(spec.image.clone());
    words.extend(entrypoint_rest.into_iter().chain(&spec.cmd).map(|c| shell_quote(c)));
    let mut line = words.join(" ");
    if let Some(peer) = connect_later {
        let ip = peer.ipv4.as_ref().map(|ip| format!("--ip {ip} ")).unwrap_or_default();
        line.push_str(&format!(
            " && docker network connect {ip}--alias {} {} {} && docker start {}",
            peer.alias, peer.network, spec.name, spec.name
        ));
    }
    line
}

impl Cluster {
    /// The container of a member's current incarnation. Each fresh data volume (wipe,
    /// restore) is a new incarnation with its own container name, so the next container
    /// can be created while the old one is still being removed.
    pub fn container_name(&self, member: &str) -> String {
        let generation = self
            .members
            .iter()
            .find(|m| m.spec.name == member)
            .map(|m| m.volume_generation)
            .unwrap_or(0);
        match generation {
            0 => format!("etcd-drill-{}-{member}", self.run_id),
            g => format!("etcd-drill-{}-{member}-r{g}", self.run_id),
        }
    }

    pub fn volume_name(&self, member: &str, generation: u32) -> String {
        format!("etcd-drill-{}-{member}-data{generation}", self.run_id)
    }

    pub fn member(&self, name: &str) -> Result<&Member> {
        self.members
            .iter()
            .find(|m| m.spec.name == name)
            .ok_or_else(|| Error::InvalidArgument {
                argument: "member".into(),
                message: format!("no member named `{name}`"),
            })
    }

    pub fn member_mut(&mut self, name: &str) -> Result<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| m.spec.name == name)
            .ok_or_else(|| Error::InvalidArgument {
                argument: "member".into(),
                message: format!("no member named `{name}`"),
            })
    }

    pub fn clients(&self) -> Vec<MemberClient> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    pub fn endpoints(&self) -> Vec<(String, String)> {
        self.members
            .iter()
            .map(|m| (m.spec.name.clone(), m.client.endpoint.clone()))
            .collect()
    }

    /// Records a command that began at `started` and has just finished.
    pub fn record(&mut self, step: impl Into<String>, command: impl Into<String>, started: Instant, ok: bool) {
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record_span(step, command, started, duration_ms, ok);
    }

    /// Records a command that began at `started` and took `duration_ms`.
    pub fn record_span(
        &mut self,
        step: impl Into<String>,
        command: impl Into<String>,
        started: Instant,
        duration_ms: u64,
        ok: bool,
    ) {
        self.commands.push(RecordedCommand {
            phase: self.phase.clone(),
            step: step.into(),
            // No report may carry a password: mask it where commands are recorded.
            command: crate::shell::mask_secrets(&self.with_credentials(command.into())),
            at_ms: self.clock.at_ms(started),
            duration_ms,
            ok,
        });
    }

    /// Starts the topology: a network, a volume and a container per member, all labelled
    /// with the run id; then waits until every member answers a linearizable read.
    pub async fn create(
        docker: DockerRuntime,
        run_id: &str,
        image: &ClusterImage,
        topology: &Topology,
        settings: &ServerSettings,
        clock: Clock,
    ) -> Result<Cluster> {
        let network = format!("etcd-drill-{run_id}");
        let peer_network = format!("etcd-drill-{run_id}-peer");
        let started = Instant::now();
        docker.create_network(&network, run_id, None, false).await?;
        let subnet = create_peer_network(&docker, &peer_network, run_id).await?;
        let ip = |i: usize| format!("{subnet}.{}", 10 + i);
        let tls = match image.tls {
            true => {
                let addresses: Vec<(String, std::net::IpAddr)> = topology
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.name.clone(), ip(i).parse().unwrap_or([127, 0, 0, 1].into())))
                    .collect();
                Some(std::sync::Arc::new(ClusterTls::generate(&addresses)?))
            }
            false => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut members = Vec::new();
        for (i, spec) in topology.members.iter().enumerate() {
            let (host_port, client) = published_client(&spec.name, scheme, tls.as_deref()).await?;
            members.push(Member {
                spec: spec.clone(),
                host_port,
                ip: ip(i),
                volume_generation: 0,
                has_container: false,
                paused: false,
                partitioned: false,
                client,
            });
        }
        let mut cluster = Cluster {
            docker,
            run_id: run_id.to_string(),
            image: image.name.clone(),
            flavor: image.flavor.clone(),
            tools: image.tools.clone(),
            root_password: image.root_password.clone(),
            auth: None,
            tls,
            topology: topology.clone(),
            settings: settings.clone(),
            network: network.clone(),
            peer_network: peer_network.clone(),
            token: format!("etcd-drill-{run_id}"),
            members,
            clock,
            phase: "setup".into(),
            commands: Vec::new(),
        };
        cluster.record(
            "create the cluster network",
            format!("docker network create {network} && docker network create --internal --subnet {subnet}.0/24 {peer_network}"),
            started,
            true,
        );
        let names = topology.names();
        for name in &names {
            let started = Instant::now();
            let volume = cluster.volume_name(name, 0);
            cluster.docker.create_volume(&volume, run_id, name).await?;
            cluster.record(
                format!("create {name}'s data volume"),
                format!("docker volume create {volume}"),
                started,
                true,
            );
        }
        cluster.launch_members(&names, ClusterState::New).await?;
        cluster.wait_healthy(&names, Duration::from_secs(60)).await?;
        if let Some(password) = image.root_password.clone() {
            cluster.enable_auth(&password).await?;
        }
        Ok(cluster)
    }

    /// Gives every member a second identity beside its current one, for a restore that
    /// builds a new cluster while the old one still stands: a new peer network (so new
    /// addresses, and no raft traffic between the two), a new client port on 127.0.0.1 with
    /// a client for it, and a new data volume generation (so new container names). The old
    /// containers are left as they are; returns their names.
    /// With auth on, the new clients log in once the new members serve
    /// ([`Cluster::log_in_clients`]).
    pub async fn move_beside(&mut self) -> Result<Vec<String>> {
        let old_containers: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.has_container)
            .map(|m| self.container_name(&m.spec.name))
            .collect();
        let started = Instant::now();
        let network = format!("{}-beside-{}", self.peer_network, self.clock.now_ms());
        let subnet = create_peer_network(&self.docker, &network, &self.run_id).await?;
        self.record(
            "create the new cluster's peer network",
            format!("docker network create --internal --subnet {subnet}.0/24 {network}"),
            started,
            true,
        );
        let (scheme, tls) = (self.scheme(), self.tls.clone());
        for (i, member) in self.members.iter_mut().enumerate() {
            (member.host_port, member.client) = published_client(&member.spec.name, scheme, tls.as_deref()).await?;
            member.ip = format!("{subnet}.{}", 10 + i);
            member.volume_generation += 1;
            member.has_container = false;
            member.paused = false;
            member.partitioned = false;
        }
        self.peer_network = network;
        Ok(old_containers)
    }

    /// The container of `member`, configured through etcd's `ETCD_*` environment.
    pub fn member_container_spec(&self, member: &Member, state: ClusterState) -> ContainerSpec {
        self.member_container_spec_with(member, state, &self.initial_cluster())
    }

    /// `http`, or `https` when the cluster runs TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The `--initial-cluster` of the whole topology, with the cluster's scheme.
    pub fn initial_cluster(&self) -> String {
        self.topology.initial_cluster_in(self.scheme())
    }

    /// Creates a member's container and, with TLS on, puts its certificates into it.
    pub async fn create_member_container(&self, spec: &ContainerSpec) -> Result<()> {
        self.docker.create_container(spec, &self.run_id).await?;
        if let Some(tls) = &self.tls {
            let member = spec.hostname.as_deref().unwrap_or_default();
            self.docker
                .write_archive(&spec.name, "/", tls.member_archive(member)?)
                .await?;
        }
        Ok(())
    }

    /// The container of `member`, bootstrapping from `initial_cluster` (for a member that
    /// joins, the list `member add` printed).
    pub fn member_container_spec_with(
        &self,
        member: &Member,
        state: ClusterState,
        initial_cluster: &str,
    ) -> ContainerSpec {
        let name = &member.spec.name;
        self.flavor.member_container(&MemberLaunch {
            image: &self.image,
            container: self.container_name(name),
            member: &member.spec,
            ip: &member.ip,
            host_port: member.host_port,
            volume: self.volume_name(name, member.volume_generation),
            network: &self.network,
            peer_network: &self.peer_network,
            // Every peer's name resolves from /etc/hosts. Through Docker's DNS, the names
            // of dead peers are forwarded to outside resolvers, and a member that keeps
            // asking for them (any survivor of a quorum loss) takes seconds to stop.
            hosts: self
                .members
                .iter()
                .map(|m| format!("{}:{}", m.spec.name, m.ip))
                .collect(),
            initial_cluster,
            token: &self.token,
            state,
            root_password: self.root_password.as_ref().map(RootPassword::expose),
            tls: self.tls.is_some(),
            settings: &self.settings,
        })
    }

    /// Creates and starts the containers of `names` (concurrently), on their current volumes.
    pub async fn launch_members(&mut self, names: &[String], state: ClusterState) -> Result<()> {
        let started = Instant::now();
        let specs = self.create_members(names, state).await?;
        self.start_members(&specs, state, started).await
    }

    /// Creates (without starting) the containers of `names`, concurrently.
    pub async fn create_members(&self, names: &[String], state: ClusterState) -> Result<Vec<ContainerSpec>> {
        let specs: Vec<ContainerSpec> = names
            .iter()
            .map(|n| self.member(n).map(|m| self.member_container_spec(m, state)))
            .collect::<Result<_>>()?;
        let created = join_all(specs.iter().map(|spec| self.create_member_container(spec))).await;
        created.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(specs)
    }

    /// Starts containers made by [`Cluster::create_members`], concurrently, and records each
    /// as the `docker run` an operator would type.
    pub async fn start_members(
        &mut self,
        specs: &[ContainerSpec],
        state: ClusterState,
        started: Instant,
    ) -> Result<()> {
        let results = join_all(specs.iter().map(|spec| self.docker.start(&spec.name))).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        for (spec, result) in specs.iter().zip(results) {
            self.record_member_start(spec, state, started, duration_ms, result.is_ok());
            result?;
            let member = spec.network.as_ref().map(|(_, a)| a.clone()).unwrap_or_default();
            self.member_mut(&member)?.has_container = true;
        }
        Ok(())
    }

    /// Records a member's start as the `docker run` that creates and starts it.
    pub fn record_member_start(
        &mut self,
        spec: &ContainerSpec,
        state: ClusterState,
        started: Instant,
        duration_ms: u64,
        ok: bool,
    ) {
        let member = spec.network.as_ref().map(|(_, a)| a.as_str()).unwrap_or_default();
        let step = format!("start {member} (initial-cluster-state={})", state.as_str());
        self.record_span(step, docker_run_line(spec, true, &[]), started, duration_ms, ok);
    }

    /// Damages a file in the member's data dir, stopping the member first if it runs.
    pub async fn corrupt(&mut self, name: &str, damage: Damage) -> Result<()> {
        let container = self.container_name(name);
        if self.docker.is_running(&container).await? {
            self.stop(name).await?;
        }
        let started = Instant::now();
        let data_dir = self.flavor.data_dir;
        let newest = match damage.file {
            DamagedFile::Db => None,
            DamagedFile::Wal => Some(("wal", ".wal", "")),
            DamagedFile::Snap => Some((
                "snap",
                ".snap",
                "; etcd writes one every snapshot-count applied entries (100000 by default): lower it with [etcd] snapshot_count",
            )),
        };
        let (dir, file_name) = match newest {
            None => (format!("{data_dir}/member/snap"), "db".to_string()),
            Some((sub_dir, suffix, hint)) => {
                // File names sort by sequence and index, so the greatest is the newest.
                let dir = format!("{data_dir}/member/{sub_dir}");
                let listing = self.docker.read_archive(&container, &dir).await?;
                let newest = tar_file_names(&listing)
                    .map_err(Error::io(&dir))?
                    .into_iter()
                    .filter(|f| f.ends_with(suffix))
                    .max()
                    .ok_or_else(|| Error::Procedure {
                        step: format!("corrupt {name}'s {}", damage.file.as_str()),
                        message: format!("no {suffix} file in {dir}{hint}"),
                    })?;
                let file = newest.rsplit('/').next().unwrap_or(&newest).to_string();
                (dir, file)
            }
        };
        let path = format!("{dir}/{file_name}");
        let mut bytes = self.docker.read_file(&container, &path).await?;
        if !damage_bytes(&mut bytes, damage) {
            return Err(Error::Procedure {
                step: format!("corrupt {path} of {name}"),
                message: format!("the file has only {} bytes: nothing to damage", bytes.len()),
            });
        }
        let archive = tar_archive(&[(file_name.as_str(), &bytes)]).map_err(Error::io(&path))?;
        let result = self.docker.write_archive(&container, &dir, archive).await;
        let how = match damage.how {
            DamageKind::Flip => format!("flip bytes in {file_name}"),
            DamageKind::Truncate => format!("truncate -s {} {file_name}", bytes.len()),
        };
        self.record(
            format!("corrupt {name}'s {} ({})", damage.file.as_str(), damage.how.as_str()),
            format!("docker cp {container}:{path} . && {how} && docker cp {file_name} {container}:{dir}/"),
            started,
            result.is_ok(),
        );
        result
    }

    /// The runbook's "purge member persistent state": with the member stopped, keep a copy
    /// of `member/snap` in `backup_dir`, empty it, and start the member again with
    /// `initial-cluster-state=existing`, so it rebuilds from its WAL and the leader. The
    /// emptied data dir goes onto a fresh volume (a new incarnation of the member).
    pub async fn purge_member(&mut self, name: &str, backup_dir: &std::path::Path) -> Result<()> {
        let container = self.container_name(name);
        if self.docker.is_running(&container).await? {
            self.stop(name).await?;
        } else if let Some(code) = self.docker.exit_code(&container).await? {
            // The evidence that the member could not live with its data.
            let started = Instant::now();
            let (_, stderr) = self.docker.logs(&container).await?;
            let last = stderr
                .lines()
                .rev()
                .find(|l| l.contains("panic") || l.contains("fatal"))
                .unwrap_or_default();
            let last: String = last.chars().take(300).collect();
            self.record(
                format!("{name} is down: it exited with code {code}"),
                format!("docker logs {container} 2>&1 | tail -n 20   # {last}"),
                started,
                true,
            );
        }
        let started = Instant::now();
        let (data_dir, data_mount) = (self.flavor.data_dir, self.flavor.data_mount);
        let snap_dir = format!("{data_dir}/member/snap");
        let backup = backup_dir.join(format!("{name}-member-snap.tar"));
        let saved = async {
            let archive = self.docker.read_archive(&container, &snap_dir).await?;
            std::fs::write(&backup, &archive).map_err(Error::io(&backup))?;
            tar_file_names(&archive).map_err(Error::io(&backup))
        }
        .await;
        // What etcd left there is evidence: a snapshot file it found damaged is renamed
        // `*.snap.broken` and set aside.
        let held = match &saved {
            Ok(files) => format!(
                "   # holds {}",
                files
                    .iter()
                    .filter(|f| !f.ends_with('/'))
                    .map(|f| f.rsplit('/').next().unwrap_or(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(_) => String::new(),
        };
        let command = format!("docker cp {container}:{snap_dir} - > {name}-member-snap.tar{held}");
        self.record(format!("back up {name}'s member/snap"), command, started, saved.is_ok());
        saved?;

        let started = Instant::now();
        let data = self.docker.read_archive(&container, data_dir).await?;
        let purged = tar_without(&data, "data/member/snap/").map_err(Error::io(data_dir))?;
        let old_volume = self.volume_name(name, self.member(name)?.volume_generation);
        self.docker.remove_container(&container).await?;
        let member = self.member_mut(name)?;
        member.has_container = false;
        member.volume_generation += 1;
        let generation = member.volume_generation;
        let fresh = self.volume_name(name, generation);
        self.docker.create_volume(&fresh, &self.run_id, name).await?;
        let spec = self.member_container_spec(self.member(name)?, ClusterState::Existing);
        self.create_member_container(&spec).await?;
        self.member_mut(name)?.has_container = true;
        let copied = self.docker.write_archive(&spec.name, data_mount, purged).await;
        self.record(
            format!("empty {name}'s member/snap"),
            format!(
                "docker cp {container}:{data_dir} {name}-data && rm -rf {name}-data/member/snap/* \\\n  && docker rm {container} && docker volume create {fresh} && docker create ... && docker cp {name}-data {}:{data_mount}/",
                spec.name
            ),
            started,
            copied.is_ok(),
        );
        copied?;
        let started = Instant::now();
        let result = self.docker.start(&spec.name).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record_member_start(&spec, ClusterState::Existing, started, duration_ms, result.is_ok());
        result?;
        self.docker.remove_volume(&old_volume).await?;
        self.wait_healthy(&[name.to_string()], Duration::from_secs(60)).await
    }

    /// SIGKILLs several members at once, as when a host dies.
    pub async fn kill_all(&mut self, names: &[String]) -> Result<()> {
        let started = Instant::now();
        let containers: Vec<String> = names.iter().map(|n| self.container_name(n)).collect();
        let results = join_all(containers.iter().map(|c| self.docker.kill(c, "SIGKILL"))).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        for ((name, container), result) in names.iter().zip(&containers).zip(&results) {
            let command = format!("docker kill --signal SIGKILL {container}");
            self.record_span(format!("kill {name}"), command, started, duration_ms, result.is_ok());
        }
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Runs one container-level verb on a member and records it as its docker command.
    async fn container_verb(&mut self, name: &str, verb: ContainerVerb) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let (result, command) = match verb {
            ContainerVerb::Kill => (
                self.docker.kill(&container, "SIGKILL").await,
                format!("docker kill --signal SIGKILL {container}"),
            ),
            ContainerVerb::Stop => (
                self.docker.stop(&container, 10).await,
                format!("docker stop --time 10 {container}"),
            ),
            ContainerVerb::Start => (self.docker.start(&container).await, format!("docker start {container}")),
            ContainerVerb::Pause => (self.docker.pause(&container).await, format!("docker pause {container}")),
            ContainerVerb::Resume => (
                self.docker.unpause(&container).await,
                format!("docker unpause {container}"),
            ),
        };
        self.record(format!("{} {name}", verb.word()), command, started, result.is_ok());
        result
    }

    pub async fn kill(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Kill).await
    }

    pub async fn stop(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Stop).await
    }

    pub async fn start(&mut self, name: &str) -> Result<()> {
        if !self.member(name)?.has_container {
            return Err(Error::Procedure {
                step: format!("start {name}"),
                message: format!(
                    "{name} lost its data volume; it cannot rejoin under its old identity (replace the member instead)"
                ),
            });
        }
        self.container_verb(name, ContainerVerb::Start).await
    }

    pub async fn pause(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Pause).await?;
        self.member_mut(name)?.paused = true;
        Ok(())
    }

    pub async fn resume(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Resume).await?;
        self.member_mut(name)?.paused = false;
        Ok(())
    }

    /// Cuts the member off the peer network; its client port stays reachable.
    pub async fn partition(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let result = self.docker.disconnect_network(&container, &self.peer_network).await;
        let command = format!("docker network disconnect --force {} {container}", self.peer_network);
        self.record(format!("partition {name}"), command, started, result.is_ok());
        result?;
        self.member_mut(name)?.partitioned = true;
        Ok(())
    }

    /// Reconnects a partitioned member to the peer network at its old address.
    pub async fn heal(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let member = self.member(name)?;
        let attachment = NetworkAttachment {
            network: self.peer_network.clone(),
            alias: name.to_string(),
            ipv4: Some(member.ip.clone()),
        };
        let result = self.docker.connect_network(&container, &attachment).await;
        let command = format!(
            "docker network connect --ip {} --alias {name} {} {container}",
            member.ip, self.peer_network
        );
        self.record(format!("heal {name}"), command, started, result.is_ok());
        result?;
        self.member_mut(name)?.partitioned = false;
        Ok(())
    }

    /// Destroys the member's container and data volume, and prepares an empty volume for
    /// whatever brings the member back.
    pub async fn wipe(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let generation = self.member(name)?.volume_generation;
        let volume = self.volume_name(name, generation);
        let removed = async {
            self.docker.remove_container(&container).await?;
            self.docker.remove_volume(&volume).await
        }
        .await;
        self.record(
            format!("wipe {name}'s data"),
            format!("docker rm -f {container} && docker volume rm {volume}"),
            started,
            removed.is_ok(),
        );
        removed?;
        let member = self.member_mut(name)?;
        member.has_container = false;
        member.paused = false;
        member.partitioned = false;
        member.volume_generation += 1;
        let fresh = self.volume_name(name, generation + 1);
        self.docker.create_volume(&fresh, &self.run_id, name).await
    }

    /// Names of the members whose container is running, in topology order.
    pub async fn running(&self) -> Result<Vec<String>> {
        let containers: Vec<String> = self.members.iter().map(|m| self.container_name(&m.spec.name)).collect();
        let checks = join_all(containers.iter().map(|c| self.docker.is_running(c))).await;
        let mut running = Vec::new();
        for (m, r) in self.members.iter().zip(checks) {
            if r? {
                running.push(m.spec.name.clone());
            }
        }
        Ok(running)
    }

    /// The leader's name, as the running members report it (None without quorum).
    pub async fn leader(&self) -> Option<String> {
        let timeout = Duration::from_millis(800);
        let statuses = join_all(self.members.iter().map(|m| m.client.status(timeout))).await;
        let leader_id = statuses.iter().flatten().map(|s| s.leader_id).find(|id| *id != 0)?;
        for m in &self.members {
            if let Ok(list) = m.client.member_list(timeout).await {
                return list.into_iter().find(|l| l.id == leader_id).map(|l| l.name);
            }
        }
        None
    }

    /// The first member other than `except` that answers a linearizable read.
    pub async fn healthy_member(&self, except: &[String]) -> Result<MemberClient> {
        for m in self.members.iter().filter(|m| !except.contains(&m.spec.name)) {
            if m.client.is_healthy(Duration::from_millis(800)).await {
                return Ok(m.client.clone());
            }
        }
        Err(Error::Procedure {
            step: "find a healthy member".into(),
            message: format!("no member other than {} answers a linearizable read", except.join(", ")),
        })
    }

    /// The member-replacement runbook for one member whose data is gone (or untrusted):
    /// `member remove`, wipe its data, `member add`, start it with
    /// `initial-cluster-state=existing` and the member list `member add` printed, and wait
    /// until it serves.
    pub async fn replace_member(&mut self, name: &str) -> Result<()> {
        self.remove_member(name).await?;
        self.rejoin_member(name).await
    }

    /// `member remove` for `name`, if the cluster still lists it.
    pub async fn remove_member(&mut self, name: &str) -> Result<()> {
        let timeout = Duration::from_secs(10);
        let via = self.healthy_member(&[name.to_string()]).await?;
        let peer_url = self.member(name)?.spec.peer_url_in(self.scheme());
        let started = Instant::now();
        let listed = via.member_list(timeout).await?;
        let Some(old) = listed
            .iter()
            .find(|m| m.name == name || m.peer_urls.contains(&peer_url))
        else {
            return Ok(());
        };
        let removed = via.member_remove(old.id, timeout).await;
        let command = format!("etcdctl --endpoints={} member remove {:x}", via.endpoint, old.id);
        self.record(
            format!("remove {name} from the cluster"),
            command,
            started,
            removed.is_ok(),
        );
        removed
    }

    /// Wipes `name`'s data, adds it as a new member and starts it with
    /// `initial-cluster-state=existing`. etcd refuses `member add` while any voting member
    /// has been connected for less than its health interval (5 s), so a refusal for an
    /// unhealthy cluster is retried for a while.
    pub async fn rejoin_member(&mut self, name: &str) -> Result<()> {
        let timeout = Duration::from_secs(10);
        self.wipe(name).await?;
        let via = self.healthy_member(&[name.to_string()]).await?;
        let peer_url = self.member(name)?.spec.peer_url_in(self.scheme());
        let started = Instant::now();
        let give_up = started + Duration::from_secs(30);
        let added = loop {
            match via.member_add(&peer_url, timeout).await {
                Err(Error::Etcd { message, .. })
                    if message.contains("unhealthy cluster") && Instant::now() < give_up =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other,
            }
        };
        let command = format!(
            "etcdctl --endpoints={} member add {name} --peer-urls={peer_url}",
            via.endpoint
        );
        self.record(
            format!("add {name} back as a new member"),
            command,
            started,
            added.is_ok(),
        );
        let (_, members) = added?;
        let initial_cluster = members
            .iter()
            .map(|m| {
                let member_name = if m.name.is_empty() { name } else { m.name.as_str() };
                format!("{member_name}={}", m.peer_urls.first().cloned().unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(",");

        let started = Instant::now();
        let spec = self.member_container_spec_with(self.member(name)?, ClusterState::Existing, &initial_cluster);
        self.create_member_container(&spec).await?;
        self.member_mut(name)?.has_container = true;
        let result = self.docker.start(&spec.name).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record_member_start(&spec, ClusterState::Existing, started, duration_ms, result.is_ok());
        result?;
        self.wait_healthy(&[name.to_string()], Duration::from_secs(60)).await
    }

    /// Stops and removes the member's container and starts a new one on the same data
    /// volume, with `extra_env` added to its configuration.
    pub async fn recreate_member(&mut self, name: &str, extra_env: &[(&str, &str)]) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let removed = async {
            self.docker.stop(&container, 10).await?;
            self.docker.remove_container(&container).await
        }
        .await;
        self.record(
            format!("stop {name}"),
            format!("docker stop {container} && docker rm {container}"),
            started,
            removed.is_ok(),
        );
        removed?;
        self.member_mut(name)?.has_container = false;
        let started = Instant::now();
        let mut spec = self.member_container_spec(self.member(name)?, ClusterState::Existing);
        spec.env
            .extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.create_member_container(&spec).await?;
        self.member_mut(name)?.has_container = true;
        let result = self.docker.start(&spec.name).await;
        self.record_member_start(
            &spec,
            ClusterState::Existing,
            started,
            started.elapsed().as_millis() as u64,
            result.is_ok(),
        );
        result
    }

    /// Waits up to `timeout` for a leader among `running` members.
    pub async fn wait_for_leader(&self, running: &[String], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await.filter(|l| running.contains(l)) {
                return Some(leader);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Tries a put on every running member, repeatedly, for up to `window`.
    /// Returns the time of the first success, or None when no member accepted a write.
    pub async fn probe_writable(&self, window: Duration, put_timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + window;
        let key = format!("/etcd-drill/{}/probe", self.run_id);
        loop {
            let attempts = self.members.iter().map(|m| {
                let key = key.clone();
                async move { m.client.put(key, "probe".into(), put_timeout).await.ok() }
            });
            if join_all(attempts).await.iter().any(|r| r.is_some()) {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every member in `names` answers a linearizable read.
    pub async fn wait_healthy(&self, names: &[String], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let clients: Vec<&MemberClient> = names
                .iter()
                .map(|n| self.member(n).map(|m| &m.client))
                .collect::<Result<_>>()?;
            let health = join_all(clients.iter().map(|c| c.is_healthy(Duration::from_millis(500)))).await;
            if health.iter().all(|h| *h) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let sick: Vec<&str> = names
                    .iter()
                    .zip(&health)
                    .filter(|(_, h)| !**h)
                    .map(|(n, _)| n.as_str())
                    .collect();
                return Err(Error::Timeout {
                    what: format!("members {} to become healthy", sick.join(", ")),
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("ETCD_NAME=etcd1"), "ETCD_NAME=etcd1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn docker_run_line_carries_every_setting() {
        let spec = ContainerSpec {
            name: "c".into(),
            image: "img:1".into(),
            cmd: vec!["/usr/local/bin/etcd".into()],
            env: vec![("ETCD_NAME".into(), "etcd1".into())],
            network: Some(("net".into(), "etcd1".into())),
            peer_network: Some(NetworkAttachment {
                network: "peers".into(),
                alias: "etcd1".into(),
                ipv4: Some("10.0.0.5".into()),
            }),
            volumes: vec![("vol".into(), "/var/lib/etcd".into())],
            publish: Some((2379, 40000)),
            ..ContainerSpec::default()
        };
        assert_eq!(
            docker_run_line(&spec, true, &[]),
            "docker create --name c --network net --network-alias etcd1 -p 127.0.0.1:40000:2379 \
             -v vol:/var/lib/etcd -e ETCD_NAME=etcd1 img:1 /usr/local/bin/etcd \
             && docker network connect --ip 10.0.0.5 --alias etcd1 peers c && docker start c"
        );
    }
}
