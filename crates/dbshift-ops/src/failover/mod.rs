//! Failover: give a cluster a new writer, planned or not.
//!
//! A healthy writer is moved by the switchover core (`switchover.rs`), never by a second
//! implementation. A dead writer (unreachable) is handled here: fenced *first* (the provider
//! stops it, a proxy in front holds clients), so that a partition can never leave two writers;
//! then the most advanced replica is chosen by what it *received from the writer* (what its IO
//! thread received, then what it applied, by GTID; never the server's own current position,
//! MariaDB's `gtid_current_pos`, which a replica's own binlogged statement moves), it applies
//! its relay log, is promoted (replication
//! reset, events enabled, `read_only=OFF`), the cluster name and the proxy are redirected to
//! it, and every other replica is re-pointed to it by GTID. Each step is journaled before and
//! after; the report gives the time of each phase (detection, fencing, promotion, re-pointing).
//!
//! This module must never make a server writable while the old writer may still accept
//! writes: if the provider cannot stop it, nothing is promoted.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use dbshift_db::dialect::{SourceSpec, SourceStart};
use dbshift_db::status::IoState;
use dbshift_db::{ReplicationPosition, Server};
use dbshift_provider::{Credentials, Endpoint, Provider};
use serde::Serialize;

use crate::endpoints::Endpoints;
use crate::error::{StepError, StepResult};
use crate::events::{Event, Observer, Workflow};
use crate::journal::{Journal, RunStatus};
use crate::ms;
use crate::proxy_admin::ProxySet;
use crate::runner::{Begun, StepRunner};
use crate::switchover::{self, SwitchoverError, SwitchoverRequest};

mod assess;
mod choose;
mod promote;
mod repoint;
mod unplanned;

pub use assess::assess;
use assess::{assess_as, connect_within};
use choose::refusal_error;
pub use choose::{choose, Refusal};

/// The journal kind of an unplanned failover run.
pub const RUN_KIND: &str = "failover";

/// Steps of an unplanned failover, in order; the names are the journal's.
pub const STEPS: &[&str] = &[
    "detect",
    "fence",
    "choose",
    "apply_relay_log",
    "redirect",
    "promote",
    "repoint",
    "verify",
];

/// How long a proxy in front of the cluster lets open transactions finish at the fence (the
/// writer is dead: nothing will finish; the bound only keeps the pause short).
const PROXY_DRAIN_MS: u64 = 200;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct FailoverRequest {
    pub cluster: String,
    /// The replica to promote; the most advanced one when `None`.
    pub to: Option<String>,
    /// How long dbshift tries to reach the writer before it counts as dead.
    pub writer_timeout: Duration,
    /// Bound of the chosen replica's relay log apply, and of the planned switchover's wait.
    pub timeout: Duration,
    /// Planned path (healthy writer): the switchover guards' lag limits.
    pub max_lag_transactions: u64,
    pub max_lag_seconds: u64,
    /// Time already spent detecting the failure (the watcher's), for the report.
    pub detection: Duration,
    /// Refuse instead of running the planned switchover when the writer answers (the
    /// watcher: a writer that came back needs no failover).
    pub unplanned_only: bool,
}

impl FailoverRequest {
    pub fn new(cluster: &str) -> FailoverRequest {
        FailoverRequest {
            cluster: cluster.to_string(),
            to: None,
            writer_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            max_lag_transactions: 100,
            max_lag_seconds: 5,
            detection: Duration::ZERO,
            unplanned_only: false,
        }
    }
}

/// One replica as a failover candidate, as its server describes itself.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub id: String,
    pub reachable: bool,
    /// The IO thread: `Yes`, `No`, `Connecting`.
    pub io_running: Option<IoState>,
    pub sql_running: bool,
    pub io_error: Option<String>,
    pub sql_error: Option<String>,
    /// What the IO thread received from the writer (MariaDB `Gtid_IO_Pos`, MySQL
    /// `Retrieved_Gtid_Set`).
    pub gtid_io_pos: Option<ReplicationPosition>,
    /// What the SQL thread applied (MariaDB `gtid_slave_pos`, MySQL `gtid_executed`); the
    /// field keeps its first name for the JSON report.
    pub gtid_slave_pos: Option<ReplicationPosition>,
    /// Transactions received and not yet applied.
    pub relay_backlog: u64,
    pub seconds_behind: Option<u64>,
    pub read_only: Option<bool>,
    /// It has a replication source configured (a former writer that came back has none).
    pub configured: bool,
    /// Why it cannot be promoted, if it cannot.
    pub unfit: Option<String>,
    /// Heartbeats the writer sent while it had nothing else to send (MariaDB
    /// `Slave_received_heartbeats`; MySQL's performance_schema count), as far as the server
    /// reports them. With `source_log` it shows whether the replica still hears the writer.
    pub heartbeats: Option<u64>,
    /// The heartbeat period the replica asked for, in milliseconds.
    pub heartbeat_period_ms: Option<u64>,
    /// `Master_Log_File:Read_Master_Log_Pos`: how far its IO thread has fetched.
    pub source_log: Option<String>,
}

