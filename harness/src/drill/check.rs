//! What a drill checks after recovery: acknowledged writes that are gone or changed (and
//! the RPO they span), HashKV equal on every member, and the member list against the
//! topology. The accounting is pure; the cluster reads are small async helpers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::drill::measure::RecoveryFigures;
use crate::error::{Error, Result};
use crate::etcd::security::is_unauthenticated;
use crate::etcd::MemberClient;
use crate::readiness::{Seen, Wait};
use crate::scenario::{Expectations, ExpectedClusterVersion, SeedPlan};
use crate::topology::Topology;
use crate::version::EtcdVersion;
use crate::workload::Ledger;

/// How the ledger compares with what the cluster holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLoss {
    pub acked_writes: u64,
    pub failed_writes: u64,
    /// Acknowledged keys that are missing.
    pub lost_acked_writes: u64,
    /// Acknowledged keys present with another value.
    pub wrong_value_writes: u64,
    /// From the send of the earliest lost write to the acknowledgement of the latest one.
    pub rpo_ms: u64,
    /// The lost (or changed) writes' span, in run milliseconds.
    pub lost_span: Option<(u64, u64)>,
    /// Failed puts whose key is present all the same: the cluster applied them.
    pub failed_but_applied: u64,
    /// Up to 20 lost keys, oldest first.
    pub lost_keys_sample: Vec<String>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Application keys seeded before the workload (0 without a [seed] table).
    pub app_keys_expected: u64,
    /// Seeded keys missing or changed after recovery.
    pub app_keys_missing: u64,
}

/// Counts the seeded application keys that are not there with their value.
pub fn account_seed(seed: &SeedPlan, present: &ReadBack) -> (u64, u64) {
    let missing = (0..seed.keys)
        .filter(|i| present.holds(&seed.key(*i), SeedPlan::value(*i).as_bytes()) != Some(true))
        .count() as u64;
    (seed.keys, missing)
}

/// Writes the seeded application keys through the first member that takes them.
pub async fn write_seed(cluster: &Cluster, seed: &SeedPlan) -> Result<()> {
    let client = cluster.healthy_member(&[]).await?;
    for i in 0..seed.keys {
        client
            .put(seed.key(i), SeedPlan::value(i), Duration::from_secs(5))
            .await
            .map_err(|message| Error::Etcd {
                action: "put",
                member: client.name.clone(),
                message,
            })?;
    }
    Ok(())
}

/// Compares every acknowledged write with `present` (key -> value read back).
pub fn account_data_loss(ledger: &Ledger, present: &ReadBack) -> DataLoss {
    let mut loss = DataLoss {
        acked_writes: ledger.acked.len() as u64,
        failed_writes: ledger.failed.len() as u64,
        errors_by_kind: ledger.errors_by_kind(),
        ..DataLoss::default()
    };
    let mut span: Option<(u64, u64)> = None;
    for w in &ledger.acked {
        let key = ledger.key(w);
        let intact = match present.holds(&key, ledger.value(w).as_bytes()) {
            None => {
                loss.lost_acked_writes += 1;
                if loss.lost_keys_sample.len() < 20 {
                    loss.lost_keys_sample.push(key);
                }
                false
            }
            Some(false) => {
                loss.wrong_value_writes += 1;
                false
            }
            Some(true) => true,
        };
        if !intact {
            span = Some(match span {
                None => (w.sent_ms, w.acked_ms),
                Some((from, to)) => (from.min(w.sent_ms), to.max(w.acked_ms)),
            });
        }
    }
    loss.failed_but_applied = ledger
        .failed
        .iter()
        .filter(|f| present.contains(&crate::workload::key_for(&ledger.prefix, f.writer, f.seq)))
        .count() as u64;
    loss.lost_span = span;
    loss.rpo_ms = span.map(|(from, to)| to - from).unwrap_or(0);
    loss
}

/// HashKV of every member at one common revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consistency {
    pub hashkv_equal: bool,
    pub revision: i64,
    pub hashes: BTreeMap<String, u32>,
    pub member_list_matches: bool,
    pub members_listed: Vec<String>,
    pub problems: Vec<String>,
}

