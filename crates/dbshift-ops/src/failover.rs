//! Failover: give a cluster a new writer, planned or not.
//!
//! A healthy writer is moved by the switchover core (`switchover.rs`), never by a second
//! implementation. A dead writer (unreachable) is handled here: fenced *first* (the provider
//! stops it, a proxy in front holds clients), so that a partition can never leave two writers;
//! then the most advanced replica is chosen by what it *received from the writer*
//! (`Gtid_IO_Pos`, then `gtid_slave_pos`, per domain; never `gtid_current_pos`, which a
//! replica's own binlogged statement moves), it applies its relay log, is promoted (replication
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

use crate::journal::{Journal, RunStatus};
use crate::ms;
use crate::proxy_admin::ProxySet;
use crate::switchover::{self, Observer, SwitchoverError, SwitchoverRequest};

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
    /// What the IO thread received from the writer (MariaDB `Gtid_IO_Pos`).
    pub gtid_io_pos: Option<ReplicationPosition>,
    /// What the SQL thread applied (MariaDB `gtid_slave_pos`).
    pub gtid_slave_pos: Option<ReplicationPosition>,
    /// Transactions received and not yet applied.
    pub relay_backlog: u64,
    pub seconds_behind: Option<u64>,
    pub read_only: Option<bool>,
    /// It has a replication source configured (a former writer that came back has none).
    pub configured: bool,
    /// Why it cannot be promoted, if it cannot.
    pub unfit: Option<String>,
    /// `Slave_received_heartbeats` (MariaDB): heartbeats the writer sent while it had nothing
    /// else to send. With `source_log` it shows whether the replica still hears the writer.
    pub heartbeats: Option<u64>,
    /// `Slave_heartbeat_period` (MariaDB), in milliseconds.
    pub heartbeat_period_ms: Option<u64>,
    /// `Master_Log_File:Read_Master_Log_Pos`: how far its IO thread has fetched.
    pub source_log: Option<String>,
}