impl Candidate {
    /// What it holds from the writer, applied or in its relay log: the union of what its IO
    /// thread received and what it applied (a restarted IO thread starts from the latter).
    /// `None`: nothing known.
    pub fn received(&self) -> Option<ReplicationPosition> {
        match (&self.gtid_io_pos, &self.gtid_slave_pos) {
            (Some(io), Some(applied)) => Some(io.merge(applied)),
            (Some(p), None) | (None, Some(p)) => Some(p.clone()),
            (None, None) => None,
        }
    }

    /// Whether its IO thread says the writer is gone (not connected, or a connect error).
    pub fn sees_writer_down(&self) -> bool {
        self.reachable && (self.io_running != Some(IoState::Yes) || self.io_error.is_some())
    }
}

/// The writer and its replicas as dbshift sees them now.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub cluster: String,
    pub writer: String,
    pub writer_reachable: bool,
    pub writer_error: Option<String>,
    pub replicas: Vec<Candidate>,
}

impl Assessment {
    /// Dead: dbshift cannot reach the writer, at least one replica answers, and every replica
    /// that answers says its IO thread lost the writer too.
    pub fn writer_dead(&self) -> bool {
        self.writer_dead_or_silent(&Default::default())
    }

    /// As [`Assessment::writer_dead`], where a replica in `silent` (it heard nothing from the
    /// writer, neither an event nor a heartbeat, for several heartbeat periods: see
    /// `watch.rs`) agrees too, though its IO thread has not yet given up (that takes
    /// `slave_net_timeout` for a hung or cut-off writer).
    pub fn writer_dead_or_silent(&self, silent: &std::collections::BTreeSet<String>) -> bool {
        let answering: Vec<&Candidate> = self.replicas.iter().filter(|c| c.reachable).collect();
        !self.writer_reachable
            && !answering.is_empty()
            && answering
                .iter()
                .all(|c| c.sees_writer_down() || silent.contains(&c.id))
    }
}

/// Errors that stop a failover before it changes anything, or a journal/control plane gone.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// Bad input: nothing changed (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// Refused: nothing changed (exit 1).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Switchover(#[from] SwitchoverError),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// Another command holds the cluster: nothing changed.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

/// Milliseconds of each phase of an unplanned failover.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// From the first failed check of the writer to the decision (the watcher's, or the
    /// command's own look at the servers).
    pub detection_ms: u64,
    /// Proxy paused, old writer stopped by the provider.
    pub fencing_ms: u64,
    /// Candidate chosen, relay log applied, replication reset, redirect, `read_only=OFF`.
    pub promotion_ms: u64,
    /// The other replicas pointed at the new writer.
    pub repointing_ms: u64,
    /// From the start of the fence to the new writer accepting writes.
    pub write_gap_ms: u64,
}

/// What a finished unplanned failover did.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub run_id: String,
    pub cluster: String,
    pub old_writer: String,
    pub new_writer: String,
    pub phases: Phases,
    /// The new writer's position when it was promoted (everything it had received).
    pub promoted_at: String,
    pub repointed: Vec<String>,
    pub candidates: Vec<Candidate>,
    pub step_ms: Vec<(String, u64)>,
    pub warnings: Vec<String>,
    /// It continued a failover whose process was killed part way (same run id).
    pub resumed: bool,
}

/// How a failover ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FailoverOutcome {
    /// The writer was healthy: the switchover core moved it.
    Planned {
        run_id: String,
        outcome: switchover::Outcome,
    },
    /// The writer was dead: fenced, a replica promoted, the others re-pointed.
    Unplanned(FailoverReport),
    /// Stopped part way (after the fence): the reason says what to look at.
    NeedsHuman { run_id: String, reason: String },
}

