//! Read-only checks (see `dialect/checks.rs`): what the switchover guards and the failover's
//! look at a server ask it. Nothing here changes a server.

use super::Server;
use crate::dialect::Statement;
use crate::error::Result;

/// A replica's heartbeat counters: how many heartbeats it received from its source, and the
/// period they come at, when the server reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heartbeats {
    pub received: Option<u64>,
    pub period_ms: Option<u64>,
}

impl Server {
    /// The first column of every row of `stmt`, NULLs left out.
    async fn first_column(&mut self, stmt: &Statement) -> Result<Vec<String>> {
        Ok(self
            .query_rows(&stmt.sql)
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next().and_then(|(_, v)| v))
            .collect())
    }

    /// Whether the server answers a trivial query (within the statement timeout).
    pub async fn ping(&mut self) -> Result<()> {
        let stmt = self.dialect.ping();
        self.query_scalar(&stmt.sql).await.map(|_| ())
    }

    /// `schema.name` of the tables and triggers of an online schema change at work (gh-ost,
    /// pt-online-schema-change).
    pub async fn online_schema_change_leftovers(&mut self) -> Result<Vec<String>> {
        let stmt = self.dialect.online_schema_change_leftovers();
        self.first_column(&stmt).await
    }

    /// Routines and enabled events whose definer can write through `read_only`, as
    /// `routine db.name (definer)` / `event db.name (definer)`.
    pub async fn privileged_definers(&mut self) -> Result<Vec<String>> {
        let stmt = self.dialect.privileged_definers();
        self.first_column(&stmt).await
    }

    /// `schema.name` of at most `limit` user tables without a primary key.
    pub async fn tables_without_primary_key(&mut self, limit: u32) -> Result<Vec<String>> {
        let stmt = self.dialect.tables_without_primary_key(limit);
        self.first_column(&stmt).await
    }

    /// How many XA transactions are prepared and wait for a commit or a rollback.
    pub async fn prepared_xa_transactions(&mut self) -> Result<usize> {
        let stmt = self.dialect.prepared_xa_transactions();
        Ok(self.query_rows(&stmt.sql).await?.len())
    }

    /// `sync_binlog` (0 when unreadable as a number).
    pub async fn sync_binlog(&mut self) -> Result<u64> {
        let stmt = self.dialect.read_sync_binlog();
        Ok(self
            .query_scalar(&stmt.sql)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// This replica's heartbeat counters, as far as the server reports them.
    pub async fn replica_heartbeats(&mut self) -> Result<Heartbeats> {
        let stmt = self.dialect.replica_heartbeats()?;
        let mut beats = Heartbeats::default();
        for row in self.query_rows(&stmt.sql).await? {
            let (Some(name), Some(value)) = (
                row.first().and_then(|c| c.1.as_deref()),
                row.get(1).and_then(|c| c.1.as_deref()),
            ) else {
                continue;
            };
            if name.eq_ignore_ascii_case("Slave_received_heartbeats") {
                beats.received = value.parse().ok();
            } else if name.eq_ignore_ascii_case("Slave_heartbeat_period") {
                beats.period_ms = value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0)
                    .map(|p| (p * 1000.0).round() as u64);
            }
        }
        Ok(beats)
    }
}
