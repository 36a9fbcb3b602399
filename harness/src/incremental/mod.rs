//! Incremental backups: an agent that keeps full snapshots plus delta files (every event
//! of the key space, in revision order, with no gap and no overlap) in a local directory or
//! an S3-compatible bucket, and the restore that replays a full snapshot and its deltas
//! into a ready-to-start cluster. Unlike [`crate::backup`] (plain periodic snapshots inside
//! a drill), this is a long-lived agent with its own file format and chain checks.

pub mod agent;
pub mod chain;
pub mod command;
pub mod config;
pub mod drill;
pub mod naming;
pub mod record;
pub mod replay;
pub mod retention;
pub mod store;

pub use agent::{Agent, AgentFigures};
pub use chain::{ChainError, ChainPlan};
pub use config::{AgentConfig, RawAgentConfig, RetentionPolicy};
pub use naming::{Compression, DeltaName, FullName, StoredName};
pub use record::{DeltaEvent, EventKind};
pub use store::{BackupStore, StoreLocation};
