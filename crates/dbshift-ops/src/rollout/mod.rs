//! Fleet rolling maintenance: one change (a CA rotation, later a parameter or a minor
//! version) applied to many clusters at once, safely. This module is the engine; what the
//! change *is* comes from a [`Change`] (see `ca_rotate`).
//!
//! - The plan ([`build_plan`]) is computed before anything runs: clusters in order, per cluster
//!   the readers one at a time then the writer (in `failover-first` mode the writer is first
//!   moved to an already-changed reader by the switchover core, then changed with a restart),
//!   skipped instances and why, and an estimate of the time (the critical path at the
//!   concurrency asked). Its fingerprint names the fleet it was made for, so a saved plan is
//!   applied only to the same fleet.
//! - Execution ([`Rollout::execute`]): up to K clusters at a time; inside a cluster one
//!   instance at a time, so never all readers down; after each instance a health gate
//!   (available, the change in effect as the server shows it, replication running and caught
//!   up with its source by GTID) bounded in time, with no fixed sleep (`cooldown` is a floor);
//!   a failed gate stops its cluster, clusters in flight finish, and nothing new starts once
//!   the failures exceed the budget. A pause lets the instance in flight finish and starts
//!   nothing more.
//! - Every instance action is a journal step, begun before and ended after; a resumed run
//!   re-checks each instance on its server (the journal is the intent, the server the truth).
//!
//! It must never change an instance that is not in the plan, never take two instances of one
//! cluster down at once, and never write a switchover of its own: the writer moves through
//! `crate::switchover`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbshift_db::Server;
use dbshift_provider::{Cluster, Credentials, Instance, InstanceStatus, Provider, Role};
use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::events::{Silent, Workflow};
use crate::journal::{Journal, JournalError, RunStatus};
use crate::ms;
use crate::runner::{PhaseCounts, StepRunner};
use crate::switchover::{self, Outcome as SwitchoverOutcome, SwitchoverRequest};

mod execute;
mod gate;
mod plan;
mod switch;

pub use gate::{caught_up, Member};
pub use plan::{
    build_plan, critical_path, fingerprint, glob, in_scope, Costs, Estimate, Filter, FilterError,
    Plan, PlanOptions,
};

/// Errors that stop a rollout before it starts, or the journal under it.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The request is wrong; nothing was changed.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Another command holds a cluster of the plan: nothing changed.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

/// How an instance takes the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Loaded by the running server: no restart, no write downtime.
    NoRestart,
    /// Every instance restarted in place, the writer too (its restart is write downtime).
    Restart,
    /// Readers restarted; the writer first moved to a changed reader by a planned switchover,
    /// then restarted as a reader.
    FailoverFirst,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::NoRestart => "no-restart",
            Mode::Restart => "restart",
            Mode::FailoverFirst => "failover-first",
        })
    }
}

/// A mode that is none of [`Mode`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: no-restart, restart or failover-first")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        match s {
            "no-restart" => Ok(Mode::NoRestart),
            "restart" => Ok(Mode::Restart),
            "failover-first" => Ok(Mode::FailoverFirst),
            _ => Err(UnknownMode(s.to_string())),
        }
    }
}

/// What is done to one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// The change, loaded by the running server.
    NoRestart,
    /// The change, then a restart.
    Restart,
    /// The cluster's writer moves to `to` (the switchover core); `instance` is the old writer.
    Switchover { to: String },
    /// A stopped instance: started, changed, stopped again.
    StartChangeStop { restart: bool },
    /// Nothing: already changed, or stopped.
    Skip { reason: String },
}

impl Action {
    /// The short name used in tables and journal step names.
    pub fn label(&self) -> String {
        match self {
            Action::NoRestart => "no-restart".into(),
            Action::Restart => "restart".into(),
            Action::Switchover { to } => format!("switchover to {to}"),
            Action::StartChangeStop { restart: false } => "start, no-restart, stop".into(),
            Action::StartChangeStop { restart: true } => "start, restart, stop".into(),
            Action::Skip { reason } => format!("skip ({reason})"),
        }
    }

    fn step_suffix(&self) -> &'static str {
        match self {
            Action::NoRestart => "no-restart",
            Action::Restart => "restart",
            Action::Switchover { .. } => "switchover",
            Action::StartChangeStop { .. } => "start-change-stop",
            Action::Skip { .. } => "skip",
        }
    }

    pub fn is_skip(&self) -> bool {
        matches!(self, Action::Skip { .. })
    }
}

/// One planned instance action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedStep {
    pub instance: String,
    /// The role when the plan was made.
    pub role: Role,
    pub status: InstanceStatus,
    /// The instance's value of what changes (its CA), when the plan was made.
    pub before: String,
    pub action: Action,
    pub estimate_ms: u64,
}

impl PlannedStep {
    /// The journal's name of this step.
    pub fn step_name(&self) -> String {
        format!("{}:{}", self.instance, self.action.step_suffix())
    }
}

