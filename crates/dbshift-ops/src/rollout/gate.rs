//! One instance changed (started and stopped again if it was stopped) and its health gate.

use dbshift_provider::Endpoint;

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
        // A writer that takes writes now must take them again after its change (a server
        // whose option file says `read_only=ON` comes back read-only from a restart).
        let writable_before = self.writable(&inst).await;
        // The server is the truth: an instance already showing the change is not redone.
        let already = self.change.in_effect(&inst).await.unwrap_or(false);
        if !already {
            tracing::info!(instance = id, restart, "applying the change");
            self.change.apply(&inst, restart).await.map_err(fail)?;
            tracing::info!(instance = id, "change applied; health gate");
        }
        // Crash point `rollout:<step>:gate`: the change applied, its health gate not passed.
        steps.point(step, "gate").await;
        let mut gate = self.gate(cluster, id).await;
        if gate.is_ok() && writable_before == Some(true) {
            gate = self.writable_again(&inst).await;
        }
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
    ///
    /// Each question goes where it is cheap to ask. The control plane is asked, at its own
    /// pace ([`Backoff::control_plane`]: AWS's API is slow and rate-limited), only until it
    /// says the instance is available with the change in effect; the cluster's writer and
    /// members are then read once (on AWS a listing of the whole fleet); from there on the
    /// database alone is asked, fast, until replication runs and has caught up.
    pub async fn gate(&self, cluster: &str, id: &str) -> StepResult<()> {
        let deadline = Instant::now() + self.gate_timeout;
        let timed_out = |last: StepError| {
            last.map_message(|last| {
                format!(
                    "{id} did not pass its health gate within {:?}: {last}",
                    self.gate_timeout
                )
            })
        };
        let mut pauses = Backoff::control_plane(self.provider.slow_control_plane());
        let inst = loop {
            match self.shows_change(id).await {
                Ok(inst) => break inst,
                Err(e) if Instant::now() >= deadline => return Err(timed_out(e)),
                Err(_) => pauses.sleep_before(deadline).await,
            }
        };
        // Available (with nothing pending) and the change recorded is all the control plane
        // can tell; without database credentials that is the whole gate.
        if !self.provider.sql_access() {
            return Ok(());
        }
        // Aurora readers share the writer's storage: there is no binlog replication to check.
        if inst.shares_storage() {
            return Ok(());
        }
        let creds = self.provider.credentials_for(cluster)?;
        let pairs = self.replication_to_check(cluster, inst).await?;
        let mut pauses = Backoff::database();
        loop {
            let mut result = Ok(());
            for (replica, source) in &pairs {
                result = caught_up(&creds, replica, source, deadline).await;
                if result.is_err() {
                    break;
                }
            }
            match result {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(timed_out(e)),
                Err(_) => pauses.sleep_before(deadline).await,
            }
        }
    }

    /// Whether `inst` takes writes (`read_only` off), asked of the database; `None` when
    /// dbshift has no SQL access or the server does not answer.
    async fn writable(&self, inst: &Instance) -> Option<bool> {
        if !self.provider.sql_access() || inst.status != InstanceStatus::Available {
            return None;
        }
        let creds = self.provider.credentials_for(&inst.cluster).ok()?;
        let opts = crate::connect_options(&creds, &creds.admin, &inst.endpoint)
            .connect_timeout(Duration::from_secs(2));
        let mut s = Server::connect(&opts).await.ok()?;
        let ro = s.read_only().await.ok();
        s.close().await;
        ro.map(|ro| !ro)
    }

    /// After the gate of a writer that took writes before its change: it takes them again,
    /// polled until `gate_timeout` (a platform may re-apply `read_only` a moment after the
    /// restart).
    async fn writable_again(&self, inst: &Instance) -> StepResult<()> {
        let deadline = Instant::now() + self.gate_timeout;
        let mut pauses = Backoff::database();
        loop {
            if self.writable(inst).await == Some(true) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::unsafe_(format!(
                    "{} took writes before its change and does not after it (read_only is on                      or it does not answer) within {:?}: its clients cannot write; make it                      writable once you are sure no other server of its cluster is",
                    inst.id, self.gate_timeout
                )));
            }
            pauses.sleep_before(deadline).await;
        }
    }

    /// The control plane's part of the gate: the instance available, the change in effect.
    async fn shows_change(&self, id: &str) -> StepResult<Instance> {
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
        Ok(inst)
    }

    /// The replicas whose replication the gate of `inst` checks, each with its source, read
    /// from the control plane once: a replica, from its writer; the writer, every running
    /// member (its replicas verify its new certificate when they reconnect, and a restart cuts
    /// them off, so they must be replicating again and caught up).
    async fn replication_to_check(
        &self,
        cluster: &str,
        inst: Instance,
    ) -> StepResult<Vec<(Member, Member)>> {
        let clusters = self
            .provider
            .list_clusters()
            .await
            .map_err(StepError::from)?;
        let record = clusters
            .into_iter()
            .find(|c| c.name == cluster)
            .ok_or_else(|| StepError::provider(format!("cluster {cluster} is gone")))?;
        let member = |i: &Instance| Member {
            id: i.id.clone(),
            endpoint: i.endpoint.clone(),
        };
        if record.writer != inst.id {
            let writer = self
                .provider
                .describe_instance(&record.writer)
                .await
                .map_err(StepError::from)?;
            return Ok(vec![(member(&inst), member(&writer))]);
        }
        let mut pairs = Vec::new();
        for r in record.instances.iter().filter(|r| **r != record.writer) {
            let replica = self
                .provider
                .describe_instance(r)
                .await
                .map_err(StepError::from)?;
            if replica.status == InstanceStatus::Available {
                pairs.push((member(&replica), member(&inst)));
            }
        }
        Ok(pairs)
    }
}