/// Waits until every member reports the same revision, then compares HashKV there, and
/// checks that the member list has exactly the topology's names and peer URLs.
pub async fn check_consistency(cluster: &Cluster) -> Result<Consistency> {
    let timeout = Duration::from_secs(2);
    let mut out = Consistency::default();
    let settled = Wait::new(
        "every member to report one revision",
        Duration::from_millis(100),
        Duration::from_secs(10),
    )
    .until(|| async {
        let statuses = join_all(cluster.members.iter().map(|m| m.client.status(timeout))).await;
        let revisions: Vec<i64> = statuses
            .iter()
            .filter_map(|s| s.as_ref().ok().map(|s| s.revision))
            .collect();
        let all_answered = revisions.len() == cluster.members.len();
        match all_answered && revisions.iter().all(|r| *r == revisions[0]) {
            true => Seen::Ready(revisions[0]),
            false => Seen::NotYet(revisions),
        }
    })
    .await;
    let revision = match settled {
        Ok(revision) => revision,
        Err(timed_out) => {
            let revisions = timed_out.last.unwrap_or_default();
            out.problems
                .push(format!("members did not settle on one revision: {revisions:?}"));
            revisions.iter().copied().min().unwrap_or(0)
        }
    };
    out.revision = revision;
    let hashes = join_all(cluster.members.iter().map(|m| m.client.hash_kv(revision, timeout))).await;
    for (m, h) in cluster.members.iter().zip(hashes) {
        match h {
            Ok((hash, _)) => {
                out.hashes.insert(m.spec.name.clone(), hash);
            }
            Err(e) => out.problems.push(e.to_string()),
        }
    }
    let distinct: std::collections::BTreeSet<u32> = out.hashes.values().copied().collect();
    out.hashkv_equal = out.hashes.len() == cluster.members.len() && distinct.len() == 1;

    let mut listed = None;
    for m in &cluster.members {
        if let Ok(list) = m.client.member_list(timeout).await {
            listed = Some(list);
            break;
        }
    }
    let listed = listed.ok_or_else(|| Error::Etcd {
        action: "member list",
        member: "any member".into(),
        message: "no member answered".into(),
    })?;
    let mut got: Vec<(String, Vec<String>)> = listed.iter().map(|l| (l.name.clone(), l.peer_urls.clone())).collect();
    let mut want: Vec<(String, Vec<String>)> = cluster
        .topology
        .members
        .iter()
        .map(|m| (m.name.clone(), vec![m.peer_url_in(cluster.scheme())]))
        .collect();
    got.sort();
    want.sort();
    out.members_listed = got
        .iter()
        .map(|(n, _)| {
            if n.is_empty() {
                "(unstarted)".to_string()
            } else {
                n.clone()
            }
        })
        .collect();
    out.member_list_matches = got == want;
    if !out.member_list_matches {
        out.problems
            .push(format!("member list {got:?} differs from the topology {want:?}"));
    }
    Ok(out)
}

/// The keys read back from the cluster, each with a 64-bit digest of its value rather than
/// the value: a 30-minute drill at 1,000 writes/s reads 1.8 million keys back, and their
/// values would take more memory than the rest of the harness (see `benches/ledger_memory.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    digests: HashMap<String, u64>,
}

impl ReadBack {
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.digests
            .insert(String::from_utf8_lossy(key).into_owned(), digest(value));
    }

    pub fn contains(&self, key: &str) -> bool {
        self.digests.contains_key(key)
    }

    /// None when `key` is absent; else whether its value is `expected`.
    pub fn holds(&self, key: &str, expected: &[u8]) -> Option<bool> {
        self.digests.get(key).map(|d| *d == digest(expected))
    }
}

impl From<&HashMap<String, Vec<u8>>> for ReadBack {
    fn from(values: &HashMap<String, Vec<u8>>) -> ReadBack {
        let mut read = ReadBack::default();
        for (k, v) in values {
            read.insert(k.as_bytes(), v);
        }
        read
    }
}

/// SipHash with fixed keys (std's `DefaultHasher::new`): the same value gives the same
/// digest throughout a run; a collision would need a forged value, not a lost write.
fn digest(value: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Reads every key under the ledger's prefix from the first member that answers, in
/// pages, at one revision.
pub async fn read_back(cluster: &Cluster, prefix: &str) -> Result<ReadBack> {
    let mut last = None;
    for m in &cluster.members {
        let mut read = ReadBack::default();
        match m
            .client
            .for_each_under(prefix, Duration::from_secs(10), |k, v| read.insert(k, v))
            .await
        {
            Ok(_) => return Ok(read),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Etcd {
        action: "get prefix",
        member: "any member".into(),
        message: "the cluster has no members".into(),
    }))
}

/// One expectation of the scenario, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    pub actual: String,
}

