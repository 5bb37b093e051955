//! A consistent comparison's server side (see `dialect/snapshot.rs`): a snapshot read without
//! stopping the server, the position it shows, and a replica run until exactly there.

use super::Server;
use crate::dialect::ReplicaThread;
use crate::error::{Error, Result};
use crate::position::BinlogPosition;
use crate::replication_position::ReplicationPosition;
use crate::status::ReplicationStatus;

impl Server {
    /// Open a read-only view of the whole server at one point of its binary log on this
    /// connection, without locking anything. Every read on this connection sees that point
    /// until [`Self::end_snapshot`].
    pub async fn begin_consistent_snapshot(&mut self) -> Result<()> {
        let stmts = self.dialect.begin_consistent_snapshot();
        self.exec_all(&stmts).await?;
        tracing::debug!(endpoint = %self.endpoint, "consistent snapshot open");
        Ok(())
    }

    /// End the snapshot (it only read: nothing is lost).
    pub async fn end_snapshot(&mut self) -> Result<()> {
        let stmt = self.dialect.end_snapshot();
        self.exec(&stmt).await
    }

    /// The binlog coordinates of this connection's snapshot; [`Error::State`] when the server
    /// gives none (no binary log).
    pub async fn snapshot_coordinates(&mut self) -> Result<BinlogPosition> {
        let stmt = self.dialect.snapshot_coordinates()?;
        let rows = self.query_rows(&stmt.sql).await?;
        let value = |name: &str| {
            rows.iter()
                .find(|r| {
                    r.first()
                        .and_then(|c| c.1.as_deref())
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .and_then(|r| r.get(1).and_then(|c| c.1.clone()))
                .filter(|v| !v.is_empty())
        };
        let (Some(file), Some(pos)) = (
            value("binlog_snapshot_file"),
            value("binlog_snapshot_position"),
        ) else {
            return Err(Error::State {
                endpoint: self.endpoint.clone(),
                message: "binlog_snapshot_file/position are empty (is the binary log on?)".into(),
            });
        };
        let pos = pos
            .parse()
            .map_err(|_| Error::parse("snapshot binlog position", &pos, "not a number"))?;
        Ok(BinlogPosition { file, pos })
    }

    /// The replication position at binlog coordinates `at` of this server; `None` when they
    /// are not in its binary log.
    pub async fn position_at_coordinates(
        &mut self,
        at: &BinlogPosition,
    ) -> Result<Option<ReplicationPosition>> {
        let stmt = self.dialect.position_at_coordinates(at)?;
        match self.query_scalar(&stmt.sql).await? {
            None => Ok(None),
            Some(text) => self.dialect.parse_position(Some(&text)).map(Some),
        }
    }

    /// Whether this replica can be run until an exact position ([`Self::run_replication_until`]),
    /// given its replication `status`.
    pub fn can_run_until_position(&self, status: &ReplicationStatus) -> bool {
        self.dialect.can_run_until_position(status)
    }

    /// Stop replication, then run it until exactly `target`, where it stops by itself.
    pub async fn run_replication_until(&mut self, target: &ReplicationPosition) -> Result<()> {
        let stmts = self.dialect.run_replica_until(target)?;
        tracing::info!(endpoint = %self.endpoint, %target, "running replication until a position");
        self.exec_all(&stmts).await?;
        tracing::info!(endpoint = %self.endpoint, %target, "replication runs until the position");
        Ok(())
    }

    /// Start one replication thread alone.
    pub async fn start_replication_thread(&mut self, thread: ReplicaThread) -> Result<()> {
        let stmt = self.dialect.start_replica_thread(thread)?;
        tracing::info!(endpoint = %self.endpoint, ?thread, "starting a replication thread");
        self.exec(&stmt).await?;
        tracing::info!(endpoint = %self.endpoint, ?thread, "replication thread started");
        Ok(())
    }

    /// Forget a pending `UNTIL` of this stopped replica without changing anything else (the
    /// GTID mode is kept as `Using_Gtid` shows it).
    pub async fn clear_replication_until(&mut self, status: &ReplicationStatus) -> Result<()> {
        let stmt = self.dialect.clear_until(status.using_gtid.as_deref())?;
        tracing::info!(endpoint = %self.endpoint, "clearing a pending UNTIL");
        self.exec(&stmt).await?;
        tracing::info!(endpoint = %self.endpoint, "pending UNTIL cleared");
        Ok(())
    }
}
