//! Which full snapshots (and with them, which deltas) a store keeps: the last N, or an
//! exponential schedule: every full of the last hour, then the newest of each hour for a
//! day, of each day for a week, of each week for a month. Pure: the agent deletes what
//! this returns.

use super::config::RetentionPolicy;
use super::naming::{DeltaName, FullName};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_MS: u64 = 7 * DAY_MS;

/// The fulls to delete under `policy` at `now_unix_ms`. The newest full is always kept.
pub fn fulls_to_delete(policy: RetentionPolicy, fulls: &[FullName], now_unix_ms: u64) -> Vec<FullName> {
    let mut newest_first: Vec<FullName> = fulls.to_vec();
    newest_first.sort_by_key(|f| std::cmp::Reverse((f.taken_unix_ms, f.revision)));
    match policy {
        RetentionPolicy::KeepAll => Vec::new(),
        RetentionPolicy::KeepLast(n) => newest_first.into_iter().skip(n.max(1)).collect(),
        RetentionPolicy::Exponential => {
            let mut seen_buckets = std::collections::HashSet::new();
            let mut delete = Vec::new();
            for (i, f) in newest_first.into_iter().enumerate() {
                let age = now_unix_ms.saturating_sub(f.taken_unix_ms);
                let bucket = if i == 0 || age < HOUR_MS {
                    None
                } else if age < DAY_MS {
                    Some(("hour", f.taken_unix_ms / HOUR_MS))
                } else if age < WEEK_MS {
                    Some(("day", f.taken_unix_ms / DAY_MS))
                } else if age < 5 * WEEK_MS {
                    Some(("week", f.taken_unix_ms / WEEK_MS))
                } else {
                    Some(("gone", 0))
                };
                match bucket {
                    None => {}
                    Some(("gone", _)) => delete.push(f),
                    // Newest first: the first full seen in a bucket is the one it keeps.
                    Some(key) if !seen_buckets.insert(key) => delete.push(f),
                    Some(_) => {}
                }
            }
            delete
        }
    }
}

/// Deltas no kept full needs: those that end at or before the oldest kept full.
pub fn deltas_to_delete(kept_fulls: &[FullName], deltas: &[DeltaName]) -> Vec<DeltaName> {
    let Some(oldest) = kept_fulls.iter().map(|f| f.revision).min() else {
        return Vec::new();
    };
    deltas.iter().copied().filter(|d| d.last <= oldest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::naming::Compression;

    fn full(revision: i64, taken_unix_ms: u64) -> FullName {
        FullName {
            revision,
            taken_unix_ms,
            compression: Compression::None,
        }
    }

    #[test]
    fn keep_last_n_deletes_the_oldest() {
        let fulls = [full(10, 1), full(20, 2), full(30, 3)];
        assert_eq!(
            fulls_to_delete(RetentionPolicy::KeepLast(2), &fulls, 10),
            vec![full(10, 1)]
        );
        assert!(fulls_to_delete(RetentionPolicy::KeepAll, &fulls, 10).is_empty());
        let d = |first, last| DeltaName {
            first,
            last,
            compression: Compression::None,
        };
        assert_eq!(
            deltas_to_delete(&fulls[1..], &[d(11, 15), d(16, 20), d(21, 25)]),
            vec![d(11, 15), d(16, 20)]
        );
    }

    #[test]
    fn exponential_keeps_one_per_hour_day_and_week() {
        let now = 100 * WEEK_MS;
        let fulls = [
            full(1, now - 6 * WEEK_MS),               // older than a month: gone
            full(2, now - 2 * WEEK_MS - DAY_MS),      // a week bucket
            full(3, now - 2 * WEEK_MS - 2 * HOUR_MS), // same week: the newer one stays
            full(4, now - 3 * DAY_MS),
            full(5, now - 3 * DAY_MS - HOUR_MS), // same day as 4 (unless the day turns)
            full(6, now - 5 * HOUR_MS - 60_000),
            full(7, now - 5 * HOUR_MS - 120_000), // same hour as 6
            full(8, now - 30 * 60_000),
            full(9, now - 20 * 60_000), // both within the hour: kept
        ];
        let deleted: Vec<i64> = fulls_to_delete(RetentionPolicy::Exponential, &fulls, now)
            .iter()
            .map(|f| f.revision)
            .collect();
        assert!(deleted.contains(&1) && deleted.contains(&7), "{deleted:?}");
        assert!(
            !deleted.contains(&8) && !deleted.contains(&9) && !deleted.contains(&6),
            "{deleted:?}"
        );
        assert!(!deleted.contains(&3) && !deleted.contains(&4), "{deleted:?}");
    }
}
