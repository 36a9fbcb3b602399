//! Drill definitions: a TOML file is parsed into raw serde types, then compiled into a
//! validated [`Scenario`]; every error names the file and the key at fault.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fault::{Damage, DamageKind, DamagedFile, Fault, FaultAction, Target};
use crate::topology::{MemberSpec, ServerSettings, Topology};
use crate::workload::WorkloadConfig;

/// The scenarios shipped in `scenarios/`, compiled into the binary so that `run NAME`
/// works from any directory. A file in `./scenarios/NAME.toml` takes precedence.
macro_rules! builtin_scenarios {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../scenarios/", $name, ".toml")))),*]
    };
}

pub const BUILTIN: &[(&str, &str)] = builtin_scenarios![
    "server-b-loss",
    "server-b-outage",
    "minority-kill",
    "quorum-loss-restart",
    "minority-partition",
    "majority-partition",
    "host-partition",
    "leader-pause",
    "leader-blackhole",
    "blackhole-until-snapshot",
    "member-data-loss",
    "member-data-loss-two",
    "member-data-loss-learner",
    "force-new-cluster",
    "compact-defrag",
    "quota-exhaustion",
    "defrag-one-at-a-time",
    "defrag-all-at-once",
    "quorum-loss-from-backup",
    "restore-copied-db",
    "restore-beside",
    "member-corruption",
    "member-snap-corruption",
    "restore-revision-hazard",
    "bump-revision-restore",
    "server-b-loss-auth",
    "server-b-loss-secure",
    "restore-by-image",
    "incremental-restore",
    "full-only-restore",
    "broken-delta-chain",
    "agent-survives-member-loss",
    "upgrade-from-3-4",
    "upgrade-from-3-5-1",
    "upgrade-rollback-partial",
    "upgrade-rollback-complete",
];

/// The smallest `[etcd] quota_backend_bytes` accepted: 1 MiB (a fresh etcd backend is
/// already some hundreds of KiB).
pub const MIN_QUOTA_BYTES: u64 = 1 << 20;
/// The largest: 8 GiB, etcd's suggested maximum.
pub const MAX_QUOTA_BYTES: u64 = 8 << 30;
/// The largest quota a `fill-quota` fault fills (it may write up to four times as much).
pub const MAX_FILLED_QUOTA_BYTES: u64 = 1 << 30;
/// etcd's quota when `--quota-backend-bytes` is not set: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// A commented starting file for a new scenario (`etcd-drill scenario init`): a runnable
/// drill with every other key shown, commented out.
pub const TEMPLATE: &str = include_str!("scenario_template.toml");

/// The JSON Schema of the scenario file format, generated from the types the parser reads
/// (editors with a TOML language server complete and check keys with it). Committed as
/// `reports/schema/scenario.schema.json`; a test keeps the file equal to this.
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RawScenario)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), "etcd-drill scenario".into());
        object.insert(
            "description".into(),
            "A drill: topology, workload, faults, recovery procedure and expectations. See docs/scenarios.md.".into(),
        );
    }
    schema
}

// ---------------------------------------------------------------- raw file format

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<RawMember>,
    /// `[hosts.NAME]`: the Docker daemon, address and networking of each host members
    /// name. Without it every member runs on the harness's own daemon, on a bridge network.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hosts: std::collections::BTreeMap<String, RawHost>,
    pub workload: Option<RawWorkload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<RawFault>,
    pub recovery: Option<RawRecovery>,
    pub expect: Option<RawExpect>,
    pub regression: Option<RawRegression>,
    pub backup: Option<RawBackup>,
    pub seed: Option<RawSeed>,
    /// A history of overwritten values written before the workload starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<RawHistory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<RawSecurity>,
    pub etcd: Option<RawEtcd>,
    /// The incremental backup agent the drill runs beside the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::backup::config::RawDrillAgent>,
}

/// `[security]`: authentication (a root password) and TLS on the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

/// `[etcd]`: server settings that differ from etcd's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_backend_bytes: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub interval_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSeed {
    pub prefix: String,
    pub keys: i64,
}

/// `[history]`: `bytes` of values written over `keys` keys, `value_size` bytes each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    pub bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_size: Option<i64>,
}

/// `[hosts.NAME]`: one host of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// `unix:///path/docker.sock` or `tcp://host:2376` (with `tls_ca`, `tls_cert` and
    /// `tls_key`); absent: `DOCKER_HOST`, else the local socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
    /// The address the host's members listen on and advertise (`network = "host"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `bridge` (default) or `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    pub name: String,
    pub host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub writers: Option<i64>,
    pub rate: Option<i64>,
    pub put_timeout_ms: Option<i64>,
    pub value_size: Option<i64>,
    pub warmup_ms: Option<i64>,
    pub cooldown_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl_s: Option<i64>,
    /// Registers (keys) that clients read, overwrite, delete and compare-and-set, every
    /// operation recorded in a history that the linearizability checker judges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registers: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
    /// `corrupt`: `wal` or `db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `corrupt`: `flip` (default) or `truncate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
    /// `partition`: keep the targets together, split from the rest (default for `host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub together: Option<bool>,
    /// `host-down`: the host's disks are lost with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe: Option<bool>,
    /// `peer-loss`: the share of peer packets dropped, in percent (1-100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<i64>,
    /// `peer-delay`: how long every peer packet is held, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// `partition` (of members alone) and `peer-blackhole`: hold the fault until the
    /// leader's log is compacted past the members, so that they catch up from a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_snapshot: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRecovery {
    pub procedure: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
    /// snapshot-restore: `--bump-revision N --mark-compacted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bump_revision: Option<i64>,
    /// snapshot-restore, restore-beside: `harness` (etcd-drill restores every data dir
    /// with the image's snapshot tool) or `image` (the image's own start-up restores it:
    /// Bitnami's `ETCD_START_FROM_SNAPSHOT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_by: Option<String>,
    /// incremental-restore: replay up to the last good delta instead of refusing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_at_last_good: Option<bool>,
    /// incremental-restore: `remove-delta` or `corrupt-delta` before the restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_chain: Option<String>,
    /// rolling-upgrade: the image the members start on; the run's image (`--image`) is
    /// the one they move to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_image: Option<String>,
    /// rolling-upgrade: `followers-first` (the leader last; the default) or `as-listed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// rolling-upgrade: upgrade only this many members, then put them back on
    /// `from_image` (a partial upgrade rolled back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_after: Option<i64>,
    /// rolling-upgrade: `restore` completes the upgrade, then goes back to `from_image` by
    /// restoring the snapshot taken before the first member moved (the way back once the
    /// cluster version has moved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// member-replace: `existing` (the runbook; the default) or `new`, the mistake of
    /// starting the replacement as a new cluster, which the checks must catch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster_state: Option<String>,
    /// maintenance: `one-at-a-time` (the leader last; the default) or `all-at-once`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defrag: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum_lost: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lost_acked_writes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_budget_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_budget_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_write_gap_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rpo_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watcher_misses_events: Option<bool>,
    /// Workloads with `watch = true`: `true`, the watcher's events must keep every
    /// guarantee (in order, no duplicate, no gap up to a compaction, one response per
    /// revision, resumed exactly where it left off); `false`, one must break.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_guarantees: Option<bool>,
    /// Workloads with leases: `true`, a key whose lease was found expired must be gone
    /// when looked at, and a key whose lease was renewed within its TTL to the end there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expiry: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashkv_equal: Option<bool>,
    /// Workloads with leases: `true`, no lease kept alive may expire; `false`, one must
    /// (the hazard is shown). Unset: the leases are reported, not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases_kept: Option<bool>,
    /// rolling-upgrade: the cluster version (`/version`'s `etcdcluster`) after the
    /// procedure: `new` (the minor of the image upgraded to) or `old` (still the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<String>,
}

/// `[regression]`: how much worse than an earlier run `report compare` tolerates. The
/// same keys, at the top level, make the `--budgets` file of `report compare`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRegression {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_worse_pct: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procedure_worse_pct: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_worse_pct: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_new_data_loss: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_worse_pct: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_ms: Option<i64>,
}

// ---------------------------------------------------------------- compiled form

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub topology: Topology,
    pub workload: WorkloadConfig,
    pub faults: Vec<Fault>,
    pub recovery: Recovery,
    pub expect: Expectations,
    pub regression: RegressionBudget,
    /// Periodic `snapshot save` backups while the drill runs.
    pub backup: Option<BackupPlan>,
    pub seed: Option<SeedPlan>,
    /// A history of overwritten values written before the workload, for compaction and
    /// defragmentation to work on.
    pub history: Option<HistoryPlan>,
    /// Authentication on the cluster (the root password comes from the environment or a
    /// file, never from the scenario).
    pub security: Security,
    /// Server settings every member runs with.
    pub etcd: ServerSettings,
    /// The incremental backup agent beside the cluster.
    pub agent: Option<crate::backup::config::DrillAgent>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Security {
    /// User `root` with the run's root password, and `auth enable`.
    pub auth: bool,
    /// TLS on client and peer URLs, client certificates required.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupPlan {
    pub interval_ms: u64,
}

/// Application keys written before the workload starts (like an APISIX route table), which
/// must all be there after recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedPlan {
    pub prefix: String,
    pub keys: u64,
}

impl SeedPlan {
    pub fn key(&self, i: u64) -> String {
        format!("{}{i:05}", self.prefix)
    }

    pub fn value(i: u64) -> String {
        format!("route-{i}")
    }
}

/// Values overwritten before the workload starts: `bytes` in all, `keys` keys of
/// `value_size` bytes each, so that after a compaction all but the last value of each key
/// is free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HistoryPlan {
    pub bytes: u64,
    pub keys: u64,
    pub value_size: u64,
}

/// Where a `snapshot-restore` gets its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SnapshotSource {
    /// `snapshot save` from this surviving member.
    Member { from: String },
    /// The newest of the drill's periodic backups.
    NewestBackup,
    /// `member/snap/db` copied out of this member's data dir (restored with `--skip-hash-check`).
    CopiedDb { from: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "procedure", rename_all = "kebab-case")]
pub enum ProcedureSpec {
    /// Start the members that are down again, with their data.
    Restart,
    /// Get a snapshot (from a survivor, a backup or a copied db file), restore every
    /// member from it with a new token.
    SnapshotRestore { source: SnapshotSource },
    /// The same restore into a second cluster beside the broken one (new containers,
    /// networks, ports and token), then the application is switched over to it.
    RestoreBeside { source: SnapshotSource },
    /// Resume paused members, heal partitions, start stopped members.
    Repair,
    /// Remove, wipe, re-add and start each member (empty: every member whose data is gone)
    /// with `initial-cluster-state=existing`; with `started_as_new`, the mistake of
    /// starting it with `new`.
    MemberReplace { members: Vec<String>, started_as_new: bool },
    /// Remove, wipe, add each member back as a learner, wait until it has caught up with
    /// the leader, promote it (empty: every member whose data is gone).
    LearnerReplace { members: Vec<String> },
    /// Compact to the current revision and defragment every member with `defrag`.
    Maintenance { defrag: DefragPolicy },
    /// The runbook for an exhausted backend quota: alarm list, a read, compact, defragment
    /// one at a time, alarm disarm.
    QuotaRecovery,
    /// Empty `member/snap` of damaged members and restart them (empty: every stopped member).
    PurgeMember { members: Vec<String> },
    /// Make `from` a one-member cluster with its data, then add the others back.
    ForceNewCluster { from: String },
    /// Restore from the backup agent's newest full snapshot and its deltas.
    IncrementalRestore {
        stop_at_last_good: bool,
        damage: Option<ChainDamage>,
    },
    /// Replace the members one at a time with another image, on their data volumes.
    RollingUpgrade(UpgradePlan),
}

