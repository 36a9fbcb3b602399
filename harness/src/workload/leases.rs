//! Leases the application keeps alive while the drill runs: each lease has a short TTL
//! and one key attached, and is renewed every third of its TTL, as a client library's
//! keep-alive does (one `LeaseKeepAlive` per renewal, like `etcdctl lease keep-alive
//! --once`). A lease that etcd no longer knows, or whose key has vanished, expired while
//! it was being kept alive: that is recorded, and a new lease takes its place. Each lease
//! has a key of its own (the keeper's number and the lease's ID), so that a put answered
//! late, or never, ties nothing to another lease. At the end every lease is revoked.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::etcd::{is_lease_gone, ClientSet};

/// What the keepers saw, for the report and the `leases_kept` check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFigures {
    pub leases: usize,
    pub ttl_s: u64,
    pub renewals: u64,
    pub failed_renewals: u64,
    /// When (run milliseconds) a lease kept alive was found expired.
    pub expired_at_ms: Vec<u64>,
    /// The longest time between two successful renewals of one lease.
    pub longest_renewal_gap_ms: u64,
    /// Leases whose fate is known, each with whether its key was there when it was
    /// looked at: a lease found expired (its key read right then), and a lease renewed
    /// within its TTL up to the end (its key read before the revoke). A lease whose put
    /// went unanswered is left to expire unjudged: the put may land later, or never. For
    /// the `lease_expiry` check (`history::leases`).
    #[serde(skip)]
    pub judged: Vec<(crate::history::leases::LeaseRecord, bool)>,
}

/// Running lease keepers; `stop` ends them and hands back what they saw.
pub struct LeaseKeepers {
    stop: tokio::sync::watch::Sender<bool>,
    keepers: Vec<JoinHandle<LeaseFigures>>,
    ttl_s: u64,
}

impl LeaseKeepers {
    /// Starts `leases` keepers, each with its own lease of `ttl_s` seconds and a key under
    /// `prefix`, talking to the application's members.
    pub fn start(leases: usize, ttl_s: u64, prefix: String, members: ClientSet, clock: Clock) -> LeaseKeepers {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let every = Duration::from_millis(ttl_s * 1000 / 3);
        // A renewal that takes longer than this failed; never longer than a renewal period.
        let timeout = every.min(Duration::from_secs(2));
        let keepers = (0..leases)
            .map(|i| {
                let (mut stopped, members) = (stopped.clone(), members.clone());
                let prefix = prefix.clone();
                tokio::spawn(async move {
                    let mut seen = LeaseFigures::default();
                    let mut cursor = i;
                    // The lease kept alive and its key.
                    let mut lease: Option<(i64, String)> = None;
                    // When the last renewal (or the grant) that was answered was asked for:
                    // the leader refreshed the lease no earlier than that, so the lease
                    // lives at least a TTL from then.
                    let mut last_renewed = clock.now_ms();
                    while !*stopped.borrow() {
                        let current = members.current();
                        let member = &current[cursor % current.len()];
                        match &lease {
                            None => {
                                // A lease and its key; retried on the next tick if either
                                // fails. A lease whose put went unanswered is not kept: it
                                // expires with its key, if the put ever lands.
                                let asked = clock.now_ms();
                                if let Ok(id) = member.lease_grant(ttl_s as i64, timeout).await {
                                    let key = lease_key(&prefix, i, id);
                                    if member
                                        .put_with_lease(key.clone(), "kept-alive".into(), id, timeout)
                                        .await
                                        .is_ok()
                                    {
                                        lease = Some((id, key));
                                        last_renewed = asked;
                                    }
                                } else {
                                    cursor += 1;
                                }
                            }
                            Some((id, key)) => {
                                let asked = clock.now_ms();
                                match member.lease_keep_alive_once(*id, timeout).await {
                                    Ok(()) => {
                                        seen.renewals += 1;
                                        seen.longest_renewal_gap_ms =
                                            seen.longest_renewal_gap_ms.max(clock.now_ms() - last_renewed);
                                        last_renewed = asked;
                                    }
                                    Err(e) if is_lease_gone(&e) => {
                                        seen.expired_at_ms.push(clock.now_ms());
                                        // Its key went with it, in the same step.
                                        if let Ok(present) = member.has_keys_under(key, timeout).await {
                                            seen.judged.push((record(*id, false, key), present));
                                        }
                                        lease = None;
                                    }
                                    Err(_) => {
                                        seen.failed_renewals += 1;
                                        cursor += 1;
                                    }
                                }
                            }
                        }
                        // The next renewal, or the stop, whichever comes first.
                        let _ = tokio::time::timeout(every, stopped.changed()).await;
                    }
                    // A lease renewed to the end keeps its key; a key gone means it
                    // expired. The lease is then revoked, so that its key does not expire
                    // later, while the checks read the cluster.
                    if let Some((id, key)) = lease {
                        let current = members.current();
                        let member = &current[cursor % current.len()];
                        let present = member.has_keys_under(&key, timeout).await;
                        if let Ok(false) = present {
                            seen.expired_at_ms.push(clock.now_ms());
                        }
                        // Judged only when the read ended within a TTL of the last answered
                        // renewal's request: an older lease may have expired without the
                        // keeper hearing of it yet.
                        if let Ok(present) = present {
                            if clock.now_ms().saturating_sub(last_renewed) < ttl_s * 1000 {
                                seen.judged.push((record(id, true, &key), present));
                            }
                        }
                        let _ = member.lease_revoke(id, timeout).await;
                    }
                    seen
                })
            })
            .collect();
        LeaseKeepers { stop, keepers, ttl_s }
    }

    /// Stops the keepers and sums up what they saw.
    pub async fn stop(self) -> LeaseFigures {
        let _ = self.stop.send(true);
        let mut all = LeaseFigures {
            ttl_s: self.ttl_s,
            ..LeaseFigures::default()
        };
        for keeper in self.keepers {
            // A keeper that panicked saw nothing it could report: it is not counted.
            if let Ok(seen) = keeper.await {
                all.leases += 1;
                all.renewals += seen.renewals;
                all.failed_renewals += seen.failed_renewals;
                all.expired_at_ms.extend(seen.expired_at_ms);
                all.longest_renewal_gap_ms = all.longest_renewal_gap_ms.max(seen.longest_renewal_gap_ms);
                all.judged.extend(seen.judged);
            }
        }
        all.expired_at_ms.sort_unstable();
        all
    }
}

/// The key of keeper `keeper`'s lease `id`: the ID in fixed-width hex, so that no key is
/// the prefix of another.
fn lease_key(prefix: &str, keeper: usize, id: i64) -> String {
    format!("{prefix}{keeper:02}-{id:016x}")
}

fn record(id: i64, kept_alive: bool, key: &str) -> crate::history::leases::LeaseRecord {
    crate::history::leases::LeaseRecord {
        id,
        kept_alive,
        keys: vec![key.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::lease_key;

    #[test]
    fn no_lease_key_is_the_prefix_of_another() {
        let keys: Vec<String> = [1i64, 16, 0x1234, i64::MAX]
            .iter()
            .flat_map(|id| (0..2).map(move |keeper| lease_key("/p/", keeper, *id)))
            .collect();
        for a in &keys {
            for b in &keys {
                assert!(a == b || !b.starts_with(a.as_str()), "{a} is a prefix of {b}");
            }
        }
    }
}
