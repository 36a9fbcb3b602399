//! The load generator. It sends what `etcdctl check perf` sends (puts of a 256-byte key
//! that starts with the varint of a random 63-bit integer, under a prefix, with a 1 KiB
//! value of zeros, paced by a burst-1 token bucket, at most `clients` requests in flight)
//! from one task over a few HTTP/2 connections instead of one connection per client.
//!
//! How this relates to etcdctl: etcdctl opens `clients` gRPC clients and lets each take
//! one request at a time from a channel that the rate limiter fills. Here a single task
//! takes a token, waits for a free slot among `clients`, and starts the put on the next
//! connection (round-robin over the endpoints, `connections_per_endpoint` each). So the
//! same number of requests can be in flight and the same rate is offered, but the server
//! sees a few connections carrying many concurrent streams instead of many connections
//! with one stream each. Latency is measured as etcdctl does: from the moment the put is
//! handed to the client library to its answer; time spent waiting for a slot is not in it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::KvClient;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::perf::stats::{Interval, LatencyStats, Timeline};
use crate::workload::error_kind;

/// How late a timer wake-up may come without costing tokens. tokio's timer has 1 ms
/// ticks and a busy 2-core machine wakes a task later still; Go's timers, which etcdctl's
/// limiter sleeps on, are much finer.
pub const TIMER_ALLOWANCE: Duration = Duration::from_millis(10);

/// A token bucket of depth one on a fixed schedule: tokens fall due every `period` and the
/// schedule never runs ahead of time. Like Go's `rate.Limiter` with burst 1 (which etcdctl
/// uses), after a stall, when every client was busy, the missed tokens are dropped, not
/// caught up: the first free slot gets one token and the schedule restarts from there
/// (a late taker keeps up to one period of credit, as in Go). A taker that is late only
/// because the timer woke it late (no stall) gets every token that fell due, up to
/// [`TIMER_ALLOWANCE`] of them, so the timer's coarseness does not lower the rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    period: Duration,
    next_at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: f64, start: Instant) -> TokenBucket {
        TokenBucket {
            period: Duration::from_secs_f64(1.0 / rate_per_s),
            next_at: start,
        }
    }

    /// When the next token falls due.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// Takes a token if one is due at `now`. `after_stall`: the taker could not take
    /// earlier because every client was busy.
    pub fn take(&mut self, now: Instant, after_stall: bool) -> bool {
        if now < self.next_at {
            return false;
        }
        let max_lag = if after_stall {
            self.period
        } else {
            self.period.max(TIMER_ALLOWANCE)
        };
        if now.duration_since(self.next_at) > max_lag {
            self.next_at = now;
        }
        self.next_at += self.period;
        true
    }
}

/// Writes `value` as Go's `binary.PutVarint` does (zig-zag, then 7 bits a byte) into the
/// front of `buf`; returns the number of bytes written.
pub fn put_varint(buf: &mut [u8], value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut i = 0;
    while zigzag >= 0x80 {
        buf[i] = (zigzag as u8) | 0x80;
        zigzag >>= 7;
        i += 1;
    }
    buf[i] = zigzag as u8;
    i + 1
}

/// Keys of `check perf`: the prefix, then a `key_bytes` buffer whose first bytes are the
/// varint of a random non-negative 63-bit integer and the rest zero.
pub struct KeyGenerator {
    rng: ChaCha8Rng,
    prefix: Vec<u8>,
    key_bytes: usize,
}

impl KeyGenerator {
    pub fn new(prefix: &str, key_bytes: usize, seed: u64) -> KeyGenerator {
        KeyGenerator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            prefix: prefix.as_bytes().to_vec(),
            // A varint of a 63-bit integer takes up to 10 bytes.
            key_bytes: key_bytes.max(10),
        }
    }

    pub fn next_key(&mut self) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + self.key_bytes);
        key.extend_from_slice(&self.prefix);
        key.resize(self.prefix.len() + self.key_bytes, 0);
        let n: i64 = self.rng.random_range(0..i64::MAX);
        put_varint(&mut key[self.prefix.len()..], n);
        key
    }
}

