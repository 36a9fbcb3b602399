//! The run's monotonic clock: every time in a report is milliseconds since the run started.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock { start: Instant::now() }
    }

    /// Milliseconds since the run started (monotonic, 1 ms resolution).
    pub fn now_ms(&self) -> u64 {
        self.at_ms(Instant::now())
    }

    pub fn at_ms(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.start).as_millis() as u64
    }

    /// The instant the run started: microsecond times of a history count from it.
    pub fn started(&self) -> Instant {
        self.start
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}
