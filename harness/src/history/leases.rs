//! Lease expiry, checked at the end of a run: a key attached to a lease that expired or
//! was revoked must be gone, and a key attached to a lease kept alive throughout must be
//! there.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One lease of the run and the keys attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: i64,
    /// Renewed until the end of the run, every renewal answered.
    pub kept_alive: bool,
    pub keys: Vec<String>,
}

/// A key that outlived its lease, or was lost with a lease kept alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LeaseViolation {
    OutlivedItsLease { lease: i64, key: String },
    GoneWithALiveLease { lease: i64, key: String },
}

/// Checks every lease's keys against `present`, the keys read back at the end.
pub fn check(leases: &[LeaseRecord], present: &BTreeSet<String>) -> Vec<LeaseViolation> {
    let mut violations = Vec::new();
    for lease in leases {
        for key in &lease.keys {
            match (lease.kept_alive, present.contains(key)) {
                (false, true) => violations.push(LeaseViolation::OutlivedItsLease {
                    lease: lease.id,
                    key: key.clone(),
                }),
                (true, false) => violations.push(LeaseViolation::GoneWithALiveLease {
                    lease: lease.id,
                    key: key.clone(),
                }),
                _ => {}
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_their_leases_and_a_planted_survivor_is_caught() {
        let leases = [
            LeaseRecord {
                id: 1,
                kept_alive: true,
                keys: vec!["live/a".into()],
            },
            LeaseRecord {
                id: 2,
                kept_alive: false,
                keys: vec!["dead/b".into()],
            },
        ];
        let right: BTreeSet<String> = ["live/a".to_string()].into();
        assert_eq!(check(&leases, &right), vec![]);
        let survivor: BTreeSet<String> = ["live/a".to_string(), "dead/b".to_string()].into();
        assert_eq!(
            check(&leases, &survivor),
            vec![LeaseViolation::OutlivedItsLease {
                lease: 2,
                key: "dead/b".into()
            }]
        );
        assert_eq!(
            check(&leases, &BTreeSet::new()),
            vec![LeaseViolation::GoneWithALiveLease {
                lease: 1,
                key: "live/a".into()
            }]
        );
    }
}
