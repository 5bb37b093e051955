//! The commit lease: a lock held on dbshift's own connection that stops every commit on the
//! server (even of sessions that can write through `read_only`), and that the server lifts by
//! itself when the connection ends, so a dbshift that dies mid-switch leaves nothing behind.
//!
//! MariaDB 10.4.1+: `BACKUP STAGE START` then `BACKUP STAGE BLOCK_COMMIT`, ended by `BACKUP
//! STAGE END`. MySQL has no equal yet in dbshift: `LOCK INSTANCE FOR BACKUP` does not stop
//! commits, and `FLUSH TABLES WITH READ LOCK` does but first waits for every running query
//! while it blocks new ones; which one (if any) a MySQL switchover takes is issue 18's choice.

use std::time::Duration;

use super::{Dialect, Statement};
use crate::error::Result;

/// The statements of a commit lease, all on one connection: `session` first (settings of the
/// session, nothing to undo), then `hold` in order; `release` ends it early, and undoes a
/// `hold` that failed after its first statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitLease {
    pub session: Vec<Statement>,
    pub hold: Vec<Statement>,
    pub release: Statement,
}

impl Dialect {
    /// `SET SESSION lock_wait_timeout=N` in whole seconds, at least 1 (0 is not accepted): the
    /// bound of waiting for a lock by the statements that follow on the session.
    pub fn lock_wait_timeout(&self, wait: Duration) -> Statement {
        Statement::plain(format!(
            "SET SESSION lock_wait_timeout={}",
            wait.as_secs().max(1)
        ))
    }

    /// The commit lease, taken under `lock_wait` (so that a long write in flight makes it fail
    /// rather than stall every client queued behind it).
    ///
    /// Unsupported without SUPER (RDS, Aurora: `BACKUP STAGE` needs RELOAD, which the master
    /// user may lack, and no session but the platform's writes through `read_only` there), on
    /// MariaDB before 10.4.1, and on MySQL (see the module documentation).
    pub fn commit_lease(&self, lock_wait: Duration) -> Result<CommitLease> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "a commit lease without SUPER (BACKUP STAGE needs RELOAD; read_only alone fences \
                 there)",
            ));
        }
        if self.flavor.is_mysql() {
            return Err(self.unsupported(
                "a commit lease on MySQL (LOCK INSTANCE FOR BACKUP does not stop commits)",
            ));
        }
        if !self.flavor.has_backup_stage() {
            return Err(self.unsupported("BACKUP STAGE (MariaDB 10.4.1 or later)"));
        }
        Ok(CommitLease {
            session: vec![self.lock_wait_timeout(lock_wait)],
            hold: vec![
                Statement::plain("BACKUP STAGE START"),
                Statement::plain("BACKUP STAGE BLOCK_COMMIT"),
            ],
            release: Statement::plain("BACKUP STAGE END"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn lock_wait_is_whole_seconds_at_least_one() {
        let d = maria_10_11();
        let at = |ms| d.lock_wait_timeout(Duration::from_millis(ms)).sql;
        assert_eq!(at(1000), "SET SESSION lock_wait_timeout=1");
        assert_eq!(at(0), "SET SESSION lock_wait_timeout=1");
        assert_eq!(at(2999), "SET SESSION lock_wait_timeout=2");
        assert_eq!(
            mysql_8_4().lock_wait_timeout(Duration::from_secs(5)).sql,
            "SET SESSION lock_wait_timeout=5"
        );
    }

    #[test]
    fn mariadb_holds_block_commit_and_ends_the_stage() {
        let mut dialects = mariadbs();
        dialects.push(rds_mariadb_with_super());
        for d in dialects {
            let lease = d.commit_lease(Duration::from_millis(1500)).unwrap();
            assert_eq!(sql(&lease.session), ["SET SESSION lock_wait_timeout=1"]);
            assert_eq!(
                sql(&lease.hold),
                ["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"]
            );
            assert_eq!(lease.release.sql, "BACKUP STAGE END");
        }
    }

    #[test]
    fn no_lease_where_it_cannot_be_held() {
        let old = unsupported(maria_10_3().commit_lease(Duration::from_secs(1)));
        assert!(old.contains("10.4.1"), "{old}");
        unsupported(maria_10_4_0().commit_lease(Duration::from_secs(1)));
        for d in mysqls() {
            let e = unsupported(d.commit_lease(Duration::from_secs(1)));
            assert!(e.contains("MySQL"), "{e}");
        }
        for d in without_super() {
            let e = unsupported(d.commit_lease(Duration::from_secs(1)));
            assert!(e.contains("SUPER"), "{e}");
        }
    }
}