/// A rolling upgrade: the members start on `from_image` and move to the run's image one at
/// a time, with a graceful stop; with `rollback_after`, only that many move, and then go
/// back to `from_image`; with `rollback_by_restore`, all move, and then the cluster goes
/// back to `from_image` through a restore of the snapshot taken before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    pub from_image: String,
    pub order: UpgradeOrder,
    pub rollback_after: Option<usize>,
    pub rollback_by_restore: bool,
}

/// In which order a rolling upgrade takes the members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeOrder {
    /// The followers in topology order, the member leading at that moment last.
    #[default]
    FollowersFirst,
    /// The topology's order, whoever leads.
    AsListed,
}

impl UpgradeOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeOrder::FollowersFirst => "followers-first",
            UpgradeOrder::AsListed => "as-listed",
        }
    }
}

/// How a `maintenance` defragments the members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefragPolicy {
    /// One member after the other, the leader last.
    #[default]
    OneAtATime,
    /// Every member at the same moment.
    AllAtOnce,
}

impl DefragPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DefragPolicy::OneAtATime => "one-at-a-time",
            DefragPolicy::AllAtOnce => "all-at-once",
        }
    }
}

/// How an `incremental-restore` drill breaks the delta chain before restoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainDamage {
    RemoveDelta,
    CorruptDelta,
}

impl ChainDamage {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainDamage::RemoveDelta => "remove-delta",
            ChainDamage::CorruptDelta => "corrupt-delta",
        }
    }
}

impl ProcedureSpec {
    pub const NAMES: [&'static str; 12] = [
        "restart",
        "snapshot-restore",
        "restore-beside",
        "repair",
        "member-replace",
        "learner-replace",
        "maintenance",
        "quota-recovery",
        "force-new-cluster",
        "purge-member",
        "incremental-restore",
        "rolling-upgrade",
    ];

    /// Whether the procedure brings the cluster back from a snapshot, and so may lose
    /// what was acknowledged after it.
    pub fn may_lose_writes(&self) -> bool {
        matches!(
            self,
            ProcedureSpec::SnapshotRestore { .. }
                | ProcedureSpec::RestoreBeside { .. }
                | ProcedureSpec::IncrementalRestore { .. }
                | ProcedureSpec::ForceNewCluster { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            ProcedureSpec::Restart => "restart",
            ProcedureSpec::SnapshotRestore { .. } => "snapshot-restore",
            ProcedureSpec::RestoreBeside { .. } => "restore-beside",
            ProcedureSpec::Repair => "repair",
            ProcedureSpec::MemberReplace { .. } => "member-replace",
            ProcedureSpec::LearnerReplace { .. } => "learner-replace",
            ProcedureSpec::Maintenance { .. } => "maintenance",
            ProcedureSpec::QuotaRecovery => "quota-recovery",
            ProcedureSpec::ForceNewCluster { .. } => "force-new-cluster",
            ProcedureSpec::PurgeMember { .. } => "purge-member",
            ProcedureSpec::IncrementalRestore { .. } => "incremental-restore",
            ProcedureSpec::RollingUpgrade(_) => "rolling-upgrade",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub procedure: ProcedureSpec,
    /// How long the outage lasts: the wait between the last fault and the procedure.
    pub delay_ms: u64,
    /// snapshot-restore only: restore with `--bump-revision N --mark-compacted`, so that
    /// watchers from before the restore hear "compacted" instead of missing events.
    pub bump_revision: Option<u64>,
    /// Who restores the data dirs of a snapshot-restore or restore-beside.
    pub restore_by: RestoreBy,
}

/// Who turns the snapshot into the members' data dirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreBy {
    /// etcd-drill, with the image's `etcdutl` (or 3.4's `etcdctl`) in one-off containers.
    #[default]
    Harness,
    /// The image's own start-up, from the snapshot put into every member's container
    /// (Bitnami: `ETCD_START_FROM_SNAPSHOT=yes`, `ETCD_INIT_SNAPSHOTS_DIR`).
    Image,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectations {
    pub quorum_lost: Option<bool>,
    pub max_lost_acked_writes: Option<u64>,
    pub rto_budget_ms: Option<u64>,
    pub healthy_budget_ms: Option<u64>,
    /// The longest the workload may go without an acknowledged write.
    pub max_write_gap_ms: Option<u64>,
    /// The longest time span the lost writes may cover.
    pub max_rpo_ms: Option<u64>,
    /// Whether the watch follower must miss writes after the recovery (the hazard of a
    /// restore that moves revisions backwards) or must miss none.
    pub watcher_misses_events: Option<bool>,
    /// Whether the watcher's events must keep every watch guarantee (or break one).
    pub watch_guarantees: Option<bool>,
    /// Whether the leases' keys must follow their leases (or one must not).
    pub lease_expiry: Option<bool>,
    pub hashkv_equal: bool,
    /// Whether the leases kept alive must all survive (true) or one must expire (false).
    pub leases_kept: Option<bool>,
    /// rolling-upgrade: where the cluster version must be after the procedure.
    pub cluster_version: Option<ExpectedClusterVersion>,
}

/// The cluster version a rolling upgrade must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedClusterVersion {
    /// The minor of the image upgraded to.
    New,
    /// The minor the cluster started on.
    Old,
}

/// How much worse than an earlier run of the same scenario a run may be before
/// `report compare` calls it a regression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegressionBudget {
    /// RTO may grow by at most this many percent.
    pub rto_worse_pct: u64,
    /// Procedure time (start of the procedure to the first write) likewise.
    pub procedure_worse_pct: u64,
    /// Mean throughput may drop by at most this many percent.
    pub throughput_worse_pct: u64,
    /// May a run lose more acknowledged writes than the earlier one?
    pub allow_new_data_loss: bool,
    /// Where the earlier run lost writes too (a drill that loses them by design, such as a
    /// restore from an older backup), how many percent more the new one may lose. A run
    /// that loses writes where the earlier one lost none is always a regression.
    pub lost_worse_pct: u64,
    /// Time changes smaller than this never count as a regression (timer noise).
    pub noise_ms: u64,
}

impl Default for RegressionBudget {
    fn default() -> Self {
        RegressionBudget {
            rto_worse_pct: 20,
            procedure_worse_pct: 20,
            throughput_worse_pct: 20,
            allow_new_data_loss: false,
            lost_worse_pct: 20,
            noise_ms: 250,
        }
    }
}

impl RegressionBudget {
    /// Compiles `raw` over `base`: keys `raw` leaves out keep `base`'s values. `section`
    /// prefixes the keys in errors (`regression.` in a scenario, empty in a budgets file).
    pub fn compile(raw: &RawRegression, base: &RegressionBudget, path: &Path, section: &str) -> Result<Self> {
        let c = Compiler { path };
        let pct =
            |key: &str, v: Option<i64>, default: u64| c.in_range(&format!("{section}{key}"), v, default, 0..=10_000);
        Ok(RegressionBudget {
            rto_worse_pct: pct("rto_worse_pct", raw.rto_worse_pct, base.rto_worse_pct)?,
            procedure_worse_pct: pct("procedure_worse_pct", raw.procedure_worse_pct, base.procedure_worse_pct)?,
            throughput_worse_pct: c.in_range(
                &format!("{section}throughput_worse_pct"),
                raw.throughput_worse_pct,
                base.throughput_worse_pct,
                0..=100,
            )?,
            allow_new_data_loss: raw.allow_new_data_loss.unwrap_or(base.allow_new_data_loss),
            lost_worse_pct: pct("lost_worse_pct", raw.lost_worse_pct, base.lost_worse_pct)?,
            noise_ms: c.in_range(&format!("{section}noise_ms"), raw.noise_ms, base.noise_ms, 0..=600_000)?,
        })
    }

    pub fn to_raw(&self) -> RawRegression {
        RawRegression {
            rto_worse_pct: Some(self.rto_worse_pct as i64),
            procedure_worse_pct: Some(self.procedure_worse_pct as i64),
            throughput_worse_pct: Some(self.throughput_worse_pct as i64),
            allow_new_data_loss: Some(self.allow_new_data_loss),
            lost_worse_pct: Some(self.lost_worse_pct as i64),
            noise_ms: Some(self.noise_ms as i64),
        }
    }
}

// ---------------------------------------------------------------- loading

/// Finds a scenario by path or by name (`./scenarios/NAME.toml`, then the built-in ones).
pub fn load(name_or_path: &str) -> Result<Scenario> {
    let as_path = Path::new(name_or_path);
    if as_path.extension().is_some_and(|e| e == "toml") || as_path.components().count() > 1 {
        let text = std::fs::read_to_string(as_path).map_err(Error::input(as_path))?;
        return parse(&text, as_path);
    }
    let local = Path::new("scenarios").join(format!("{name_or_path}.toml"));
    if local.is_file() {
        let text = std::fs::read_to_string(&local).map_err(Error::io(&local))?;
        return parse(&text, &local);
    }
    match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        Some((n, text)) => parse(text, &PathBuf::from(format!("<built-in {n}>"))),
        None => Err(Error::UnknownScenario {
            name: name_or_path.to_string(),
            known: BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// A file of `[hosts.NAME]` tables alone (`etcd-drill run --hosts FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostsFile {
    #[serde(default)]
    hosts: std::collections::BTreeMap<String, RawHost>,
}

/// `scenario` with the `[hosts.NAME]` tables of the file at `path` in place of its own:
/// the same drill on other hosts (two real servers, the two-host lab). Errors name the
/// hosts file and the key; TLS file paths are taken relative to it.
pub fn with_hosts_file(scenario: &Scenario, path: &Path) -> Result<Scenario> {
    let hosts = read_hosts_file(path)?;
    let mut raw = scenario.to_raw();
    raw.hosts = hosts.hosts;
    compile(raw, path)
}

/// The Docker daemons a hosts file names (`etcd-drill clean --hosts FILE`), each once, in
/// the order of its hosts; the harness's own daemon is not among them. Errors name the
/// file and the key.
pub fn hosts_file_daemons(path: &Path) -> Result<Vec<crate::topology::DockerEndpoint>> {
    let hosts = read_hosts_file(path)?;
    let c = Compiler { path };
    let mut daemons: Vec<crate::topology::DockerEndpoint> = Vec::new();
    for (name, h) in &hosts.hosts {
        if let Some(endpoint) = compile_endpoint(&c, name, h, path)? {
            if !daemons.iter().any(|d| d.url == endpoint.url) {
                daemons.push(endpoint);
            }
        }
    }
    Ok(daemons)
}

/// Reads a file of `[hosts.NAME]` tables; at least one must be there.
fn read_hosts_file(path: &Path) -> Result<RawHostsFile> {
    let text = std::fs::read_to_string(path).map_err(Error::input(path))?;
    let hosts: RawHostsFile = toml::from_str(&text).map_err(|e| Error::ScenarioFile {
        path: path.to_path_buf(),
        message: describe_toml_error(&text, &e),
    })?;
    if hosts.hosts.is_empty() {
        return Err(Error::ScenarioKey {
            path: path.to_path_buf(),
            key: "hosts".into(),
            message:
                "no [hosts.NAME] table: give one per host the scenario's members name (A and B in the reference layout)"
                    .into(),
        });
    }
    Ok(hosts)
}

/// Parses and validates scenario text; `path` is only used to name the file in errors
/// and to default the scenario's name.
pub fn parse(text: &str, path: &Path) -> Result<Scenario> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| Error::ScenarioFile {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &e),
    })?;
    compile(raw, path)
}

