//! The siblings re-pointed to the new writer, each from what it applied.

use super::*;

impl Engine<'_> {
    pub(super) async fn repoint_siblings(&mut self) -> StepResult<serde_json::Value> {
        let new_ep = self.endpoint(&self.p.to).await?;
        let new_id = self.server_id_of(&self.p.to).await?;
        let mut moved = Vec::new();
        for sib in self.p.siblings.clone() {
            let mut s = match self.connect(&sib).await {
                Ok(s) => s,
                Err(e) => {
                    self.warnings.push(format!(
                        "{sib} is unreachable ({e}); re-point it to {} when it is back \
                         (`dbshift resume {}`)",
                        self.p.to, self.run
                    ));
                    continue;
                }
            };
            // One sibling that cannot be moved (its SQL thread waits on a lock, so STOP SLAVE
            // runs out of its bound) does not keep the others on the old writer.
            let repoint = async {
                let st = s.replication_status().await?;
                if Self::replicates_from(&st, new_id, &new_ep) {
                    return Ok(false);
                }
                // From what it applied (the RDS procedures take that explicitly).
                let start = s.continue_where_applied().await?;
                let spec = self.source_spec_for(&s, &new_ep, start);
                s.point_replica_at(&spec).await?;
                Ok::<_, dbshift_db::Error>(true)
            };
            match repoint.await {
                Ok(true) => moved.push(sib.clone()),
                Ok(false) => {}
                Err(e) => self.warnings.push(format!(
                    "{sib} was not re-pointed to {}: {e}; once it is free, `dbshift resume {}` \
                     re-points it",
                    self.p.to, self.run
                )),
            }
            s.close().await;
        }
        Ok(serde_json::json!({ "repointed": moved }))
    }
}
