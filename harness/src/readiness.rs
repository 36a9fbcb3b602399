//! Readiness as data: a [`Wait`] says what the harness waits for, how often it looks and
//! for how long; [`Wait::until`] runs a probe on that schedule and, on timeout, says what
//! it waited for and what the probe last saw. Every polling loop of the harness (members
//! healthy, a leader elected, a write accepted, a member caught up, a temporary etcd
//! serving) goes through it.
//!
//! Written here rather than taken from testcontainers: its wait conditions belong to its
//! own containers (log lines, ports), and ours probe etcd through our clients.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Error;

/// What one probe found: ready (with what the caller wanted), or not yet (and what it saw
/// instead, for the timeout message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen<T, S = String> {
    Ready(T),
    NotYet(S),
}

/// A wait that ran out: what it waited for, how long, and what the last probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut<S> {
    pub what: String,
    pub waited: Duration,
    pub last: Option<S>,
}

impl<S: Display> From<TimedOut<S>> for Error {
    fn from(t: TimedOut<S>) -> Error {
        let what = match &t.last {
            Some(last) => format!("{} (last seen: {last})", t.what),
            None => t.what,
        };
        Error::Timeout {
            what,
            waited_ms: t.waited.as_millis() as u64,
        }
    }
}

/// A condition to wait for: its description, the poll interval and the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub what: String,
    pub every: Duration,
    pub within: Duration,
}

impl Wait {
    /// Waits for `what` (said as "members etcd3 to become healthy"), polling every
    /// `every` for up to `within`.
    pub fn new(what: impl Into<String>, every: Duration, within: Duration) -> Wait {
        Wait {
            what: what.into(),
            every,
            within,
        }
    }

    /// Runs `probe` at once, then every `every`, until it reports ready or `within` has
    /// passed since the start (the last probe may end after that).
    pub async fn until<T, S, F, Fut>(&self, mut probe: F) -> Result<T, TimedOut<S>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Seen<T, S>>,
    {
        let started = Instant::now();
        let deadline = started + self.within;
        loop {
            let last = match probe().await {
                Seen::Ready(value) => return Ok(value),
                Seen::NotYet(seen) => seen,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(TimedOut {
                    what: self.what.clone(),
                    waited: now - started,
                    last: Some(last),
                });
            }
            tokio::time::sleep(self.every.min(deadline - now)).await;
        }
    }

    /// As [`Wait::until`] for a probe that has nothing to say when not ready: the value,
    /// or None on timeout.
    pub async fn until_some<T, F, Fut>(&self, mut probe: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        self.until(|| {
            let attempt = probe();
            async move {
                match attempt.await {
                    Some(value) => Seen::Ready(value),
                    None => Seen::NotYet(()),
                }
            }
        })
        .await
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn ready_on_the_third_probe() {
        let probes = Cell::new(0);
        let value = Wait::new("three probes", ms(1), ms(5_000))
            .until(|| {
                probes.set(probes.get() + 1);
                let n = probes.get();
                async move {
                    match n {
                        3 => Seen::Ready(n),
                        _ => Seen::NotYet(format!("probe {n}")),
                    }
                }
            })
            .await;
        assert_eq!(value, Ok(3));
    }

    #[tokio::test]
    async fn a_timeout_names_the_condition_and_what_was_last_seen() {
        let wait = Wait::new("etcd3 to serve", ms(5), ms(30));
        let result: Result<(), TimedOut<String>> = wait.until(|| async { Seen::NotYet("refused".into()) }).await;
        let timed_out = result.unwrap_err();
        assert_eq!(timed_out.last.as_deref(), Some("refused"));
        assert!(timed_out.waited >= ms(30));
        let error = Error::from(timed_out).to_string();
        assert!(error.contains("etcd3 to serve (last seen: refused)"), "{error}");
    }

    #[tokio::test]
    async fn until_some_gives_none_after_the_deadline() {
        let never: Option<u8> = Wait::new("nothing", ms(5), ms(20)).until_some(|| async { None }).await;
        assert_eq!(never, None);
        let at_once = Wait::new("at once", ms(5), ms(0))
            .until_some(|| async { Some(7) })
            .await;
        assert_eq!(at_once, Some(7));
    }
}
