//! Backups: `periodic` (plain snapshots a drill takes on a schedule), and the incremental
//! backup agent that keeps full snapshots plus delta files (every event of the key space, in
//! revision order, with no gap and no overlap) in a local directory or an S3-compatible
//! bucket, with the restore that replays a full snapshot and its deltas into a
//! ready-to-start cluster. The agent is long-lived, with its own file format and chain checks.

pub mod agent;
pub mod chain;
pub mod command;
pub mod config;
pub mod naming;
pub mod periodic;
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
