//! A running cluster of one drill: its members (containers, volumes, clients, addresses),
//! the queries and waits on them, and the files that act on it: `containers` (member
//! container specs and launches), `verbs` (the Docker-level verbs faults use), `membership`
//! (the runbook's member remove/add/recreate/purge steps), `commands` (every step recorded
//! as the command an operator would type), `netsplit` and `host_outage` (faults of whole
//! hosts) and `image` (what the cluster runs).

mod auth;
pub mod backend;
mod commands;
mod containers;
pub mod damage;
pub mod flavor;
mod host_outage;
mod image;
pub mod lagging;
mod membership;
mod netsplit;
mod peer_traffic;
pub mod settle;
pub mod snapshot;
pub mod tools;
mod verbs;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::clock::Clock;
use crate::docker::hosts::HostRuntimes;
use crate::docker::runtime::DockerRuntime;
use crate::error::{Error, Result};
use crate::etcd::security::RootPassword;
use crate::etcd::tls::ClusterTls;
use crate::etcd::MemberClient;
use crate::readiness::{Seen, Wait};
pub use crate::topology::ClusterState;
use crate::topology::{MemberSpec, NetworkMode, ServerSettings, Topology};

pub use commands::{CommandSink, RecordedCommand};
pub use image::ClusterImage;
pub use membership::Rejoin;

/// How long the waits give the start-up scripts of an image that has them to start etcd
/// for good. Bitnami's first member, started on data with authentication on, spends about
/// a minute retrying `etcdctl auth status` without credentials before it does.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

/// With host networking, a cluster restored beside the old one listens on the old ports
/// plus this (2479/2480, 3479/3480, 4479/4480), on the same hosts.
pub const BESIDE_PORT_OFFSET: u16 = 100;

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
    /// Its peer traffic degraded by the network-fault tool in its namespace (then also
    /// `partitioned`, so that a repair heals it).
    pub peer_degraded: bool,
    /// Held cut off until only a snapshot can catch it up: its heal checks that it got one,
    /// a snapshot line more in its log than the count here, taken before the hold.
    pub awaits_snapshot: Option<usize>,
    /// The image this member runs when it is not the cluster's (in a rolling upgrade).
    pub image: Option<String>,
    pub client: MemberClient,
}

pub struct Cluster {
    /// The harness's own daemon: run-wide objects (bridge networks, tool containers that
    /// only read and write files).
    pub docker: DockerRuntime,
    /// The daemon of each host; a member's container and volume live on its host's.
    pub hosts: HostRuntimes,
    pub run_id: String,
    /// What the cluster runs: the image, its flavor and tools, the root password it is
    /// configured with (an image that turns auth on itself gets it in its environment).
    pub image: ClusterImage,
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
    /// Where every step's command goes as it finishes.
    pub commands: CommandSink,
    /// Hosts a `host-down` took down and no `host-up` brought back yet.
    pub down_hosts: Vec<String>,
}

