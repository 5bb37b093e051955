//! What follows a server's role (see `dialect/roles.rs`): the event scheduler and the events
//! a writer runs, semi-sync's source side, and changes kept out of the binary log.

use super::Server;
use crate::dialect::alter_event;
use crate::error::{Error, Result};
use crate::settings::{SemiSync, SemiSyncNaming};

impl Server {
    /// Whether the event scheduler can be changed by SQL here (not without SUPER: there it is
    /// a parameter-group setting).
    pub fn can_set_event_scheduler(&self) -> bool {
        self.dialect.can_set_event_scheduler()
    }

    /// Whether `read_only` can be changed by SQL here (not without SUPER: a parameter group or
    /// a proxy fences there).
    pub fn can_set_read_only(&self) -> bool {
        self.dialect.can_set_read_only()
    }

    /// Whether this session's changes can be kept out of the binary log (`sql_log_bin`).
    pub fn can_skip_binlog(&self) -> bool {
        self.dialect.can_skip_binlog()
    }

    /// Whether the event scheduler runs (`@@event_scheduler` is `ON`).
    pub async fn event_scheduler_on(&mut self) -> Result<bool> {
        self.variable_bool("event_scheduler").await
    }

    /// Turn the event scheduler on or off.
    pub async fn set_event_scheduler(&mut self, on: bool) -> Result<()> {
        let stmt = self.dialect.set_event_scheduler(on)?;
        tracing::info!(endpoint = %self.endpoint, on, "setting the event scheduler");
        self.exec(&stmt).await?;
        tracing::info!(endpoint = %self.endpoint, on, "event scheduler set");
        Ok(())
    }

    /// Write this session's changes to the binary log (`on`) or keep them out of it.
    pub async fn set_session_binlog(&mut self, on: bool) -> Result<()> {
        let stmt = self.dialect.set_session_binlog(on)?;
        tracing::debug!(endpoint = %self.endpoint, on, "setting this session's binary logging");
        self.exec(&stmt).await?;
        tracing::debug!(endpoint = %self.endpoint, on, "session binary logging set");
        Ok(())
    }

    /// Enable the events that arrived from a writer as `SLAVESIDE_DISABLED` (a promotion);
    /// their definers are kept (a plain `ALTER EVENT` would make dbshift's user their
    /// definer). Gives `schema.name` of each.
    pub async fn enable_replicated_events(&mut self) -> Result<Vec<String>> {
        let events = self.events_with_status("SLAVESIDE_DISABLED").await?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!(endpoint = %self.endpoint, events = events.len(), "enabling replicated events");
        let mut enabled = Vec::new();
        for e in events {
            self.exec_sql(&alter_event(&e, "ENABLE")).await?;
            enabled.push(format!("{}.{}", e.schema, e.name));
        }
        tracing::info!(endpoint = %self.endpoint, ?enabled, "replicated events enabled");
        Ok(enabled)
    }

    /// Disable a former writer's enabled events (`DISABLE ON SLAVE`) without binlogging the
    /// change, where it would be an errant transaction. Needs SUPER (`sql_log_bin`: see
    /// [`Self::can_skip_binlog`]). Gives `schema.name` of each.
    pub async fn disable_events_as_replica(&mut self) -> Result<Vec<String>> {
        let events = self.events_with_status("ENABLED").await?;
        let mut disabled = Vec::new();
        if events.is_empty() {
            return Ok(disabled);
        }
        tracing::info!(endpoint = %self.endpoint, events = events.len(), "disabling events on a replica");
        self.set_session_binlog(false).await?;
        for e in events {
            self.exec_sql(&alter_event(&e, "DISABLE ON SLAVE")).await?;
            disabled.push(format!("{}.{}", e.schema, e.name));
        }
        self.set_session_binlog(true).await?;
        tracing::info!(endpoint = %self.endpoint, ?disabled, "events disabled on a replica");
        Ok(disabled)
    }

    /// The semi-sync plugins of this server: MariaDB's built-in pair, MySQL's as its
    /// variables name them ([`Server::semi_sync`]).
    async fn semi_sync_plugins(&mut self) -> Result<SemiSync> {
        if self.flavor.is_mariadb() {
            return Ok(SemiSync {
                source: Some(SemiSyncNaming::MasterSlave),
                replica: Some(SemiSyncNaming::MasterSlave),
            });
        }
        self.semi_sync().await
    }

    /// Where semi-synchronous replication is set up (the server is a semi-sync replica,
    /// `rpl_semi_sync_slave_enabled` / `rpl_semi_sync_replica_enabled` ON), make it a
    /// semi-sync source exactly when it is the writer: a replica that is a source too would
    /// hold each applied transaction for an acknowledgement no one sends, until the timeout.
    /// Gives whether semi-sync is set up. Where dbshift cannot change it (no SUPER, a MySQL
    /// server without both plugins), it is left alone: `false`.
    pub async fn semi_sync_follow_role(&mut self, writer: bool) -> Result<bool> {
        let plugins = self.semi_sync_plugins().await?;
        let (Some(source), Some(replica)) = (plugins.source, plugins.replica) else {
            return Ok(false);
        };
        let read = self.dialect.semi_sync_replica_enabled_for(replica);
        let Ok(set) = self.dialect.set_semi_sync_source_for(source, writer) else {
            return Ok(false);
        };
        let configured = matches!(
            self.query_scalar(&read.sql).await?,
            Some(v) if v.eq_ignore_ascii_case("ON") || v == "1"
        );
        if configured {
            tracing::info!(endpoint = %self.endpoint, source = writer, "semi-sync source follows the role");
            self.exec(&set).await?;
            tracing::info!(endpoint = %self.endpoint, source = writer, "semi-sync source set");
        }
        Ok(configured)
    }

    /// Whether this server is a semi-sync source (`rpl_semi_sync_master_enabled` or
    /// `rpl_semi_sync_source_enabled`); `false` without a source plugin.
    pub async fn semi_sync_source_enabled(&mut self) -> Result<bool> {
        let Some(naming) = self.semi_sync_plugins().await?.source else {
            return Ok(false);
        };
        let stmt = self.dialect.semi_sync_source_enabled_for(naming);
        Ok(matches!(
            self.query_scalar(&stmt.sql).await?.as_deref(),
            Some("1") | Some("ON") | Some("on")
        ))
    }

    /// Whether the source side of semi-sync is active right now: it falls back to
    /// asynchronous silently after its timeout (`Rpl_semi_sync_master_status` or
    /// `Rpl_semi_sync_source_status`).
    pub async fn semi_sync_source_active(&mut self) -> Result<bool> {
        let Some(naming) = self.semi_sync_plugins().await?.source else {
            return Err(Error::State {
                endpoint: self.endpoint.clone(),
                message: "no semi-sync source plugin is installed".into(),
            });
        };
        let stmt = self.dialect.semi_sync_source_status_for(naming);
        let rows = self.query_rows(&stmt.sql).await?;
        let value = rows
            .first()
            .and_then(|r| r.get(1))
            .and_then(|c| c.1.clone())
            .ok_or_else(|| Error::State {
                endpoint: self.endpoint.clone(),
                message: format!(
                    "Rpl_semi_sync_{}_status is not reported (semi-sync not loaded?)",
                    naming.source_word()
                ),
            })?;
        Ok(value.eq_ignore_ascii_case("ON"))
    }
}
