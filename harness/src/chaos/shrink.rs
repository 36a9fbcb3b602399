//! Shrinking a failing schedule: try it without chunks of its incidents (halves, then
//! quarters, down to single incidents, in the manner of delta debugging) and with a plain
//! repair for its ending, keep each candidate that still fails, and stop at a budget of
//! runs. Each try is a whole chaos run, so the budget is small; the runs are the caller's
//! (`still_fails`), which keeps this logic pure and testable without Docker.
//!
//! Hand-written rather than proptest's shrinking: proptest shrinks values it generated
//! itself inside a test runner, while a schedule here comes from a seed or a file and each
//! try costs minutes of a real cluster, so the loop must own its budget and its order.

use std::future::Future;

use serde::Serialize;

use super::schedule::{Ending, Schedule};
use crate::error::Result;

/// One candidate tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub incidents: usize,
    pub ending: String,
    pub failed: bool,
}

/// The smallest failing schedule found, and what was tried on the way.
#[derive(Debug, Clone, Serialize)]
pub struct Shrunk {
    pub schedule: Schedule,
    pub attempts: Vec<Attempt>,
}

/// Shrinks `failing` with at most `budget` calls of `still_fails` (each a run of the
/// candidate, numbered from 1), which says whether the candidate fails too.
pub async fn shrink<F, Fut>(failing: Schedule, budget: usize, mut still_fails: F) -> Result<Shrunk>
where
    F: FnMut(Schedule, usize) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let mut current = failing;
    let mut attempts = Vec::new();
    if current.ending != Ending::Repair && budget > 0 {
        let candidate = Schedule {
            ending: Ending::Repair,
            ..current.clone()
        };
        if attempt(&mut still_fails, candidate.clone(), &mut attempts).await? {
            current = candidate;
        }
    }
    let mut chunk = current.incidents.len().div_ceil(2);
    while chunk >= 1 && attempts.len() < budget && !current.incidents.is_empty() {
        let mut removed_any = false;
        let mut start = 0;
        while start < current.incidents.len() && attempts.len() < budget {
            let end = (start + chunk).min(current.incidents.len());
            let candidate = current.without(&(start..end).collect::<Vec<_>>());
            if attempt(&mut still_fails, candidate.clone(), &mut attempts).await? {
                current = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if !removed_any {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2).min(chunk - 1);
        } else {
            chunk = chunk.min(current.incidents.len().div_ceil(2)).max(1);
        }
    }
    Ok(Shrunk {
        schedule: current,
        attempts,
    })
}

/// Runs one candidate through `still_fails` and records the attempt.
async fn attempt<F, Fut>(still_fails: &mut F, candidate: Schedule, attempts: &mut Vec<Attempt>) -> Result<bool>
where
    F: FnMut(Schedule, usize) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let (incidents, ending) = (candidate.incidents.len(), candidate.ending.describe());
    let failed = still_fails(candidate, attempts.len() + 1).await?;
    attempts.push(Attempt {
        incidents,
        ending,
        failed,
    });
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::schedule::IncidentKind;
    use crate::topology::Topology;

    /// The fake run of the tests: a schedule fails when it kills etcd3 (alone or with
    /// another member), whatever else it does.
    fn kills_etcd3(s: &Schedule) -> bool {
        s.incidents
            .iter()
            .any(|i| i.kind == IncidentKind::Kill && i.members.contains(&"etcd3".to_string()))
    }

    fn failing_schedule() -> Schedule {
        (0..)
            .map(|seed| Schedule::generate(seed, 120_000, &Topology::reference(), true))
            .find(|s| {
                kills_etcd3(s)
                    && s.incidents.len() > 20
                    && s.ending != Ending::Repair
                    && s.incidents
                        .iter()
                        .filter(|i| i.kind == IncidentKind::Kill && i.members.contains(&"etcd3".to_string()))
                        .count()
                        == 1
            })
            .unwrap()
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn shrinking_keeps_the_one_incident_that_fails_and_a_plain_ending() {
        let failing = failing_schedule();
        let shrunk = block_on(shrink(failing.clone(), 100, |s, _| async move { Ok(kills_etcd3(&s)) })).unwrap();
        assert_eq!(shrunk.schedule.incidents.len(), 1, "{:?}", shrunk.schedule.incidents);
        assert!(kills_etcd3(&shrunk.schedule));
        assert_eq!(shrunk.schedule.ending, Ending::Repair);
        assert_eq!(shrunk.schedule.seed, failing.seed);
        assert!(
            shrunk.attempts.len() < failing.incidents.len(),
            "{} runs",
            shrunk.attempts.len()
        );
        assert!(shrunk.attempts.iter().any(|a| !a.failed));
    }

    #[test]
    fn shrinking_stops_at_its_budget_and_a_passing_schedule_stays_whole() {
        let failing = failing_schedule();
        let shrunk = block_on(shrink(failing.clone(), 3, |s, _| async move { Ok(kills_etcd3(&s)) })).unwrap();
        assert_eq!(shrunk.attempts.len(), 3);
        assert!(kills_etcd3(&shrunk.schedule));
        let never = block_on(shrink(failing.clone(), 50, |_, _| async { Ok(false) })).unwrap();
        assert_eq!(never.schedule, failing);
    }
}
