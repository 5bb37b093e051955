//! Fencing the old writer (read-only, sessions ended, the commit lease), and putting it back
//! when the run rolls back before the point of no return.

use super::*;

/// `f` bounded by [`OLD_WRITER_STATEMENT_TIMEOUT`]; `what` names it in the error.
pub(super) async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = dbshift_db::Result<T>>,
) -> StepResult<T> {
    match tokio::time::timeout(OLD_WRITER_STATEMENT_TIMEOUT, f).await {
        Ok(r) => db(r),
        Err(_) => Err(StepError::timeout(format!(
            "{what}: no answer within {} s (the network or the server hangs)",
            OLD_WRITER_STATEMENT_TIMEOUT.as_secs()
        ))),
    }
}

/// End the commit lease and close its connection, within a bound: on a hung connection the
/// lease ends with the session when the connection is dropped.
pub(super) async fn release_lease(mut lease: Server) {
    let ended = tokio::time::timeout(OLD_WRITER_STATEMENT_TIMEOUT, async {
        let _ = lease.release_commit_lease().await;
        lease
    })
    .await;
    match ended {
        Ok(lease) => {
            let _ = tokio::time::timeout(OLD_WRITER_STATEMENT_TIMEOUT, lease.close()).await;
        }
        Err(_) => tracing::warn!("the lease's connection did not answer; dropped"),
    }
}

