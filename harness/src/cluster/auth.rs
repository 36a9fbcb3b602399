//! Authentication on a running cluster: turning it on once the cluster is up (user `root`,
//! role `root`, `auth enable`; the Bitnami image does that itself from
//! `ETCD_ROOT_PASSWORD`), logging every member's client in as root, and the credential
//! flags every recorded `etcdctl` command carries.

use std::time::{Duration, Instant};

use super::flavor::FlavorKind;
use super::Cluster;
use crate::error::{Error, Result};
use crate::etcd::security::{is_auth_disabled, RootPassword, USER_FLAG};
use crate::etcd::MemberClient;
use crate::readiness::{Seen, Wait};

impl Cluster {
    /// Turns authentication on, unless the image does it itself, and makes every member's
    /// client authenticate as root from now on. An image that turns auth on from
    /// `ETCD_ROOT_PASSWORD` (Bitnami) does so on its first member with a temporary etcd
    /// before it starts etcd for good; [`Cluster::create`] has waited for that
    /// ([`Cluster::wait_healthy`] waits for the start-up scripts), so auth is on now, or
    /// the image left it off and the harness turns it on itself.
    pub async fn enable_auth(&mut self, password: &RootPassword) -> Result<()> {
        let image_turns_it_on = self.image.flavor.kind == FlavorKind::Bitnami;
        if !image_turns_it_on || !self.image_turned_auth_on(password).await? {
            self.turn_on_auth(password).await?;
        }
        self.auth = Some(password.clone());
        // Right after `auth enable` a member may still be applying it, or busy with an
        // election: each member gets time to take the login; a wrong password still fails
        // at once.
        self.log_in_clients(Duration::from_secs(30)).await
    }

    /// Whether the image's own start-up turned authentication on: the root login works on
    /// the first member (true) or etcd says authentication is not enabled (false).
    async fn image_turned_auth_on(&mut self, password: &RootPassword) -> Result<bool> {
        let started = Instant::now();
        let first = &self.members[0];
        let (name, endpoint) = (first.spec.name.clone(), first.client.endpoint.clone());
        let login = MemberClient::connect_as(&name, &endpoint, Some(password), self.tls.as_deref()).await;
        let on = match &login {
            Ok(_) => Ok(true),
            Err(e) if is_auth_disabled(&e.to_string()) => Ok(false),
            Err(e) => Err(Error::Procedure {
                step: format!("check whether the image turned authentication on ({name})"),
                message: e.to_string(),
            }),
        };
        let verdict = match &on {
            Ok(true) => "on",
            Ok(false) => "left off: etcd-drill turns it on",
            Err(_) => "unknown",
        };
        self.record(
            format!("check that the image turned authentication on ({verdict})"),
            format!("etcdctl --endpoints={endpoint} {USER_FLAG} auth status"),
            started,
            on.is_ok(),
        );
        on
    }

    /// `user add root`, `role add root`, `user grant-role root root`, `auth enable`.
    async fn turn_on_auth(&mut self, password: &RootPassword) -> Result<()> {
        let started = Instant::now();
        let via = self.members[0].client.clone();
        let enabled = via.enable_root_auth(password, Duration::from_secs(10)).await;
        let e = &via.endpoint;
        self.record(
            "turn on authentication",
            format!(
                "etcdctl --endpoints={e} user add root --new-user-password='***' && etcdctl --endpoints={e} role add root \\\n  && etcdctl --endpoints={e} user grant-role root root && etcdctl --endpoints={e} auth enable"
            ),
            started,
            enabled.is_ok(),
        );
        enabled
    }

    /// Makes every member's client log in as root (auth must be on), trying each member
    /// for up to `patience` when it does not answer yet (a member that has just started).
    pub async fn log_in_clients(&mut self, patience: Duration) -> Result<()> {
        let Some(password) = self.auth.clone() else {
            return Ok(());
        };
        let started = Instant::now();
        for i in 0..self.members.len() {
            let (name, endpoint) = (
                self.members[i].spec.name.clone(),
                self.members[i].client.endpoint.clone(),
            );
            let (password, tls) = (&password, self.tls.as_deref());
            let login = Wait::new(
                format!("{name} to take the root login"),
                Duration::from_millis(200),
                patience,
            )
            .until(|| async {
                match MemberClient::connect_as(&name, &endpoint, Some(password), tls).await {
                    Ok(client) => Seen::Ready(Ok(client)),
                    Err(e @ Error::AuthRejected { .. }) => Seen::Ready(Err(e)),
                    Err(e) => Seen::NotYet(e),
                }
            })
            .await;
            self.members[i].client = match login {
                Ok(result) => result?,
                Err(timed_out) => {
                    let waited_ms = timed_out.waited.as_millis() as u64;
                    return Err(timed_out.last.unwrap_or(Error::Timeout {
                        what: format!("{name} to take the root login"),
                        waited_ms,
                    }));
                }
            };
        }
        self.record(
            "authenticate as root on every member",
            format!("etcdctl --endpoints={} auth status", self.endpoints_list()),
            started,
            true,
        );
        Ok(())
    }

    /// Every member's client URL, comma-separated, as `--endpoints` takes them.
    pub fn endpoints_list(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.endpoint.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `command` with the flags every `etcdctl` call against the cluster needs: the TLS
    /// files (`--cacert/--cert/--key`) with TLS on, and `--user root:***` once auth is on.
    pub fn with_credentials(&self, command: String) -> String {
        let mut flags = Vec::new();
        if self.tls.is_some() && !command.contains("--cacert") {
            flags.push(crate::etcd::tls::ETCDCTL_FLAGS);
        }
        if self.auth.is_some() && !command.contains(USER_FLAG) {
            flags.push(USER_FLAG);
        }
        if flags.is_empty() {
            return command;
        }
        command.replace(
            "etcdctl --endpoints",
            &format!("etcdctl {} --endpoints", flags.join(" ")),
        )
    }
}