/// One cluster's part of the plan, in execution order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterPlan {
    pub cluster: String,
    pub writer: String,
    pub steps: Vec<PlannedStep>,
    pub estimate_ms: u64,
    /// Remarks on the plan (e.g. no reader to fail over to).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl ClusterPlan {
    /// Whether anything will be done in this cluster.
    pub fn has_work(&self) -> bool {
        self.steps.iter().any(|s| !s.action.is_skip())
    }
}

/// The change a rollout applies, instance by instance.
#[async_trait::async_trait]
pub trait Change: Send + Sync {
    /// Whether the change is in effect on the instance, as its server shows it and the
    /// provider records it (never as the journal says). Called on running instances only.
    async fn in_effect(&self, instance: &Instance) -> StepResult<bool>;
    /// Apply the change and put it in effect (`restart`: by restarting the server).
    async fn apply(&self, instance: &Instance, restart: bool) -> StepResult<()>;
    /// The instance's value of what changes (its CA), for the report.
    async fn value(&self, instance: &str) -> String;
}

/// Told what the rollout does, for progress bars and logs.
pub trait RolloutObserver: Send + Sync {
    fn cluster_started(&self, _cluster: &str, _steps: usize) {}
    fn step_started(&self, _cluster: &str, _step: &PlannedStep) {}
    fn step_finished(&self, _cluster: &str, _step: &StepReport) {}
    fn cluster_finished(&self, _cluster: &ClusterReport) {}
}

/// Logs only.
pub struct LogRolloutObserver;

impl RolloutObserver for LogRolloutObserver {
    fn step_started(&self, cluster: &str, step: &PlannedStep) {
        tracing::info!(cluster, instance = %step.instance, action = %step.action.label(), "step started");
    }
    fn step_finished(&self, cluster: &str, step: &StepReport) {
        tracing::info!(cluster, instance = %step.instance, outcome = ?step.outcome, ms = step.duration_ms, "step finished");
    }
}

/// Pause and the failure budget, shared by every cluster of a run.
#[derive(Debug, Clone, Default)]
pub struct Control {
    paused: Arc<AtomicBool>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// No new instance starts; those in flight finish.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

/// How one instance action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    /// Found already in effect on the server (e.g. done before a crash): not redone.
    AlreadyDone,
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
    /// Not run: its cluster stopped, the run paused, or the failure budget was spent.
    NotRun,
    /// The switchover core needs an operator.
    NeedsHuman {
        reason: String,
    },
}

/// One instance action in the report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub instance: String,
    pub action: String,
    pub before: String,
    pub after: Option<String>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub outcome: StepOutcome,
    /// The switchover core's own measure (fence to promotion), for a switchover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_gap_ms: Option<u64>,
}

/// What the probe saw for one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub max_write_gap_ms: f64,
    pub writes_attempted: u64,
    pub failed_writes: u64,
    pub indeterminate_writes: u64,
    pub lost_writes: usize,
    pub report_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How one cluster ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterStatus {
    Done,
    Failed,
    Paused,
    NotStarted,
    NeedsHuman,
}

/// One cluster in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub cluster: String,
    pub status: ClusterStatus,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
    pub probe: Option<ProbeReport>,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub changed: usize,
    pub already_done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub not_run: usize,
    pub switchovers: usize,
    pub duration_ms: u64,
    pub estimate_ms: u64,
    pub lost_writes: usize,
    pub failed_writes: u64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Done,
    Failed,
    Paused,
    NeedsHuman,
}

impl RunOutcome {
    /// 0 done, 1 failed or paused, 3 needs a human.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunOutcome::Done => 0,
            RunOutcome::Failed | RunOutcome::Paused => 1,
            RunOutcome::NeedsHuman => 3,
        }
    }
}

/// The report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    pub run_id: String,
    pub kind: String,
    pub target: String,
    pub mode: Mode,
    pub concurrency: usize,
    pub outcome: RunOutcome,
    pub message: String,
    pub clusters: Vec<ClusterReport>,
    pub totals: Totals,
}

/// `--probe`: one downtime probe per cluster for its whole rollout.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub rate: f64,
    /// Each cluster's report goes to `<dir>/<cluster>`.
    pub report_dir: Option<std::path::PathBuf>,
}

/// The engine. Cheap to clone: every cluster task holds one.
#[derive(Clone)]
pub struct Rollout {
    pub provider: Arc<dyn Provider>,
    pub journal: Journal,
    pub change: Arc<dyn Change>,
    pub observer: Arc<dyn RolloutObserver>,
    pub control: Control,
    pub probe: Option<ProbeSettings>,
    /// Bound of each health gate.
    pub gate_timeout: Duration,
}

/// Shared by the cluster tasks of one run.
struct RunState {
    run_id: String,
    failures: AtomicUsize,
    max_failures: usize,
    /// The `#<n>` crash points' counts (`rollout:#<n>:end`: killed right after the n-th
    /// instance action of this process is journaled as ended).
    counts: PhaseCounts,
    needs_human: AtomicBool,
    started: Instant,
}

enum StepFailure {
    Failed(String),
    NeedsHuman(String),
}

fn fail(e: impl std::fmt::Display) -> StepFailure {
    StepFailure::Failed(e.to_string())
}
