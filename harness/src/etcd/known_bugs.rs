//! The etcd bugs a drill can trip over, with the releases each affects and its upstream
//! reference (from etcd's CHANGELOG-3.5 and the issues it links). A report names the ones
//! that apply to the etcd under test, so a failure on an affected release reads as a known
//! defect of that release, and the same failure on a fixed one reads as news.

use serde::{Deserialize, Serialize};

use crate::version::{EtcdVersion, VersionRange};

/// One known bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownBug {
    /// The upstream reference, `etcd-io/etcd#NNNNN`.
    pub reference: &'static str,
    pub affects: VersionRange,
    /// The first release with the fix.
    pub fixed_in: EtcdVersion,
    /// What a drill sees.
    pub summary: &'static str,
}

const fn v(major: u32, minor: u32, patch: u32) -> EtcdVersion {
    EtcdVersion::new(major, minor, patch)
}

/// The table. Ranges are inclusive and name releases, not commits.
pub const KNOWN_BUGS: &[KnownBug] = &[
    KnownBug {
        reference: "etcd-io/etcd#13766",
        affects: VersionRange { first: v(3, 5, 0), last: v(3, 5, 2) },
        fixed_in: v(3, 5, 3),
        summary: "a member SIGKILLed under write load can come back with data that differs from its peers' (HashKV mismatch, writes missing on that member)",
    },
    KnownBug {
        reference: "etcd-io/etcd#14370",
        affects: VersionRange { first: v(3, 5, 0), last: v(3, 5, 4) },
        fixed_in: v(3, 5, 5),
        summary: "a single-member cluster that crashes can lose a write it had acknowledged",
    },
    KnownBug {
        reference: "etcd-io/etcd#19557",
        affects: VersionRange { first: v(3, 5, 1), last: v(3, 5, 19) },
        fixed_in: v(3, 5, 20),
        summary: "a learner's promotion is not persisted to the v3 store; after a restart the member can count as a learner again, which later blocks an upgrade to 3.6 (\"too many learner members\")",
    },
];

/// A known bug as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicableBug {
    pub reference: String,
    pub affects: String,
    pub fixed_in: String,
    pub summary: String,
}

impl From<&KnownBug> for ApplicableBug {
    fn from(bug: &KnownBug) -> Self {
        Self {
            reference: bug.reference.to_string(),
            affects: bug.affects.to_string(),
            fixed_in: bug.fixed_in.to_string(),
            summary: bug.summary.to_string(),
        }
    }
}

/// The bugs of [`KNOWN_BUGS`] that `version` (as `etcd --version` prints it) carries; none
/// when the version cannot be read.
pub fn applicable_to(version: &str) -> Vec<ApplicableBug> {
    let Some(version) = EtcdVersion::parse(version) else {
        return Vec::new();
    };
    KNOWN_BUGS
        .iter()
        .filter(|bug| bug.affects.contains(version))
        .map(ApplicableBug::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn references(version: &str) -> Vec<String> {
        applicable_to(version).into_iter().map(|b| b.reference).collect()
    }

    #[test]
    fn each_release_gets_the_bugs_it_carries() {
        assert_eq!(
            references("3.5.1"),
            ["etcd-io/etcd#13766", "etcd-io/etcd#14370", "etcd-io/etcd#19557"]
        );
        assert_eq!(references("3.5.3"), ["etcd-io/etcd#14370", "etcd-io/etcd#19557"]);
        assert_eq!(references("3.5.16"), ["etcd-io/etcd#19557"]);
        assert!(references("3.5.30").is_empty());
        assert!(references("3.4.23").is_empty());
        assert!(references("unknown").is_empty());
    }

    #[test]
    fn every_bug_is_fixed_after_the_last_release_it_affects() {
        for bug in KNOWN_BUGS {
            assert!(bug.affects.first <= bug.affects.last, "{}", bug.reference);
            assert!(bug.fixed_in > bug.affects.last, "{}", bug.reference);
            assert!(bug.reference.starts_with("etcd-io/etcd#"), "{}", bug.reference);
        }
    }
}