/// An instance of a gate, as the database layer reaches it: its id (for messages) and its
/// endpoint, read from the control plane once per gate.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub endpoint: Endpoint,
}

/// The pauses between a gate's polls: doubling from `first` up to `most`.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    next: Duration,
    most: Duration,
}

impl Backoff {
    /// The control plane's pace: a cloud API (`slow`) from 1 s to 10 s, since it is slow to
    /// change and rate-limits its callers; local processes from 20 ms to 250 ms.
    pub(super) fn control_plane(slow: bool) -> Backoff {
        if slow {
            Backoff::new(Duration::from_secs(1), Duration::from_secs(10))
        } else {
            Backoff::database()
        }
    }

    /// A database answers in milliseconds: from 20 ms to 250 ms.
    pub(super) fn database() -> Backoff {
        Backoff::new(Duration::from_millis(20), Duration::from_millis(250))
    }

    fn new(first: Duration, most: Duration) -> Backoff {
        Backoff { next: first, most }
    }

    /// The next pause.
    pub(super) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.most);
        pause
    }

    /// Sleep the next pause, never past `deadline` (the last poll is at the deadline).
    async fn sleep_before(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.next_pause().min(left)).await;
    }
}

/// A replica replicates without error and has applied its source's current position.
pub async fn caught_up(
    creds: &Credentials,
    replica: &Member,
    source: &Member,
    deadline: Instant,
) -> StepResult<()> {
    let connect = |m: &Member| {
        let opts = crate::connect_options(creds, &creds.admin, &m.endpoint)
            .connect_timeout(Duration::from_secs(2));
        let id = m.id.clone();
        async move {
            Server::connect(&opts)
                .await
                .map_err(|e| StepError::from(e).context(&id))
        }
    };
    let (replica_id, source_id) = (&replica.id, &source.id);
    let mut r = connect(replica).await?;
    let st = r.replication_status().await.map_err(StepError::from)?;
    if !st.healthy() {
        r.close().await;
        return Err(StepError::database(format!(
            "{replica_id}'s replication is not running: io {:?}, sql {}, error {:?}",
            st.io_running,
            st.sql_running,
            st.last_io_error.or(st.last_sql_error)
        )));
    }
    let mut w = connect(source).await?;
    let pos = w.executed_position().await.map_err(StepError::from);
    w.close().await;
    let pos = pos?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let res = r.wait_until_contains(&pos, left).await;
    r.close().await;
    res.map_err(|e| {
        StepError::from(e).map_message(|e| {
            format!("{replica_id} has not caught up with {source_id} ({pos}): {e}")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pauses(mut b: Backoff, n: usize) -> Vec<u64> {
        (0..n).map(|_| ms(b.next_pause())).collect()
    }

    #[test]
    fn a_slow_control_plane_is_asked_from_1_s_to_10_s() {
        assert_eq!(
            pauses(Backoff::control_plane(true), 6),
            vec![1000, 2000, 4000, 8000, 10_000, 10_000]
        );
    }

    #[test]
    fn the_lab_and_the_database_are_asked_from_20_ms_to_250_ms() {
        let fast = vec![20, 40, 80, 160, 250, 250];
        assert_eq!(pauses(Backoff::control_plane(false), 6), fast);
        assert_eq!(pauses(Backoff::database(), 6), fast);
    }
}
