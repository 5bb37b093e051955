//! The flavor-neutral replication position API on a server: read what it executed, applied,
//! received or holds; whether it contains a position; wait (bounded) until it does; and where
//! a replica starts when it is pointed at a new source. The statements are
//! `dialect/positions.rs`'s, the types `replication_position.rs`'s.

use std::time::Duration;

use super::Server;
use crate::dialect::SourceStart;
use crate::error::Result;
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

    /// What this server wrote to its binary log: the position its replicas must reach to
    /// have everything it has (MariaDB `gtid_binlog_pos`, MySQL `gtid_executed`).
    pub async fn executed_position(&mut self) -> Result<ReplicationPosition> {
        let stmt = self.dialect.read_executed_position();
        self.read_position(stmt).await
    }

    /// What this server's replication applied (MariaDB `gtid_slave_pos`, MySQL
    /// `gtid_executed`): what a replica's lag is measured from.
    pub async fn applied_position(&mut self) -> Result<ReplicationPosition> {
        let stmt = self.dialect.read_applied_position();
        self.read_position(stmt).await
    }

    /// Where this server stands, for an operator to read (MariaDB `gtid_current_pos`, which
    /// its own binlogged statements move too: never for finding errant transactions).
    pub async fn current_position(&mut self) -> Result<ReplicationPosition> {
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
    pub async fn history(&mut self) -> Result<History> {
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
    /// `WAIT_FOR_EXECUTED_GTID_SET`), or fail with [`crate::Error::Timeout`] after `deadline`
    /// (or [`crate::Error::State`] when its replication is not running).
    pub async fn wait_until_contains(
        &mut self,
        target: &ReplicationPosition,
        deadline: Duration,
    ) -> Result<()> {
        let stmt = self.dialect.wait_until_contains(target, deadline)?;
        let what = match target {
            ReplicationPosition::MariaDb(_) => format!("GTID position {target}"),
            ReplicationPosition::MySql(_) => format!("GTID set {target}"),
        };
        self.wait_statement(&stmt, deadline, &what, |v| v == "0")
            .await
    }

    /// Where this replica continues when it is pointed at another source: from what it
    /// applied. `CHANGE MASTER` keeps that by itself ([`SourceStart::Gtid`]); the
    /// `mysql.rds_*` procedures take it explicitly, so there replication is stopped first and
    /// the applied position read.
    pub async fn continue_where_applied(&mut self) -> Result<SourceStart> {
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
}
