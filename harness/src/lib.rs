//! etcd-drill: chaos and disaster-recovery drills for etcd v3 clusters in Docker.
//!
//! A [`scenario::Scenario`] names a topology, a write workload, faults and a recovery
//! procedure; [`runner::run`] plays it against real containers and emits
//! [`event::Event`]s that the [`report`] module turns into a verdict and reports.

pub mod backup;
pub mod check;
pub mod clock;
pub mod cluster;
pub mod debian;
pub mod error;
pub mod etcd;
pub mod event;
pub mod fault;
pub mod flavor;
pub mod image;
pub mod incremental;
pub mod perf;
pub mod procedure;
pub mod readiness;
pub mod report;
pub mod runner;
pub mod runtime;
pub mod scenario;
pub mod security;
pub mod series;
pub mod shell;
pub mod tls;
pub mod tools;
pub mod topology;
pub mod watcher;
pub mod workload;

pub use error::{Error, ExitClass, Result};
