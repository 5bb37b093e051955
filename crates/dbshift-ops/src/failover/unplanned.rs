//! The unplanned failover's run: each step journaled before and after, in order.

use super::*;

impl Unplanned<'_> {
    /// The endpoint of `id` as resolved at the start of the run (or after its redirect).
    pub(super) async fn endpoint(&self, id: &str) -> StepResult<Endpoint> {
        Ok(self.endpoints.get(self.provider, id).await?)
    }

    /// Resolve the endpoints of the old writer and every replica of the cluster.
    pub(super) async fn resolve_endpoints(&mut self, first: &Assessment) {
        let mut ids = vec![self.old.clone(), self.new.clone()];
        ids.extend(first.replicas.iter().map(|c| c.id.clone()));
        self.endpoints = Endpoints::resolve(self.provider, &ids).await;
    }

    pub(super) async fn connect(&self, id: &str) -> StepResult<Server> {
        let ep = self.endpoint(id).await?;
        connect_within(&self.creds, &ep, Duration::from_secs(2))
            .await
            .map_err(|e| e.context(id))
    }

    pub(super) fn source_spec(&self, ep: &Endpoint) -> SourceSpec {
        crate::replica_source(&self.creds, ep, SourceStart::Gtid)
    }

    /// Journal a step as begun, before it runs.
    pub(super) async fn begin(&mut self, name: &str) -> Result<Begun, FailoverError> {
        // The cluster's lock, taken by `run` for the whole failover, still held, or the
        // failover stops before this step changes anything.
        if let Some(lock) = self.journal.locks().held(&self.req.cluster) {
            lock.check()?;
        }
        Ok(self.steps.begin(name).await?)
    }

    /// Journal a step's result; its error ends the failover as "needs a human".
    pub(super) async fn end<T: Serialize>(
        &mut self,
        begun: Begun,
        r: StepResult<T>,
    ) -> Result<StepResult<T>, FailoverError> {
        match r {
            Ok(v) => {
                let detail = serde_json::to_value(&v).unwrap_or_default();
                self.steps.end(begun, detail).await?;
                Ok(Ok(v))
            }
            Err(e) => {
                let name = begun.step().to_string();
                self.steps.failed(begun, &e).await?;
                Ok(Err(e.context(name)))
            }
        }
    }

    pub(super) async fn drive(
        &mut self,
        first: Assessment,
        detection: Duration,
    ) -> Result<StepResult<FailoverReport>, FailoverError> {
        let proxies = self.provider.proxies_of(&self.req.cluster).await?;
        match ProxySet::of(&proxies, Duration::from_secs(5)) {
            Ok(set) => self.proxy = set,
            Err(e) => self.warnings.push(e.to_string()),
        }
        self.resolve_endpoints(&first).await;
        let t = self.begin("detect").await?;
        let detected = serde_json::to_value(&first).unwrap_or_default();
        if let Err(e) = self.end(t, Ok::<_, StepError>(detected)).await? {
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
        if let Err(e) = self.end(t, fenced).await? {
            return Ok(Err(e.map_message(|e| {
                format!(
                    "{e}. Nothing was promoted: {old} may still accept writes, so no replica was \
                     made writable. Make sure {old} is down, then run `dbshift failover {}` again",
                    self.req.cluster
                )
            })));
        }
        self.steps.tell(Event::Fenced {
            writer: old.clone(),
        });
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
            StepError::refused(format!(
                "{r}. {old} is stopped and no replica was promoted: clients cannot write. Fix \
                 the cause, then `dbshift failover {}`",
                self.req.cluster
            ))
        });
        if let Ok(id) = &choice {
            self.new = id.clone();
        }
        let detail =
            choice.map(|id| serde_json::json!({ "new_writer": id, "candidates": candidates }));
        if let Err(e) = self.end(t, detail).await? {
            return Ok(Err(e));
        }
        let t = self.begin("apply_relay_log").await?;
        let applied = self.apply_relay_log().await;
        let promoted_at = match self.end(t, applied).await? {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(e.map_message(|e| {
                    format!(
                        "{e}. {old} is stopped and {} was not promoted: clients cannot write",
                        self.new
                    )
                })))
            }
        };
        let t = self.begin("redirect").await?;
        let redirected = self.redirect().await;
        if let Err(e) = self.end(t, redirected).await? {
            return Ok(Err(e));
        }
        // The redirect may have moved endpoints (a provider that renames).
        let first_after = Assessment {
            replicas: candidates.clone(),
            ..first
        };
        self.resolve_endpoints(&first_after).await;
        let t = self.begin("promote").await?;
        let promoted = self.promote().await;
        if let Err(e) = self.end(t, promoted).await? {
            return Ok(Err(e));
        }
        phases.promotion_ms = ms(promotion_started.elapsed());
        phases.write_gap_ms = ms(fence_started.elapsed());
        self.steps.tell(Event::Promoted {
            writer: self.new.clone(),
        });

        let repoint_started = Instant::now();
        let others: Vec<String> = candidates
            .iter()
            .filter(|c| c.id != self.new)
            .map(|c| c.id.clone())
            .collect();
        let t = self.begin("repoint").await?;
        let repointed = self.repoint(&others).await;
        let repointed = match self.end(t, repointed).await? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        phases.repointing_ms = ms(repoint_started.elapsed());
        let t = self.begin("verify").await?;
        let verified = self.verify(&repointed).await;
        if let Err(e) = self.end(t, verified).await? {
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
            step_ms: self.steps.step_ms().to_vec(),
            warnings: self.warnings.clone(),
            resumed: self.resumed,
        }))
    }
}
