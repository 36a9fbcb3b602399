//! Who owns a run's Docker objects, told by their labels: the machine, its boot, the
//! process and the moment it started, and a deadline. From them, and from what this process
//! can see of its own machine, a run is live, kept, stale (its owner is known gone, or the
//! deadline passed), owned elsewhere, or unowned. Pure logic; `reaper` acts on it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Objects found (or removed) for a run label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunObjects {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl RunObjects {
    /// Adds `other`'s objects to these.
    pub fn absorb(&mut self, other: &RunObjects) {
        self.containers.extend(other.containers.iter().cloned());
        self.networks.extend(other.networks.iter().cloned());
        self.volumes.extend(other.volumes.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} containers, {} networks, {} volumes",
            self.containers.len(),
            self.networks.len(),
            self.volumes.len()
        )
    }
}

/// The machine the owning process runs on (its hostname).
pub const OWNER_HOST_LABEL: &str = "io.etcd-drill.owner.host";
/// The boot of that machine (`/proc/sys/kernel/random/boot_id`): a reboot ends every run.
pub const OWNER_BOOT_LABEL: &str = "io.etcd-drill.owner.boot";
/// The owning process id.
pub const OWNER_PID_LABEL: &str = "io.etcd-drill.owner.pid";
/// When the owning process started (clock ticks after boot), so a reused pid is not
/// mistaken for the owner.
pub const OWNER_STARTED_LABEL: &str = "io.etcd-drill.owner.started";
/// Unix time after which the run counts as abandoned whoever owns it.
pub const DEADLINE_LABEL: &str = "io.etcd-drill.deadline";
/// On the marker volume of a run finished with `--keep`: its objects stay until `clean`.
pub const KEPT_LABEL: &str = "io.etcd-drill.kept";

/// How long a run may hold its objects before any later start may remove them. The
/// longest drill measured here takes minutes; a perf sweep or a release validation runs
/// each cluster under its own, fresh run.
pub const RUN_LEASE: Duration = Duration::from_secs(3 * 3600);

/// The process that owns the objects it creates, as its labels name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub host: String,
    pub boot_id: String,
    pub pid: u32,
    /// Start time of the process, clock ticks after boot (field 22 of /proc/PID/stat).
    pub started: u64,
}

impl Owner {
    /// This process.
    pub fn this_process() -> Owner {
        let pid = std::process::id();
        Owner {
            host: machine_name(),
            boot_id: boot_id(),
            pid,
            started: process_start(pid).unwrap_or(0),
        }
    }

    /// The labels every object of a run created by this process carries.
    pub fn labels(&self, deadline: SystemTime) -> Vec<(String, String)> {
        let deadline = deadline.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        vec![
            (OWNER_HOST_LABEL.into(), self.host.clone()),
            (OWNER_BOOT_LABEL.into(), self.boot_id.clone()),
            (OWNER_PID_LABEL.into(), self.pid.to_string()),
            (OWNER_STARTED_LABEL.into(), self.started.to_string()),
            (DEADLINE_LABEL.into(), deadline.to_string()),
        ]
    }

    fn from_labels(labels: &BTreeMap<String, String>) -> Option<Owner> {
        Some(Owner {
            host: labels.get(OWNER_HOST_LABEL)?.clone(),
            boot_id: labels.get(OWNER_BOOT_LABEL)?.clone(),
            pid: labels.get(OWNER_PID_LABEL)?.parse().ok()?,
            started: labels.get(OWNER_STARTED_LABEL)?.parse().ok()?,
        })
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn machine_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "unknown".into())
}

/// Field 22 of /proc/PID/stat (after the command name, which may hold spaces and
/// parentheses, so the fields are counted from the last `)`); None when no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_start(&stat)
}

fn parse_process_start(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); starttime is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// What became of a run's owner, as far as this process can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "why", rename_all = "kebab-case")]
pub enum RunState {
    /// The owner still runs on this machine.
    Live,
    /// Finished with `--keep`: stays until `clean`.
    Kept,
    /// The owner is gone (the reason says how we know) or the deadline passed.
    Stale(String),
    /// Owned by a process on another machine, before its deadline: only that machine can
    /// tell whether it is alive.
    Elsewhere(String),
    /// Created by an etcd-drill that did not label owners.
    Unowned,
}

/// One run's objects on the daemon, with its owner and deadline as labelled.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub owner: Option<Owner>,
    /// Unix seconds.
    pub deadline: Option<u64>,
    pub kept: bool,
    pub objects: RunObjects,
}

impl RunRecord {
    /// Whether the run is alive, seen from `here` at `now` (unix seconds); `alive` tells
    /// whether a local process with the owner's pid and start time still runs.
    pub fn state(&self, here: &Owner, now: u64, alive: impl Fn(u32, u64) -> bool) -> RunState {
        if self.kept {
            return RunState::Kept;
        }
        let Some(owner) = &self.owner else {
            return RunState::Unowned;
        };
        if let Some(deadline) = self.deadline.filter(|d| *d <= now) {
            return RunState::Stale(format!("its deadline passed {} s ago", now - deadline));
        }
        if owner.host != here.host {
            return RunState::Elsewhere(format!("owned by pid {} on {}", owner.pid, owner.host));
        }
        if owner.boot_id != here.boot_id {
            return RunState::Stale(format!("its owner ran before {} rebooted", owner.host));
        }
        if alive(owner.pid, owner.started) {
            RunState::Live
        } else {
            RunState::Stale(format!("its owner, pid {}, has exited", owner.pid))
        }
    }
}

