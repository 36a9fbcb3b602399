//! How the harness reaches a cluster it did not start (`perf --endpoints`, `backup
//! --endpoints`): TLS from PEM files (`--cacert`, `--cert`, `--key`) and a user with a
//! password (`--user`, `--password-file`), taken the way etcdctl takes them, with the
//! `ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY`, `ETCDCTL_USER` and `ETCDCTL_PASSWORD`
//! variables when a flag is not given. No password is read from a prompt: the harness
//! runs in CI, where nobody answers one.

use std::path::{Path, PathBuf};

use super::security::RootPassword;
use super::MemberClient;
use crate::error::{Error, Result};

/// The flags as given (the CLI fills this); [`ClientAccess::resolve`] checks them.
#[derive(Debug, Clone, Default)]
pub struct AccessFlags {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `name`, or etcdctl's `name:password`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// TLS material and credentials for one cluster, read and checked. Its `Debug` shows
/// what is set, never a key or a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientAccess {
    ca_pem: Option<String>,
    /// Client certificate and key, PEM.
    identity: Option<(String, String)>,
    user: Option<(String, RootPassword)>,
}

impl std::fmt::Debug for ClientAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAccess")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish()
    }
}

fn read_pem(flag: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument {
        argument: flag.into(),
        message: format!("cannot read {}: {e}", path.display()),
    })
}

