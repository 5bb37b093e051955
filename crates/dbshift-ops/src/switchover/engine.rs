//! The run itself: looking at the cluster, journaling each step, and driving the steps in
//! order (before the point of no return any failure rolls back; after it, only forward).

use super::*;

impl<'a> Engine<'a> {
    pub(super) fn new(
        provider: &'a dyn Provider,
        journal: &'a Journal,
        run: String,
        p: SwitchoverParams,
        observer: &'a dyn Observer,
    ) -> Result<Self, SwitchoverError> {
        let creds = provider.credentials_for(&p.cluster)?;
        let steps = StepRunner::new(journal, &run, Workflow::Switchover, observer);
        Ok(Engine {
            provider,
            journal,
            run,
            p,
            steps,
            creds,
            endpoints: Endpoints::default(),
            lease: None,
            proxy: None,
            fence: None,
            fence_started: None,
            write_gap: None,
            final_position: None,
            warnings: Vec::new(),
            locks: Vec::new(),
        })
    }

    /// Stop because the cluster changed under the run: nothing more is changed on the servers
    /// (the lease on the old writer is released, held proxy clients go on).
    pub(super) async fn stop_cluster_changed(
        &mut self,
        moment: Moment,
        what: String,
        changed: bool,
    ) -> Result<Outcome, SwitchoverError> {
        if let Some(lease) = self.lease.take() {
            release_lease(lease).await;
        }
        if let Some(proxy) = &self.proxy {
            if let Err(e) = proxy.resume().await {
                tracing::warn!("resuming the proxy: {e}");
            }
        }
        let when = match moment {
            Moment::BeforeFence => "before fencing",
            Moment::BeforeRollback => "before putting the old writer back",
            Moment::BeforePointOfNoReturn => "before the point of no return",
            Moment::BeforePromote => "before promoting",
            Moment::Resume => "on resume",
        };
        let reason = if changed {
            format!(
                "the cluster changed under this run ({when}: {what}); another run, a failover \
                 or a human acted on it. This run changed nothing more and left every server \
                 as it is now; check `dbshift inventory` before acting"
            )
        } else {
            format!(
                "the cluster is not what this run expects ({when}: {what}); nothing was \
                 changed. Look at `dbshift inventory`; start a new run if a switch is still \
                 wanted"
            )
        };
        tracing::warn!(run = %self.run, "{reason}");
        let status = if changed {
            RunStatus::NeedsHuman
        } else {
            RunStatus::Failed
        };
        self.finish(status, &reason).await?;
        Ok(Outcome::ClusterChanged { reason, changed })
    }

    /// Look at the cluster at `moment` (`changed`: this run has changed something already);
    /// `Some(outcome)` ends the run there: the cluster is not what the run believes, or it
    /// could not be looked at.
    pub(super) async fn look(
        &mut self,
        moment: Moment,
        renaming: bool,
        changed: bool,
    ) -> Result<Option<Outcome>, SwitchoverError> {
        let e = match cluster_changed(
            self.provider,
            &self.creds,
            &self.endpoints,
            &self.p,
            moment,
            renaming,
        )
        .await
        {
            Ok(None) => return Ok(None),
            Ok(Some(what)) => {
                return self
                    .stop_cluster_changed(moment, what, changed)
                    .await
                    .map(Some)
            }
            Err(e) => e.to_string(),
        };
        // Fenced by this run and nothing promoted: put the old writer back (the rollback
        // looks at the cluster once more before it does).
        if moment == Moment::BeforeFence && changed {
            return self.roll_back(e).await.map(Some);
        }
        // A fresh run that has changed nothing ends; a resumed one stays resumable.
        if moment == Moment::BeforeFence {
            let reason = format!("nothing was changed: {e}");
            self.finish(RunStatus::Failed, &reason).await?;
            return Ok(Some(Outcome::RolledBack { reason }));
        }
        let reason = format!(
            "cannot look at {} ({e}); nothing {} changed: `dbshift resume {}` once the control \
             plane answers",
            self.p.cluster,
            if changed { "more was" } else { "was" },
            self.run
        );
        self.finish(RunStatus::NeedsHuman, &reason).await?;
        Ok(Some(Outcome::NeedsHuman { reason }))
    }

    /// Every lock of the run still held, or the run stops before its next change.
    pub(super) fn check_locks(&self) -> Result<(), SwitchoverError> {
        for l in &self.locks {
            l.check()?;
        }
        Ok(())
    }

    /// The endpoint of `id` as resolved at the start of the run (or after its redirect): no
    /// control-plane call inside the write pause.
    pub(super) async fn endpoint(&self, id: &str) -> StepResult<Endpoint> {
        Ok(self.endpoints.get(self.provider, id).await?)
    }

    /// Resolve the endpoints of every server of the run: at its start, and again after the
    /// redirect (a rename moves an instance's endpoint).
    pub(super) async fn resolve_endpoints(&mut self) {
        let mut ids = vec![self.p.from.clone(), self.p.to.clone()];
        ids.extend(self.p.siblings.iter().cloned());
        ids.extend(self.p.followers.iter().cloned());
        self.endpoints = Endpoints::resolve(self.provider, &ids).await;
    }

