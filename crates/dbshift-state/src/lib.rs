//! dbshift-state: what dbshift keeps between commands and shares between them. The journal
//! ([`journal`]: every run and each of its steps, recorded before and after the step) and the
//! cluster locks ([`lock`]: one run owns a cluster for its whole life). Today both live beside
//! the lab: a SQLite file and `flock`ed files in `locks/`.
//!
//! This crate never talks to a server or a platform, and never holds a secret.

pub mod journal;
pub mod lock;

pub use journal::{Journal, JournalError, RunRecord, RunStatus, StepRecord};
pub use lock::{ClusterLock, FileLocks, Holder, LockError, LockLease, LockStore, Locks};
