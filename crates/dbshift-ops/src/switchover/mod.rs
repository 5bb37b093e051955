//! The switchover core: move a cluster's writer to one of its replicas with the least write
//! pause and nothing lost. Blue/green, CA rotation's failover-first mode, planned failover and
//! the proxy reuse this one implementation; there must never be a second.
//!
//! Steps (DESIGN.md, dbshift-ops): guards; fence the old writer (`event_scheduler=OFF`,
//! `read_only=ON` under a short lock wait, privileged sessions ended, `BACKUP STAGE
//! BLOCK_COMMIT` held as a lease); wait on the new writer for exactly the old writer's final
//! GTID position, then require the old `gtid_binlog_state` contained in the new one; the point
//! of no return (the new writer's replication is reset); the cluster name redirected; the new
//! writer promoted (events, `read_only=OFF`); hooks; then, outside the write gap, the old
//! writer demoted to a replica (`MASTER_DEMOTE_TO_SLAVE=1`), its leftover clients ended, the
//! siblings re-pointed by GTID; a final verification.
//!
//! Before the point of no return any failure puts the old writer back, writable. From it on,
//! only forward, or "needs a human" with the reason. At no instant are two servers writable:
//! the new writer is made writable only after the old one is fenced and the name redirected.
//! Every step is journaled before and after, and re-checks the servers when resumed.

use std::time::{Duration, Instant};

use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::server::{Fence, FenceOptions};
use dbshift_db::{History, Server};
use dbshift_provider::{Credentials, Endpoint, Provider, Rename};
use serde::{Deserialize, Serialize};

use crate::endpoints::Endpoints;
use crate::error::{StepError, StepResult};
use crate::events::{Event, Observer, Workflow};
use crate::guards::{run_guards, GuardLimits, GuardReport};
use crate::journal::{Journal, JournalError, RunRecord, RunStatus};
use crate::lock::{ClusterLock, LockError};
use crate::ms;
use crate::proxy_admin::ProxySet;
use crate::runner::{skip_on_resume, Begun, StepRunner};

mod demote;
mod engine;
mod fence;
mod promote;
mod redirect;
mod repoint;
mod verify;
mod view;
mod wait;

use fence::{bounded, release_lease};
use view::{cluster_changed, Moment};

/// How long a proxy in front of the cluster lets open transactions finish at the fence.
const PROXY_DRAIN_MS: u64 = 2000;

/// Bound of one statement on the fenced old writer over a kept connection (the lease): a
/// network that black-holes the connection must end the run (rolled back or "needs a human"),
/// never hang it. Connecting anew is bounded by the connect timeout.
const OLD_WRITER_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound of looking at one server to check that the cluster is what the run believes (connect,
/// `read_only`, replication): a server that does not answer in time counts as unreachable.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// Steps, in order; the names are the journal's.
pub const STEPS: &[&str] = &[
    "guards",
    "fence",
    "wait",
    "point_of_no_return",
    "redirect",
    "promote",
    "hooks",
    "demote_old_writer",
    "repoint_siblings",
    "verify",
];

/// Steps run again on resume even when journaled as ended: each re-checks the servers and
/// does only what is missing, and an ended one may have skipped a server that was unreachable
/// then (the old writer not demoted, a sibling not re-pointed: "`dbshift resume` makes it one").
const RECHECKED_ON_RESUME: &[&str] = &["demote_old_writer", "repoint_siblings", "verify"];

/// Errors that stop a switchover before it starts (bad input, unreachable control plane).
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
    /// Another command holds the cluster, or this run lost its lock.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// What the operator asked for. Stored in the journal (no secrets in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchoverParams {
    pub cluster: String,
    pub from: String,
    pub to: String,
    pub siblings: Vec<String>,
    pub max_lag_transactions: u64,
    pub max_lag_seconds: u64,
    /// Bound of the wait for the new writer to apply the old one's last transaction (ms).
    pub timeout_ms: u64,
    /// Bound of `read_only=ON` under a lock wait (ms), and its attempts.
    pub fence_lock_wait_ms: u64,
    pub fence_attempts: u32,
    pub hooks: Vec<String>,
    /// Replicas that are not re-pointed but must be read-only and caught up at the end: in a
    /// blue/green switch, the readers of both sides (each side keeps its own chain).
    #[serde(default)]
    pub followers: Vec<String>,
    /// How clients are moved to the new writer.
    #[serde(default)]
    pub redirect: Redirect,
    /// Bound of every statement dbshift runs on a server (`STOP SLAVE`, `CHANGE MASTER`,
    /// `KILL`...), in ms: past it the statement is cancelled and the step says so.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// The guards accept `binlog_format=STATEMENT` with a warning (`--allow-statement-binlog`).
    #[serde(default)]
    pub allow_statement_binlog: bool,
    /// What the provider's redirect will do, in words, as it answered when checked before
    /// the run ([`dbshift_provider::Redirect::check_redirect`]); for the plan.
    #[serde(default)]
    pub redirect_actions: Vec<String>,
}

