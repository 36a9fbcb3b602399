//! Watch guarantees, checked on what one watcher received against the writes the cluster
//! acknowledged: events come in revision order and never twice, the events of one
//! revision (one transaction) arrive in one response, no acknowledged write in the watched
//! range is skipped up to a compaction, and a watch started (or resumed) from a revision
//! continues exactly there. A revision lower than one already delivered (a cluster
//! restored from an older snapshot without `--bump-revision`) is reported as such.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// One event as a watcher got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub revision: i64,
    pub key: String,
}

/// One response of the watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    pub events: Vec<WatchEvent>,
    /// Set when etcd cancelled the watch because its start revision was compacted.
    pub compact_revision: Option<i64>,
}

/// What one watcher saw: where it started and every response, in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLog {
    pub start_revision: i64,
    pub responses: Vec<WatchResponse>,
}

/// A broken guarantee, with the revision and key at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WatchViolation {
    /// An event at a revision below one delivered before it.
    RevisionWentBack { after: i64, got: i64, key: String },
    /// The same (revision, key) delivered twice.
    Duplicate { revision: i64, key: String },
    /// The events of one revision split over two responses.
    SplitTransaction { revision: i64 },
    /// An acknowledged write in the watched range that never came.
    Missing { revision: i64, key: String },
    /// The first event is past the start revision while a write at the start revision was
    /// acknowledged: the watch did not continue where it was asked to.
    StartedLate { start: i64, first: i64 },
}

