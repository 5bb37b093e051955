//! The flavor-neutral replication position API on a server: read what it executed, applied,
//! received or holds; whether it contains a position; wait (bounded) until it does; and where
//! a replica starts when it is pointed at a new source. The statements are
//! `dialect/positions.rs`'s, the types `replication_position.rs`'s.
//!
//! On MySQL without GTIDs (`gtid_mode` not `ON`, read at connect time and by
//! [`Server::gtid_mode`]) the positions are binary log coordinates
//! ([`ReplicationPosition::Binlog`]); there is no history of transactions to compare, so
//! [`Server::history`] says so instead of answering with an empty set.

use std::time::Duration;

use super::Server;
use crate::dialect::SourceStart;
use crate::error::{Error, Result};
use crate::replication_position::{History, ReplicationPosition};
use crate::status::ReplicationStatus;

impl Server {
    async fn read_position(
        &mut self,
        stmt: crate::dialect::Statement,
    ) -> Result<ReplicationPosition> {
        let text = self.query_scalar(&stmt.sql).await?;
        self.dialect.parse_position(text.as_deref())
    }

    /// Without GTIDs: this server's own binary log coordinates.
    async fn own_coordinates(&mut self) -> Result<ReplicationPosition> {
        let stmt = self.dialect.show_binlog_status();
        let rows = self.query_rows(&stmt.sql).await?;
        let found = match rows.first() {
            Some(row) => self.dialect.executed_from_binlog_status(row)?,
            None => None,
        };
        found.ok_or_else(|| Error::State {
            endpoint: self.endpoint.clone(),
            message: "GTIDs are off and the binary log is off: this server has no replication                       position"
                .into(),
        })
    }

    /// What this server wrote to its binary log: the position its replicas must reach to
    /// have everything it has (MariaDB `gtid_binlog_pos`, MySQL `gtid_executed`; MySQL
    /// without GTIDs, its `SHOW BINARY LOG STATUS` coordinates).
    pub async fn executed_position(&mut self) -> Result<ReplicationPosition> {
        if self.dialect.uses_binlog_positions() {
            return self.own_coordinates().await;
        }
        let stmt = self.dialect.read_executed_position();
        self.read_position(stmt).await
    }

    /// What this server's replication applied (MariaDB `gtid_slave_pos`, MySQL
    /// `gtid_executed`): what a replica's lag is measured from. MySQL without GTIDs: the
    /// replica's `Exec_Source_Log_Pos` in its source's coordinates, and
    /// [`crate::Error::State`] on a server that is no replica (it applied nothing).
    pub async fn applied_position(&mut self) -> Result<ReplicationPosition> {
        if self.dialect.uses_binlog_positions() {
            let status = self.replication_status().await?;
            return self
                .dialect
                .applied_from_status(&status)
                .ok_or_else(|| Error::State {
                    endpoint: self.endpoint.clone(),
                    message: "GTIDs are off and this server is no replica: it has no applied                               position"
                        .into(),
                });
        }
        let stmt = self.dialect.read_applied_position();
        self.read_position(stmt).await
    }

    /// Where this server stands, for an operator to read (MariaDB `gtid_current_pos`, which
    /// its own binlogged statements move too: never for finding errant transactions; MySQL
    /// without GTIDs, its own binary log coordinates).
    pub async fn current_position(&mut self) -> Result<ReplicationPosition> {
        if self.dialect.uses_binlog_positions() {
            return self.own_coordinates().await;
        }
        let stmt = self.dialect.read_current_position();
        self.read_position(stmt).await
    }

    /// What this replica's IO thread received, as its replication `status` shows it.
    pub fn io_position(&self, status: &ReplicationStatus) -> Option<ReplicationPosition> {
        self.dialect.io_position(status)
    }

    /// What this replica holds once its relay log is applied: `applied` (from
    /// [`Self::applied_position`]) and what its IO thread received (`status`).
    pub fn received_position(
        &self,
        status: &ReplicationStatus,
        applied: &ReplicationPosition,
    ) -> ReplicationPosition {
        self.dialect.received_position(status, applied)
    }

