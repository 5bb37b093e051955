//! Running a plan: up to K clusters at a time, one instance at a time inside each, every
//! instance action journaled before and after.

use super::*;

impl Rollout {
    /// Run `plan` as the journal's run `run_id` (created, or resumed, by the caller).
    pub async fn execute(&self, run_id: &str, plan: &Plan) -> Result<RolloutReport, RolloutError> {
        let state = Arc::new(RunState {
            run_id: run_id.to_string(),
            failures: AtomicUsize::new(0),
            max_failures: plan.options.max_failures,
            counts: PhaseCounts::default(),
            needs_human: AtomicBool::new(false),
            started: Instant::now(),
        });
        let k = plan.options.concurrency.max(1);
        let mut pending: std::collections::VecDeque<ClusterPlan> =
            plan.clusters.iter().cloned().collect();
        let mut reports: BTreeMap<String, ClusterReport> = BTreeMap::new();
        let mut set = tokio::task::JoinSet::new();
        let cooldown = Duration::from_millis(plan.options.cooldown_ms);
        loop {
            while set.len() < k && !pending.is_empty() {
                let over_budget = state.failures.load(Ordering::SeqCst) > state.max_failures;
                if over_budget || self.control.is_paused() {
                    break;
                }
                let c = pending.pop_front().expect("checked non-empty");
                let me = self.clone();
                let st = state.clone();
                set.spawn(async move { me.run_cluster(c, st, cooldown).await });
            }
            match set.join_next().await {
                Some(Ok(r)) => {
                    let r = r?;
                    reports.insert(r.cluster.clone(), r);
                }
                Some(Err(e)) => {
                    return Err(RolloutError::BadInput(format!(
                        "a cluster task ended abnormally: {e}"
                    )))
                }
                None => break,
            }
        }
        // What never started.
        for c in pending {
            let status = if self.control.is_paused() {
                ClusterStatus::Paused
            } else {
                ClusterStatus::NotStarted
            };
            reports.insert(
                c.cluster.clone(),
                ClusterReport {
                    cluster: c.cluster.clone(),
                    status,
                    duration_ms: 0,
                    steps: c.steps.iter().map(not_run).collect(),
                    probe: None,
                },
            );
        }
        let clusters: Vec<ClusterReport> = plan
            .clusters
            .iter()
            .filter_map(|c| reports.remove(&c.cluster))
            .collect();
        let mut totals = Totals {
            duration_ms: ms(state.started.elapsed()),
            estimate_ms: plan.estimate.critical_path_ms,
            ..Totals::default()
        };
        for c in &clusters {
            for s in &c.steps {
                let switchover = s.action.starts_with("switchover");
                match &s.outcome {
                    StepOutcome::Done if switchover => totals.switchovers += 1,
                    StepOutcome::Done => totals.changed += 1,
                    StepOutcome::AlreadyDone => totals.already_done += 1,
                    StepOutcome::Skipped { .. } => totals.skipped += 1,
                    StepOutcome::Failed { .. } | StepOutcome::NeedsHuman { .. } => {
                        totals.failed += 1
                    }
                    StepOutcome::NotRun => totals.not_run += 1,
                }
            }
            if let Some(p) = &c.probe {
                totals.lost_writes += p.lost_writes;
                totals.failed_writes += p.failed_writes;
            }
        }
        let needs_human = state.needs_human.load(Ordering::SeqCst) || totals.lost_writes > 0;
        let (outcome, status, message) = if needs_human {
            let why = if totals.lost_writes > 0 {
                format!(
                    "the probe found {} acknowledged write(s) missing: look at the probe reports",
                    totals.lost_writes
                )
            } else {
                "a switchover needs a human: see its run in `dbshift runs`".to_string()
            };
            (RunOutcome::NeedsHuman, RunStatus::NeedsHuman, why)
        } else if totals.failed > 0 {
            (
                RunOutcome::Failed,
                RunStatus::Failed,
                format!(
                    "{} instance(s) failed, {} not run; fix the cause and run the same command again",
                    totals.failed, totals.not_run
                ),
            )
        } else if totals.not_run > 0 || self.control.is_paused() {
            (
                RunOutcome::Paused,
                RunStatus::Running,
                "paused: run the same command again to continue".to_string(),
            )
        } else {
            (RunOutcome::Done, RunStatus::Done, "done".to_string())
        };
        self.journal
            .set_status(run_id, status, Some(&message))
            .await?;
        Ok(RolloutReport {
            run_id: run_id.to_string(),
            kind: plan.options.kind.clone(),
            target: plan.options.target.clone(),
            mode: plan.options.mode,
            concurrency: plan.options.concurrency,
            outcome,
            message,
            clusters,
            totals,
        })
    }

