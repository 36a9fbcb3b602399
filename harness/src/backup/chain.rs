//! The rules a restore checks before it trusts a chain of a full snapshot and its deltas:
//! the deltas continue the full's revision exactly, each one starts at the revision after
//! the previous one's last (no gap, no overlap), each file matches its SHA-256 sidecar, each
//! delta holds exactly the revisions its name says, and the chain reaches the store's head.
//! Pure functions: the store and the replay call them.

use sha2::{Digest, Sha256};

use super::naming::{DeltaName, FullName};
use super::record::DeltaEvent;

pub use crate::error::ChainError;

/// The deltas a restore from `full` replays, in order, and where the chain breaks (if it
/// does) before the newest delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub full: FullName,
    /// The unbroken run of deltas after the full.
    pub deltas: Vec<DeltaName>,
    /// Why the chain stops before the last delta or the head, if it does.
    pub broken: Option<ChainError>,
}

impl ChainPlan {
    /// The revision the restored cluster will have if every planned delta replays.
    pub fn target_revision(&self) -> i64 {
        self.deltas.last().map_or(self.full.revision, |d| d.last)
    }
}

/// Orders the deltas after `full` and checks their names continue each other exactly.
/// `head` is the last revision the agent recorded as saved, when the store has one.
pub fn plan(full: FullName, deltas: &[DeltaName], head: Option<i64>) -> ChainPlan {
    let mut candidates: Vec<DeltaName> = deltas.iter().copied().filter(|d| d.last > full.revision).collect();
    candidates.sort_by_key(|d| (d.first, d.last));
    let mut planned: Vec<DeltaName> = Vec::new();
    let mut broken = None;
    for d in candidates {
        let (after, end) = match planned.last() {
            Some(p) => (p.describe(), p.last),
            None => (
                format!("full snapshot {} (revision {})", full.file(), full.revision),
                full.revision,
            ),
        };
        // The first delta may begin before the full's revision: the restore skips the
        // events the full already holds. After that, each delta starts right after the last.
        if d.first > end + 1 {
            broken = Some(ChainError::Gap {
                after,
                end,
                next: d.describe(),
                start: d.first,
            });
            break;
        }
        if d.first <= end && !planned.is_empty() {
            broken = Some(ChainError::Overlap {
                after,
                end,
                next: d.describe(),
                start: d.first,
            });
            break;
        }
        planned.push(d);
    }
    if broken.is_none() {
        let end = planned.last().map_or(full.revision, |d| d.last);
        if let Some(head) = head.filter(|h| *h > end) {
            let after = planned
                .last()
                .map_or_else(|| format!("full snapshot {}", full.file()), |d| d.describe());
            broken = Some(ChainError::MissingTail { after, end, head });
        }
    }
    ChainPlan {
        full,
        deltas: planned,
        broken,
    }
}

/// Checks `bytes` against the hex SHA-256 of its sidecar.
pub fn check_hash(file: &str, bytes: &[u8], sidecar: &str) -> Result<(), ChainError> {
    let expected = sidecar.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    let actual = hex::encode(Sha256::digest(bytes));
    if expected == actual {
        Ok(())
    } else {
        Err(ChainError::BadHash {
            file: file.to_string(),
            expected,
            actual,
        })
    }
}

/// Checks a decoded delta holds exactly the revisions its name says, in order, with no
/// revision missing in between (every revision of etcd's key space has at least one event).
pub fn check_content(name: &DeltaName, events: &[DeltaEvent]) -> Result<(), ChainError> {
    let bad = |message: String| ChainError::BadContent {
        file: name.file(),
        message,
    };
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(bad("no events".into()));
    };
    if first.revision != name.first || last.revision != name.last {
        return Err(bad(format!(
            "its events run from revision {} to {}",
            first.revision, last.revision
        )));
    }
    for pair in events.windows(2) {
        let (a, b) = (pair[0].revision, pair[1].revision);
        if b != a && b != a + 1 {
            return Err(bad(format!("revision {b} follows revision {a}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::naming::Compression;
    use crate::backup::record::tests::put;

    fn full(revision: i64) -> FullName {
        FullName {
            revision,
            taken_unix_ms: 1,
            compression: Compression::None,
        }
    }

    fn delta(first: i64, last: i64) -> DeltaName {
        DeltaName {
            first,
            last,
            compression: Compression::Gzip,
        }
    }

    #[test]
    fn a_continuous_chain_plans_every_delta_in_order() {
        let p = plan(full(10), &[delta(21, 30), delta(11, 20), delta(3, 10)], Some(30));
        assert_eq!(p.deltas, vec![delta(11, 20), delta(21, 30)]);
        assert_eq!(p.broken, None);
        assert_eq!(p.target_revision(), 30);
    }

    #[test]
    fn the_first_delta_may_straddle_the_full() {
        let p = plan(full(15), &[delta(11, 20), delta(21, 30)], None);
        assert_eq!(p.deltas, vec![delta(11, 20), delta(21, 30)]);
        assert_eq!(p.broken, None);
    }

    #[test]
    fn a_gap_is_detected_and_named() {
        let p = plan(full(10), &[delta(11, 20), delta(26, 30)], Some(30));
        assert_eq!(p.deltas, vec![delta(11, 20)]);
        let e = p.broken.unwrap();
        assert!(matches!(e, ChainError::Gap { end: 20, start: 26, .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&delta(26, 30).file()) && text.contains("21..=25"),
            "{text}"
        );
        // A gap right after the full.
        let e = plan(full(10), &[delta(12, 20)], None).broken.unwrap();
        assert!(e.to_string().contains("full snapshot"), "{e}");
    }

    #[test]
    fn an_overlap_is_detected_and_named() {
        let p = plan(full(10), &[delta(11, 20), delta(18, 30)], Some(30));
        assert_eq!(p.deltas, vec![delta(11, 20)]);
        let e = p.broken.unwrap();
        assert!(matches!(e, ChainError::Overlap { end: 20, start: 18, .. }), "{e:?}");
        assert!(e.to_string().contains("18..=20"), "{e}");
        assert_eq!(e.file(), delta(18, 30).describe());
    }

    #[test]
    fn a_missing_last_delta_is_caught_by_the_head() {
        let e = plan(full(10), &[delta(11, 20)], Some(35)).broken.unwrap();
        assert!(matches!(e, ChainError::MissingTail { end: 20, head: 35, .. }), "{e:?}");
        assert_eq!(plan(full(10), &[delta(11, 20)], Some(20)).broken, None);
    }

    #[test]
    fn a_bad_hash_is_detected_and_named() {
        let bytes = b"some delta bytes";
        let good = hex::encode(Sha256::digest(bytes));
        assert_eq!(check_hash("d1", bytes, &format!("{good}  d1\n")), Ok(()));
        let e = check_hash("d1", b"some delta bytez", &good).unwrap_err();
        assert!(matches!(&e, ChainError::BadHash { file, .. } if file == "d1"), "{e:?}");
        assert!(e.to_string().starts_with("d1: bad hash"), "{e}");
    }

    #[test]
    fn content_must_match_the_name() {
        let name = delta(5, 7);
        assert_eq!(
            check_content(&name, &[put(5, "a"), put(6, "b"), put(6, "c"), put(7, "d")]),
            Ok(())
        );
        let e = check_content(&name, &[put(5, "a"), put(7, "d")]).unwrap_err();
        assert!(e.to_string().contains("revision 7 follows revision 5"), "{e}");
        assert!(check_content(&name, &[put(5, "a"), put(6, "b")]).is_err());
        assert!(check_content(&name, &[]).is_err());
    }
}
