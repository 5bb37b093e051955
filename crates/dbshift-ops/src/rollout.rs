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

use crate::journal::{Journal, JournalError, RunStatus};
use crate::ms;
use crate::switchover::{self, Outcome as SwitchoverOutcome, SwitchoverRequest};

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

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "no-restart" => Ok(Mode::NoRestart),
            "restart" => Ok(Mode::Restart),
            "failover-first" => Ok(Mode::FailoverFirst),
            _ => Err(format!(
                "unknown mode {s:?}: no-restart, restart or failover-first"
            )),
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

/// What each kind of action is expected to cost, for the estimate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Costs {
    pub no_restart_ms: u64,
    pub restart_ms: u64,
    pub switchover_ms: u64,
    /// Starting and stopping a stopped instance, on top of its change.
    pub start_stop_ms: u64,
}

impl Default for Costs {
    /// Measured on the local lab (docs/ca-rotation.md: 36 small servers, 2 cores); a cloud
    /// provider's are minutes.
    fn default() -> Self {
        Costs {
            no_restart_ms: 100,
            restart_ms: 600,
            switchover_ms: 700,
            start_stop_ms: 800,
        }
    }
}

impl Costs {
    /// RDS and Aurora, as AWS documents them: a CA change without restart about a minute of
    /// control-plane work, with a restart a few minutes, an Aurora failover about a minute,
    /// starting a stopped instance several. Rough: the run reports the real durations.
    pub fn cloud() -> Self {
        Costs {
            no_restart_ms: 60_000,
            restart_ms: 300_000,
            switchover_ms: 60_000,
            start_stop_ms: 600_000,
        }
    }

    fn of(&self, action: &Action, cooldown_ms: u64) -> u64 {
        let raw = match action {
            Action::NoRestart => self.no_restart_ms,
            Action::Restart => self.restart_ms,
            Action::Switchover { .. } => self.switchover_ms,
            Action::StartChangeStop { restart } => {
                self.start_stop_ms
                    + if *restart {
                        self.restart_ms
                    } else {
                        self.no_restart_ms
                    }
            }
            Action::Skip { .. } => return 0,
        };
        // The cooldown is a floor per instance change, not for the switchover.
        if matches!(action, Action::Switchover { .. }) {
            raw
        } else {
            raw.max(cooldown_ms)
        }
    }
}

/// The time the plan is expected to take.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Estimate {
    /// Every action one after the other.
    pub serial_ms: u64,
    /// Clusters on `concurrency` slots in plan order, each as soon as a slot frees: the
    /// critical path of the rollout.
    pub critical_path_ms: u64,
    pub costs: Costs,
}

/// The longest slot when `durations` (in order) go to `k` slots, each to the first free one.
pub fn critical_path(durations: &[u64], k: usize) -> u64 {
    let mut slots = vec![0u64; k.max(1)];
    for d in durations {
        let (i, _) = slots
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .expect("at least one slot");
        slots[i] += d;
    }
    slots.into_iter().max().unwrap_or(0)
}

/// A `--filter`: a glob on cluster names and instance ids, or `tag=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    Name(String),
    Tag(String, String),
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty --filter matches nothing".into());
        }
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(Filter::Tag(k.to_string(), v.to_string())),
            Some(_) => Err(format!("--filter {s:?}: a tag filter is name=value")),
            None => Ok(Filter::Name(s.to_string())),
        }
    }

    fn matches(&self, inst: &Instance) -> bool {
        match self {
            Filter::Name(g) => glob(g, &inst.cluster) || glob(g, &inst.id),
            Filter::Tag(k, v) => inst.tags.get(k).is_some_and(|x| x == v),
        }
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Name(g) => f.write_str(g),
            Filter::Tag(k, v) => write!(f, "{k}={v}"),
        }
    }
}

/// `*` any run of characters, `?` one character; everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `inst` is in scope: it matches one of the name globs (if any) and every tag filter.
pub fn in_scope(filters: &[Filter], inst: &Instance) -> bool {
    let names: Vec<&Filter> = filters
        .iter()
        .filter(|f| matches!(f, Filter::Name(_)))
        .collect();
    let name_ok = names.is_empty() || names.iter().any(|f| f.matches(inst));
    let tags_ok = filters
        .iter()
        .filter(|f| matches!(f, Filter::Tag(..)))
        .all(|f| f.matches(inst));
    name_ok && tags_ok
}

