//! Chaos runs: a random schedule of faults and recoveries drawn from a seed
//! ([`schedule`]), played on a scenario's topology by the drill runner with the registers'
//! mixed workload and judged by every checker (acknowledged writes, HashKV, member list,
//! linearizability of the registers' history); a failing schedule is shrunk to a shorter
//! one that still fails ([`shrink`]). The `chaos` command of the CLI ties them together.

pub mod schedule;
pub mod shrink;
