//! The point of no return (the new writer forgets its replication) and the redirect of the
//! cluster's name or proxy to the new writer, the provider's renames each journaled.

use super::*;

impl Engine<'_> {
    /// Stop and forget the new writer's replication. Done once it has no source.
    pub(super) async fn point_of_no_return(&mut self) -> StepResult<serde_json::Value> {
        let mut new = self.connect(&self.p.to).await?;
        let st = db(new.replication_status().await)?;
        if st.configured {
            db(new.reset_replication().await)?;
        }
        new.close().await;
        Ok(serde_json::json!({ "was_replicating": st.configured }))
    }

    pub(super) async fn redirect(&mut self) -> StepResult<serde_json::Value> {
        if self.p.redirect == Redirect::Proxy && self.proxy.is_none() {
            return Err(format!(
                "--redirect proxy, but no dbshift proxy is in front of {}",
                self.p.cluster
            ));
        }
        let mut renamed = Vec::new();
        if self.p.redirect == Redirect::Name {
            renamed = self.renames().await?;
            self.provider
                .set_writer(&self.p.cluster, &self.p.to)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            self.provider
                .record_writer(&self.p.cluster, &self.p.to)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut switched = serde_json::Value::Null;
        if let Some(proxy) = &self.proxy {
            // Every held session re-attached to the new writer (still read-only: the commands
            // stay held until the promotion's resume).
            let ep = self.endpoint(&self.p.to).await?;
            switched = proxy
                .switch(&ep.host, ep.port)
                .await
                .map_err(|e| format!("switching the proxy to {}: {e}", self.p.to))?;
        }
        Ok(serde_json::json!({
            "cluster": self.p.cluster,
            "writer": self.p.to,
            "redirect": self.p.redirect,
            "renamed": renamed,
            "proxy_switch": switched,
        }))
    }

    /// The provider's renames (AWS's identifier swap), each journaled as a step of its own
    /// (`redirect_rename_<n>`) under the plan journaled first (`redirect_plan`): a resumed run
    /// applies the same plan from the first rename not journaled as done.
    pub(super) async fn renames(&mut self) -> StepResult<Vec<Rename>> {
        let record = self
            .journal
            .run(&self.run)
            .await
            .map_err(|e| e.to_string())?;
        let planned = record
            .step_detail("redirect_plan")
            .and_then(|d| serde_json::from_value::<Vec<Rename>>(d.clone()).ok());
        let plan = match planned {
            Some(p) => p,
            None => {
                let p = self
                    .provider
                    .redirect_plan(&self.p.cluster, &self.p.to)
                    .await
                    .map_err(|e| e.to_string())?;
                // Nothing to rename (the lab; the name already there): nothing to journal.
                if p.is_empty() {
                    return Ok(p);
                }
                let j = |e: JournalError| e.to_string();
                self.journal
                    .begin(&self.run, "redirect_plan")
                    .await
                    .map_err(j)?;
                self.journal
                    .end(
                        &self.run,
                        "redirect_plan",
                        serde_json::to_value(&p).unwrap_or_default(),
                    )
                    .await
                    .map_err(j)?;
                p
            }
        };
        for (n, r) in plan.iter().enumerate() {
            let step = format!("redirect_rename_{n}");
            if record.step_done(&step) {
                continue;
            }
            self.observer.event(&format!(
                "rename {} ({}) to {}: start",
                r.from, r.instance, r.to
            ));
            self.journal
                .begin(&self.run, &step)
                .await
                .map_err(|e| e.to_string())?;
            crash_point(&step, "begin");
            if let Err(e) = self.provider.rename(r).await {
                let msg = format!("renaming {} to {}: {e}", r.from, r.to);
                let _ = self.journal.failed(&self.run, &step, &msg).await;
                return Err(msg);
            }
            self.journal
                .end(
                    &self.run,
                    &step,
                    serde_json::to_value(r).unwrap_or_default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            crash_point(&step, "end");
            self.observer
                .event(&format!("rename {} to {}: done", r.from, r.to));
        }
        Ok(plan)
    }
}
