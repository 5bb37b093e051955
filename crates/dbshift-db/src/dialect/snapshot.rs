//! The statements of a consistent comparison (`bluegreen verify`): a snapshot of the source
//! read without stopping it, the replication position that snapshot shows, and a replica run
//! until exactly that position, then put back as it was.
//!
//! MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` makes `binlog_snapshot_file` and
//! `binlog_snapshot_position` name the binlog point of the snapshot, `BINLOG_GTID_POS()` turns
//! it into a GTID position, and `START SLAVE UNTIL master_gtid_pos` stops a replica there.
//! Nothing is locked.
//!
//! MySQL has no `binlog_snapshot_*`: nothing ties an InnoDB snapshot to a point of the binary
//! log by itself. `LOCK INSTANCE FOR BACKUP` (8.0, BACKUP_ADMIN) does not help: it blocks DDL
//! but not DML, so commits go on while the snapshot opens
//! (<https://dev.mysql.com/doc/refman/8.0/en/lock-instance-for-backup.html>), and
//! `performance_schema.log_status` gives a consistent `gtid_executed` but of no particular
//! transaction snapshot. What operators already trust is what `mysqldump --single-transaction
//! --source-data` (`--master-data` before 8.0.26) does
//! (<https://dev.mysql.com/doc/refman/8.0/en/mysqldump.html#option_mysqldump_single-transaction>):
//! a brief `FLUSH TABLES WITH READ LOCK` (no commit can happen while it is held), `START
//! TRANSACTION WITH CONSISTENT SNAPSHOT`, read `@@GLOBAL.gtid_executed` (or, without GTIDs,
//! the binary log status), then `UNLOCK TABLES` (which does not end the transaction: it holds
//! no `LOCK TABLES`). The lock is held for three short statements; taking it is bounded by
//! `lock_wait_timeout`, which covers `FLUSH TABLES WITH READ LOCK` waiting behind a long
//! statement (<https://dev.mysql.com/doc/refman/8.0/en/server-system-variables.html#sysvar_lock_wait_timeout>),
//! so a long query on the source makes the snapshot fail rather than stall the source's clients
//! behind the queued lock for longer than that. RDS and Aurora forbid `FLUSH TABLES WITH READ
//! LOCK` to their users, so there it is [`crate::Error::Unsupported`].

use std::time::Duration;

use super::{Dialect, Statement, Until};
use crate::error::{Error, Result};
use crate::position::BinlogPosition;
use crate::quote_literal;
use crate::replication_position::ReplicationPosition;
use crate::status::ReplicationStatus;

/// How to take a consistent snapshot and read the replication position it shows, on one
/// connection: run `open`, read with `read`, then run `release` (also after a failure: it only
/// lets go of locks). The snapshot stays open until [`Dialect::end_snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPlan {
    pub open: Vec<Statement>,
    pub read: SnapshotRead,
    pub release: Vec<Statement>,
}

/// What the snapshot's position is read with, and what its answer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotRead {
    /// MariaDB: `binlog_snapshot_file`/`_position` rows, then [`Dialect::position_at_coordinates`].
    MariaDbCoordinates(Statement),
    /// MySQL with GTIDs: one column, `gtid_executed`.
    GtidExecuted(Statement),
    /// MySQL without GTIDs: the binary log status row ([`crate::ReplicationPosition::Binlog`]).
    BinlogStatus(Statement),
}

/// One of a replica's two replication threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaThread {
    /// The receiver (IO thread): fetches the source's binlog into the relay log.
    Io,
    /// The applier (SQL thread): applies the relay log.
    Sql,
}

