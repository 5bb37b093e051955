//! A consistent comparison's server side (see `dialect/snapshot.rs`): a snapshot read without
//! stopping the server, the position it shows, and a replica run until exactly there.

use std::time::Duration;

use super::Server;
use crate::dialect::{ReplicaThread, SnapshotRead};
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

    /// Open a consistent snapshot on this connection and give the replication position it
    /// shows, for either flavor: MariaDB locks nothing; MySQL holds `FLUSH TABLES WITH READ
    /// LOCK` for three short statements, waiting at most `lock_wait` for it (see
    /// `dialect/snapshot.rs` for why). [`crate::Error::Unsupported`] on RDS and Aurora MySQL.
    /// On failure the lock is released and the snapshot ended; on success every read on this
    /// connection sees that point until [`Self::end_snapshot`].
    pub async fn begin_snapshot_at_position(
        &mut self,
        lock_wait: Duration,
    ) -> Result<ReplicationPosition> {
        let plan = self.dialect.snapshot_with_position(lock_wait)?;
        tracing::info!(endpoint = %self.endpoint, "opening a consistent snapshot");
        let opened = self.exec_all(&plan.open).await;
        let read = match opened {
            Ok(()) => self.read_snapshot_position(&plan.read).await,
            Err(e) => Err(e),
        };
        // Always let go of the lock, whatever happened; the first error is the one reported.
        let released = self.exec_all(&plan.release).await;
        let outcome = read.and_then(|position| released.map(|()| position));
        match outcome {
            Ok(position) => {
                tracing::info!(endpoint = %self.endpoint, %position, "consistent snapshot open");
                Ok(position)
            }
            Err(e) => {
                let _ = self.end_snapshot().await;
                Err(e)
            }
        }
    }

    async fn read_snapshot_position(&mut self, read: &SnapshotRead) -> Result<ReplicationPosition> {
        match read {
            SnapshotRead::MariaDbCoordinates(_) => {
                let at = self.snapshot_coordinates().await?;
                self.position_at_coordinates(&at)
                    .await?
                    .ok_or_else(|| Error::State {
                        endpoint: self.endpoint.clone(),
                        message: format!(
                            "the binlog coordinates {at} of the snapshot have no GTID position"
                        ),
                    })
            }
            SnapshotRead::GtidExecuted(stmt) => {
                let text = self.query_scalar(&stmt.sql).await?;
                Ok(ReplicationPosition::MySql(
                    text.unwrap_or_default().parse()?,
                ))
            }
            SnapshotRead::BinlogStatus(stmt) => {
                let rows = self.query_rows(&stmt.sql).await?;
                let found = match rows.first() {
                    Some(row) => self.dialect.executed_from_binlog_status(row)?,
                    None => None,
                };
                found.ok_or_else(|| Error::State {
                    endpoint: self.endpoint.clone(),
                    message: "the binary log is off: the snapshot has no position".into(),
                })
            }
        }
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

    /// Whether this server can give a consistent snapshot's position
    /// ([`Self::begin_snapshot_at_position`]); the error says why not (RDS and Aurora MySQL:
    /// no `FLUSH TABLES WITH READ LOCK` for the master user). Asks nothing of the server.
    pub fn check_snapshot_at_position(&self) -> Result<()> {
        self.dialect
            .snapshot_with_position(Duration::from_secs(1))
            .map(|_| ())
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
