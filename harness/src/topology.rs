//! The planned shape of a cluster: which members exist, which host each one lives on,
//! the URLs and `--initial-cluster` strings derived from that, and the server settings
//! every member runs with. Pure data, no Docker.

use serde::{Deserialize, Serialize};

/// Port etcd serves clients on inside a member's container.
pub const CLIENT_PORT: u16 = 2379;
/// Port etcd talks to its peers on inside a member's container.
pub const PEER_PORT: u16 = 2380;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// etcd member name, also the container's host name and network alias.
    pub name: String,
    /// Label of the machine the member runs on; a fault can take a whole host down.
    pub host: String,
    /// On host networking: the host's address, which the member listens on and
    /// advertises. None on a bridge network, where the member is reached by its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The port it serves clients on (on its host's address with host networking).
    #[serde(default = "default_client_port")]
    pub client_port: u16,
    /// The port it talks raft on.
    #[serde(default = "default_peer_port")]
    pub peer_port: u16,
}

fn default_client_port() -> u16 {
    CLIENT_PORT
}

fn default_peer_port() -> u16 {
    PEER_PORT
}

impl MemberSpec {
    pub fn new(name: impl Into<String>, host: impl Into<String>) -> Self {
        MemberSpec {
            name: name.into(),
            host: host.into(),
            address: None,
            client_port: CLIENT_PORT,
            peer_port: PEER_PORT,
        }
    }

    /// URL the other members reach this one on, inside the run's network.
    pub fn peer_url(&self) -> String {
        self.peer_url_in("http")
    }

    /// Where the member is reached: its host's address, or its name on a bridge network.
    pub fn reached_at(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }

    /// The peer URL with `scheme` (`https` when the cluster runs TLS).
    pub fn peer_url_in(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{}", self.reached_at(), self.peer_port)
    }

    /// The client URL with `scheme` (`https` when the cluster runs TLS).
    pub fn client_url_in(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{}", self.reached_at(), self.client_port)
    }
}

/// How a host's members are networked: on a Docker bridge network of the run (reached by
/// name, client ports published on 127.0.0.1), or on the host's own network with ports of
/// their own, as the operators' two servers run them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
        }
    }
}

/// The Docker daemon a host's members run on: `unix://` or `tcp://` (with TLS client
/// certificates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEndpoint {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DockerTls>,
}

/// The files a `tcp://` daemon's TLS needs: its CA and the client's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerTls {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// One host of the run: its Docker daemon, the address its members are reached on and how
/// they are networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    pub name: String,
    /// None: the daemon the harness finds by itself (`DOCKER_HOST`, else the local socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub network: NetworkMode,
}

impl HostSpec {
    /// The `DOCKER_HOST=...` an operator puts before a `docker` command for this host;
    /// empty for the harness's own daemon.
    pub fn docker_prefix(&self) -> String {
        match &self.docker {
            None => String::new(),
            Some(DockerEndpoint { url, tls: None }) => format!("DOCKER_HOST={url} "),
            Some(DockerEndpoint { url, tls: Some(tls) }) => format!(
                "DOCKER_HOST={url} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={} ",
                tls.cert.parent().unwrap_or(std::path::Path::new(".")).display()
            ),
        }
    }
}

/// The first client port with host networking; each further member on the same host adds
/// 1000 (2379, 3379, 4379; peers on 2380, 3380, 4380), as in the operators' layout.
pub const HOST_PORT_STEP: u16 = 1000;

/// etcd server settings a scenario may change from etcd's defaults, applied to every member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// `--snapshot-count`: applied entries between two raft snapshot files (`member/snap/*.snap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<u64>,
    /// `--quota-backend-bytes`: the backend size at which etcd raises the NOSPACE alarm
    /// and refuses writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_backend_bytes: Option<u64>,
}

impl ServerSettings {
    /// The settings as etcd's `ETCD_*` environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let snapshot_count = self
            .snapshot_count
            .map(|n| ("ETCD_SNAPSHOT_COUNT".to_string(), n.to_string()));
        let quota = self
            .quota_backend_bytes
            .map(|n| ("ETCD_QUOTA_BACKEND_BYTES".to_string(), n.to_string()));
        snapshot_count.into_iter().chain(quota).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub members: Vec<MemberSpec>,
    /// The hosts' daemons and networking; empty when the scenario gives none (every
    /// member on the harness's own daemon, on a bridge network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSpec>,
}

impl Topology {
    /// The reference layout: etcd1 and etcd2 on server A, etcd3, etcd4 and etcd5 on server B.
    pub fn reference() -> Self {
        Topology::new(vec![
            MemberSpec::new("etcd1", "A"),
            MemberSpec::new("etcd2", "A"),
            MemberSpec::new("etcd3", "B"),
            MemberSpec::new("etcd4", "B"),
            MemberSpec::new("etcd5", "B"),
        ])
    }

    /// Members on the harness's own daemon, on a bridge network.
    pub fn new(members: Vec<MemberSpec>) -> Self {
        Topology {
            members,
            hosts: Vec::new(),
        }
    }

    /// Members on the given hosts. With host networking, each member gets its host's
    /// address and ports by its place among that host's members (2379/2380, then
    /// 3379/3380, ...).
    pub fn on_hosts(mut members: Vec<MemberSpec>, hosts: Vec<HostSpec>) -> Self {
        let mut seen_on: std::collections::HashMap<String, u16> = std::collections::HashMap::new();
        for member in &mut members {
            let Some(host) = hosts.iter().find(|h| h.name == member.host) else {
                continue;
            };
            if host.network != NetworkMode::Host {
                continue;
            }
            let place = seen_on.entry(member.host.clone()).or_insert(0);
            member.address = host.address.clone();
            member.client_port = CLIENT_PORT + *place * HOST_PORT_STEP;
            member.peer_port = PEER_PORT + *place * HOST_PORT_STEP;
            *place += 1;
        }
        Topology { members, hosts }
    }

