//! The registers' mixed workload: a few clients, each with one request in flight at a
//! time, read (linearizable `get`, and serializable `get` from the member's own state),
//! overwrite (`put`), delete and compare-and-set (a `txn`
//! comparing the value it last read) a small set of keys, every operation recorded with
//! its call and answer times and its result, `unknown` for a write that failed or timed
//! out (it may or may not have taken effect). A read that failed took no effect and is
//! left out. The history goes to the linearizability checker (`history`).

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;

use crate::etcd::ClientSet;
use crate::history::{Operation, Request, Response};

/// Where the registers live: `<prefix>r0`, `<prefix>r1`, ...
pub fn register_key(prefix: &str, index: usize) -> String {
    format!("{prefix}r{index}")
}

/// Running register clients; `stop` ends them and hands back the history.
pub struct RegisterClients {
    stop: tokio::sync::watch::Sender<bool>,
    clients: Vec<JoinHandle<Vec<Operation>>>,
}

/// Pause between two operations of one client: about ten a second each.
const PACE: Duration = Duration::from_millis(100);

impl RegisterClients {
    /// Starts one client per register (at least two), over `registers` keys under `prefix`,
    /// each drawing its operations from `seed`; a request without an answer within
    /// `timeout` is recorded as unknown. Times are microseconds since `epoch`.
    pub fn start(
        registers: usize,
        prefix: &str,
        members: ClientSet,
        timeout: Duration,
        seed: u64,
        epoch: Instant,
    ) -> RegisterClients {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let clients = (0..registers.max(2))
            .map(|client| {
                let (mut stopped, members, prefix) = (stopped.clone(), members.clone(), prefix.to_string());
                tokio::spawn(async move {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (client as u64).wrapping_mul(0x9e37_79b9));
                    let mut history = Vec::new();
                    // What this client last read of each register: what its CAS expects.
                    let mut last_read: Vec<Option<String>> = vec![None; registers];
                    let mut sequence = 0u64;
                    let micros = |at: Instant| at.saturating_duration_since(epoch).as_micros() as u64;
                    while !*stopped.borrow() {
                        let index = rng.random_range(0..registers);
                        let key = register_key(&prefix, index);
                        let current = members.current();
                        let member = &current[rng.random_range(0..current.len())];
                        sequence += 1;
                        let fresh = format!("c{client}-{sequence}");
                        let request = match rng.random_range(0..20) {
                            0..=3 => Request::Get,
                            4..=5 => Request::SerializableGet,
                            6..=13 => Request::CompareAndSet {
                                expected: last_read[index].clone(),
                                new: fresh.clone(),
                            },
                            14..=17 => Request::Put { value: fresh.clone() },
                            _ => Request::Delete,
                        };
                        let called = Instant::now();
                        let response = match &request {
                            Request::Get => match member.get_value(&key, timeout).await {
                                Ok((value, _)) => {
                                    last_read[index] = value.clone();
                                    Some(Response::Read { value })
                                }
                                Err(_) => None,
                            },
                            Request::SerializableGet => member
                                .get_value_serializable(&key, timeout)
                                .await
                                .ok()
                                .map(|value| Response::Read { value }),
                            Request::Put { value } => {
                                Some(match member.put(key.clone(), value.clone(), timeout).await {
                                    Ok(_) => Response::Done,
                                    Err(_) => Response::Unknown,
                                })
                            }
                            Request::Delete => Some(match member.delete(&key, timeout).await {
                                Ok(_) => Response::Done,
                                Err(_) => Response::Unknown,
                            }),
                            Request::CompareAndSet { expected, new } => Some(
                                match member.compare_and_set(&key, expected.as_deref(), new, timeout).await {
                                    Ok(succeeded) => {
                                        if succeeded {
                                            last_read[index] = Some(new.clone());
                                        }
                                        Response::Swapped { succeeded }
                                    }
                                    Err(_) => Response::Unknown,
                                },
                            ),
                        };
                        let returned = Instant::now();
                        if let Some(response) = response {
                            history.push(Operation {
                                client: client as u32,
                                key,
                                request,
                                response,
                                called_us: micros(called),
                                returned_us: micros(returned),
                            });
                        }
                        let _ = tokio::time::timeout(PACE, stopped.changed()).await;
                    }
                    history
                })
            })
            .collect();
        RegisterClients { stop, clients }
    }

    /// Stops the clients and returns every operation they recorded, ordered by call time.
    pub async fn stop(self) -> Vec<Operation> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for client in self.clients {
            if let Ok(history) = client.await {
                all.extend(history);
            }
        }
        all.sort_by_key(|o| (o.called_us, o.client));
        all
    }
}
