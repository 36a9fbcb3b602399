//! Authentication facts every layer above needs: the root password (from
//! `ETCD_DRILL_ROOT_PASSWORD` or a file, never a command-line flag, and never printed), the
//! root user, how recorded commands show credentials, and what a refused password or an
//! unauthenticated request looks like in etcd's answers. Turning auth on is
//! `cluster/auth.rs`; the check after recovery is in `drill/check.rs`.

use std::path::Path;

use crate::error::{Error, Result};

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

/// Whether an etcd error says authentication is off (a login while auth is disabled).
pub fn is_auth_disabled(message: &str) -> bool {
    message.contains("authentication is not enabled")
}

/// Whether an etcd error says the request lacked valid credentials.
pub fn is_unauthenticated(message: &str) -> bool {
    [
        "user name is empty",
        "permission denied",
        "invalid auth token",
        "Unauthenticated",
    ]
    .iter()
    .any(|m| message.contains(m))
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
