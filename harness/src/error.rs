//! The library's error type, and the mapping from each class of error to the CLI's
//! documented exit codes (see README: 1 failed drill, 2 invalid input, 3 environment,
//! 4 interrupted, 5 harness breakdown).

use std::path::PathBuf;

/// Exit codes of the `etcd-drill` binary. Keep in step with the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// A drill ran and at least one check failed, or the drill itself broke down.
    DrillFailed = 1,
    /// The user gave something we cannot use: a scenario, a flag, a path.
    InvalidInput = 2,
    /// The machine cannot run drills: no Docker daemon, a missing image, no pip.
    Environment = 3,
    /// SIGINT or SIGTERM ended the run; its objects were removed.
    Interrupted = 4,
    /// The harness could not carry out a step (a Docker call, a file it writes, the
    /// cleanup): no verdict on etcd.
    HarnessBroken = 5,
}

impl ExitClass {
    /// The exit code of a run that ended with this class, or with a verdict when None.
    pub fn code(class: Option<ExitClass>, verdict: u8) -> u8 {
        class.map(|c| c as u8).unwrap_or(verdict)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    ScenarioFile { path: PathBuf, message: String },

    #[error("{path}: key `{key}`: {message}")]
    ScenarioKey {
        path: PathBuf,
        key: String,
        message: String,
    },

    #[error("no scenario named `{name}`: give a path to a .toml file or one of: {known}")]
    UnknownScenario { name: String, known: String },

    #[error("{path}: {message}")]
    ReportFile { path: PathBuf, message: String },

    #[error("cannot read {path}: {source}; give a file that exists and can be read")]
    InputFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid argument {argument}: {message}")]
    InvalidArgument { argument: String, message: String },

    #[error("cannot reach the Docker daemon ({source}). Start it (e.g. `dockerd &` or `systemctl start docker`) or set DOCKER_HOST")]
    DockerUnavailable {
        #[source]
        source: bollard::errors::Error,
    },

    #[error("image `{image}` is not present and could not be pulled ({reason}). On an offline machine build the local image with `etcd-drill image build` and pass `--image {local}`")]
    ImageMissing {
        image: String,
        reason: String,
        local: String,
    },

    #[error("image `{image}` cannot be used: {message}")]
    ImageUnusable { image: String, message: String },

    #[error("building the etcd image failed: {message}")]
    ImageBuild { message: String },

    #[error("the Docker daemon stopped answering during `{action}` on `{object}` ({source}): is it restarting, or gone? The run's objects are removed once it answers again (the run's watchdog keeps trying; or run `etcd-drill clean`)")]
    DockerLost {
        action: &'static str,
        object: String,
        #[source]
        source: bollard::errors::Error,
    },

    #[error("Docker call `{action}` on `{object}` failed: {source}")]
    Docker {
        action: &'static str,
        object: String,
        #[source]
        source: bollard::errors::Error,
    },

    #[error("etcd call `{action}` on {member} failed: {message}")]
    Etcd {
        action: &'static str,
        member: String,
        message: String,
    },

    #[error("{member} refused the password ({message}); check it: ETCD_DRILL_ROOT_PASSWORD or --root-password-file for a drill's root, --password-file or ETCDCTL_PASSWORD for --user")]
    AuthRejected { member: String, message: String },

    #[error("recovery step `{step}` failed: {message}")]
    Procedure { step: String, message: String },

    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout { what: String, waited_ms: u64 },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("prefix `{prefix}` already holds keys on {endpoint}; delete them first (`etcdctl del --prefix {prefix}`) or choose another --prefix")]
    PrefixNotEmpty { prefix: String, endpoint: String },

    #[error("backup store {location}: {message}")]
    BackupStore { location: String, message: String },

    #[error("backup chain in {store} cannot be restored: {source}")]
    BackupChain {
        store: String,
        #[source]
        source: ChainError,
    },