/// Checks `log` against `acknowledged`: (revision, key) of every acknowledged write in the
/// watched range. Writes after the last revision the watcher saw, and anything at or
/// below a compaction that cancelled it, are not expected.
pub fn check(log: &WatchLog, acknowledged: &BTreeSet<(i64, String)>) -> Vec<WatchViolation> {
    let mut violations = Vec::new();
    let mut highest: Option<i64> = None;
    let mut delivered: HashSet<(i64, &str)> = HashSet::new();
    // Which response each revision arrived in.
    let mut response_of: BTreeMap<i64, usize> = BTreeMap::new();
    let mut compacted_at = None;
    for (n, response) in log.responses.iter().enumerate() {
        if let Some(c) = response.compact_revision {
            compacted_at = Some(c);
        }
        for event in &response.events {
            let went_back = highest.filter(|h| event.revision < *h);
            if let Some(h) = went_back {
                violations.push(WatchViolation::RevisionWentBack {
                    after: h,
                    got: event.revision,
                    key: event.key.clone(),
                });
            }
            if !delivered.insert((event.revision, event.key.as_str())) {
                violations.push(WatchViolation::Duplicate {
                    revision: event.revision,
                    key: event.key.clone(),
                });
            }
            match response_of.get(&event.revision) {
                // A revision handed out again is reported above, not as a split.
                Some(first) if *first != n && went_back.is_none() => {
                    if !violations.contains(&WatchViolation::SplitTransaction {
                        revision: event.revision,
                    }) {
                        violations.push(WatchViolation::SplitTransaction {
                            revision: event.revision,
                        });
                    }
                }
                Some(_) => {}
                None => {
                    response_of.insert(event.revision, n);
                }
            }
            highest = Some(highest.map_or(event.revision, |h| h.max(event.revision)));
        }
    }
    let Some(last_seen) = highest else {
        return violations;
    };
    let floor = compacted_at.unwrap_or(0).max(log.start_revision - 1);
    for (revision, key) in acknowledged.range((floor + 1, String::new())..) {
        if *revision > last_seen {
            break;
        }
        if !delivered.contains(&(*revision, key.as_str())) {
            violations.push(WatchViolation::Missing {
                revision: *revision,
                key: key.clone(),
            });
        }
    }
    let first = log
        .responses
        .iter()
        .flat_map(|r| r.events.first())
        .next()
        .map(|e| e.revision);
    let start_written = acknowledged
        .range((log.start_revision, String::new())..)
        .next()
        .is_some_and(|(r, _)| *r == log.start_revision);
    if let Some(first) = first.filter(|f| *f > log.start_revision && start_written && compacted_at.is_none()) {
        violations.push(WatchViolation::StartedLate {
            start: log.start_revision,
            first,
        });
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(revision: i64, key: &str) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.into(),
        }
    }
    fn resp(events: Vec<WatchEvent>) -> WatchResponse {
        WatchResponse {
            events,
            compact_revision: None,
        }
    }
    fn acked(writes: &[(i64, &str)]) -> BTreeSet<(i64, String)> {
        writes.iter().map(|(r, k)| (*r, k.to_string())).collect()
    }

    /// Revisions 5 to 8; revision 7 is a transaction writing two keys.
    fn writes() -> BTreeSet<(i64, String)> {
        acked(&[(5, "a"), (6, "b"), (7, "a"), (7, "c"), (8, "b")])
    }

    fn faithful() -> WatchLog {
        WatchLog {
            start_revision: 5,
            responses: vec![
                resp(vec![ev(5, "a"), ev(6, "b")]),
                resp(vec![ev(7, "a"), ev(7, "c")]),
                resp(vec![ev(8, "b")]),
            ],
        }
    }

    #[test]
    fn a_faithful_watch_passes() {
        assert_eq!(check(&faithful(), &writes()), vec![]);
    }

    #[test]
    fn a_duplicated_event_is_reported_exactly() {
        let mut log = faithful();
        log.responses.push(resp(vec![ev(8, "b")]));
        assert_eq!(
            check(&log, &writes()),
            vec![
                WatchViolation::Duplicate {
                    revision: 8,
                    key: "b".into()
                },
                WatchViolation::SplitTransaction { revision: 8 },
            ]
        );
    }

    #[test]
    fn a_skipped_write_is_missing() {
        let mut log = faithful();
        log.responses[0].events.pop();
        assert_eq!(
            check(&log, &writes()),
            vec![WatchViolation::Missing {
                revision: 6,
                key: "b".into()
            }]
        );
    }

    #[test]
    fn a_transaction_split_over_two_responses_is_reported() {
        let mut log = faithful();
        log.responses[1] = resp(vec![ev(7, "a")]);
        log.responses.insert(2, resp(vec![ev(7, "c")]));
        assert_eq!(
            check(&log, &writes()),
            vec![WatchViolation::SplitTransaction { revision: 7 }]
        );
    }

    #[test]
    fn a_revision_going_back_is_reported() {
        // After a restore from an older snapshot, revisions are handed out again.
        let mut log = faithful();
        log.responses.push(resp(vec![ev(6, "z")]));
        assert_eq!(
            check(&log, &writes()),
            vec![WatchViolation::RevisionWentBack {
                after: 8,
                got: 6,
                key: "z".into()
            }]
        );
    }

    #[test]
    fn a_resumed_watch_must_continue_at_its_revision() {
        let resumed = WatchLog {
            start_revision: 7,
            responses: vec![resp(vec![ev(8, "b")])],
        };
        let found = check(&resumed, &writes());
        assert!(
            found.contains(&WatchViolation::StartedLate { start: 7, first: 8 }),
            "{found:?}"
        );
        assert!(found.contains(&WatchViolation::Missing {
            revision: 7,
            key: "a".into()
        }));
        let exact = WatchLog {
            start_revision: 7,
            responses: vec![resp(vec![ev(7, "a"), ev(7, "c")]), resp(vec![ev(8, "b")])],
        };
        assert_eq!(check(&exact, &writes()), vec![]);
    }

    #[test]
    fn nothing_at_or_below_a_compaction_is_expected() {
        let log = WatchLog {
            start_revision: 5,
            responses: vec![
                WatchResponse {
                    events: vec![],
                    compact_revision: Some(6),
                },
                resp(vec![ev(7, "a"), ev(7, "c")]),
                resp(vec![ev(8, "b")]),
            ],
        };
        assert_eq!(check(&log, &writes()), vec![]);
    }
}
