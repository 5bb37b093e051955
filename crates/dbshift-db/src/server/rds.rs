//! The `mysql.rds_*` procedures with no SQL twin, on a server (see `dialect/rds.rs`).

use super::Server;
use crate::dialect::parse_binlog_retention_hours;
use crate::error::Result;

impl Server {
    /// How long RDS or Aurora keeps binary logs, in hours; `None` for the default (purged as
    /// soon as possible, which a replica outside RDS cannot rely on).
    pub async fn binlog_retention_hours(&mut self) -> Result<Option<u32>> {
        let stmt = self.dialect.show_rds_configuration()?;
        let rows = self.query_rows(&stmt.sql).await?;
        parse_binlog_retention_hours(&rows)
    }

    /// Keep binary logs for `hours` (`None`: the default).
    pub async fn set_binlog_retention_hours(&mut self, hours: Option<u32>) -> Result<()> {
        let stmt = self.dialect.set_binlog_retention_hours(hours)?;
        tracing::info!(endpoint = %self.endpoint, ?hours, "setting binlog retention");
        self.exec(&stmt).await?;
        tracing::info!(endpoint = %self.endpoint, ?hours, "binlog retention set");
        Ok(())
    }
}
