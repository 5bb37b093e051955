//! The statements behind the flavor-neutral replication position API
//! ([`crate::ReplicationPosition`], [`crate::History`]): read what a server executed, applied
//! or holds, and wait until a replica contains a position.
//!
//! MariaDB answers with positions (`gtid_binlog_pos`, `gtid_slave_pos`, `gtid_current_pos`)
//! and, for the history, `gtid_binlog_state`; MySQL with `gtid_executed` for all of them (a
//! set, which a position of MySQL is). Each read is one row; every variable is read as
//! `@@GLOBAL.name`.

use std::time::Duration;

use super::{Dialect, Statement};
use crate::error::{Error, Result};
use crate::replication_position::{History, ReplicationPosition};
use crate::status::ReplicationStatus;

impl Dialect {
    fn global(&self, mariadb: &str) -> Statement {
        if self.flavor.is_mariadb() {
            Statement::plain(format!("SELECT @@GLOBAL.{mariadb}"))
        } else {
            Statement::plain("SELECT @@GLOBAL.gtid_executed")
        }
    }

    /// What this server wrote to its binary log: the position a replica of it must reach
    /// (MariaDB `gtid_binlog_pos`, MySQL `gtid_executed`). One column.
    pub fn read_executed_position(&self) -> Statement {
        self.global("gtid_binlog_pos")
    }

    /// What this server's replication applied (MariaDB `gtid_slave_pos`; MySQL
    /// `gtid_executed`, which counts both). One column.
    pub fn read_applied_position(&self) -> Statement {
        self.global("gtid_slave_pos")
    }

    /// Where this server stands, for an operator to read (MariaDB `gtid_current_pos`, moved
    /// by its own binlogged statements too, so never used to find errant transactions; MySQL
    /// `gtid_executed`). One column.
    pub fn read_current_position(&self) -> Statement {
        self.global("gtid_current_pos")
    }

    /// Every transaction this server holds: MariaDB `gtid_binlog_state, gtid_current_pos`
    /// (two columns, read together), MySQL `gtid_executed` (one). See [`History`].
    pub fn read_history(&self) -> Statement {
        if self.flavor.is_mariadb() {
            Statement::plain("SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_current_pos")
        } else {
            Statement::plain("SELECT @@GLOBAL.gtid_executed")
        }
    }

    /// A position as this flavor prints it; NULL or empty is the empty position.
    pub fn parse_position(&self, text: Option<&str>) -> Result<ReplicationPosition> {
        let text = text.unwrap_or_default();
        Ok(if self.flavor.is_mariadb() {
            ReplicationPosition::MariaDb(text.parse()?)
        } else {
            ReplicationPosition::MySql(text.parse()?)
        })
    }

    /// The row of [`Self::read_history`], column by column.
    pub fn parse_history(&self, columns: &[Option<String>]) -> Result<History> {
        let col = |i: usize| columns.get(i).cloned().flatten().unwrap_or_default();
        Ok(if self.flavor.is_mariadb() {
            History::MariaDb {
                state: col(0).parse()?,
                current: col(1).parse()?,
            }
        } else {
            History::MySql(col(0).parse()?)
        })
    }

    /// What a replica's IO thread received, as its replication `status` shows it: MariaDB
    /// `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`.
    pub fn io_position(&self, status: &ReplicationStatus) -> Option<ReplicationPosition> {
        if self.flavor.is_mariadb() {
            status.gtid_io_pos.clone().map(ReplicationPosition::MariaDb)
        } else {
            status
                .retrieved_gtid_set
                .clone()
                .map(ReplicationPosition::MySql)
        }
    }

    /// Everything a replica has, applied or only received: [`Self::io_position`] merged with
    /// `applied` (a restarted IO thread starts from the latter). What the replica holds once
    /// its relay log is applied.
    pub fn received_position(
        &self,
        status: &ReplicationStatus,
        applied: &ReplicationPosition,
    ) -> ReplicationPosition {
        match self.io_position(status) {
            Some(r) => r.merge(applied),
            None => applied.clone(),
        }
    }

