//! The old writer demoted to a replica of the new one, outside the write gap.

use super::*;

impl Engine<'_> {
    pub(super) async fn demote_old(&mut self) -> StepResult<serde_json::Value> {
        if let Some(lease) = self.lease.take() {
            release_lease(lease).await;
        }
        let new_ep = self.endpoint(&self.p.to).await?;
        let new_id = self.server_id_of(&self.p.to).await?;
        let mut old = match self.connect(&self.p.from).await {
            Ok(s) => s,
            Err(e) => {
                self.warnings.push(format!(
                    "{} is unreachable ({e}); it stays fenced and is not yet a replica of {}: \
                     when it is back, `dbshift resume {}` makes it one",
                    self.p.from, self.p.to, self.run
                ));
                return Ok(serde_json::json!({ "demoted": false }));
            }
        };
        // Containment first: every transaction of the old writer is on the new one, or the
        // old writer took writes the new one never had (a fence undone by hand, another run):
        // demoting it would bury them.
        let old_history = db(old.history().await)?;
        let new_history = self.history_of(&self.p.to).await?;
        let missing = old_history.missing_from(old.server_id(), &new_history);
        if !missing.is_empty() {
            old.close().await;
            return Err(StepError::unsafe_(format!(
                "{} has transactions {} lacks: {missing}; it was left as it is (not made a \
                 replica, which would hide them). Compare them with the new writer's data, \
                 apply what is missing there or discard them by hand, then `dbshift rejoin {}`",
                self.p.from, self.p.to, self.p.from
            )));
        }
        db(old.semi_sync_follow_role(false).await)?;
        let st = db(old.replication_status().await)?;
        let already = Self::replicates_from(&st, new_id, &new_ep);
        if !already {
            // Its own history is in the new writer already: replication starts after it
            // (MASTER_DEMOTE_TO_SLAVE does exactly this; the RDS procedures take the position).
            let start = db(old.start_after_own_history().await)?;
            let spec = self.source_spec_for(&old, &new_ep, start);
            db(old.point_replica_at(&spec).await)?;
        } else if !st.healthy() {
            db(old.start_replication().await)?;
        }
        // Its events must not run as a replica; the change must not reach its binlog, where
        // it would be an errant transaction.
        let events = db(old.events_with_status("ENABLED").await)?;
        let mut disabled = Vec::new();
        if !events.is_empty() && !old.can_skip_binlog() {
            // Without sql_log_bin=0 (SUPER), ALTER EVENT would plant an errant GTID here.
            self.warnings.push(format!(
                "{} keeps {} enabled event(s) as a replica; disable them in its parameter group \
                 (event_scheduler) or on the next promotion",
                self.p.from,
                events.len()
            ));
        } else if !events.is_empty() {
            disabled = db(old.disable_events_as_replica().await)?;
        }
        // Leftover client sessions: ended, so that pools reconnect and follow the name.
        let ended = db(old.end_client_sessions().await)?;
        old.close().await;
        Ok(
            serde_json::json!({ "demoted": true, "already": already, "events_disabled": disabled, "sessions_ended": ended }),
        )
    }
}
