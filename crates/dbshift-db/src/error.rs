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
    /// A statement ran past the connection's statement timeout and was abandoned. `sql` is
    /// already redacted. The connection is no longer used (its protocol state is unknown);
    /// `KILL QUERY` was attempted on a fresh connection, and `cancel` says how that went.
    #[error(
        "{endpoint}: `{sql}` did not finish within {} (it may wait on a lock: see SHOW \
         PROCESSLIST on that server); {cancel}",
        human_duration(*.after)
    )]
    StatementTimeout {
        endpoint: String,
        sql: String,
        after: Duration,
        cancel: Cancel,
    },
    /// The connection was abandoned earlier (a statement ran past its bound); every later call
    /// on it fails at once with this instead of waiting on a connection in an unknown state.
    #[error("{endpoint}: this connection is no longer usable: {reason}; connect again")]
    Broken { endpoint: String, reason: String },
    /// The server's flavor cannot do what was asked.
    #[error("{what} is not supported on {flavor}")]
    Unsupported { flavor: String, what: String },
    /// The server is in a state that forbids the operation.
    #[error("{endpoint}: {message}")]
    State { endpoint: String, message: String },
}

/// What became of a statement abandoned after its bound: the server may still be running it,
/// so the message says whether `KILL QUERY` reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// The server accepted `KILL QUERY` (or `mysql.rds_kill_query`) for the session, or the
    /// session had already ended. A statement the server cannot interrupt still runs on.
    Sent { connection_id: u32 },
    /// The cancel could not be delivered; the statement may still be running.
    Failed { connection_id: u32, reason: String },
}

impl std::fmt::Display for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // "Sent", not "cancelled": MariaDB marks a STOP SLAVE that waits for its threads
            // as killed and still waits; the operator must not believe it is gone.
            Cancel::Sent { connection_id } => write!(
                f,
                "KILL QUERY {connection_id} was sent to cancel it (the server may still finish \
                 it: STOP SLAVE, for one, keeps waiting for its threads) and this connection \
                 was abandoned"
            ),
            Cancel::Failed {
                connection_id,
                reason,
            } => write!(
                f,
                "cancelling it failed ({reason}), so it may still be running as connection \
                 {connection_id}; this connection was abandoned"
            ),
        }
    }
}

/// A bound as an operator reads it: `30 s`, `1.5 s`, `250 ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        // Tenths are as fine as a bound given to an operator gets; trailing zeros add noise.
        let secs = format!("{:.1}", d.as_secs_f64());
        format!("{} s", secs.trim_end_matches(".0"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_bound() {
        assert_eq!(human_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_millis(2049)), "2 s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(human_duration(Duration::ZERO), "0 ms");
    }

    #[test]
    fn a_statement_timeout_names_the_statement_the_server_and_the_bound() {
        let e = Error::StatementTimeout {
            endpoint: "127.0.0.1:3307".into(),
            sql: "STOP SLAVE".into(),
            after: Duration::from_secs(30),
            cancel: Cancel::Sent { connection_id: 42 },
        };
        assert_eq!(
            e.to_string(),
            "127.0.0.1:3307: `STOP SLAVE` did not finish within 30 s (it may wait on a lock: see \
             SHOW PROCESSLIST on that server); KILL QUERY 42 was sent to cancel it (the server \
             may still finish it: STOP SLAVE, for one, keeps waiting for its threads) and this \
             connection was abandoned"
        );
        let e = Error::StatementTimeout {
            endpoint: "db:3306".into(),
            sql: "SET GLOBAL read_only=ON".into(),
            after: Duration::from_millis(1500),
            cancel: Cancel::Failed {
                connection_id: 7,
                reason: "cannot connect".into(),
            },
        };
        let text = e.to_string();
        assert!(text.contains("within 1.5 s"), "{text}");
        assert!(
            text.contains("may still be running as connection 7"),
            "{text}"
        );
        assert_eq!(e.server_code(), None);
    }

    #[test]
    fn a_broken_connection_says_why_and_what_to_do() {
        let e = Error::Broken {
            endpoint: "db:3306".into(),
            reason: "`STOP SLAVE` did not finish within 2 s".into(),
        };
        assert_eq!(
            e.to_string(),
            "db:3306: this connection is no longer usable: `STOP SLAVE` did not finish within \
             2 s; connect again"
        );
    }
}