impl FailoverOutcome {
    /// 0 done, 1 refused or rolled back, 3 needs a human.
    pub fn exit_code(&self) -> u8 {
        match self {
            FailoverOutcome::Planned { outcome, .. } => outcome.exit_code(),
            FailoverOutcome::Unplanned(r) if r.warnings.is_empty() => 0,
            FailoverOutcome::Unplanned(_) | FailoverOutcome::NeedsHuman { .. } => 3,
        }
    }
}

/// The plan, as `--plan` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverPlan {
    pub assessment: Assessment,
    /// `planned` (the switchover core) or `unplanned`.
    pub mode: String,
    pub new_writer: String,
    pub steps: Vec<String>,
}

/// Look, decide planned or unplanned, and name the new writer; changes nothing.
pub async fn plan(
    provider: &dyn Provider,
    req: &FailoverRequest,
) -> Result<FailoverPlan, FailoverError> {
    let a = assess(provider, &req.cluster, req.writer_timeout).await?;
    let new_writer = choose(&a.writer, &a.replicas, req.to.as_deref()).map_err(refusal_error)?;
    if !a.writer_reachable {
        refuse_unfenceable(provider, &a)?;
    }
    let (mode, steps) = if a.writer_reachable {
        let params = switchover::prepare(provider, &switchover_request(req, &new_writer)).await?;
        ("planned", switchover::plan(&params).steps)
    } else {
        let others: Vec<&str> = a
            .replicas
            .iter()
            .filter(|c| c.id != new_writer)
            .map(|c| c.id.as_str())
            .collect();
        (
            "unplanned",
            vec![
                format!(
                    "detect: {} unreachable ({})",
                    a.writer,
                    a.writer_error.as_deref().unwrap_or("?")
                ),
                format!("fence {}: proxy paused (if any), instance stopped by the provider", a.writer),
                format!(
                    "choose: the most advanced replica by what it received, then applied (now {new_writer})"
                ),
                format!("apply relay log on {new_writer} (at most {} ms)", ms(req.timeout)),
                format!("redirect: {} resolves to {new_writer}; proxy switched", a.cluster),
                format!("promote {new_writer}: replication stopped and forgotten, events enabled, read_only=OFF; proxy resumed"),
                format!(
                    "re-point {} to {new_writer} by GTID",
                    if others.is_empty() { "no other replica".to_string() } else { others.join(", ") }
                ),
                "verify: one writable server, replicas following it".to_string(),
            ],
        )
    };
    Ok(FailoverPlan {
        assessment: a,
        mode: mode.into(),
        new_writer,
        steps,
    })
}

/// Refused before anything changes when the provider cannot stop the writer that does not
/// answer: it may still be alive and take writes, and a promotion would make two writers.
fn refuse_unfenceable(provider: &dyn Provider, a: &Assessment) -> Result<(), FailoverError> {
    match provider.cannot_stop(&a.cluster) {
        None => Ok(()),
        Some(why) => Err(FailoverError::Refused(format!(
            "{} does not answer ({}) and cannot be fenced: {why}. No replica was promoted",
            a.writer,
            a.writer_error.as_deref().unwrap_or("?")
        ))),
    }
}

fn switchover_request(req: &FailoverRequest, to: &str) -> SwitchoverRequest {
    SwitchoverRequest {
        cluster: req.cluster.clone(),
        to: to.to_string(),
        max_lag_transactions: req.max_lag_transactions,
        max_lag_seconds: req.max_lag_seconds,
        timeout: req.timeout,
        hooks: Vec::new(),
        allow_statement_binlog: false,
    }
}