/// When the generator stops issuing new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAfter {
    Duration(Duration),
    Requests(u64),
}

/// One load to offer.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Writes per second; None for no limit.
    pub rate: Option<f64>,
    /// Requests in flight at most.
    pub clients: usize,
    pub stop: StopAfter,
    pub prefix: String,
    pub key_bytes: usize,
    pub value_bytes: usize,
    /// A request slower than this counts as an error of kind `timeout` (etcdctl waits forever).
    pub request_timeout: Duration,
    pub seed: u64,
}

/// The errors of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorTally {
    pub count: u64,
    /// The first message of this kind.
    pub example: String,
}

/// What the generator saw.
pub struct LoadOutcome {
    pub latencies: LatencyStats,
    pub timeline: Vec<Interval>,
    pub errors: BTreeMap<String, ErrorTally>,
    pub issued: u64,
    /// From the first request to the last answer (etcdctl's "total").
    pub elapsed: Duration,
}

type PutResult = (Instant, Instant, Result<(), String>);

async fn timed_put(mut kv: KvClient, key: Vec<u8>, value: Vec<u8>, timeout: Duration) -> PutResult {
    let start = Instant::now();
    let result = match tokio::time::timeout(timeout, kv.put(key, value, None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    };
    (start, Instant::now(), result)
}

/// Offers `spec`'s load over `connections` (round-robin) and measures it. `on_second` is
/// called with every second of the timeline as soon as it is over.
pub async fn drive(spec: &LoadSpec, connections: &[KvClient], on_second: &mut dyn FnMut(&Interval)) -> LoadOutcome {
    let start = Instant::now();
    let deadline = match spec.stop {
        StopAfter::Duration(d) => Some(start + d),
        StopAfter::Requests(_) => None,
    };
    let request_limit = match spec.stop {
        StopAfter::Requests(n) => n,
        StopAfter::Duration(_) => u64::MAX,
    };
    let clients = spec.clients.max(1);
    let mut bucket = spec.rate.map(|r| TokenBucket::new(r, start));
    let mut keys = KeyGenerator::new(&spec.prefix, spec.key_bytes, spec.seed);
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = LatencyStats::default();
    let mut timeline = Timeline::default();
    let mut errors: BTreeMap<String, ErrorTally> = BTreeMap::new();
    let mut issued = 0u64;
    let mut issuing = !connections.is_empty();
    let mut last_answer = start;
    // Every client was busy since the last token was taken.
    let mut stalled = false;
    let timer = tokio::time::sleep_until(start.into());
    tokio::pin!(timer);

    loop {
        if issuing {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || issued >= request_limit {
                issuing = false;
            }
        }
        while issuing && in_flight.len() < clients && issued < request_limit {
            if let Some(b) = bucket.as_mut() {
                if !b.take(Instant::now(), stalled) {
                    break;
                }
            }
            stalled = false;
            let kv = connections[(issued % connections.len() as u64) as usize].clone();
            in_flight.push(timed_put(
                kv,
                keys.next_key(),
                vec![0u8; spec.value_bytes],
                spec.request_timeout,
            ));
            issued += 1;
        }
        if !issuing && in_flight.is_empty() {
            break;
        }
        if in_flight.len() >= clients {
            stalled = true;
        }
        // Sleep until the next token (if a slot is free) or the deadline, or an answer.
        let wake = if !issuing {
            None
        } else if in_flight.len() < clients && issued < request_limit {
            match (bucket.as_ref().map(|b| b.next_at()), deadline) {
                (Some(t), Some(d)) => Some(t.min(d)),
                (t, d) => t.or(d),
            }
        } else {
            deadline
        };
        if let Some(w) = wake {
            timer.as_mut().reset(w.into());
        }
        tokio::select! {
            biased;
            Some((sent, answered, result)) = in_flight.next(), if !in_flight.is_empty() => {
                last_answer = last_answer.max(answered);
                let latency = answered.duration_since(sent);
                let ok = match result {
                    Ok(()) => {
                        latencies.record(latency);
                        Some(latency)
                    }
                    Err(message) => {
                        let tally = errors.entry(error_kind(&message)).or_default();
                        if tally.count == 0 {
                            tally.example = message;
                        }
                        tally.count += 1;
                        None
                    }
                };
                for closed in timeline.record(answered.duration_since(start), ok) {
                    on_second(closed);
                }
            }
            _ = &mut timer, if wake.is_some() => {}
        }
    }
    LoadOutcome {
        latencies,
        timeline: timeline.finish(),
        errors,
        issued,
        elapsed: last_answer.duration_since(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_gos_encoding() {
        let mut buf = [0u8; 10];
        assert_eq!(put_varint(&mut buf, 0), 1);
        assert_eq!(buf[0], 0);
        assert_eq!(put_varint(&mut buf, -1), 1);
        assert_eq!(buf[0], 1);
        assert_eq!(put_varint(&mut buf, 1), 1);
        assert_eq!(buf[0], 2);
        assert_eq!(put_varint(&mut buf, 64), 2);
        assert_eq!(&buf[..2], &[0x80, 0x01]);
        assert_eq!(put_varint(&mut buf, i64::MAX), 10);
        assert_eq!(
            &buf[..10],
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn keys_have_the_prefix_and_exact_size() {
        let mut g = KeyGenerator::new("/etcdctl-check-perf/", 256, 7);
        let a = g.next_key();
        let b = g.next_key();
        assert_eq!(a.len(), "/etcdctl-check-perf/".len() + 256);
        assert!(a.starts_with(b"/etcdctl-check-perf/"));
        assert_ne!(a, b);
        // After the varint (at most 10 bytes) everything is zero.
        assert!(a[20 + 10..].iter().all(|b| *b == 0));
    }

    #[test]
    fn bucket_hands_out_the_rate_and_never_runs_ahead() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, t0);
        // Poll every 100 µs for one second: exactly 1000 tokens.
        let taken = (0..10_000)
            .filter(|i| b.take(t0 + Duration::from_micros(i * 100), false))
            .count();
        assert_eq!(taken, 1000);
        // Polled on 1 ms ticks at 15000/s, every due token still comes out.
        let mut b = TokenBucket::new(15_000.0, t0);
        let mut taken = 0;
        for tick in 0..=1000u64 {
            let now = t0 + Duration::from_millis(tick);
            while b.take(now, false) {
                taken += 1;
            }
        }
        assert!((15_000..=15_001).contains(&taken), "{taken}");
        // At 1000/s with a timer that wakes 3 ms late each time, the rate holds too.
        let mut b = TokenBucket::new(1000.0, t0);
        let mut taken = 0;
        for wake in (3..=1003u64).step_by(4) {
            while b.take(t0 + Duration::from_millis(wake), false) {
                taken += 1;
            }
        }
        assert_eq!(taken, 1004, "tokens due at 0..=1003 ms");
    }

    #[test]
    fn bucket_does_not_catch_up_after_a_stall() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, t0);
        assert!(b.take(t0, false));
        assert!(!b.take(t0 + Duration::from_millis(5), false));
        // 4 ms late after a stall: within one period of credit, the schedule holds.
        assert!(b.take(t0 + Duration::from_millis(14), true));
        assert!(b.take(t0 + Duration::from_millis(20), false));
        let after_stall = t0 + Duration::from_secs(2);
        assert!(b.take(after_stall, true));
        assert!(
            !b.take(after_stall, false),
            "a burst-1 bucket gives one token after a stall"
        );
        assert!(b.take(after_stall + Duration::from_millis(10), false));
        // Without a stall, a long sleep (longer than the timer allowance) also restarts.
        let later = after_stall + Duration::from_secs(1);
        assert!(b.take(later, false));
        assert!(!b.take(later, false));
    }
}
