//! The reads behind the guards' questions about a server's settings (see `crate::settings`):
//! GTID mode and consistency, whether a replica logs what it applies, the binary log format,
//! the read-only fence, and which semi-sync plugins are installed.
//!
//! Names follow the flavor: MySQL 8.0.26 renamed `log_slave_updates` to `log_replica_updates`
//! (<https://dev.mysql.com/doc/refman/8.0/en/replication-options-binary-log.html#sysvar_log_replica_updates>;
//! 8.4 dropped the old name), MariaDB has no `gtid_mode` or `super_read_only`.

use super::{Dialect, Statement};
use crate::error::Result;

impl Dialect {
    /// `gtid_mode` and `enforce_gtid_consistency` (one row, two text columns). MySQL only:
    /// MariaDB has neither, its GTIDs are always on.
    pub fn read_gtid_settings(&self) -> Result<Statement> {
        if !self.flavor.is_mysql() {
            return Err(self.unsupported(
                "gtid_mode and enforce_gtid_consistency (MySQL variables; MariaDB's GTIDs are \
                 always on)",
            ));
        }
        Ok(Statement::plain(
            "SELECT @@GLOBAL.gtid_mode, @@GLOBAL.enforce_gtid_consistency",
        ))
    }

    /// `gtid_mode` alone (one text column), MySQL only: what [`crate::Server`] reads at
    /// connect time to choose between GTID and binary log positions.
    pub fn read_gtid_mode(&self) -> Result<Statement> {
        if !self.flavor.is_mysql() {
            return Err(self.unsupported("gtid_mode (a MySQL variable)"));
        }
        Ok(Statement::plain("SELECT @@GLOBAL.gtid_mode"))
    }

    /// Whether a replica writes what it applies to its own binary log (one column, `1`/`0`):
    /// `log_replica_updates` on MySQL 8.0.26+, `log_slave_updates` elsewhere. A replica that
    /// does not cannot be promoted over other replicas by GTID.
    pub fn read_log_replica_updates(&self) -> Statement {
        if self.flavor.uses_log_replica_updates() {
            Statement::plain("SELECT @@GLOBAL.log_replica_updates")
        } else {
            Statement::plain("SELECT @@GLOBAL.log_slave_updates")
        }
    }

    /// `binlog_format` (one text column).
    pub fn read_binlog_format(&self) -> Statement {
        Statement::plain("SELECT @@GLOBAL.binlog_format")
    }

    /// The read-only fence: `read_only` and, where the server has it (MySQL 5.7.8+),
    /// `super_read_only` (one row, one or two columns).
    pub fn read_read_only(&self) -> Statement {
        if self.flavor.has_super_read_only() {
            Statement::plain("SELECT @@GLOBAL.read_only, @@GLOBAL.super_read_only")
        } else {
            Statement::plain("SELECT @@GLOBAL.read_only")
        }
    }

    /// Whether new tables are encrypted at rest (one text column): MariaDB
    /// `innodb_encrypt_tables` (`OFF`, `ON`, `FORCE`), MySQL 8.0.16+ `default_table_encryption`
    /// (https://dev.mysql.com/doc/refman/8.0/en/innodb-data-encryption.html). `None` where the
    /// server has no such default (MySQL before 8.0.16: encryption is per table there).
    pub fn read_table_encryption(&self) -> Option<Statement> {
        if self.flavor.is_mariadb() {
            Some(Statement::plain("SELECT @@GLOBAL.innodb_encrypt_tables"))
        } else if self.flavor.at_least(8, 0, 16) {
            Some(Statement::plain("SELECT @@GLOBAL.default_table_encryption"))
        } else {
            None
        }
    }

    /// Every semi-sync variable the server has (`Variable_name`, `Value` rows), which names
    /// the installed plugins ([`crate::SemiSync::from_variable_names`]). Needs no privilege.
    pub fn read_semi_sync_variables(&self) -> Statement {
        Statement::plain("SHOW GLOBAL VARIABLES LIKE 'rpl\\_semi\\_sync\\_%'")
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn gtid_settings_are_mysqls() {
        for d in mysql_versions().into_iter().chain(aws_mysqls()) {
            assert_eq!(
                d.read_gtid_settings().unwrap().sql,
                "SELECT @@GLOBAL.gtid_mode, @@GLOBAL.enforce_gtid_consistency"
            );
            assert_eq!(d.read_gtid_mode().unwrap().sql, "SELECT @@GLOBAL.gtid_mode");
        }
        for d in mariadbs().into_iter().chain([rds_mariadb()]) {
            let e = unsupported(d.read_gtid_settings());
            assert!(e.contains("always on"), "{e}");
            unsupported(d.read_gtid_mode());
        }
    }

    #[test]
    fn log_replica_updates_was_renamed_in_8_0_26() {
        let old = "SELECT @@GLOBAL.log_slave_updates";
        let new = "SELECT @@GLOBAL.log_replica_updates";
        for (d, want) in [
            (mysql_5_7(), old),
            (mysql_8_0_21(), old),
            (mysql_8_0_23(), old),
            (dialect("8.0.25", false, true), old),
            (mysql_8_0_26(), new),
            (mysql_8_4(), new),
            (rds_mysql_5_7(), old),
            (rds_mysql_8_0(), new),
            (rds_mysql_8_4(), new),
            (aurora_2(), old),
            // Aurora 3.05 is MySQL 8.0.32 compatible.
            (aurora(), new),
            (maria_10_11(), old),
            (maria_11_4(), old),
            (rds_mariadb(), old),
        ] {
            assert_eq!(d.read_log_replica_updates().sql, want, "{}", d.flavor());
        }
    }

    #[test]
    fn read_only_reads_super_read_only_where_it_exists() {
        let both = "SELECT @@GLOBAL.read_only, @@GLOBAL.super_read_only";
        for d in mysql_versions().into_iter().chain(aws_mysqls()) {
            assert_eq!(d.read_read_only().sql, both, "{}", d.flavor());
        }
        for d in mariadbs().into_iter().chain([rds_mariadb()]) {
            assert_eq!(d.read_read_only().sql, "SELECT @@GLOBAL.read_only");
        }
        assert_eq!(
            dialect("5.7.7", false, true).read_read_only().sql,
            "SELECT @@GLOBAL.read_only"
        );
    }

    #[test]
    fn table_encryption_is_each_flavors_default() {
        for d in mariadbs().into_iter().chain([rds_mariadb()]) {
            assert_eq!(
                d.read_table_encryption().unwrap().sql,
                "SELECT @@GLOBAL.innodb_encrypt_tables"
            );
        }
        for d in [mysql_8_0_21(), mysql_8_4(), rds_mysql_8_0(), aurora()] {
            assert_eq!(
                d.read_table_encryption().unwrap().sql,
                "SELECT @@GLOBAL.default_table_encryption",
                "{}",
                d.flavor()
            );
        }
        for d in [mysql_5_7(), aurora_2(), dialect("8.0.15", false, true)] {
            assert!(d.read_table_encryption().is_none(), "{}", d.flavor());
        }
    }

    #[test]
    fn format_and_semi_sync_reads_are_the_same_everywhere() {
        for d in mysql_versions()
            .into_iter()
            .chain(aws_mysqls())
            .chain(mariadbs())
        {
            assert_eq!(d.read_binlog_format().sql, "SELECT @@GLOBAL.binlog_format");
            assert_eq!(
                d.read_semi_sync_variables().sql,
                "SHOW GLOBAL VARIABLES LIKE 'rpl\\_semi\\_sync\\_%'"
            );
        }
    }
}