impl CheckResult {
    pub fn new(name: &str, passed: bool, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        CheckResult {
            name: name.to_string(),
            passed,
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

/// Judges the watcher's responses against the acknowledged writes still present at the
/// end (a write a restore lost is the data check's finding, not the watch's): the
/// `watch_guarantees` check, which must find no broken guarantee (`expected`), or one.
pub fn check_watch(
    log: &crate::history::watch::WatchLog,
    catch_up: Option<crate::drill::watcher::CatchUp>,
    ledger: &crate::workload::Ledger,
    present: &ReadBack,
    expected: bool,
) -> CheckResult {
    let acknowledged: std::collections::BTreeSet<(i64, String)> = ledger
        .acked
        .iter()
        .map(|w| (w.revision, ledger.key(w)))
        .filter(|(_, key)| present.contains(key))
        .collect();
    let violations = crate::history::watch::check(log, &acknowledged);
    let events: usize = log.responses.iter().map(|r| r.events.len()).sum();
    let caught_up = match catch_up {
        Some(c) if c.caught_up => format!(
            "; it reached the newest acknowledged write {} ms after the writers stopped",
            c.waited_ms
        ),
        Some(c) => format!(
            "; it had not reached the newest acknowledged write {} ms after the writers stopped",
            c.waited_ms
        ),
        None => String::new(),
    };
    let actual = match violations.first() {
        None => format!(
            "{events} events in {} responses: every guarantee kept{caught_up}",
            log.responses.len()
        ),
        Some(first) => format!(
            "{} broken: first {}{caught_up}",
            violations.len(),
            serde_json::to_string(first).unwrap_or_default()
        ),
    };
    CheckResult::new(
        "watch_guarantees",
        violations.is_empty() == expected,
        match expected {
            true => "events in revision order, never twice, no acknowledged write skipped up to a compaction, one response per revision, a resumed watch continuing where it left off",
            false => "a broken watch guarantee (the hazard is there)",
        },
        actual,
    )
}

/// Judges the leases whose fate is known (`judged`: each with whether its key was there
/// when looked at): the `lease_expiry` check, which must find every key following its
/// lease (`expected`), or one that does not.
pub fn check_lease_expiry(judged: &[(crate::history::leases::LeaseRecord, bool)], expected: bool) -> CheckResult {
    // Each lease against what was read when it was judged: the same key read at two
    // moments must not stand for both.
    let violations: Vec<_> = judged
        .iter()
        .flat_map(|(lease, present)| {
            let read: std::collections::BTreeSet<String> = match *present {
                true => lease.keys.iter().cloned().collect(),
                false => Default::default(),
            };
            crate::history::leases::check(std::slice::from_ref(lease), &read)
        })
        .collect();
    let leases: Vec<&crate::history::leases::LeaseRecord> = judged.iter().map(|(l, _)| l).collect();
    let expired = leases.iter().filter(|l| !l.kept_alive).count();
    let actual = match violations.first() {
        None => format!(
            "{} leases judged ({expired} found expired, their keys gone; {} kept alive, their keys there)",
            leases.len(),
            leases.len() - expired
        ),
        Some(first) => format!(
            "{} broken: first {}",
            violations.len(),
            serde_json::to_string(first).unwrap_or_default()
        ),
    };
    CheckResult::new(
        "lease_expiry",
        violations.is_empty() == expected,
        match expected {
            true => "a key of an expired lease gone, a key of a lease kept alive there",
            false => "a key that does not follow its lease",
        },
        actual,
    )
}

/// Writes the registers' history, one operation per line.
pub fn write_history(history: &[crate::history::Operation], path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(crate::Error::io(path))?;
    let mut out = std::io::BufWriter::new(file);
    for op in history {
        serde_json::to_writer(&mut out, op).map_err(|e| crate::Error::io(path)(e.into()))?;
        out.write_all(b"\n").map_err(crate::Error::io(path))?;
    }
    out.flush().map_err(crate::Error::io(path))
}

/// Judges the registers' history (up to `cut_us` when given: operations called before
/// it): the `linearizable` check, naming the first key no order explains and the window
/// of operations none of which could come next.
pub fn check_registers(
    history: &[crate::history::Operation],
    cut_us: Option<u64>,
) -> (CheckResult, crate::history::linearizability::Verdict) {
    let judged: Vec<crate::history::Operation> = history
        .iter()
        .filter(|op| cut_us.is_none_or(|cut| op.called_us < cut))
        .cloned()
        .collect();
    let verdict = crate::history::linearizability::check(&judged, &std::collections::BTreeMap::new());
    let scope = match cut_us {
        Some(cut) => format!(" called before {} ms (the restore's fault)", cut / 1_000),
        None => String::new(),
    };
    let actual = match verdict.violations.first() {
        None if !verdict.undecided.is_empty() => format!(
            "{} operations on {} registers{scope}: undecided for {} (the search explored {} states without finding an order or refuting one; look at history.jsonl)",
            verdict.operations,
            verdict.keys,
            verdict.undecided.join(", "),
            crate::history::linearizability::STATE_BUDGET
        ),
        None => format!(
            "{} operations on {} registers{scope}: linearizable",
            verdict.operations, verdict.keys
        ),
        Some(v) => format!(
            "{} of {} registers not linearizable; {}: {} of {} operations ordered, then none of [{}] fits value {}",
            verdict.violations.len(),
            verdict.keys,
            v.key,
            v.placed,
            v.operations,
            v.window.join("; "),
            v.value_there.as_deref().unwrap_or("absent")
        ),
    };
    let result = CheckResult::new(
        "linearizable",
        verdict.linearizable(),
        "every register's history has an order that respects real time and the register's rules",
        actual,
    );
    (result, verdict)
}

/// Judges the registers' serializable reads (up to `cut_us` when given): the
/// `serializable_reads` check, which fails on a value no write made before the read's
/// answer.
pub fn check_serializable_reads(history: &[crate::history::Operation], cut_us: Option<u64>) -> CheckResult {
    let judged: Vec<crate::history::Operation> = history
        .iter()
        .filter(|op| cut_us.is_none_or(|cut| op.called_us < cut))
        .cloned()
        .collect();
    let reads = judged
        .iter()
        .filter(|op| op.request == crate::history::Request::SerializableGet)
        .count();
    let violations = crate::history::serializable::check(&judged);
    let actual = match violations.first() {
        None => format!("{reads} serializable reads, each of a value written before its answer"),
        Some(v) => format!(
            "{} of {reads} read a value from nowhere: first {} (value {} first written at {})",
            violations.len(),
            v.read,
            v.value,
            v.written_at_us
                .map(|us| format!("{} ms", us / 1_000))
                .unwrap_or_else(|| "no time: never".into())
        ),
    };
    CheckResult::new(
        "serializable_reads",
        violations.is_empty(),
        "every serializable read returns a value written to its register before the read's answer (stale is allowed)",
        actual,
    )
}

/// Compares a drill's figures with the scenario's expectations: one result per check.
/// After a rolling upgrade: is the cluster version at the minor of the image upgraded to
/// (`new`), or still at the one it started on (`old`)?
fn cluster_version_check(expected: ExpectedClusterVersion, figures: &RecoveryFigures) -> CheckResult {
    let minor = |v: &str| EtcdVersion::parse(v).map(|v| v.minor_line());
    let upgrade = figures.outcome.as_ref().and_then(|o| o.upgrade.as_ref());
    let (word, wanted) = match (expected, upgrade) {
        (ExpectedClusterVersion::New, Some(u)) => ("new", minor(&u.to_version)),
        (ExpectedClusterVersion::Old, Some(u)) => ("old", minor(&u.from_version)),
        (ExpectedClusterVersion::New, None) => ("new", None),
        (ExpectedClusterVersion::Old, None) => ("old", None),
    };
    let actual = upgrade.and_then(|u| u.cluster_version_after.clone());
    CheckResult::new(
        "cluster_version",
        wanted.is_some() && actual.as_deref().and_then(minor) == wanted,
        format!(
            "the {word} minor ({}) after the upgrade",
            wanted.as_deref().unwrap_or("unknown")
        ),
        actual.unwrap_or_else(|| "unread".into()),
    )
}

pub fn judge(
    expect: &Expectations,
    topology: &Topology,
    figures: &RecoveryFigures,
    data: &DataLoss,
    consistency: &Consistency,
) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    if let (Some(expected), Some(actual)) = (expect.quorum_lost, figures.quorum_lost) {
        checks.push(CheckResult::new(
            "quorum_lost",
            expected == actual,
            format!("quorum lost: {expected}"),
            format!("quorum lost: {actual}"),
        ));
    }
    checks.push(CheckResult::new(
        "writes_resumed",
        figures.rto_ms.is_some(),
        "an acknowledged write after the fault",
        match figures.rto_ms {
            Some(ms) => format!("first after {ms} ms"),
            None => "none".into(),
        },
    ));
    if let Some(budget) = expect.rto_budget_ms {
        checks.push(CheckResult::new(
            "rto_budget",
            figures.rto_ms.is_some_and(|r| r <= budget),
            format!("rto_ms <= {budget}"),
            figures
                .rto_ms
                .map(|r| r.to_string())
                .unwrap_or_else(|| "no write resumed".into()),
        ));
    }
    checks.push(CheckResult::new(
        "all_healthy",
        figures.unhealthy.is_none(),
        "every member answers a linearizable read after the procedure",
        match (&figures.unhealthy, figures.healthy_ms) {
            (Some(why), _) => why.clone(),
            (None, Some(ms)) => format!("all healthy {ms} ms after the fault"),
            (None, None) => "not measured".into(),
        },
    ));
    if let Some(budget) = expect.healthy_budget_ms {
        checks.push(CheckResult::new(
            "healthy_budget",
            figures.healthy_ms.is_some_and(|h| h <= budget),
            format!("healthy_ms <= {budget}"),
            figures
                .healthy_ms
                .map(|h| h.to_string())
                .unwrap_or_else(|| "never healthy".into()),
        ));
    }
    if let Some(expected) = expect.cluster_version {
        checks.push(cluster_version_check(expected, figures));
    }
    if let Some(max) = expect.max_write_gap_ms {
        checks.push(CheckResult::new(
            "max_write_gap",
            figures.max_write_gap_ms <= max,
            format!("<= {max} ms without an acknowledged write"),
            format!("{} ms", figures.max_write_gap_ms),
        ));
    }
    if let Some(max) = expect.max_lost_acked_writes {
        checks.push(CheckResult::new(
            "lost_acked_writes",
            data.lost_acked_writes <= max,
            format!("<= {max}"),
            format!("{} of {}", data.lost_acked_writes, data.acked_writes),
        ));
    }
    if let Some(max) = expect.max_rpo_ms {
        checks.push(CheckResult::new(
            "rpo",
            data.rpo_ms <= max,
            format!("rpo_ms <= {max}"),
            format!("{} ms", data.rpo_ms),
        ));
    }
    if let (Some(expected), Some(watch)) = (expect.watcher_misses_events, &figures.watch) {
        let missed = watch.missed_after_recovery;
        checks.push(CheckResult::new(
            "watcher_missed_events",
            (missed > 0) == expected,
            if expected {
                "the resuming watcher misses writes made after the restore (the hazard is there)".to_string()
            } else {
                "the resuming watcher misses no write made after the recovery".to_string()
            },
            format!("{missed} missed, {} re-lists, {} resumes", watch.relists, watch.resumes),
        ));
    }
    if data.app_keys_expected > 0 {
        checks.push(CheckResult::new(
            "app_keys_intact",
            data.app_keys_missing == 0,
            format!("all {} seeded application keys", data.app_keys_expected),
            format!("{} missing or changed", data.app_keys_missing),
        ));
    }
    checks.push(CheckResult::new(
        "no_changed_values",
        data.wrong_value_writes == 0,
        "every surviving acknowledged key has the value written",
        format!("{} changed", data.wrong_value_writes),
    ));
    if expect.hashkv_equal {
        let hashes: Vec<String> = consistency.hashes.iter().map(|(m, h)| format!("{m}={h}")).collect();
        checks.push(CheckResult::new(
            "hashkv_equal",
            consistency.hashkv_equal,
            "the same HashKV on every member",
            format!("at revision {}: {}", consistency.revision, hashes.join(" ")),
        ));
    }
    if let (Some(kept), Some(leases)) = (expect.leases_kept, &figures.leases) {
        checks.push(CheckResult::new(
            "leases_kept",
            leases.expired_at_ms.is_empty() == kept,
            match kept {
                true => format!("none of the {} leases kept alive expires", leases.leases),
                false => format!(
                    "one of the {} leases kept alive expires (the hazard is shown)",
                    leases.leases
                ),
            },
            format!(
                "{} expired{}; {} renewals, longest between two {} ms (TTL {} s)",
                leases.expired_at_ms.len(),
                match leases.expired_at_ms.first() {
                    Some(at) => format!(" (first at {at} ms)"),
                    None => String::new(),
                },
                leases.renewals,
                leases.longest_renewal_gap_ms,
                leases.ttl_s
            ),
        ));
    }
    if let Some(quota) = figures.outcome.as_ref().and_then(|o| o.quota.as_ref()) {
        checks.push(CheckResult::new(
            "nospace_alarm_raised",
            quota.alarms.iter().any(|a| a.ends_with("NOSPACE")),
            "a NOSPACE alarm listed once the quota is full",
            if quota.alarms.is_empty() {
                "no alarm".to_string()
            } else {
                quota.alarms.join(", ")
            },
        ));
        checks.push(CheckResult::new(
            "reads_during_alarm",
            quota.read_during_alarm,
            "a linearizable read served while the alarm is raised",
            if quota.read_during_alarm { "served" } else { "refused" },
        ));
        checks.push(CheckResult::new(
            "alarm_disarmed",
            quota.disarmed > 0 && figures.rto_ms.is_some(),
            "the alarm disarmed and writes accepted again",
            format!(
                "{} alarm(s) disarmed; read-only for {}",
                quota.disarmed,
                quota
                    .read_only_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "the rest of the run".into())
            ),
        ));
    }
    checks.push(CheckResult::new(
        "member_list",
        consistency.member_list_matches,
        topology.names().join(","),
        consistency.members_listed.join(","),
    ));
    checks
}

/// After recovery: a request without credentials must be refused (auth is still on),
/// and a fresh login with the root password must work (the password from the snapshot).
pub async fn check_auth(cluster: &mut Cluster) -> CheckResult {
    let expected = "auth on after recovery: anonymous requests refused, root password accepted";
    let Some(password) = cluster.auth.clone() else {
        return CheckResult::new("auth_after_recovery", false, expected, "auth was never turned on");
    };
    let started = Instant::now();
    let endpoint = cluster.members[0].client.endpoint.clone();
    let timeout = Duration::from_secs(5);
    let anonymous = match MemberClient::connect_as("anonymous", &endpoint, None, cluster.tls.as_deref()).await {
        Ok(client) => client
            .put("/etcd-drill/auth-probe".into(), "x".into(), timeout)
            .await
            .err()
            .filter(|e| is_unauthenticated(e)),
        Err(e) => Some(e.to_string()).filter(|e| is_unauthenticated(e)),
    };
    let login = MemberClient::connect_as("root-login", &endpoint, Some(&password), cluster.tls.as_deref()).await;
    let refused = anonymous.is_some();
    let accepted = login.is_ok();
    let actual = format!(
        "anonymous put: {}; root login: {}",
        anonymous
            .as_deref()
            .map(|e| format!("refused ({e})"))
            .unwrap_or_else(|| "NOT refused".into()),
        match &login {
            Ok(_) => "accepted".to_string(),
            Err(e) => format!("failed ({e})"),
        }
    );
    cluster.record(
        "check that auth is still on and the root password works",
        cluster.with_credentials(format!("etcdctl --endpoints={endpoint} auth status"))
            + "   # and without --user, `put /etcd-drill/auth-probe x` is refused",
        started,
        refused && accepted,
    );
    CheckResult::new("auth_after_recovery", refused && accepted, expected, actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{value_for, AckedWrite, FailedWrite};
    use proptest::prelude::*;

    fn ledger(n: u64) -> Ledger {
        Ledger {
            prefix: "/t/".into(),
            value_size: 32,
            acked: (1..=n)
                .map(|seq| AckedWrite {
                    writer: 0,
                    seq,
                    revision: seq as i64 + 1,
                    sent_ms: seq * 10,
                    acked_ms: seq * 10 + 3,
                    member: "etcd1".into(),
                })
                .collect(),
            failed: vec![],
        }
    }

    fn everything(l: &Ledger) -> HashMap<String, Vec<u8>> {
        l.acked.iter().map(|w| (l.key(w), l.value(w).into_bytes())).collect()
    }

    #[test]
    fn a_missing_key_is_lost_and_spans_its_time() {
        let l = ledger(10);
        let mut present = everything(&l);
        present.remove(&l.key(&l.acked[4]));
        present.remove(&l.key(&l.acked[6]));
        let loss = account_data_loss(&l, &ReadBack::from(&present));
        assert_eq!(loss.lost_acked_writes, 2);
        assert_eq!(loss.lost_span, Some((50, 73)));
        assert_eq!(loss.rpo_ms, 23);
        assert_eq!(loss.lost_keys_sample, vec!["/t/w00/0000000005", "/t/w00/0000000007"]);
    }

    #[test]
    fn a_changed_value_is_counted_apart() {
        let l = ledger(3);
        let mut present = everything(&l);
        present.insert(l.key(&l.acked[0]), b"tampered".to_vec());
        let loss = account_data_loss(&l, &ReadBack::from(&present));
        assert_eq!((loss.lost_acked_writes, loss.wrong_value_writes), (0, 1));
    }

    #[test]
    fn failed_writes_that_landed_are_reported_not_lost() {
        let mut l = ledger(2);
        l.failed.push(FailedWrite {
            writer: 0,
            seq: 3,
            sent_ms: 40,
            failed_ms: 540,
            kind: "timeout".into(),
        });
        let mut present = everything(&l);
        present.insert("/t/w00/0000000003".into(), value_for(0, 3, 32).into_bytes());
        let loss = account_data_loss(&l, &ReadBack::from(&present));
        assert_eq!(
            (loss.lost_acked_writes, loss.failed_but_applied, loss.failed_writes),
            (0, 1, 1)
        );
    }

    fn passing_inputs() -> (Expectations, RecoveryFigures, DataLoss, Consistency) {
        let expect = Expectations {
            quorum_lost: Some(true),
            max_lost_acked_writes: Some(0),
            rto_budget_ms: Some(10_000),
            healthy_budget_ms: Some(20_000),
            max_write_gap_ms: Some(15_000),
            max_rpo_ms: Some(2_500),
            watcher_misses_events: None,
            watch_guarantees: None,
            lease_expiry: None,
            hashkv_equal: true,
            leases_kept: None,
            cluster_version: None,
        };
        let figures = RecoveryFigures {
            rto_ms: Some(6_000),
            healthy_ms: Some(7_000),
            max_write_gap_ms: 6_100,
            quorum_lost: Some(true),
            ..RecoveryFigures::default()
        };
        let data = DataLoss {
            acked_writes: 500,
            ..DataLoss::default()
        };
        let names = Topology::reference().names();
        let consistency = Consistency {
            hashkv_equal: true,
            revision: 510,
            hashes: names.iter().map(|n| (n.clone(), 42)).collect(),
            member_list_matches: true,
            members_listed: names,
            problems: vec![],
        };
        (expect, figures, data, consistency)
    }

    fn failed(checks: &[CheckResult]) -> Vec<&str> {
        checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn every_check_passes_on_good_figures_and_each_can_fail() {
        let topology = Topology::reference();
        let (expect, figures, data, consistency) = passing_inputs();
        let all = judge(&expect, &topology, &figures, &data, &consistency);
        assert_eq!(all.len(), 11);
        assert!(failed(&all).is_empty(), "{all:?}");

        let mut f = figures.clone();
        f.quorum_lost = Some(false);
        assert_eq!(
            failed(&judge(&expect, &topology, &f, &data, &consistency)),
            ["quorum_lost"]
        );

        let mut f = figures.clone();
        f.rto_ms = None;
        assert_eq!(
            failed(&judge(&expect, &topology, &f, &data, &consistency)),
            ["writes_resumed", "rto_budget"]
        );

        let mut f = figures.clone();
        f.rto_ms = Some(10_001);
        assert_eq!(
            failed(&judge(&expect, &topology, &f, &data, &consistency)),
            ["rto_budget"]
        );

        let mut f = figures.clone();
        f.healthy_ms = Some(20_001);
        assert_eq!(
            failed(&judge(&expect, &topology, &f, &data, &consistency)),
            ["healthy_budget"]
        );

        let mut f = figures.clone();
        f.max_write_gap_ms = 15_001;
        assert_eq!(
            failed(&judge(&expect, &topology, &f, &data, &consistency)),
            ["max_write_gap"]
        );

        let d = DataLoss {
            lost_acked_writes: 1,
            ..data.clone()
        };
        assert_eq!(
            failed(&judge(&expect, &topology, &figures, &d, &consistency)),
            ["lost_acked_writes"]
        );

        let d = DataLoss {
            wrong_value_writes: 1,
            ..data.clone()
        };
        assert_eq!(
            failed(&judge(&expect, &topology, &figures, &d, &consistency)),
            ["no_changed_values"]
        );

        // A member left out of a restore: its hash differs and the member list is short.
        let mut c = consistency.clone();
        c.hashes.insert("etcd5".into(), 7);
        c.hashkv_equal = false;
        c.member_list_matches = false;
        c.members_listed.pop();
        assert_eq!(
            failed(&judge(&expect, &topology, &figures, &data, &c)),
            ["hashkv_equal", "member_list"]
        );
    }

    #[test]
    fn optional_checks_only_run_when_expected() {
        let topology = Topology::reference();
        let (_, figures, data, consistency) = passing_inputs();
        let expect = Expectations {
            quorum_lost: None,
            max_lost_acked_writes: None,
            rto_budget_ms: None,
            healthy_budget_ms: None,
            max_write_gap_ms: None,
            max_rpo_ms: None,
            watcher_misses_events: None,
            watch_guarantees: None,
            lease_expiry: None,
            hashkv_equal: false,
            leases_kept: None,
            cluster_version: None,
        };
        let names: Vec<String> = judge(&expect, &topology, &figures, &data, &consistency)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["writes_resumed", "all_healthy", "no_changed_values", "member_list"]
        );
    }

    #[test]
    fn a_member_never_healthy_fails_all_healthy_with_the_reason() {
        let topology = Topology::reference();
        let (expect, mut figures, data, consistency) = passing_inputs();
        figures.healthy_ms = None;
        figures.unhealthy = Some("etcd3 exited with code 1: member has already been bootstrapped".into());
        let checks = judge(&expect, &topology, &figures, &data, &consistency);
        assert_eq!(failed(&checks), ["all_healthy", "healthy_budget"]);
        let check = checks.iter().find(|c| c.name == "all_healthy").unwrap();
        assert!(check.actual.contains("already been bootstrapped"), "{check:?}");
    }

    #[test]
    fn a_key_that_outlives_its_lease_fails_lease_expiry() {
        use crate::history::leases::LeaseRecord;
        let lease = |id, kept_alive| LeaseRecord {
            id,
            kept_alive,
            keys: vec![format!("/l/{id}")],
        };
        let right = [(lease(1, true), true), (lease(2, false), false)];
        assert!(check_lease_expiry(&right, true).passed);
        assert!(!check_lease_expiry(&right, false).passed);
        let planted = [(lease(1, true), true), (lease(2, false), true)];
        let result = check_lease_expiry(&planted, true);
        assert!(!result.passed);
        assert!(
            result.actual.contains("outlived-its-lease") && result.actual.contains("/l/2"),
            "{}",
            result.actual
        );
        // One key read twice: gone when its lease expired, there under a later lease. Each
        // reading judges its own lease only.
        let same_key = |id, kept_alive| LeaseRecord {
            id,
            kept_alive,
            keys: vec!["/l/shared".into()],
        };
        let apart = [(same_key(3, false), false), (same_key(4, true), true)];
        assert!(check_lease_expiry(&apart, true).passed);
    }

    #[test]
    fn a_stale_read_in_the_registers_history_fails_linearizable() {
        use crate::history::{Operation, Request, Response};
        let op = |client, request, response, called_us, returned_us| Operation {
            client,
            key: "/r/0".into(),
            request,
            response,
            called_us,
            returned_us,
        };
        let history = vec![
            op(0, Request::Put { value: "a".into() }, Response::Done, 0, 10),
            op(1, Request::Put { value: "b".into() }, Response::Done, 20, 30),
            op(
                2,
                Request::Get,
                Response::Read {
                    value: Some("a".into()),
                },
                40,
                50,
            ),
        ];
        let (result, verdict) = check_registers(&history, None);
        assert!(!result.passed && verdict.violations.len() == 1, "{}", result.actual);
        assert!(result.actual.contains("/r/0"), "{}", result.actual);
        // Cut before the stale read, the rest is linearizable.
        assert!(check_registers(&history, Some(35)).0.passed);
    }

    #[test]
    fn an_expired_lease_fails_leases_kept_and_a_kept_one_fails_the_hazard() {
        let topology = Topology::reference();
        let (mut expect, mut figures, data, consistency) = passing_inputs();
        figures.leases = Some(crate::workload::leases::LeaseFigures {
            leases: 4,
            ttl_s: 5,
            renewals: 20,
            ..Default::default()
        });
        expect.leases_kept = Some(true);
        assert!(failed(&judge(&expect, &topology, &figures, &data, &consistency)).is_empty());
        if let Some(leases) = figures.leases.as_mut() {
            leases.expired_at_ms.push(12_345);
        }
        let checks = judge(&expect, &topology, &figures, &data, &consistency);
        assert_eq!(failed(&checks), ["leases_kept"]);
        assert!(checks.iter().any(|c| c.actual.contains("first at 12345 ms")));
        expect.leases_kept = Some(false);
        assert!(failed(&judge(&expect, &topology, &figures, &data, &consistency)).is_empty());
        expect.leases_kept = None;
        let names: Vec<String> = judge(&expect, &topology, &figures, &data, &consistency)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(!names.iter().any(|n| n == "leases_kept"), "{names:?}");
    }

    #[test]
    fn the_quota_checks_fail_without_an_alarm_a_read_or_a_disarm() {
        let topology = Topology::reference();
        let (expect, figures, data, consistency) = passing_inputs();
        let good = crate::procedure::QuotaFigures {
            alarms: vec!["memberID:8e9e05c52164694d alarm:NOSPACE".into()],
            read_during_alarm: true,
            disarmed: 1,
            read_only_ms: Some(2_400),
            ..Default::default()
        };
        let with = |quota: crate::procedure::QuotaFigures| {
            let mut f = figures.clone();
            f.rto_ms = f.rto_ms.filter(|_| quota.disarmed > 0);
            f.outcome = Some(crate::procedure::ProcedureOutcome {
                quota: Some(quota),
                ..Default::default()
            });
            f
        };
        assert!(failed(&judge(&expect, &topology, &with(good.clone()), &data, &consistency)).is_empty());
        let none = crate::procedure::QuotaFigures {
            alarms: Vec::new(),
            ..good.clone()
        };
        assert_eq!(
            failed(&judge(&expect, &topology, &with(none), &data, &consistency)),
            ["nospace_alarm_raised"]
        );
        let unread = crate::procedure::QuotaFigures {
            read_during_alarm: false,
            ..good.clone()
        };
        assert_eq!(
            failed(&judge(&expect, &topology, &with(unread), &data, &consistency)),
            ["reads_during_alarm"]
        );
        let never = crate::procedure::QuotaFigures { disarmed: 0, ..good };
        assert_eq!(
            failed(&judge(&expect, &topology, &with(never), &data, &consistency)),
            ["writes_resumed", "rto_budget", "alarm_disarmed"]
        );
    }

    #[test]
    fn seeded_keys_must_be_there_with_their_value() {
        let seed = SeedPlan {
            prefix: "/apisix/routes/".into(),
            keys: 3,
        };
        let mut present: HashMap<String, Vec<u8>> =
            (0..3).map(|i| (seed.key(i), SeedPlan::value(i).into_bytes())).collect();
        assert_eq!(account_seed(&seed, &ReadBack::from(&present)), (3, 0));
        present.remove(&seed.key(1));
        present.insert(seed.key(2), b"other".to_vec());
        assert_eq!(account_seed(&seed, &ReadBack::from(&present)), (3, 2));
    }

    proptest! {
        #[test]
        fn a_present_write_is_never_reported_lost(n in 1u64..200, removed in proptest::collection::btree_set(1u64..200, 0..50)) {
            let l = ledger(n);
            let mut present = everything(&l);
            for seq in &removed {
                present.remove(&format!("/t/w00/{seq:010}"));
            }
            let loss = account_data_loss(&l, &ReadBack::from(&present));
            let really_removed = removed.iter().filter(|s| **s <= n).count() as u64;
            prop_assert_eq!(loss.lost_acked_writes, really_removed);
            prop_assert_eq!(loss.wrong_value_writes, 0);
            for key in &loss.lost_keys_sample {
                prop_assert!(!present.contains_key(key));
            }
        }
    }
}
