//! The probe's error type. A probe that fails its preflight has written nothing and touched
//! nothing but the probe table's `CREATE ... IF NOT EXISTS`; every such error says what to do.

use std::path::PathBuf;

/// Errors of the probe.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong (rate, timeout, URL); nothing was done.
    #[error("{0}")]
    BadInput(String),
    /// The target name is neither a cluster nor an instance the provider knows.
    #[error("cannot resolve the probe target {target:?}: {source}")]
    UnknownTarget {
        target: String,
        #[source]
        source: Box<dbshift_provider::Error>,
    },
    /// The target's server did not answer (refused, unreachable, timed out).
    #[error("cannot reach the probe target {target} ({endpoint}): {reason}; check that the server is running and the host and port are right (`dbshift resolve`, `dbshift lab status`)")]
    Unreachable {
        target: String,
        endpoint: String,
        reason: String,
    },
    /// The server's certificate does not verify against the CA the probe trusts.
    #[error("the TLS handshake with the probe target {target} ({endpoint}) failed: {reason}; the server's certificate chain must verify against the CA given with --tls-ca (or the provider's CA bundle)")]
    Untrusted {
        target: String,
        endpoint: String,
        reason: String,
    },
    /// The target is read-only: the probe cannot write there.
    #[error("the probe target {target} ({endpoint}) is read-only (a replica?); probe the cluster name or its writer")]
    ReadOnly { target: String, endpoint: String },
    /// The server refused the user or password.
    #[error("the server at {endpoint} refused user {user:?}: {reason}; check the user and the password (URL or DBSHIFT_PROBE_PASSWORD)")]
    AccessDenied {
        endpoint: String,
        user: String,
        reason: String,
    },
    /// The probe table could not be created or written (privileges, read-only server).
    #[error("the probe cannot write dbshift.probe on {endpoint}: {reason}; the probe user needs CREATE and INSERT on the `dbshift` schema, and the target must be the writer")]
    CannotWrite { endpoint: String, reason: String },
    /// Writing a report file failed.
    #[error("cannot write the report {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The probe's own tasks failed (a bug, or the runtime shutting down).
    #[error("the probe's tasks failed: {0}")]
    Internal(String),
}

impl Error {
    /// Errors that are the caller's input or target (exit code 2 in the CLI): nothing ran.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Report { .. } | Error::Internal(_))
    }
}

/// The result type of the probe.
pub type Result<T, E = Error> = std::result::Result<T, E>;