/// Clusters in natural order: lab-2 before lab-10.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((std::mem::take(&mut text), num.parse().unwrap_or(u64::MAX)));
                num.clear();
            }
            text.push(c);
        }
    }
    out.push((text, num.parse().unwrap_or(0)));
    out
}

/// The plan's inputs that are not the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOptions {
    /// The journal kind of the rollout, e.g. `ca-rotate`.
    pub kind: String,
    /// What the instances are moved to, e.g. a CA id.
    pub target: String,
    pub mode: Mode,
    pub concurrency: usize,
    pub cooldown_ms: u64,
    pub start_stopped: bool,
    pub max_failures: usize,
    pub filters: Vec<Filter>,
    pub costs: Costs,
}

/// A rollout plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub options: PlanOptions,
    pub clusters: Vec<ClusterPlan>,
    pub estimate: Estimate,
    /// Of the fleet in scope when the plan was made (instances, roles, values, statuses).
    pub fingerprint: String,
    pub to_change: usize,
    pub skipped: usize,
}

/// The fingerprint of the fleet a plan is made for: every instance of the clusters in scope,
/// its role, value (CA), status, and each cluster's writer. FNV-1a, hex.
pub fn fingerprint(clusters: &[&Cluster], instances: &[&Instance]) -> String {
    let mut lines: Vec<String> = instances
        .iter()
        .map(|i| format!("{}|{}|{}|{}|{}", i.id, i.cluster, i.role, i.ca, i.status))
        .collect();
    lines.extend(clusters.iter().map(|c| format!("{}>{}", c.name, c.writer)));
    lines.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Make the plan. `done(instance)` says whether the provider already shows it changed (the
/// servers are asked again at execution). Bad input: concurrency 0, a filter matching nothing.
pub fn build_plan(
    opts: PlanOptions,
    clusters: &[Cluster],
    instances: &[Instance],
    done: &dyn Fn(&Instance) -> bool,
) -> Result<Plan, RolloutError> {
    if opts.concurrency == 0 {
        return Err(RolloutError::BadInput(
            "--concurrency must be at least 1".into(),
        ));
    }
    for f in &opts.filters {
        if !instances.iter().any(|i| f.matches(i)) {
            return Err(RolloutError::BadInput(format!(
                "--filter {f} matches no instance; clusters: {}",
                clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let scope: Vec<&Instance> = instances
        .iter()
        .filter(|i| in_scope(&opts.filters, i))
        .collect();
    if scope.is_empty() {
        return Err(RolloutError::BadInput(format!(
            "the filters {} together match no instance",
            opts.filters
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut in_clusters: Vec<&Cluster> = clusters
        .iter()
        .filter(|c| scope.iter().any(|i| i.cluster == c.name))
        .collect();
    in_clusters.sort_by_key(|c| natural_key(&c.name));
    let cooldown = opts.cooldown_ms;
    let mut plans = Vec::new();
    for c in &in_clusters {
        let members: Vec<&Instance> = instances.iter().filter(|i| i.cluster == c.name).collect();
        let mut readers: Vec<&&Instance> = members
            .iter()
            .filter(|i| i.id != c.writer && scope.iter().any(|s| s.id == i.id))
            .collect();
        readers.sort_by_key(|i| natural_key(&i.id));
        let mut steps = Vec::new();
        let mut notes = Vec::new();
        let step_for = |i: &Instance, restart: bool| -> Action {
            if done(i) {
                Action::Skip {
                    reason: format!("already on {}", opts.target),
                }
            } else if i.status == InstanceStatus::Stopped && !opts.start_stopped {
                Action::Skip {
                    reason: "stopped (--start-stopped to include it)".into(),
                }
            } else if i.status == InstanceStatus::Stopped {
                Action::StartChangeStop { restart }
            } else if restart {
                Action::Restart
            } else {
                Action::NoRestart
            }
        };
        let reader_restart = opts.mode != Mode::NoRestart;
        for r in &readers {
            steps.push((r, step_for(r, reader_restart)));
        }
        let writer = members
            .iter()
            .find(|i| i.id == c.writer)
            .filter(|w| scope.iter().any(|s| s.id == w.id));
        let mut writer_steps = Vec::new();
        if let Some(w) = writer {
            let base = step_for(w, opts.mode != Mode::NoRestart);
            match (&base, opts.mode) {
                (Action::Restart, Mode::FailoverFirst) => {
                    // A reader that will be changed before the writer, or already is, and runs.
                    let candidate = members.iter().find(|r| {
                        r.id != w.id
                            && r.status == InstanceStatus::Available
                            && (done(r)
                                || steps
                                    .iter()
                                    .any(|(s, a)| s.id == r.id && *a == Action::Restart))
                    });
                    match candidate {
                        Some(to) => {
                            writer_steps.push((w, Action::Switchover { to: to.id.clone() }));
                            writer_steps.push((w, Action::Restart));
                        }
                        None => {
                            notes.push(format!(
                                "no running reader of {} to fail over to: {} is restarted in place (write downtime)",
                                c.name, w.id
                            ));
                            writer_steps.push((w, Action::Restart));
                        }
                    }
                }
                _ => writer_steps.push((w, base)),
            }
        }
        let all: Vec<PlannedStep> = steps
            .into_iter()
            .map(|(i, a)| (**i, a))
            .chain(writer_steps.into_iter().map(|(i, a)| (*i, a)))
            .map(|(i, action)| PlannedStep {
                instance: i.id.clone(),
                role: i.role,
                status: i.status,
                before: i.ca.clone(),
                estimate_ms: opts.costs.of(&action, cooldown),
                action,
            })
            .collect();
        plans.push(ClusterPlan {
            cluster: c.name.clone(),
            writer: c.writer.clone(),
            estimate_ms: all.iter().map(|s| s.estimate_ms).sum(),
            steps: all,
            notes,
        });
    }
    let durations: Vec<u64> = plans.iter().map(|c| c.estimate_ms).collect();
    let estimate = Estimate {
        serial_ms: durations.iter().sum(),
        critical_path_ms: critical_path(&durations, opts.concurrency),
        costs: opts.costs,
    };
    let scope_members: Vec<&Instance> = instances
        .iter()
        .filter(|i| in_clusters.iter().any(|c| c.name == i.cluster))
        .collect();
    let fp = fingerprint(&in_clusters, &scope_members);
    let steps = plans.iter().flat_map(|c| c.steps.iter());
    let to_change = steps
        .clone()
        .filter(|s| !s.action.is_skip() && !matches!(s.action, Action::Switchover { .. }))
        .count();
    let skipped = steps.filter(|s| s.action.is_skip()).count();
    Ok(Plan {
        options: opts,
        clusters: plans,
        estimate,
        fingerprint: fp,
        to_change,
        skipped,
    })
}

/// The change a rollout applies, instance by instance.
#[async_trait::async_trait]
pub trait Change: Send + Sync {
    /// Whether the change is in effect on the instance, as its server shows it and the
    /// provider records it (never as the journal says). Called on running instances only.
    async fn in_effect(&self, instance: &Instance) -> Result<bool, String>;
    /// Apply the change and put it in effect (`restart`: by restarting the server).
    async fn apply(&self, instance: &Instance, restart: bool) -> Result<(), String>;
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

/// Fault injection for the crash tests (`DBSHIFT_CRASH_AT=rollout:after:<N>`): killed right
/// after the N-th instance action is journaled as ended.
fn crash_after(n: usize) {
    crate::crash_if(&format!("rollout:after:{n}"));
}

/// Fault injection inside one instance's action: `rollout:begin:<instance>` (journaled as
/// begun, nothing done) and `rollout:gate:<instance>` (the change applied, its health gate
/// not yet passed).
fn crash_at(point: &str, instance: &str) {
    crate::crash_if(&format!("rollout:{point}:{instance}"));
}

/// Shared by the cluster tasks of one run.
struct RunState {
    run_id: String,
    failures: AtomicUsize,
    max_failures: usize,
    ended_steps: AtomicUsize,
    needs_human: AtomicBool,
    started: Instant,
}

impl Rollout {
    /// Run `plan` as the journal's run `run_id` (created, or resumed, by the caller).
    pub async fn execute(&self, run_id: &str, plan: &Plan) -> Result<RolloutReport, RolloutError> {
        let state = Arc::new(RunState {
            run_id: run_id.to_string(),
            failures: AtomicUsize::new(0),
            max_failures: plan.options.max_failures,
            ended_steps: AtomicUsize::new(0),
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
                error: Some(e),
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
    ) -> Result<dbshift_probe::ProbeHandle, String> {
        let config = dbshift_probe::ProbeConfig {
            rate: p.rate,
            report_dir: p.report_dir.as_ref().map(|d| d.join(cluster)),
            ..Default::default()
        };
        let target = dbshift_probe::TargetResolver::provider(self.provider.clone(), cluster);
        let h = dbshift_probe::Probe::start(config, target)
            .await
            .map_err(|e| format!("the probe on {cluster} did not start: {e}"))?;
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
        let name = step.step_name();
        self.journal.begin(&state.run_id, &name).await?;
        crash_at("begin", &step.instance);
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
                        self.change_instance(cluster, &step.instance, restart, false, cooldown)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Action::StartChangeStop { restart } => {
                self.change_instance(cluster, &step.instance, *restart, true, cooldown)
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
                self.journal.end(&state.run_id, &name, detail).await?;
                let n = state.ended_steps.fetch_add(1, Ordering::SeqCst) + 1;
                crash_after(n);
            }
            Err(StepFailure::Failed(e)) => {
                tracing::warn!(instance = %step.instance, "{e}");
                self.journal.failed(&state.run_id, &name, &e).await?;
                report.outcome = StepOutcome::Failed { error: e };
            }
            Err(StepFailure::NeedsHuman(e)) => {
                tracing::error!(instance = %step.instance, "{e}");
                self.journal.failed(&state.run_id, &name, &e).await?;
                report.outcome = StepOutcome::NeedsHuman { reason: e };
            }
        }
        Ok(report)
    }

    /// The writer of `cluster` moves from `from` to `to` through the switchover core. Done
    /// already when the provider names `to` (or any other instance) the writer; a switchover
    /// of this cluster left unfinished (dbshift killed) is resumed, not started again.
    async fn switchover(
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
    async fn unfinished_switchover(
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
    async fn finish_switchover_away_from(
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
    async fn resume_switchover(
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

    /// Change one instance and gate it. A stopped one (`start_stop`) is started first and
    /// stopped again after its gate.
    async fn change_instance(
        &self,
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
            self.change
                .apply(&inst, restart)
                .await
                .map_err(StepFailure::Failed)?;
            tracing::info!(instance = id, "change applied; health gate");
        }
        crash_at("gate", id);
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
        gate.map_err(StepFailure::Failed)?;
        Ok(if already {
            StepOutcome::AlreadyDone
        } else {
            StepOutcome::Done
        })
    }

    /// The health gate: the instance runs, shows the change, and (a replica) replicates
    /// without error and has applied what its source had when it was asked; polled until
    /// true or `gate_timeout`, never a fixed sleep.
    pub async fn gate(&self, cluster: &str, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.gate_timeout;
        // No database credentials (AWS): the control plane alone (see `gate_once`).
        let creds = if self.provider.sql_access() {
            self.provider.credentials().map_err(|e| e.to_string())?
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
                return Err(format!(
                    "{id} did not pass its health gate within {:?}: {last}",
                    self.gate_timeout
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    async fn gate_once(
        &self,
        creds: &Credentials,
        cluster: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        let inst = self
            .provider
            .describe_instance(id)
            .await
            .map_err(|e| e.to_string())?;
        if inst.status != InstanceStatus::Available {
            return Err(format!("{id} is {}", inst.status));
        }
        if !self.change.in_effect(&inst).await? {
            return Err(format!("{id} does not show the change yet"));
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
            .map_err(|e| e.to_string())?;
        let writer = clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|c| c.writer.clone())
            .ok_or_else(|| format!("cluster {cluster} is gone"))?;
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
                .map_err(|e| e.to_string())?;
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
) -> Result<(), String> {
    let connect = |id: String| async move {
        let ep = provider
            .describe_instance(&id)
            .await
            .map_err(|e| e.to_string())?
            .endpoint;
        let opts = crate::connect_options(creds, &creds.admin, &ep)
            .connect_timeout(Duration::from_secs(2));
        Server::connect(&opts)
            .await
            .map_err(|e| format!("{id}: {e}"))
    };
    let mut r = connect(replica.to_string()).await?;
    let st = r.replication_status().await.map_err(|e| e.to_string())?;
    if !st.healthy() {
        r.close().await;
        return Err(format!(
            "{replica}'s replication is not running: io {:?}, sql {}, error {:?}",
            st.io_running,
            st.sql_running,
            st.last_io_error.or(st.last_sql_error)
        ));
    }
    let mut w = connect(source.to_string()).await?;
    let pos = w.executed_position().await.map_err(|e| e.to_string());
    w.close().await;
    let pos = pos?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let res = r.wait_until_contains(&pos, left).await;
    r.close().await;
    res.map_err(|e| format!("{replica} has not caught up with {source} ({pos}): {e}"))
}

enum StepFailure {
    Failed(String),
    NeedsHuman(String),
}

fn fail(e: impl std::fmt::Display) -> StepFailure {
    StepFailure::Failed(e.to_string())
}

fn switchover_outcome(o: SwitchoverOutcome) -> Result<(StepOutcome, Option<u64>), StepFailure> {
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

fn not_run(step: &PlannedStep) -> StepReport {
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

async fn stop_probe(h: dbshift_probe::ProbeHandle) -> ProbeReport {
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

/// Marks the probe's chart with the switchover's steps.
struct MarkObserver(Option<dbshift_probe::Marker>);

impl switchover::Observer for MarkObserver {
    fn event(&self, label: &str) {
        tracing::info!("{label}");
        if let Some(m) = &self.0 {
            if label.starts_with("promoted") {
                m.mark("promoted");
            } else if label == "fence: start" {
                m.mark("fence");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbshift_provider::Endpoint;

    fn inst(id: &str, cluster: &str, role: Role, ca: &str, status: InstanceStatus) -> Instance {
        Instance {
            id: id.into(),
            cluster: cluster.into(),
            role,
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            },
            engine: "mariadb".into(),
            engine_version: "11".into(),
            status,
            ca: ca.into(),
            encrypted: false,
            tags: [("env".to_string(), cluster.replace("lab-", "e"))]
                .into_iter()
                .collect(),
        }
    }

    fn fleet(n: usize) -> (Vec<Cluster>, Vec<Instance>) {
        let mut cs = Vec::new();
        let mut is = Vec::new();
        for c in 1..=n {
            let name = format!("lab-{c}");
            let ids: Vec<String> = (1..=3).map(|i| format!("{name}-{i}")).collect();
            for (k, id) in ids.iter().enumerate() {
                let role = if k == 0 { Role::Writer } else { Role::Reader };
                is.push(inst(id, &name, role, "old", InstanceStatus::Available));
            }
            cs.push(Cluster {
                name: name.clone(),
                writer: ids[0].clone(),
                instances: ids,
                gtid_domain_id: Some(c as u32),
            });
        }
        (cs, is)
    }

    fn opts(mode: Mode, k: usize, filters: Vec<Filter>) -> PlanOptions {
        PlanOptions {
            kind: "ca-rotate".into(),
            target: "new".into(),
            mode,
            concurrency: k,
            cooldown_ms: 0,
            start_stopped: false,
            max_failures: 0,
            filters,
            costs: Costs::default(),
        }
    }

    fn done(i: &Instance) -> bool {
        i.ca == "new"
    }

    #[test]
    fn globs() {
        assert!(glob("lab-*", "lab-12"));
        assert!(glob("lab-1?", "lab-12"));
        assert!(!glob("lab-1?", "lab-1"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("lab-1-1", "lab-1-1"));
    }

    #[test]
    fn filters_parse_and_combine() {
        assert_eq!(
            Filter::parse("env=e1"),
            Ok(Filter::Tag("env".into(), "e1".into()))
        );
        assert_eq!(Filter::parse("lab-*"), Ok(Filter::Name("lab-*".into())));
        assert!(Filter::parse("=x").is_err());
        let i = inst(
            "lab-1-2",
            "lab-1",
            Role::Reader,
            "old",
            InstanceStatus::Available,
        );
        assert!(in_scope(&[], &i));
        assert!(in_scope(
            &[Filter::Name("lab-2".into()), Filter::Name("lab-1".into())],
            &i
        ));
        assert!(in_scope(&[Filter::Name("lab-1-2".into())], &i));
        assert!(!in_scope(
            &[
                Filter::Name("lab-1".into()),
                Filter::Tag("env".into(), "e2".into())
            ],
            &i
        ));
    }

    #[test]
    fn readers_first_then_the_writer_in_natural_cluster_order() {
        let (cs, is) = fleet(10);
        let p = build_plan(opts(Mode::NoRestart, 4, vec![]), &cs, &is, &done).unwrap();
        let names: Vec<&str> = p.clusters.iter().map(|c| c.cluster.as_str()).collect();
        assert_eq!(names[..3], ["lab-1", "lab-2", "lab-3"]);
        assert_eq!(names[9], "lab-10");
        let order: Vec<&str> = p.clusters[0]
            .steps
            .iter()
            .map(|s| s.instance.as_str())
            .collect();
        assert_eq!(order, ["lab-1-2", "lab-1-3", "lab-1-1"]);
        assert!(p.clusters[0]
            .steps
            .iter()
            .all(|s| s.action == Action::NoRestart));
        assert_eq!(p.to_change, 30);
        // 10 clusters of 3 instances on 4 slots: 3 rounds.
        let per = Costs::default().no_restart_ms;
        assert_eq!(p.estimate.serial_ms, 30 * per);
        assert_eq!(p.estimate.critical_path_ms, 9 * per);
    }

    #[test]
    fn failover_first_moves_the_writer_to_a_changed_reader_then_restarts_it() {
        let (cs, is) = fleet(1);
        let p = build_plan(opts(Mode::FailoverFirst, 1, vec![]), &cs, &is, &done).unwrap();
        let actions: Vec<(&str, Action)> = p.clusters[0]
            .steps
            .iter()
            .map(|s| (s.instance.as_str(), s.action.clone()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("lab-1-2", Action::Restart),
                ("lab-1-3", Action::Restart),
                (
                    "lab-1-1",
                    Action::Switchover {
                        to: "lab-1-2".into()
                    }
                ),
                ("lab-1-1", Action::Restart),
            ]
        );
        assert_eq!(p.to_change, 3);
    }

    #[test]
    fn done_and_stopped_instances_are_skipped_or_started() {
        let (cs, mut is) = fleet(1);
        is[1].ca = "new".into();
        is[2].status = InstanceStatus::Stopped;
        let p = build_plan(opts(Mode::NoRestart, 1, vec![]), &cs, &is, &done).unwrap();
        let s = &p.clusters[0].steps;
        assert!(matches!(&s[0].action, Action::Skip { reason } if reason.contains("already")));
        assert!(matches!(&s[1].action, Action::Skip { reason } if reason.contains("stopped")));
        assert_eq!(s[2].action, Action::NoRestart);
        assert_eq!(p.skipped, 2);
        let mut o = opts(Mode::NoRestart, 1, vec![]);
        o.start_stopped = true;
        let p = build_plan(o, &cs, &is, &done).unwrap();
        assert_eq!(
            p.clusters[0].steps[1].action,
            Action::StartChangeStop { restart: false }
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let (cs, is) = fleet(2);
        assert!(matches!(
            build_plan(opts(Mode::Restart, 0, vec![]), &cs, &is, &done),
            Err(RolloutError::BadInput(_))
        ));
        let e = build_plan(
            opts(Mode::Restart, 1, vec![Filter::Name("prod-*".into())]),
            &cs,
            &is,
            &done,
        )
        .unwrap_err();
        assert!(e.to_string().contains("prod-*"), "{e}");
        let e = build_plan(
            opts(
                Mode::Restart,
                1,
                vec![
                    Filter::Name("lab-1".into()),
                    Filter::Tag("env".into(), "e2".into()),
                ],
            ),
            &cs,
            &is,
            &done,
        )
        .unwrap_err();
        assert!(e.to_string().contains("together"), "{e}");
    }

    #[test]
    fn the_fingerprint_follows_the_fleet() {
        let (cs, mut is) = fleet(2);
        let a = build_plan(opts(Mode::Restart, 1, vec![]), &cs, &is, &done).unwrap();
        let b = build_plan(opts(Mode::Restart, 1, vec![]), &cs, &is, &done).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        is[4].status = InstanceStatus::Stopped;
        let c = build_plan(opts(Mode::Restart, 1, vec![]), &cs, &is, &done).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn critical_path_on_k_slots() {
        assert_eq!(critical_path(&[], 4), 0);
        assert_eq!(critical_path(&[5, 5, 5, 5, 5], 4), 10);
        assert_eq!(critical_path(&[5, 5, 5], 1), 15);
        assert_eq!(critical_path(&[10, 1, 1, 1], 2), 10);
    }
}