    /// An admin connection, retried briefly: a restart or a cut connection may be in progress.
    pub(super) async fn connect(&self, id: &str) -> StepResult<Server> {
        let ep = self.endpoint(id).await?;
        let opts = crate::connect_options(&self.creds, &self.creds.admin, &ep)
            .connect_timeout(Duration::from_secs(2))
            .statement_timeout(Duration::from_millis(self.p.statement_timeout_ms));
        let mut attempt = 0;
        loop {
            match Server::connect(&opts).await {
                Ok(s) => return Ok(s),
                Err(e) if attempt >= 2 => return Err(StepError::from(e).context(id)),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }

    /// Whether a replica's status names `source` (server_id, endpoint) as its source: by
    /// server_id once the IO thread has seen it, else by port.
    pub(super) fn replicates_from(
        st: &dbshift_db::ReplicationStatus,
        source_id: u32,
        source: &Endpoint,
    ) -> bool {
        st.configured
            && match st.source_server_id {
                Some(id) => id == source_id,
                None => st.source_port == Some(source.port),
            }
    }

    /// The history of `id` (MariaDB: `gtid_binlog_state` and `gtid_current_pos`), on a
    /// connection of its own.
    pub(super) async fn history_of(&self, id: &str) -> StepResult<History> {
        let mut s = self.connect(id).await?;
        let read = s.history().await;
        s.close().await;
        db(read)
    }

    pub(super) async fn server_id_of(&self, id: &str) -> StepResult<u32> {
        let s = self.connect(id).await?;
        let server_id = s.server_id();
        s.close().await;
        Ok(server_id)
    }

    /// [`Self::source_spec`] for the replica `server`: the RDS procedures cannot take a CA file
    /// nor verify the certificate (they turn the check off), so there TLS stays on unverified.
    pub(super) fn source_spec_for(
        &self,
        server: &Server,
        ep: &Endpoint,
        start: SourceStart,
    ) -> SourceSpec {
        let mut spec = self.source_spec(ep, start);
        if !server.can_verify_source_certificate() {
            spec.ssl = Some(SslSpec {
                ca_path: None,
                verify_server_cert: false,
            });
        }
        spec
    }

    pub(super) fn source_spec(&self, ep: &Endpoint, start: SourceStart) -> SourceSpec {
        crate::replica_source(&self.creds, ep, start)
    }

    /// Journal `step` as begun, once the run's locks are checked still held.
    pub(super) async fn begin(&mut self, step: &str) -> Result<Begun, SwitchoverError> {
        self.check_locks()?;
        Ok(self.steps.begin(step).await?)
    }

    pub(super) async fn end(
        &mut self,
        begun: Begun,
        detail: serde_json::Value,
    ) -> Result<(), SwitchoverError> {
        Ok(self.steps.end(begun, detail).await?)
    }

    pub(super) async fn failed(
        &mut self,
        begun: Begun,
        error: &impl std::fmt::Display,
    ) -> Result<(), SwitchoverError> {
        Ok(self.steps.failed(begun, error).await?)
    }

    pub(super) async fn finish(
        &mut self,
        status: RunStatus,
        message: &str,
    ) -> Result<(), SwitchoverError> {
        self.journal
            .set_status(&self.run, status, Some(message))
            .await?;
        Ok(())
    }

    pub(super) async fn drive(
        &mut self,
        record: Option<RunRecord>,
    ) -> Result<Outcome, SwitchoverError> {
        let proxies = self.provider.proxies_of(&self.p.cluster).await?;
        // A pause returns once every session is held, within its bound.
        let timeout = Duration::from_millis(PROXY_DRAIN_MS) + Duration::from_secs(10);
        self.proxy = ProxySet::of(&proxies, timeout)
            .map_err(|e| SwitchoverError::BadInput(e.to_string()))?;
        self.resolve_endpoints().await;
        // Steps journaled as ended are not run again on resume, but for those that re-check.
        let skip = |s: &str| skip_on_resume(record.as_ref(), s, RECHECKED_ON_RESUME);
        let pnr_begun = record
            .as_ref()
            .is_some_and(|r| r.step_begun("point_of_no_return"));
        if let Some(fence) = record
            .as_ref()
            .and_then(|r| r.step_detail("fence"))
            .and_then(|d| serde_json::from_value::<Fence>(d.clone()).ok())
        {
            self.fence = Some(fence);
        }

        // This run's own fence may be on the old writer (a run cut short after it).
        let fence_begun = record.as_ref().is_some_and(|r| r.step_begun("fence"));
        // Cut short inside its own redirect (AWS: blue renamed away, green not yet renamed to
        // the name): the name resolving to nothing is this run's doing.
        let renaming = record
            .as_ref()
            .is_some_and(|r| r.step_begun("redirect") || r.step_begun("redirect_plan"));
        if record.is_some() {
            // A resume acts only on the cluster it left: its writer is still this run's old
            // or new one, and nobody else writes.
            if let Some(stop) = self.look(Moment::Resume, renaming, false).await? {
                return Ok(stop);
            }
        }
        if !pnr_begun {
            // The guards run on every start and every resume before the point of no return:
            // what they saw before a crash may no longer be true.
            let started = self.begin("guards").await?;
            match self.guards().await {
                Ok(report) if report.passed() => {
                    let detail = serde_json::to_value(&report).unwrap_or_default();
                    self.end(started, detail).await?;
                }
                Ok(report) if fence_begun => {
                    let why = report.failure_text();
                    self.failed(started, &why).await?;
                    return self
                        .roll_back(format!("on resume the guards failed: {why}"))
                        .await;
                }
                Ok(report) => {
                    let why = report.failure_text();
                    self.failed(started, &why).await?;
                    self.finish(
                        RunStatus::Failed,
                        &format!("guards failed, nothing changed: {why}"),
                    )
                    .await?;
                    return Ok(Outcome::Refused(report));
                }
                Err(e) if fence_begun => {
                    self.failed(started, &e).await?;
                    return self
                        .roll_back(format!("on resume the guards could not run: {e}"))
                        .await;
                }
                Err(e) => {
                    self.failed(started, &e).await?;
                    let reason = format!("nothing was changed: the guards could not run: {e}");
                    self.finish(RunStatus::Failed, &reason).await?;
                    return Ok(Outcome::RolledBack { reason });
                }
            }
            if let Some(stop) = self.look(Moment::BeforeFence, false, fence_begun).await? {
                return Ok(stop);
            }
            match self.before_point_of_no_return().await? {
                Ok(()) => {}
                Err(Stop::RollBack(reason)) => return self.roll_back(reason).await,
                Err(Stop::Changed(what)) => {
                    return self
                        .stop_cluster_changed(Moment::BeforePointOfNoReturn, what, true)
                        .await
                }
            }
        } else {
            // Resumed past the point of no return: the name and the writers as journaled.
            if let Some(stop) = self.look(Moment::BeforePromote, renaming, true).await? {
                return Ok(stop);
            }
        }
        match self.after_point_of_no_return(&skip).await? {
            Ok(()) => {
                let report = SwitchoverReport {
                    run_id: self.run.clone(),
                    cluster: self.p.cluster.clone(),
                    old_writer: self.p.from.clone(),
                    new_writer: self.p.to.clone(),
                    write_gap_ms: self.write_gap.map(ms),
                    final_position: self.final_position.clone(),
                    step_ms: self.steps.step_ms().to_vec(),
                    warnings: self.warnings.clone(),
                };
                if self.warnings.is_empty() {
                    self.finish(RunStatus::Done, "done").await?;
                    Ok(Outcome::Done(report))
                } else {
                    let reason = format!(
                        "the writer moved to {}, but: {}",
                        self.p.to,
                        self.warnings.join("; ")
                    );
                    self.finish(RunStatus::NeedsHuman, &reason).await?;
                    Ok(Outcome::NeedsHuman { reason })
                }
            }
            Err(reason) => {
                let reason = format!(
                    "{reason}. The point of no return was passed: {} must not be made writable \
                     again. Fix the cause, then `dbshift resume {}`",
                    self.p.from, self.run
                );
                self.finish(RunStatus::NeedsHuman, &reason).await?;
                Ok(Outcome::NeedsHuman { reason })
            }
        }
    }

    pub(super) async fn guards(&mut self) -> StepResult<GuardReport> {
        let mut old = self.connect(&self.p.from).await?;
        let mut new = self.connect(&self.p.to).await?;
        let old_port = self.endpoint(&self.p.from).await?.port;
        let limits = self.p.guard_limits();
        let report = db(run_guards(
            &mut old,
            &mut new,
            &self.p.from,
            &self.p.to,
            old_port,
            &limits,
        )
        .await);
        old.close().await;
        new.close().await;
        report
    }

    pub(super) async fn after_point_of_no_return(
        &mut self,
        skip: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<StepResult<()>, SwitchoverError> {
        macro_rules! step {
            ($name:expr, $call:expr) => {{
                if !skip($name) {
                    let started = self.begin($name).await?;
                    match $call {
                        Ok(detail) => self.end(started, detail).await?,
                        Err(e) => {
                            self.failed(started, &e).await?;
                            return Ok(Err(e.context($name)));
                        }
                    }
                }
            }};
        }
        step!("point_of_no_return", self.point_of_no_return().await);
        step!("redirect", self.redirect().await);
        step!("promote", self.promote().await);
        step!("hooks", self.hooks().await);
        step!("demote_old_writer", self.demote_old().await);
        step!("repoint_siblings", self.repoint_siblings().await);
        step!("verify", self.verify().await);
        Ok(Ok(()))
    }
}
