//! A chaos run's schedule: incidents drawn from a seed (a fault on some members, held for
//! a while, then undone), overlapping in time but never taking down more than a minority
//! at once, followed by one ending (a repair, a member replaced after its disk is wiped, a
//! member purged after a corruption, and with `beyond_quorum` a majority killed and then
//! restarted or restored from a snapshot). The same seed, duration, topology and flag give
//! the same schedule; a schedule is saved as JSON and replayed from it. A schedule turns
//! into a scenario (its faults and recovery) that the drill runner plays.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fault::FaultAction;
use crate::scenario::{RawExpect, RawFault, RawRecovery, RawScenario, RawWorkload};
use crate::topology::{NetworkMode, Topology};

/// What a schedule file says about itself, so that a replay knows what it replays.
pub const SCHEDULE_FORMAT: u32 = 1;

/// The latest moment a schedule may name (a week, in milliseconds): later ones are typing
/// mistakes, and would overflow the sums of times.
const MAX_SCHEDULE_MS: u64 = 7 * 24 * 3600 * 1000;

/// The faults an incident can be, each undone at the end of its hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentKind {
    /// SIGKILL, then start with its data.
    Kill,
    /// Graceful stop, then start.
    Stop,
    /// `docker pause`, then resume.
    Pause,
    /// Each member cut off alone, then healed.
    Partition,
    /// A whole host split from the rest, then healed.
    HostPartition,
    /// Every peer packet of each member dropped from inside its namespace, then restored.
    PeerBlackhole,
    /// A share of each member's peer packets dropped at random, then restored.
    PeerLoss,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 7] = [
        IncidentKind::Kill,
        IncidentKind::Stop,
        IncidentKind::Pause,
        IncidentKind::Partition,
        IncidentKind::HostPartition,
        IncidentKind::PeerBlackhole,
        IncidentKind::PeerLoss,
    ];

    /// The kinds drawn when none are asked for (the packet faults are asked for by name).
    pub const DEFAULT: [IncidentKind; 5] = [
        IncidentKind::Kill,
        IncidentKind::Stop,
        IncidentKind::Pause,
        IncidentKind::Partition,
        IncidentKind::HostPartition,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Kill => "kill",
            IncidentKind::Stop => "stop",
            IncidentKind::Pause => "pause",
            IncidentKind::Partition => "partition",
            IncidentKind::HostPartition => "host-partition",
            IncidentKind::PeerBlackhole => "peer-blackhole",
            IncidentKind::PeerLoss => "peer-loss",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentKind> {
        IncidentKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn fault(self) -> FaultAction {
        match self {
            IncidentKind::Kill => FaultAction::Kill,
            IncidentKind::Stop => FaultAction::Stop,
            IncidentKind::Pause => FaultAction::Pause,
            IncidentKind::Partition | IncidentKind::HostPartition => FaultAction::Partition,
            IncidentKind::PeerBlackhole => FaultAction::PeerBlackhole,
            IncidentKind::PeerLoss => FaultAction::PeerLoss,
        }
    }
}

/// One fault of the schedule and its undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// When the fault fires, in milliseconds after the warm-up.
    pub at_ms: u64,
    /// How long it holds before its undo.
    pub hold_ms: u64,
    pub kind: IncidentKind,
    /// The members it hits (for a host partition, every member of the host).
    pub members: Vec<String>,
    /// For a host partition: the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// For a peer loss: the share of packets dropped, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<u8>,
}

impl Incident {
    fn undo_at_ms(&self) -> u64 {
        self.at_ms.saturating_add(self.hold_ms)
    }

    /// One line for people: when, what, on whom, for how long.
    pub fn describe(&self) -> String {
        let whom = match &self.host {
            Some(host) => format!("host {host} ({})", self.members.join(",")),
            None => self.members.join(","),
        };
        let loss = self.loss_percent.map(|p| format!(" {p}%")).unwrap_or_default();
        format!(
            "{:>9.1} s  {}{loss} {whom}, held {:.1} s",
            self.at_ms as f64 / 1000.0,
            self.kind.as_str(),
            self.hold_ms as f64 / 1000.0
        )
    }
}

/// How the schedule ends, and the recovery procedure that ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Ending {
    /// Nothing more: `repair` makes sure every member is back.
    Repair,
    /// A member's disk is wiped; `member-replace` brings it back empty.
    ReplaceMember { member: String },
    /// A member's db file is corrupted and it is started on it; `purge-member` empties its
    /// `member/snap` and lets it catch up.
    PurgeMember { member: String },
    /// A majority killed at once: quorum lost; `restart` starts them with their data.
    QuorumLossRestart { members: Vec<String> },
    /// A majority killed and wiped: quorum lost for good; `snapshot-restore` from `from`,
    /// with `--bump-revision --mark-compacted`.
    QuorumLossRestore { members: Vec<String>, from: String },
    /// A majority cut off the peer network, each alone: no side has quorum; `repair`
    /// heals them.
    MajorityPartition { members: Vec<String> },
    /// Every member cut off, each alone; `repair` heals them.
    EveryMemberAlone { members: Vec<String> },
}

