//! The guards' reads of a server's settings (see `dialect/settings.rs` and `crate::settings`),
//! typed, so that a workflow never names a variable.

use super::Server;
use crate::error::Result;
use crate::settings::{
    parse_switch, BinlogFormat, EnforceGtidConsistency, GtidMode, ReadOnly, SemiSync,
};

/// MySQL's "Unknown system variable": a server too old for `gtid_mode` (before 5.6) has no
/// GTIDs at all.
const UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

impl Server {
    /// MySQL `@@gtid_mode`, read now; `None` on MariaDB (no such variable: its GTIDs are always
    /// on). The positions this connection reads and waits for follow what it finds (see
    /// [`crate::ReplicationPosition::Binlog`]), so a server whose mode changed since the
    /// connection opened is handled as it is now.
    pub async fn gtid_mode(&mut self) -> Result<Option<GtidMode>> {
        let Ok(stmt) = self.dialect.read_gtid_mode() else {
            return Ok(None);
        };
        let mode = match self.query_scalar(&stmt.sql).await {
            Ok(text) => text.unwrap_or_default().parse::<GtidMode>()?,
            Err(e) if e.server_code() == Some(UNKNOWN_SYSTEM_VARIABLE) => GtidMode::Off,
            Err(e) => return Err(e),
        };
        self.dialect = self.dialect.clone().with_gtid_mode(Some(mode));
        Ok(Some(mode))
    }

    /// MySQL `@@enforce_gtid_consistency`; `None` on MariaDB.
    pub async fn enforce_gtid_consistency(&mut self) -> Result<Option<EnforceGtidConsistency>> {
        let Ok(stmt) = self.dialect.read_gtid_settings() else {
            return Ok(None);
        };
        let row = self.query_one(&stmt.sql).await?;
        let text = row.get(1).and_then(|c| c.1.clone()).unwrap_or_default();
        text.parse().map(Some)
    }

    /// Whether this server writes what its replication applies to its own binary log
    /// (`log_replica_updates` on MySQL 8.0.26+, `log_slave_updates` elsewhere).
    pub async fn logs_replica_updates(&mut self) -> Result<bool> {
        let stmt = self.dialect.read_log_replica_updates();
        let text = self.query_scalar(&stmt.sql).await?.unwrap_or_default();
        parse_switch("log_replica_updates", &text)
    }

    /// `@@binlog_format`.
    pub async fn binlog_format(&mut self) -> Result<BinlogFormat> {
        let stmt = self.dialect.read_binlog_format();
        let text = self.query_scalar(&stmt.sql).await?.unwrap_or_default();
        text.parse()
    }

    /// The read-only fence as the server has it: `read_only`, and `super_read_only` where it
    /// exists (MySQL 5.7.8+). [`Server::read_only`] gives `read_only` alone.
    pub async fn read_only_state(&mut self) -> Result<ReadOnly> {
        let stmt = self.dialect.read_read_only();
        let row = self.query_one(&stmt.sql).await?;
        let column = |i: usize| row.get(i).map(|c| c.1.clone().unwrap_or_default());
        let read_only = parse_switch("read_only", &column(0).unwrap_or_default())?;
        let super_read_only = match column(1) {
            Some(text) => Some(parse_switch("super_read_only", &text)?),
            None => None,
        };
        Ok(ReadOnly {
            read_only,
            super_read_only,
        })
    }

    /// Whether new tables are encrypted at rest by default (MariaDB `innodb_encrypt_tables`
    /// ON or FORCE, MySQL 8.0.16+ `default_table_encryption`); false where the server has no
    /// such default.
    pub async fn encrypts_new_tables(&mut self) -> Result<bool> {
        let Some(stmt) = self.dialect.read_table_encryption() else {
            return Ok(false);
        };
        let text = self.query_scalar(&stmt.sql).await?.unwrap_or_default();
        Ok(!(text.is_empty() || text.eq_ignore_ascii_case("OFF") || text == "0"))
    }

    /// The semi-synchronous plugins this server has, and the names each uses, read from its
    /// variables (never guessed from the version).
    pub async fn semi_sync(&mut self) -> Result<SemiSync> {
        let stmt = self.dialect.read_semi_sync_variables();
        let rows = self.query_rows(&stmt.sql).await?;
        let names: Vec<String> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().and_then(|(_, v)| v))
            .collect();
        Ok(SemiSync::from_variable_names(
            names.iter().map(String::as_str),
        ))
    }
}