/// Whether the local process `pid` that started at `started` still runs.
pub fn local_process_alive(pid: u32, started: u64) -> bool {
    process_start(pid) == Some(started)
}

/// Groups labelled objects, (run id, labels, kind, name), into runs, in run id order.
pub fn group_runs(objects: Vec<(String, BTreeMap<String, String>, ObjectKind, String)>) -> Vec<RunRecord> {
    let mut runs: BTreeMap<String, RunRecord> = BTreeMap::new();
    for (run_id, labels, kind, name) in objects {
        let record = runs.entry(run_id.clone()).or_insert_with(|| RunRecord {
            run_id,
            owner: None,
            deadline: None,
            kept: false,
            objects: RunObjects::default(),
        });
        if record.owner.is_none() {
            record.owner = Owner::from_labels(&labels);
        }
        if let Some(deadline) = labels.get(DEADLINE_LABEL).and_then(|d| d.parse().ok()) {
            record.deadline = Some(record.deadline.map_or(deadline, |d: u64| d.max(deadline)));
        }
        record.kept |= labels.get(KEPT_LABEL).is_some_and(|v| v == "true");
        match kind {
            ObjectKind::Container => record.objects.containers.push(name),
            ObjectKind::Network => record.objects.networks.push(name),
            ObjectKind::Volume => record.objects.volumes.push(name),
        }
    }
    runs.into_values().collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Container,
    Network,
    Volume,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, boot: &str, pid: u32) -> Owner {
        Owner {
            host: host.into(),
            boot_id: boot.into(),
            pid,
            started: 77,
        }
    }

    fn record(owner: Option<Owner>, deadline: Option<u64>, kept: bool) -> RunRecord {
        RunRecord {
            run_id: "abcd0123".into(),
            owner,
            deadline,
            kept,
            objects: RunObjects::default(),
        }
    }

    #[test]
    fn process_start_is_read_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 9 0 123456 100 200";
        assert_eq!(parse_process_start(stat), Some(123456));
        assert_eq!(parse_process_start("garbage"), None);
        let me = std::process::id();
        assert!(process_start(me).is_some());
        assert!(local_process_alive(me, process_start(me).unwrap()));
        assert!(!local_process_alive(me, process_start(me).unwrap() + 1));
    }

    #[test]
    fn a_run_is_stale_only_when_its_owner_is_known_gone_or_its_deadline_passed() {
        let here = owner("a", "boot1", 1);
        let alive = |pid: u32, _| pid == 10;
        let state = |r: RunRecord| r.state(&here, 1000, alive);
        assert_eq!(
            state(record(Some(owner("a", "boot1", 10)), Some(2000), false)),
            RunState::Live
        );
        assert!(
            matches!(state(record(Some(owner("a", "boot1", 11)), Some(2000), false)), RunState::Stale(why) if why.contains("pid 11"))
        );
        assert!(
            matches!(state(record(Some(owner("a", "boot0", 10)), Some(2000), false)), RunState::Stale(why) if why.contains("rebooted"))
        );
        assert!(matches!(
            state(record(Some(owner("b", "boot9", 10)), Some(2000), false)),
            RunState::Elsewhere(_)
        ));
        assert!(
            matches!(state(record(Some(owner("b", "boot9", 10)), Some(900), false)), RunState::Stale(why) if why.contains("deadline"))
        );
        assert_eq!(
            state(record(Some(owner("a", "boot1", 11)), Some(900), true)),
            RunState::Kept
        );
        assert_eq!(state(record(None, None, false)), RunState::Unowned);
    }

    #[test]
    fn objects_are_grouped_by_run_with_the_owner_and_the_latest_deadline() {
        let labels = |pid: &str, deadline: &str, kept: bool| {
            let mut l: BTreeMap<String, String> = owner("a", "b", 0).labels(UNIX_EPOCH).into_iter().collect();
            l.insert(OWNER_PID_LABEL.into(), pid.into());
            l.insert(DEADLINE_LABEL.into(), deadline.into());
            if kept {
                l.insert(KEPT_LABEL.into(), "true".into());
            }
            l
        };
        let runs = group_runs(vec![
            (
                "r2".into(),
                labels("5", "10", false),
                ObjectKind::Container,
                "c1".into(),
            ),
            ("r1".into(), labels("4", "10", false), ObjectKind::Network, "n1".into()),
            ("r2".into(), labels("5", "30", false), ObjectKind::Volume, "v1".into()),
            ("r2".into(), labels("5", "20", true), ObjectKind::Volume, "kept".into()),
        ]);
        assert_eq!(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
        assert_eq!(runs[1].owner.as_ref().map(|o| o.pid), Some(5));
        assert_eq!(runs[1].deadline, Some(30));
        assert!(runs[1].kept && !runs[0].kept);
        assert_eq!(runs[1].objects.volumes, ["v1", "kept"]);
    }
}