impl SwitchoverParams {
    /// The limits the guards apply for these parameters.
    pub fn guard_limits(&self) -> GuardLimits {
        GuardLimits {
            max_lag_transactions: self.max_lag_transactions,
            max_lag_seconds: self.max_lag_seconds,
            allow_statement_binlog: self.allow_statement_binlog,
            ..GuardLimits::default()
        }
    }
}

fn default_statement_timeout_ms() -> u64 {
    ms(dbshift_db::server::DEFAULT_STATEMENT_TIMEOUT)
}

/// How a switchover moves clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redirect {
    /// The provider moves the cluster's name (the lab: at once; AWS: the rename swap, each
    /// rename journaled, minutes, plus DNS caches); a proxy in front is switched too.
    #[default]
    Name,
    /// Only the dbshift proxy in front of the cluster (milliseconds); the name stays.
    Proxy,
    /// Neither: the hooks tell the clients.
    None,
}

impl std::fmt::Display for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redirect::Name => "name",
            Redirect::Proxy => "proxy",
            Redirect::None => "none",
        })
    }
}

/// The journal kinds of runs that are this core (a blue/green switch is one, labelled so).
pub const RUN_KINDS: &[&str] = &["switchover", "bluegreen-switchover", "bluegreen-rollback"];

/// What the caller gives to start a switchover.
#[derive(Debug, Clone)]
pub struct SwitchoverRequest {
    pub cluster: String,
    pub to: String,
    pub max_lag_transactions: u64,
    pub max_lag_seconds: u64,
    pub timeout: Duration,
    pub hooks: Vec<String>,
    /// The guards accept `binlog_format=STATEMENT` with a warning.
    pub allow_statement_binlog: bool,
}

/// How a switchover ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The writer moved; the report says how long writes paused.
    Done(SwitchoverReport),
    /// A guard failed; nothing was changed.
    Refused(GuardReport),
    /// Something failed before the point of no return; the reason says what was put back
    /// (the old writer writable again) or that nothing had been changed.
    RolledBack { reason: String },
    /// The cluster is not what this run believes (another run, a human, a failover changed
    /// it): the run stopped before its next change and changed nothing more. `changed`: this
    /// run had changed something before (a fence), so an operator must look.
    ClusterChanged { reason: String, changed: bool },
    /// The state is uncertain or needs an operator: the reason says what to look at.
    NeedsHuman { reason: String },
}

impl Outcome {
    /// The exit code for the CLI: 0 done, 1 refused or rolled back, 3 needs a human.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Done(_) => 0,
            Outcome::Refused(_) | Outcome::RolledBack { .. } => 1,
            Outcome::ClusterChanged { changed: false, .. } => 1,
            Outcome::ClusterChanged { changed: true, .. } | Outcome::NeedsHuman { .. } => 3,
        }
    }
}

/// What a finished switchover did.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchoverReport {
    pub run_id: String,
    pub cluster: String,
    pub old_writer: String,
    pub new_writer: String,
    /// From the start of the fence to the new writer accepting writes (this process's view;
    /// the probe measures what clients saw).
    pub write_gap_ms: Option<u64>,
    /// The old writer's last GTID position, reached on the new writer.
    pub final_position: Option<String>,
    /// Milliseconds spent in each step.
    pub step_ms: Vec<(String, u64)>,
    pub warnings: Vec<String>,
}

/// The plan, as `--plan` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub params: SwitchoverParams,
    pub steps: Vec<String>,
}