/// Fail over `req.cluster`: the switchover core when its writer answers; otherwise fence it,
/// promote the most advanced replica and re-point the others.
pub async fn run(
    provider: &dyn Provider,
    journal: &Journal,
    req: &FailoverRequest,
    observer: &dyn Observer,
) -> Result<FailoverOutcome, FailoverError> {
    let looked = Instant::now();
    // Held for the whole failover (the planned path's switchover core shares it): a second
    // failover of the cluster, a watcher's or an operator's, is refused while this one runs.
    let _lock = journal
        .locks()
        .acquire(&req.cluster, &format!("failover of {}", req.cluster))
        .await?;
    if let Some(run) = interrupted(journal, &req.cluster).await? {
        let old = run.params["old_writer"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kept = run
            .step_detail("choose")
            .and_then(|d| d["new_writer"].as_str())
            .map(str::to_string);
        let a = assess_as(provider, &req.cluster, req.writer_timeout, Some(&old)).await?;
        match superseded(provider, &a, &old, kept.as_deref()).await? {
            Some(why) => {
                // Continuing it would promote a server the cluster no longer wants: closed,
                // and this failover starts from the cluster as it is.
                tracing::warn!(run = %run.id, "not continuing: {why}");
                journal
                    .set_status(
                        &run.id,
                        RunStatus::Failed,
                        Some(&format!(
                            "not continued: the cluster changed since it was interrupted ({why})"
                        )),
                    )
                    .await?;
            }
            None if !a.writer_reachable || run.step_begun("fence") => {
                return resume(provider, journal, req, observer, run, a, looked).await;
            }
            None => {
                // Cut short before it fenced anything, and the writer answers again: nothing
                // was changed; that run ends here and this one starts afresh.
                journal
                    .set_status(
                        &run.id,
                        RunStatus::NeedsHuman,
                        Some(&format!(
                            "interrupted before the fence; {old} answered again when `dbshift \
                             failover` ran next, so this run was not continued (nothing had \
                             been changed)"
                        )),
                    )
                    .await?;
            }
        }
    }
    let a = assess(provider, &req.cluster, req.writer_timeout).await?;
    let chosen = choose(&a.writer, &a.replicas, req.to.as_deref()).map_err(refusal_error)?;
    if a.writer_reachable && req.unplanned_only {
        return Err(FailoverError::Refused(format!(
            "{} answers again: no failover",
            a.writer
        )));
    }
    if a.writer_reachable {
        tracing::info!(cluster = %req.cluster, to = %chosen, "the writer answers: planned switchover");
        let params = switchover::prepare(provider, &switchover_request(req, &chosen)).await?;
        let (run_id, outcome) = switchover::run(provider, journal, params, observer).await?;
        return Ok(FailoverOutcome::Planned { run_id, outcome });
    }
    refuse_unfenceable(provider, &a)?;
    let detection = req.detection + looked.elapsed();
    let params = serde_json::json!({
        "cluster": req.cluster,
        "old_writer": a.writer,
        "to": req.to,
        "timeout_ms": ms(req.timeout),
    });
    let run_id = journal.create_run(RUN_KIND, &req.cluster, &params).await?;
    tracing::warn!(run = %run_id, writer = %a.writer, "unplanned failover started");
    let u = Unplanned {
        provider,
        journal,
        steps: StepRunner::new(journal, &run_id, Workflow::Failover, observer),
        creds: provider.credentials_for(&req.cluster)?,
        endpoints: Endpoints::default(),
        run: run_id,
        req: req.clone(),
        old: a.writer.clone(),
        new: chosen,
        keep_new: false,
        resumed: false,
        proxy: None,
        warnings: Vec::new(),
    };
    finish(u, a, detection).await
}

/// Why an interrupted failover must not be continued, if it must not: the cluster moved on
/// without it (its name at a server that is neither the run's old writer nor its choice, or
/// such a server writable), by another run or by hand. Continuing would promote a second
/// writer.
async fn superseded(
    provider: &dyn Provider,
    a: &Assessment,
    old: &str,
    kept: Option<&str>,
) -> Result<Option<String>, FailoverError> {
    let ours = |id: &str| id == old || Some(id) == kept;
    let named = provider
        .list_clusters()
        .await?
        .into_iter()
        .find(|c| c.name == a.cluster)
        .map(|c| c.writer);
    if let Some(n) = named.as_deref().filter(|n| !ours(n)) {
        return Ok(Some(format!(
            "{} resolves to {n}, not {old} nor {}",
            a.cluster,
            kept.unwrap_or("a chosen replica")
        )));
    }
    let writable: Vec<&str> = a
        .replicas
        .iter()
        .filter(|r| r.reachable && r.read_only == Some(false) && !ours(&r.id))
        .map(|r| r.id.as_str())
        .collect();
    Ok((!writable.is_empty()).then(|| format!("{} writable", writable.join(", "))))
}

/// The newest unplanned failover of `cluster` that never ended (its process was killed), with
/// its steps. Older ones, if any, are closed as superseded by it.
async fn interrupted(
    journal: &Journal,
    cluster: &str,
) -> Result<Option<crate::journal::RunRecord>, FailoverError> {
    let mut open = journal.runs().await?.into_iter().filter(|r| {
        r.kind == RUN_KIND
            && r.target == cluster
            && r.status == RunStatus::Running
            && journal.check_same_fleet(r).is_ok()
    });
    let Some(newest) = open.next() else {
        return Ok(None);
    };
    for older in open {
        journal
            .set_status(
                &older.id,
                RunStatus::NeedsHuman,
                Some(&format!(
                    "interrupted, and superseded by the later failover {}",
                    newest.id
                )),
            )
            .await?;
    }
    Ok(Some(journal.run(&newest.id).await?))
}

/// Continue an unplanned failover whose process was killed part way: the same run, its old
/// writer fenced again (stopping a stopped server is a no-op), its choice kept once made (the
/// chosen replica may already have stopped replicating or been promoted, so it no longer
/// looks like a candidate), every later step run again (each is idempotent).
async fn resume(
    provider: &dyn Provider,
    journal: &Journal,
    req: &FailoverRequest,
    observer: &dyn Observer,
    run: crate::journal::RunRecord,
    a: Assessment,
    looked: Instant,
) -> Result<FailoverOutcome, FailoverError> {
    let kept = run
        .step_detail("choose")
        .and_then(|d| d["new_writer"].as_str())
        .map(str::to_string);
    let new = match &kept {
        Some(n) => n.clone(),
        None => match choose(&a.writer, &a.replicas, req.to.as_deref()) {
            Ok(n) => n,
            Err(r) => {
                let reason = format!(
                    "continuing the interrupted failover {}: {r}. {} may be stopped and no \
                     replica was promoted: clients cannot write",
                    run.id, a.writer
                );
                journal
                    .set_status(&run.id, RunStatus::NeedsHuman, Some(&reason))
                    .await?;
                return Ok(FailoverOutcome::NeedsHuman {
                    run_id: run.id,
                    reason,
                });
            }
        },
    };
    tracing::warn!(run = %run.id, old = %a.writer, new = %new, "continuing an interrupted failover");
    journal
        .end(
            &run.id,
            "resumed",
            serde_json::json!({ "new_writer": new, "choice_kept": kept.is_some() }),
        )
        .await?;
    let u = Unplanned {
        provider,
        journal,
        steps: StepRunner::new(journal, &run.id, Workflow::Failover, observer),
        creds: provider.credentials_for(&req.cluster)?,
        endpoints: Endpoints::default(),
        run: run.id.clone(),
        req: req.clone(),
        old: a.writer.clone(),
        new,
        keep_new: kept.is_some(),
        resumed: true,
        proxy: None,
        warnings: Vec::new(),
    };
    finish(u, a, req.detection + looked.elapsed()).await
}

/// Drive an unplanned failover and record how it ended.
async fn finish(
    mut u: Unplanned<'_>,
    a: Assessment,
    detection: Duration,
) -> Result<FailoverOutcome, FailoverError> {
    let (journal, run_id) = (u.journal, u.run.clone());
    match u.drive(a, detection).await? {
        Ok(report) => {
            let (status, msg) = if report.warnings.is_empty() {
                (RunStatus::Done, "done".to_string())
            } else {
                (RunStatus::NeedsHuman, report.warnings.join("; "))
            };
            journal.set_status(&run_id, status, Some(&msg)).await?;
            Ok(FailoverOutcome::Unplanned(report))
        }
        Err(reason) => {
            let reason = reason.to_string();
            journal
                .set_status(&run_id, RunStatus::NeedsHuman, Some(&reason))
                .await?;
            Ok(FailoverOutcome::NeedsHuman { run_id, reason })
        }
    }
}

struct Unplanned<'a> {
    provider: &'a dyn Provider,
    journal: &'a Journal,
    /// Journals, times and reports each step.
    steps: StepRunner<'a>,
    creds: Credentials,
    /// The servers' endpoints, resolved at the start and again after the redirect.
    endpoints: Endpoints,
    run: String,
    req: FailoverRequest,
    old: String,
    new: String,
    /// An interrupted run chose `new` already: keep it.
    keep_new: bool,
    /// This continues an interrupted run.
    resumed: bool,
    proxy: Option<ProxySet>,
    warnings: Vec<String>,
}

fn db<T>(r: dbshift_db::Result<T>) -> StepResult<T> {
    r.map_err(StepError::from)
}
