//! The unplanned failover's run: each step journaled before and after, in order.

use super::*;

impl Unplanned<'_> {
    pub(super) async fn endpoint(&self, id: &str) -> Step<Endpoint> {
        self.provider
            .describe_instance(id)
            .await
            .map(|i| i.endpoint)
            .map_err(|e| e.to_string())
    }

    pub(super) async fn connect(&self, id: &str) -> Step<Server> {
        let ep = self.endpoint(id).await?;
        connect_within(&self.creds, &ep, Duration::from_secs(2))
            .await
            .map_err(|e| format!("{id}: {e}"))
    }

    pub(super) fn source_spec(&self, ep: &Endpoint) -> SourceSpec {
        crate::replica_source(&self.creds, ep, SourceStart::Gtid)
    }

    /// Journal a step as begun, before it runs.
    pub(super) async fn begin(&mut self, name: &str) -> Result<Instant, FailoverError> {
        // The cluster's lock, taken by `run` for the whole failover, still held, or the
        // failover stops before this step changes anything.
        if let Some(lock) = self.journal.locks().held(&self.req.cluster) {
            lock.check()?;
        }
        self.observer.event(&format!("{name}: start"));
        self.journal.begin(&self.run, name).await?;
        crate::crash_if(&format!("failover:{name}:begin"));
        Ok(Instant::now())
    }

    /// Journal a step's result; its error ends the failover as "needs a human".
    pub(super) async fn end<T: Serialize>(
        &mut self,
        name: &str,
        started: Instant,
        r: Step<T>,
    ) -> Result<Step<T>, FailoverError> {
        match r {
            Ok(v) => {
                crate::crash_if(&format!("failover:{name}:run"));
                let detail = serde_json::to_value(&v).unwrap_or_default();
                self.journal.end(&self.run, name, detail).await?;
                crate::crash_if(&format!("failover:{name}:end"));
                self.step_ms.push((name.to_string(), ms(started.elapsed())));
                self.observer.event(&format!("{name}: done"));
                Ok(Ok(v))
            }
            Err(e) => {
                self.journal.failed(&self.run, name, &e).await?;
                Ok(Err(format!("{name}: {e}")))
            }
        }
    }

    pub(super) async fn drive(
        &mut self,
        first: Assessment,
        detection: Duration,
    ) -> Result<Step<FailoverReport>, FailoverError> {
        let proxies = self.provider.proxies_of(&self.req.cluster).await?;
        match ProxySet::of(&proxies, Duration::from_secs(5)) {
            Ok(set) => self.proxy = set,
            Err(e) => self.warnings.push(e),
        }
        let t = self.begin("detect").await?;
        let detected = serde_json::to_value(&first).unwrap_or_default();
        if let Err(e) = self.end("detect", t, Ok::<_, String>(detected)).await? {
            return Ok(Err(e));
        }
        let mut phases = Phases {
            detection_ms: ms(detection),
            ..Default::default()
        };

        let fence_started = Instant::now();
        let old = self.old.clone();
        let t = self.begin("fence").await?;
        let fenced = self.fence().await;
        if let Err(e) = self.end("fence", t, fenced).await? {
            return Ok(Err(format!(
                "{e}. Nothing was promoted: {old} may still accept writes, so no replica was made \
                 writable. Make sure {old} is down, then run `dbshift failover {}` again",
                self.req.cluster
            )));
        }
        phases.fencing_ms = ms(fence_started.elapsed());

        let promotion_started = Instant::now();
        // Positions are final now that the writer is stopped: choose again on them.
        let t = self.begin("choose").await?;
        let looked = assess_as(
            self.provider,
            &self.req.cluster,
            self.req.writer_timeout,
            Some(&old),
        )
        .await?;
        let rechosen = if self.keep_new {
            Ok(self.new.clone())
        } else {
            choose(&looked.writer, &looked.replicas, self.req.to.as_deref())
        };
        let candidates = looked.replicas.clone();
        let choice = rechosen.map_err(|r| {
            format!(
                "{r}. {old} is stopped and no replica was promoted: clients cannot write. Fix \
                 the cause, then `dbshift failover {}`",
                self.req.cluster
            )
        });
        if let Ok(id) = &choice {
            self.new = id.clone();
        }
        let detail =
            choice.map(|id| serde_json::json!({ "new_writer": id, "candidates": candidates }));
        if let Err(e) = self.end("choose", t, detail).await? {
            return Ok(Err(e));
        }
        let t = self.begin("apply_relay_log").await?;
        let applied = self.apply_relay_log().await;
        let promoted_at = match self.end("apply_relay_log", t, applied).await? {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(format!(
                    "{e}. {old} is stopped and {} was not promoted: clients cannot write",
                    self.new
                )))
            }
        };
        let t = self.begin("redirect").await?;
        let redirected = self.redirect().await;
        if let Err(e) = self.end("redirect", t, redirected).await? {
            return Ok(Err(e));
        }
        let t = self.begin("promote").await?;
        let promoted = self.promote().await;
        if let Err(e) = self.end("promote", t, promoted).await? {
            return Ok(Err(e));
        }
        phases.promotion_ms = ms(promotion_started.elapsed());
        phases.write_gap_ms = ms(fence_started.elapsed());
        self.observer.event("promoted: new writer accepts writes");

        let repoint_started = Instant::now();
        let others: Vec<String> = candidates
            .iter()
            .filter(|c| c.id != self.new)
            .map(|c| c.id.clone())
            .collect();
        let t = self.begin("repoint").await?;
        let repointed = self.repoint(&others).await;
        let repointed = match self.end("repoint", t, repointed).await? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        phases.repointing_ms = ms(repoint_started.elapsed());
        let t = self.begin("verify").await?;
        let verified = self.verify(&repointed).await;
        if let Err(e) = self.end("verify", t, verified).await? {
            return Ok(Err(e));
        }
        Ok(Ok(FailoverReport {
            run_id: self.run.clone(),
            cluster: self.req.cluster.clone(),
            old_writer: self.old.clone(),
            new_writer: self.new.clone(),
            phases,
            promoted_at: promoted_at.to_string(),
            repointed,
            candidates,
            step_ms: self.step_ms.clone(),
            warnings: self.warnings.clone(),
            resumed: self.resumed,
        }))
    }
}
