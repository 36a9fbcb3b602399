//! Faults as verbs (`kill`, `stop`, `start`, `restart`, `wipe`, `pause`, `resume`,
//! `partition`, `heal`, `corrupt`, `fill-quota`, `host-down`, `host-up`, `peer-blackhole`,
//! `peer-loss`, `peer-delay`), each paired with its undo where it has one
//! ([`FaultAction::undo`]), and the targets they hit (members by name, a host, the leader,
//! followers, or a seeded random count). Resolving a target to member names is pure;
//! [`Fault::apply`] carries a fault out with the cluster's Docker-level verbs, so a new
//! fault kind is a change to this file (and, for a new Docker verb, `cluster/verbs.rs`).

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use crate::cluster::damage::{damage_bytes, Damage, DamageKind, DamagedFile};
use crate::cluster::Cluster;
pub use crate::docker::netfault::PeerTraffic;
use crate::error::{Error, Result};
use crate::topology::{NetworkMode, Topology};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL the member's container: no shutdown, the process dies mid-write.
    Kill,
    /// Stop the container gracefully (SIGTERM, then SIGKILL after a grace period).
    Stop,
    /// Start a stopped member again with its data.
    Start,
    /// Stop, then start.
    Restart,
    /// Destroy the member's data volume (the container goes with it): the disk is gone.
    Wipe,
    /// Freeze the member's processes (`docker pause`): alive, but silent.
    Pause,
    /// Thaw a paused member.
    Resume,
    /// Cut members off the peer network: they run, and clients still reach them. Each is
    /// alone on its side, or, for a partition that keeps its targets together (a host),
    /// the cluster is split between the targets and the rest.
    Partition,
    /// Reconnect a partitioned member with its address intact.
    Heal,
    /// Damage a file in the member's data dir (the member is stopped first).
    Corrupt,
    /// Overwrite keys with large values through the member until etcd refuses a write with
    /// "database space exceeded" and raises the NOSPACE alarm: the cluster turns
    /// read-only for every client until an operator frees space and disarms the alarm.
    FillQuota,
    /// A whole host goes down: every member container on it SIGKILLed at the same moment,
    /// and the host unreachable (its members' ports drop traffic, its daemon refuses the
    /// harness's verbs) until `host-up`; with `wipe = true` its disks are gone too.
    HostDown,
    /// A downed host comes back: reachable again, and its members whose data survived
    /// start, as Docker's restart policy starts them when a server boots.
    HostUp,
    /// Drop every packet of the member's peer traffic, from inside its network namespace:
    /// connections to and from it hang instead of breaking. `heal` undoes it.
    PeerBlackhole,
    /// Drop a share of the member's peer packets at random (`loss_percent`).
    PeerLoss,
    /// Hold every packet leaving the member's peer interface (`latency_ms`, `tc netem`).
    PeerDelay,
}

