//! The other replicas re-pointed to the new writer, and the final verification.

use super::*;

impl Unplanned<'_> {
    pub(super) async fn repoint(&mut self, others: &[String]) -> StepResult<Vec<String>> {
        let ep = self.endpoint(&self.new).await?;
        let mut moved = Vec::new();
        for id in others {
            let mut s = match self.connect(id).await {
                Ok(s) => s,
                Err(e) => {
                    self.warnings.push(format!(
                        "{id} is unreachable ({e}); `dbshift rejoin {id}` makes it a replica of {} when it is back",
                        self.new
                    ));
                    continue;
                }
            };
            let spec = self.source_spec(&ep);
            if let Err(e) = s.point_replica_at(&spec).await {
                self.warnings
                    .push(format!("re-pointing {id} to {}: {e}", self.new));
            } else {
                moved.push(id.clone());
            }
            s.close().await;
        }
        Ok(moved)
    }

    /// One writable server (the new one); the re-pointed replicas caught up with it.
    pub(super) async fn verify(&mut self, replicas: &[String]) -> StepResult<serde_json::Value> {
        let mut new = self.connect(&self.new).await?;
        if db(new.read_only().await)? {
            return Err(StepError::unsafe_(format!(
                "{} is still read-only after promotion",
                self.new
            )));
        }
        let target = db(new.executed_position().await)?;
        new.close().await;
        for id in replicas {
            let Ok(mut s) = self.connect(id).await else {
                continue;
            };
            if !db(s.read_only().await)? {
                return Err(StepError::unsafe_(format!(
                    "{id} is writable besides {}: two writers",
                    self.new
                )));
            }
            if let Err(e) = s
                .wait_until_contains(&target, Duration::from_secs(10))
                .await
            {
                self.warnings
                    .push(format!("{id} has not caught up with {} ({e})", self.new));
            }
            s.close().await;
        }
        Ok(serde_json::json!({ "caught_up_to": target.to_string(), "replicas": replicas }))
    }
}
