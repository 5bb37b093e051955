//! The final verification: one writable server, every reachable replica caught up with it
//! and never ahead, the name at the new writer.

use super::*;

impl Engine<'_> {
    /// One writable server; every reachable replica healthy and caught up with the new writer.
    pub(super) async fn verify(&mut self) -> StepResult<serde_json::Value> {
        let mut new = self.connect(&self.p.to).await?;
        if db(new.read_only().await)? {
            return Err(StepError::unsafe_(format!(
                "{} is still read-only after promotion",
                self.p.to
            )));
        }
        let target = db(new.executed_position().await)?;
        new.close().await;
        let mut replicas = vec![self.p.from.clone()];
        replicas.extend(self.p.siblings.iter().cloned());
        replicas.extend(self.p.followers.iter().cloned());
        // The history the replicas are checked against: the new writer's, and the old
        // writer's before it (a new writer restored from a backup, a green, lists only what it
        // binlogged since; the blue replicas still hold their own transactions from when they
        // were writers, which the old writer has).
        let history = match self.connect(&self.p.from).await {
            Ok(mut old) => {
                let h = old.history().await.ok();
                old.close().await;
                h
            }
            Err(_) => None,
        };
        let mut checked = Vec::new();
        for id in replicas {
            let Ok(mut s) = self.connect(&id).await else {
                continue;
            };
            if !db(s.read_only().await)? {
                return Err(StepError::unsafe_(format!(
                    "{id} is writable besides {}: two writers",
                    self.p.to
                )));
            }
            if let Err(e) = s
                .wait_until_contains(&target, Duration::from_secs(10))
                .await
            {
                let st = db(s.replication_status().await)?;
                self.warnings.push(format!(
                    "{id} has not caught up with {} ({e}); replication: {:?}",
                    self.p.to,
                    st.last_io_error.or(st.last_sql_error)
                ));
            } else {
                // Caught up means equal, never ahead: the replica first, then the writer, so
                // that the writer's newer transactions cannot make the replica look ahead.
                let mine = db(s.history().await)?;
                let theirs = self.history_of(&self.p.to).await?;
                let theirs = match &history {
                    Some(old) => theirs.merge(old),
                    None => theirs,
                };
                let ahead = mine.missing_from(s.server_id(), &theirs);
                if !ahead.is_empty() {
                    s.close().await;
                    return Err(StepError::unsafe_(format!(
                        "{id} is ahead of the new writer {}: it has {ahead} that {} lacks",
                        self.p.to, self.p.to
                    )));
                }
            }
            s.close().await;
            checked.push(id);
        }
        let clusters = self.provider.list_clusters().await?;
        let named = clusters
            .iter()
            .find(|c| c.name == self.p.cluster)
            .map(|c| c.writer.clone());
        if self.p.redirect == Redirect::Name && named.as_deref() != Some(self.p.to.as_str()) {
            return Err(StepError::unsafe_(format!(
                "the provider resolves {} to {named:?}, not {}",
                self.p.cluster, self.p.to
            )));
        }
        Ok(serde_json::json!({ "caught_up_to": target.to_string(), "replicas_checked": checked }))
    }
}
