//! The crate's errors: [`Error`], which every workflow's own error converts into, with its
//! [`Result`] alias; and [`StepError`], what one step of a run fails with, typed by what a
//! caller does about it (retry, look at the platform, or call a human).

/// What kind of failure stopped a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepErrorKind {
    /// A server refused or failed a statement, or could not be reached.
    Database,
    /// The control plane (or a proxy in front of the cluster) failed.
    Provider,
    /// Something did not happen within its bound.
    Timeout,
    /// The step would not act: nothing was changed.
    Refused,
    /// Going on is not safe: a human must look (two writers possible, data that would be lost).
    Unsafe,
}

/// One step's failure: its kind and the message the journal keeps (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub kind: StepErrorKind,
    pub message: String,
}

impl StepError {
    pub fn new(kind: StepErrorKind, message: impl Into<String>) -> StepError {
        StepError {
            kind,
            message: message.into(),
        }
    }

    pub fn database(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Database, message)
    }

    pub fn provider(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Provider, message)
    }

    pub fn timeout(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Timeout, message)
    }

    pub fn refused(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Refused, message)
    }

    pub fn unsafe_(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Unsafe, message)
    }

    /// The same failure, its message after `what` (`"<what>: <message>"`).
    pub fn context(self, what: impl std::fmt::Display) -> StepError {
        StepError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }

    /// The same failure with its message rewritten (the kind is kept).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> StepError {
        StepError {
            kind: self.kind,
            message: f(self.message),
        }
    }
}

impl From<dbshift_db::Error> for StepError {
    fn from(e: dbshift_db::Error) -> StepError {
        let kind = match e {
            dbshift_db::Error::Timeout { .. } | dbshift_db::Error::StatementTimeout { .. } => {
                StepErrorKind::Timeout
            }
            _ => StepErrorKind::Database,
        };
        StepError::new(kind, e.to_string())
    }
}

impl From<dbshift_provider::Error> for StepError {
    fn from(e: dbshift_provider::Error) -> StepError {
        StepError::provider(e.to_string())
    }
}

impl From<crate::proxy_admin::ProxyAdminError> for StepError {
    fn from(e: crate::proxy_admin::ProxyAdminError) -> StepError {
        StepError::provider(e.to_string())
    }
}

impl From<crate::journal::JournalError> for StepError {
    fn from(e: crate::journal::JournalError) -> StepError {
        StepError::unsafe_(e.to_string())
    }
}

/// A step's result.
pub type StepResult<T> = std::result::Result<T, StepError>;

/// Every error of the crate: each workflow keeps its own enum (what its caller matches on), and
/// each converts into this one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Switchover(#[from] crate::switchover::SwitchoverError),
    #[error(transparent)]
    Failover(#[from] crate::failover::FailoverError),
    #[error(transparent)]
    Rejoin(#[from] crate::rejoin::RejoinError),
    #[error(transparent)]
    Rollout(#[from] crate::rollout::RolloutError),
    #[error(transparent)]
    BlueGreen(#[from] crate::bluegreen::BlueGreenError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    UpgradeCheck(#[from] crate::upgrade_check::UpgradeCheckError),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::Error),
    #[error(transparent)]
    ProxyAdmin(#[from] crate::proxy_admin::ProxyAdminError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
    #[error(transparent)]
    Step(#[from] StepError),
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The request was wrong and nothing was changed: its message, wherever the workflow's own
    /// error holds it (a blue/green switch or a failover passes the switchover core's through).
    pub fn bad_input(&self) -> Option<&str> {
        use crate::bluegreen::BlueGreenError as B;
        use crate::failover::FailoverError as F;
        use crate::switchover::SwitchoverError as S;
        match self {
            Error::Switchover(S::BadInput(m))
            | Error::Failover(F::BadInput(m) | F::Switchover(S::BadInput(m)))
            | Error::BlueGreen(B::BadInput(m) | B::Switchover(S::BadInput(m)))
            | Error::Rejoin(crate::rejoin::RejoinError::BadInput(m))
            | Error::UpgradeCheck(crate::upgrade_check::UpgradeCheckError::BadInput(m))
            | Error::Rollout(crate::rollout::RolloutError::BadInput(m)) => Some(m),
            _ => None,
        }
    }

    /// Another command holds a cluster this one needed, or the shared store of the locks
    /// could not be reached: refused, nothing was changed.
    pub fn lock_held(&self) -> Option<&crate::lock::LockError> {
        use crate::lock::LockError;
        let lock = self.lock_error()?;
        matches!(lock, LockError::Held { .. } | LockError::Unreachable { .. }).then_some(lock)
    }

    /// This run lost its lock while it ran (the store unreachable for longer than the lease,
    /// the process paused): it stopped before its next change, and a human must look at where
    /// it stopped.
    pub fn lock_lost(&self) -> Option<&crate::lock::LockError> {
        let lock = self.lock_error()?;
        matches!(lock, crate::lock::LockError::Lost { .. }).then_some(lock)
    }

    /// The lock error, wherever the workflow's own error holds it.
    fn lock_error(&self) -> Option<&crate::lock::LockError> {
        use crate::failover::FailoverError as F;
        use crate::switchover::SwitchoverError as S;
        Some(match self {
            Error::Lock(l)
            | Error::Switchover(S::Lock(l))
            | Error::Failover(F::Lock(l) | F::Switchover(S::Lock(l)))
            | Error::BlueGreen(crate::bluegreen::BlueGreenError::Switchover(S::Lock(l)))
            | Error::Rejoin(crate::rejoin::RejoinError::Lock(l))
            | Error::Rollout(crate::rollout::RolloutError::Lock(l)) => l,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bluegreen::BlueGreenError;
    use crate::failover::FailoverError;
    use crate::switchover::SwitchoverError;

    #[test]
    fn bad_input_is_found_through_the_workflows_that_wrap_the_switchover_core() {
        let nested = Error::from(BlueGreenError::Switchover(SwitchoverError::BadInput(
            "no such deployment".into(),
        )));
        assert_eq!(nested.bad_input(), Some("no such deployment"));
        assert_eq!(nested.to_string(), "no such deployment");
        let failover = Error::from(FailoverError::BadInput("unknown cluster".into()));
        assert_eq!(failover.bad_input(), Some("unknown cluster"));
        let refused = Error::from(FailoverError::Refused("writer answers".into()));
        assert_eq!(refused.bad_input(), None);
        assert!(refused.lock_held().is_none());
    }
}
