//! Faults as verbs (`kill`, `stop`, `start`, `restart`, `wipe`, `pause`, `resume`,
//! `partition`, `heal`) and the targets they hit
//! (members by name, a host, the leader, followers, or a seeded random count).
//! Resolving a target to member names is pure; applying a fault goes through the cluster.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::topology::Topology;

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
}

/// Which file `corrupt` damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamagedFile {
    /// The newest WAL segment (`member/wal/*.wal`).
    Wal,
    /// The bbolt backend (`member/snap/db`).
    Db,
    /// The newest raft snapshot file (`member/snap/*.snap`); etcd writes one every
    /// `snapshot-count` applied entries.
    Snap,
}

/// How `corrupt` damages it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamageKind {
    /// Flip bytes: in the db, the magic numbers of both meta pages (bbolt keeps two, so both
    /// must go for the damage to be certain); in a WAL segment, bytes inside its records.
    Flip,
    /// Cut the file to half its written length.
    Truncate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    pub file: DamagedFile,
    pub how: DamageKind,
}

impl DamagedFile {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "wal" => Some(DamagedFile::Wal),
            "db" => Some(DamagedFile::Db),
            "snap" => Some(DamagedFile::Snap),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DamagedFile::Wal => "wal",
            DamagedFile::Db => "db",
            DamagedFile::Snap => "snap",
        }
    }
}

impl DamageKind {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "flip" => Some(DamageKind::Flip),
            "truncate" => Some(DamageKind::Truncate),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Flip => "flip",
            DamageKind::Truncate => "truncate",
        }
    }
}

/// Damages `bytes` (a whole file) as `damage` says. Returns false when there is nothing
/// to damage (an empty or too short file).
pub fn damage_bytes(bytes: &mut Vec<u8>, damage: Damage) -> bool {
    // WAL segments are preallocated with zeros; only the written part holds records.
    let written = match damage.file {
        DamagedFile::Wal => bytes.iter().rposition(|b| *b != 0).map(|i| i + 1).unwrap_or(0),
        DamagedFile::Db | DamagedFile::Snap => bytes.len(),
    };
    match (damage.how, damage.file) {
        (DamageKind::Truncate, _) => {
            if written < 2 {
                return false;
            }
            bytes.truncate(written / 2);
            true
        }
        (DamageKind::Flip, DamagedFile::Db) => {
            // bbolt meta page: a 16-byte page header, then the magic (u32) and version, then
            // the page size (u32) at offset 24.
            if bytes.len() < 28 {
                return false;
            }
            let page_size = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) as usize;
            for offset in [16, page_size + 16] {
                if let Some(magic) = bytes.get_mut(offset..offset + 4) {
                    magic.iter_mut().for_each(|b| *b ^= 0xff);
                }
            }
            true
        }
        (DamageKind::Flip, DamagedFile::Wal | DamagedFile::Snap) => {
            if written < 64 {
                return false;
            }
            let middle = written / 2;
            bytes[middle..middle + 16].iter_mut().for_each(|b| *b ^= 0xa5);
            true
        }
    }
}

impl FaultAction {
    pub const ALL: [FaultAction; 10] = [
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
        )
    }

    /// Whether this undoes an earlier fault on the members it hits.
    pub fn brings_members_back(self) -> bool {
        matches!(self, FaultAction::Start | FaultAction::Resume | FaultAction::Heal)
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

    #[test]
    fn damage_hits_the_written_part_of_the_file() {
        let mut wal = vec![7u8; 1000];
        wal.extend(vec![0u8; 9000]);
        let before = wal.clone();
        assert!(damage_bytes(
            &mut wal,
            Damage {
                file: DamagedFile::Wal,
                how: DamageKind::Flip
            }
        ));
        assert_ne!(wal[..1000], before[..1000]);
        assert_eq!(wal[1000..], before[1000..]);

        let mut wal = before.clone();
        assert!(damage_bytes(
            &mut wal,
            Damage {
                file: DamagedFile::Wal,
                how: DamageKind::Truncate
            }
        ));
        assert_eq!(wal.len(), 500);

        let mut db = vec![0u8; 8192];
        db[24..28].copy_from_slice(&4096u32.to_le_bytes());
        db[16..20].copy_from_slice(&0xED0CDAEDu32.to_le_bytes());
        db[4096 + 16..4096 + 20].copy_from_slice(&0xED0CDAEDu32.to_le_bytes());
        assert!(damage_bytes(
            &mut db,
            Damage {
                file: DamagedFile::Db,
                how: DamageKind::Flip
            }
        ));
        assert_ne!(db[16..20], 0xED0CDAEDu32.to_le_bytes());
        assert_ne!(db[4096 + 16..4096 + 20], 0xED0CDAEDu32.to_le_bytes());

        assert!(!damage_bytes(
            &mut Vec::new(),
            Damage {
                file: DamagedFile::Db,
                how: DamageKind::Flip
            }
        ));
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
