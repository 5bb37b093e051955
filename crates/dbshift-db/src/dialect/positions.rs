//! The statements behind the flavor-neutral replication position API
//! ([`crate::ReplicationPosition`], [`crate::History`]): read what a server executed, applied
//! or holds, and wait until a replica contains a position.
//!
//! MariaDB answers with positions (`gtid_binlog_pos`, `gtid_slave_pos`, `gtid_current_pos`)
//! and, for the history, `gtid_binlog_state`; MySQL with `gtid_executed` for all of them (a
//! set, which a position of MySQL is). Each read is one row; every variable is read as
//! `@@GLOBAL.name`.
//!
//! MySQL without GTIDs ([`Dialect::uses_binlog_positions`]) has binary log coordinates only:
//! what a server executed is its `SHOW BINARY LOG STATUS` row, what a replica applied and
//! received are columns of its replication status, and the wait is `MASTER_POS_WAIT` /
//! `SOURCE_POS_WAIT`. The GTID reads above are never used there.

use std::time::Duration;

use super::{Dialect, Statement};
use crate::error::{Error, Result};
use crate::position::BinlogPosition;
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

    /// What a server without GTIDs executed, from its binary log status row (see
    /// [`BinlogPosition::from_binlog_status`]); `None` when binary logging is off.
    pub fn executed_from_binlog_status(
        &self,
        row: &[(String, Option<String>)],
    ) -> Result<Option<ReplicationPosition>> {
        Ok(BinlogPosition::from_binlog_status(row)?.map(ReplicationPosition::Binlog))
    }

    /// What a replica without GTIDs applied, in its source's coordinates
    /// (`Relay_Source_Log_File:Exec_Source_Log_Pos`, or the `Master` names); `None` when it
    /// is no replica.
    pub fn applied_from_status(&self, status: &ReplicationStatus) -> Option<ReplicationPosition> {
        status
            .exec_source_log
            .clone()
            .filter(|_| status.configured)
            .map(ReplicationPosition::Binlog)
    }

    /// What a replica's IO thread received, as its replication `status` shows it: MariaDB
    /// `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`; without GTIDs, `Source_Log_File:
    /// Read_Source_Log_Pos` (or the `Master` names).
    pub fn io_position(&self, status: &ReplicationStatus) -> Option<ReplicationPosition> {
        if self.uses_binlog_positions() {
            return status
                .source_log
                .clone()
                .filter(|_| status.configured)
                .map(ReplicationPosition::Binlog);
        }
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
    /// `WAIT_FOR_EXECUTED_GTID_SET` (MySQL), both 0 once it does; for binary log coordinates
    /// `MASTER_POS_WAIT` / `SOURCE_POS_WAIT` (MySQL 8.0.26+), the number of events waited for
    /// (0 or more) once the applier reached them, -1 on timeout, NULL when it is not running.
    /// A position of the other family cannot be waited for.
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
            ReplicationPosition::Binlog(pos) => Ok(self.wait_for_position(pos, timeout)),
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
    use crate::settings::GtidMode;

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

    fn gtid_off(d: super::super::Dialect) -> super::super::Dialect {
        d.with_gtid_mode(Some(GtidMode::Off))
    }

    #[test]
    fn binlog_positions_only_where_mysql_gtids_are_off() {
        for d in mysql_versions().into_iter().chain(aws_mysqls()) {
            assert!(!d.uses_binlog_positions(), "unknown mode: GTIDs");
            for mode in [
                GtidMode::Off,
                GtidMode::OffPermissive,
                GtidMode::OnPermissive,
            ] {
                assert!(d.clone().with_gtid_mode(Some(mode)).uses_binlog_positions());
            }
            let on = d.clone().with_gtid_mode(Some(GtidMode::On));
            assert!(!on.uses_binlog_positions());
            assert_eq!(on.gtid_mode(), Some(GtidMode::On));
        }
        for d in mariadbs() {
            let d = gtid_off(d);
            assert!(!d.uses_binlog_positions());
            assert_eq!(d.gtid_mode(), None, "MariaDB has no gtid_mode");
        }
    }

    #[test]
    fn waits_for_binlog_coordinates_per_version() {
        let at = ReplicationPosition::Binlog(BinlogPosition::new("binlog.000012", 2365710));
        let t = Duration::from_millis(1500);
        for (d, want) in [
            (
                mysql_5_7(),
                "SELECT MASTER_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                mysql_8_0_23(),
                "SELECT MASTER_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                mysql_8_0_26(),
                "SELECT SOURCE_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                mysql_8_4(),
                "SELECT SOURCE_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                rds_mysql_5_7(),
                "SELECT MASTER_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                rds_mysql_8_0(),
                "SELECT SOURCE_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                aurora_2(),
                "SELECT MASTER_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
            (
                maria_10_11(),
                "SELECT MASTER_POS_WAIT('binlog.000012', 2365710, 2)",
            ),
        ] {
            let d = gtid_off(d);
            assert_eq!(
                d.wait_until_contains(&at, t).unwrap().sql,
                want,
                "{}",
                d.flavor()
            );
        }
    }

    /// A MySQL 5.7 replica without GTIDs, as the manual's `SHOW SLAVE STATUS` shows one
    /// (<https://dev.mysql.com/doc/refman/5.7/en/show-slave-status.html>): applied
    /// `Relay_Master_Log_File:Exec_Master_Log_Pos`, received `Master_Log_File:
    /// Read_Master_Log_Pos`, both in the source's coordinates.
    #[test]
    fn applied_and_received_coordinates_come_from_the_status() {
        let d = gtid_off(mysql_5_7());
        let mut st = ReplicationStatus::not_configured();
        assert_eq!(d.applied_from_status(&st), None);
        assert_eq!(d.io_position(&st), None);
        st.configured = true;
        st.source_log = Some(BinlogPosition::new("master-bin.000002", 1307));
        st.exec_source_log = Some(BinlogPosition::new("master-bin.000002", 1200));
        let applied = d.applied_from_status(&st).unwrap();
        assert_eq!(applied.to_string(), "master-bin.000002:1200");
        assert_eq!(
            d.io_position(&st).unwrap().to_string(),
            "master-bin.000002:1307"
        );
        assert_eq!(
            d.received_position(&st, &applied).to_string(),
            "master-bin.000002:1307"
        );
        let row = vec![
            ("File".to_string(), Some("master-bin.000002".to_string())),
            ("Position".to_string(), Some("1307".to_string())),
        ];
        let executed = d.executed_from_binlog_status(&row).unwrap().unwrap();
        assert!(executed.contains(&applied) && !applied.contains(&executed));
        assert_eq!(applied.behind(&executed), None);
        // With GTIDs the IO position stays the retrieved set.
        assert_eq!(mysql_5_7().io_position(&st), None);
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
