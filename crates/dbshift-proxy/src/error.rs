//! The crate's one error type. Messages never carry a password, a hash or a scramble.

use std::io;

/// What went wrong in the proxy or in one of its operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("backend {endpoint}: {message}")]
    Backend { endpoint: String, message: String },
    /// The backend answered with an ERR packet.
    #[error("backend {endpoint} refused: {code} ({state}) {message}")]
    BackendRefused {
        endpoint: String,
        code: u16,
        state: String,
        message: String,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("reading password hashes: {0}")]
    AuthSource(String),
    #[error("the proxy is shutting down")]
    Shutdown,
    #[error("admin API: {0}")]
    Admin(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn protocol(msg: impl Into<String>) -> Error {
        Error::Protocol(msg.into())
    }
}
