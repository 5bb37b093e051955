//! The provider's error type. Each message says what went wrong and what the operator can do.

use std::path::PathBuf;

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (a flag, a name); nothing was changed.
    #[error("{0}")]
    BadInput(String),
    /// No such cluster or instance.
    #[error("unknown {kind} {name:?}; known: {known}")]
    Unknown {
        kind: &'static str,
        name: String,
        known: String,
    },
    /// The provider cannot do this.
    #[error("{0}")]
    Unsupported(String),
    /// Something the provider needs is missing on this machine.
    #[error("{0}")]
    Missing(String),
    /// The lab's state file cannot be read.
    #[error("the lab state file {path} is damaged ({reason}); inspect or restore it, or remove the lab with `dbshift lab down --purge --dir {dir}` (it stops the lab's servers by their pid files)")]
    DamagedState {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
    /// No lab at the given place.
    #[error("no lab in {0}: start one with `dbshift lab up` (or pass --dir)")]
    NoLab(PathBuf),
    /// A server process failed to start, stop or answer.
    #[error("{instance}: {message}")]
    Process { instance: String, message: String },
    /// Filesystem or process I/O.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation.
    #[error("certificate: {0}")]
    Tls(String),
    /// A database operation failed.
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
    /// The cloud platform refused or failed a call; `message` says what to do about it.
    #[error("{operation} {target}: {message}")]
    Platform {
        operation: String,
        target: String,
        /// The platform's error code (`Throttling`, `InvalidDBInstanceState`, ...).
        code: String,
        message: String,
    },
    /// Work was done and then stopped where a human must decide (exit 3): the message names
    /// what exists and how to continue or clean up.
    #[error("{0}")]
    NeedsHuman(String),
    /// The topology of a self-managed cluster does not fit (a seed that does not answer, two
    /// writers, none); the message says which server and what to do. Nothing was changed.
    #[error("cluster {cluster}: {message}")]
    Discovery { cluster: String, message: String },
    /// Moving a cluster's clients to its new writer failed (HAProxy's runtime API, the
    /// redirect command): the message names the HAProxy or the command, what was sent and
    /// what came back.
    #[error("redirect of cluster {cluster}: {message}")]
    Redirect { cluster: String, message: String },
    /// A wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },
}

/// The result type of the provider layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a description to an I/O error (the lab's files and processes).
#[cfg(feature = "local")]
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

#[cfg(feature = "local")]
impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
