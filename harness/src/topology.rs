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
}

impl MemberSpec {
    pub fn new(name: impl Into<String>, host: impl Into<String>) -> Self {
        MemberSpec {
            name: name.into(),
            host: host.into(),
        }
    }

    /// URL the other members reach this one on, inside the run's network.
    pub fn peer_url(&self) -> String {
        self.peer_url_in("http")
    }

    /// The peer URL with `scheme` (`https` when the cluster runs TLS).
    pub fn peer_url_in(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{PEER_PORT}", self.name)
    }

    /// The client URL with `scheme` (`https` when the cluster runs TLS).
    pub fn client_url_in(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{CLIENT_PORT}", self.name)
    }
}

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
}

impl Topology {
    /// The reference layout: etcd1 and etcd2 on server A, etcd3, etcd4 and etcd5 on server B.
    pub fn reference() -> Self {
        Topology {
            members: vec![
                MemberSpec::new("etcd1", "A"),
                MemberSpec::new("etcd2", "A"),
                MemberSpec::new("etcd3", "B"),
                MemberSpec::new("etcd4", "B"),
                MemberSpec::new("etcd5", "B"),
            ],
        }
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
            let t = Topology {
                members: (0..n).map(|i| MemberSpec::new(format!("m{i}"), "h")).collect(),
            };
            assert_eq!(t.quorum(), q, "{n} members");
        }
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