impl ClientAccess {
    /// Checks `flags`, filling what is missing from `env` (ETCDCTL_* variables), and reads
    /// the files. A certificate without its key (or the other way round), a user without
    /// a password or an unreadable file is an error naming the flag.
    pub fn resolve(flags: &AccessFlags, env: impl Fn(&str) -> Option<String>) -> Result<ClientAccess> {
        let from_env = |given: &Option<PathBuf>, var: &str| {
            given
                .clone()
                .or_else(|| env(var).filter(|v| !v.is_empty()).map(PathBuf::from))
        };
        let cacert = from_env(&flags.cacert, "ETCDCTL_CACERT");
        let cert = from_env(&flags.cert, "ETCDCTL_CERT");
        let key = from_env(&flags.key, "ETCDCTL_KEY");
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((read_pem("--cert", &cert)?, read_pem("--key", &key)?)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::InvalidArgument {
                    argument: "--key".into(),
                    message: "a client certificate (--cert) needs its key: give --key (or ETCDCTL_KEY)".into(),
                })
            }
            (None, Some(_)) => {
                return Err(Error::InvalidArgument {
                    argument: "--cert".into(),
                    message: "a client key (--key) needs its certificate: give --cert (or ETCDCTL_CERT)".into(),
                })
            }
        };
        let ca_pem = cacert.map(|path| read_pem("--cacert", &path)).transpose()?;
        let user = match flags
            .user
            .clone()
            .or_else(|| env("ETCDCTL_USER"))
            .filter(|u| !u.is_empty())
        {
            None => None,
            Some(given) => {
                let (name, inline) = match given.split_once(':') {
                    Some((name, password)) => (name.to_string(), Some(password.to_string())),
                    None => (given, None),
                };
                let password = match (&flags.password_file, inline) {
                    (Some(file), _) => {
                        let text = std::fs::read_to_string(file).map_err(|e| Error::InvalidArgument {
                            argument: "--password-file".into(),
                            message: format!("cannot read {}: {e}", file.display()),
                        })?;
                        text.lines().next().unwrap_or_default().to_string()
                    }
                    (None, Some(inline)) => {
                        eprintln!("etcd-drill: warning: a password in --user shows in the process list and the shell's history; prefer --password-file or ETCDCTL_PASSWORD");
                        inline
                    }
                    (None, None) => env("ETCDCTL_PASSWORD").unwrap_or_default(),
                };
                if name.is_empty() || password.is_empty() {
                    return Err(Error::InvalidArgument {
                        argument: "--user".into(),
                        message: format!(
                            "user `{name}` needs a password: give --password-file FILE (its first line) or set ETCDCTL_PASSWORD"
                        ),
                    });
                }
                Some((name, RootPassword::new(password)))
            }
        };
        Ok(ClientAccess { ca_pem, identity, user })
    }

    /// TLS options for the etcd client, when a CA or a client certificate was given.
    pub fn tls_options(&self) -> Option<etcd_client::TlsOptions> {
        if self.ca_pem.is_none() && self.identity.is_none() {
            return None;
        }
        let mut options = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            options = options.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            options = options.identity(etcd_client::Identity::from_pem(cert, key));
        }
        Some(options)
    }

    /// The user and password to log in with, if one was given.
    pub fn user(&self) -> Option<(&str, &RootPassword)> {
        self.user.as_ref().map(|(name, password)| (name.as_str(), password))
    }

    /// Connection options for the load generator's own connections to `endpoint` (TLS for
    /// an https endpoint, and the user).
    pub fn connect_options(&self, endpoint: &str, options: etcd_client::ConnectOptions) -> etcd_client::ConnectOptions {
        let mut options = options;
        if let Some(tls) = self.tls_for(endpoint) {
            options = options.with_tls(tls);
        }
        if let Some((name, password)) = self.user() {
            options = options.with_user(name, password.expose());
        }
        options
    }

    /// A client for `endpoint`, over TLS (https) and logged in as the user when given.
    pub async fn connect(&self, name: &str, endpoint: &str) -> Result<MemberClient> {
        MemberClient::connect_with(name, endpoint, self.user(), self.tls_for(endpoint)).await
    }

    /// TLS options for `endpoint`: none for an http endpoint, as etcdctl ignores its TLS
    /// flags (and ETCDCTL_CACERT set for another cluster) there.
    fn tls_for(&self, endpoint: &str) -> Option<etcd_client::TlsOptions> {
        endpoint.starts_with("https://").then(|| self.tls_options()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        (
            write("ca.crt", "CA"),
            write("client.crt", "CERT"),
            write("client.key", "KEY"),
            write("password", "s3cret\nignored\n"),
        )
    }

    #[test]
    fn flags_come_first_then_the_etcdctl_variables() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key, password) = files(dir.path());
        let env_ca = ca.display().to_string();
        let env = |var: &str| match var {
            "ETCDCTL_CACERT" => Some(env_ca.clone()),
            "ETCDCTL_USER" => Some("app".to_string()),
            "ETCDCTL_PASSWORD" => Some("from-env".to_string()),
            _ => None,
        };
        let access = ClientAccess::resolve(
            &AccessFlags {
                cert: Some(cert),
                key: Some(key),
                password_file: Some(password),
                user: Some("root".into()),
                ..AccessFlags::default()
            },
            env,
        )
        .unwrap();
        assert_eq!(access.ca_pem.as_deref(), Some("CA"));
        assert_eq!(access.identity, Some(("CERT".into(), "KEY".into())));
        let (name, secret) = access.user().unwrap();
        assert_eq!((name, secret.expose()), ("root", "s3cret"));
        assert!(access.tls_options().is_some());
        // Nothing given, nothing set: a plain connection.
        let plain = ClientAccess::resolve(&AccessFlags::default(), |_| None).unwrap();
        assert!(plain.user().is_none() && plain.tls_options().is_none() && plain == ClientAccess::default());
        // etcdctl's name:password, and the user and password from the variables.
        let inline = ClientAccess::resolve(
            &AccessFlags {
                user: Some("root:pw".into()),
                ..AccessFlags::default()
            },
            |_| None,
        )
        .unwrap();
        assert_eq!(inline.user().unwrap().1.expose(), "pw");
        let from_env = ClientAccess::resolve(&AccessFlags::default(), env).unwrap();
        assert_eq!(from_env.user().map(|(n, p)| (n, p.expose())), Some(("app", "from-env")));
    }

    #[test]
    fn incomplete_flags_are_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key, _) = files(dir.path());
        let refused = |flags: AccessFlags| ClientAccess::resolve(&flags, |_| None).unwrap_err().to_string();
        assert!(refused(AccessFlags {
            cert: Some(cert),
            ..AccessFlags::default()
        })
        .contains("--key"));
        assert!(refused(AccessFlags {
            key: Some(key),
            ..AccessFlags::default()
        })
        .contains("--cert"));
        let e = refused(AccessFlags {
            user: Some("root".into()),
            ..AccessFlags::default()
        });
        assert!(e.contains("--user") && e.contains("ETCDCTL_PASSWORD"), "{e}");
        let e = refused(AccessFlags {
            cacert: Some(dir.path().join("missing.crt")),
            ..AccessFlags::default()
        });
        assert!(e.contains("--cacert") && e.contains("missing.crt"), "{e}");
    }
}