impl Ending {
    /// Whether the ending may lose acknowledged writes (a restore from a snapshot).
    pub fn may_lose_writes(&self) -> bool {
        matches!(self, Ending::QuorumLossRestore { .. })
    }

    /// The ending's kind, as in the schedule file.
    pub fn name(&self) -> &'static str {
        match self {
            Ending::Repair => "repair",
            Ending::ReplaceMember { .. } => "replace-member",
            Ending::PurgeMember { .. } => "purge-member",
            Ending::QuorumLossRestart { .. } => "quorum-loss-restart",
            Ending::QuorumLossRestore { .. } => "quorum-loss-restore",
            Ending::MajorityPartition { .. } => "majority-partition",
            Ending::EveryMemberAlone { .. } => "every-member-alone",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Ending::Repair => "repair".into(),
            Ending::ReplaceMember { member } => format!("wipe {member}, member-replace"),
            Ending::PurgeMember { member } => format!("corrupt {member}'s db, purge-member"),
            Ending::QuorumLossRestart { members } => format!("kill {}, restart", members.join(",")),
            Ending::QuorumLossRestore { members, from } => {
                format!("kill and wipe {}, snapshot-restore from {from}", members.join(","))
            }
            Ending::MajorityPartition { members } => format!("partition {} each alone, repair", members.join(",")),
            Ending::EveryMemberAlone { .. } => "partition every member alone, repair".into(),
        }
    }
}

/// A whole schedule, as saved in `schedule.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub format: u32,
    pub seed: u64,
    /// How long the incidents go on, in milliseconds after the warm-up.
    pub duration_ms: u64,
    pub beyond_quorum: bool,
    pub incidents: Vec<Incident>,
    /// When the ending's fault fires, in milliseconds after the warm-up.
    pub ending_at_ms: u64,
    pub ending: Ending,
}

/// `--bump-revision` of a restore ending (`--mark-compacted` goes with it).
pub const RESTORE_REVISION_BUMP: i64 = 1_000_000;

/// The gaps between incidents, and how long one holds.
const GAP_MS: std::ops::Range<u64> = 500..4_000;
const HOLD_MS: std::ops::Range<u64> = 1_000..6_000;

impl Schedule {
    /// Draws a schedule from `seed` for `topology`: incidents for `duration_ms`, then an
    /// ending. A host partition is drawn only where a host holds a minority; on host
    /// networking, partitions are of whole hosts only.
    pub fn generate(seed: u64, duration_ms: u64, topology: &Topology, beyond_quorum: bool) -> Schedule {
        Schedule::generate_of(seed, duration_ms, topology, beyond_quorum, &IncidentKind::DEFAULT)
    }