impl FaultAction {
    pub const ALL: [FaultAction; 16] = [
        FaultAction::Kill,
        FaultAction::Stop,
        FaultAction::Start,
        FaultAction::Restart,
        FaultAction::Wipe,
        FaultAction::Pause,
        FaultAction::Resume,
        FaultAction::Partition,
        FaultAction::Heal,
        FaultAction::Corrupt,
        FaultAction::FillQuota,
        FaultAction::HostDown,
        FaultAction::HostUp,
        FaultAction::PeerBlackhole,
        FaultAction::PeerLoss,
        FaultAction::PeerDelay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Stop => "stop",
            FaultAction::Start => "start",
            FaultAction::Restart => "restart",
            FaultAction::Wipe => "wipe",
            FaultAction::Pause => "pause",
            FaultAction::Resume => "resume",
            FaultAction::Partition => "partition",
            FaultAction::Heal => "heal",
            FaultAction::Corrupt => "corrupt",
            FaultAction::FillQuota => "fill-quota",
            FaultAction::HostDown => "host-down",
            FaultAction::HostUp => "host-up",
            FaultAction::PeerBlackhole => "peer-blackhole",
            FaultAction::PeerLoss => "peer-loss",
            FaultAction::PeerDelay => "peer-delay",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == value)
    }

    /// Whether the members this hits stop serving (or stop hearing their peers).
    pub fn takes_members_down(self) -> bool {
        matches!(
            self,
            FaultAction::Kill
                | FaultAction::Stop
                | FaultAction::Wipe
                | FaultAction::Pause
                | FaultAction::Partition
                | FaultAction::Corrupt
                | FaultAction::HostDown
                | FaultAction::PeerBlackhole
        )
    }

    /// Whether the fault degrades a member's peer traffic (from inside its namespace).
    pub fn degrades_peer_traffic(self) -> bool {
        matches!(
            self,
            FaultAction::PeerBlackhole | FaultAction::PeerLoss | FaultAction::PeerDelay
        )
    }

    /// Whether the fault acts on a whole host, and so needs a `host` target.
    pub fn needs_host(self) -> bool {
        matches!(self, FaultAction::HostDown | FaultAction::HostUp)
    }

    /// Whether this disrupts the cluster's writes: it takes members down, or, like a full
    /// backend quota, leaves them running but refusing writes. The RTO counts from the
    /// first disruptive fault.
    pub fn disrupts(self) -> bool {
        self.takes_members_down() || self == FaultAction::FillQuota
    }

    /// Whether the disruption begins only once the verb has done its work (a quota is
    /// exhausted when the last write is refused, not when the filling began).
    pub fn disrupts_when_done(self) -> bool {
        self == FaultAction::FillQuota
    }

    /// The verb that undoes this one on the same members, where there is one: a killed or
    /// stopped member is started, a paused one resumed, a partitioned one healed. A wipe or
    /// a corruption has no undo at the Docker level: a recovery procedure repairs it.
    pub fn undo(self) -> Option<FaultAction> {
        match self {
            FaultAction::Kill | FaultAction::Stop => Some(FaultAction::Start),
            FaultAction::Pause => Some(FaultAction::Resume),
            FaultAction::Partition => Some(FaultAction::Heal),
            FaultAction::HostDown => Some(FaultAction::HostUp),
            FaultAction::PeerBlackhole | FaultAction::PeerLoss | FaultAction::PeerDelay => Some(FaultAction::Heal),
            FaultAction::Start
            | FaultAction::Restart
            | FaultAction::Wipe
            | FaultAction::Resume
            | FaultAction::Heal
            | FaultAction::Corrupt
            | FaultAction::FillQuota
            | FaultAction::HostUp => None,
        }
    }

    /// Whether this undoes an earlier fault on the members it hits.
    pub fn brings_members_back(self) -> bool {
        Self::ALL.iter().any(|fault| fault.undo() == Some(self))
    }
}

/// Which members a fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// These members, by name.
    Members(Vec<String>),
    /// Every member on this host label.
    Host(String),
    /// Whoever leads when the fault fires.
    Leader,
    /// Running followers of the current leader: all of them, or `count` chosen by the seed.
    Followers { count: Option<usize> },
    /// `count` running members chosen by the seed.
    Random { count: usize },
}

/// What the harness knows about the cluster when a fault fires.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    pub topology: &'a Topology,
    /// Members whose container is running, in topology order.
    pub running: Vec<String>,
    pub leader: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no leader is known (the cluster has no quorum or no running member)")]
    NoLeader,
    #[error("wanted {wanted} members but only {available} are running")]
    NotEnough { wanted: usize, available: usize },
    #[error("no member named `{0}`")]
    UnknownMember(String),
    #[error("no member lives on host `{0}`")]
    UnknownHost(String),
}

impl Target {
    /// Resolves the target to member names, in topology order where the choice is not random.
    pub fn resolve(&self, view: &ClusterView<'_>, rng: &mut ChaCha8Rng) -> Result<Vec<String>, TargetError> {
        match self {
            Target::Members(names) => {
                for n in names {
                    if view.topology.member(n).is_none() {
                        return Err(TargetError::UnknownMember(n.clone()));
                    }
                }
                Ok(names.clone())
            }
            Target::Host(host) => {
                let on_host: Vec<String> = view
                    .topology
                    .members
                    .iter()
                    .filter(|m| &m.host == host)
                    .map(|m| m.name.clone())
                    .collect();
                if on_host.is_empty() {
                    return Err(TargetError::UnknownHost(host.clone()));
                }
                Ok(on_host)
            }
            Target::Leader => view.leader.clone().map(|l| vec![l]).ok_or(TargetError::NoLeader),
            Target::Followers { count } => {
                let leader = view.leader.as_ref().ok_or(TargetError::NoLeader)?;
                let followers: Vec<String> = view.running.iter().filter(|m| *m != leader).cloned().collect();
                match count {
                    None => Ok(followers),
                    Some(n) => choose(followers, *n, rng),
                }
            }
            Target::Random { count } => choose(view.running.clone(), *count, rng),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Members(names) => names.join(","),
            Target::Host(h) => format!("host {h}"),
            Target::Leader => "leader".into(),
            Target::Followers { count: None } => "all followers".into(),
            Target::Followers { count: Some(n) } => format!("{n} follower(s)"),
            Target::Random { count } => format!("{count} random member(s)"),
        }
    }
}

