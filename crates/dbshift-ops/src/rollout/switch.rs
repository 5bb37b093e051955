//! The writer moved through the switchover core (never a switchover of the rollout's own),
//! or a switchover left unfinished resumed.

use super::*;
use crate::events::Event;

impl Rollout {
    /// The writer of `cluster` moves from `from` to `to` through the switchover core. Done
    /// already when the provider names `to` (or any other instance) the writer; a switchover
    /// of this cluster left unfinished (dbshift killed) is resumed, not started again.
    pub(super) async fn switchover(
        &self,
        cluster: &str,
        from: &str,
        to: &str,
        marker: Option<&dbshift_probe::Marker>,
    ) -> Result<(StepOutcome, Option<u64>), StepFailure> {
        if let Some(run) = self.unfinished_switchover(cluster, from).await? {
            return self.resume_switchover(cluster, run, marker).await;
        }
        let observer = MarkObserver(marker.cloned());
        let clusters = self.provider.list_clusters().await.map_err(fail)?;
        let writer = clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|c| c.writer.clone())
            .ok_or_else(|| StepFailure::Failed(format!("cluster {cluster} is gone")))?;
        if writer != from {
            tracing::info!(cluster, writer = %writer, "the writer already moved; no switchover");
            return Ok((StepOutcome::AlreadyDone, None));
        }
        // The target must have the change in effect: the old writer's restart is then the
        // last one in the cluster.
        let to_inst = self.provider.describe_instance(to).await.map_err(fail)?;
        if !self.change.in_effect(&to_inst).await.unwrap_or(false) {
            return Err(StepFailure::Failed(format!(
                "{to} does not have the change in effect; refusing to make it the writer"
            )));
        }
        // The platform's own failover where it has one (Aurora: FailoverDBCluster).
        match self
            .provider
            .failover_cluster(cluster, to, self.gate_timeout)
            .await
        {
            Ok(true) => {
                tracing::info!(cluster, to, "writer moved by the platform's failover");
                return Ok((StepOutcome::Done, None));
            }
            Ok(false) => {}
            Err(e) => {
                return Err(StepFailure::Failed(format!(
                    "failing {cluster} over to {to}: {e}"
                )))
            }
        }
        let req = SwitchoverRequest {
            cluster: cluster.to_string(),
            to: to.to_string(),
            max_lag_transactions: 100,
            max_lag_seconds: 5,
            timeout: Duration::from_secs(10),
            hooks: Vec::new(),
            allow_statement_binlog: false,
        };
        let params = switchover::prepare(&*self.provider, &req)
            .await
            .map_err(|e| StepFailure::Failed(e.to_string()))?;
        let outcome = switchover::run(&*self.provider, &self.journal, params, &observer)
            .await
            .map(|(_, o)| o)
            .map_err(|e| StepFailure::NeedsHuman(e.to_string()))?;
        switchover_outcome(outcome)
    }

    /// The switchover of `cluster` away from `from` that a killed dbshift left unfinished, if
    /// any (its run is still running or needs a human).
    pub(super) async fn unfinished_switchover(
        &self,
        cluster: &str,
        from: &str,
    ) -> Result<Option<String>, StepFailure> {
        let runs = self.journal.runs().await.map_err(fail)?;
        Ok(runs
            .iter()
            .find(|r| {
                r.kind == "switchover"
                    && r.target == cluster
                    && matches!(r.status, RunStatus::Running | RunStatus::NeedsHuman)
                    && r.params.get("from").and_then(|v| v.as_str()) == Some(from)
            })
            .map(|r| r.id.clone()))
    }

    /// A run killed after its switchover's redirect is planned again with the old writer as
    /// a reader (the provider names the new one): that switchover, whose demotion of the old
    /// writer is still to do, is finished before the old writer is changed.
    pub(super) async fn finish_switchover_away_from(
        &self,
        cluster: &str,
        instance: &str,
        marker: Option<&dbshift_probe::Marker>,
    ) -> Result<(), StepFailure> {
        if let Some(run) = self.unfinished_switchover(cluster, instance).await? {
            self.resume_switchover(cluster, run, marker).await?;
        }
        Ok(())
    }

    /// Finish a switchover cut short, through the core's resume.
    pub(super) async fn resume_switchover(
        &self,
        cluster: &str,
        run: String,
        marker: Option<&dbshift_probe::Marker>,
    ) -> Result<(StepOutcome, Option<u64>), StepFailure> {
        tracing::warn!(%run, "resuming the unfinished switchover of {cluster}");
        let observer = MarkObserver(marker.cloned());
        let outcome = switchover::resume(&*self.provider, &self.journal, &run, &observer)
            .await
            .map_err(|e| StepFailure::NeedsHuman(e.to_string()))?;
        switchover_outcome(outcome)
    }
}

pub(super) fn switchover_outcome(
    o: SwitchoverOutcome,
) -> Result<(StepOutcome, Option<u64>), StepFailure> {
    match o {
        SwitchoverOutcome::Done(r) => Ok((StepOutcome::Done, r.write_gap_ms)),
        SwitchoverOutcome::Refused(g) => Err(StepFailure::Failed(format!(
            "the switchover was refused, nothing changed: {}",
            g.failure_text()
        ))),
        SwitchoverOutcome::RolledBack { reason } => Err(StepFailure::Failed(format!(
            "the switchover rolled back, the writer did not move: {reason}"
        ))),
        SwitchoverOutcome::ClusterChanged { reason, .. } => Err(StepFailure::NeedsHuman(reason)),
        SwitchoverOutcome::NeedsHuman { reason } => Err(StepFailure::NeedsHuman(reason)),
    }
}

/// Marks the probe's chart with the switchover's steps.
pub(super) struct MarkObserver(Option<dbshift_probe::Marker>);

impl crate::events::Observer for MarkObserver {
    fn event(&self, event: &Event) {
        tracing::info!("{event}");
        if let Some(m) = &self.0 {
            match event {
                Event::Promoted { .. } => m.mark("promoted"),
                Event::StepStarted { step, .. } if step == "fence" => m.mark("fence"),
                _ => {}
            }
        }
    }
}
