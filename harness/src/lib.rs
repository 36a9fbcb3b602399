//! etcd-drill: chaos and disaster-recovery drills for etcd v3 clusters in Docker.
//!
//! A [`scenario::Scenario`] names a topology, a write workload, faults and a recovery
//! procedure; [`drill::runner::run`] plays it against real containers and emits
//! [`drill::event::Event`]s that the [`report`] module turns into a verdict and reports.

// Bottom layer first; a module never names one listed below it (tests/layers.rs checks).
pub mod clock;
pub mod error;
pub mod history;
pub mod readiness;
pub mod topology;
pub mod version;

pub mod docker;
pub mod etcd;

pub mod cluster;

pub mod backup;
pub mod fault;
pub mod workload;

pub mod scenario;

pub mod procedure;

pub mod drill;

pub mod chaos;
pub mod perf;
pub mod report;

pub use error::{Error, ExitClass, Result};