    /// A bounded wait until this replica contains `target`: `MASTER_GTID_WAIT` (MariaDB) or
    /// `WAIT_FOR_EXECUTED_GTID_SET` (MySQL). Both return 0 once it does. A position of the
    /// other family cannot be waited for.
    pub fn wait_until_contains(
        &self,
        target: &ReplicationPosition,
        timeout: Duration,
    ) -> Result<Statement> {
        match target {
            ReplicationPosition::MariaDb(pos) if self.flavor.is_mariadb() => {
                Ok(self.wait_for_gtid_mariadb(pos, timeout))
            }
            ReplicationPosition::MySql(set) if self.flavor.is_mysql() => {
                Ok(self.wait_for_gtid_set(set, timeout))
            }
            other => Err(Error::Unsupported {
                flavor: self.flavor.to_string(),
                what: format!("waiting for a position of another server family ({other})"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mariadb_reads_its_positions() {
        let mut dialects = mariadbs();
        dialects.push(rds_mariadb());
        for d in dialects {
            assert_eq!(
                d.read_executed_position().sql,
                "SELECT @@GLOBAL.gtid_binlog_pos"
            );
            assert_eq!(
                d.read_applied_position().sql,
                "SELECT @@GLOBAL.gtid_slave_pos"
            );
            assert_eq!(
                d.read_current_position().sql,
                "SELECT @@GLOBAL.gtid_current_pos"
            );
            assert_eq!(
                d.read_history().sql,
                "SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_current_pos"
            );
        }
    }

    #[test]
    fn mysql_reads_gtid_executed_for_every_position() {
        for d in mysqls().into_iter().chain([aurora(), rds_mysql_8_0()]) {
            for s in [
                d.read_executed_position(),
                d.read_applied_position(),
                d.read_current_position(),
                d.read_history(),
            ] {
                assert_eq!(s.sql, "SELECT @@GLOBAL.gtid_executed");
            }
        }
    }

    #[test]
    fn positions_and_histories_parse_per_flavor() {
        let m = maria_10_11();
        assert_eq!(
            m.parse_position(Some("0-1-5,1-2-3")).unwrap().to_string(),
            "0-1-5,1-2-3"
        );
        assert!(m.parse_position(None).unwrap().is_empty());
        assert!(m.parse_position(Some("x")).is_err());
        let h = m
            .parse_history(&[Some("0-1-5,0-2-3".into()), Some("0-1-5".into())])
            .unwrap();
        assert_eq!(
            h,
            History::MariaDb {
                state: "0-1-5,0-2-3".parse().unwrap(),
                current: "0-1-5".parse().unwrap()
            }
        );
        let y = mysql_8_4();
        let set = format!("{A}:1-5");
        assert_eq!(
            y.parse_position(Some(&set)).unwrap(),
            ReplicationPosition::MySql(set.parse().unwrap())
        );
        assert_eq!(
            y.parse_history(&[Some(set.clone())]).unwrap(),
            History::MySql(set.parse().unwrap())
        );
        assert!(y.parse_position(Some("0-1-5")).is_err());
    }

    #[test]
    fn waits_per_flavor() {
        let pos = ReplicationPosition::MariaDb("0-1-100".parse().unwrap());
        let set = ReplicationPosition::MySql(format!("{A}:1-5").parse().unwrap());
        let t = Duration::from_millis(1500);
        assert_eq!(
            maria_10_11().wait_until_contains(&pos, t).unwrap().sql,
            "SELECT MASTER_GTID_WAIT('0-1-100', 1.5)"
        );
        assert_eq!(
            mysql_8_4().wait_until_contains(&set, t).unwrap().sql,
            format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{A}:1-5', 1.5)")
        );
        unsupported(maria_10_11().wait_until_contains(&set, t));
        unsupported(mysql_8_4().wait_until_contains(&pos, t));
    }

    #[test]
    fn received_is_applied_plus_the_relay_log() {
        let d = maria_10_11();
        let mut st = ReplicationStatus::not_configured();
        let applied = ReplicationPosition::MariaDb("0-1-40,1-1-9".parse().unwrap());
        assert_eq!(d.received_position(&st, &applied), applied);
        st.gtid_io_pos = Some("0-1-60".parse().unwrap());
        assert_eq!(
            d.io_position(&st),
            Some(ReplicationPosition::MariaDb("0-1-60".parse().unwrap()))
        );
        assert_eq!(
            d.received_position(&st, &applied).to_string(),
            "0-1-60,1-1-9"
        );
        let y = mysql_8_4();
        let applied = ReplicationPosition::MySql(format!("{A}:1-5").parse().unwrap());
        st.retrieved_gtid_set = Some(format!("{A}:3-9").parse().unwrap());
        assert_eq!(
            y.received_position(&st, &applied).to_string(),
            format!("{A}:1-9")
        );
    }
}
