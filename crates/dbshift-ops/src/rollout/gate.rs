//! One instance changed (started and stopped again if it was stopped) and its health gate.

use super::*;

impl Rollout {
    /// Change one instance and gate it. A stopped one (`start_stop`) is started first and
    /// stopped again after its gate.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn change_instance(
        &self,
        steps: &StepRunner<'_>,
        step: &str,
        cluster: &str,
        id: &str,
        restart: bool,
        start_stop: bool,
        cooldown: Duration,
    ) -> Result<StepOutcome, StepFailure> {
        let started = Instant::now();
        let inst = self.provider.describe_instance(id).await.map_err(fail)?;
        let was_stopped = inst.status == InstanceStatus::Stopped;
        if was_stopped && !start_stop {
            return Err(StepFailure::Failed(format!(
                "{id} is stopped (it was running when the plan was made)"
            )));
        }
        if was_stopped {
            tracing::info!(instance = id, "starting the stopped instance");
            self.provider
                .start_instance(id, self.gate_timeout)
                .await
                .map_err(|e| StepFailure::Failed(format!("starting {id}: {e}")))?;
            tracing::info!(instance = id, "started");
        }
        let inst = self.provider.describe_instance(id).await.map_err(fail)?;
        // The server is the truth: an instance already showing the change is not redone.
        let already = self.change.in_effect(&inst).await.unwrap_or(false);
        if !already {
            tracing::info!(instance = id, restart, "applying the change");
            self.change.apply(&inst, restart).await.map_err(fail)?;
            tracing::info!(instance = id, "change applied; health gate");
        }
        // Crash point `rollout:<step>:gate`: the change applied, its health gate not passed.
        steps.point(step, "gate").await;
        let gate = self.gate(cluster, id).await;
        if gate.is_ok() {
            let elapsed = started.elapsed();
            if !already && elapsed < cooldown {
                tokio::time::sleep(cooldown - elapsed).await;
            }
        }
        if was_stopped {
            tracing::info!(instance = id, "stopping it again");
            self.provider
                .stop_instance(id)
                .await
                .map_err(|e| StepFailure::Failed(format!("stopping {id} again: {e}")))?;
        }
        gate.map_err(fail)?;
        Ok(if already {
            StepOutcome::AlreadyDone
        } else {
            StepOutcome::Done
        })
    }

    /// The health gate: the instance runs, shows the change, and (a replica) replicates
    /// without error and has applied what its source had when it was asked; polled until
    /// true or `gate_timeout`, never a fixed sleep.
    pub async fn gate(&self, cluster: &str, id: &str) -> StepResult<()> {
        let deadline = Instant::now() + self.gate_timeout;
        // No database credentials (AWS): the control plane alone (see `gate_once`).
        let creds = if self.provider.sql_access() {
            self.provider.credentials()?
        } else {
            Credentials {
                admin: dbshift_provider::Credential {
                    user: String::new(),
                    password: String::new(),
                },
                replication: dbshift_provider::Credential {
                    user: String::new(),
                    password: String::new(),
                },
                app: dbshift_provider::Credential {
                    user: String::new(),
                    password: String::new(),
                },
                ca_bundle: None,
            }
        };
        let mut last;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.gate_once(&creds, cluster, id, deadline).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(last.map_message(|last| {
                    format!(
                        "{id} did not pass its health gate within {:?}: {last}",
                        self.gate_timeout
                    )
                }));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    pub(super) async fn gate_once(
        &self,
        creds: &Credentials,
        cluster: &str,
        id: &str,
        deadline: Instant,
    ) -> StepResult<()> {
        let inst = self
            .provider
            .describe_instance(id)
            .await
            .map_err(StepError::from)?;
        if inst.status != InstanceStatus::Available {
            return Err(StepError::provider(format!("{id} is {}", inst.status)));
        }
        if !self.change.in_effect(&inst).await? {
            return Err(StepError::refused(format!(
                "{id} does not show the change yet"
            )));
        }
        // Available (with nothing pending) and the change recorded is all the control plane
        // can tell; without database credentials that is the whole gate.
        if !self.provider.sql_access() {
            return Ok(());
        }
        // Aurora readers share the writer's storage: there is no binlog replication to check.
        if inst.shares_storage() {
            return Ok(());
        }
        let clusters = self
            .provider
            .list_clusters()
            .await
            .map_err(StepError::from)?;
        let writer = clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|c| c.writer.clone())
            .ok_or_else(|| StepError::provider(format!("cluster {cluster} is gone")))?;
        if writer != id {
            return caught_up(&*self.provider, creds, id, &writer, deadline).await;
        }
        // The writer: its replicas verify its new certificate when they reconnect (a restart
        // cuts them off), so they must be replicating again and caught up.
        let cluster_rec = clusters
            .iter()
            .find(|c| c.name == cluster)
            .expect("found above");
        for r in cluster_rec.instances.iter().filter(|r| **r != writer) {
            let inst = self
                .provider
                .describe_instance(r)
                .await
                .map_err(StepError::from)?;
            if inst.status == InstanceStatus::Available {
                caught_up(&*self.provider, creds, r, &writer, deadline).await?;
            }
        }
        Ok(())
    }
}

/// A replica replicates without error and has applied its source's current position.
pub async fn caught_up(
    provider: &dyn Provider,
    creds: &Credentials,
    replica: &str,
    source: &str,
    deadline: Instant,
) -> StepResult<()> {
    let connect = |id: String| async move {
        let ep = provider
            .describe_instance(&id)
            .await
            .map_err(StepError::from)?
            .endpoint;
        let opts = crate::connect_options(creds, &creds.admin, &ep)
            .connect_timeout(Duration::from_secs(2));
        Server::connect(&opts)
            .await
            .map_err(|e| StepError::from(e).context(&id))
    };
    let mut r = connect(replica.to_string()).await?;
    let st = r.replication_status().await.map_err(StepError::from)?;
    if !st.healthy() {
        r.close().await;
        return Err(StepError::database(format!(
            "{replica}'s replication is not running: io {:?}, sql {}, error {:?}",
            st.io_running,
            st.sql_running,
            st.last_io_error.or(st.last_sql_error)
        )));
    }
    let mut w = connect(source.to_string()).await?;
    let pos = w.executed_position().await.map_err(StepError::from);
    w.close().await;
    let pos = pos?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let res = r.wait_until_contains(&pos, left).await;
    r.close().await;
    res.map_err(|e| {
        StepError::from(e)
            .map_message(|e| format!("{replica} has not caught up with {source} ({pos}): {e}"))
    })
}
