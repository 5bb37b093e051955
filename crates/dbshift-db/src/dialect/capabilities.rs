//! What a workflow may ask of a server by SQL, decided once per server from its flavor, so
//! that a workflow picks between SQL and the control plane (a parameter group, a provider
//! call) without knowing why: on RDS and Aurora, without SUPER, `read_only`, the event
//! scheduler and `sql_log_bin` are parameters, and replication is changed only through the
//! `mysql.rds_*` procedures.

use std::time::Duration;

use super::Dialect;

impl Dialect {
    /// `read_only` can be turned on and off by SQL ([`Dialect::set_read_only`]).
    pub fn can_set_read_only(&self) -> bool {
        self.set_read_only(true).is_ok()
    }

    /// The event scheduler can be turned on and off by SQL.
    pub fn can_set_event_scheduler(&self) -> bool {
        self.set_event_scheduler(true).is_ok()
    }

    /// A session's changes can be kept out of the binary log (`sql_log_bin`).
    pub fn can_skip_binlog(&self) -> bool {
        self.set_session_binlog(false).is_ok()
    }

    /// A commit lease can be held ([`Dialect::commit_lease`]).
    pub fn can_hold_commit_lease(&self) -> bool {
        self.commit_lease(Duration::from_secs(1)).is_ok()
    }

    /// Pointing a replica can verify the source's certificate and take a CA file; the
    /// `mysql.rds_*` procedures cannot (they turn the check off).
    pub fn can_verify_source_certificate(&self) -> bool {
        !self.flavor.needs_rds_procedures()
    }

    /// Pointing a replica needs an explicit GTID position to start at: MariaDB's
    /// `mysql.rds_set_external_master_gtid` takes one, where `CHANGE MASTER` keeps the
    /// replica's own and MySQL's `mysql.rds_set_external_*_with_auto_position` lets
    /// auto-position find it.
    pub fn needs_explicit_start(&self) -> bool {
        self.flavor.needs_rds_procedures() && self.flavor.is_mariadb()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn with_super_everything_is_sql() {
        for d in mariadbs() {
            assert!(d.can_set_read_only());
            assert!(d.can_set_event_scheduler());
            assert!(d.can_skip_binlog());
            assert!(d.can_hold_commit_lease());
            assert!(d.can_verify_source_certificate());
            assert!(!d.needs_explicit_start());
        }
        for d in mysqls() {
            assert!(d.can_set_read_only() && d.can_skip_binlog());
            // No commit lease on MySQL yet (dialect/lease.rs).
            assert!(!d.can_hold_commit_lease());
            assert!(!d.needs_explicit_start());
        }
        assert!(!maria_10_3().can_hold_commit_lease());
    }

    #[test]
    fn without_super_the_control_plane_does_it() {
        for d in without_super() {
            assert!(!d.can_set_read_only());
            assert!(!d.can_set_event_scheduler());
            assert!(!d.can_skip_binlog());
            assert!(!d.can_hold_commit_lease());
            assert!(!d.can_verify_source_certificate());
            assert_eq!(d.needs_explicit_start(), d.flavor().is_mariadb());
        }
        for d in aws_mysqls() {
            assert!(!d.needs_explicit_start(), "{}", d.flavor());
        }
        let d = rds_mariadb_with_super();
        assert!(d.can_set_read_only() && !d.needs_explicit_start());
    }
}