/// Resolve names and check the request; changes nothing.
pub async fn prepare(
    provider: &dyn Provider,
    req: &SwitchoverRequest,
) -> Result<SwitchoverParams, SwitchoverError> {
    let clusters = provider.list_clusters().await?;
    let Some(cluster) = clusters.iter().find(|c| c.name == req.cluster) else {
        return Err(SwitchoverError::BadInput(format!(
            "unknown cluster {:?}; known: {}",
            req.cluster,
            clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if req.to == cluster.writer {
        return Err(SwitchoverError::BadInput(format!(
            "{} is already the writer of {}; name one of its replicas: {}",
            req.to,
            cluster.name,
            cluster
                .instances
                .iter()
                .filter(|i| **i != cluster.writer)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if !cluster.instances.contains(&req.to) {
        return Err(SwitchoverError::BadInput(format!(
            "{} is not an instance of {}; its instances: {}",
            req.to,
            cluster.name,
            cluster.instances.join(", ")
        )));
    }
    if req.timeout.is_zero() {
        return Err(SwitchoverError::BadInput(
            "--timeout must be more than zero".into(),
        ));
    }
    // A redirect that cannot work (an HAProxy that does not answer, a backend it does not
    // know) refuses the run here, with nothing changed, instead of after the point of no
    // return.
    let redirect_actions = provider.check_redirect(&cluster.name, &req.to).await?;
    Ok(SwitchoverParams {
        cluster: cluster.name.clone(),
        from: cluster.writer.clone(),
        to: req.to.clone(),
        siblings: cluster
            .instances
            .iter()
            .filter(|i| **i != cluster.writer && **i != req.to)
            .cloned()
            .collect(),
        max_lag_transactions: req.max_lag_transactions,
        max_lag_seconds: req.max_lag_seconds,
        timeout_ms: ms(req.timeout),
        fence_lock_wait_ms: 1000,
        fence_attempts: 3,
        statement_timeout_ms: ms(dbshift_db::server::DEFAULT_STATEMENT_TIMEOUT),
        hooks: req.hooks.clone(),
        followers: Vec::new(),
        redirect: Redirect::Name,
        allow_statement_binlog: req.allow_statement_binlog,
        redirect_actions,
    })
}

/// The steps a switchover would take, without taking them.
pub fn plan(params: &SwitchoverParams) -> Plan {
    let p = params;
    let steps = vec![
        format!("guards: replication {} <- {}, lag, errant transactions, binlog, filters, XA, online schema changes, definers, retention", p.to, p.from),
        format!("fence {}: event scheduler off, read-only (lock wait {} ms, {} attempts), end SUPER/READ_ONLY ADMIN sessions, hold the commit lease (MariaDB's BLOCK_COMMIT backup stage)", p.from, p.fence_lock_wait_ms, p.fence_attempts),
        format!("wait: {} applies {}'s last GTID (at most {} ms), gtid_binlog_state contained", p.to, p.from, p.timeout_ms),
        format!("point of no return: replication stopped and forgotten on {}", p.to),
        match p.redirect {
            Redirect::Name if !p.redirect_actions.is_empty() => format!("redirect: {} resolves to {}; {}", p.cluster, p.to, p.redirect_actions.join("; ")),
            Redirect::Name => format!("redirect: {} resolves to {} (the lab: at once; AWS: the holder of the name renamed away, then {} renamed to it, each journaled; minutes, plus DNS caches)", p.cluster, p.to, p.to),
            Redirect::Proxy => format!("redirect: the proxy in front of {} switches to {} ({} keeps its name)", p.cluster, p.to, p.cluster),
            Redirect::None => format!("redirect: none ({} keeps resolving as it does; hooks tell clients)", p.cluster),
        },
        format!("promote {}: events enabled, read_only=OFF", p.to),
        format!("hooks: {}", if p.hooks.is_empty() { "none".to_string() } else { p.hooks.join("; ") }),
        format!("demote {}: replica of {} (MASTER_DEMOTE_TO_SLAVE=1), events disabled, leftover clients ended", p.from, p.to),
        format!("re-point {} to {} by GTID", if p.siblings.is_empty() { "no sibling".to_string() } else { p.siblings.join(", ") }, p.to),
        "verify: one writable server, replication healthy and caught up".to_string(),
    ];
    Plan {
        params: params.clone(),
        steps,
    }
}

/// Start a switchover: journal it, then run it to its end.
pub async fn run(
    provider: &dyn Provider,
    journal: &Journal,
    params: SwitchoverParams,
    observer: &dyn Observer,
) -> Result<(String, Outcome), SwitchoverError> {
    run_as(provider, journal, "switchover", params, observer).await
}

/// [`run`], journaled as `kind` (one of [`RUN_KINDS`]).
pub async fn run_as(
    provider: &dyn Provider,
    journal: &Journal,
    kind: &str,
    params: SwitchoverParams,
    observer: &dyn Observer,
) -> Result<(String, Outcome), SwitchoverError> {
    debug_assert!(RUN_KINDS.contains(&kind));
    // The lock first: a second command on the cluster is refused here, before its run is
    // journaled or anything is read for it.
    let locks = lock_clusters(provider, journal, kind, &params).await?;
    let value = serde_json::to_value(&params).expect("params always serialize");
    let run_id = journal.create_run(kind, &params.cluster, &value).await?;
    tracing::info!(run = %run_id, "switchover started");
    let mut engine = Engine::new(provider, journal, run_id.clone(), params, observer)?;
    engine.locks = locks;
    let outcome = engine.drive(None).await?;
    Ok((run_id, outcome))
}

/// Continue a switchover that was cut short (dbshift killed, machine lost). The steps already
/// done are re-checked on the servers, not trusted from the journal.
pub async fn resume(
    provider: &dyn Provider,
    journal: &Journal,
    run_id: &str,
    observer: &dyn Observer,
) -> Result<Outcome, SwitchoverError> {
    let record = journal.run(run_id).await?;
    if !RUN_KINDS.contains(&record.kind.as_str()) {
        return Err(SwitchoverError::BadInput(format!(
            "run {run_id} is a {}, not a switchover",
            record.kind
        )));
    }
    if record.status != RunStatus::Running && record.status != RunStatus::NeedsHuman {
        return Err(SwitchoverError::BadInput(format!(
            "run {run_id} already ended ({}); nothing to resume",
            record.status
        )));
    }
    let params: SwitchoverParams = serde_json::from_value(record.params.clone()).map_err(|e| {
        SwitchoverError::BadInput(format!("run {run_id} has unreadable parameters: {e}"))
    })?;
    journal
        .check_same_fleet(&record)
        .map_err(|e| SwitchoverError::BadInput(e.to_string()))?;
    let locks = lock_clusters(provider, journal, &record.kind, &params).await?;
    journal
        .set_status(run_id, RunStatus::Running, Some("resumed"))
        .await?;
    let mut engine = Engine::new(provider, journal, run_id.to_string(), params, observer)?;
    engine.locks = locks;
    engine.drive(Some(record)).await
}

/// Lock every cluster a switchover touches (the cluster; for a blue/green switch both sides),
/// for the whole run.
async fn lock_clusters(
    provider: &dyn Provider,
    journal: &Journal,
    kind: &str,
    p: &SwitchoverParams,
) -> Result<Vec<ClusterLock>, SwitchoverError> {
    let mut scopes = vec![p.cluster.clone()];
    let ids = [&p.from, &p.to]
        .into_iter()
        .chain(p.siblings.iter())
        .chain(p.followers.iter());
    for id in ids {
        if let Ok(i) = provider.describe_instance(id).await {
            scopes.push(i.cluster);
        }
    }
    let what = format!("{kind} of {} ({} -> {})", p.cluster, p.from, p.to);
    Ok(journal.locks().acquire_all(&scopes, &what).await?)
}

struct Engine<'a> {
    provider: &'a dyn Provider,
    journal: &'a Journal,
    run: String,
    p: SwitchoverParams,
    /// Journals, times and reports each step.
    steps: StepRunner<'a>,
    creds: Credentials,
    /// The servers' endpoints, resolved at the start and again after the redirect.
    endpoints: Endpoints,
    /// The connection holding the BACKUP STAGE lease on the old writer.
    lease: Option<Server>,
    /// The dbshift proxy in front of the cluster, if one runs: clients are held there from the
    /// fence to the promotion instead of seeing errors.
    proxy: Option<ProxySet>,
    fence: Option<Fence>,
    fence_started: Option<Instant>,
    write_gap: Option<Duration>,
    final_position: Option<String>,
    warnings: Vec<String>,
    /// The clusters this run owns, held until it ends.
    locks: Vec<ClusterLock>,
}

/// Why a run stops before the point of no return.
enum Stop {
    /// Something failed: put the old writer back (if the cluster is still as it was).
    RollBack(String),
    /// The cluster changed under the run: change nothing more.
    Changed(String),
}

/// A server's error as a step's failure (before the point of no return it rolls back; after
/// it, needs a human).
fn db<T>(r: dbshift_db::Result<T>) -> StepResult<T> {
    r.map_err(StepError::from)
}

/// Run only the guards (the `check` command).
pub async fn check(
    provider: &dyn Provider,
    params: &SwitchoverParams,
) -> Result<GuardReport, SwitchoverError> {
    let creds = provider.credentials_for(&params.cluster)?;
    let old_ep = provider.describe_instance(&params.from).await?.endpoint;
    let new_ep = provider.describe_instance(&params.to).await?.endpoint;
    let mut old = Server::connect(&crate::connect_options(&creds, &creds.admin, &old_ep)).await?;
    let mut new = Server::connect(&crate::connect_options(&creds, &creds.admin, &new_ep)).await?;
    let limits = params.guard_limits();
    let report = run_guards(
        &mut old,
        &mut new,
        &params.from,
        &params.to,
        old_ep.port,
        &limits,
    )
    .await;
    old.close().await;
    new.close().await;
    Ok(report?)
}

/// The core's futures are `Send`: a caller may spawn them on any runtime thread (the rollout
/// runs switchovers beside its other clusters). A compile-time check.
#[allow(dead_code)]
fn _the_core_is_send(p: &dyn Provider, j: &Journal, params: SwitchoverParams, o: &dyn Observer) {
    fn is_send<T: Send>(_: T) {}
    is_send(run(p, j, params, o));
    is_send(resume(p, j, "run", o));
}
