//! The one error type of the database layer. Messages are written for an operator: they say
//! what failed and, where it helps, what to do; they never contain a password.

use std::time::Duration;

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A text from a server or a user could not be parsed.
    #[error("cannot parse {what} from {input:?}: {reason}")]
    Parse {
        what: &'static str,
        input: String,
        reason: String,
    },
    /// Connecting to the server failed (unreachable, refused, TLS, authentication).
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: mysql_async::Error,
    },
    /// A statement failed on the server. `sql` is already redacted.
    #[error("{endpoint}: `{sql}` failed: {source}")]
    Sql {
        endpoint: String,
        sql: String,
        #[source]
        source: mysql_async::Error,
    },
    /// A bounded wait ran out.
    #[error("{endpoint}: timed out after {after:?} waiting for {what}")]
    Timeout {
        endpoint: String,
        what: String,
        after: Duration,
    },
    /// The server's flavor cannot do what was asked.
    #[error("{what} is not supported on {flavor}")]
    Unsupported { flavor: String, what: String },
    /// The server is in a state that forbids the operation.
    #[error("{endpoint}: {message}")]
    State { endpoint: String, message: String },
}

/// The result type of the database layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn parse(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Error::Parse {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }

    /// The MySQL server error code, when the server answered with one.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Error::Connect { source, .. } | Error::Sql { source, .. } => match source {
                mysql_async::Error::Server(e) => Some(e.code),
                _ => None,
            },
            _ => None,
        }
    }
}