impl Candidate {
    /// What it holds from the writer, applied or in its relay log: per domain the further of
    /// `Gtid_IO_Pos` and `gtid_slave_pos` (a restarted IO thread starts from the latter).
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

fn options(creds: &Credentials, ep: &Endpoint, timeout: Duration) -> dbshift_db::ConnectOptions {
    crate::connect_options(creds, &creds.admin, ep).connect_timeout(timeout)
}

/// Connect, bounded as a whole by `timeout` (a hung server accepts TCP and never greets).
async fn connect_within(
    creds: &Credentials,
    ep: &Endpoint,
    timeout: Duration,
) -> Result<Server, String> {
    match tokio::time::timeout(timeout, Server::connect(&options(creds, ep, timeout))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", ms(timeout))),
    }
}

fn error_text(e: &Option<(u32, String)>) -> Option<String> {
    e.as_ref().map(|(code, msg)| format!("error {code}: {msg}"))
}

/// One replica's state, bounded by `timeout`.
async fn describe_candidate(
    creds: &Credentials,
    id: &str,
    ep: &Endpoint,
    timeout: Duration,
) -> Candidate {
    let mut c = Candidate {
        id: id.to_string(),
        reachable: false,
        io_running: None,
        sql_running: false,
        io_error: None,
        sql_error: None,
        gtid_io_pos: None,
        gtid_slave_pos: None,
        relay_backlog: 0,
        seconds_behind: None,
        read_only: None,
        configured: false,
        unfit: None,
        heartbeats: None,
        heartbeat_period_ms: None,
        source_log: None,
    };
    let mut s = match connect_within(creds, ep, timeout).await {
        Ok(s) => s,
        Err(e) => {
            c.unfit = Some(format!("unreachable: {e}"));
            return c;
        }
    };
    let read = async {
        let st = s.replication_status().await?;
        let slave_pos = s.applied_position().await?;
        let ro = s.read_only().await?;
        // Not every flavor reports them (then silence is never inferred).
        let heard = s.replica_heartbeats().await.unwrap_or_default();
        Ok::<_, dbshift_db::Error>((st, slave_pos, ro, heard))
    };
    match tokio::time::timeout(timeout * 2, read).await {
        Ok(Ok((st, slave_pos, ro, heard))) => {
            c.heartbeats = heard.received;
            c.heartbeat_period_ms = heard.period_ms;
            c.source_log = st.source_log.as_ref().map(|p| p.to_string());
            c.reachable = true;
            c.io_running = Some(st.io_running);
            c.sql_running = st.sql_running;
            c.io_error = error_text(&st.last_io_error);
            c.sql_error = error_text(&st.last_sql_error);
            c.seconds_behind = st.seconds_behind;
            c.gtid_io_pos = s.io_position(&st);
            c.relay_backlog = match &c.gtid_io_pos {
                Some(io) => slave_pos.behind(io).unwrap_or(0),
                None => 0,
            };
            c.gtid_slave_pos = Some(slave_pos);
            c.read_only = Some(ro);
            c.configured = st.configured;
            c.unfit = if !st.configured {
                Some("not a replica (no replication source)".into())
            } else if let Some(e) = &c.sql_error {
                Some(format!("its SQL thread failed: {e}"))
            } else if !st.sql_running {
                Some("its SQL thread is stopped".into())
            } else {
                None
            };
        }
        Ok(Err(e)) => c.unfit = Some(format!("its replication status could not be read: {e}")),
        Err(_) => c.unfit = Some("it did not answer in time".into()),
    }
    s.close().await;
    c
}

/// Look at the writer and every replica of `cluster`; changes nothing.
pub async fn assess(
    provider: &dyn Provider,
    cluster: &str,
    timeout: Duration,
) -> Result<Assessment, FailoverError> {
    assess_as(provider, cluster, timeout, None).await
}

/// As [`assess`], with `writer` taken as the writer instead of the one the provider names
/// (an interrupted failover may already have redirected the cluster to its new writer).
async fn assess_as(
    provider: &dyn Provider,
    cluster: &str,
    timeout: Duration,
    writer: Option<&str>,
) -> Result<Assessment, FailoverError> {
    let clusters = provider.list_clusters().await?;
    let Some(c) = clusters.iter().find(|c| c.name == cluster) else {
        return Err(FailoverError::BadInput(format!(
            "unknown cluster {cluster:?}; known: {}",
            clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let creds = provider.credentials()?;
    let writer_id = writer.unwrap_or(&c.writer).to_string();
    let writer_ep = provider.describe_instance(&writer_id).await?.endpoint;
    let writer_check = async {
        match connect_within(&creds, &writer_ep, timeout).await {
            Ok(mut s) => {
                let r = tokio::time::timeout(timeout, s.ping()).await;
                s.close().await;
                match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer to a query within {} ms", ms(timeout))),
                }
            }
            Err(e) => Err(e),
        }
    };
    let mut replica_eps = Vec::new();
    for id in c.instances.iter().filter(|i| **i != writer_id) {
        replica_eps.push((id.clone(), provider.describe_instance(id).await?.endpoint));
    }
    // The writer's bound is the caller's (detection speed); a replica gets at least a second,
    // so that a busy one is not taken for a broken one.
    let replica_timeout = timeout.max(Duration::from_secs(1));
    let replicas = futures::future::join_all(
        replica_eps
            .iter()
            .map(|(id, ep)| describe_candidate(&creds, id, ep, replica_timeout)),
    );
    let (writer, replicas) = futures::future::join(writer_check, replicas).await;
    Ok(Assessment {
        cluster: c.name.clone(),
        writer: writer_id,
        writer_reachable: writer.is_ok(),
        writer_error: writer.err(),
        replicas,
    })
}

/// Why no replica can be promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `--to` is not a replica of the cluster, or is the writer (exit 2).
    Unknown(String),
    /// `--to` names a replica that is broken or behind another (exit 2).
    BadTarget(String),
    /// No replica can be promoted (exit 1).
    NoHealthyReplica(String),
    /// The replicas' histories diverged: none has everything the others have (exit 3).
    Diverged(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unknown(m)
            | Refusal::BadTarget(m)
            | Refusal::NoHealthyReplica(m)
            | Refusal::Diverged(m) => f.write_str(m),
        }
    }
}

/// `a` against `b` (see [`ReplicationPosition::compare`]); an unknown position counts as
/// nothing received.
fn compare_positions(
    a: &Option<ReplicationPosition>,
    b: &Option<ReplicationPosition>,
) -> Option<Ordering> {
    match (a, b) {
        (Some(a), Some(b)) => a.compare(b),
        (Some(a), None) if a.is_empty() => Some(Ordering::Equal),
        (Some(_), None) => Some(Ordering::Greater),
        (None, Some(b)) if b.is_empty() => Some(Ordering::Equal),
        (None, Some(_)) => Some(Ordering::Less),
        (None, None) => Some(Ordering::Equal),
    }
}

/// A position for a message; nothing known reads as nothing.
fn shown(p: &Option<ReplicationPosition>) -> String {
    p.as_ref().map(|p| p.to_string()).unwrap_or_default()
}

/// Pick the replica to promote: among the fit ones, the most advanced by what it received
/// (then by what it applied); ties broken by `to`, then the smallest relay backlog, then the
/// id. `to`, when given, must be fit and not behind the most advanced one.
pub fn choose(writer: &str, candidates: &[Candidate], to: Option<&str>) -> Result<String, Refusal> {
    if let Some(t) = to {
        if t == writer {
            return Err(Refusal::Unknown(format!(
                "{t} is the writer that failed; name one of its replicas: {}",
                candidates
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !candidates.iter().any(|c| c.id == t) {
            return Err(Refusal::Unknown(format!(
                "{t} is not a replica of this cluster; its replicas: {}",
                candidates
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let fit: Vec<&Candidate> = candidates.iter().filter(|c| c.unfit.is_none()).collect();
    if fit.is_empty() {
        let why = candidates
            .iter()
            .map(|c| format!("{}: {}", c.id, c.unfit.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Refusal::NoHealthyReplica(format!(
            "no healthy replica to promote ({})",
            if why.is_empty() {
                "the cluster has no replica".into()
            } else {
                why
            }
        )));
    }
    if let Some(t) = to {
        let c = candidates
            .iter()
            .find(|c| c.id == t)
            .expect("checked above");
        if let Some(why) = &c.unfit {
            return Err(Refusal::BadTarget(format!(
                "--to {t} cannot be promoted: {why}"
            )));
        }
    }
    // Most advanced first; an incomparable pair (diverged histories, or each ahead in another
    // domain) leaves no safe choice.
    let mut best = fit[0];
    for c in &fit[1..] {
        match compare_positions(&c.received(), &best.received()) {
            Some(Ordering::Greater) => best = c,
            Some(Ordering::Less) => {}
            Some(Ordering::Equal) => {
                let applied = compare_positions(&c.gtid_slave_pos, &best.gtid_slave_pos);
                let key = |x: &Candidate| {
                    (
                        to != Some(x.id.as_str()),
                        x.relay_backlog,
                        x.seconds_behind.unwrap_or(0),
                        x.id.clone(),
                    )
                };
                match applied {
                    Some(Ordering::Greater) => best = c,
                    Some(Ordering::Less) => {}
                    _ if key(c) < key(best) => best = c,
                    _ => {}
                }
            }
            None => {
                return Err(Refusal::Diverged(format!(
                    "{} ({}) and {} ({}) each hold transactions the other lacks: promoting either \
                     would lose the other's; compare their relay logs by hand",
                    c.id,
                    shown(&c.received()),
                    best.id,
                    shown(&best.received())
                )))
            }
        }
    }
    // Every fit replica must be at or behind the chosen one, or re-pointing it would fail.
    for c in &fit {
        if compare_positions(&c.received(), &best.received()) == Some(Ordering::Greater) {
            return Err(Refusal::Diverged(format!(
                "{} is ahead of {} in one domain and behind in another",
                c.id, best.id
            )));
        }
    }
    if let Some(t) = to {
        if t != best.id {
            let c = candidates
                .iter()
                .find(|c| c.id == t)
                .expect("checked above");
            if compare_positions(&c.received(), &best.received()) == Some(Ordering::Less) {
                return Err(Refusal::BadTarget(format!(
                    "--to {t} is behind {}: it received {} while {} received {}; promoting it \
                     would lose those transactions (omit --to, or name {})",
                    best.id,
                    shown(&c.received()),
                    best.id,
                    shown(&best.received()),
                    best.id
                )));
            }
        }
    }
    Ok(best.id.clone())
}

fn refusal_error(r: Refusal) -> FailoverError {
    match r {
        Refusal::Unknown(m) | Refusal::BadTarget(m) => FailoverError::BadInput(m),
        Refusal::NoHealthyReplica(m) | Refusal::Diverged(m) => FailoverError::Refused(m),
    }
}

/// Look, decide planned or unplanned, and name the new writer; changes nothing.
pub async fn plan(
    provider: &dyn Provider,
    req: &FailoverRequest,
) -> Result<FailoverPlan, FailoverError> {
    let a = assess(provider, &req.cluster, req.writer_timeout).await?;
    let new_writer = choose(&a.writer, &a.replicas, req.to.as_deref()).map_err(refusal_error)?;
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
                    "choose: the most advanced replica by Gtid_IO_Pos, then gtid_slave_pos (now {new_writer})"
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

fn switchover_request(req: &FailoverRequest, to: &str) -> SwitchoverRequest {
    SwitchoverRequest {
        cluster: req.cluster.clone(),
        to: to.to_string(),
        max_lag_transactions: req.max_lag_transactions,
        max_lag_seconds: req.max_lag_seconds,
        timeout: req.timeout,
        hooks: Vec::new(),
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
        .acquire(&req.cluster, &format!("failover of {}", req.cluster))?;
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
        observer,
        creds: provider.credentials()?,
        run: run_id,
        req: req.clone(),
        old: a.writer.clone(),
        new: chosen,
        keep_new: false,
        resumed: false,
        proxy: None,
        step_ms: Vec::new(),
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
        observer,
        creds: provider.credentials()?,
        run: run.id.clone(),
        req: req.clone(),
        old: a.writer.clone(),
        new,
        keep_new: kept.is_some(),
        resumed: true,
        proxy: None,
        step_ms: Vec::new(),
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
    observer: &'a dyn Observer,
    creds: Credentials,
    run: String,
    req: FailoverRequest,
    old: String,
    new: String,
    /// An interrupted run chose `new` already: keep it.
    keep_new: bool,
    /// This continues an interrupted run.
    resumed: bool,
    proxy: Option<ProxySet>,
    step_ms: Vec<(String, u64)>,
    warnings: Vec<String>,
}

type Step<T> = Result<T, String>;

fn db<T>(r: dbshift_db::Result<T>) -> Step<T> {
    r.map_err(|e| e.to_string())
}

impl Unplanned<'_> {
    async fn endpoint(&self, id: &str) -> Step<Endpoint> {
        self.provider
            .describe_instance(id)
            .await
            .map(|i| i.endpoint)
            .map_err(|e| e.to_string())
    }

    async fn connect(&self, id: &str) -> Step<Server> {
        let ep = self.endpoint(id).await?;
        connect_within(&self.creds, &ep, Duration::from_secs(2))
            .await
            .map_err(|e| format!("{id}: {e}"))
    }

    fn source_spec(&self, ep: &Endpoint) -> SourceSpec {
        crate::replica_source(&self.creds, ep, SourceStart::Gtid)
    }

    /// Journal a step as begun, before it runs.
    async fn begin(&mut self, name: &str) -> Result<Instant, FailoverError> {
        // The cluster's lock, taken by `run` for the whole failover, still held, or the
        // failover stops before this step changes anything.
        if let Some(lock) = self.journal.locks().held(&self.req.cluster) {
            lock.check()?;
        }
        self.observer.event(&format!("{name}: start"));
        self.journal.begin(&self.run, name).await?;
        crate::crash_if(&format!("failover:{name}:begin"));
        Ok(Instant::now())
    }

    /// Journal a step's result; its error ends the failover as "needs a human".
    async fn end<T: Serialize>(
        &mut self,
        name: &str,
        started: Instant,
        r: Step<T>,
    ) -> Result<Step<T>, FailoverError> {
        match r {
            Ok(v) => {
                crate::crash_if(&format!("failover:{name}:run"));
                let detail = serde_json::to_value(&v).unwrap_or_default();
                self.journal.end(&self.run, name, detail).await?;
                crate::crash_if(&format!("failover:{name}:end"));
                self.step_ms.push((name.to_string(), ms(started.elapsed())));
                self.observer.event(&format!("{name}: done"));
                Ok(Ok(v))
            }
            Err(e) => {
                self.journal.failed(&self.run, name, &e).await?;
                Ok(Err(format!("{name}: {e}")))
            }
        }
    }

    async fn drive(
        &mut self,
        first: Assessment,
        detection: Duration,
    ) -> Result<Step<FailoverReport>, FailoverError> {
        let proxies = self.provider.proxies_of(&self.req.cluster).await?;
        match ProxySet::of(&proxies, Duration::from_secs(5)) {
            Ok(set) => self.proxy = set,
            Err(e) => self.warnings.push(e),
        }
        let t = self.begin("detect").await?;
        let detected = serde_json::to_value(&first).unwrap_or_default();
        if let Err(e) = self.end("detect", t, Ok::<_, String>(detected)).await? {
            return Ok(Err(e));
        }
        let mut phases = Phases {
            detection_ms: ms(detection),
            ..Default::default()
        };

        let fence_started = Instant::now();
        let old = self.old.clone();
        let t = self.begin("fence").await?;
        let fenced = self.fence().await;
        if let Err(e) = self.end("fence", t, fenced).await? {
            return Ok(Err(format!(
                "{e}. Nothing was promoted: {old} may still accept writes, so no replica was made \
                 writable. Make sure {old} is down, then run `dbshift failover {}` again",
                self.req.cluster
            )));
        }
        phases.fencing_ms = ms(fence_started.elapsed());

        let promotion_started = Instant::now();
        // Positions are final now that the writer is stopped: choose again on them.
        let t = self.begin("choose").await?;
        let looked = assess_as(
            self.provider,
            &self.req.cluster,
            self.req.writer_timeout,
            Some(&old),
        )
        .await?;
        let rechosen = if self.keep_new {
            Ok(self.new.clone())
        } else {
            choose(&looked.writer, &looked.replicas, self.req.to.as_deref())
        };
        let candidates = looked.replicas.clone();
        let choice = rechosen.map_err(|r| {
            format!(
                "{r}. {old} is stopped and no replica was promoted: clients cannot write. Fix \
                 the cause, then `dbshift failover {}`",
                self.req.cluster
            )
        });
        if let Ok(id) = &choice {
            self.new = id.clone();
        }
        let detail =
            choice.map(|id| serde_json::json!({ "new_writer": id, "candidates": candidates }));
        if let Err(e) = self.end("choose", t, detail).await? {
            return Ok(Err(e));
        }
        let t = self.begin("apply_relay_log").await?;
        let applied = self.apply_relay_log().await;
        let promoted_at = match self.end("apply_relay_log", t, applied).await? {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(format!(
                    "{e}. {old} is stopped and {} was not promoted: clients cannot write",
                    self.new
                )))
            }
        };
        let t = self.begin("redirect").await?;
        let redirected = self.redirect().await;
        if let Err(e) = self.end("redirect", t, redirected).await? {
            return Ok(Err(e));
        }
        let t = self.begin("promote").await?;
        let promoted = self.promote().await;
        if let Err(e) = self.end("promote", t, promoted).await? {
            return Ok(Err(e));
        }
        phases.promotion_ms = ms(promotion_started.elapsed());
        phases.write_gap_ms = ms(fence_started.elapsed());
        self.observer.event("promoted: new writer accepts writes");

        let repoint_started = Instant::now();
        let others: Vec<String> = candidates
            .iter()
            .filter(|c| c.id != self.new)
            .map(|c| c.id.clone())
            .collect();
        let t = self.begin("repoint").await?;
        let repointed = self.repoint(&others).await;
        let repointed = match self.end("repoint", t, repointed).await? {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        phases.repointing_ms = ms(repoint_started.elapsed());
        let t = self.begin("verify").await?;
        let verified = self.verify(&repointed).await;
        if let Err(e) = self.end("verify", t, verified).await? {
            return Ok(Err(e));
        }
        Ok(Ok(FailoverReport {
            run_id: self.run.clone(),
            cluster: self.req.cluster.clone(),
            old_writer: self.old.clone(),
            new_writer: self.new.clone(),
            phases,
            promoted_at: promoted_at.to_string(),
            repointed,
            candidates,
            step_ms: self.step_ms.clone(),
            warnings: self.warnings.clone(),
            resumed: self.resumed,
        }))
    }

    /// Clients held at the proxy, then the old writer stopped by the provider. Nothing is
    /// promoted unless the provider confirms the stop.
    async fn fence(&mut self) -> Step<serde_json::Value> {
        let paused = crate::proxy_admin::pause_if_any(
            self.proxy.as_ref(),
            Duration::from_millis(PROXY_DRAIN_MS),
            self.observer,
        )
        .await?;
        tracing::info!(instance = %self.old, "stopping the failed writer");
        self.provider
            .stop_instance(&self.old)
            .await
            .map_err(|e| format!("the provider could not stop {}: {e}", self.old))?;
        tracing::info!(instance = %self.old, "failed writer stopped");
        Ok(serde_json::json!({ "stopped": self.old, "proxy_pause": paused }))
    }

    /// The chosen replica applies everything it received; its replication then stops.
    async fn apply_relay_log(&mut self) -> Step<ReplicationPosition> {
        let mut s = self.connect(&self.new).await?;
        let st = db(s.replication_status().await)?;
        let applied = db(s.applied_position().await)?;
        if !st.configured && self.resumed {
            // An interrupted run promoted it already (replication reset).
            s.close().await;
            return Ok(applied);
        }
        let received = s.received_position(&st, &applied);
        db(s.wait_until_contains(&received, self.req.timeout).await).map_err(|e| {
            format!(
                "{} did not apply its relay log up to {received}: {e}",
                self.new
            )
        })?;
        db(s.stop_replication().await)?;
        let applied = db(s.applied_position().await)?;
        s.close().await;
        Ok(applied)
    }

    async fn redirect(&mut self) -> Step<serde_json::Value> {
        self.provider
            .set_writer(&self.req.cluster, &self.new)
            .await
            .map_err(|e| e.to_string())?;
        let mut switched = serde_json::Value::Null;
        if let Some(proxy) = &self.proxy {
            let ep = self.endpoint(&self.new).await?;
            switched = proxy
                .switch(&ep.host, ep.port)
                .await
                .map_err(|e| format!("switching the proxy to {}: {e}", self.new))?;
        }
        Ok(
            serde_json::json!({ "cluster": self.req.cluster, "writer": self.new, "proxy_switch": switched }),
        )
    }

    /// Replication forgotten, events enabled, `read_only=OFF`, as the switchover core does.
    async fn promote(&mut self) -> Step<serde_json::Value> {
        let mut s = self.connect(&self.new).await?;
        db(s.reset_replication().await)?;
        let enabled = db(s.enable_replicated_events().await)?;
        if !enabled.is_empty() && !db(s.event_scheduler_on().await)? {
            self.warnings.push(format!(
                "{} has enabled events and its event scheduler is off: turn it on if {} ran them",
                self.new, self.old
            ));
        }
        let semi_sync = db(s.semi_sync_follow_role(true).await)?;
        if !s.can_set_read_only() {
            self.provider
                .set_read_only(&self.new, false)
                .await
                .map_err(|e| {
                    format!(
                        "setting read_only on {} through the provider: {e}",
                        self.new
                    )
                })?;
        } else {
            db(s.set_writable().await)?;
        }
        s.close().await;
        if let Some(proxy) = &self.proxy {
            proxy
                .resume()
                .await
                .map_err(|e| format!("resuming the proxy: {e}"))?;
            self.observer.event("proxy resumed");
        }
        Ok(serde_json::json!({ "events_enabled": enabled, "semi_sync_source": semi_sync }))
    }

    async fn repoint(&mut self, others: &[String]) -> Step<Vec<String>> {
        let ep = self.endpoint(&self.new).await?;
        let mut moved = Vec::new();
        for id in others {
            let mut s = match self.connect(id).await {
                Ok(s) => s,
                Err(e) => {
                    self.warnings.push(format!(
                        "{id} is unreachable ({e}); `dbshift rejoin {id}` makes it a replica of {} when it is back",
                        self.new
                    ));
                    continue;
                }
            };
            let spec = self.source_spec(&ep);
            if let Err(e) = s.point_replica_at(&spec).await {
                self.warnings
                    .push(format!("re-pointing {id} to {}: {e}", self.new));
            } else {
                moved.push(id.clone());
            }
            s.close().await;
        }
        Ok(moved)
    }

    /// One writable server (the new one); the re-pointed replicas caught up with it.
    async fn verify(&mut self, replicas: &[String]) -> Step<serde_json::Value> {
        let mut new = self.connect(&self.new).await?;
        if db(new.read_only().await)? {
            return Err(format!("{} is still read-only after promotion", self.new));
        }
        let target = db(new.executed_position().await)?;
        new.close().await;
        for id in replicas {
            let Ok(mut s) = self.connect(id).await else {
                continue;
            };
            if !db(s.read_only().await)? {
                return Err(format!(
                    "{id} is writable besides {}: two writers",
                    self.new
                ));
            }
            if let Err(e) = s
                .wait_until_contains(&target, Duration::from_secs(10))
                .await
            {
                self.warnings
                    .push(format!("{id} has not caught up with {} ({e})", self.new));
            }
            s.close().await;
        }
        Ok(serde_json::json!({ "caught_up_to": target.to_string(), "replicas": replicas }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, io: &str, applied: &str) -> Candidate {
        let io: dbshift_db::mariadb::GtidPos = io.parse().unwrap();
        let applied: dbshift_db::mariadb::GtidPos = applied.parse().unwrap();
        Candidate {
            id: id.into(),
            reachable: true,
            io_running: Some(IoState::Connecting),
            sql_running: true,
            io_error: Some("error 2003: can't connect".into()),
            sql_error: None,
            relay_backlog: applied.behind(&io),
            gtid_io_pos: Some(ReplicationPosition::MariaDb(io)),
            gtid_slave_pos: Some(ReplicationPosition::MariaDb(applied)),
            seconds_behind: None,
            read_only: Some(true),
            configured: true,
            unfit: None,
            heartbeats: Some(7),
            heartbeat_period_ms: Some(500),
            source_log: Some("binlog.000001:4242".into()),
        }
    }

    #[test]
    fn the_replica_that_received_most_wins_even_if_it_applied_less() {
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-60", "1-101-40"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r3");
    }

    #[test]
    fn a_replicas_own_binlogged_statement_does_not_make_it_look_ahead() {
        // gtid_current_pos of r2 would be 1-202-51 after a local FLUSH; only what it received
        // from the writer counts, and that is behind r3.
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-51", "1-101-51"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r3");
    }

    #[test]
    fn ties_go_to_the_requested_replica_then_the_smallest_backlog() {
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-50", "1-101-50"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r2");
        assert_eq!(choose("r1", &c, Some("r3")).unwrap(), "r3");
        let c = [
            cand("r2", "1-101-50", "1-101-45"),
            cand("r3", "1-101-50", "1-101-50"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r3");
    }

    #[test]
    fn a_lagging_broken_or_unknown_target_is_refused() {
        let mut c = vec![
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-60", "1-101-60"),
        ];
        assert!(
            matches!(choose("r1", &c, Some("r2")), Err(Refusal::BadTarget(m)) if m.contains("behind r3"))
        );
        assert!(matches!(
            choose("r1", &c, Some("r9")),
            Err(Refusal::Unknown(_))
        ));
        assert!(matches!(
            choose("r1", &c, Some("r1")),
            Err(Refusal::Unknown(_))
        ));
        c[1].unfit = Some("its SQL thread failed: error 1062".into());
        assert!(
            matches!(choose("r1", &c, Some("r3")), Err(Refusal::BadTarget(m)) if m.contains("1062"))
        );
        assert_eq!(choose("r1", &c, None).unwrap(), "r2");
        c[0].unfit = Some("unreachable".into());
        assert!(matches!(
            choose("r1", &c, None),
            Err(Refusal::NoHealthyReplica(_))
        ));
        assert!(matches!(
            choose("r1", &[], None),
            Err(Refusal::NoHealthyReplica(_))
        ));
    }

    #[test]
    fn diverged_histories_leave_no_choice() {
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-102-50", "1-102-50"),
        ];
        assert!(matches!(choose("r1", &c, None), Err(Refusal::Diverged(_))));
        let c = [
            cand("r2", "1-101-50,2-101-3", "1-101-50,2-101-3"),
            cand("r3", "1-101-51,2-101-2", "1-101-51,2-101-2"),
        ];
        assert!(matches!(choose("r1", &c, None), Err(Refusal::Diverged(_))));
    }

    #[test]
    fn a_dead_writer_needs_the_replicas_to_agree() {
        let mut a = Assessment {
            cluster: "c".into(),
            writer: "r1".into(),
            writer_reachable: false,
            writer_error: Some("refused".into()),
            replicas: vec![
                cand("r2", "1-101-5", "1-101-5"),
                cand("r3", "1-101-5", "1-101-5"),
            ],
        };
        assert!(a.writer_dead());
        a.replicas[1].io_running = Some(IoState::Yes);
        a.replicas[1].io_error = None;
        assert!(
            !a.writer_dead(),
            "a replica still connected to the writer disagrees"
        );
        a.replicas[1].reachable = false;
        assert!(a.writer_dead(), "an unreachable replica has no say");
        a.replicas[0].reachable = false;
        assert!(!a.writer_dead(), "no replica to confirm");
        a.writer_reachable = true;
        assert!(!a.writer_dead());
    }
}