impl Dialect {
    /// Open a read-only view of the whole server at one point of its binary log, on this
    /// session, without locking anything.
    pub fn begin_consistent_snapshot(&self) -> Vec<Statement> {
        vec![
            Statement::plain("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            Statement::plain("START TRANSACTION WITH CONSISTENT SNAPSHOT"),
        ]
    }

    /// End the snapshot (it only read: rolling back loses nothing).
    pub fn end_snapshot(&self) -> Statement {
        Statement::plain("ROLLBACK")
    }

    /// The statements of a snapshot with its replication position (see the module
    /// documentation); `lock_wait` bounds MySQL's `FLUSH TABLES WITH READ LOCK`.
    pub fn snapshot_with_position(&self, lock_wait: Duration) -> Result<SnapshotPlan> {
        if self.flavor.is_mariadb() {
            return Ok(SnapshotPlan {
                open: self.begin_consistent_snapshot(),
                read: SnapshotRead::MariaDbCoordinates(self.snapshot_coordinates()?),
                release: Vec::new(),
            });
        }
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "a consistent snapshot with its replication position on RDS or Aurora (MySQL \
                 has no binlog_snapshot_*, and the only way to tie a snapshot to a position, \
                 FLUSH TABLES WITH READ LOCK, is not allowed there)",
            ));
        }
        let read = if self.uses_binlog_positions() {
            SnapshotRead::BinlogStatus(self.show_binlog_status())
        } else {
            SnapshotRead::GtidExecuted(Statement::plain("SELECT @@GLOBAL.gtid_executed"))
        };
        let mut open = vec![
            self.lock_wait_timeout(lock_wait),
            Statement::plain("FLUSH TABLES WITH READ LOCK"),
        ];
        open.extend(self.begin_consistent_snapshot());
        Ok(SnapshotPlan {
            open,
            read,
            release: vec![
                Statement::plain("UNLOCK TABLES"),
                // The checksums that follow on this session wait for locks as usual.
                Statement::plain("SET SESSION lock_wait_timeout=DEFAULT"),
            ],
        })
    }

    /// The binlog coordinates of this session's snapshot (`Variable_name`, `Value` rows of
    /// `binlog_snapshot_file` and `binlog_snapshot_position`).
    pub fn snapshot_coordinates(&self) -> Result<Statement> {
        if !self.flavor.is_mariadb() {
            return Err(self.unsupported(
                "reading a snapshot's binlog coordinates (binlog_snapshot_* is MariaDB's)",
            ));
        }
        Ok(Statement::plain("SHOW STATUS LIKE 'binlog_snapshot_%'"))
    }

    /// The GTID position at binlog coordinates `at` of this server (one column; NULL when the
    /// coordinates are not in its binlog).
    pub fn position_at_coordinates(&self, at: &BinlogPosition) -> Result<Statement> {
        if !self.flavor.is_mariadb() {
            return Err(self.unsupported("BINLOG_GTID_POS (MariaDB only)"));
        }
        Ok(Statement::plain(format!(
            "SELECT BINLOG_GTID_POS({}, {})",
            quote_literal(&at.file),
            at.pos
        )))
    }

    /// Stop replication, then run it until `target` exactly: MariaDB `START SLAVE UNTIL
    /// master_gtid_pos`, MySQL `START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS`.
    pub fn run_replica_until(&self, target: &ReplicationPosition) -> Result<Vec<Statement>> {
        match target {
            ReplicationPosition::MariaDb(pos) => self.start_replica_until_gtid(pos),
            ReplicationPosition::MySql(set) => {
                self.start_replica_until_gtid_set(set, Until::AfterGtids)
            }
            ReplicationPosition::Binlog(_) => Err(self.unsupported(
                "running a replica until binary log coordinates (verify needs GTIDs: with \
                 gtid_mode OFF the snapshot and the replica cannot be matched exactly)",
            )),
        }
    }

    /// Whether this replica can be run until an exact position with
    /// [`Self::run_replica_until`] and its snapshot counterpart: MariaDB replicating by GTID
    /// (`Using_Gtid` `Slave_Pos` or `Current_Pos`); MySQL with GTIDs on and auto-position
    /// (`Auto_Position` 1), which `START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS` needs to
    /// stop at the snapshot's `gtid_executed`.
    pub fn can_run_until_position(&self, status: &ReplicationStatus) -> bool {
        if !status.configured {
            return false;
        }
        if self.flavor.is_mysql() {
            return status.auto_position == Some(true) && !self.uses_binlog_positions();
        }
        let using = status.using_gtid.as_deref().unwrap_or_default();
        using.eq_ignore_ascii_case("Slave_Pos") || using.eq_ignore_ascii_case("Current_Pos")
    }

    /// Start one replication thread alone.
    pub fn start_replica_thread(&self, thread: ReplicaThread) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "starting one replication thread without SUPER (the mysql.rds_* procedures \
                 start both)",
            ));
        }
        let which = match thread {
            ReplicaThread::Io => "IO_THREAD",
            ReplicaThread::Sql => "SQL_THREAD",
        };
        Ok(Statement::plain(format!(
            "START {} {which}",
            self.replica_word()
        )))
    }

    /// Forget a pending `UNTIL` of a stopped replica without changing anything else: MariaDB
    /// keeps it for a thread started alone, and `CHANGE MASTER` with the same GTID mode
    /// (`using_gtid`, as `Using_Gtid` shows it) clears it (the relay log is fetched again from
    /// the same position). MySQL clears it when the thread stops.
    pub fn clear_until(&self, using_gtid: Option<&str>) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported("CHANGE MASTER without SUPER"));
        }
        if !self.flavor.is_mariadb() {
            return Err(Error::Unsupported {
                flavor: self.flavor.to_string(),
                what: "clearing an UNTIL by CHANGE MASTER (MySQL drops it when the applier \
                       stops)"
                    .into(),
            });
        }
        let mode = match using_gtid {
            Some(m) if m.eq_ignore_ascii_case("current_pos") => "current_pos",
            Some(m) if m.eq_ignore_ascii_case("no") => "no",
            _ => "slave_pos",
        };
        Ok(Statement::plain(format!(
            "CHANGE MASTER TO MASTER_USE_GTID = {mode}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::settings::GtidMode;

    #[test]
    fn a_snapshot_is_a_repeatable_read_transaction() {
        for d in mariadbs().into_iter().chain(mysqls()) {
            assert_eq!(
                sql(&d.begin_consistent_snapshot()),
                [
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT"
                ]
            );
            assert_eq!(d.end_snapshot().sql, "ROLLBACK");
        }
    }

    #[test]
    fn the_snapshot_position_is_mariadbs() {
        let at = BinlogPosition::new("mysql-bin.000042", 1307);
        for d in mariadbs() {
            assert_eq!(
                d.snapshot_coordinates().unwrap().sql,
                "SHOW STATUS LIKE 'binlog_snapshot_%'"
            );
            assert_eq!(
                d.position_at_coordinates(&at).unwrap().sql,
                "SELECT BINLOG_GTID_POS('mysql-bin.000042', 1307)"
            );
        }
        assert_eq!(
            maria_10_11()
                .position_at_coordinates(&BinlogPosition::new("a'b", 4))
                .unwrap()
                .sql,
            "SELECT BINLOG_GTID_POS('a''b', 4)"
        );
        for d in mysqls() {
            unsupported(d.snapshot_coordinates());
            unsupported(d.position_at_coordinates(&at));
        }
    }

    #[test]
    fn run_until_per_flavor() {
        let pos = ReplicationPosition::MariaDb("0-1-100".parse().unwrap());
        assert_eq!(
            sql(&maria_10_11().run_replica_until(&pos).unwrap()),
            ["STOP SLAVE", "START SLAVE UNTIL master_gtid_pos='0-1-100'"]
        );
        let set =
            ReplicationPosition::MySql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".parse().unwrap());
        assert_eq!(
            sql(&mysql_8_4().run_replica_until(&set).unwrap()),
            [
                "STOP REPLICA SQL_THREAD",
                "START REPLICA IO_THREAD",
                "START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS=\
                 '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'"
            ]
        );
        unsupported(maria_10_11().run_replica_until(&set));
        unsupported(rds_mariadb().run_replica_until(&pos));
    }

    #[test]
    fn only_a_mariadb_gtid_replica_runs_until_a_position() {
        let mut st = ReplicationStatus::not_configured();
        let d = maria_10_11();
        assert!(!d.can_run_until_position(&st));
        st.configured = true;
        for (using, ok) in [
            (Some("Slave_Pos"), true),
            (Some("current_pos"), true),
            (Some("No"), false),
            (None, false),
        ] {
            st.using_gtid = using.map(String::from);
            assert_eq!(d.can_run_until_position(&st), ok, "{using:?}");
        }
    }

    #[test]
    fn a_mysql_replica_runs_until_a_gtid_set_with_auto_position() {
        let mut st = ReplicationStatus::not_configured();
        st.auto_position = Some(true);
        for d in mysql_versions().into_iter().chain(aws_mysqls()) {
            let name = d.flavor().to_string();
            st.configured = false;
            assert!(!d.can_run_until_position(&st), "{name}");
            st.configured = true;
            assert!(d.can_run_until_position(&st), "{name}");
            st.auto_position = Some(false);
            assert!(!d.can_run_until_position(&st), "{name}");
            st.auto_position = Some(true);
            let off = d.clone().with_gtid_mode(Some(GtidMode::OnPermissive));
            assert!(!off.can_run_until_position(&st), "{name}");
        }
        // MariaDB never looks at Auto_Position.
        assert!(!maria_10_11().can_run_until_position(&st));
    }

    #[test]
    fn mysql_snapshot_holds_a_brief_global_read_lock() {
        let wait = Duration::from_secs(2);
        for d in mysql_versions() {
            let plan = d.snapshot_with_position(wait).unwrap();
            assert_eq!(
                sql(&plan.open),
                [
                    "SET SESSION lock_wait_timeout=2",
                    "FLUSH TABLES WITH READ LOCK",
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                ],
                "{}",
                d.flavor()
            );
            assert_eq!(
                plan.read,
                SnapshotRead::GtidExecuted(Statement::plain("SELECT @@GLOBAL.gtid_executed"))
            );
            assert_eq!(
                sql(&plan.release),
                ["UNLOCK TABLES", "SET SESSION lock_wait_timeout=DEFAULT"]
            );
            // Without GTIDs the position is the binary log's, read under the same lock.
            let off = d.clone().with_gtid_mode(Some(GtidMode::Off));
            let plan = off.snapshot_with_position(wait).unwrap();
            assert_eq!(
                plan.read,
                SnapshotRead::BinlogStatus(d.show_binlog_status())
            );
            assert_eq!(plan.open[1].sql, "FLUSH TABLES WITH READ LOCK");
        }
        for d in aws_mysqls() {
            let e = unsupported(d.snapshot_with_position(wait));
            assert!(e.contains("FLUSH TABLES WITH READ LOCK"), "{e}");
        }
    }

    #[test]
    fn mariadb_snapshot_locks_nothing() {
        for d in mariadbs() {
            let plan = d.snapshot_with_position(Duration::from_secs(2)).unwrap();
            assert_eq!(plan.open, d.begin_consistent_snapshot());
            assert_eq!(
                plan.read,
                SnapshotRead::MariaDbCoordinates(Statement::plain(
                    "SHOW STATUS LIKE 'binlog_snapshot_%'"
                ))
            );
            assert!(plan.release.is_empty());
        }
    }

    #[test]
    fn one_thread_at_a_time() {
        let d = maria_10_11();
        assert_eq!(
            d.start_replica_thread(ReplicaThread::Io).unwrap().sql,
            "START SLAVE IO_THREAD"
        );
        assert_eq!(
            d.start_replica_thread(ReplicaThread::Sql).unwrap().sql,
            "START SLAVE SQL_THREAD"
        );
        assert_eq!(
            mysql_8_4()
                .start_replica_thread(ReplicaThread::Sql)
                .unwrap()
                .sql,
            "START REPLICA SQL_THREAD"
        );
        assert_eq!(
            mysql_5_7()
                .start_replica_thread(ReplicaThread::Io)
                .unwrap()
                .sql,
            "START SLAVE IO_THREAD"
        );
        for d in without_super() {
            unsupported(d.start_replica_thread(ReplicaThread::Io));
        }
    }

    #[test]
    fn clearing_an_until_keeps_the_gtid_mode() {
        let d = maria_10_11();
        for (using, mode) in [
            (Some("Current_Pos"), "current_pos"),
            (Some("No"), "no"),
            (Some("Slave_Pos"), "slave_pos"),
            (None, "slave_pos"),
        ] {
            assert_eq!(
                d.clear_until(using).unwrap().sql,
                format!("CHANGE MASTER TO MASTER_USE_GTID = {mode}")
            );
        }
        unsupported(mysql_8_4().clear_until(None));
        unsupported(rds_mariadb().clear_until(None));
    }
}