impl Engine<'_> {
    /// Fence and wait; the cluster is looked at during the wait (so that it adds nothing to
    /// the write pause). `Ok(Err(_))` asks for a rollback or a stop.
    pub(super) async fn before_point_of_no_return(
        &mut self,
    ) -> Result<Result<(), Stop>, SwitchoverError> {
        let started = self.begin("fence").await?;
        self.fence_started = Some(Instant::now());
        match self.fence_old().await {
            Ok(detail) => {
                self.end(started, detail).await?;
                self.steps.tell(Event::Fenced {
                    writer: self.p.from.clone(),
                });
            }
            Err(e) => {
                self.failed(started, &e).await?;
                return Ok(Err(Stop::RollBack(format!(
                    "fencing {} failed: {e}",
                    self.p.from
                ))));
            }
        }
        let started = self.begin("wait").await?;
        let (provider, creds, p) = (self.provider, self.creds.clone(), self.p.clone());
        let endpoints = self.endpoints.clone();
        let (waited, changed) = tokio::join!(
            self.wait_caught_up(),
            cluster_changed(
                provider,
                &creds,
                &endpoints,
                &p,
                Moment::BeforePointOfNoReturn,
                false
            )
        );
        match (waited, changed) {
            (_, Ok(Some(what))) => {
                self.failed(started, &what).await?;
                return Ok(Err(Stop::Changed(what)));
            }
            (Ok(detail), Ok(None)) => self.end(started, detail).await?,
            (Err(e), _) | (Ok(_), Err(e)) => {
                self.failed(started, &e).await?;
                return Ok(Err(Stop::RollBack(e.to_string())));
            }
        }
        Ok(Ok(()))
    }

    pub(super) async fn fence_old(&mut self) -> StepResult<serde_json::Value> {
        // Clients are held at the proxy first (statement boundaries, open transactions may
        // finish within the bound): they see latency, not read-only errors.
        let paused = crate::proxy_admin::pause_if_any(
            self.proxy.as_ref(),
            Duration::from_millis(PROXY_DRAIN_MS),
            self.steps.observer(),
        )
        .await?;
        let mut old = self.connect(&self.p.from).await?;
        let opts = FenceOptions {
            lock_wait: Duration::from_millis(self.p.fence_lock_wait_ms),
            attempts: self.p.fence_attempts,
            kill_privileged_sessions: true,
        };
        let mut fence = if !old.can_set_read_only() {
            self.fence_without_super(&mut old).await?
        } else {
            db(old.fence_writes(&opts).await)?
        };
        // A resumed run keeps what the first fence saw, not the already-fenced state.
        if let Some(first) = &self.fence {
            fence.event_scheduler_before = first.event_scheduler_before.clone();
            fence.was_read_only = first.was_read_only;
        }
        self.fence = Some(fence.clone());
        // The lease: commits stop even for sessions that could write through read_only, and
        // the block lifts by itself if this process dies.
        // Without SUPER there are no sessions that write through read_only but the platform's,
        // and the lease needs RELOAD, which the RDS master user may lack: no lease there (the
        // dialect says where there is one).
        if old.can_hold_commit_lease() {
            let lock_wait = Duration::from_millis(self.p.fence_lock_wait_ms);
            old.hold_commit_lease(lock_wait)
                .await
                .map_err(|e| StepError::from(e).context("holding the commit lease"))?;
            self.lease = Some(old);
        } else {
            old.close().await;
        }
        let mut detail = serde_json::to_value(&fence).unwrap_or_default();
        if let (Some(obj), Some(p)) = (detail.as_object_mut(), paused) {
            obj.insert("proxy_pause".into(), p);
        }
        Ok(detail)
    }

    /// The fence where dbshift's user has no SUPER (RDS): `read_only` through the provider
    /// (a parameter group on AWS: every instance sharing it is affected). The event scheduler
    /// is a parameter there too; events whose definer lacks SUPER are stopped by read_only.
    pub(super) async fn fence_without_super(&mut self, old: &mut Server) -> StepResult<Fence> {
        let event_scheduler_before =
            db(old.variable("event_scheduler").await)?.unwrap_or_else(|| "OFF".into());
        let was_read_only = db(old.read_only().await)?;
        crate::platform::set_read_only(self.provider, old, &self.p.from, true).await?;
        Ok(Fence {
            event_scheduler_before,
            was_read_only,
            read_only_attempts: 1,
            killed_sessions: Vec::new(),
        })
    }

    /// `read_only` off (or on) by SQL, or through the provider where the user has no SUPER.
    pub(super) async fn set_writable(
        &self,
        server: &mut Server,
        id: &str,
        writable: bool,
    ) -> StepResult<()> {
        if !server.can_set_read_only() {
            crate::platform::set_read_only(self.provider, server, id, !writable).await
        } else if writable {
            db(server.set_writable().await)
        } else {
            db(server.set_read_only().await)
        }
    }

    /// Put the old writer back as it was: lease released, read_only off, events as before.
    pub(super) async fn roll_back(&mut self, reason: String) -> Result<Outcome, SwitchoverError> {
        tracing::warn!(run = %self.run, "rolling back: {reason}");
        if self.fence.is_some() {
            // The old writer is made writable only if it still is the cluster's writer and
            // nobody's replica: another run or a human may have moved the cluster meanwhile.
            match cluster_changed(
                self.provider,
                &self.creds,
                &self.endpoints,
                &self.p,
                Moment::BeforeRollback,
                false,
            )
            .await
            {
                Ok(None) => {}
                Ok(Some(what)) => {
                    return self
                        .stop_cluster_changed(
                            Moment::BeforeRollback,
                            format!("{what} (this run was rolling back because: {reason})"),
                            true,
                        )
                        .await
                }
                Err(e) => {
                    if let Some(lease) = self.lease.take() {
                        release_lease(lease).await;
                    }
                    let msg = format!(
                        "{reason}; then the cluster could not be looked at ({e}), so {} was \
                         left fenced (read-only) and nothing was promoted: clients cannot \
                         write. Check {}, then `dbshift resume {}`",
                        self.p.from, self.p.cluster, self.run
                    );
                    self.finish(RunStatus::NeedsHuman, &msg).await?;
                    return Ok(Outcome::NeedsHuman { reason: msg });
                }
            }
        }
        self.steps.tell(Event::RollbackStarted);
        if let Some(lease) = self.lease.take() {
            release_lease(lease).await;
        }
        let unfenced = match &self.fence {
            None => Ok(()),
            Some(fence) => match self.connect(&self.p.from).await {
                Ok(mut old) if !old.can_set_read_only() => {
                    let r = if fence.was_read_only {
                        Ok(())
                    } else {
                        self.set_writable(&mut old, &self.p.from, true).await
                    };
                    old.close().await;
                    r
                }
                Ok(mut old) => {
                    let r = old.unfence_writes(fence).await.map_err(StepError::from);
                    old.close().await;
                    r
                }
                Err(e) => Err(e),
            },
        };
        if let Some(proxy) = &self.proxy {
            // Held clients go on with the old writer, writable again (or, if that failed,
            // they see what the server says).
            if let Err(e) = proxy.resume().await {
                tracing::warn!("resuming the proxy after the rollback: {e}");
            }
        }
        self.steps.tell(Event::RollbackEnded);
        match unfenced {
            Ok(()) => {
                let msg = if self.fence.is_some() {
                    format!(
                        "rolled back, {} is the writer again and writable: {reason}",
                        self.p.from
                    )
                } else {
                    format!("nothing was changed: {reason}")
                };
                self.finish(RunStatus::RolledBack, &msg).await?;
                Ok(Outcome::RolledBack { reason: msg })
            }
            Err(e) => {
                let msg = format!(
                    "{reason}; then putting {} back failed: {e}. {} is fenced (read-only) and \
                     nothing was promoted: clients cannot write. Check {}, then `dbshift resume {}`",
                    self.p.from, self.p.from, self.p.from, self.run
                );
                self.finish(RunStatus::NeedsHuman, &msg).await?;
                Ok(Outcome::NeedsHuman { reason: msg })
            }
        }
    }
}
