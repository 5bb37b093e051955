//! What follows a server's role when it becomes a writer or a replica: the event scheduler,
//! semi-synchronous replication's source side, and keeping a session's changes out of the
//! binary log (where, on a replica, they would be errant transactions).
//!
//! Each needs SUPER (or its MariaDB successors); without it, on RDS and Aurora, these are
//! parameter-group settings and the builders say [`crate::Error::Unsupported`]. Semi-sync is
//! MariaDB's built-in one: MySQL's is a plugin whose variables are named after whichever
//! plugin is installed (`rpl_semi_sync_master_*` or, 8.0.26+, `rpl_semi_sync_source_*`), so
//! its statements are not guessed here.

use super::{Dialect, Statement};
use crate::error::Result;

fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

impl Dialect {
    /// Turn the event scheduler on or off (`SET GLOBAL event_scheduler`).
    pub fn set_event_scheduler(&self, on: bool) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "changing event_scheduler without SUPER (set it in the DB parameter group)",
            ));
        }
        Ok(Statement::plain(format!(
            "SET GLOBAL event_scheduler={}",
            on_off(on)
        )))
    }

    /// Write this session's changes to the binary log or not (`SET SESSION sql_log_bin`).
    pub fn set_session_binlog(&self, on: bool) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported("changing sql_log_bin without SUPER"));
        }
        Ok(Statement::plain(format!(
            "SET SESSION sql_log_bin={}",
            u8::from(on)
        )))
    }

    /// Reads whether the server is set up as a semi-sync replica (one text column, `ON`/`1`).
    pub fn semi_sync_replica_enabled(&self) -> Result<Statement> {
        self.semi_sync_read("SELECT @@GLOBAL.rpl_semi_sync_slave_enabled")
    }

    /// Reads whether the server is a semi-sync source (one text column, `ON`/`1`).
    pub fn semi_sync_source_enabled(&self) -> Result<Statement> {
        self.semi_sync_read("SELECT @@GLOBAL.rpl_semi_sync_master_enabled")
    }

    /// Reads whether the source side of semi-sync is active right now (`Variable_name`,
    /// `Value` = `ON`/`OFF`): it falls back to asynchronous silently after its timeout.
    pub fn semi_sync_source_status(&self) -> Result<Statement> {
        self.semi_sync_read("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'")
    }

    /// Make the server a semi-sync source or not. Reading needs no privilege; this does.
    pub fn set_semi_sync_source(&self, on: bool) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "changing semi-synchronous replication without SUPER (parameter group)",
            ));
        }
        self.semi_sync_read(&format!(
            "SET GLOBAL rpl_semi_sync_master_enabled={}",
            on_off(on)
        ))
    }

    /// `sql` where semi-sync is MariaDB's built-in one.
    fn semi_sync_read(&self, sql: &str) -> Result<Statement> {
        if self.flavor.is_mysql() {
            return Err(self.unsupported(
                "semi-synchronous replication on MySQL (its variables depend on the plugin \
                 installed)",
            ));
        }
        Ok(Statement::plain(sql))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn event_scheduler_and_session_binlog_by_sql_with_super() {
        for d in mariadbs().into_iter().chain(mysqls()) {
            assert_eq!(
                d.set_event_scheduler(true).unwrap().sql,
                "SET GLOBAL event_scheduler=ON"
            );
            assert_eq!(
                d.set_event_scheduler(false).unwrap().sql,
                "SET GLOBAL event_scheduler=OFF"
            );
            assert_eq!(
                d.set_session_binlog(false).unwrap().sql,
                "SET SESSION sql_log_bin=0"
            );
            assert_eq!(
                d.set_session_binlog(true).unwrap().sql,
                "SET SESSION sql_log_bin=1"
            );
        }
        for d in without_super() {
            let e = unsupported(d.set_event_scheduler(false));
            assert!(e.contains("parameter group"), "{e}");
            unsupported(d.set_session_binlog(false));
        }
    }

    #[test]
    fn semi_sync_is_mariadbs_built_in_one() {
        for d in mariadbs() {
            assert_eq!(
                d.semi_sync_replica_enabled().unwrap().sql,
                "SELECT @@GLOBAL.rpl_semi_sync_slave_enabled"
            );
            assert_eq!(
                d.semi_sync_source_enabled().unwrap().sql,
                "SELECT @@GLOBAL.rpl_semi_sync_master_enabled"
            );
            assert_eq!(
                d.semi_sync_source_status().unwrap().sql,
                "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'"
            );
            assert_eq!(
                d.set_semi_sync_source(true).unwrap().sql,
                "SET GLOBAL rpl_semi_sync_master_enabled=ON"
            );
            assert_eq!(
                d.set_semi_sync_source(false).unwrap().sql,
                "SET GLOBAL rpl_semi_sync_master_enabled=OFF"
            );
        }
        for d in mysqls() {
            let e = unsupported(d.set_semi_sync_source(true));
            assert!(e.contains("plugin"), "{e}");
            unsupported(d.semi_sync_source_status());
        }
        // Reading needs no SUPER; changing does.
        assert_eq!(
            rds_mariadb().semi_sync_source_status().unwrap().sql,
            "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'"
        );
        for d in without_super() {
            unsupported(d.set_semi_sync_source(false));
        }
    }
}