    /// [`Schedule::generate`] with incidents of `kinds` only (the default kinds when empty).
    pub fn generate_of(
        seed: u64,
        duration_ms: u64,
        topology: &Topology,
        beyond_quorum: bool,
        kinds: &[IncidentKind],
    ) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let names = topology.names();
        let minority = names.len().saturating_sub(1) / 2;
        let minority_hosts: Vec<(String, Vec<String>)> = topology
            .hosts()
            .into_iter()
            .map(|h| {
                let on: Vec<String> = topology
                    .members
                    .iter()
                    .filter(|m| m.host == h)
                    .map(|m| m.name.clone())
                    .collect();
                (h, on)
            })
            .filter(|(_, on)| !on.is_empty() && on.len() <= minority && on.len() < names.len())
            .collect();
        let host_networking = topology.network_mode() == NetworkMode::Host;
        let mut incidents: Vec<Incident> = Vec::new();
        let mut t = rng.random_range(GAP_MS);
        while t < duration_ms && minority > 0 {
            // Members hit by an incident still holding at `t` are out of reach.
            let busy: Vec<&String> = incidents
                .iter()
                .filter(|i| i.at_ms <= t && t < i.undo_at_ms() + 500)
                .flat_map(|i| &i.members)
                .collect();
            let room = minority.saturating_sub(busy.len());
            if room == 0 {
                // Wait for the first holding incident to end.
                let next = incidents
                    .iter()
                    .filter(|i| i.at_ms <= t && t < i.undo_at_ms() + 500)
                    .map(|i| i.undo_at_ms() + 500)
                    .min()
                    .unwrap_or(t + 500);
                t = next.max(t + 1);
                continue;
            }
            let free: Vec<String> = names.iter().filter(|n| !busy.contains(n)).cloned().collect();
            let allowed: Vec<IncidentKind> = IncidentKind::ALL
                .into_iter()
                .filter(|k| match kinds.is_empty() {
                    true => IncidentKind::DEFAULT.contains(k),
                    false => kinds.contains(k),
                })
                .filter(|k| match k {
                    IncidentKind::Partition | IncidentKind::PeerBlackhole | IncidentKind::PeerLoss => !host_networking,
                    IncidentKind::HostPartition => minority_hosts
                        .iter()
                        .any(|(_, on)| on.len() <= room && on.iter().all(|m| free.contains(m))),
                    _ => true,
                })
                .collect();
            let Some(kind) = allowed.choose(&mut rng).copied() else {
                break; // none of the kinds asked for fits this topology
            };
            let (members, host) = match kind {
                IncidentKind::HostPartition => {
                    let fitting: Vec<&(String, Vec<String>)> = minority_hosts
                        .iter()
                        .filter(|(_, on)| on.len() <= room && on.iter().all(|m| free.contains(m)))
                        .collect();
                    match fitting.choose(&mut rng) {
                        Some((host, on)) => (on.clone(), Some(host.clone())),
                        None => (Vec::new(), None),
                    }
                }
                _ => {
                    let count = rng.random_range(1..=room.min(free.len()));
                    let mut chosen: Vec<String> = free.choose_multiple(&mut rng, count).cloned().collect();
                    chosen.sort_by_key(|m| names.iter().position(|n| n == m));
                    (chosen, None)
                }
            };
            let hold_ms = rng.random_range(HOLD_MS);
            let loss_percent = (kind == IncidentKind::PeerLoss).then(|| rng.random_range(20..=60));
            if !members.is_empty() && t + hold_ms < duration_ms {
                incidents.push(Incident {
                    at_ms: t,
                    hold_ms,
                    kind,
                    members,
                    host,
                    loss_percent,
                });
            }
            t += rng.random_range(GAP_MS);
        }
        let ending_at_ms = incidents
            .iter()
            .map(|i| i.undo_at_ms())
            .max()
            .unwrap_or(0)
            .max(duration_ms)
            + 1_000;
        let ending = draw_ending(&mut rng, &names, beyond_quorum, host_networking);
        Schedule {
            format: SCHEDULE_FORMAT,
            seed,
            duration_ms,
            beyond_quorum,
            incidents,
            ending_at_ms,
            ending,
        }
    }

    /// The schedule without the incidents at `indexes` (a candidate when shrinking): the
    /// same times for the rest, the same ending.
    pub fn without(&self, indexes: &[usize]) -> Schedule {
        Schedule {
            incidents: self
                .incidents
                .iter()
                .enumerate()
                .filter(|(i, _)| !indexes.contains(i))
                .map(|(_, incident)| incident.clone())
                .collect(),
            ..self.clone()
        }
    }

    /// The most members any moment of the incidents has down (killed, stopped, paused or
    /// cut off); the ending comes after them all.
    pub fn most_down_at_once(&self) -> usize {
        self.incidents
            .iter()
            .map(|i| {
                self.incidents
                    .iter()
                    .filter(|j| j.at_ms <= i.at_ms && i.at_ms < j.undo_at_ms())
                    .map(|j| j.members.len())
                    .sum()
            })
            .max()
            .unwrap_or(0)
    }

    /// Checks a schedule read from a file against `topology`: known members and hosts, no
    /// more than a minority down at once, an ending after every incident, a restore's
    /// source among the survivors. Errors name the file's key.
    pub fn validate(&self, topology: &Topology, path: &std::path::Path) -> Result<()> {
        let err = |key: String, message: String| Error::ScenarioKey {
            path: path.to_path_buf(),
            key,
            message,
        };
        if self.format != SCHEDULE_FORMAT {
            return Err(err(
                "format".into(),
                format!(
                    "format {} is not {SCHEDULE_FORMAT}: the file is from another version of etcd-drill",
                    self.format
                ),
            ));
        }
        let names = topology.names();
        let host_networking = topology.network_mode() == NetworkMode::Host;
        for (key, ms) in self
            .incidents
            .iter()
            .enumerate()
            .flat_map(|(i, incident)| {
                [
                    (format!("incidents[{i}].at_ms"), incident.at_ms),
                    (format!("incidents[{i}].hold_ms"), incident.hold_ms),
                ]
            })
            .chain([("ending_at_ms".to_string(), self.ending_at_ms)])
        {
            if ms > MAX_SCHEDULE_MS {
                return Err(err(
                    key,
                    format!("{ms} ms is more than a week ({MAX_SCHEDULE_MS} ms): give a time within the run"),
                ));
            }
        }
        for (i, incident) in self.incidents.iter().enumerate() {
            if incident.members.is_empty() {
                return Err(err(format!("incidents[{i}].members"), "names no member".into()));
            }
            if let Some(unknown) = incident.members.iter().find(|m| !names.contains(m)) {
                return Err(err(
                    format!("incidents[{i}].members"),
                    format!("no member named `{unknown}`; members are {}", names.join(", ")),
                ));
            }
            if incident.kind == IncidentKind::PeerLoss && !incident.loss_percent.is_some_and(|p| (1..=100).contains(&p))
            {
                return Err(err(
                    format!("incidents[{i}].loss_percent"),
                    "a peer loss needs 1 to 100".into(),
                ));
            }
            match (&incident.host, incident.kind) {
                (Some(host), IncidentKind::HostPartition) => {
                    if !topology.hosts().contains(host) {
                        return Err(err(
                            format!("incidents[{i}].host"),
                            format!("no member lives on host `{host}`"),
                        ));
                    }
                    // The fault cuts off the whole host: the members counted must be its.
                    let mut on: Vec<String> = topology
                        .members
                        .iter()
                        .filter(|m| &m.host == host)
                        .map(|m| m.name.clone())
                        .collect();
                    let mut named = incident.members.clone();
                    on.sort();
                    named.sort();
                    if on != named {
                        return Err(err(
                            format!("incidents[{i}].members"),
                            format!(
                                "a partition of host `{host}` hits {}: name exactly those",
                                on.join(", ")
                            ),
                        ));
                    }
                }
                (None, IncidentKind::HostPartition) => {
                    return Err(err(
                        format!("incidents[{i}].host"),
                        "a host partition names its host".into(),
                    ));
                }
                (Some(_), kind) => {
                    return Err(err(
                        format!("incidents[{i}].host"),
                        format!("only a host-partition names a host, not a {}", kind.as_str()),
                    ));
                }
                (None, _) => {}
            }
            let member_alone = matches!(
                incident.kind,
                IncidentKind::Partition | IncidentKind::PeerBlackhole | IncidentKind::PeerLoss
            );
            if member_alone && host_networking {
                return Err(err(
                    format!("incidents[{i}].kind"),
                    format!(
                        "{} acts on single members, which host networking cannot do: use host-partition",
                        incident.kind.as_str()
                    ),
                ));
            }
            // Two incidents on one member at once cannot both be undone in order.
            if let Some((j, shared)) = self.incidents[..i].iter().enumerate().find_map(|(j, earlier)| {
                let overlap = earlier.at_ms < incident.undo_at_ms() && incident.at_ms < earlier.undo_at_ms();
                let shared = earlier.members.iter().find(|m| incident.members.contains(m));
                overlap.then_some(shared).flatten().map(|m| (j, m))
            }) {
                return Err(err(
                    format!("incidents[{i}]"),
                    format!("overlaps incidents[{j}] on `{shared}`: one incident at a time on a member"),
                ));
            }
        }
        let minority = names.len().saturating_sub(1) / 2;
        if self.most_down_at_once() > minority {
            return Err(err(
                "incidents".into(),
                format!(
                    "{} members are down at once, more than a minority ({minority}): only the ending may cost quorum",
                    self.most_down_at_once()
                ),
            ));
        }
        let last = self.incidents.iter().map(|i| i.undo_at_ms()).max().unwrap_or(0);
        if self.ending_at_ms <= last {
            return Err(err(
                "ending_at_ms".into(),
                format!("{} is before the last incident ends ({last})", self.ending_at_ms),
            ));
        }
        let named = match &self.ending {
            Ending::Repair => Vec::new(),
            Ending::ReplaceMember { member } | Ending::PurgeMember { member } => vec![member.clone()],
            Ending::QuorumLossRestart { members }
            | Ending::MajorityPartition { members }
            | Ending::EveryMemberAlone { members } => members.clone(),
            Ending::QuorumLossRestore { members, from } => {
                if members.contains(from) {
                    return Err(err(
                        "ending.from".into(),
                        format!("`{from}` is among the members it loses"),
                    ));
                }
                members.iter().chain(std::iter::once(from)).cloned().collect()
            }
        };
        if let Some(unknown) = named.iter().find(|m| !names.contains(m)) {
            return Err(err("ending".into(), format!("no member named `{unknown}`")));
        }
        if host_networking
            && matches!(
                self.ending,
                Ending::MajorityPartition { .. } | Ending::EveryMemberAlone { .. }
            )
        {
            return Err(err(
                "ending.kind".into(),
                format!(
                    "{} cuts off single members, which host networking cannot do",
                    self.ending.name()
                ),
            ));
        }
        Ok(())
    }

    /// The scenario that plays the schedule on `base` (its topology, workload, settings):
    /// every incident's fault and undo in time order, then the ending and its recovery.
    /// Acknowledged writes may be lost only by a restore ending; HashKV must agree, and the
    /// watcher's events keep every guarantee.
    pub fn to_scenario(&self, base: &RawScenario) -> RawScenario {
        let mut steps: Vec<(u64, RawFault)> = Vec::new();
        for incident in &self.incidents {
            let target = |action: &str| {
                let mut fault = RawFault {
                    action: action.to_string(),
                    ..RawFault::default()
                };
                match &incident.host {
                    Some(host) => fault.host = Some(host.clone()),
                    None => fault.members = Some(incident.members.clone()),
                }
                if action == FaultAction::PeerLoss.as_str() {
                    fault.loss_percent = incident.loss_percent.map(i64::from);
                }
                fault
            };
            let undo = incident.kind.fault().undo().unwrap_or(FaultAction::Start);
            steps.push((incident.at_ms, target(incident.kind.fault().as_str())));
            steps.push((incident.undo_at_ms(), target(undo.as_str())));
        }
        let on = |action: &str, members: &[String]| RawFault {
            action: action.to_string(),
            members: Some(members.to_vec()),
            ..RawFault::default()
        };
        let (ending_steps, recovery): (Vec<(u64, RawFault)>, RawRecovery) = match &self.ending {
            Ending::Repair => (Vec::new(), recovery("repair")),
            Ending::ReplaceMember { member } => (
                vec![(self.ending_at_ms, on("wipe", std::slice::from_ref(member)))],
                RawRecovery {
                    members: Some(vec![member.clone()]),
                    ..recovery("member-replace")
                },
            ),
            Ending::PurgeMember { member } => (
                vec![
                    (
                        self.ending_at_ms,
                        RawFault {
                            file: Some("db".into()),
                            damage: Some("flip".into()),
                            ..on("corrupt", std::slice::from_ref(member))
                        },
                    ),
                    (
                        self.ending_at_ms.saturating_add(500),
                        on("start", std::slice::from_ref(member)),
                    ),
                ],
                RawRecovery {
                    members: Some(vec![member.clone()]),
                    ..recovery("purge-member")
                },
            ),
            Ending::QuorumLossRestart { members } => {
                (vec![(self.ending_at_ms, on("kill", members))], recovery("restart"))
            }
            Ending::MajorityPartition { members } | Ending::EveryMemberAlone { members } => (
                vec![(
                    self.ending_at_ms,
                    RawFault {
                        together: Some(false),
                        ..on("partition", members)
                    },
                )],
                recovery("repair"),
            ),
            Ending::QuorumLossRestore { members, from } => (
                vec![
                    (self.ending_at_ms, on("kill", members)),
                    (self.ending_at_ms, on("wipe", members)),
                ],
                // The runbook that keeps watchers right: revisions bumped past any a
                // watcher saw, and marked compacted so that it re-lists.
                RawRecovery {
                    from: Some(from.clone()),
                    bump_revision: Some(RESTORE_REVISION_BUMP),
                    ..recovery("snapshot-restore")
                },
            ),
        };
        steps.extend(ending_steps);
        steps.sort_by_key(|(at, _)| *at);
        // A base written for chaos (its workload has registers) keeps its workload.
        let workload = base
            .workload
            .clone()
            .filter(|w| w.registers.is_some_and(|r| r > 0))
            .unwrap_or_else(chaos_workload);
        let mut previous = 0;
        let faults = steps
            .into_iter()
            .map(|(at, fault)| {
                let delay = at - previous;
                previous = at;
                RawFault {
                    delay_ms: Some(delay as i64),
                    ..fault
                }
            })
            .collect();
        RawScenario {
            name: Some(format!("chaos-{}", self.seed)),
            description: Some(format!(
                "chaos: {} incidents over {} s, then {}",
                self.incidents.len(),
                self.duration_ms / 1000,
                self.ending.describe()
            )),
            faults,
            recovery: Some(RawRecovery {
                delay_ms: Some(1_000),
                ..recovery
            }),
            expect: Some(RawExpect {
                max_lost_acked_writes: (!self.ending.may_lose_writes()).then_some(0),
                hashkv_equal: Some(true),
                watch_guarantees: Some(true),
                // A restore brings back the snapshot's leases: only judged without one.
                lease_expiry: (workload.leases.is_some_and(|n| n > 0) && !self.ending.may_lose_writes())
                    .then_some(true),
                ..RawExpect::default()
            }),
            workload: Some(workload),
            ..base.clone()
        }
    }
}

