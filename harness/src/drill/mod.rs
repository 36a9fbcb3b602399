//! One drill, from start to verdict: `runner` plays a scenario and emits `event`s; `measure`
//! turns the ledger and the milestones into the recovery figures; `check` reads the data
//! back and judges; `series` (throughput and latency over time), `watcher` (a watch that
//! must survive the recovery) and `agent` (the backup agent inside a drill) feed them.

pub mod agent;
pub mod check;
pub mod event;
pub mod measure;
pub mod runner;
pub mod series;
pub mod watcher;