    async fn run_cluster(
        &self,
        plan: ClusterPlan,
        state: Arc<RunState>,
        cooldown: Duration,
    ) -> Result<ClusterReport, RolloutError> {
        let started = Instant::now();
        self.observer
            .cluster_started(&plan.cluster, plan.steps.len());
        let probe = match (&self.probe, plan.has_work()) {
            (Some(p), true) => Some(self.start_probe(p, &plan.cluster).await),
            _ => None,
        };
        let marker = probe
            .as_ref()
            .and_then(|p| p.as_ref().ok())
            .map(|h| h.marker());
        let mut steps = Vec::new();
        let mut status = ClusterStatus::Done;
        for step in &plan.steps {
            if status != ClusterStatus::Done {
                steps.push(not_run(step));
                continue;
            }
            if self.control.is_paused() && !step.action.is_skip() {
                status = ClusterStatus::Paused;
                steps.push(not_run(step));
                continue;
            }
            self.observer.step_started(&plan.cluster, step);
            if let Some(m) = &marker {
                m.mark(format!("{} {}", step.instance, step.action.label()));
            }
            let report = self
                .run_step(&plan.cluster, step, &state, cooldown, marker.as_ref())
                .await?;
            match &report.outcome {
                StepOutcome::Failed { .. } => {
                    state.failures.fetch_add(1, Ordering::SeqCst);
                    status = ClusterStatus::Failed;
                }
                StepOutcome::NeedsHuman { .. } => {
                    state.failures.fetch_add(1, Ordering::SeqCst);
                    state.needs_human.store(true, Ordering::SeqCst);
                    status = ClusterStatus::NeedsHuman;
                }
                _ => {}
            }
            self.observer.step_finished(&plan.cluster, &report);
            steps.push(report);
        }
        let probe = match probe {
            None => None,
            Some(Err(e)) => Some(ProbeReport {
                max_write_gap_ms: 0.0,
                writes_attempted: 0,
                failed_writes: 0,
                indeterminate_writes: 0,
                lost_writes: 0,
                report_dir: None,
                error: Some(e.to_string()),
            }),
            Some(Ok(h)) => Some(stop_probe(h).await),
        };
        let report = ClusterReport {
            cluster: plan.cluster.clone(),
            status,
            duration_ms: ms(started.elapsed()),
            steps,
            probe,
        };
        self.observer.cluster_finished(&report);
        Ok(report)
    }

    async fn start_probe(
        &self,
        p: &ProbeSettings,
        cluster: &str,
    ) -> StepResult<dbshift_probe::ProbeHandle> {
        let config = dbshift_probe::ProbeConfig {
            rate: p.rate,
            report_dir: p.report_dir.as_ref().map(|d| d.join(cluster)),
            ..Default::default()
        };
        let target = dbshift_probe::TargetResolver::provider(self.provider.clone(), cluster);
        let h = dbshift_probe::Probe::start(config, target)
            .await
            .map_err(|e| {
                StepError::database(format!("the probe on {cluster} did not start: {e}"))
            })?;
        // A baseline before the first change, so the chart shows normal latency first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(h)
    }

