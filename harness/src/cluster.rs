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
use crate::runtime::{ContainerSpec, DockerRuntime, MEMBER_LABEL, ROLE_LABEL};
use crate::topology::{MemberSpec, Topology, CLIENT_PORT};

/// Where a member's data volume is mounted, and the data dir inside it. The data dir is a
/// sub-directory so that restore tools, which refuse an existing data dir, can create it.
pub const DATA_MOUNT: &str = "/var/lib/etcd";
pub const DATA_DIR: &str = "/var/lib/etcd/data";
pub const ETCD_BIN: &str = "/usr/local/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/local/bin/etcdctl";
pub const ETCDUTL_BIN: &str = "/usr/local/bin/etcdutl";

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
    /// Fixed address on the run's network; every member's /etc/hosts lists all of them.
    pub ip: String,
    /// Bumped whenever the member gets a fresh data volume (wipe, restore).
    pub volume_generation: u32,
    /// The container exists (it may be stopped).
    pub has_container: bool,
    pub client: MemberClient,
}

pub struct Cluster {
    pub docker: DockerRuntime,
    pub run_id: String,
    pub image: String,
    pub topology: Topology,
    pub network: String,
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

/// Creates the run's network on a free /24 and returns its first three octets. The
/// subnet is fixed so that members keep their addresses across restarts.
async fn create_run_network(docker: &DockerRuntime, network: &str, run_id: &str) -> Result<String> {
    let start = u32::from_str_radix(run_id.get(..4).unwrap_or("0"), 16).unwrap_or(0);
    for attempt in 0..64u32 {
        let third = (start + attempt * 37) % 250 + 1;
        let prefix = format!("10.213.{third}");
        if docker
            .create_network(network, run_id, &format!("{prefix}.0/24"))
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
    let mut words: Vec<String> = vec!["docker".into(), "run".into()];
    words.push(if detach { "-d".into() } else { "--rm".into() });
    words.push(format!("--name {}", spec.name));
    if let Some((network, alias)) = &spec.network {
        words.push(format!("--network {network} --network-alias {alias}"));
        if let Some(ip) = &spec.ipv4 {
            words.push(format!("--ip {ip}"));
        }
    } else if spec.isolated {
        words.push("--network none".into());
    }
    if let Some(h) = &spec.hostname {
        words.push(format!("--hostname {h}"));
    }
    if let Some(u) = &spec.user {
        words.push(format!("--user {u}"));
    }
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
    words.extend(spec.cmd.iter().map(|c| shell_quote(c)));
    words.join(" ")
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
            command: crate::shell::mask_secrets(&command.into()),
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
        image: &str,
        topology: &Topology,
        clock: Clock,
    ) -> Result<Cluster> {
        let network = format!("etcd-drill-{run_id}");
        let started = Instant::now();
        let subnet = create_run_network(&docker, &network, run_id).await?;
        let mut members = Vec::new();
        for (i, spec) in topology.members.iter().enumerate() {
            let host_port = free_local_port()?;
            let client = MemberClient::connect(&spec.name, &format!("http://127.0.0.1:{host_port}")).await?;
            members.push(Member {
                spec: spec.clone(),
                host_port,
                ip: format!("{subnet}.{}", 10 + i),
                volume_generation: 0,
                has_container: false,
                client,
            });
        }
        let mut cluster = Cluster {
            docker,
            run_id: run_id.to_string(),
            image: image.to_string(),
            topology: topology.clone(),
            network: network.clone(),
            token: format!("etcd-drill-{run_id}"),
            members,
            clock,
            phase: "setup".into(),
            commands: Vec::new(),
        };
        cluster.record(
            "create the cluster network",
            format!("docker network create --subnet {subnet}.0/24 {network}"),
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
        Ok(cluster)
    }

    /// The container of `member`, configured through etcd's `ETCD_*` environment.
    pub fn member_container_spec(&self, member: &Member, state: ClusterState) -> ContainerSpec {
        let name = &member.spec.name;
        ContainerSpec {
            name: self.container_name(name),
            image: self.image.clone(),
            hostname: Some(name.clone()),
            user: None,
            cmd: vec![ETCD_BIN.to_string()],
            env: vec![
                ("ETCD_NAME".into(), name.clone()),
                ("ETCD_DATA_DIR".into(), DATA_DIR.into()),
                (
                    "ETCD_LISTEN_CLIENT_URLS".into(),
                    format!("http://0.0.0.0:{CLIENT_PORT}"),
                ),
                ("ETCD_ADVERTISE_CLIENT_URLS".into(), member.spec.client_url()),
                ("ETCD_LISTEN_PEER_URLS".into(), "http://0.0.0.0:2380".into()),
                ("ETCD_INITIAL_ADVERTISE_PEER_URLS".into(), member.spec.peer_url()),
                ("ETCD_INITIAL_CLUSTER".into(), self.topology.initial_cluster()),
                ("ETCD_INITIAL_CLUSTER_TOKEN".into(), self.token.clone()),
                ("ETCD_INITIAL_CLUSTER_STATE".into(), state.as_str().into()),
            ],
            labels: vec![
                (MEMBER_LABEL.into(), name.clone()),
                (ROLE_LABEL.into(), "member".into()),
                ("io.etcd-drill.host".into(), member.spec.host.clone()),
            ],
            network: Some((self.network.clone(), name.clone())),
            ipv4: Some(member.ip.clone()),
            // Every peer's name resolves from /etc/hosts. Through Docker's DNS, the names
            // of dead peers are forwarded to outside resolvers, and a member that keeps
            // asking for them (any survivor of a quorum loss) takes seconds to stop.
            extra_hosts: self
                .members
                .iter()
                .map(|m| format!("{}:{}", m.spec.name, m.ip))
                .collect(),
            volumes: vec![(self.volume_name(name, member.volume_generation), DATA_MOUNT.into())],
            publish: Some((CLIENT_PORT, member.host_port)),
            ..ContainerSpec::default()
        }
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
        let created = join_all(
            specs
                .iter()
                .map(|spec| self.docker.create_container(spec, &self.run_id)),
        )
        .await;
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

    pub async fn kill(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let result = self.docker.kill(&container, "SIGKILL").await;
        self.record(
            format!("kill {name}"),
            format!("docker kill --signal SIGKILL {container}"),
            started,
            result.is_ok(),
        );
        result
    }

    pub async fn stop(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let result = self.docker.stop(&container, 10).await;
        self.record(
            format!("stop {name}"),
            format!("docker stop --time 10 {container}"),
            started,
            result.is_ok(),
        );
        result
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
        let started = Instant::now();
        let container = self.container_name(name);
        let result = self.docker.start(&container).await;
        self.record(
            format!("start {name}"),
            format!("docker start {container}"),
            started,
            result.is_ok(),
        );
        result
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
            volumes: vec![("vol".into(), "/var/lib/etcd".into())],
            publish: Some((2379, 40000)),
            ..ContainerSpec::default()
        };
        assert_eq!(
            docker_run_line(&spec, true, &[]),
            "docker run -d --name c --network net --network-alias etcd1 -p 127.0.0.1:40000:2379 \
             -v vol:/var/lib/etcd -e ETCD_NAME=etcd1 img:1 /usr/local/bin/etcd"
        );
    }
}