fn recovery(procedure: &str) -> RawRecovery {
    RawRecovery {
        procedure: procedure.to_string(),
        ..RawRecovery::default()
    }
}

/// The workload of a chaos run unless the base scenario has one with registers: a few
/// writers at a modest rate (the machine runs the cluster too), a watcher, and the
/// registers' mixed operations, and two leases kept alive with a key each.
pub fn chaos_workload() -> RawWorkload {
    RawWorkload {
        writers: Some(2),
        rate: Some(40),
        put_timeout_ms: Some(1_000),
        warmup_ms: Some(3_000),
        cooldown_ms: Some(2_000),
        registers: Some(4),
        watch: Some(true),
        leases: Some(2),
        ..RawWorkload::default()
    }
}

fn draw_ending(rng: &mut ChaCha8Rng, names: &[String], beyond_quorum: bool, host_networking: bool) -> Ending {
    let majority = names.len() / 2 + 1;
    let pick = |rng: &mut ChaCha8Rng, count: usize| -> Vec<String> {
        let mut chosen: Vec<String> = names.choose_multiple(rng, count).cloned().collect();
        chosen.sort_by_key(|m| names.iter().position(|n| n == m));
        chosen
    };
    // Partitions of members alone need a network of the run's own (not host networking).
    let choices = match (beyond_quorum && names.len() > 1, host_networking) {
        (false, _) => 3,
        (true, true) => 5,
        (true, false) => 7,
    };
    match rng.random_range(0..choices) {
        0 => Ending::Repair,
        1 => Ending::ReplaceMember {
            member: pick(rng, 1).remove(0),
        },
        2 => Ending::PurgeMember {
            member: pick(rng, 1).remove(0),
        },
        3 => Ending::QuorumLossRestart {
            members: pick(rng, majority),
        },
        5 => Ending::MajorityPartition {
            members: pick(rng, majority),
        },
        6 => Ending::EveryMemberAlone {
            members: names.to_vec(),
        },
        _ => {
            let members = pick(rng, majority);
            // Two members have no survivor to restore from: both are restarted instead.
            match names.iter().find(|n| !members.contains(n)).cloned() {
                Some(from) => Ending::QuorumLossRestore { members, from },
                None => Ending::QuorumLossRestart { members },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scenario;

    fn reference() -> Topology {
        Topology::reference()
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let t = reference();
        let a = Schedule::generate(42, 120_000, &t, true);
        assert_eq!(a, Schedule::generate(42, 120_000, &t, true));
        assert!(a.incidents.len() > 10, "{} incidents in two minutes", a.incidents.len());
        let differ = (0..20)
            .filter(|s| Schedule::generate(*s, 120_000, &t, true) != a)
            .count();
        assert_eq!(differ, 20);
        // And it survives its file format.
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&text).unwrap(), a);
    }

    #[test]
    fn no_schedule_takes_down_more_than_a_minority_before_its_ending() {
        let t = reference();
        for seed in 0..300 {
            let s = Schedule::generate(seed, 60_000, &t, seed % 2 == 0);
            assert!(s.most_down_at_once() <= 2, "seed {seed}: {}", s.most_down_at_once());
            s.validate(&t, Path::new("schedule.json")).unwrap();
            for i in &s.incidents {
                assert!(i.at_ms + i.hold_ms < s.duration_ms, "seed {seed}: {i:?}");
                assert!(!i.members.is_empty());
            }
            if seed % 2 == 1 {
                assert!(
                    !matches!(
                        s.ending,
                        Ending::QuorumLossRestart { .. } | Ending::QuorumLossRestore { .. }
                    ),
                    "seed {seed}: quorum lost without --beyond-quorum"
                );
            }
        }
        let endings: std::collections::BTreeSet<String> = (0..300)
            .map(|seed| Schedule::generate(seed, 10_000, &t, true).ending.name().to_string())
            .collect();
        assert_eq!(endings.len(), 7, "every ending is drawn: {endings:?}");
    }

    #[test]
    fn kinds_restrict_the_incidents_and_a_kind_that_cannot_fit_draws_none() {
        let t = reference();
        let kills = Schedule::generate_of(3, 60_000, &t, false, &[IncidentKind::Kill]);
        assert!(!kills.incidents.is_empty());
        assert!(kills.incidents.iter().all(|i| i.kind == IncidentKind::Kill));
        assert_eq!(
            kills,
            Schedule::generate_of(3, 60_000, &t, false, &[IncidentKind::Kill])
        );
        // Every member on one host: no host holds a minority to split off.
        let one_host = Topology::new(
            t.members
                .iter()
                .map(|m| crate::topology::MemberSpec {
                    host: "A".into(),
                    ..m.clone()
                })
                .collect(),
        );
        let none = Schedule::generate_of(3, 60_000, &one_host, false, &[IncidentKind::HostPartition]);
        assert!(none.incidents.is_empty());
        for kind in IncidentKind::ALL {
            assert_eq!(IncidentKind::parse(kind.as_str()), Some(kind));
        }
        // Packet faults only when asked for, each loss with its share.
        let drawn = |kinds: &[IncidentKind]| -> Vec<IncidentKind> {
            (0..50)
                .flat_map(|seed| Schedule::generate_of(seed, 30_000, &t, false, kinds).incidents)
                .map(|i| i.kind)
                .collect()
        };
        assert!(!drawn(&[])
            .iter()
            .any(|k| matches!(k, IncidentKind::PeerLoss | IncidentKind::PeerBlackhole)));
        let lossy = Schedule::generate_of(1, 30_000, &t, false, &[IncidentKind::PeerLoss]);
        assert!(lossy
            .incidents
            .iter()
            .all(|i| i.loss_percent.is_some_and(|p| (20..=60).contains(&p))));
        let raw = lossy.to_scenario(&RawScenario::default());
        assert!(raw
            .faults
            .iter()
            .filter(|f| f.action == "peer-loss")
            .all(|f| f.loss_percent.is_some()));
        scenario::compile(raw, Path::new("chaos.toml")).unwrap();
    }

    #[test]
    fn on_host_networking_partitions_are_of_whole_hosts() {
        let text = "[hosts.A]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n[hosts.B]\naddress = \"10.0.0.2\"\nnetwork = \"host\"\n\
                    [[faults]]\naction = \"kill\"\nhost = \"B\"\n[recovery]\nprocedure = \"restart\"\n";
        let t = scenario::parse(text, Path::new("x.toml")).unwrap().topology;
        for seed in 0..100 {
            for i in Schedule::generate(seed, 60_000, &t, false).incidents {
                assert_ne!(i.kind, IncidentKind::Partition, "seed {seed}");
                if i.kind == IncidentKind::HostPartition {
                    assert_eq!(i.host.as_deref(), Some("A"));
                    assert_eq!(i.members, ["etcd1", "etcd2"]);
                }
            }
        }
    }

    #[test]
    fn a_schedule_becomes_a_scenario_the_compiler_accepts() {
        let t = reference();
        for seed in 0..50 {
            let s = Schedule::generate(seed, 60_000, &t, true);
            let raw = s.to_scenario(&RawScenario::default());
            let ending_steps = match &s.ending {
                Ending::Repair => 0,
                Ending::ReplaceMember { .. }
                | Ending::QuorumLossRestart { .. }
                | Ending::MajorityPartition { .. }
                | Ending::EveryMemberAlone { .. } => 1,
                Ending::PurgeMember { .. } | Ending::QuorumLossRestore { .. } => 2,
            };
            assert_eq!(raw.faults.len(), 2 * s.incidents.len() + ending_steps);
            let compiled =
                scenario::compile(raw, Path::new("chaos.toml")).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let total: u64 = compiled.faults.iter().map(|f| f.delay_ms).sum();
            let last_undo = s.incidents.iter().map(|i| i.at_ms + i.hold_ms).max().unwrap_or(0);
            assert!(
                total >= last_undo,
                "seed {seed}: the steps end at {total}, before {last_undo}"
            );
            assert_eq!(compiled.workload.registers, 4);
            assert_eq!(
                compiled.expect.lease_expiry,
                (!s.ending.may_lose_writes()).then_some(true)
            );
            assert_eq!(
                compiled.expect.max_lost_acked_writes,
                (!s.ending.may_lose_writes()).then_some(0)
            );
        }
    }

    #[test]
    fn a_base_written_for_chaos_keeps_its_workload() {
        let text = include_str!("../../../scenarios/chaos/three-members-small-snapshots.toml");
        let base = scenario::parse(text, Path::new("three.toml")).unwrap();
        for seed in 0..20 {
            let s = Schedule::generate_of(seed, 60_000, &base.topology, true, &[IncidentKind::Kill]);
            let compiled = scenario::compile(s.to_scenario(&base.to_raw()), Path::new("chaos.toml"))
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!((compiled.workload.writers, compiled.workload.rate), (8, 300));
            assert_eq!(compiled.topology.len(), 3);
            assert_eq!(compiled.etcd.snapshot_count, Some(100));
            assert_eq!(compiled.expect.lease_expiry, None, "no leases in that workload");
        }
    }

    #[test]
    fn a_schedule_file_is_checked_key_by_key() {
        let t = reference();
        let good = Schedule::generate(7, 30_000, &t, false);
        let path = Path::new("schedule.json");
        let mut crowded = good.clone();
        crowded.incidents = vec![
            Incident {
                at_ms: 0,
                hold_ms: 5_000,
                kind: IncidentKind::Kill,
                members: vec!["etcd1".into(), "etcd2".into()],
                host: None,
                loss_percent: None,
            },
            Incident {
                at_ms: 1_000,
                hold_ms: 1_000,
                kind: IncidentKind::Pause,
                members: vec!["etcd3".into()],
                host: None,
                loss_percent: None,
            },
        ];
        crowded.ending_at_ms = 10_000;
        let e = crowded.validate(&t, path).unwrap_err().to_string();
        assert!(e.contains("incidents") && e.contains("more than a minority"), "{e}");
        let mut unknown = good.clone();
        unknown.incidents.insert(
            0,
            Incident {
                at_ms: 0,
                hold_ms: 1,
                kind: IncidentKind::Stop,
                members: vec!["etcd9".into()],
                host: None,
                loss_percent: None,
            },
        );
        let e = unknown.validate(&t, path).unwrap_err().to_string();
        assert!(e.contains("incidents[0].members") && e.contains("etcd9"), "{e}");
        let e = Schedule {
            format: 9,
            ..good.clone()
        }
        .validate(&t, path)
        .unwrap_err()
        .to_string();
        assert!(e.contains("format"), "{e}");
        let restore = Schedule {
            ending: Ending::QuorumLossRestore {
                members: vec!["etcd1".into(), "etcd2".into(), "etcd3".into()],
                from: "etcd1".into(),
            },
            ..good
        };
        let e = restore.validate(&t, path).unwrap_err().to_string();
        assert!(e.contains("ending.from"), "{e}");
    }

    #[test]
    fn a_hand_edited_schedule_cannot_hide_a_majority_or_overflow() {
        let t = reference();
        let path = Path::new("schedule.json");
        let base = Schedule::generate(7, 30_000, &t, false);
        let one = |at_ms, hold_ms, kind, members: &[&str], host: Option<&str>| Incident {
            at_ms,
            hold_ms,
            kind,
            members: members.iter().map(|m| m.to_string()).collect(),
            host: host.map(str::to_string),
            loss_percent: None,
        };
        let with = |incidents: Vec<Incident>| Schedule {
            incidents,
            ending_at_ms: 60_000,
            ..base.clone()
        };
        // Host B holds three of five: naming one of them does not make it a minority.
        let e = with(vec![one(0, 1_000, IncidentKind::HostPartition, &["etcd3"], Some("B"))])
            .validate(&t, path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("incidents[0].members") && e.contains("etcd3, etcd4, etcd5"),
            "{e}"
        );
        let e = with(vec![one(0, 1_000, IncidentKind::HostPartition, &["etcd1"], None)])
            .validate(&t, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("incidents[0].host"), "{e}");
        let e = with(vec![one(0, 1_000, IncidentKind::Kill, &["etcd1"], Some("A"))])
            .validate(&t, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("incidents[0].host") && e.contains("kill"), "{e}");
        // Two incidents on one member at once.
        let e = with(vec![
            one(0, 5_000, IncidentKind::Kill, &["etcd1"], None),
            one(1_000, 1_000, IncidentKind::Pause, &["etcd1"], None),
        ])
        .validate(&t, path)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("incidents[1]") && e.contains("incidents[0]") && e.contains("etcd1"),
            "{e}"
        );
        // Times that would overflow.
        let e = with(vec![one(u64::MAX, u64::MAX, IncidentKind::Kill, &["etcd1"], None)])
            .validate(&t, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("incidents[0].at_ms") && e.contains("a week"), "{e}");
        let e = Schedule {
            ending_at_ms: u64::MAX,
            ..base.clone()
        }
        .validate(&t, path)
        .unwrap_err()
        .to_string();
        assert!(e.contains("ending_at_ms"), "{e}");
        // Single-member partitions on host networking.
        let text = "[hosts.A]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n[hosts.B]\naddress = \"10.0.0.2\"\nnetwork = \"host\"\n\
                    [[faults]]\naction = \"kill\"\nhost = \"B\"\n[recovery]\nprocedure = \"restart\"\n";
        let hosted = scenario::parse(text, Path::new("x.toml")).unwrap().topology;
        let e = with(vec![one(0, 1_000, IncidentKind::Partition, &["etcd1"], None)])
            .validate(&hosted, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("incidents[0].kind") && e.contains("host-partition"), "{e}");
        let e = Schedule {
            ending: Ending::EveryMemberAlone { members: t.names() },
            ..with(Vec::new())
        }
        .validate(&hosted, path)
        .unwrap_err()
        .to_string();
        assert!(e.contains("ending.kind"), "{e}");
    }

    #[test]
    fn two_members_beyond_quorum_restart_for_want_of_a_survivor() {
        let t = reference();
        let two = Topology::new(t.members[..2].to_vec());
        for seed in 0..200 {
            let s = Schedule::generate(seed, 10_000, &two, true);
            s.validate(&two, Path::new("schedule.json")).unwrap();
            assert!(!matches!(s.ending, Ending::QuorumLossRestore { .. }), "seed {seed}");
        }
    }
}