    /// Every transaction this server's binary log holds (see [`History`]), read at once.
    /// [`crate::Error::Unsupported`] on MySQL without GTIDs: nothing records which
    /// transactions a server holds there, so errant transactions cannot be found (an empty
    /// `gtid_executed` would wrongly say there are none).
    pub async fn history(&mut self) -> Result<History> {
        if self.dialect.uses_binlog_positions() {
            return Err(Error::Unsupported {
                flavor: format!("{} with gtid_mode not ON", self.flavor),
                what: "comparing transaction histories (errant transactions are only found                        with GTIDs)"
                    .into(),
            });
        }
        let stmt = self.dialect.read_history();
        let row = self.query_one(&stmt.sql).await?;
        let columns: Vec<Option<String>> = row.into_iter().map(|(_, v)| v).collect();
        self.dialect.parse_history(&columns)
    }

    /// Whether this replica has applied everything up to `target`, now.
    pub async fn contains_position(&mut self, target: &ReplicationPosition) -> Result<bool> {
        Ok(self.applied_position().await?.contains(target))
    }

    /// Wait until this replica has applied `target` (`MASTER_GTID_WAIT`,
    /// `WAIT_FOR_EXECUTED_GTID_SET`; for binary log coordinates `MASTER_POS_WAIT` /
    /// `SOURCE_POS_WAIT`), or fail with [`crate::Error::Timeout`] after `deadline` (or
    /// [`crate::Error::State`] when its replication is not running).
    pub async fn wait_until_contains(
        &mut self,
        target: &ReplicationPosition,
        deadline: Duration,
    ) -> Result<()> {
        let stmt = self.dialect.wait_until_contains(target, deadline)?;
        match target {
            ReplicationPosition::MariaDb(_) => {
                let what = format!("GTID position {target}");
                self.wait_statement(&stmt, deadline, &what, |v| v == "0")
                    .await
            }
            ReplicationPosition::MySql(_) => {
                let what = format!("GTID set {target}");
                self.wait_statement(&stmt, deadline, &what, |v| v == "0")
                    .await
            }
            ReplicationPosition::Binlog(_) => {
                // The number of events waited for (0 or more) once reached; -1 on timeout.
                let what = format!("binlog position {target}");
                self.wait_statement(&stmt, deadline, &what, |v| {
                    v.parse::<i64>().is_ok_and(|n| n >= 0)
                })
                .await
            }
        }
    }

    /// Where this replica continues when it is pointed at another source: from what it
    /// applied. `CHANGE MASTER` and MySQL's auto-position keep that by themselves
    /// ([`SourceStart::Gtid`]); MariaDB's `mysql.rds_*` procedures take it explicitly, so
    /// there replication is stopped first and the applied position read. Without GTIDs
    /// there is no such position on another source: [`crate::Error::Unsupported`].
    pub async fn continue_where_applied(&mut self) -> Result<SourceStart> {
        self.require_gtid_positions("pointing a replica at another source where it left off")?;
        if !self.dialect.needs_explicit_start() {
            return Ok(SourceStart::Gtid);
        }
        self.stop_replication().await?;
        Ok(SourceStart::GtidAt(self.gtid_slave_pos().await?))
    }

    /// Where this former writer starts when it becomes a replica of its successor: after its
    /// own history, which the successor has already. MariaDB `MASTER_DEMOTE_TO_SLAVE=1`; through
    /// the `mysql.rds_*` procedures, its `gtid_current_pos`.
    pub async fn start_after_own_history(&mut self) -> Result<SourceStart> {
        self.require_gtid_positions("turning a former writer into a replica of its successor")?;
        if self.flavor.is_mysql() {
            // Auto-position: the successor sends only what this server's gtid_executed lacks,
            // and its own history is already there.
            return Ok(SourceStart::Gtid);
        }
        if !self.dialect.needs_explicit_start() {
            return Ok(SourceStart::DemoteToReplica);
        }
        Ok(SourceStart::GtidAt(self.gtid_current_pos().await?))
    }

    /// Whether pointing this replica can verify the source's certificate and take a CA file
    /// (not through the `mysql.rds_*` procedures, which turn the check off).
    pub fn can_verify_source_certificate(&self) -> bool {
        self.dialect.can_verify_source_certificate()
    }

    /// [`crate::Error::Unsupported`] for `what` where positions are binary log coordinates:
    /// a coordinate of one source means nothing on another.
    fn require_gtid_positions(&self, what: &str) -> Result<()> {
        if self.dialect.uses_binlog_positions() {
            return Err(Error::Unsupported {
                flavor: format!("{} with gtid_mode not ON", self.flavor),
                what: format!(
                    "{what} (binary log coordinates do not carry over to another source: turn \
                     GTIDs on)"
                ),
            });
        }
        Ok(())
    }
}