    /// How the members are networked (every host of a run has the same mode).
    pub fn network_mode(&self) -> NetworkMode {
        match self.hosts.iter().any(|h| h.network == NetworkMode::Host) {
            true => NetworkMode::Host,
            false => NetworkMode::Bridge,
        }
    }

    /// The host table named `name`, when the scenario gave one.
    pub fn host(&self, name: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many members must be up for the cluster to accept writes.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }

    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for m in &self.members {
            if !hosts.contains(&m.host) {
                hosts.push(m.host.clone());
            }
        }
        hosts
    }

    /// The value of `--initial-cluster` / `ETCD_INITIAL_CLUSTER` for every member.
    pub fn initial_cluster(&self) -> String {
        initial_cluster(self.members.iter())
    }

    /// `--initial-cluster` with peer URLs of `scheme`.
    pub fn initial_cluster_in(&self, scheme: &str) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url_in(scheme)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `name=peer-url` pairs joined by commas, in the order given.
pub fn initial_cluster<'a>(members: impl Iterator<Item = &'a MemberSpec>) -> String {
    members
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits an `--initial-cluster` string back into (name, peer URL) pairs.
pub fn parse_initial_cluster(value: &str) -> Option<Vec<(String, String)>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    value
        .split(',')
        .map(|pair| {
            let (name, url) = pair.split_once('=')?;
            (!name.is_empty() && !url.is_empty()).then(|| (name.to_string(), url.to_string()))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_layout_has_two_hosts_and_quorum_three() {
        let t = Topology::reference();
        assert_eq!(t.len(), 5);
        assert_eq!(t.quorum(), 3);
        assert_eq!(t.hosts(), vec!["A", "B"]);
        assert_eq!(
            t.initial_cluster(),
            "etcd1=http://etcd1:2380,etcd2=http://etcd2:2380,etcd3=http://etcd3:2380,\
             etcd4=http://etcd4:2380,etcd5=http://etcd5:2380"
        );
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            let t = Topology::new((0..n).map(|i| MemberSpec::new(format!("m{i}"), "h")).collect());
            assert_eq!(t.quorum(), q, "{n} members");
        }
    }

    #[test]
    fn host_networking_gives_the_operators_ports_and_addresses() {
        let host = |name: &str, address: &str| HostSpec {
            name: name.into(),
            docker: None,
            address: Some(address.into()),
            network: NetworkMode::Host,
        };
        let members = Topology::reference().members;
        let t = Topology::on_hosts(members, vec![host("A", "10.0.0.1"), host("B", "10.0.0.2")]);
        let urls: Vec<(String, String)> = t
            .members
            .iter()
            .map(|m| (m.client_url_in("http"), m.peer_url_in("http")))
            .collect();
        let expected = [
            ("http://10.0.0.1:2379", "http://10.0.0.1:2380"),
            ("http://10.0.0.1:3379", "http://10.0.0.1:3380"),
            ("http://10.0.0.2:2379", "http://10.0.0.2:2380"),
            ("http://10.0.0.2:3379", "http://10.0.0.2:3380"),
            ("http://10.0.0.2:4379", "http://10.0.0.2:4380"),
        ];
        for (got, want) in urls.iter().zip(expected) {
            assert_eq!((got.0.as_str(), got.1.as_str()), want);
        }
        assert_eq!(t.network_mode(), NetworkMode::Host);
        assert!(t
            .initial_cluster()
            .starts_with("etcd1=http://10.0.0.1:2380,etcd2=http://10.0.0.1:3380,"));
    }

    #[test]
    fn bridge_hosts_keep_names_and_default_ports() {
        let bridge = HostSpec {
            name: "A".into(),
            docker: None,
            address: None,
            network: NetworkMode::Bridge,
        };
        let t = Topology::on_hosts(Topology::reference().members, vec![bridge]);
        assert_eq!(t.members, Topology::reference().members);
        assert_eq!(t.network_mode(), NetworkMode::Bridge);
    }

    #[test]
    fn the_docker_prefix_names_the_daemon() {
        let mut h = HostSpec {
            name: "B".into(),
            docker: None,
            address: None,
            network: NetworkMode::Host,
        };
        assert_eq!(h.docker_prefix(), "");
        h.docker = Some(DockerEndpoint {
            url: "unix:///run/b.sock".into(),
            tls: None,
        });
        assert_eq!(h.docker_prefix(), "DOCKER_HOST=unix:///run/b.sock ");
    }

    proptest! {
        #[test]
        fn initial_cluster_round_trips(names in proptest::collection::vec("[a-z][a-z0-9-]{0,10}", 1..8)) {
            let members: Vec<MemberSpec> = names.iter().map(|n| MemberSpec::new(n.clone(), "h")).collect();
            let parsed = parse_initial_cluster(&initial_cluster(members.iter())).unwrap();
            prop_assert_eq!(parsed.len(), members.len());
            for (m, (name, url)) in members.iter().zip(parsed) {
                prop_assert_eq!(&m.name, &name);
                prop_assert_eq!(m.peer_url(), url);
            }
        }
    }
}