fn choose(mut pool: Vec<String>, count: usize, rng: &mut ChaCha8Rng) -> Result<Vec<String>, TargetError> {
    if count > pool.len() {
        return Err(TargetError::NotEnough {
            wanted: count,
            available: pool.len(),
        });
    }
    pool.shuffle(rng);
    pool.truncate(count);
    Ok(pool)
}

/// One fault of a scenario: a verb and what it hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub action: FaultAction,
    pub target: Target,
    /// Wait this long after the previous step before firing.
    pub delay_ms: u64,
    /// For `corrupt`: what to damage and how.
    pub damage: Option<Damage>,
    /// For `partition`: split the cluster into the targets and the rest, the targets still
    /// talking to each other (the default for a host), instead of cutting off each target
    /// alone.
    #[serde(default)]
    pub together: bool,
    /// For `host-down`: the host's disks are lost with it (every member's data volume).
    #[serde(default)]
    pub wipe: bool,
    /// For `peer-blackhole`, `peer-loss` and `peer-delay`: what happens to the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<PeerTraffic>,
    /// For `peer-blackhole` and `partition` of members alone: hold until the leader's log
    /// is compacted past them (they then catch up from a snapshot, checked at the heal).
    #[serde(default)]
    pub until_snapshot: bool,
}

impl Fault {
    /// Carries the fault out on `targets` (resolved from its target; `running` are the
    /// members running when it fires) and returns the members it hit: for a partition that
    /// keeps its targets together, the side cut off the peer network.
    pub async fn apply(&self, cluster: &mut Cluster, targets: Vec<String>, running: &[String]) -> Result<Vec<String>> {
        let mut members = targets;
        if self.together {
            // A split between the targets and the rest: cutting off the smaller side
            // keeps the larger one talking, with its quorum if it has one.
            let cut = side_to_cut(&members, running);
            cluster.record(
                format!("split {} from the rest", members.join(", ")),
                format!("# cut the smaller side off the peer network: {}", cut.join(", ")),
                std::time::Instant::now(),
                true,
            );
            members = cut;
        }
        match self.action {
            FaultAction::HostDown => {
                let Target::Host(host) = &self.target else {
                    return Err(not_a_host(self.action));
                };
                cluster.host_down(host, self.wipe).await?;
                return Ok(members);
            }
            // Only the members that came back with their data are up again.
            FaultAction::HostUp => {
                let Target::Host(host) = &self.target else {
                    return Err(not_a_host(self.action));
                };
                return cluster.host_up(host).await;
            }
            _ => {}
        }
        if self.action == FaultAction::Partition && cluster.topology.network_mode() == NetworkMode::Host {
            // On host networking the split is between whole hosts, at the network level.
            cluster.split_hosts(&members).await?;
            return Ok(members);
        }
        if self.action == FaultAction::Kill {
            // Every member the fault hits dies at the same moment, as with a lost host.
            cluster.kill_all(&members).await?;
        }
        for m in &members {
            match self.action {
                FaultAction::Kill => {}
                FaultAction::Stop => cluster.stop(m).await?,
                FaultAction::Start => cluster.start(m).await?,
                FaultAction::Restart => {
                    cluster.stop(m).await?;
                    cluster.start(m).await?;
                }
                FaultAction::Wipe => cluster.wipe(m).await?,
                FaultAction::Pause => cluster.pause(m).await?,
                FaultAction::Resume => cluster.resume(m).await?,
                FaultAction::Partition => cluster.partition(m).await?,
                FaultAction::Heal => cluster.heal(m).await?,
                FaultAction::FillQuota => cluster.fill_quota(m).await?,
                // Whole hosts: carried out above.
                FaultAction::HostDown | FaultAction::HostUp => {}
                FaultAction::PeerBlackhole | FaultAction::PeerLoss | FaultAction::PeerDelay => {
                    let traffic = self.traffic.ok_or_else(|| Error::Procedure {
                        step: format!("{} {m}", self.action.as_str()),
                        message: "the fault does not say what happens to the traffic".into(),
                    })?;
                    cluster.degrade_peer_traffic(m, traffic).await?
                }
                FaultAction::Corrupt => match self.damage {
                    Some(damage) => cluster.corrupt(m, damage).await?,
                    None => {
                        return Err(Error::Procedure {
                            step: format!("corrupt {m}"),
                            message: "the fault does not say which file to damage".into(),
                        })
                    }
                },
            }
        }
        if self.until_snapshot {
            for m in &members {
                cluster.hold_until_snapshot_needed(m).await?;
            }
        }
        Ok(members)
    }
}

