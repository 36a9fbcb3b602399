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
    /// Each watch opened again after one broke: (how many responses had come before it,
    /// the revision it asked to start from).
    #[serde(default)]
    pub resumes: Vec<(usize, i64)>,
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
    /// The first event of a watch (the first one, or one resumed) is past an acknowledged
    /// write at or after the revision it asked to start from: the watch did not continue
    /// where it was asked to.
    StartedLate { start: i64, first: i64 },
}

/// Checks `log` against `acknowledged`: (revision, key) of every acknowledged write in the
/// watched range. Every one is expected but those at or below a compaction that cancelled
/// the watch (or a re-list): the log must end once the watcher had the chance to catch up
/// with the newest (`WatchFollower::stop_once_caught_up`), so a write it never got, up to
/// the very last, is missing.
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
    let floor = compacted_at.unwrap_or(0).max(log.start_revision - 1);
    for (revision, key) in acknowledged.range((floor + 1, String::new())..) {
        if !delivered.contains(&(*revision, key.as_str())) {
            violations.push(WatchViolation::Missing {
                revision: *revision,
                key: key.clone(),
            });
        }
    }
    // Each watch, the first and every resumed one, must begin with the first acknowledged
    // write at or after its start revision (an unacknowledged one that landed may come
    // first), unless a compaction cancelled it.
    let watches = std::iter::once((0usize, log.start_revision)).chain(log.resumes.iter().copied());
    let mut bounds: Vec<(usize, i64)> = watches.collect();
    bounds.sort_by_key(|(at, _)| *at);
    for (k, (at, start)) in bounds.iter().enumerate() {
        let until = bounds.get(k + 1).map_or(log.responses.len(), |(next, _)| *next);
        let answered = log.responses.get(*at..until.max(*at)).unwrap_or_default();
        if answered.iter().any(|r| r.compact_revision.is_some()) {
            continue;
        }
        let Some(first) = answered
            .iter()
            .flat_map(|r| r.events.first())
            .next()
            .map(|e| e.revision)
        else {
            continue;
        };
        let expected = acknowledged
            .range((*start.max(&(floor + 1)), String::new())..)
            .next()
            .map(|(r, _)| *r);
        if expected.is_some_and(|e| first > e) {
            violations.push(WatchViolation::StartedLate { start: *start, first });
        }
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
            resumes: Vec::new(),
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
            resumes: Vec::new(),
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
            resumes: Vec::new(),
            responses: vec![resp(vec![ev(7, "a"), ev(7, "c")]), resp(vec![ev(8, "b")])],
        };
        assert_eq!(check(&exact, &writes()), vec![]);
    }

    #[test]
    fn a_resumed_watch_that_skips_ahead_is_reported_at_its_resume() {
        // The watch broke after revision 6 and was opened again from 7, but its first
        // event is 8: it did not continue where it was asked to.
        let mut log = faithful();
        log.responses[1] = resp(vec![ev(8, "b")]);
        log.responses.pop();
        log.resumes = vec![(1, 7)];
        let found = check(&log, &writes());
        assert!(
            found.contains(&WatchViolation::StartedLate { start: 7, first: 8 }),
            "{found:?}"
        );
        // Resumed where it left off: nothing to say.
        let mut exact = faithful();
        exact.resumes = vec![(1, 7), (2, 8)];
        assert_eq!(check(&exact, &writes()), vec![]);
    }

    #[test]
    fn a_watcher_that_stalls_misses_every_later_write() {
        // It stopped hearing after revision 6 (stuck on a member cut off, say).
        let mut stalled = faithful();
        stalled.responses.truncate(1);
        let found = check(&stalled, &writes());
        assert_eq!(
            found,
            vec![
                WatchViolation::Missing {
                    revision: 7,
                    key: "a".into()
                },
                WatchViolation::Missing {
                    revision: 7,
                    key: "c".into()
                },
                WatchViolation::Missing {
                    revision: 8,
                    key: "b".into()
                },
            ]
        );
        let silent = WatchLog {
            start_revision: 5,
            resumes: Vec::new(),
            responses: Vec::new(),
        };
        assert_eq!(
            check(&silent, &writes()).len(),
            5,
            "a watcher that heard nothing missed all"
        );
    }

    #[test]
    fn nothing_at_or_below_a_compaction_is_expected() {
        let log = WatchLog {
            start_revision: 5,
            resumes: Vec::new(),
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