/// A TOML error as "line L, column C: message", then the offending line with a caret
/// under the spot.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..start].chars().count() + 1;
    let offending = text[line_start..].lines().next().unwrap_or_default();
    format!(
        "line {line}, column {column}: {message}\n  {offending}\n  {}^",
        " ".repeat(column - 1)
    )
}

struct Compiler<'a> {
    path: &'a Path,
}

impl Compiler<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> Error {
        Error::ScenarioKey {
            path: self.path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn non_negative(&self, key: &str, value: Option<i64>, default: u64) -> Result<u64> {
        match value {
            None => Ok(default),
            Some(v) if v >= 0 => Ok(v as u64),
            Some(v) => Err(self.err(key, format!("must be zero or more, got {v}"))),
        }
    }

    fn in_range(
        &self,
        key: &str,
        value: Option<i64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64> {
        let v = self.non_negative(key, value, default)?;
        if !range.contains(&v) {
            return Err(self.err(
                key,
                format!("must be between {} and {}, got {v}", range.start(), range.end()),
            ));
        }
        Ok(v)
    }
}

/// Turns the raw file into a validated scenario.
/// Checks the `[hosts.NAME]` tables against the members and gives the members their
/// addresses and ports. Paths of TLS files are taken relative to the scenario file.
/// The Docker daemon of host `name` (`h.docker` with its TLS files, relative to the file
/// at `path`), or `None` for the harness's own daemon.
fn compile_endpoint(
    c: &Compiler,
    name: &str,
    h: &RawHost,
    path: &Path,
) -> Result<Option<crate::topology::DockerEndpoint>> {
    use crate::topology::{DockerEndpoint, DockerTls};
    let key = |field: &str| format!("hosts.{name}.{field}");
    let relative = |p: &str| -> std::path::PathBuf {
        let p = std::path::PathBuf::from(p);
        match (p.is_relative(), path.parent()) {
            (true, Some(dir)) => dir.join(p),
            _ => p,
        }
    };
    let tls = match (&h.tls_ca, &h.tls_cert, &h.tls_key) {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key_file)) => Some(DockerTls {
            ca: relative(ca),
            cert: relative(cert),
            key: relative(key_file),
        }),
        _ => return Err(c.err(key("tls_ca"), "give all three of tls_ca, tls_cert and tls_key, or none")),
    };
    let docker = match h.docker.as_deref() {
        None if tls.is_some() => return Err(c.err(key("docker"), "TLS files given without a `tcp://` daemon")),
        None => None,
        Some(url) if url.starts_with("unix://") && url.len() > "unix://".len() => {
            if tls.is_some() {
                return Err(c.err(key("tls_ca"), "a `unix://` socket takes no TLS files"));
            }
            Some(DockerEndpoint { url: url.into(), tls: None })
        }
        Some(url) if url.starts_with("tcp://") => match tls {
            None => {
                return Err(c.err(
                    key("docker"),
                    format!("`{url}`: a daemon on TCP needs TLS client certificates (tls_ca, tls_cert, tls_key); an open Docker port gives root to anyone who reaches it"),
                ))
            }
            Some(ref t) => Some(DockerEndpoint { url: url.into(), tls: Some(t.clone()) }),
        },
        Some(url) if url.starts_with("ssh://") => {
            return Err(c.err(
                key("docker"),
                format!("`{url}`: the harness's Docker client cannot speak ssh; forward the remote socket (ssh -nNT -L /tmp/{name}.sock:/var/run/docker.sock {}) and write docker = \"unix:///tmp/{name}.sock\"", &url["ssh://".len()..]),
            ))
        }
        Some(url) => {
            return Err(c.err(
                key("docker"),
                format!("`{url}`: write unix:///path/to/docker.sock or tcp://host:port"),
            ))
        }
    };
    Ok(docker)
}

fn compile_hosts(
    c: &Compiler,
    raw: &std::collections::BTreeMap<String, RawHost>,
    members: Vec<MemberSpec>,
    path: &Path,
) -> Result<Topology> {
    use crate::topology::{HostSpec, NetworkMode};
    if raw.is_empty() {
        return Ok(Topology::new(members));
    }
    let mut hosts = Vec::new();
    for (name, h) in raw {
        let key = |field: &str| format!("hosts.{name}.{field}");
        if !members.iter().any(|m| &m.host == name) {
            let named: Vec<&str> = members.iter().map(|m| m.host.as_str()).collect();
            return Err(c.err(
                format!("hosts.{name}"),
                format!("no member lives on host `{name}`; members name {}", named.join(", ")),
            ));
        }
        let network = match h.network.as_deref() {
            None | Some("bridge") => NetworkMode::Bridge,
            Some("host") => NetworkMode::Host,
            Some(other) => return Err(c.err(key("network"), format!("`{other}`: write `bridge` or `host`"))),
        };
        let address = match &h.address {
            None if network == NetworkMode::Host => {
                return Err(c.err(
                    key("address"),
                    "host networking needs the address the host's members listen on and advertise (an IP address of that host)",
                ))
            }
            None => None,
            Some(a) => match a.parse::<std::net::IpAddr>() {
                Ok(ip) if !ip.is_unspecified() => Some(a.clone()),
                _ => return Err(c.err(key("address"), format!("`{a}` is not an IP address members can be reached on"))),
            },
        };
        let docker = compile_endpoint(c, name, h, path)?;
        hosts.push(HostSpec {
            name: name.clone(),
            docker,
            address,
            network,
        });
    }
    for m in &members {
        if !raw.contains_key(&m.host) {
            return Err(c.err(
                "hosts",
                format!(
                    "member `{}` lives on host `{}`, which has no [hosts.{}] table; give every host a table, or none",
                    m.name, m.host, m.host
                ),
            ));
        }
    }
    let modes: std::collections::BTreeSet<&str> = hosts.iter().map(|h| h.network.as_str()).collect();
    if modes.len() > 1 {
        return Err(c.err(
            "hosts",
            "every host needs the same `network`: mixing `bridge` and `host` is not supported",
        ));
    }
    let daemons: std::collections::BTreeSet<Option<&str>> = hosts
        .iter()
        .map(|h| h.docker.as_ref().map(|d| d.url.as_str()))
        .collect();
    if daemons.len() > 1 && hosts.iter().any(|h| h.network == NetworkMode::Bridge) {
        return Err(c.err(
            "hosts",
            "members on several Docker daemons need `network = \"host\"`: a bridge network does not reach from one daemon to another",
        ));
    }
    for (i, a) in hosts.iter().enumerate() {
        for b in &hosts[i + 1..] {
            if a.address.is_some() && a.address == b.address && a.docker == b.docker {
                return Err(c.err(
                    format!("hosts.{}.address", b.name),
                    format!(
                        "hosts `{}` and `{}` share daemon and address, so their members' ports would collide",
                        a.name, b.name
                    ),
                ));
            }
        }
    }
    Ok(Topology::on_hosts(members, hosts))
}