fn not_a_host(action: FaultAction) -> Error {
    Error::Procedure {
        step: action.as_str().to_string(),
        message: format!(
            "`{}` acts on a whole host: target it with `host = ...`",
            action.as_str()
        ),
    }
}

/// The members to cut off the peer network so that `side` and the other running members
/// can no longer talk: the smaller of the two sides (`side` on a tie). Cutting a member off
/// leaves it alone, so the members of the cut side cannot reach each other either; as that
/// side is never a majority, it could not have elected a leader or committed anything even
/// together, and the cluster behaves as under a clean split.
pub fn side_to_cut(side: &[String], running: &[String]) -> Vec<String> {
    let (inside, outside): (Vec<String>, Vec<String>) = running.iter().cloned().partition(|m| side.contains(m));
    if inside.len() <= outside.len() {
        inside
    } else {
        outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_undo_brings_members_back_and_only_undos_do() {
        for action in FaultAction::ALL {
            if let Some(undo) = action.undo() {
                assert!(
                    action.takes_members_down() || action.degrades_peer_traffic(),
                    "{} has an undo",
                    action.as_str()
                );
                assert!(undo.brings_members_back(), "{}", undo.as_str());
            }
        }
        let back: Vec<&str> = FaultAction::ALL
            .into_iter()
            .filter(|a| a.brings_members_back())
            .map(|a| a.as_str())
            .collect();
        assert_eq!(back, ["start", "resume", "heal", "host-up"]);
        assert_eq!(FaultAction::Wipe.undo(), None);
    }

    #[test]
    fn a_split_cuts_the_smaller_side() {
        let all = names(&["etcd1", "etcd2", "etcd3", "etcd4", "etcd5"]);
        // Host B (3 members) apart from host A: cut A, so B keeps its quorum together.
        assert_eq!(
            side_to_cut(&names(&["etcd3", "etcd4", "etcd5"]), &all),
            names(&["etcd1", "etcd2"])
        );
        assert_eq!(
            side_to_cut(&names(&["etcd1", "etcd2"]), &all),
            names(&["etcd1", "etcd2"])
        );
        // Only running members count; a tie cuts the named side.
        let running = names(&["etcd1", "etcd2", "etcd3", "etcd4"]);
        assert_eq!(
            side_to_cut(&names(&["etcd3", "etcd4", "etcd5"]), &running),
            names(&["etcd3", "etcd4"])
        );
        assert_eq!(side_to_cut(&names(&["etcd9"]), &all), Vec::<String>::new());
    }

    fn view<'a>(topology: &'a Topology, leader: &str) -> ClusterView<'a> {
        ClusterView {
            topology,
            running: topology.names(),
            leader: Some(leader.to_string()),
        }
    }

    #[test]
    fn host_target_takes_every_member_of_that_host() {
        let t = Topology::reference();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let hit = Target::Host("B".into()).resolve(&view(&t, "etcd1"), &mut rng).unwrap();
        assert_eq!(hit, vec!["etcd3", "etcd4", "etcd5"]);
        assert_eq!(
            Target::Host("C".into()).resolve(&view(&t, "etcd1"), &mut rng),
            Err(TargetError::UnknownHost("C".into()))
        );
    }

    #[test]
    fn followers_never_include_the_leader_and_the_seed_replays() {
        let t = Topology::reference();
        for seed in 0..50 {
            let pick = |seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                Target::Followers { count: Some(2) }
                    .resolve(&view(&t, "etcd3"), &mut rng)
                    .unwrap()
            };
            let first = pick(seed);
            assert_eq!(first.len(), 2);
            assert!(!first.contains(&"etcd3".to_string()));
            assert_eq!(first, pick(seed), "seed {seed} must replay the same choice");
        }
    }

    #[test]
    fn too_large_a_count_is_an_error_not_a_panic() {
        let t = Topology::reference();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            Target::Random { count: 6 }.resolve(&view(&t, "etcd1"), &mut rng),
            Err(TargetError::NotEnough {
                wanted: 6,
                available: 5
            })
        );
        let no_leader = ClusterView {
            topology: &t,
            running: vec![],
            leader: None,
        };
        assert_eq!(Target::Leader.resolve(&no_leader, &mut rng), Err(TargetError::NoLeader));
    }
}