/// Why etcd stopped, from a member's log: the cause (the first line logged at error level;
/// else the first warning named "server error", which is how etcd reports that its peers
/// removed it; else the first warning carrying an error) and the fatal line or panic it
/// ended with, each as `msg: error` when the line is etcd's JSON, cut to 300 characters.
pub fn fatal_log_line(log: &str) -> Option<String> {
    let parsed: Vec<(&str, Option<serde_json::Value>)> =
        log.lines().map(|l| (l, serde_json::from_str(l).ok())).collect();
    let text = |v: &Option<serde_json::Value>, key: &str| -> Option<String> {
        v.as_ref()?.get(key)?.as_str().map(String::from)
    };
    let short = |(line, v): &(&str, Option<serde_json::Value>)| -> String {
        let shown = match (text(v, "msg"), text(v, "error")) {
            (Some(msg), Some(error)) => format!("{msg}: {error}"),
            (Some(msg), None) => msg,
            _ => line.to_string(),
        };
        shown.chars().take(300).collect()
    };
    let level = |v: &Option<serde_json::Value>| text(v, "level").unwrap_or_default();
    let cause = parsed
        .iter()
        .find(|(_, v)| level(v) == "error")
        .or_else(|| {
            parsed
                .iter()
                .find(|(_, v)| level(v) == "warn" && text(v, "msg").as_deref() == Some("server error"))
        })
        .or_else(|| {
            parsed
                .iter()
                .find(|(_, v)| level(v) == "warn" && text(v, "error").is_some())
        });
    let end = parsed
        .iter()
        .rev()
        .find(|(line, v)| level(v) == "fatal" || level(v) == "panic" || (v.is_none() && line.contains("panic")));
    match (cause, end) {
        (Some(cause), Some(end)) => Some(format!("{}; then {}", short(cause), short(end))),
        (Some(only), None) | (None, Some(only)) => Some(short(only)),
        (None, None) => None,
    }
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

    /// `command` as run on `member`'s host: prefixed with `DOCKER_HOST=...` when that host
    /// has a daemon of its own.
    pub fn on_host(&self, member: &str, command: String) -> String {
        match self.topology.member(member) {
            Some(m) => self.on_host_named(&m.host, command),
            None => command,
        }
    }

    /// `command` as run on host `host` (see [`Cluster::on_host`]): every `docker` in it
    /// gets the prefix.
    pub fn on_host_named(&self, host: &str, command: String) -> String {
        let prefix = self.topology.host(host).map(|h| h.docker_prefix()).unwrap_or_default();
        crate::docker::shell::on_daemon(&prefix, &command)
    }

    /// Whether `member`'s host has a Docker daemon of its own (files of this machine
    /// cannot be bound into its containers).
    pub fn on_own_daemon(&self, member: &str) -> bool {
        self.topology
            .member(member)
            .and_then(|m| self.topology.host(&m.host))
            .is_some_and(|h| h.docker.is_some())
    }

    /// `command` for a list of member containers or volumes, once per host that holds some
    /// (each with its `DOCKER_HOST=...`), joined by `&&`: `command` gets the names
    /// joined by spaces.
    pub fn on_hosts_of(&self, objects: &[String], command: impl Fn(&str) -> String) -> String {
        let prefix_of = |object: &String| {
            self.member_of_object(object)
                .and_then(|m| self.topology.host(&m.spec.host))
                .map(|h| h.docker_prefix())
                .unwrap_or_default()
        };
        if objects.is_empty() {
            return command("");
        }
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for object in objects {
            let prefix = prefix_of(object);
            match groups.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, names)) => names.push(object),
                None => groups.push((prefix, vec![object])),
            }
        }
        groups
            .iter()
            .map(|(prefix, names)| crate::docker::shell::on_daemon(prefix, &command(&names.join(" "))))
            .collect::<Vec<_>>()
            .join(" && ")
    }

    /// The daemon holding a member's container or volume, found by its name
    /// (`etcd-drill-<run>-<member>[-...]`); the harness's own for any other object.
    pub fn docker_of_object(&self, object: &str) -> &DockerRuntime {
        self.member_of_object(object)
            .map(|m| self.docker_of(&m.spec.name))
            .unwrap_or(&self.docker)
    }

    /// The member a container or volume of the run belongs to, by its name
    /// (`etcd-drill-<run>-<member>[-...]`).
    fn member_of_object(&self, object: &str) -> Option<&Member> {
        let rest = object.strip_prefix(&format!("etcd-drill-{}-", self.run_id))?;
        self.members.iter().find(|m| {
            let name = m.spec.name.as_str();
            rest == name || rest.strip_prefix(name).is_some_and(|tail| tail.starts_with('-'))
        })
    }

    /// The daemon `member` runs on (its host's).
    pub fn docker_of(&self, member: &str) -> &DockerRuntime {
        let host = self
            .topology
            .member(member)
            .map(|m| m.host.as_str())
            .unwrap_or_default();
        self.hosts.of(host)
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

    /// Starts the topology: a network, a volume and a container per member, all labelled
    /// with the run id; then waits until every member answers a linearizable read.
    pub async fn create(
        hosts: HostRuntimes,
        run_id: &str,
        image: &ClusterImage,
        topology: &Topology,
        settings: &ServerSettings,
        clock: Clock,
        commands: CommandSink,
    ) -> Result<Cluster> {
        let docker = hosts.home().clone();
        let host_networking = topology.network_mode() == NetworkMode::Host;
        let network = format!("etcd-drill-{run_id}");
        let peer_network = format!("etcd-drill-{run_id}-peer");
        let started = Instant::now();
        // With host networking the members are reached on their hosts' addresses: no
        // network of the run's own.
        let subnet = match host_networking {
            true => String::new(),
            false => {
                docker.create_network(&network, run_id, None, false).await?;
                create_peer_network(&docker, &peer_network, run_id).await?
            }
        };
        let ip = |i: usize| match host_networking {
            true => topology.members[i].address.clone().unwrap_or_default(),
            false => format!("{subnet}.{}", 10 + i),
        };
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
            let (host_port, client) = match host_networking {
                true => (
                    spec.client_port,
                    MemberClient::connect_as(&spec.name, &spec.client_url_in(scheme), None, tls.as_deref()).await?,
                ),
                false => published_client(&spec.name, scheme, tls.as_deref()).await?,
            };
            members.push(Member {
                spec: spec.clone(),
                host_port,
                ip: ip(i),
                volume_generation: 0,
                has_container: false,
                paused: false,
                partitioned: false,
                peer_degraded: false,
                awaits_snapshot: None,
                image: None,
                client,
            });
        }
        let mut cluster = Cluster {
            docker,
            hosts,
            run_id: run_id.to_string(),
            image: image.clone(),
            auth: None,
            tls,
            topology: topology.clone(),
            settings: settings.clone(),
            network: network.clone(),
            peer_network: peer_network.clone(),
            token: format!("etcd-drill-{run_id}"),
            members,
            clock,
            commands,
            down_hosts: Vec::new(),
        };
        if !host_networking {
            cluster.record(
                "create the cluster network",
                format!("docker network create {network} && docker network create --internal --subnet {subnet}.0/24 {peer_network}"),
                started,
                true,
            );
        }
        let names = topology.names();
        for name in &names {
            let started = Instant::now();
            let volume = cluster.volume_name(name, 0);
            cluster.docker_of(name).create_volume(&volume, run_id, name).await?;
            cluster.record(
                format!("create {name}'s data volume"),
                cluster.on_host(name, format!("docker volume create {volume}")),
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
    /// containers are left as they are; returns their names. With host networking there
    /// is no network to add: the new members take ports of their own on the same hosts
    /// ([`BESIDE_PORT_OFFSET`]).
    /// With auth on, the new clients log in once the new members serve
    /// ([`Cluster::log_in_clients`]).
    pub async fn move_beside(&mut self) -> Result<Vec<String>> {
        let old_containers: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.has_container)
            .map(|m| self.container_name(&m.spec.name))
            .collect();
        let (scheme, tls) = (self.scheme(), self.tls.clone());
        if self.topology.network_mode() == NetworkMode::Host {
            // On the hosts' own networks: the same addresses, ports of their own.
            for (spec, member) in self.topology.members.iter_mut().zip(self.members.iter_mut()) {
                spec.client_port += BESIDE_PORT_OFFSET;
                spec.peer_port += BESIDE_PORT_OFFSET;
                member.spec = spec.clone();
                member.host_port = spec.client_port;
                member.client =
                    MemberClient::connect_as(&spec.name, &spec.client_url_in(scheme), None, tls.as_deref()).await?;
            }
        } else {
            let started = Instant::now();
            let network = format!("{}-beside-{}", self.peer_network, self.clock.now_ms());
            let subnet = create_peer_network(&self.docker, &network, &self.run_id).await?;
            self.record(
                "create the new cluster's peer network",
                format!("docker network create --internal --subnet {subnet}.0/24 {network}"),
                started,
                true,
            );
            for (i, member) in self.members.iter_mut().enumerate() {
                (member.host_port, member.client) = published_client(&member.spec.name, scheme, tls.as_deref()).await?;
                member.ip = format!("{subnet}.{}", 10 + i);
            }
            self.peer_network = network;
        }
        for member in self.members.iter_mut() {
            member.volume_generation += 1;
            member.has_container = false;
            member.paused = false;
            member.partitioned = false;
        }
        Ok(old_containers)
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

    /// Names of the members whose container is running, in topology order.
    pub async fn running(&self) -> Result<Vec<String>> {
        let containers: Vec<String> = self.members.iter().map(|m| self.container_name(&m.spec.name)).collect();
        // Nothing runs on a downed host, and its daemon is not asked.
        let checks = join_all(self.members.iter().zip(&containers).map(|(m, c)| async move {
            match self.down_hosts.contains(&m.spec.host) {
                true => Ok(false),
                false => self.docker_of(&m.spec.name).is_running(c).await,
            }
        }))
        .await;
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

    /// Waits up to `timeout` for a leader among `running` members.
    pub async fn wait_for_leader(&self, running: &[String], timeout: Duration) -> Option<String> {
        Wait::new("a running leader", Duration::from_millis(100), timeout)
            .until_some(|| async { self.leader().await.filter(|l| running.contains(l)) })
            .await
    }

    /// Tries a put on every running member, repeatedly, for up to `window`.
    /// Returns the time of the first success, or None when no member accepted a write.
    pub async fn probe_writable(&self, window: Duration, put_timeout: Duration) -> Option<Instant> {
        let key = format!("/etcd-drill/{}/probe", self.run_id);
        Wait::new("a member to accept a write", Duration::from_millis(50), window)
            .until_some(|| async {
                let attempts = self.members.iter().map(|m| {
                    let key = key.clone();
                    async move { m.client.put(key, "probe".into(), put_timeout).await.ok() }
                });
                join_all(attempts).await.iter().any(|r| r.is_some()).then(Instant::now)
            })
            .await
    }

    /// Whether the etcd that answers for `name` is the one that stays. An image whose
    /// command is etcd has no other; an image whose scripts start etcd may first answer
    /// from a temporary etcd they stop again, so it counts only once its container runs
    /// etcd alone ([`flavor::setup_finished`]). Asked before a health probe, this makes
    /// the answer come from the etcd that stays.
    pub async fn setup_finished(&self, name: &str) -> std::result::Result<(), String> {
        if !self.image.flavor.image_entrypoint_starts_etcd {
            return Ok(());
        }
        let container = self.container_name(name);
        match self.docker_of(name).container_commands(&container).await {
            Ok(commands) => flavor::setup_finished(&commands),
            Err(e) => Err(e.to_string()),
        }
    }

    /// How often the waits poll: an image whose scripts start etcd costs a `docker top`
    /// per member and probe, so it is asked less often.
    fn poll_interval(&self) -> Duration {
        match self.image.flavor.image_entrypoint_starts_etcd {
            true => Duration::from_millis(200),
            false => Duration::from_millis(50),
        }
    }

    /// What is wrong with each member that does not answer a linearizable read now: its
    /// container's exit code and the last fatal line of its log when it has exited, else
    /// that it runs without serving. Empty when every member answers.
    pub async fn explain_unhealthy(&self) -> Vec<String> {
        let mut found = Vec::new();
        for m in &self.members {
            if m.client.is_healthy(Duration::from_millis(500)).await {
                continue;
            }
            let container = self.container_name(&m.spec.name);
            let why = match self.docker_of(&m.spec.name).exit_code(&container).await {
                Ok(Some(code)) => {
                    let (_, stderr) = self.docker_of(&m.spec.name).logs(&container).await.unwrap_or_default();
                    match fatal_log_line(&stderr) {
                        Some(line) => format!("exited with code {code}: {line}"),
                        None => format!("exited with code {code}"),
                    }
                }
                Ok(None) => "runs, but does not answer".to_string(),
                Err(e) => format!("cannot be inspected: {e}"),
            };
            found.push(format!("{} {why}", m.spec.name));
        }
        found
    }

    /// Waits until every member in `names` answers a linearizable read from the etcd that
    /// stays ([`Cluster::setup_finished`], asked first). An image with start-up scripts
    /// gets at least [`SETUP_TIMEOUT`].
    pub async fn wait_healthy(&self, names: &[String], timeout: Duration) -> Result<()> {
        let timeout = match self.image.flavor.image_entrypoint_starts_etcd {
            true => timeout.max(SETUP_TIMEOUT),
            false => timeout,
        };
        let clients: Vec<&MemberClient> = names
            .iter()
            .map(|n| self.member(n).map(|m| &m.client))
            .collect::<Result<_>>()?;
        let wait = Wait::new(
            format!("members {} to become healthy", names.join(", ")),
            self.poll_interval(),
            timeout,
        );
        // Once a member's start-up has finished it stays finished: etcd runs for good.
        let settled = std::sync::Mutex::new(vec![false; names.len()]);
        wait.until(|| async {
            let known = settled.lock().expect("settled lock").clone();
            let setups = join_all(names.iter().zip(&known).map(|(n, done)| async move {
                match done {
                    true => Ok(()),
                    false => self.setup_finished(n).await,
                }
            }))
            .await;
            let health = join_all(
                clients
                    .iter()
                    .zip(&setups)
                    .map(|(c, setup)| async move { setup.is_ok() && c.is_healthy(Duration::from_millis(500)).await }),
            )
            .await;
            let mut known = settled.lock().expect("settled lock");
            let mut sick = Vec::new();
            for (i, (setup, healthy)) in setups.iter().zip(&health).enumerate() {
                known[i] = setup.is_ok();
                match (setup, healthy) {
                    (Err(seen), _) => sick.push(format!("{}: {seen}", names[i])),
                    (Ok(()), false) => sick.push(format!("{} not answering", names[i])),
                    (Ok(()), true) => {}
                }
            }
            match sick.is_empty() {
                true => Seen::Ready(()),
                false => Seen::NotYet(sick.join(", ")),
            }
        })
        .await
        .map_err(Error::from)
    }

    /// Waits until every member in `names` names the same leader in the same raft term,
    /// unchanged for `quiet` ([`settle::LeaderSettling`]).
    pub async fn wait_leader_settled(&self, names: &[String], quiet: Duration, timeout: Duration) -> Result<()> {
        let clients: Vec<&MemberClient> = names
            .iter()
            .map(|n| self.member(n).map(|m| &m.client))
            .collect::<Result<_>>()?;
        let settling = std::sync::Mutex::new(settle::LeaderSettling::new(quiet));
        let wait = Wait::new(
            format!(
                "members {} to name one leader for {} ms",
                names.join(", "),
                quiet.as_millis()
            ),
            Duration::from_millis(100),
            timeout,
        );
        wait.until(|| async {
            let seen: Vec<settle::LeaderSeen> = join_all(clients.iter().map(|c| async move {
                c.status(Duration::from_millis(500))
                    .await
                    .map(|s| (s.leader_id, s.raft_term))
                    .map_err(|e| e.to_string())
            }))
            .await;
            let mut settling = settling.lock().expect("settling lock");
            settling.observe(Instant::now(), names, &seen)
        })
        .await
        .map_err(Error::from)
    }

    /// Waits until the start-up of every running member in `names` has finished
    /// ([`Cluster::setup_finished`]); at once for an image whose command is etcd.
    pub async fn wait_setup_finished(&self, names: &[String], timeout: Duration) -> Result<()> {
        if !self.image.flavor.image_entrypoint_starts_etcd {
            return Ok(());
        }
        let wait = Wait::new(
            format!("the start-up scripts of {} to finish", names.join(", ")),
            self.poll_interval(),
            timeout,
        );
        wait.until(|| async {
            let setups = join_all(names.iter().map(|n| self.setup_finished(n))).await;
            let busy: Vec<String> = names
                .iter()
                .zip(setups)
                .filter_map(|(n, s)| s.err().map(|seen| format!("{n}: {seen}")))
                .collect();
            match busy.is_empty() {
                true => Seen::Ready(()),
                false => Seen::NotYet(busy.join(", ")),
            }
        })
        .await
        .map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::fatal_log_line;

    #[test]
    fn the_cause_comes_first_then_the_end() {
        let log = r#"{"level":"info","msg":"starting"}
{"level":"warn","ts":"t","msg":"prober detected unhealthy status","error":"connection refused"}
{"level":"warn","ts":"t","msg":"simple token is not cryptographically signed"}
{"level":"warn","ts":"t","msg":"server error","error":"the member has been permanently removed from the cluster"}
{"level":"fatal","ts":"t","msg":"listener failed","error":"server is stopping","stacktrace":"..."}"#;
        assert_eq!(
            fatal_log_line(log).unwrap(),
            "server error: the member has been permanently removed from the cluster; then listener failed: server is stopping"
        );
        assert_eq!(fatal_log_line("panic: runtime error").unwrap(), "panic: runtime error");
        assert_eq!(fatal_log_line("all good"), None);
    }
}
