//! The wait: the new writer applies exactly the old writer's final position, and holds every
//! transaction of it (and none it never had).

use super::*;

impl Engine<'_> {
    pub(super) async fn wait_caught_up(&mut self) -> StepResult<serde_json::Value> {
        // Read on the lease connection when there is one: it is the fenced session.
        let mut fresh = None;
        let old = match self.lease.as_mut() {
            Some(s) => s,
            None => fresh.insert(self.connect(&self.p.from).await?),
        };
        let old_id = old.server_id();
        let what = format!("reading {}'s final GTID position", self.p.from);
        let read = async {
            let pos = bounded(&what, old.executed_position()).await?;
            let history = bounded(&what, old.history()).await?;
            Ok::<_, StepError>((pos, history))
        }
        .await;
        let (final_pos, old_history) = match read {
            Ok(r) => r,
            Err(e) => {
                // A connection that did not answer is of no further use; dropping it ends
                // its session (and the lease) once the server sees the close.
                self.lease = None;
                return Err(e);
            }
        };
        if let Some(s) = fresh {
            let _ = tokio::time::timeout(OLD_WRITER_STATEMENT_TIMEOUT, s.close()).await;
        }
        let mut new = self.connect(&self.p.to).await?;
        let deadline = Duration::from_millis(self.p.timeout_ms);
        db(new.wait_until_contains(&final_pos, deadline).await).map_err(|e| {
            e.map_message(|e| {
                format!(
                    "{} did not apply {}'s last transaction {final_pos} in time: {e}",
                    self.p.to, self.p.from
                )
            })
        })?;
        let new_history = db(new.history().await)?;
        let new_pos = db(new.current_position().await)?;
        let new_id = new.server_id();
        new.close().await;
        // Every transaction of the old writer on the new one, by entry or, where the new one
        // was restored from a backup and knows only each domain's last GTID, by position.
        let missing = old_history.missing_from(old_id, &new_history);
        if !missing.is_empty() {
            return Err(StepError::refused(format!(
                "{} lacks transactions of {}: {missing} ({}'s binlog state {old_history}; {}'s \
                 {new_history}, position {new_pos})",
                self.p.to, self.p.from, self.p.from, self.p.to
            )));
        }
        // Caught up means equal: a new writer ahead of the fenced old one has transactions
        // of its own, which the old one would never have.
        let ahead = new_history.missing_from(new_id, &old_history);
        if !ahead.is_empty() {
            return Err(StepError::refused(format!(
                "{} has transactions {} never had: {ahead}; inspect them before switching",
                self.p.to, self.p.from
            )));
        }
        self.final_position = Some(final_pos.to_string());
        Ok(serde_json::json!({
            "final_position": final_pos.to_string(),
            "old_binlog_state": old_history.to_string(),
            "new_binlog_state": new_history.to_string(),
        }))
    }
}
