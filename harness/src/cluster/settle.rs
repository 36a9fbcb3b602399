//! Whether a cluster has settled on one leader: every member asked names the same leader
//! in the same raft term, and has done so for a quiet period. Members that start one
//! after another (an image whose scripts serve from a temporary etcd before etcd starts
//! for good) can still call an election after the cluster took its first write; a member
//! that names the leader has heard from it, and does not campaign while it keeps hearing.

use std::time::{Duration, Instant};

use crate::readiness::Seen;

/// What one member said: the leader it names and its raft term, or why it did not answer.
pub type LeaderSeen = Result<(u64, u64), String>;

/// Watches successive rounds of answers for one leader and term held for `quiet`.
#[derive(Debug, Clone)]
pub struct LeaderSettling {
    quiet: Duration,
    /// The (leader, term) every member named, and since when.
    agreed: Option<(u64, u64, Instant)>,
}

impl LeaderSettling {
    pub fn new(quiet: Duration) -> Self {
        LeaderSettling { quiet, agreed: None }
    }

    /// One round of answers (`names[i]` said `seen[i]`), taken at `now`.
    pub fn observe(&mut self, now: Instant, names: &[String], seen: &[LeaderSeen]) -> Seen<(), String> {
        let mut pairs = Vec::new();
        let mut problems = Vec::new();
        for (name, answer) in names.iter().zip(seen) {
            match answer {
                Ok((0, _)) => problems.push(format!("{name} names no leader")),
                Ok(pair) => pairs.push((name, *pair)),
                Err(why) => problems.push(format!("{name}: {why}")),
            }
        }
        let first = pairs.first().map(|(_, pair)| *pair);
        if let Some((leader, term)) = first {
            for (name, (l, t)) in &pairs {
                if (*l, *t) != (leader, term) {
                    problems.push(format!("{name} names leader {l:x} in term {t}"));
                }
            }
        }
        let (leader, term) = match (first, problems.is_empty()) {
            (Some(pair), true) => pair,
            _ => {
                self.agreed = None;
                return Seen::NotYet(problems.join(", "));
            }
        };
        let since = match self.agreed {
            Some((l, t, since)) if (l, t) == (leader, term) => since,
            _ => now,
        };
        self.agreed = Some((leader, term, since));
        let held = now.saturating_duration_since(since);
        match held >= self.quiet {
            true => Seen::Ready(()),
            false => Seen::NotYet(format!(
                "leader {leader:x} in term {term} for {} of {} ms",
                held.as_millis(),
                self.quiet.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["etcd1".into(), "etcd2".into(), "etcd3".into()]
    }

    #[test]
    fn ready_only_after_the_same_leader_and_term_held_for_the_quiet_period() {
        let mut s = LeaderSettling::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let all = |l, t| vec![Ok((l, t)), Ok((l, t)), Ok((l, t))];
        assert!(matches!(s.observe(t0, &names(), &all(7, 2)), Seen::NotYet(_)));
        assert!(matches!(
            s.observe(t0 + Duration::from_millis(600), &names(), &all(7, 2)),
            Seen::NotYet(_)
        ));
        assert_eq!(
            s.observe(t0 + Duration::from_millis(1000), &names(), &all(7, 2)),
            Seen::Ready(())
        );
    }

    #[test]
    fn a_new_term_or_a_dissenting_member_starts_the_quiet_period_again() {
        let mut s = LeaderSettling::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let all = |l, t| vec![Ok((l, t)), Ok((l, t)), Ok((l, t))];
        s.observe(ms(0), &names(), &all(7, 2));
        // An election: same leader, new term.
        assert!(matches!(s.observe(ms(900), &names(), &all(7, 3)), Seen::NotYet(_)));
        assert!(matches!(s.observe(ms(1500), &names(), &all(7, 3)), Seen::NotYet(_)));
        // One member has not heard from the leader yet.
        let lagging = vec![Ok((7, 3)), Ok((0, 3)), Ok((7, 3))];
        match s.observe(ms(1950), &names(), &lagging) {
            Seen::NotYet(why) => assert!(why.contains("etcd2 names no leader"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.observe(ms(2000), &names(), &all(7, 3)), Seen::NotYet(_)));
        assert_eq!(s.observe(ms(3000), &names(), &all(7, 3)), Seen::Ready(()));
    }

    #[test]
    fn disagreement_and_silence_are_named() {
        let mut s = LeaderSettling::new(Duration::ZERO);
        let split = vec![Ok((7, 2)), Ok((9, 3)), Err("deadline exceeded".to_string())];
        match s.observe(Instant::now(), &names(), &split) {
            Seen::NotYet(why) => {
                assert!(why.contains("etcd2 names leader 9 in term 3"), "{why}");
                assert!(why.contains("etcd3: deadline exceeded"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let all = vec![Ok((7, 2)), Ok((7, 2)), Ok((7, 2))];
        assert_eq!(s.observe(Instant::now(), &names(), &all), Seen::Ready(()));
    }
}
