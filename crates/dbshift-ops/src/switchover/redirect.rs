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
            return Err(StepError::refused(format!(
                "--redirect proxy, but no dbshift proxy is in front of {}",
                self.p.cluster
            )));
        }
        let mut renamed = Vec::new();
        if self.p.redirect == Redirect::Name {
            renamed = self.renames().await?;
            self.provider
                .set_writer(&self.p.cluster, &self.p.to)
                .await?;
            if !renamed.is_empty() {
                // The renames moved the endpoints: the ones resolved at the start are stale.
                self.resolve_endpoints().await;
            }
        } else {
            self.provider
                .record_writer(&self.p.cluster, &self.p.to)
                .await?;
        }
        let mut switched = serde_json::Value::Null;
        if let Some(proxy) = &self.proxy {
            // Every held session re-attached to the new writer (still read-only: the commands
            // stay held until the promotion's resume).
            let ep = self.endpoint(&self.p.to).await?;
            switched = proxy.switch(&ep.host, ep.port).await.map_err(|e| {
                StepError::from(e).context(format!("switching the proxy to {}", self.p.to))
            })?;
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
        let record = self.journal.run(&self.run).await?;
        let planned = record
            .step_detail("redirect_plan")
            .and_then(|d| serde_json::from_value::<Vec<Rename>>(d.clone()).ok());
        let plan = match planned {
            Some(p) => p,
            None => {
                let p = self
                    .provider
                    .redirect_plan(&self.p.cluster, &self.p.to)
                    .await?;
                // Nothing to rename (the lab; the name already there): nothing to journal.
                if p.is_empty() {
                    return Ok(p);
                }
                self.steps
                    .record(
                        "redirect_plan",
                        serde_json::to_value(&p).unwrap_or_default(),
                    )
                    .await?;
                p
            }
        };
        for (n, r) in plan.iter().enumerate() {
            let step = format!("redirect_rename_{n}");
            if record.step_done(&step) {
                continue;
            }
            let started = Event::RenameStarted {
                from: r.from.clone(),
                instance: r.instance.clone(),
                to: r.to.clone(),
            };
            let begun = self.steps.begin_telling(&step, Some(started)).await?;
            if let Err(e) = self.provider.rename(r).await {
                let e = StepError::from(e).context(format!("renaming {} to {}", r.from, r.to));
                let _ = self.steps.failed(begun, &e).await;
                return Err(e);
            }
            let ended = Event::RenameEnded {
                from: r.from.clone(),
                to: r.to.clone(),
            };
            self.steps
                .end_telling(
                    begun,
                    serde_json::to_value(r).unwrap_or_default(),
                    Some(ended),
                )
                .await?;
        }
        Ok(plan)
    }
}