    #[error("interrupted by {signal}; the run's containers, networks and volumes were removed")]
    Interrupted { signal: &'static str },
}

impl Error {
    pub fn exit_class(&self) -> ExitClass {
        match self {
            Error::ScenarioFile { .. }
            | Error::ScenarioKey { .. }
            | Error::UnknownScenario { .. }
            | Error::ReportFile { .. }
            | Error::InputFile { .. }
            | Error::InvalidArgument { .. }
            | Error::PrefixNotEmpty { .. } => ExitClass::InvalidInput,
            Error::DockerUnavailable { .. }
            | Error::ImageMissing { .. }
            | Error::ImageUnusable { .. }
            | Error::AuthRejected { .. }
            | Error::ImageBuild { .. }
            | Error::DockerLost { .. } => ExitClass::Environment,
            Error::Etcd { .. } | Error::Procedure { .. } | Error::Timeout { .. } | Error::BackupChain { .. } => {
                ExitClass::DrillFailed
            }
            Error::Docker { .. } | Error::Io { .. } => ExitClass::HarnessBroken,
            Error::Interrupted { .. } => ExitClass::Interrupted,
            Error::BackupStore { .. } => ExitClass::Environment,
        }
    }

    /// For a file the user named (a scenario, a budgets or report file, a config): a
    /// failed read is bad input (exit 2), not a breakdown of the harness.
    pub fn input(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::InputFile { path, source }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub fn docker(action: &'static str, object: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
        let object = object.into();
        move |source| match daemon_unreachable(&source) {
            true => Error::DockerLost { action, object, source },
            false => Error::Docker { action, object, source },
        }
    }

    pub fn etcd(action: &'static str, member: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> Error {
        let member = member.into();
        move |e| Error::Etcd {
            action,
            member,
            message: e.to_string(),
        }
    }
}

/// A Docker call that failed because the daemon did not answer at all (its socket gone or
/// refusing, the connection cut, no reply in time), not because it refused the request.
fn daemon_unreachable(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::IOError { .. } | E::HyperLegacyError { .. } | E::SocketNotFoundError(_) | E::RequestTimeoutError
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a chain of backup files (a full snapshot and its deltas, see `backup::chain`) cannot
/// be trusted; every variant names the file (and revisions) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("no full snapshot{0}")]
    NoFull(String),
    #[error("gap: {after} ends at revision {end}, but the next delta {next} starts at {start}: revisions {}..={} are in no file", end + 1, start - 1)]
    Gap {
        after: String,
        end: i64,
        next: String,
        start: i64,
    },
    #[error("overlap: {after} ends at revision {end}, but the next delta {next} starts at {start}: revisions {start}..={end} are in both")]
    Overlap {
        after: String,
        end: i64,
        next: String,
        start: i64,
    },
    #[error("missing delta: the chain ends with {after} at revision {end}, but the store's head says the agent saved up to revision {head}")]
    MissingTail { after: String, end: i64, head: i64 },
    #[error("{file}: bad hash: its .sha256 sidecar says {expected}, the content hashes to {actual}")]
    BadHash {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: no readable .sha256 sidecar ({message})")]
    MissingHash { file: String, message: String },
    #[error("{file}: unreadable: {message}")]
    Unreadable { file: String, message: String },
    #[error("{file}: content does not match its name: {message}")]
    BadContent { file: String, message: String },
    #[error("{file}: replay of revision {revision} failed: {message}")]
    Replay {
        file: String,
        revision: i64,
        message: String,
    },
}

impl ChainError {
    /// The file at fault (for a gap or overlap: the delta after it).
    pub fn file(&self) -> &str {
        match self {
            ChainError::NoFull(_) => "",
            ChainError::Gap { next, .. } | ChainError::Overlap { next, .. } => next,
            ChainError::MissingTail { after, .. } => after,
            ChainError::BadHash { file, .. }
            | ChainError::MissingHash { file, .. }
            | ChainError::Unreadable { file, .. }
            | ChainError::BadContent { file, .. }
            | ChainError::Replay { file, .. } => file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_exit_code() {
        let class = |e: Error| e.exit_class() as u8;
        assert_eq!(
            class(Error::InvalidArgument {
                argument: "--x".into(),
                message: "bad".into()
            }),
            2
        );
        assert_eq!(
            class(Error::ImageMissing {
                image: "x".into(),
                reason: "not found".into(),
                local: "etcd-drill/etcd:3.5".into()
            }),
            3
        );
        assert_eq!(class(Error::Interrupted { signal: "SIGTERM" }), 4);
        assert_eq!(
            class(Error::Io {
                path: "report.json".into(),
                source: std::io::Error::other("disk full")
            }),
            5
        );
        assert_eq!(
            class(Error::Timeout {
                what: "the cluster to take a write".into(),
                waited_ms: 60_000
            }),
            1
        );
        // A run with a verdict exits with it unless it broke down.
        assert_eq!(ExitClass::code(None, 1), 1);
        assert_eq!(ExitClass::code(Some(ExitClass::HarnessBroken), 0), 5);
    }
}
