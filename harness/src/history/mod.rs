//! A history of client operations on etcd, as a chaos run records them: each with its
//! invocation and completion time, what it asked and what it got back, or `unknown` when
//! it timed out (it may or may not have taken effect). The checkers judge such a history:
//! [`linearizability`] for the registers, [`serializable`] for the reads that may be
//! stale, [`watch`] for what watchers received, [`leases`] for keys attached to leases.
//! The registers' clients (`workload::registers`) and the watch follower feed them; each
//! is also tested on histories with planted violations.

pub mod leases;
pub mod linearizability;
pub mod serializable;
pub mod watch;

use serde::{Deserialize, Serialize};

/// What a client asked of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Put {
        value: String,
    },
    Delete,
    /// A linearizable read.
    Get,
    /// A serializable read: served from the member's own state, possibly stale; it
    /// constrains no order ([`serializable`] judges it).
    SerializableGet,
    /// A transaction: if the key's value is `expected` (None: the key is absent), set it to
    /// `new`.
    CompareAndSet {
        expected: Option<String>,
        new: String,
    },
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// A put or delete acknowledged.
    Done,
    /// A read's value (None: the key was absent).
    Read { value: Option<String> },
    /// A compare-and-set's answer: whether the comparison held and the write happened.
    Swapped { succeeded: bool },
    /// No answer in time: the request may or may not have taken effect.
    Unknown,
}

/// One operation of the history, on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Which client issued it (a client has one request in flight at a time).
    pub client: u32,
    pub key: String,
    pub request: Request,
    pub response: Response,
    /// Run time of the invocation, in microseconds.
    pub called_us: u64,
    /// Run time of the answer; for `Unknown`, when the client gave up (the operation may
    /// take effect at any moment after `called_us`, or never).
    pub returned_us: u64,
}

impl Operation {
    /// The latest moment the operation can have taken effect: its answer, or never for an
    /// operation without one.
    pub fn effect_deadline_us(&self) -> u64 {
        match self.response {
            Response::Unknown => u64::MAX,
            _ => self.returned_us,
        }
    }

    /// A line for people: `client 3 cas(k, 1 -> 2) = false [1200..1450 µs]`.
    pub fn describe(&self) -> String {
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "absent".into());
        let request = match &self.request {
            Request::Put { value } => format!("put({}, {value})", self.key),
            Request::Delete => format!("delete({})", self.key),
            Request::Get => format!("get({})", self.key),
            Request::SerializableGet => format!("serializable-get({})", self.key),
            Request::CompareAndSet { expected, new } => {
                format!("cas({}, {} -> {new})", self.key, shown(expected))
            }
        };
        let response = match &self.response {
            Response::Done => "ok".to_string(),
            Response::Read { value } => shown(value),
            Response::Swapped { succeeded } => succeeded.to_string(),
            Response::Unknown => "unknown".to_string(),
        };
        format!(
            "client {} {request} = {response} [{}..{} µs]",
            self.client, self.called_us, self.returned_us
        )
    }
}
