//! dbshift-state: what dbshift keeps between commands and shares between them. The journal
//! ([`journal`]: every run and each of its steps, recorded before and after the step) and the
//! cluster locks ([`lock`]: one run owns a cluster for its whole life).
//!
//! Where they live is the `--state` choice ([`StateUrl`]): by default both beside the lab, a
//! SQLite file and `flock`ed files in `locks/`; with `etcd://...` the locks live in etcd
//! ([`etcd`]), seen by every dbshift on every machine that reaches it, while the journal stays
//! the SQLite file of the working directory (the journal in etcd comes later).
//!
//! This crate never talks to a database server or a platform, and never holds a secret.

pub mod etcd;
pub mod journal;
pub mod lock;

pub use etcd::{EtcdLocks, EtcdTarget};
pub use journal::{Journal, JournalError, RunRecord, RunStatus, StartedBy, StepRecord};
pub use lock::{ClusterLock, FileLocks, Holder, LockError, LockLease, LockStore, Locks};

/// Where a command keeps its state: the value of `--state` (config key `state`,
/// `DBSHIFT_STATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateUrl {
    /// The journal and file locks in the working directory (the default).
    Local,
    /// Cluster locks in etcd; the journal stays local in this version.
    Etcd(EtcdTarget),
}

impl StateUrl {
    /// Parse a `--state` value: empty, `local` or `sqlite` for the default, or an `etcd://`
    /// URL; the error says what is wrong and what is accepted.
    pub fn parse(url: &str) -> Result<StateUrl, String> {
        let url = url.trim();
        match url {
            "" | "local" | "sqlite" => Ok(StateUrl::Local),
            u if u.contains("://") && !u.starts_with("sqlite://") => {
                EtcdTarget::parse(u).map(StateUrl::Etcd)
            }
            u => Err(format!(
                "{u:?} is not a state store: use `local` (the default: the journal and locks \
                 in the working directory) or etcd://host:port[,host:port...][/prefix]"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls() {
        assert_eq!(StateUrl::parse("").unwrap(), StateUrl::Local);
        assert_eq!(StateUrl::parse("local").unwrap(), StateUrl::Local);
        assert!(matches!(
            StateUrl::parse("etcd://127.0.0.1:2379").unwrap(),
            StateUrl::Etcd(_)
        ));
        assert!(StateUrl::parse("postgres://x:1")
            .unwrap_err()
            .contains("expected etcd://"));
        assert!(StateUrl::parse("/tmp/x")
            .unwrap_err()
            .contains("not a state store"));
    }
}
