//! What follows a server's role when it becomes a writer or a replica: the event scheduler,
//! semi-synchronous replication's source side, and keeping a session's changes out of the
//! binary log (where, on a replica, they would be errant transactions).
//!
//! Each needs SUPER (or its MariaDB successors); without it, on RDS and Aurora, these are
//! parameter-group settings and the builders say [`crate::Error::Unsupported`].
//!
//! Semi-sync statements take the naming of the installed plugin ([`SemiSyncNaming`]): MariaDB's
//! built-in semi-sync and MySQL's old plugins use `rpl_semi_sync_master_*` /
//! `rpl_semi_sync_slave_*`, MySQL 8.0.26+'s new plugins `rpl_semi_sync_source_*` /
//! `rpl_semi_sync_replica_*` (the only ones in 8.4). Which one a MySQL server runs is read from
//! it ([`Dialect::read_semi_sync_variables`]), never guessed from its version: an upgraded
//! 8.0.26+ server may keep the old plugins
//! (<https://dev.mysql.com/doc/refman/8.0/en/replication-semisync-installation.html>). The
//! builders without a naming are MariaDB's, whose naming is fixed.

use super::{Dialect, Statement};
use crate::error::Result;
use crate::settings::SemiSyncNaming;

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

    /// Reads whether the server is set up as a semi-sync replica (one text column, `ON`/`1`),
    /// under the replica plugin's `naming`.
    pub fn semi_sync_replica_enabled_for(&self, naming: SemiSyncNaming) -> Statement {
        Statement::plain(format!(
            "SELECT @@GLOBAL.rpl_semi_sync_{}_enabled",
            naming.replica_word()
        ))
    }

    /// Reads whether the server is a semi-sync source (one text column, `ON`/`1`), under the
    /// source plugin's `naming`.
    pub fn semi_sync_source_enabled_for(&self, naming: SemiSyncNaming) -> Statement {
        Statement::plain(format!(
            "SELECT @@GLOBAL.rpl_semi_sync_{}_enabled",
            naming.source_word()
        ))
    }

    /// Reads whether the source side of semi-sync is active right now (`Variable_name`,
    /// `Value` = `ON`/`OFF`): it falls back to asynchronous silently after its timeout.
    pub fn semi_sync_source_status_for(&self, naming: SemiSyncNaming) -> Statement {
        Statement::plain(format!(
            "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_{}_status'",
            naming.source_word()
        ))
    }

    /// Make the server a semi-sync source or not, under the source plugin's `naming`.
    /// Reading needs no privilege; this does.
    pub fn set_semi_sync_source_for(&self, naming: SemiSyncNaming, on: bool) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "changing semi-synchronous replication without SUPER (parameter group)",
            ));
        }
        Ok(Statement::plain(format!(
            "SET GLOBAL rpl_semi_sync_{}_enabled={}",
            naming.source_word(),
            on_off(on)
        )))
    }

    /// MariaDB: [`Self::semi_sync_replica_enabled_for`] with its built-in naming.
    pub fn semi_sync_replica_enabled(&self) -> Result<Statement> {
        Ok(self.semi_sync_replica_enabled_for(self.built_in_semi_sync()?))
    }

    /// MariaDB: [`Self::semi_sync_source_enabled_for`] with its built-in naming.
    pub fn semi_sync_source_enabled(&self) -> Result<Statement> {
        Ok(self.semi_sync_source_enabled_for(self.built_in_semi_sync()?))
    }

    /// MariaDB: [`Self::semi_sync_source_status_for`] with its built-in naming.
    pub fn semi_sync_source_status(&self) -> Result<Statement> {
        Ok(self.semi_sync_source_status_for(self.built_in_semi_sync()?))
    }

    /// MariaDB: [`Self::set_semi_sync_source_for`] with its built-in naming.
    pub fn set_semi_sync_source(&self, on: bool) -> Result<Statement> {
        let naming = self.built_in_semi_sync()?;
        self.set_semi_sync_source_for(naming, on)
    }

    /// The naming of MariaDB's built-in semi-sync; MySQL's depends on its plugins.
    fn built_in_semi_sync(&self) -> Result<SemiSyncNaming> {
        if self.flavor.is_mysql() {
            return Err(self.unsupported(
                "semi-synchronous replication without knowing the plugin installed (its \
                 variables depend on it: read them first, Server::semi_sync)",
            ));
        }
        Ok(SemiSyncNaming::MasterSlave)
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

    /// MySQL: the statements follow the plugin found on the server, whatever its version
    /// (<https://dev.mysql.com/doc/refman/8.4/en/replication-semisync-installation.html>).
    #[test]
    fn mysql_semi_sync_follows_the_installed_plugin() {
        use crate::settings::SemiSyncNaming::*;
        for d in mysql_versions() {
            for (naming, source, replica) in [
                (MasterSlave, "master", "slave"),
                (SourceReplica, "source", "replica"),
            ] {
                assert_eq!(
                    d.semi_sync_replica_enabled_for(naming).sql,
                    format!("SELECT @@GLOBAL.rpl_semi_sync_{replica}_enabled")
                );
                assert_eq!(
                    d.semi_sync_source_enabled_for(naming).sql,
                    format!("SELECT @@GLOBAL.rpl_semi_sync_{source}_enabled")
                );
                assert_eq!(
                    d.semi_sync_source_status_for(naming).sql,
                    format!("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_{source}_status'")
                );
                assert_eq!(
                    d.set_semi_sync_source_for(naming, true).unwrap().sql,
                    format!("SET GLOBAL rpl_semi_sync_{source}_enabled=ON")
                );
                assert_eq!(
                    d.set_semi_sync_source_for(naming, false).unwrap().sql,
                    format!("SET GLOBAL rpl_semi_sync_{source}_enabled=OFF")
                );
            }
            // Without a naming, MySQL's is not guessed.
            let e = unsupported(d.semi_sync_replica_enabled());
            assert!(e.contains("plugin"), "{e}");
        }
        for d in aws_mysqls() {
            // Reading is allowed; changing is a parameter-group setting.
            assert_eq!(
                d.semi_sync_source_status_for(SourceReplica).sql,
                "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_source_status'"
            );
            unsupported(d.set_semi_sync_source_for(SourceReplica, true));
        }
    }
}