    /// One instance action: journaled, re-checked on the server, applied, gated.
    async fn run_step(
        &self,
        cluster: &str,
        step: &PlannedStep,
        state: &RunState,
        cooldown: Duration,
        marker: Option<&dbshift_probe::Marker>,
    ) -> Result<StepReport, RolloutError> {
        let started = Instant::now();
        let mut report = StepReport {
            instance: step.instance.clone(),
            action: step.action.label(),
            before: step.before.clone(),
            after: None,
            duration_ms: 0,
            outcome: StepOutcome::Done,
            write_gap_ms: None,
        };
        if let Action::Skip { reason } = &step.action {
            report.after = Some(step.before.clone());
            report.outcome = StepOutcome::Skipped {
                reason: reason.clone(),
            };
            return Ok(report);
        }
        // The rollout reports its steps through its own observer; the runner journals them.
        let mut steps = StepRunner::new(&self.journal, &state.run_id, Workflow::Rollout, &Silent)
            .counting(state.counts.clone());
        // The cluster's lock still held, or the rollout stops before this instance changes.
        if let Some(lock) = self.journal.locks().held(cluster) {
            lock.check()?;
        }
        let begun = steps.begin(&step.step_name()).await?;
        let result = match &step.action {
            Action::Switchover { to } => self
                .switchover(cluster, &step.instance, to, marker)
                .await
                .map(|(o, gap)| {
                    report.write_gap_ms = gap;
                    o
                }),
            Action::NoRestart | Action::Restart => {
                let restart = step.action == Action::Restart;
                match self
                    .finish_switchover_away_from(cluster, &step.instance, marker)
                    .await
                {
                    Ok(()) => {
                        self.change_instance(
                            &steps,
                            begun.step(),
                            cluster,
                            &step.instance,
                            restart,
                            false,
                            cooldown,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
            Action::StartChangeStop { restart } => {
                self.change_instance(
                    &steps,
                    begun.step(),
                    cluster,
                    &step.instance,
                    *restart,
                    true,
                    cooldown,
                )
                .await
            }
            Action::Skip { .. } => unreachable!("handled above"),
        };
        report.duration_ms = ms(started.elapsed());
        report.after = Some(self.change.value(&step.instance).await);
        match result {
            Ok(outcome) => {
                report.outcome = outcome;
                let detail = serde_json::json!({
                    "before": report.before,
                    "after": report.after,
                    "duration_ms": report.duration_ms,
                    "outcome": serde_json::to_value(&report.outcome).unwrap_or_default(),
                });
                steps.end(begun, detail).await?;
            }
            Err(StepFailure::Failed(e)) => {
                tracing::warn!(instance = %step.instance, "{e}");
                steps.failed(begun, &e).await?;
                report.outcome = StepOutcome::Failed { error: e };
            }
            Err(StepFailure::NeedsHuman(e)) => {
                tracing::error!(instance = %step.instance, "{e}");
                steps.failed(begun, &e).await?;
                report.outcome = StepOutcome::NeedsHuman { reason: e };
            }
        }
        Ok(report)
    }
}

pub(super) fn not_run(step: &PlannedStep) -> StepReport {
    StepReport {
        instance: step.instance.clone(),
        action: step.action.label(),
        before: step.before.clone(),
        after: None,
        duration_ms: 0,
        outcome: match &step.action {
            Action::Skip { reason } => StepOutcome::Skipped {
                reason: reason.clone(),
            },
            _ => StepOutcome::NotRun,
        },
        write_gap_ms: None,
    }
}

pub(super) async fn stop_probe(h: dbshift_probe::ProbeHandle) -> ProbeReport {
    tokio::time::sleep(Duration::from_millis(300)).await;
    match h.stop().await {
        Ok(s) => {
            let w = s.kinds.get(&dbshift_probe::Kind::Write);
            ProbeReport {
                max_write_gap_ms: s.max_write_gap_ms,
                writes_attempted: w.map(|k| k.attempted).unwrap_or(0),
                failed_writes: w.map(|k| k.failed).unwrap_or(0),
                indeterminate_writes: s.indeterminate_writes,
                lost_writes: s.lost_writes.len(),
                report_dir: s.report_dir.map(|d| d.display().to_string()),
                error: s.audit.error.clone(),
            }
        }
        Err(e) => ProbeReport {
            max_write_gap_ms: 0.0,
            writes_attempted: 0,
            failed_writes: 0,
            indeterminate_writes: 0,
            lost_writes: 0,
            report_dir: None,
            error: Some(format!("stopping the probe: {e}")),
        },
    }
}
