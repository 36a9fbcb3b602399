//! Authentication on a drill's cluster: the root password (from `ETCD_DRILL_ROOT_PASSWORD`
//! or a file, never a command-line flag, and never printed), turning auth on once the
//! cluster is up (user `root`, role `root`, `auth enable`; the Bitnami image does that
//! itself from `ETCD_ROOT_PASSWORD`), and the check after recovery that auth is still on
//! and that the root password from the snapshot still works.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cluster::flavor::FlavorKind;
use crate::cluster::Cluster;
use crate::drill::check::CheckResult;
use crate::error::{Error, Result};
use crate::etcd::MemberClient;
use crate::readiness::{Seen, Wait};

/// The environment variable the root password is read from.
pub const PASSWORD_ENV: &str = "ETCD_DRILL_ROOT_PASSWORD";
/// The user the harness authenticates as.
pub const ROOT_USER: &str = "root";
/// How recorded `etcdctl` commands show the credentials.
pub const USER_FLAG: &str = "--user root:***";

/// The root password. Its Debug form is `***`, and it has no Display or Serialize: it
/// cannot end up in a log line or a report by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct RootPassword(String);

impl std::fmt::Debug for RootPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootPassword(***)")
    }
}

impl RootPassword {
    pub fn new(password: impl Into<String>) -> RootPassword {
        RootPassword(password.into())
    }

    /// The password itself, for the etcd client and the Bitnami image's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The root password from `file` (its first line), or else from `ETCD_DRILL_ROOT_PASSWORD`.
pub fn load_root_password(file: Option<&Path>) -> Result<Option<RootPassword>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::InvalidArgument {
            argument: "--root-password-file".into(),
            message: format!("cannot read {}: {e}", file.display()),
        })?;
        let password = text.lines().next().unwrap_or_default();
        if password.is_empty() {
            return Err(Error::InvalidArgument {
                argument: "--root-password-file".into(),
                message: format!("{} is empty; put the root password on its first line", file.display()),
            });
        }
        return Ok(Some(RootPassword::new(password)));
    }
    Ok(std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(RootPassword::new))
}

/// The password a scenario needs: one when it turns auth on (a clear error when there is
/// none), none otherwise.
pub fn password_for(scenario: &str, auth: bool, password: Option<RootPassword>) -> Result<Option<RootPassword>> {
    match (auth, password) {
        (true, None) => Err(Error::InvalidArgument {
            argument: PASSWORD_ENV.into(),
            message: format!(
                "scenario `{scenario}` turns on authentication ([security] auth = true) and needs a root password: set {PASSWORD_ENV} or pass --root-password-file FILE (never on the command line)"
            ),
        }),
        (true, password) => Ok(password),
        (false, _) => Ok(None),
    }
}

/// Whether an etcd error says the user name or password was wrong.
pub fn is_rejected_password(message: &str) -> bool {
    message.contains("authentication failed") || message.contains("invalid user ID or password")
}

/// Whether an etcd error says the request lacked valid credentials.
fn is_unauthenticated(message: &str) -> bool {
    [
        "user name is empty",
        "permission denied",
        "invalid auth token",
        "Unauthenticated",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl Cluster {
    /// Turns authentication on (unless the image did it itself) and makes every member's
    /// client authenticate as root from now on.
    pub async fn enable_auth(&mut self, password: &RootPassword) -> Result<()> {
        let timeout = Duration::from_secs(10);
        if self.image.flavor.kind != FlavorKind::Bitnami {
            let started = Instant::now();
            let via = self.members[0].client.clone();
            let enabled = via.enable_root_auth(password, timeout).await;
            let e = &via.endpoint;
            self.record(
                "turn on authentication",
                format!(
                    "etcdctl --endpoints={e} user add root --new-user-password='***' && etcdctl --endpoints={e} role add root \\\n  && etcdctl --endpoints={e} user grant-role root root && etcdctl --endpoints={e} auth enable"
                ),
                started,
                enabled.is_ok(),
            );
            enabled?;
        }
        self.auth = Some(password.clone());
        self.log_in_clients(Duration::ZERO).await
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

    /// After recovery: a request without credentials must be refused (auth is still on),
    /// and a fresh login with the root password must work (the password from the snapshot).
    pub async fn check_auth(&mut self) -> CheckResult {
        let expected = "auth on after recovery: anonymous requests refused, root password accepted";
        let Some(password) = self.auth.clone() else {
            return CheckResult::new("auth_after_recovery", false, expected, "auth was never turned on");
        };
        let started = Instant::now();
        let endpoint = self.members[0].client.endpoint.clone();
        let timeout = Duration::from_secs(5);
        let anonymous = match MemberClient::connect_as("anonymous", &endpoint, None, self.tls.as_deref()).await {
            Ok(client) => client
                .put("/etcd-drill/auth-probe".into(), "x".into(), timeout)
                .await
                .err()
                .filter(|e| is_unauthenticated(e)),
            Err(e) => Some(e.to_string()).filter(|e| is_unauthenticated(e)),
        };
        let login = MemberClient::connect_as("root-login", &endpoint, Some(&password), self.tls.as_deref()).await;
        let refused = anonymous.is_some();
        let accepted = login.is_ok();
        let actual = format!(
            "anonymous put: {}; root login: {}",
            anonymous
                .as_deref()
                .map(|e| format!("refused ({e})"))
                .unwrap_or_else(|| "NOT refused".into()),
            match &login {
                Ok(_) => "accepted".to_string(),
                Err(e) => format!("failed ({e})"),
            }
        );
        self.record(
            "check that auth is still on and the root password works",
            self.with_credentials(format!("etcdctl --endpoints={endpoint} auth status"))
                + "   # and without --user, `put /etcd-drill/auth-probe x` is refused",
            started,
            refused && accepted,
        );
        CheckResult::new("auth_after_recovery", refused && accepted, expected, actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let p = RootPassword::new("hunter2");
        assert_eq!(format!("{p:?}"), "RootPassword(***)");
        assert_eq!(format!("{:?}", Some(p.clone())), "Some(RootPassword(***))");
    }

    #[test]
    fn the_password_comes_from_the_first_line_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(load_root_password(Some(&file)).unwrap().unwrap().expose(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let err = load_root_password(Some(&file)).unwrap_err();
        assert_eq!(err.exit_class(), crate::ExitClass::InvalidInput);
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = load_root_password(Some(&dir.path().join("missing"))).unwrap_err();
        assert!(err.to_string().contains("--root-password-file"), "{err}");
    }

    #[test]
    fn auth_without_a_password_is_bad_input_that_says_what_to_do() {
        let err = password_for("server-b-loss-auth", true, None).unwrap_err();
        assert_eq!(err.exit_class(), crate::ExitClass::InvalidInput);
        let text = err.to_string();
        assert!(
            text.contains(PASSWORD_ENV) && text.contains("--root-password-file"),
            "{text}"
        );
        assert!(password_for("x", false, Some(RootPassword::new("p")))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_rejected_password_is_an_environment_error() {
        let err = Error::AuthRejected {
            member: "etcd1".into(),
            message: "etcdserver: authentication failed, invalid user ID or password".into(),
        };
        assert_eq!(err.exit_class(), crate::ExitClass::Environment);
        assert!(is_rejected_password(
            "grpc: etcdserver: authentication failed, invalid user ID or password"
        ));
    }
}
