//! The Docker side: `runtime` talks to the daemon (containers, networks, volumes, labels,
//! the run guard and `clean`), `owner` tells from their labels whose a run's objects are
//! and whether that owner is gone, `reaper` removes the runs of a harness that died (at the
//! next start, or by the per-run watchdog process), `shell` renders what the harness did as the `docker` command
//! lines an operator would type, and `image` with `debian` builds the local etcd images
//! (`scripted` is the test image whose own script starts etcd, in the Bitnami layout), `hosts`
//! holds a run's daemons, one per host, and `netfault` is the tool that splits hosts at the
//! network level.

pub mod binaries;
pub mod debian;
pub mod hosts;
pub mod image;
pub mod netfault;
pub mod owner;
pub mod reaper;
pub mod runtime;
pub mod scripted;
pub mod shell;
pub mod source;