pub fn compile(raw: RawScenario, path: &Path) -> Result<Scenario> {
    let c = Compiler { path };
    let name = match raw.name {
        Some(n) => n,
        None => path
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .trim_start_matches("<built-in ")
                    .trim_end_matches('>')
                    .to_string()
            })
            .unwrap_or_else(|| "scenario".into()),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(c.err(
            "name",
            format!("`{name}` must be non-empty and use only letters, digits, `-` and `_`"),
        ));
    }

    let topology = if raw.members.is_empty() {
        Topology::reference().members
    } else {
        let mut members = Vec::new();
        for (i, m) in raw.members.iter().enumerate() {
            let key = format!("members[{i}].name");
            let valid = !m.name.is_empty()
                && m.name.len() <= 32
                && m.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                && m.name.chars().next().is_some_and(|ch| ch.is_ascii_lowercase());
            if !valid {
                return Err(c.err(
                    key,
                    format!(
                        "`{}` must start with a lowercase letter and use only a-z, 0-9 and `-` (at most 32)",
                        m.name
                    ),
                ));
            }
            if members.iter().any(|x: &MemberSpec| x.name == m.name) {
                return Err(c.err(key, format!("member `{}` is listed twice", m.name)));
            }
            if m.host.is_empty() {
                return Err(c.err(format!("members[{i}].host"), "must not be empty"));
            }
            members.push(MemberSpec::new(m.name.clone(), m.host.clone()));
        }
        if members.len() > 9 {
            return Err(c.err(
                "members",
                format!("at most 9 members are supported, got {}", members.len()),
            ));
        }
        members
    };
    let topology = compile_hosts(&c, &raw.hosts, topology, path)?;

    let w = raw.workload.unwrap_or_default();
    let defaults = WorkloadConfig::default();
    let workload = WorkloadConfig {
        writers: c.in_range("workload.writers", w.writers, defaults.writers as u64, 1..=64)? as usize,
        rate: c.in_range("workload.rate", w.rate, defaults.rate as u64, 1..=20_000)? as u32,
        put_timeout_ms: c.in_range(
            "workload.put_timeout_ms",
            w.put_timeout_ms,
            defaults.put_timeout_ms,
            50..=60_000,
        )?,
        value_size: c.in_range(
            "workload.value_size",
            w.value_size,
            defaults.value_size as u64,
            16..=65_536,
        )? as usize,
        warmup_ms: c.in_range("workload.warmup_ms", w.warmup_ms, defaults.warmup_ms, 0..=600_000)?,
        cooldown_ms: c.in_range("workload.cooldown_ms", w.cooldown_ms, defaults.cooldown_ms, 0..=600_000)?,
        watch: w.watch.unwrap_or(false),
        leases: c.in_range("workload.leases", w.leases, 0, 0..=100)? as usize,
        // etcd's minimum TTL is 2 s with its default election timeout.
        lease_ttl_s: c.in_range("workload.lease_ttl_s", w.lease_ttl_s, defaults.lease_ttl_s, 2..=3_600)?,
        registers: c.in_range("workload.registers", w.registers, 0, 0..=64)? as usize,
    };
    if workload.leases == 0 && w.lease_ttl_s.is_some() {
        return Err(c.err(
            "workload.lease_ttl_s",
            "there are no leases to keep: set workload.leases too",
        ));
    }

    let mut faults = Vec::new();
    // Hosts taken down by a `host-down` and not yet brought back, with the fault's index.
    let mut down_hosts: Vec<(String, usize)> = Vec::new();
    for (i, f) in raw.faults.iter().enumerate() {
        let key = |k: &str| format!("faults[{i}].{k}");
        let action = FaultAction::parse(&f.action).ok_or_else(|| {
            let known: Vec<_> = FaultAction::ALL.iter().map(|a| a.as_str()).collect();
            c.err(
                key("action"),
                format!("unknown action `{}`; use one of {}", f.action, known.join(", ")),
            )
        })?;
        let count = match f.count {
            None => None,
            Some(n) if n >= 1 && (n as usize) <= topology.len() => Some(n as usize),
            Some(n) => {
                return Err(c.err(
                    key("count"),
                    format!("must be between 1 and {}, got {n}", topology.len()),
                ))
            }
        };
        let chosen = [f.members.is_some(), f.host.is_some(), f.role.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if chosen > 1 {
            return Err(c.err(key("target"), "give only one of `members`, `host` or `role`"));
        }
        let target = if let Some(names) = &f.members {
            if names.is_empty() {
                return Err(c.err(key("members"), "must name at least one member"));
            }
            for n in names {
                if topology.member(n).is_none() {
                    return Err(c.err(
                        key("members"),
                        format!("no member named `{n}`; members are {}", topology.names().join(", ")),
                    ));
                }
            }
            if count.is_some() {
                return Err(c.err(key("count"), "`count` goes with `role` or alone, not with `members`"));
            }
            Target::Members(names.clone())
        } else if let Some(host) = &f.host {
            if !topology.hosts().contains(host) {
                return Err(c.err(
                    key("host"),
                    format!(
                        "no member lives on host `{host}`; hosts are {}",
                        topology.hosts().join(", ")
                    ),
                ));
            }
            if count.is_some() {
                return Err(c.err(key("count"), "`count` goes with `role` or alone, not with `host`"));
            }
            Target::Host(host.clone())
        } else if let Some(role) = &f.role {
            match (role.as_str(), count) {
                ("leader", None) => Target::Leader,
                ("leader", Some(_)) => return Err(c.err(key("count"), "there is only one leader; drop `count`")),
                ("followers", count) => Target::Followers { count },
                ("any", Some(count)) => Target::Random { count },
                ("any", None) => return Err(c.err(key("count"), "role `any` needs a `count`")),
                (other, _) => {
                    return Err(c.err(
                        key("role"),
                        format!("unknown role `{other}`; use leader, followers or any"),
                    ))
                }
            }
        } else if let Some(count) = count {
            Target::Random { count }
        } else {
            return Err(c.err(
                key("target"),
                "say which members to hit: `members`, `host`, `role` or `count`",
            ));
        };
        let delay_ms = c.in_range(&key("delay_ms"), f.delay_ms, 0, 0..=600_000)?;
        let damage = if action == FaultAction::Corrupt {
            let file = f
                .file
                .as_deref()
                .ok_or_else(|| c.err(key("file"), "corrupt needs `file`: wal, db or snap"))?;
            let file = DamagedFile::parse(file)
                .ok_or_else(|| c.err(key("file"), format!("unknown file `{file}`; use wal, db or snap")))?;
            let how = f.damage.as_deref().unwrap_or("flip");
            let how = DamageKind::parse(how)
                .ok_or_else(|| c.err(key("damage"), format!("unknown damage `{how}`; use flip or truncate")))?;
            Some(Damage { file, how })
        } else {
            if f.file.is_some() || f.damage.is_some() {
                return Err(c.err(key("file"), "`file` and `damage` only go with action = \"corrupt\""));
            }
            None
        };
        if f.together.is_some() && action != FaultAction::Partition {
            return Err(c.err(key("together"), "`together` only goes with action = \"partition\""));
        }
        let together = f.together.unwrap_or(matches!(target, Target::Host(_)));
        if action == FaultAction::Partition
            && !together
            && topology.network_mode() == crate::topology::NetworkMode::Host
        {
            return Err(c.err(
                key("action"),
                "on network = \"host\" a partition splits whole hosts at the network level (the members have no Docker network of the run to be cut off): target a `host`, or members that fill whole hosts with together = true",
            ));
        }
        // A required number of a packet fault, in its range.
        let required = |name: &str, value: Option<i64>, range: std::ops::RangeInclusive<u64>| -> Result<u64> {
            let value = value.ok_or_else(|| {
                c.err(
                    key(name),
                    format!(
                        "{} needs `{name}`: {} to {}",
                        action.as_str(),
                        range.start(),
                        range.end()
                    ),
                )
            })?;
            c.in_range(&key(name), Some(value), 0, range)
        };
        let traffic = match action {
            FaultAction::PeerBlackhole => Some(crate::fault::PeerTraffic::Blackhole),
            FaultAction::PeerLoss => Some(crate::fault::PeerTraffic::Loss {
                percent: required("loss_percent", f.loss_percent, 1..=100)? as u8,
            }),
            FaultAction::PeerDelay => Some(crate::fault::PeerTraffic::Delay {
                ms: required("latency_ms", f.latency_ms, 1..=60_000)? as u32,
            }),
            _ => None,
        };
        if f.loss_percent.is_some() && action != FaultAction::PeerLoss {
            return Err(c.err(
                key("loss_percent"),
                "`loss_percent` only goes with action = \"peer-loss\"",
            ));
        }
        if f.latency_ms.is_some() && action != FaultAction::PeerDelay {
            return Err(c.err(key("latency_ms"), "`latency_ms` only goes with action = \"peer-delay\""));
        }
        if action.degrades_peer_traffic() && topology.network_mode() == crate::topology::NetworkMode::Host {
            return Err(c.err(
                key("action"),
                format!(
                    "`{}` works from inside a member's own network namespace, and with network = \"host\" the members share their host's: partition a whole host instead",
                    action.as_str()
                ),
            ));
        }
        let until_snapshot = f.until_snapshot.unwrap_or(false);
        if f.until_snapshot.is_some()
            && !(action == FaultAction::PeerBlackhole || (action == FaultAction::Partition && !together))
        {
            return Err(c.err(
                key("until_snapshot"),
                "`until_snapshot` goes with action = \"peer-blackhole\", or \"partition\" of members each alone (together = false)",
            ));
        }
        let snapshot_count = raw.etcd.as_ref().and_then(|e| e.snapshot_count);
        if until_snapshot && !snapshot_count.is_some_and(|n| (1..=10_000).contains(&n)) {
            return Err(c.err(
                key("until_snapshot"),
                "needs [etcd] snapshot_count of 10000 or less (100 is etcd's robustness tests' choice): with etcd's default of 100000 the leader keeps its log for over 100000 entries",
            ));
        }
        if f.wipe.is_some() && action != FaultAction::HostDown {
            return Err(c.err(key("wipe"), "`wipe` only goes with action = \"host-down\""));
        }
        if action.needs_host() && !matches!(target, Target::Host(_)) {
            return Err(c.err(
                key("host"),
                format!(
                    "`{}` acts on a whole host: give `host = ...` (hosts are {})",
                    action.as_str(),
                    topology.hosts().join(", ")
                ),
            ));
        }
        let hit_hosts: Vec<String> = match &target {
            Target::Host(h) => vec![h.clone()],
            Target::Members(names) => names
                .iter()
                .filter_map(|n| topology.member(n).map(|m| m.host.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let down_at = |host: &String| down_hosts.iter().find(|(h, _)| h == host).map(|(_, at)| *at);
        match action {
            FaultAction::HostUp => {
                let host = &hit_hosts[0];
                if down_at(host).is_none() {
                    return Err(c.err(
                        key("action"),
                        format!("host `{host}` is not down here: a `host-up` follows a `host-down` of the same host"),
                    ));
                }
                down_hosts.retain(|(h, _)| h != host);
            }
            _ => {
                if let Some((host, at)) = hit_hosts.iter().find_map(|h| down_at(h).map(|at| (h, at))) {
                    return Err(c.err(
                        key("action"),
                        format!(
                            "host `{host}` is down since faults[{at}] (host-down): nothing on it can be acted on until a `host-up` of it comes first"
                        ),
                    ));
                }
                if action == FaultAction::HostDown {
                    down_hosts.push((hit_hosts[0].clone(), i));
                }
            }
        }
        faults.push(Fault {
            action,
            target,
            delay_ms,
            damage,
            together: action == FaultAction::Partition && together,
            wipe: action == FaultAction::HostDown && f.wipe.unwrap_or(false),
            traffic,
            until_snapshot,
        });
    }

    let r = raw
        .recovery
        .ok_or_else(|| c.err("recovery", "missing [recovery] table with a `procedure`"))?;
    let member_named = |key: &str, name: &str| -> Result<()> {
        match topology.member(name) {
            Some(_) => Ok(()),
            None => Err(c.err(
                key,
                format!("no member named `{name}`; members are {}", topology.names().join(", ")),
            )),
        }
    };
    let from = |procedure: &str| -> Result<String> {
        let from = r.from.clone().ok_or_else(|| {
            c.err(
                "recovery.from",
                format!("{procedure} needs `from`, the surviving member whose data to keep"),
            )
        })?;
        member_named("recovery.from", &from)?;
        Ok(from)
    };
    let restores = matches!(r.procedure.as_str(), "snapshot-restore" | "restore-beside");
    if r.source.is_some() && !restores {
        return Err(c.err("recovery.source", format!("`source` does not apply to {}", r.procedure)));
    }
    let backup = match &raw.backup {
        None => None,
        Some(b) => Some(BackupPlan {
            interval_ms: c.in_range("backup.interval_ms", Some(b.interval_ms), 0, 200..=3_600_000)?,
        }),
    };
    let history = match &raw.history {
        None => None,
        Some(h) => {
            let value_size = c.in_range("history.value_size", h.value_size, 256 * 1024, 1_024..=1_048_576)?;
            let keys = c.in_range("history.keys", h.keys, 64, 1..=100_000)?;
            let bytes = c.in_range("history.bytes", Some(h.bytes), 0, value_size..=(16u64 << 30))?;
            Some(HistoryPlan {
                bytes,
                keys,
                value_size,
            })
        }
    };
    let seed = match &raw.seed {
        None => None,
        Some(seed) => {
            if !seed.prefix.starts_with('/') || seed.prefix.starts_with("/etcd-drill/") {
                return Err(c.err(
                    "seed.prefix",
                    format!("`{}` must start with `/` and stay out of `/etcd-drill/`", seed.prefix),
                ));
            }
            Some(SeedPlan {
                prefix: seed.prefix.clone(),
                keys: c.in_range("seed.keys", Some(seed.keys), 0, 1..=100_000)?,
            })
        }
    };
    if r.from.is_some() && !restores && r.procedure != "force-new-cluster" {
        return Err(c.err("recovery.from", format!("`from` does not apply to {}", r.procedure)));
    }
    if r.members.is_some()
        && !matches!(
            r.procedure.as_str(),
            "member-replace" | "learner-replace" | "purge-member"
        )
    {
        return Err(c.err(
            "recovery.members",
            format!("`members` does not apply to {}", r.procedure),
        ));
    }
    let agent = raw
        .agent
        .as_ref()
        .map(|a| a.compile(path, &topology.names()))
        .transpose()?;
    if (r.stop_at_last_good.is_some() || r.break_chain.is_some()) && r.procedure != "incremental-restore" {
        return Err(c.err(
            "recovery.stop_at_last_good",
            format!("`stop_at_last_good` and `break_chain` do not apply to {}", r.procedure),
        ));
    }
    let procedure = match r.procedure.as_str() {
        "restart" => ProcedureSpec::Restart,
        "repair" => ProcedureSpec::Repair,
        "maintenance" => ProcedureSpec::Maintenance {
            defrag: match r.defrag.as_deref() {
                None | Some("one-at-a-time") => DefragPolicy::OneAtATime,
                Some("all-at-once") => DefragPolicy::AllAtOnce,
                Some(other) => {
                    return Err(c.err(
                        "recovery.defrag",
                        format!("unknown policy `{other}`; use one-at-a-time (the leader last) or all-at-once"),
                    ))
                }
            },
        },
        "quota-recovery" => {
            if !raw.faults.iter().any(|f| f.action == FaultAction::FillQuota.as_str()) {
                return Err(c.err(
                    "recovery.procedure",
                    "quota-recovery recovers from an exhausted quota: add a [[faults]] entry with action = \"fill-quota\"",
                ));
            }
            ProcedureSpec::QuotaRecovery
        }
        "snapshot-restore" | "restore-beside" => {
            let source = match r.source.as_deref().unwrap_or("member") {
                "member" => SnapshotSource::Member {
                    from: from(&r.procedure)?,
                },
                "copied-db" => SnapshotSource::CopiedDb {
                    from: from("a restore from a copied db")?,
                },
                "backup" => {
                    if r.from.is_some() {
                        return Err(c.err("recovery.from", "a restore from a backup takes no `from`"));
                    }
                    if backup.is_none() {
                        return Err(c.err(
                            "recovery.source",
                            "`source = \"backup\"` needs a [backup] table with `interval_ms`",
                        ));
                    }
                    SnapshotSource::NewestBackup
                }
                other => {
                    return Err(c.err(
                        "recovery.source",
                        format!("unknown source `{other}`; use member, backup or copied-db"),
                    ))
                }
            };
            if r.procedure == "restore-beside" {
                ProcedureSpec::RestoreBeside { source }
            } else {
                ProcedureSpec::SnapshotRestore { source }
            }
        }
        "force-new-cluster" => ProcedureSpec::ForceNewCluster {
            from: from("force-new-cluster")?,
        },
        "incremental-restore" => {
            let damage = match r.break_chain.as_deref() {
                None => None,
                Some("remove-delta") => Some(ChainDamage::RemoveDelta),
                Some("corrupt-delta") => Some(ChainDamage::CorruptDelta),
                Some(other) => {
                    return Err(c.err(
                        "recovery.break_chain",
                        format!("unknown damage `{other}`; use remove-delta or corrupt-delta"),
                    ))
                }
            };
            match &agent {
                None => {
                    return Err(c.err(
                        "recovery.procedure",
                        "incremental-restore needs an [agent] table: the backup agent it restores from",
                    ))
                }
                Some(a) if damage.is_some() && a.config.delta_period_ms.is_none() => {
                    return Err(c.err(
                        "recovery.break_chain",
                        "there is no delta chain to break: [agent] has delta_period_ms = 0",
                    ))
                }
                Some(_) => {}
            }
            ProcedureSpec::IncrementalRestore {
                stop_at_last_good: r.stop_at_last_good.unwrap_or(false),
                damage,
            }
        }
        "rolling-upgrade" => {
            let from_image = match r.from_image.as_deref().map(str::trim) {
                Some(image) if !image.is_empty() => image.to_string(),
                _ => {
                    return Err(c.err(
                        "recovery.from_image",
                        "a rolling-upgrade needs `from_image`: the image the members start on (the run's --image is the one they move to)",
                    ))
                }
            };
            let order = match r.order.as_deref() {
                None | Some("followers-first") => UpgradeOrder::FollowersFirst,
                Some("as-listed") => UpgradeOrder::AsListed,
                Some(other) => {
                    return Err(c.err(
                        "recovery.order",
                        format!("unknown order `{other}`; use followers-first or as-listed"),
                    ))
                }
            };
            let members = topology.len() as u64;
            let rollback_after = r
                .rollback_after
                .map(|n| c.in_range("recovery.rollback_after", Some(n), 0, 1..=members))
                .transpose()?
                .map(|n| n as usize);
            let rollback_by_restore = match r.rollback.as_deref() {
                None => false,
                Some("restore") if rollback_after.is_some() => {
                    return Err(c.err(
                        "recovery.rollback",
                        "`rollback = \"restore\"` goes back after a complete upgrade by restoring the pre-upgrade snapshot, `rollback_after` moves members back one at a time during a partial one: keep one of the two",
                    ))
                }
                Some("restore") => true,
                Some(other) => {
                    return Err(c.err(
                        "recovery.rollback",
                        format!("unknown rollback `{other}`; use restore (or rollback_after = N to move members back)"),
                    ))
                }
            };
            ProcedureSpec::RollingUpgrade(UpgradePlan {
                from_image,
                order,
                rollback_after,
                rollback_by_restore,
            })
        }
        "member-replace" | "learner-replace" | "purge-member" => {
            let members = r.members.clone().unwrap_or_default();
            for m in &members {
                member_named("recovery.members", m)?;
            }
            match r.procedure.as_str() {
                "member-replace" => ProcedureSpec::MemberReplace {
                    members,
                    started_as_new: match r.initial_cluster_state.as_deref() {
                        None | Some("existing") => false,
                        Some("new") => true,
                        Some(other) => {
                            return Err(c.err(
                                "recovery.initial_cluster_state",
                                format!(
                                    "unknown state `{other}`; use existing (the runbook) or new (drills the mistake)"
                                ),
                            ))
                        }
                    },
                },
                "learner-replace" => ProcedureSpec::LearnerReplace { members },
                _ => ProcedureSpec::PurgeMember { members },
            }
        }
        other => {
            return Err(c.err(
                "recovery.procedure",
                format!(
                    "unknown procedure `{other}`; use one of {}",
                    ProcedureSpec::NAMES.join(", ")
                ),
            ))
        }
    };
    if r.defrag.is_some() && r.procedure != "maintenance" {
        return Err(c.err(
            "recovery.defrag",
            format!("`defrag` applies to maintenance, not {}", r.procedure),
        ));
    }
    if r.initial_cluster_state.is_some() && r.procedure != "member-replace" {
        return Err(c.err(
            "recovery.initial_cluster_state",
            format!("`initial_cluster_state` applies to member-replace, not {}", r.procedure),
        ));
    }
    let upgrade_key = [
        ("recovery.from_image", r.from_image.is_some()),
        ("recovery.order", r.order.is_some()),
        ("recovery.rollback_after", r.rollback_after.is_some()),
        ("recovery.rollback", r.rollback.is_some()),
    ]
    .into_iter()
    .find_map(|(key, given)| given.then_some(key));
    if let Some(key) = upgrade_key.filter(|_| r.procedure != "rolling-upgrade") {
        return Err(c.err(
            key,
            format!(
                "`from_image`, `order`, `rollback_after` and `rollback` apply to rolling-upgrade, not {}",
                r.procedure
            ),
        ));
    }
    let runs_without_faults = matches!(
        procedure,
        ProcedureSpec::Maintenance { .. } | ProcedureSpec::RollingUpgrade(_)
    );
    if raw.faults.is_empty() && !runs_without_faults {
        return Err(c.err(
            "faults",
            "a drill needs at least one [[faults]] entry (only `maintenance` and `rolling-upgrade` run without)",
        ));
    }
    if r.bump_revision.is_some() && !restores {
        return Err(c.err(
            "recovery.bump_revision",
            "only a snapshot-restore or restore-beside can bump the revision",
        ));
    }
    let restore_by = match r.restore_by.as_deref() {
        None | Some("harness") => RestoreBy::Harness,
        Some("image") if !restores => {
            return Err(c.err(
                "recovery.restore_by",
                format!("`restore_by` does not apply to {}", r.procedure),
            ))
        }
        Some("image") if r.bump_revision.is_some() => {
            return Err(c.err(
                "recovery.restore_by",
                "an image's own restore takes no flags: `restore_by = \"image\"` cannot bump the revision",
            ))
        }
        Some("image") if r.source.as_deref() == Some("copied-db") => {
            return Err(c.err(
                "recovery.restore_by",
                "a copied db file needs --skip-hash-check, which an image's own restore cannot pass: use restore_by = \"harness\"",
            ))
        }
        Some("image") => RestoreBy::Image,
        Some(other) => {
            return Err(c.err(
                "recovery.restore_by",
                format!("unknown value `{other}`; use harness or image"),
            ))
        }
    };
    let recovery = Recovery {
        restore_by,
        procedure,
        delay_ms: c.in_range("recovery.delay_ms", r.delay_ms, 2_000, 0..=600_000)?,
        bump_revision: r
            .bump_revision
            .map(|n| c.in_range("recovery.bump_revision", Some(n), 0, 1..=1_000_000_000_000))
            .transpose()?,
    };

    let e = raw.expect.unwrap_or_default();
    let opt =
        |key: &str, v: Option<i64>| -> Result<Option<u64>> { v.map(|v| c.non_negative(key, Some(v), 0)).transpose() };
    let expect = Expectations {
        quorum_lost: e.quorum_lost,
        max_lost_acked_writes: opt("expect.max_lost_acked_writes", e.max_lost_acked_writes)?,
        rto_budget_ms: opt("expect.rto_budget_ms", e.rto_budget_ms)?,
        healthy_budget_ms: opt("expect.healthy_budget_ms", e.healthy_budget_ms)?,
        max_write_gap_ms: opt("expect.max_write_gap_ms", e.max_write_gap_ms)?,
        max_rpo_ms: opt("expect.max_rpo_ms", e.max_rpo_ms)?,
        watcher_misses_events: e.watcher_misses_events,
        watch_guarantees: match e.watch_guarantees {
            Some(_) if !workload.watch => {
                return Err(c.err(
                    "expect.watch_guarantees",
                    "there is no watcher to judge: set [workload] watch = true",
                ))
            }
            judged => judged,
        },
        lease_expiry: match e.lease_expiry {
            Some(_) if workload.leases == 0 => {
                return Err(c.err(
                    "expect.lease_expiry",
                    "there are no leases to judge: set [workload] leases (and lease_ttl_s)",
                ))
            }
            judged => judged,
        },
        hashkv_equal: e.hashkv_equal.unwrap_or(true),
        leases_kept: match e.leases_kept {
            Some(_) if workload.leases == 0 => {
                return Err(c.err(
                    "expect.leases_kept",
                    "there are no leases to keep: set [workload] leases (and lease_ttl_s)",
                ))
            }
            kept => kept,
        },
        cluster_version: match e.cluster_version.as_deref() {
            None => None,
            Some(_) if !matches!(recovery.procedure, ProcedureSpec::RollingUpgrade(_)) => {
                return Err(c.err(
                    "expect.cluster_version",
                    "`cluster_version` is checked after a rolling-upgrade only",
                ))
            }
            Some("new") if matches!(&recovery.procedure, ProcedureSpec::RollingUpgrade(plan) if plan.rollback_after.is_some() || plan.rollback_by_restore) => {
                return Err(c.err(
                    "expect.cluster_version",
                    "`new` cannot hold after a rollback (`rollback_after` or `rollback`): the cluster ends on from_image; use old",
                ))
            }
            Some("new") => Some(ExpectedClusterVersion::New),
            Some("old") => Some(ExpectedClusterVersion::Old),
            Some(other) => {
                return Err(c.err(
                    "expect.cluster_version",
                    format!("unknown value `{other}`; use new or old"),
                ))
            }
        },
    };
    let regression = RegressionBudget::compile(
        &raw.regression.unwrap_or_default(),
        &RegressionBudget::default(),
        path,
        "regression.",
    )?;

    let etcd = ServerSettings {
        snapshot_count: raw
            .etcd
            .as_ref()
            .and_then(|e| e.snapshot_count)
            .map(|n| c.in_range("etcd.snapshot_count", Some(n), 0, 1..=100_000_000))
            .transpose()?,
        quota_backend_bytes: raw
            .etcd
            .as_ref()
            .and_then(|e| e.quota_backend_bytes)
            .map(|n| {
                c.in_range(
                    "etcd.quota_backend_bytes",
                    Some(n),
                    0,
                    MIN_QUOTA_BYTES..=MAX_QUOTA_BYTES,
                )
            })
            .transpose()?,
    };
    if let Some(i) = faults.iter().position(|f: &Fault| f.action == FaultAction::FillQuota) {
        match etcd.quota_backend_bytes {
            None => {
                return Err(c.err(
                    format!("faults[{i}].action"),
                    "`fill-quota` needs a small quota to fill: set [etcd] quota_backend_bytes (for example 16777216, 16 MiB)",
                ))
            }
            Some(quota) if quota > MAX_FILLED_QUOTA_BYTES => {
                return Err(c.err(
                    "etcd.quota_backend_bytes",
                    format!("`fill-quota` writes until the quota is full: keep the quota at most {MAX_FILLED_QUOTA_BYTES} bytes (1 GiB) with it, not {quota}"),
                ))
            }
            Some(_) => {}
        }
        if recovery.procedure != ProcedureSpec::QuotaRecovery {
            return Err(c.err(
                format!("faults[{i}].action"),
                format!(
                    "after `fill-quota` the cluster refuses writes until the alarm is disarmed: use procedure = \"quota-recovery\", not {}",
                    recovery.procedure.name()
                ),
            ));
        }
        if !matches!(&faults[i].target, Target::Members(m) if m.len() == 1) {
            return Err(c.err(
                format!("faults[{i}].members"),
                "`fill-quota` writes through one member: name exactly one in `members`",
            ));
        }
        if expect.quorum_lost.is_some() {
            return Err(c.err(
                "expect.quorum_lost",
                "a drill with `fill-quota` does not probe quorum (every member runs and refuses writes): drop quorum_lost",
            ));
        }
    }
    if let Some(h) = &history {
        // A history of `bytes` makes a backend of some more: refuse one that would fill
        // the quota before the drill begins.
        let quota = etcd.quota_backend_bytes.unwrap_or(DEFAULT_QUOTA_BYTES);
        if h.bytes.saturating_mul(5) / 4 >= quota {
            return Err(c.err(
                "history.bytes",
                format!("{} bytes of history would fill the backend quota ({quota} bytes) before the drill begins: lower it below {}, or raise [etcd] quota_backend_bytes", h.bytes, quota / 5 * 4),
            ));
        }
    }

    Ok(Scenario {
        name,
        description: raw.description.unwrap_or_default(),
        topology,
        workload,
        faults,
        recovery,
        expect,
        backup,
        seed,
        history,
        regression,
        security: Security {
            auth: raw.security.as_ref().and_then(|s| s.auth).unwrap_or(false),
            tls: raw.security.as_ref().and_then(|s| s.tls).unwrap_or(false),
        },
        etcd,
        agent,
    })
}

impl Scenario {
    /// Whether the drill splits hosts at the network level (a partition on host
    /// networking), which needs the network-fault tool image on every daemon of the run.
    pub fn splits_hosts(&self) -> bool {
        self.topology.network_mode() == crate::topology::NetworkMode::Host
            && self
                .faults
                .iter()
                .any(|f| f.action == crate::fault::FaultAction::Partition)
    }

    /// The raw form that compiles back to this scenario; used to write scenario files.
    pub fn to_raw(&self) -> RawScenario {
        let i = |v: u64| Some(v as i64);
        RawScenario {
            name: Some(self.name.clone()),
            description: (!self.description.is_empty()).then(|| self.description.clone()),
            members: self
                .topology
                .members
                .iter()
                .map(|m| RawMember {
                    name: m.name.clone(),
                    host: m.host.clone(),
                })
                .collect(),
            hosts: self
                .topology
                .hosts
                .iter()
                .map(|h| {
                    let tls = h.docker.as_ref().and_then(|d| d.tls.as_ref());
                    let text = |p: &std::path::Path| p.display().to_string();
                    let raw = RawHost {
                        docker: h.docker.as_ref().map(|d| d.url.clone()),
                        address: h.address.clone(),
                        network: Some(h.network.as_str().to_string()),
                        tls_ca: tls.map(|t| text(&t.ca)),
                        tls_cert: tls.map(|t| text(&t.cert)),
                        tls_key: tls.map(|t| text(&t.key)),
                    };
                    (h.name.clone(), raw)
                })
                .collect(),
            workload: Some(RawWorkload {
                writers: i(self.workload.writers as u64),
                rate: i(self.workload.rate as u64),
                put_timeout_ms: i(self.workload.put_timeout_ms),
                value_size: i(self.workload.value_size as u64),
                warmup_ms: i(self.workload.warmup_ms),
                cooldown_ms: i(self.workload.cooldown_ms),
                watch: self.workload.watch.then_some(true),
                leases: (self.workload.leases > 0).then_some(self.workload.leases as i64),
                lease_ttl_s: (self.workload.lease_ttl_s != WorkloadConfig::default().lease_ttl_s)
                    .then_some(self.workload.lease_ttl_s as i64),
                registers: (self.workload.registers > 0).then_some(self.workload.registers as i64),
            }),
            faults: self
                .faults
                .iter()
                .map(|f| {
                    let mut raw = RawFault {
                        action: f.action.as_str().to_string(),
                        delay_ms: i(f.delay_ms),
                        file: f.damage.map(|d| d.file.as_str().to_string()),
                        damage: f.damage.map(|d| d.how.as_str().to_string()),
                        together: (f.action == FaultAction::Partition).then_some(f.together),
                        wipe: (f.action == FaultAction::HostDown && f.wipe).then_some(true),
                        loss_percent: match f.traffic {
                            Some(crate::fault::PeerTraffic::Loss { percent }) => Some(i64::from(percent)),
                            _ => None,
                        },
                        latency_ms: match f.traffic {
                            Some(crate::fault::PeerTraffic::Delay { ms }) => Some(i64::from(ms)),
                            _ => None,
                        },
                        until_snapshot: f.until_snapshot.then_some(true),
                        ..Default::default()
                    };
                    match &f.target {
                        Target::Members(m) => raw.members = Some(m.clone()),
                        Target::Host(h) => raw.host = Some(h.clone()),
                        Target::Leader => raw.role = Some("leader".into()),
                        Target::Followers { count } => {
                            raw.role = Some("followers".into());
                            raw.count = count.map(|c| c as i64);
                        }
                        Target::Random { count } => raw.count = Some(*count as i64),
                    }
                    raw
                })
                .collect(),
            recovery: Some(RawRecovery {
                procedure: self.recovery.procedure.name().to_string(),
                from: match &self.recovery.procedure {
                    ProcedureSpec::SnapshotRestore {
                        source: SnapshotSource::Member { from } | SnapshotSource::CopiedDb { from },
                    }
                    | ProcedureSpec::RestoreBeside {
                        source: SnapshotSource::Member { from } | SnapshotSource::CopiedDb { from },
                    }
                    | ProcedureSpec::ForceNewCluster { from } => Some(from.clone()),
                    _ => None,
                },
                source: match &self.recovery.procedure {
                    ProcedureSpec::SnapshotRestore { source } | ProcedureSpec::RestoreBeside { source } => Some(
                        match source {
                            SnapshotSource::Member { .. } => "member",
                            SnapshotSource::NewestBackup => "backup",
                            SnapshotSource::CopiedDb { .. } => "copied-db",
                        }
                        .to_string(),
                    ),
                    _ => None,
                },
                members: match &self.recovery.procedure {
                    ProcedureSpec::MemberReplace { members, .. }
                    | ProcedureSpec::LearnerReplace { members }
                    | ProcedureSpec::PurgeMember { members } => Some(members.clone()),
                    _ => None,
                },
                defrag: match &self.recovery.procedure {
                    ProcedureSpec::Maintenance { defrag } if *defrag != DefragPolicy::default() => {
                        Some(defrag.as_str().to_string())
                    }
                    _ => None,
                },
                initial_cluster_state: match &self.recovery.procedure {
                    ProcedureSpec::MemberReplace {
                        started_as_new: true, ..
                    } => Some("new".to_string()),
                    _ => None,
                },
                delay_ms: i(self.recovery.delay_ms),
                bump_revision: self.recovery.bump_revision.map(|n| n as i64),
                restore_by: (self.recovery.restore_by == RestoreBy::Image).then(|| "image".to_string()),
                stop_at_last_good: match &self.recovery.procedure {
                    ProcedureSpec::IncrementalRestore { stop_at_last_good, .. } => Some(*stop_at_last_good),
                    _ => None,
                },
                break_chain: match &self.recovery.procedure {
                    ProcedureSpec::IncrementalRestore { damage, .. } => damage.map(|d| d.as_str().to_string()),
                    _ => None,
                },
                from_image: match &self.recovery.procedure {
                    ProcedureSpec::RollingUpgrade(plan) => Some(plan.from_image.clone()),
                    _ => None,
                },
                order: match &self.recovery.procedure {
                    ProcedureSpec::RollingUpgrade(plan) if plan.order != UpgradeOrder::default() => {
                        Some(plan.order.as_str().to_string())
                    }
                    _ => None,
                },
                rollback_after: match &self.recovery.procedure {
                    ProcedureSpec::RollingUpgrade(plan) => plan.rollback_after.map(|n| n as i64),
                    _ => None,
                },
                rollback: match &self.recovery.procedure {
                    ProcedureSpec::RollingUpgrade(plan) if plan.rollback_by_restore => Some("restore".to_string()),
                    _ => None,
                },
            }),
            expect: Some(RawExpect {
                quorum_lost: self.expect.quorum_lost,
                max_lost_acked_writes: self.expect.max_lost_acked_writes.map(|v| v as i64),
                rto_budget_ms: self.expect.rto_budget_ms.map(|v| v as i64),
                healthy_budget_ms: self.expect.healthy_budget_ms.map(|v| v as i64),
                max_write_gap_ms: self.expect.max_write_gap_ms.map(|v| v as i64),
                max_rpo_ms: self.expect.max_rpo_ms.map(|v| v as i64),
                watcher_misses_events: self.expect.watcher_misses_events,
                watch_guarantees: self.expect.watch_guarantees,
                lease_expiry: self.expect.lease_expiry,
                hashkv_equal: Some(self.expect.hashkv_equal),
                leases_kept: self.expect.leases_kept,
                cluster_version: self.expect.cluster_version.map(|v| {
                    match v {
                        ExpectedClusterVersion::New => "new",
                        ExpectedClusterVersion::Old => "old",
                    }
                    .to_string()
                }),
            }),
            backup: self.backup.as_ref().map(|b| RawBackup {
                interval_ms: b.interval_ms as i64,
            }),
            seed: self.seed.as_ref().map(|seed| RawSeed {
                prefix: seed.prefix.clone(),
                keys: seed.keys as i64,
            }),
            history: self.history.map(|h| RawHistory {
                bytes: h.bytes as i64,
                keys: Some(h.keys as i64),
                value_size: Some(h.value_size as i64),
            }),
            regression: Some(self.regression.to_raw()),
            security: (self.security.auth || self.security.tls).then(|| RawSecurity {
                auth: self.security.auth.then_some(true),
                tls: self.security.tls.then_some(true),
            }),
            etcd: (self.etcd != ServerSettings::default()).then(|| RawEtcd {
                snapshot_count: self.etcd.snapshot_count.map(|n| n as i64),
                quota_backend_bytes: self.etcd.quota_backend_bytes.map(|n| n as i64),
            }),
            agent: self.agent.as_ref().map(|a| a.to_raw()),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_raw()).expect("a scenario always serializes to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_str(text: &str) -> Result<Scenario> {
        parse(text, Path::new("scenarios/test.toml"))
    }

    #[test]
    fn builtin_scenarios_compile() {
        for (name, text) in BUILTIN {
            let s = parse(text, Path::new(&format!("scenarios/{name}.toml"))).unwrap();
            assert_eq!(&s.name, name);
            assert_eq!(s.topology.len(), 5);
        }
    }

    #[test]
    fn the_procedure_names_are_one_table() {
        // NAMES (what the parser offers) and ProcedureSpec::name (what runs and reports
        // say) must name the same procedures: the built-in scenarios use every one.
        let mut used: Vec<&str> = BUILTIN
            .iter()
            .map(|(name, text)| {
                let s = parse(text, Path::new(&format!("scenarios/{name}.toml"))).unwrap();
                s.recovery.procedure.name()
            })
            .collect();
        used.sort_unstable();
        used.dedup();
        let mut names = ProcedureSpec::NAMES.to_vec();
        names.sort_unstable();
        assert_eq!(used, names);
    }

    #[test]
    fn every_scenario_file_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(String::from))
            .collect();
        files.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        builtin.sort();
        assert_eq!(files, builtin);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse_str("[recovery]\nprocedure = \"restart\"\n[[faults]]\naction = \"explode\"\nrole = \"leader\"\n")
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("scenarios/test.toml"), "{text}");
        assert!(text.contains("faults[0].action"), "{text}");
        assert!(text.contains("explode"), "{text}");
        assert_eq!(e.exit_class(), crate::error::ExitClass::InvalidInput);

        let e = parse_str("[[faults]]\naction = \"kill\"\nhost = \"Z\"\n[recovery]\nprocedure = \"restart\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("faults[0].host"), "{e}");

        let e = parse_str("[[faults]]\naction = \"kill\"\ncount = 2\n[recovery]\nprocedure = \"snapshot-restore\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("recovery.from"), "{e}");

        let e = parse_str("[workload]\nwriters = -1\n").unwrap_err();
        assert!(e.to_string().contains("workload.writers"), "{e}");
    }

    #[test]
    fn host_tables_give_the_operators_layout_and_round_trip() {
        let text = "[hosts.A]\naddress = \"10.231.0.1\"\nnetwork = \"host\"\n\
                    [hosts.B]\ndocker = \"unix:///run/b.sock\"\naddress = \"10.231.0.2\"\nnetwork = \"host\"\n\
                    [[faults]]\naction = \"kill\"\nhost = \"B\"\n[recovery]\nprocedure = \"restart\"\n";
        let s = parse_str(text).unwrap();
        let urls: Vec<String> = s.topology.members.iter().map(|m| m.peer_url_in("http")).collect();
        assert_eq!(
            urls,
            [
                "http://10.231.0.1:2380",
                "http://10.231.0.1:3380",
                "http://10.231.0.2:2380",
                "http://10.231.0.2:3380",
                "http://10.231.0.2:4380"
            ]
        );
        assert_eq!(
            s.topology.host("B").unwrap().docker_prefix(),
            "DOCKER_HOST=unix:///run/b.sock "
        );
        let again = compile(s.to_raw(), Path::new("scenarios/test.toml")).unwrap();
        assert_eq!(again.topology, s.topology);
    }

    #[test]
    fn host_tables_are_checked_key_by_key() {
        let cases = [
            ("[hosts.A]\nnetwork = \"host\"\n[hosts.B]\n", "hosts.A.address"),
            ("[hosts.A]\nnetwork = \"overlay\"\n[hosts.B]\n", "hosts.A.network"),
            ("[hosts.A]\naddress = \"not-an-ip\"\n[hosts.B]\n", "hosts.A.address"),
            ("[hosts.A]\n", "member `etcd3` lives on host `B`"),
            ("[hosts.A]\n[hosts.B]\n[hosts.C]\n", "hosts.C"),
            ("[hosts.A]\ndocker = \"ssh://root@b\"\n[hosts.B]\n", "forward the remote socket"),
            ("[hosts.A]\ndocker = \"tcp://b:2376\"\n[hosts.B]\n", "needs TLS client certificates"),
            ("[hosts.A]\ndocker = \"http://b\"\n[hosts.B]\n", "hosts.A.docker"),
            ("[hosts.A]\ntls_ca = \"ca.pem\"\n[hosts.B]\n", "all three"),
            (
                "[hosts.A]\n[hosts.B]\ndocker = \"unix:///run/b.sock\"\n",
                "a bridge network does not reach from one daemon to another",
            ),
            (
                "[hosts.A]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n[hosts.B]\n",
                "mixing `bridge` and `host`",
            ),
            (
                "[hosts.A]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n[hosts.B]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n",
                "hosts.B.address",
            ),
        ];
        for (text, expected) in cases {
            let e = parse_str(&format!(
                "{text}[[faults]]\naction = \"kill\"\nhost = \"B\"\n[recovery]\nprocedure = \"restart\"\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
        let partition = "[hosts.A]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n[hosts.B]\naddress = \"10.0.0.2\"\nnetwork = \"host\"\n\
                         [[faults]]\naction = \"partition\"\nmembers = [\"etcd1\"]\n[recovery]\nprocedure = \"repair\"\n";
        let e = parse_str(partition).unwrap_err().to_string();
        assert!(e.contains("faults[0].action") && e.contains("whole hosts"), "{e}");
        parse_str(&partition.replace("members = [\"etcd1\"]", "host = \"A\"")).unwrap();
        let tcp = "[hosts.A]\ndocker = \"tcp://a:2376\"\naddress = \"10.0.0.1\"\nnetwork = \"host\"\ntls_ca = \"certs/ca.pem\"\ntls_cert = \"certs/cert.pem\"\ntls_key = \"certs/key.pem\"\n\
                   [hosts.B]\naddress = \"10.0.0.2\"\nnetwork = \"host\"\n[[faults]]\naction = \"kill\"\nhost = \"B\"\n[recovery]\nprocedure = \"restart\"\n";
        let s = parse_str(tcp).unwrap();
        let tls = s
            .topology
            .host("A")
            .unwrap()
            .docker
            .as_ref()
            .unwrap()
            .tls
            .clone()
            .unwrap();
        assert_eq!(tls.ca, Path::new("scenarios/certs/ca.pem"));
    }

    #[test]
    fn a_host_goes_down_and_comes_back_in_that_order_and_nothing_touches_it_between() {
        let with = |faults: &str| parse_str(&format!("{faults}[recovery]\nprocedure = \"restart\"\n"));
        let down = "[[faults]]\naction = \"host-down\"\nhost = \"B\"\nwipe = true\n";
        let up = "[[faults]]\naction = \"host-up\"\nhost = \"B\"\n";
        let s = with(&format!("{down}{up}")).unwrap();
        assert_eq!(s.faults[0].action, FaultAction::HostDown);
        assert!(s.faults[0].wipe);
        assert_eq!(s.faults[1].action, FaultAction::HostUp);
        let again = compile(s.to_raw(), Path::new("scenarios/test.toml")).unwrap();
        assert_eq!(again.faults, s.faults);
        let cases = [
            (
                "[[faults]]\naction = \"host-down\"\nmembers = [\"etcd3\"]\n".to_string(),
                "faults[0].host",
            ),
            (up.to_string(), "is not down here"),
            (
                format!("{down}[[faults]]\naction = \"start\"\nmembers = [\"etcd4\"]\n"),
                "host `B` is down since faults[0]",
            ),
            (format!("{down}{down}"), "faults[1].action"),
            (
                "[[faults]]\naction = \"kill\"\nhost = \"B\"\nwipe = true\n".to_string(),
                "faults[0].wipe",
            ),
        ];
        for (faults, expected) in cases {
            let e = with(&faults).unwrap_err().to_string();
            assert!(e.contains(expected), "{faults}: {e}");
        }
        // A host down without a host-up stays down for the recovery; the other host is free.
        with(&format!("{down}[[faults]]\naction = \"kill\"\nmembers = [\"etcd1\"]\n")).unwrap();
    }

    #[test]
    fn packet_faults_need_their_numbers_and_a_namespace_of_their_own() {
        let with = |fault: &str| parse_str(&format!("[[faults]]\n{fault}[recovery]\nprocedure = \"repair\"\n"));
        let s = with("action = \"peer-loss\"\nmembers = [\"etcd1\"]\nloss_percent = 30\n").unwrap();
        assert_eq!(
            s.faults[0].traffic,
            Some(crate::fault::PeerTraffic::Loss { percent: 30 })
        );
        let again = compile(s.to_raw(), Path::new("scenarios/test.toml")).unwrap();
        assert_eq!(again.faults, s.faults);
        let cases = [
            (
                "action = \"peer-loss\"\nmembers = [\"etcd1\"]\n",
                "faults[0].loss_percent",
            ),
            (
                "action = \"peer-loss\"\nmembers = [\"etcd1\"]\nloss_percent = 0\n",
                "faults[0].loss_percent",
            ),
            (
                "action = \"peer-delay\"\nmembers = [\"etcd1\"]\n",
                "faults[0].latency_ms",
            ),
            (
                "action = \"kill\"\nmembers = [\"etcd1\"]\nlatency_ms = 5\n",
                "faults[0].latency_ms",
            ),
        ];
        for (fault, expected) in cases {
            let e = with(fault).unwrap_err().to_string();
            assert!(e.contains(expected), "{fault}: {e}");
        }
        let e = with("action = \"peer-blackhole\"\nmembers = [\"etcd1\"]\nuntil_snapshot = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("faults[0].until_snapshot") && e.contains("snapshot_count"),
            "{e}"
        );
        let e = with("action = \"kill\"\nmembers = [\"etcd1\"]\nuntil_snapshot = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("faults[0].until_snapshot"), "{e}");
        let held = parse_str(
            "[etcd]\nsnapshot_count = 100\n[[faults]]\naction = \"partition\"\nmembers = [\"etcd1\"]\nuntil_snapshot = true\n[recovery]\nprocedure = \"repair\"\n",
        )
        .unwrap();
        assert!(held.faults[0].until_snapshot);
        assert_eq!(compile(held.to_raw(), Path::new("x.toml")).unwrap().faults, held.faults);
        let hosts = "[hosts.A]\naddress = \"10.0.0.1\"\nnetwork = \"host\"\n[hosts.B]\naddress = \"10.0.0.2\"\nnetwork = \"host\"\n\
                     [[faults]]\naction = \"peer-blackhole\"\nmembers = [\"etcd1\"]\n[recovery]\nprocedure = \"repair\"\n";
        let e = parse_str(hosts).unwrap_err().to_string();
        assert!(e.contains("faults[0].action") && e.contains("namespace"), "{e}");
    }

    #[test]
    fn a_toml_error_shows_line_column_and_the_line() {
        let e = parse_str("name = \"x\"\n[workload]\nwriters = \"four\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("line 3, column 11"), "{text}");
        assert!(text.contains("\n  writers = \"four\"\n            ^"), "{text}");
        assert_eq!(e.exit_class(), crate::error::ExitClass::InvalidInput);
    }

    #[test]
    fn the_mistakes_compile_and_stay_out_of_the_suite() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/mistakes");
        let mut compiled = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap();
            let s = parse(&text, &path).unwrap();
            assert!(!BUILTIN.iter().any(|(n, _)| *n == s.name), "{} is built in", s.name);
            compiled += 1;
        }
        assert!(compiled >= 1);
    }

    #[test]
    fn incident_keys_are_refused_where_they_cannot_work() {
        let quota =
            "[etcd]\nquota_backend_bytes = 16777216\n[[faults]]\naction = \"fill-quota\"\nmembers = [\"etcd1\"]\n";
        let recovery = "[recovery]\nprocedure = \"quota-recovery\"\n";
        assert!(parse_str(&format!("{quota}{recovery}")).is_ok());
        let cases = [
            (
                format!("[[faults]]\naction = \"fill-quota\"\nmembers = [\"etcd1\"]\n{recovery}"),
                "faults[0].action",
            ),
            (format!("{quota}[recovery]\nprocedure = \"restart\"\n"), "faults[0].action"),
            (
                format!("{}{recovery}", quota.replace("members = [\"etcd1\"]", "host = \"B\"")),
                "faults[0].members",
            ),
            (
                format!("{}{recovery}", quota.replace("16777216", "4294967296")),
                "etcd.quota_backend_bytes",
            ),
            (format!("{quota}{recovery}[expect]\nquorum_lost = false\n"), "expect.quorum_lost"),
            (
                "[[faults]]\naction = \"kill\"\nmembers = [\"etcd1\"]\n[recovery]\nprocedure = \"quota-recovery\"\n".to_string(),
                "recovery.procedure",
            ),
            (
                "[recovery]\nprocedure = \"maintenance\"\n[history]\nbytes = 2147483648\n".to_string(),
                "history.bytes",
            ),
            (
                "[recovery]\nprocedure = \"maintenance\"\n[workload]\nlease_ttl_s = 5\n".to_string(),
                "workload.lease_ttl_s",
            ),
            (
                "[recovery]\nprocedure = \"maintenance\"\n[expect]\nleases_kept = true\n".to_string(),
                "expect.leases_kept",
            ),
            (
                "[recovery]\nprocedure = \"maintenance\"\ndefrag = \"sideways\"\n".to_string(),
                "recovery.defrag",
            ),
            (
                "[[faults]]\naction = \"wipe\"\nmembers = [\"etcd3\"]\n[recovery]\nprocedure = \"learner-replace\"\ninitial_cluster_state = \"new\"\n".to_string(),
                "recovery.initial_cluster_state",
            ),
        ];
        for (text, key) in cases {
            let e = parse_str(&text).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn a_rollback_by_restore_is_one_way_back_and_round_trips() {
        let upgrade = "[recovery]\nprocedure = \"rolling-upgrade\"\nfrom_image = \"etcd-drill/etcd:3.4\"\n";
        let s = parse_str(&format!("{upgrade}rollback = \"restore\"\n")).unwrap();
        let ProcedureSpec::RollingUpgrade(plan) = &s.recovery.procedure else {
            panic!("{:?}", s.recovery.procedure)
        };
        assert!(plan.rollback_by_restore && plan.rollback_after.is_none());
        assert_eq!(parse_str(&s.to_toml()).unwrap(), s);
        let both = parse_str(&format!("{upgrade}rollback = \"restore\"\nrollback_after = 2\n")).unwrap_err();
        assert!(both.to_string().contains("recovery.rollback"), "{both}");
        let unknown = parse_str(&format!("{upgrade}rollback = \"members\"\n")).unwrap_err();
        assert!(unknown.to_string().contains("unknown rollback `members`"), "{unknown}");
        let elsewhere = parse_str("[[faults]]\naction = \"kill\"\nrole = \"leader\"\n[recovery]\nprocedure = \"restart\"\nrollback = \"restore\"\n").unwrap_err();
        assert!(
            elsewhere.to_string().contains("apply to rolling-upgrade"),
            "{elsewhere}"
        );
        assert!(elsewhere.to_string().contains("recovery.rollback"), "{elsewhere}");
        for rollback in ["rollback = \"restore\"\n", "rollback_after = 2\n"] {
            let never = parse_str(&format!("{upgrade}{rollback}[expect]\ncluster_version = \"new\"\n")).unwrap_err();
            assert!(never.to_string().contains("expect.cluster_version"), "{never}");
        }
    }

    #[test]
    fn regression_budgets_default_and_name_their_key() {
        let base = "[[faults]]\naction = \"kill\"\nrole = \"leader\"\n[recovery]\nprocedure = \"restart\"\n";
        assert_eq!(parse_str(base).unwrap().regression, RegressionBudget::default());
        let s = parse_str(&format!(
            "{base}[regression]\nrto_worse_pct = 50\nallow_new_data_loss = true\n"
        ))
        .unwrap();
        assert_eq!(s.regression.rto_worse_pct, 50);
        assert!(s.regression.allow_new_data_loss);
        assert_eq!(s.regression.procedure_worse_pct, 20);
        let e = parse_str(&format!("{base}[regression]\nthroughput_worse_pct = 120\n")).unwrap_err();
        assert!(e.to_string().contains("regression.throughput_worse_pct"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_syntax_give_a_line() {
        let e = parse_str("[[faults]]\naction = \"kill\"\nrole = \"leader\"\nsurprise = 1\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("line 4") && text.contains("surprise"), "{text}");
        let e = parse_str("name = \n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    fn arb_target(members: usize) -> impl Strategy<Value = Target> {
        prop_oneof![
            proptest::sample::subsequence(
                (1..=members).map(|i| format!("etcd{i}")).collect::<Vec<_>>(),
                1..=members
            )
            .prop_map(Target::Members),
            prop_oneof![Just("A".to_string()), Just("B".to_string())].prop_map(Target::Host),
            Just(Target::Leader),
            proptest::option::of(1..=members).prop_map(|count| Target::Followers { count }),
            (1..=members).prop_map(|count| Target::Random { count }),
        ]
    }

    fn arb_scenario() -> impl Strategy<Value = Scenario> {
        let fault = (
            // fill-quota goes with quota-recovery only, and host-down and host-up with
            // a host and with each other; their own tests cover them.
            proptest::sample::select(
                FaultAction::ALL
                    .into_iter()
                    .filter(|a| *a != FaultAction::FillQuota && !a.needs_host())
                    .collect::<Vec<_>>(),
            ),
            arb_target(5),
            0u64..10_000,
        )
            .prop_map(|(action, target, delay_ms)| Fault {
                action,
                target,
                delay_ms,
                damage: (action == FaultAction::Corrupt).then_some(Damage {
                    file: if delay_ms % 2 == 0 {
                        DamagedFile::Wal
                    } else {
                        DamagedFile::Db
                    },
                    how: if delay_ms % 3 == 0 {
                        DamageKind::Truncate
                    } else {
                        DamageKind::Flip
                    },
                }),
                together: action == FaultAction::Partition && delay_ms % 5 == 0,
                wipe: false,
                traffic: match action {
                    FaultAction::PeerBlackhole => Some(crate::fault::PeerTraffic::Blackhole),
                    FaultAction::PeerLoss => Some(crate::fault::PeerTraffic::Loss {
                        percent: (delay_ms % 100) as u8 + 1,
                    }),
                    FaultAction::PeerDelay => Some(crate::fault::PeerTraffic::Delay {
                        ms: (delay_ms % 1000) as u32 + 1,
                    }),
                    _ => None,
                },
                until_snapshot: false,
            });
        (
            "[a-z][a-z0-9-]{0,15}",
            proptest::collection::vec(fault, 1..5),
            prop_oneof![
                Just(ProcedureSpec::Restart),
                Just(ProcedureSpec::Repair),
                Just(ProcedureSpec::Maintenance {
                    defrag: DefragPolicy::OneAtATime
                }),
                Just(ProcedureSpec::Maintenance {
                    defrag: DefragPolicy::AllAtOnce
                }),
                Just(ProcedureSpec::SnapshotRestore {
                    source: SnapshotSource::NewestBackup
                }),
                (1..=5usize).prop_map(|i| ProcedureSpec::SnapshotRestore {
                    source: SnapshotSource::Member {
                        from: format!("etcd{i}")
                    }
                }),
                (1..=5usize).prop_map(|i| ProcedureSpec::RestoreBeside {
                    source: SnapshotSource::Member {
                        from: format!("etcd{i}")
                    }
                }),
                (1..=5usize).prop_map(|i| ProcedureSpec::SnapshotRestore {
                    source: SnapshotSource::CopiedDb {
                        from: format!("etcd{i}")
                    }
                }),
                (1..=5usize).prop_map(|i| ProcedureSpec::ForceNewCluster {
                    from: format!("etcd{i}")
                }),
                (
                    proptest::sample::subsequence(vec!["etcd1".to_string(), "etcd4".to_string()], 0..=2),
                    any::<bool>()
                )
                    .prop_map(|(members, started_as_new)| ProcedureSpec::MemberReplace {
                        members,
                        started_as_new
                    }),
                proptest::sample::subsequence(vec!["etcd2".to_string(), "etcd5".to_string()], 0..=2)
                    .prop_map(|members| ProcedureSpec::LearnerReplace { members }),
            ],
            (1usize..64, 1u32..20_000, 50u64..60_000, 0u64..600_000),
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(0u64..1_000_000),
                any::<bool>(),
            ),
            (0u64..=10_000, 0u64..=100, any::<bool>(), 0u64..=600_000),
        )
            .prop_map(
                |(
                    name,
                    faults,
                    procedure,
                    (writers, rate, put_timeout_ms, delay_ms),
                    (quorum_lost, budget, hashkv_equal),
                    (rto_worse_pct, throughput_worse_pct, allow_new_data_loss, noise_ms),
                )| {
                    let recovery_needs_backup = procedure
                        == ProcedureSpec::SnapshotRestore {
                            source: SnapshotSource::NewestBackup,
                        };
                    Scenario {
                        name,
                        description: "generated".into(),
                        topology: Topology::reference(),
                        workload: WorkloadConfig {
                            writers,
                            rate,
                            put_timeout_ms,
                            ..WorkloadConfig::default()
                        },
                        faults,
                        recovery: Recovery {
                            bump_revision: matches!(procedure, ProcedureSpec::SnapshotRestore { .. })
                                .then_some(1 + delay_ms)
                                .filter(|_| hashkv_equal),
                            procedure,
                            delay_ms,
                            restore_by: RestoreBy::Harness,
                        },
                        expect: Expectations {
                            quorum_lost,
                            max_lost_acked_writes: budget,
                            rto_budget_ms: budget,
                            healthy_budget_ms: None,
                            max_write_gap_ms: budget,
                            max_rpo_ms: budget,
                            watcher_misses_events: quorum_lost,
                            watch_guarantees: None,
                            lease_expiry: None,
                            hashkv_equal,
                            leases_kept: None,
                            cluster_version: None,
                        },
                        // A restore from a backup needs backups; others may have them or not.
                        backup: (budget.is_some() || recovery_needs_backup).then(|| BackupPlan {
                            interval_ms: 200 + delay_ms % 10_000,
                        }),
                        seed: budget.map(|b| SeedPlan {
                            prefix: "/apisix/routes/".into(),
                            keys: 1 + b % 500,
                        }),
                        history: budget.map(|b| HistoryPlan {
                            bytes: 1_048_576 + b,
                            keys: 1 + b % 100,
                            value_size: 1_024 + b % 4_096,
                        }),
                        etcd: ServerSettings {
                            snapshot_count: budget.map(|b| 100 + b),
                            // Always set, and room for the generated history.
                            quota_backend_bytes: Some(64 * MIN_QUOTA_BYTES + budget.unwrap_or(0)),
                        },
                        regression: RegressionBudget {
                            rto_worse_pct,
                            procedure_worse_pct: rto_worse_pct / 2,
                            throughput_worse_pct,
                            allow_new_data_loss,
                            lost_worse_pct: throughput_worse_pct * 3,
                            noise_ms,
                        },
                        security: Security {
                            auth: allow_new_data_loss,
                            tls: hashkv_equal,
                        },
                        agent: None,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn a_scenario_survives_a_round_trip_through_its_file_format(s in arb_scenario()) {
            let text = s.to_toml();
            let back = parse_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(back, s);
        }
    }
}
