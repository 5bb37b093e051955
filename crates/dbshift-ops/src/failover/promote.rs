//! The dead writer fenced by the provider, the chosen replica's relay log applied, the name
//! and the proxy redirected, the replica promoted.

use super::*;

impl Unplanned<'_> {
    /// Clients held at the proxy, then the old writer stopped by the provider. Nothing is
    /// promoted unless the provider confirms the stop.
    pub(super) async fn fence(&mut self) -> StepResult<serde_json::Value> {
        let paused = crate::proxy_admin::pause_if_any(
            self.proxy.as_ref(),
            Duration::from_millis(PROXY_DRAIN_MS),
            self.steps.observer(),
        )
        .await?;
        tracing::info!(instance = %self.old, "stopping the failed writer");
        self.provider.stop_instance(&self.old).await.map_err(|e| {
            StepError::from(e).context(format!("the provider could not stop {}", self.old))
        })?;
        tracing::info!(instance = %self.old, "failed writer stopped");
        Ok(serde_json::json!({ "stopped": self.old, "proxy_pause": paused }))
    }

    /// The chosen replica applies everything it received; its replication then stops.
    pub(super) async fn apply_relay_log(&mut self) -> StepResult<ReplicationPosition> {
        let mut s = self.connect(&self.new).await?;
        let st = db(s.replication_status().await)?;
        let applied = db(s.applied_position().await)?;
        if !st.configured && self.resumed {
            // An interrupted run promoted it already (replication reset).
            s.close().await;
            return Ok(applied);
        }
        let received = s.received_position(&st, &applied);
        db(s.wait_until_contains(&received, self.req.timeout).await).map_err(|e| {
            e.map_message(|e| {
                format!(
                    "{} did not apply its relay log up to {received}: {e}",
                    self.new
                )
            })
        })?;
        db(s.stop_replication().await)?;
        let applied = db(s.applied_position().await)?;
        s.close().await;
        Ok(applied)
    }

    pub(super) async fn redirect(&mut self) -> StepResult<serde_json::Value> {
        self.provider
            .set_writer(&self.req.cluster, &self.new)
            .await?;
        let mut switched = serde_json::Value::Null;
        if let Some(proxy) = &self.proxy {
            let ep = self.endpoint(&self.new).await?;
            switched = proxy.switch(&ep.host, ep.port).await.map_err(|e| {
                StepError::from(e).context(format!("switching the proxy to {}", self.new))
            })?;
        }
        Ok(
            serde_json::json!({ "cluster": self.req.cluster, "writer": self.new, "proxy_switch": switched }),
        )
    }

    /// Replication forgotten, events enabled, `read_only=OFF`, as the switchover core does.
    pub(super) async fn promote(&mut self) -> StepResult<serde_json::Value> {
        let mut s = self.connect(&self.new).await?;
        db(s.reset_replication().await)?;
        let enabled = db(s.enable_replicated_events().await)?;
        if !enabled.is_empty() && !db(s.event_scheduler_on().await)? {
            self.warnings.push(format!(
                "{} has enabled events and its event scheduler is off: turn it on if {} ran them",
                self.new, self.old
            ));
        }
        let semi_sync = db(s.semi_sync_follow_role(true).await)?;
        if !s.can_set_read_only() {
            crate::platform::set_read_only(self.provider, &mut s, &self.new, false).await?;
        } else {
            db(s.set_writable().await)?;
        }
        s.close().await;
        crate::proxy_admin::resume_if_any(self.proxy.as_ref(), self.steps.observer()).await?;
        Ok(serde_json::json!({ "events_enabled": enabled, "semi_sync_source": semi_sync }))
    }
}
