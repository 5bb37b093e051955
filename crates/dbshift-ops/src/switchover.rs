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

use crate::guards::{run_guards, GuardLimits, GuardReport};
use crate::journal::{Journal, JournalError, RunRecord, RunStatus};
use crate::lock::{ClusterLock, LockError};
use crate::ms;
use crate::proxy_admin::ProxySet;

/// How long a proxy in front of the cluster lets open transactions finish at the fence.
const PROXY_DRAIN_MS: u64 = 2000;

/// Bound of one statement on the fenced old writer over a kept connection (the lease): a
/// network that black-holes the connection must end the run (rolled back or "needs a human"),
/// never hang it. Connecting anew is bounded by the connect timeout.
const OLD_WRITER_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound of looking at one server to check that the cluster is what the run believes (connect,
/// `read_only`, replication): a server that does not answer in time counts as unreachable.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// `f` bounded by [`OLD_WRITER_STATEMENT_TIMEOUT`]; `what` names it in the error.
async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = dbshift_db::Result<T>>,
) -> StepResult<T> {
    match tokio::time::timeout(OLD_WRITER_STATEMENT_TIMEOUT, f).await {
        Ok(r) => db(r),
        Err(_) => Err(format!(
            "{what}: no answer within {} s (the network or the server hangs)",
            OLD_WRITER_STATEMENT_TIMEOUT.as_secs()
        )),
    }
}

/// End the commit lease and close its connection, within a bound: on a hung connection the
/// lease ends with the session when the connection is dropped.
async fn release_lease(mut lease: Server) {
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
}

/// Told about each step as it starts and ends (the probe marks its chart with these).
pub trait Observer: Send + Sync {
    fn event(&self, label: &str);
}

/// An observer that logs only.
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&self, label: &str) {
        tracing::info!("{label}");
    }
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

/// Fault injection for the crash tests (`DBSHIFT_CRASH_AT=<step>:<begin|run|end>`; `begin`:
/// journaled as begun, nothing done; `run`: done on the servers, not journaled as ended;
/// `end`: journaled as ended).
fn crash_point(step: &str, phase: &str) {
    crate::crash_if(&format!("{step}:{phase}"));
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
        .map_err(SwitchoverError::BadInput)?;
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
    Ok(journal.locks().acquire_all(&scopes, &what)?)
}

struct Engine<'a> {
    provider: &'a dyn Provider,
    journal: &'a Journal,
    run: String,
    p: SwitchoverParams,
    observer: &'a dyn Observer,
    creds: Credentials,
    /// The connection holding the BACKUP STAGE lease on the old writer.
    lease: Option<Server>,
    /// The dbshift proxy in front of the cluster, if one runs: clients are held there from the
    /// fence to the promotion instead of seeing errors.
    proxy: Option<ProxySet>,
    fence: Option<Fence>,
    fence_started: Option<Instant>,
    write_gap: Option<Duration>,
    final_position: Option<String>,
    step_ms: Vec<(String, u64)>,
    warnings: Vec<String>,
    /// The clusters this run owns, held until it ends.
    locks: Vec<ClusterLock>,
}

/// What one server of the run said when the cluster was looked at.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    server_id: u32,
    port: u16,
    read_only: bool,
    /// `(source server_id once known, source port)` when configured as a replica.
    source: Option<(Option<u32>, Option<u16>)>,
}

/// The cluster as it is now: the name's writer by the provider, and each reachable server.
#[derive(Debug, Clone)]
struct ClusterView {
    named_writer: Option<String>,
    seen: Vec<Seen>,
    unreachable: Vec<String>,
}

impl ClusterView {
    fn get(&self, id: &str) -> Option<&Seen> {
        self.seen.iter().find(|s| s.id == id)
    }

    /// The writable servers other than `allowed`.
    fn other_writers(&self, allowed: &[&str]) -> Vec<String> {
        self.seen
            .iter()
            .filter(|s| !s.read_only && !allowed.contains(&s.id.as_str()))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Whether `replica` replicates from `source` (by server_id once seen, else by port).
    fn replicates_from(&self, replica: &str, source: &str) -> bool {
        match (self.get(replica), self.get(source)) {
            (Some(r), Some(s)) => match r.source {
                Some((Some(id), _)) => id == s.server_id,
                Some((None, port)) => port == Some(s.port),
                None => false,
            },
            _ => false,
        }
    }

    /// Whose replica `id` is, in words (`nobody`, `lab-1-3`, `127.0.0.1:port`).
    fn source_of(&self, id: &str) -> String {
        match self.get(id).and_then(|s| s.source) {
            None => "nobody".into(),
            Some((sid, port)) => self
                .seen
                .iter()
                .find(|o| Some(o.server_id) == sid || (sid.is_none() && Some(o.port) == port))
                .map(|o| o.id.clone())
                .unwrap_or_else(|| format!("port {}", port.unwrap_or(0))),
        }
    }
}

/// When the cluster is looked at, and what it must be then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// Before the fence (and before the guards on a resume): `from` is the named writer and
    /// nobody's replica, `to` its replica, nobody else writable.
    BeforeFence,
    /// Before putting the old writer back: it is still the named writer and nobody's replica,
    /// nobody else writable.
    BeforeRollback,
    /// After the wait, before the point of no return: as before the fence.
    BeforePointOfNoReturn,
    /// Before the new writer is made writable: the name at `from` or `to`, nobody writable
    /// but `to` (when a resumed run had promoted it already).
    BeforePromote,
    /// A resumed run: the named writer is this run's old or new writer, nobody else writable.
    Resume,
}

/// A step's failure: before the point of no return it rolls back; after it, needs a human.
type StepResult<T> = Result<T, String>;

/// Why a run stops before the point of no return.
enum Stop {
    /// Something failed: put the old writer back (if the cluster is still as it was).
    RollBack(String),
    /// The cluster changed under the run: change nothing more.
    Changed(String),
}

fn db<T>(r: dbshift_db::Result<T>) -> StepResult<T> {
    r.map_err(|e| e.to_string())
}

impl<'a> Engine<'a> {
    fn new(
        provider: &'a dyn Provider,
        journal: &'a Journal,
        run: String,
        p: SwitchoverParams,
        observer: &'a dyn Observer,
    ) -> Result<Self, SwitchoverError> {
        let creds = provider.credentials()?;
        Ok(Engine {
            provider,
            journal,
            run,
            p,
            observer,
            creds,
            lease: None,
            proxy: None,
            fence: None,
            fence_started: None,
            write_gap: None,
            final_position: None,
            step_ms: Vec::new(),
            warnings: Vec::new(),
            locks: Vec::new(),
        })
    }

    /// Stop because the cluster changed under the run: nothing more is changed on the servers
    /// (the lease on the old writer is released, held proxy clients go on).
    async fn stop_cluster_changed(
        &mut self,
        moment: Moment,
        what: String,
        changed: bool,
    ) -> Result<Outcome, SwitchoverError> {
        if let Some(lease) = self.lease.take() {
            release_lease(lease).await;
        }
        if let Some(proxy) = &self.proxy {
            if let Err(e) = proxy.resume().await {
                tracing::warn!("resuming the proxy: {e}");
            }
        }
        let when = match moment {
            Moment::BeforeFence => "before fencing",
            Moment::BeforeRollback => "before putting the old writer back",
            Moment::BeforePointOfNoReturn => "before the point of no return",
            Moment::BeforePromote => "before promoting",
            Moment::Resume => "on resume",
        };
        let reason = if changed {
            format!(
                "the cluster changed under this run ({when}: {what}); another run, a failover \
                 or a human acted on it. This run changed nothing more and left every server \
                 as it is now; check `dbshift inventory` before acting"
            )
        } else {
            format!(
                "the cluster is not what this run expects ({when}: {what}); nothing was \
                 changed. Look at `dbshift inventory`; start a new run if a switch is still \
                 wanted"
            )
        };
        tracing::warn!(run = %self.run, "{reason}");
        let status = if changed {
            RunStatus::NeedsHuman
        } else {
            RunStatus::Failed
        };
        self.finish(status, &reason).await?;
        Ok(Outcome::ClusterChanged { reason, changed })
    }

    /// Look at the cluster at `moment` (`changed`: this run has changed something already);
    /// `Some(outcome)` ends the run there: the cluster is not what the run believes, or it
    /// could not be looked at.
    async fn look(
        &mut self,
        moment: Moment,
        renaming: bool,
        changed: bool,
    ) -> Result<Option<Outcome>, SwitchoverError> {
        let e = match cluster_changed(self.provider, &self.creds, &self.p, moment, renaming).await {
            Ok(None) => return Ok(None),
            Ok(Some(what)) => {
                return self
                    .stop_cluster_changed(moment, what, changed)
                    .await
                    .map(Some)
            }
            Err(e) => e,
        };
        // Fenced by this run and nothing promoted: put the old writer back (the rollback
        // looks at the cluster once more before it does).
        if moment == Moment::BeforeFence && changed {
            return self.roll_back(e).await.map(Some);
        }
        // A fresh run that has changed nothing ends; a resumed one stays resumable.
        if moment == Moment::BeforeFence {
            let reason = format!("nothing was changed: {e}");
            self.finish(RunStatus::Failed, &reason).await?;
            return Ok(Some(Outcome::RolledBack { reason }));
        }
        let reason = format!(
            "cannot look at {} ({e}); nothing {} changed: `dbshift resume {}` once the control \
             plane answers",
            self.p.cluster,
            if changed { "more was" } else { "was" },
            self.run
        );
        self.finish(RunStatus::NeedsHuman, &reason).await?;
        Ok(Some(Outcome::NeedsHuman { reason }))
    }

    /// Every lock of the run still held, or the run stops before its next change.
    fn check_locks(&self) -> Result<(), SwitchoverError> {
        for l in &self.locks {
            l.check()?;
        }
        Ok(())
    }

    async fn endpoint(&self, id: &str) -> StepResult<Endpoint> {
        self.provider
            .describe_instance(id)
            .await
            .map(|i| i.endpoint)
            .map_err(|e| e.to_string())
    }

    /// An admin connection, retried briefly: a restart or a cut connection may be in progress.
    async fn connect(&self, id: &str) -> StepResult<Server> {
        let ep = self.endpoint(id).await?;
        let opts = crate::connect_options(&self.creds, &self.creds.admin, &ep)
            .connect_timeout(Duration::from_secs(2))
            .statement_timeout(Duration::from_millis(self.p.statement_timeout_ms));
        let mut last = String::new();
        for attempt in 0..3 {
            match Server::connect(&opts).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    last = format!("{id}: {e}");
                    if attempt < 2 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        }
        Err(last)
    }

    /// Whether a replica's status names `source` (server_id, endpoint) as its source: by
    /// server_id once the IO thread has seen it, else by port.
    fn replicates_from(
        st: &dbshift_db::ReplicationStatus,
        source_id: u32,
        source: &Endpoint,
    ) -> bool {
        st.configured
            && match st.source_server_id {
                Some(id) => id == source_id,
                None => st.source_port == Some(source.port),
            }
    }

    /// The history of `id` (MariaDB: `gtid_binlog_state` and `gtid_current_pos`), on a
    /// connection of its own.
    async fn history_of(&self, id: &str) -> StepResult<History> {
        let mut s = self.connect(id).await?;
        let read = s.history().await;
        s.close().await;
        db(read)
    }

    async fn server_id_of(&self, id: &str) -> StepResult<u32> {
        let s = self.connect(id).await?;
        let server_id = s.server_id();
        s.close().await;
        Ok(server_id)
    }

    /// [`Self::source_spec`] for the replica `server`: the RDS procedures cannot take a CA file
    /// nor verify the certificate (they turn the check off), so there TLS stays on unverified.
    fn source_spec_for(&self, server: &Server, ep: &Endpoint, start: SourceStart) -> SourceSpec {
        let mut spec = self.source_spec(ep, start);
        if !server.can_verify_source_certificate() {
            spec.ssl = Some(SslSpec {
                ca_path: None,
                verify_server_cert: false,
            });
        }
        spec
    }

    fn source_spec(&self, ep: &Endpoint, start: SourceStart) -> SourceSpec {
        crate::replica_source(&self.creds, ep, start)
    }

    async fn begin(&mut self, step: &str) -> Result<Instant, SwitchoverError> {
        self.check_locks()?;
        self.observer.event(&format!("{step}: start"));
        self.journal.begin(&self.run, step).await?;
        crash_point(step, "begin");
        crate::pause_if(&format!("{step}:begin")).await;
        Ok(Instant::now())
    }

    async fn end(
        &mut self,
        step: &str,
        started: Instant,
        detail: serde_json::Value,
    ) -> Result<(), SwitchoverError> {
        crash_point(step, "run");
        self.journal.end(&self.run, step, detail).await?;
        crash_point(step, "end");
        self.step_ms.push((step.to_string(), ms(started.elapsed())));
        self.observer.event(&format!("{step}: done"));
        Ok(())
    }

    async fn finish(&mut self, status: RunStatus, message: &str) -> Result<(), SwitchoverError> {
        self.journal
            .set_status(&self.run, status, Some(message))
            .await?;
        Ok(())
    }

    async fn drive(&mut self, record: Option<RunRecord>) -> Result<Outcome, SwitchoverError> {
        let proxies = self.provider.proxies_of(&self.p.cluster).await?;
        // A pause returns once every session is held, within its bound.
        let timeout = Duration::from_millis(PROXY_DRAIN_MS) + Duration::from_secs(10);
        self.proxy = ProxySet::of(&proxies, timeout).map_err(SwitchoverError::BadInput)?;
        let done = |s: &str| record.as_ref().is_some_and(|r| r.step_done(s));
        let pnr_begun = record
            .as_ref()
            .is_some_and(|r| r.step_begun("point_of_no_return"));
        if let Some(fence) = record
            .as_ref()
            .and_then(|r| r.step_detail("fence"))
            .and_then(|d| serde_json::from_value::<Fence>(d.clone()).ok())
        {
            self.fence = Some(fence);
        }

        // This run's own fence may be on the old writer (a run cut short after it).
        let fence_begun = record.as_ref().is_some_and(|r| r.step_begun("fence"));
        // Cut short inside its own redirect (AWS: blue renamed away, green not yet renamed to
        // the name): the name resolving to nothing is this run's doing.
        let renaming = record
            .as_ref()
            .is_some_and(|r| r.step_begun("redirect") || r.step_begun("redirect_plan"));
        if record.is_some() {
            // A resume acts only on the cluster it left: its writer is still this run's old
            // or new one, and nobody else writes.
            if let Some(stop) = self.look(Moment::Resume, renaming, false).await? {
                return Ok(stop);
            }
        }
        if !pnr_begun {
            // The guards run on every start and every resume before the point of no return:
            // what they saw before a crash may no longer be true.
            let started = self.begin("guards").await?;
            match self.guards().await {
                Ok(report) if report.passed() => {
                    let detail = serde_json::to_value(&report).unwrap_or_default();
                    self.end("guards", started, detail).await?;
                }
                Ok(report) if fence_begun => {
                    let why = report.failure_text();
                    self.journal.failed(&self.run, "guards", &why).await?;
                    return self
                        .roll_back(format!("on resume the guards failed: {why}"))
                        .await;
                }
                Ok(report) => {
                    let why = report.failure_text();
                    self.journal.failed(&self.run, "guards", &why).await?;
                    self.finish(
                        RunStatus::Failed,
                        &format!("guards failed, nothing changed: {why}"),
                    )
                    .await?;
                    return Ok(Outcome::Refused(report));
                }
                Err(e) if fence_begun => {
                    self.journal.failed(&self.run, "guards", &e).await?;
                    return self
                        .roll_back(format!("on resume the guards could not run: {e}"))
                        .await;
                }
                Err(e) => {
                    self.journal.failed(&self.run, "guards", &e).await?;
                    let reason = format!("nothing was changed: the guards could not run: {e}");
                    self.finish(RunStatus::Failed, &reason).await?;
                    return Ok(Outcome::RolledBack { reason });
                }
            }
            if let Some(stop) = self.look(Moment::BeforeFence, false, fence_begun).await? {
                return Ok(stop);
            }
            match self.before_point_of_no_return().await? {
                Ok(()) => {}
                Err(Stop::RollBack(reason)) => return self.roll_back(reason).await,
                Err(Stop::Changed(what)) => {
                    return self
                        .stop_cluster_changed(Moment::BeforePointOfNoReturn, what, true)
                        .await
                }
            }
        } else {
            // Resumed past the point of no return: the name and the writers as journaled.
            if let Some(stop) = self.look(Moment::BeforePromote, renaming, true).await? {
                return Ok(stop);
            }
        }
        match self.after_point_of_no_return(&done).await? {
            Ok(()) => {
                let report = SwitchoverReport {
                    run_id: self.run.clone(),
                    cluster: self.p.cluster.clone(),
                    old_writer: self.p.from.clone(),
                    new_writer: self.p.to.clone(),
                    write_gap_ms: self.write_gap.map(ms),
                    final_position: self.final_position.clone(),
                    step_ms: self.step_ms.clone(),
                    warnings: self.warnings.clone(),
                };
                if self.warnings.is_empty() {
                    self.finish(RunStatus::Done, "done").await?;
                    Ok(Outcome::Done(report))
                } else {
                    let reason = format!(
                        "the writer moved to {}, but: {}",
                        self.p.to,
                        self.warnings.join("; ")
                    );
                    self.finish(RunStatus::NeedsHuman, &reason).await?;
                    Ok(Outcome::NeedsHuman { reason })
                }
            }
            Err(reason) => {
                let reason = format!(
                    "{reason}. The point of no return was passed: {} must not be made writable \
                     again. Fix the cause, then `dbshift resume {}`",
                    self.p.from, self.run
                );
                self.finish(RunStatus::NeedsHuman, &reason).await?;
                Ok(Outcome::NeedsHuman { reason })
            }
        }
    }

    async fn guards(&mut self) -> StepResult<GuardReport> {
        let mut old = self.connect(&self.p.from).await?;
        let mut new = self.connect(&self.p.to).await?;
        let old_port = self.endpoint(&self.p.from).await?.port;
        let limits = GuardLimits {
            max_lag_transactions: self.p.max_lag_transactions,
            max_lag_seconds: self.p.max_lag_seconds,
            ..GuardLimits::default()
        };
        let report = db(run_guards(
            &mut old,
            &mut new,
            &self.p.from,
            &self.p.to,
            old_port,
            &limits,
        )
        .await);
        old.close().await;
        new.close().await;
        report
    }

    /// Fence and wait; the cluster is looked at during the wait (so that it adds nothing to
    /// the write pause). `Ok(Err(_))` asks for a rollback or a stop.
    async fn before_point_of_no_return(&mut self) -> Result<Result<(), Stop>, SwitchoverError> {
        let started = self.begin("fence").await?;
        self.fence_started = Some(started);
        match self.fence_old().await {
            Ok(detail) => self.end("fence", started, detail).await?,
            Err(e) => {
                self.journal.failed(&self.run, "fence", &e).await?;
                return Ok(Err(Stop::RollBack(format!(
                    "fencing {} failed: {e}",
                    self.p.from
                ))));
            }
        }
        let started = self.begin("wait").await?;
        let (provider, creds, p) = (self.provider, self.creds.clone(), self.p.clone());
        let (waited, changed) = tokio::join!(
            self.wait_caught_up(),
            cluster_changed(provider, &creds, &p, Moment::BeforePointOfNoReturn, false)
        );
        match (waited, changed) {
            (_, Ok(Some(what))) => {
                self.journal.failed(&self.run, "wait", &what).await?;
                return Ok(Err(Stop::Changed(what)));
            }
            (Ok(detail), Ok(None)) => self.end("wait", started, detail).await?,
            (Err(e), _) | (Ok(_), Err(e)) => {
                self.journal.failed(&self.run, "wait", &e).await?;
                return Ok(Err(Stop::RollBack(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn fence_old(&mut self) -> StepResult<serde_json::Value> {
        // Clients are held at the proxy first (statement boundaries, open transactions may
        // finish within the bound): they see latency, not read-only errors.
        let paused = crate::proxy_admin::pause_if_any(
            self.proxy.as_ref(),
            Duration::from_millis(PROXY_DRAIN_MS),
            self.observer,
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
                .map_err(|e| format!("holding the commit lease: {e}"))?;
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
    async fn fence_without_super(&mut self, old: &mut Server) -> StepResult<Fence> {
        let event_scheduler_before =
            db(old.variable("event_scheduler").await)?.unwrap_or_else(|| "OFF".into());
        let was_read_only = db(old.read_only().await)?;
        self.provider
            .set_read_only(&self.p.from, true)
            .await
            .map_err(|e| format!("setting read_only through the provider: {e}"))?;
        if !db(old.read_only().await)? {
            return Err(format!(
                "{} is still writable after the read_only change",
                self.p.from
            ));
        }
        Ok(Fence {
            event_scheduler_before,
            was_read_only,
            read_only_attempts: 1,
            killed_sessions: Vec::new(),
        })
    }

    /// `read_only` off (or on) by SQL, or through the provider where the user has no SUPER.
    async fn set_writable(&self, server: &mut Server, id: &str, writable: bool) -> StepResult<()> {
        if !server.can_set_read_only() {
            self.provider
                .set_read_only(id, !writable)
                .await
                .map_err(|e| format!("setting read_only on {id} through the provider: {e}"))
        } else if writable {
            db(server.set_writable().await)
        } else {
            db(server.set_read_only().await)
        }
    }

    async fn wait_caught_up(&mut self) -> StepResult<serde_json::Value> {
        // Read on the lease connection when there is one: it is the fenced session.
        let mut fresh = None;
        let old = match self.lease.as_mut() {
            Some(s) => s,
            None => fresh.insert(self.connect(&self.p.from).await?),
        };
        let old_id = old.server_id();
        let what = format!("reading {}'s final GTID position", self.p.from);
        let read = async {
            let pos = bounded(&what, old.executed_position()).await?;
            let history = bounded(&what, old.history()).await?;
            Ok::<_, String>((pos, history))
        }
        .await;
        let (final_pos, old_history) = match read {
            Ok(r) => r,
            Err(e) => {
                // A connection that did not answer is of no further use; dropping it ends
                // its session (and the lease) once the server sees the close.
                self.lease = None;
                return Err(e);
            }
        };
        if let Some(s) = fresh {
            let _ = tokio::time::timeout(OLD_WRITER_STATEMENT_TIMEOUT, s.close()).await;
        }
        let mut new = self.connect(&self.p.to).await?;
        let deadline = Duration::from_millis(self.p.timeout_ms);
        db(new.wait_until_contains(&final_pos, deadline).await).map_err(|e| {
            format!(
                "{} did not apply {}'s last transaction {final_pos} in time: {e}",
                self.p.to, self.p.from
            )
        })?;
        let new_history = db(new.history().await)?;
        let new_pos = db(new.current_position().await)?;
        let new_id = new.server_id();
        new.close().await;
        // Every transaction of the old writer on the new one, by entry or, where the new one
        // was restored from a backup and knows only each domain's last GTID, by position.
        let missing = old_history.missing_from(old_id, &new_history);
        if !missing.is_empty() {
            return Err(format!(
                "{} lacks transactions of {}: {missing} ({}'s binlog state {old_history}; {}'s \
                 {new_history}, position {new_pos})",
                self.p.to, self.p.from, self.p.from, self.p.to
            ));
        }
        // Caught up means equal: a new writer ahead of the fenced old one has transactions
        // of its own, which the old one would never have.
        let ahead = new_history.missing_from(new_id, &old_history);
        if !ahead.is_empty() {
            return Err(format!(
                "{} has transactions {} never had: {ahead}; inspect them before switching",
                self.p.to, self.p.from
            ));
        }
        self.final_position = Some(final_pos.to_string());
        Ok(serde_json::json!({
            "final_position": final_pos.to_string(),
            "old_binlog_state": old_history.to_string(),
            "new_binlog_state": new_history.to_string(),
        }))
    }

    /// Put the old writer back as it was: lease released, read_only off, events as before.
    async fn roll_back(&mut self, reason: String) -> Result<Outcome, SwitchoverError> {
        tracing::warn!(run = %self.run, "rolling back: {reason}");
        if self.fence.is_some() {
            // The old writer is made writable only if it still is the cluster's writer and
            // nobody's replica: another run or a human may have moved the cluster meanwhile.
            match cluster_changed(
                self.provider,
                &self.creds,
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
        self.observer.event("rollback: start");
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
                    let r = old.unfence_writes(fence).await.map_err(|e| e.to_string());
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
        self.observer.event("rollback: done");
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

    async fn after_point_of_no_return(
        &mut self,
        done: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<StepResult<()>, SwitchoverError> {
        macro_rules! step {
            ($name:expr, $call:expr) => {{
                if !done($name) || RECHECKED_ON_RESUME.contains(&$name) {
                    let started = self.begin($name).await?;
                    match $call {
                        Ok(detail) => self.end($name, started, detail).await?,
                        Err(e) => {
                            self.journal.failed(&self.run, $name, &e).await?;
                            return Ok(Err(format!("{}: {e}", $name)));
                        }
                    }
                }
            }};
        }
        step!("point_of_no_return", self.point_of_no_return().await);
        step!("redirect", self.redirect().await);
        step!("promote", self.promote().await);
        step!("hooks", self.hooks().await);
        step!("demote_old_writer", self.demote_old().await);
        step!("repoint_siblings", self.repoint_siblings().await);
        step!("verify", self.verify().await);
        Ok(Ok(()))
    }

    /// Stop and forget the new writer's replication. Done once it has no source.
    async fn point_of_no_return(&mut self) -> StepResult<serde_json::Value> {
        let mut new = self.connect(&self.p.to).await?;
        let st = db(new.replication_status().await)?;
        if st.configured {
            db(new.reset_replication().await)?;
        }
        new.close().await;
        Ok(serde_json::json!({ "was_replicating": st.configured }))
    }

    async fn redirect(&mut self) -> StepResult<serde_json::Value> {
        if self.p.redirect == Redirect::Proxy && self.proxy.is_none() {
            return Err(format!(
                "--redirect proxy, but no dbshift proxy is in front of {}",
                self.p.cluster
            ));
        }
        let mut renamed = Vec::new();
        if self.p.redirect == Redirect::Name {
            renamed = self.renames().await?;
            self.provider
                .set_writer(&self.p.cluster, &self.p.to)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            self.provider
                .record_writer(&self.p.cluster, &self.p.to)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut switched = serde_json::Value::Null;
        if let Some(proxy) = &self.proxy {
            // Every held session re-attached to the new writer (still read-only: the commands
            // stay held until the promotion's resume).
            let ep = self.endpoint(&self.p.to).await?;
            switched = proxy
                .switch(&ep.host, ep.port)
                .await
                .map_err(|e| format!("switching the proxy to {}: {e}", self.p.to))?;
        }
        Ok(serde_json::json!({
            "cluster": self.p.cluster,
            "writer": self.p.to,
            "redirect": self.p.redirect,
            "renamed": renamed,
            "proxy_switch": switched,
        }))
    }

    /// The provider's renames (AWS's identifier swap), each journaled as a step of its own
    /// (`redirect_rename_<n>`) under the plan journaled first (`redirect_plan`): a resumed run
    /// applies the same plan from the first rename not journaled as done.
    async fn renames(&mut self) -> StepResult<Vec<Rename>> {
        let record = self
            .journal
            .run(&self.run)
            .await
            .map_err(|e| e.to_string())?;
        let planned = record
            .step_detail("redirect_plan")
            .and_then(|d| serde_json::from_value::<Vec<Rename>>(d.clone()).ok());
        let plan = match planned {
            Some(p) => p,
            None => {
                let p = self
                    .provider
                    .redirect_plan(&self.p.cluster, &self.p.to)
                    .await
                    .map_err(|e| e.to_string())?;
                // Nothing to rename (the lab; the name already there): nothing to journal.
                if p.is_empty() {
                    return Ok(p);
                }
                let j = |e: JournalError| e.to_string();
                self.journal
                    .begin(&self.run, "redirect_plan")
                    .await
                    .map_err(j)?;
                self.journal
                    .end(
                        &self.run,
                        "redirect_plan",
                        serde_json::to_value(&p).unwrap_or_default(),
                    )
                    .await
                    .map_err(j)?;
                p
            }
        };
        for (n, r) in plan.iter().enumerate() {
            let step = format!("redirect_rename_{n}");
            if record.step_done(&step) {
                continue;
            }
            self.observer.event(&format!(
                "rename {} ({}) to {}: start",
                r.from, r.instance, r.to
            ));
            self.journal
                .begin(&self.run, &step)
                .await
                .map_err(|e| e.to_string())?;
            crash_point(&step, "begin");
            if let Err(e) = self.provider.rename(r).await {
                let msg = format!("renaming {} to {}: {e}", r.from, r.to);
                let _ = self.journal.failed(&self.run, &step, &msg).await;
                return Err(msg);
            }
            self.journal
                .end(
                    &self.run,
                    &step,
                    serde_json::to_value(r).unwrap_or_default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            crash_point(&step, "end");
            self.observer
                .event(&format!("rename {} to {}: done", r.from, r.to));
        }
        Ok(plan)
    }

    async fn promote(&mut self) -> StepResult<serde_json::Value> {
        // Never two writers: the old one must be read-only, or out of reach (fenced, and its
        // option file starts it read-only).
        match self.connect(&self.p.from).await {
            Ok(mut old) => {
                let ro = db(old.read_only().await)?;
                old.close().await;
                if !ro {
                    return Err(format!(
                        "{} is writable again (someone turned read_only off); refusing to make a \
                         second writer",
                        self.p.from
                    ));
                }
            }
            Err(e) => self.warnings.push(format!(
                "{} was unreachable at promotion ({e})",
                self.p.from
            )),
        }
        let mut new = self.connect(&self.p.to).await?;
        // Events replicated from the old writer arrived SLAVESIDE_DISABLED; their definers
        // are kept (a plain ALTER EVENT would make dbshift's user their definer).
        let enabled = db(new.enable_replicated_events().await)?;
        let scheduler_was_on = self
            .fence
            .as_ref()
            .is_some_and(|f| f.event_scheduler_before.eq_ignore_ascii_case("ON"));
        if scheduler_was_on && new.can_set_event_scheduler() {
            db(new.set_event_scheduler(true).await)?;
        } else if scheduler_was_on && !db(new.event_scheduler_on().await)? {
            self.warnings.push(format!(
                "the event scheduler was on at {} and is off at {}: turn it on in its parameter group",
                self.p.from, self.p.to
            ));
        }
        db(new.semi_sync_follow_role(true).await)?;
        self.set_writable(&mut new, &self.p.to, true).await?;
        new.close().await;
        if let Some(proxy) = &self.proxy {
            proxy
                .resume()
                .await
                .map_err(|e| format!("resuming the proxy: {e}"))?;
            self.observer.event("proxy resumed");
        }
        if let Some(started) = self.fence_started {
            self.write_gap = Some(started.elapsed());
        }
        self.observer.event("promoted: new writer accepts writes");
        Ok(serde_json::json!({ "events_enabled": enabled }))
    }

    async fn hooks(&mut self) -> StepResult<serde_json::Value> {
        let old_ep = self.endpoint(&self.p.from).await?;
        let new_ep = self.endpoint(&self.p.to).await?;
        let mut ran = Vec::new();
        for hook in &self.p.hooks {
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(hook)
                .arg("dbshift-hook")
                .arg(old_ep.to_string())
                .arg(new_ep.to_string())
                .env("DBSHIFT_CLUSTER", &self.p.cluster)
                .env("DBSHIFT_OLD_WRITER", &self.p.from)
                .env("DBSHIFT_NEW_WRITER", &self.p.to)
                .env("DBSHIFT_OLD_ENDPOINT", old_ep.to_string())
                .env("DBSHIFT_NEW_ENDPOINT", new_ep.to_string())
                .stdin(std::process::Stdio::null())
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => ran.push(hook.clone()),
                Ok(o) => self.warnings.push(format!(
                    "hook `{hook}` failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => self
                    .warnings
                    .push(format!("hook `{hook}` could not run: {e}")),
            }
        }
        Ok(serde_json::json!({ "ran": ran }))
    }

    async fn demote_old(&mut self) -> StepResult<serde_json::Value> {
        if let Some(lease) = self.lease.take() {
            release_lease(lease).await;
        }
        let new_ep = self.endpoint(&self.p.to).await?;
        let new_id = self.server_id_of(&self.p.to).await?;
        let mut old = match self.connect(&self.p.from).await {
            Ok(s) => s,
            Err(e) => {
                self.warnings.push(format!(
                    "{} is unreachable ({e}); it stays fenced and is not yet a replica of {}: \
                     when it is back, `dbshift resume {}` makes it one",
                    self.p.from, self.p.to, self.run
                ));
                return Ok(serde_json::json!({ "demoted": false }));
            }
        };
        // Containment first: every transaction of the old writer is on the new one, or the
        // old writer took writes the new one never had (a fence undone by hand, another run):
        // demoting it would bury them.
        let old_history = db(old.history().await)?;
        let new_history = self.history_of(&self.p.to).await?;
        let missing = old_history.missing_from(old.server_id(), &new_history);
        if !missing.is_empty() {
            old.close().await;
            return Err(format!(
                "{} has transactions {} lacks: {missing}; it was left as it is (not made a \
                 replica, which would hide them). Compare them with the new writer's data, \
                 apply what is missing there or discard them by hand, then `dbshift rejoin {}`",
                self.p.from, self.p.to, self.p.from
            ));
        }
        db(old.semi_sync_follow_role(false).await)?;
        let st = db(old.replication_status().await)?;
        let already = Self::replicates_from(&st, new_id, &new_ep);
        if !already {
            // Its own history is in the new writer already: replication starts after it
            // (MASTER_DEMOTE_TO_SLAVE does exactly this; the RDS procedures take the position).
            let start = db(old.start_after_own_history().await)?;
            let spec = self.source_spec_for(&old, &new_ep, start);
            db(old.point_replica_at(&spec).await)?;
        } else if !st.healthy() {
            db(old.start_replication().await)?;
        }
        // Its events must not run as a replica; the change must not reach its binlog, where
        // it would be an errant transaction.
        let events = db(old.events_with_status("ENABLED").await)?;
        let mut disabled = Vec::new();
        if !events.is_empty() && !old.can_skip_binlog() {
            // Without sql_log_bin=0 (SUPER), ALTER EVENT would plant an errant GTID here.
            self.warnings.push(format!(
                "{} keeps {} enabled event(s) as a replica; disable them in its parameter group \
                 (event_scheduler) or on the next promotion",
                self.p.from,
                events.len()
            ));
        } else if !events.is_empty() {
            disabled = db(old.disable_events_as_replica().await)?;
        }
        // Leftover client sessions: ended, so that pools reconnect and follow the name.
        let ended = db(old.end_client_sessions().await)?;
        old.close().await;
        Ok(
            serde_json::json!({ "demoted": true, "already": already, "events_disabled": disabled, "sessions_ended": ended }),
        )
    }

    async fn repoint_siblings(&mut self) -> StepResult<serde_json::Value> {
        let new_ep = self.endpoint(&self.p.to).await?;
        let new_id = self.server_id_of(&self.p.to).await?;
        let mut moved = Vec::new();
        for sib in self.p.siblings.clone() {
            let mut s = match self.connect(&sib).await {
                Ok(s) => s,
                Err(e) => {
                    self.warnings.push(format!(
                        "{sib} is unreachable ({e}); re-point it to {} when it is back \
                         (`dbshift resume {}`)",
                        self.p.to, self.run
                    ));
                    continue;
                }
            };
            // One sibling that cannot be moved (its SQL thread waits on a lock, so STOP SLAVE
            // runs out of its bound) does not keep the others on the old writer.
            let repoint = async {
                let st = s.replication_status().await?;
                if Self::replicates_from(&st, new_id, &new_ep) {
                    return Ok(false);
                }
                // From what it applied (the RDS procedures take that explicitly).
                let start = s.continue_where_applied().await?;
                let spec = self.source_spec_for(&s, &new_ep, start);
                s.point_replica_at(&spec).await?;
                Ok::<_, dbshift_db::Error>(true)
            };
            match repoint.await {
                Ok(true) => moved.push(sib.clone()),
                Ok(false) => {}
                Err(e) => self.warnings.push(format!(
                    "{sib} was not re-pointed to {}: {e}; once it is free, `dbshift resume {}` \
                     re-points it",
                    self.p.to, self.run
                )),
            }
            s.close().await;
        }
        Ok(serde_json::json!({ "repointed": moved }))
    }

    /// One writable server; every reachable replica healthy and caught up with the new writer.
    async fn verify(&mut self) -> StepResult<serde_json::Value> {
        let mut new = self.connect(&self.p.to).await?;
        if db(new.read_only().await)? {
            return Err(format!("{} is still read-only after promotion", self.p.to));
        }
        let target = db(new.executed_position().await)?;
        new.close().await;
        let mut replicas = vec![self.p.from.clone()];
        replicas.extend(self.p.siblings.iter().cloned());
        replicas.extend(self.p.followers.iter().cloned());
        // The history the replicas are checked against: the new writer's, and the old
        // writer's before it (a new writer restored from a backup, a green, lists only what it
        // binlogged since; the blue replicas still hold their own transactions from when they
        // were writers, which the old writer has).
        let history = match self.connect(&self.p.from).await {
            Ok(mut old) => {
                let h = old.history().await.ok();
                old.close().await;
                h
            }
            Err(_) => None,
        };
        let mut checked = Vec::new();
        for id in replicas {
            let Ok(mut s) = self.connect(&id).await else {
                continue;
            };
            if !db(s.read_only().await)? {
                return Err(format!(
                    "{id} is writable besides {}: two writers",
                    self.p.to
                ));
            }
            if let Err(e) = s
                .wait_until_contains(&target, Duration::from_secs(10))
                .await
            {
                let st = db(s.replication_status().await)?;
                self.warnings.push(format!(
                    "{id} has not caught up with {} ({e}); replication: {:?}",
                    self.p.to,
                    st.last_io_error.or(st.last_sql_error)
                ));
            } else {
                // Caught up means equal, never ahead: the replica first, then the writer, so
                // that the writer's newer transactions cannot make the replica look ahead.
                let mine = db(s.history().await)?;
                let theirs = self.history_of(&self.p.to).await?;
                let theirs = match &history {
                    Some(old) => theirs.merge(old),
                    None => theirs,
                };
                let ahead = mine.missing_from(s.server_id(), &theirs);
                if !ahead.is_empty() {
                    s.close().await;
                    return Err(format!(
                        "{id} is ahead of the new writer {}: it has {ahead} that {} lacks",
                        self.p.to, self.p.to
                    ));
                }
            }
            s.close().await;
            checked.push(id);
        }
        let clusters = self
            .provider
            .list_clusters()
            .await
            .map_err(|e| e.to_string())?;
        let named = clusters
            .iter()
            .find(|c| c.name == self.p.cluster)
            .map(|c| c.writer.clone());
        if self.p.redirect == Redirect::Name && named.as_deref() != Some(self.p.to.as_str()) {
            return Err(format!(
                "the provider resolves {} to {named:?}, not {}",
                self.p.cluster, self.p.to
            ));
        }
        Ok(serde_json::json!({ "caught_up_to": target.to_string(), "replicas_checked": checked }))
    }
}

/// Look at the cluster: the provider's writer of the name, and `read_only` and the source
/// of each server of the run. One short connection attempt per server.
async fn observe(
    provider: &dyn Provider,
    creds: &Credentials,
    p: &SwitchoverParams,
) -> StepResult<ClusterView> {
    let clusters = provider
        .list_clusters()
        .await
        .map_err(|e| format!("listing the clusters: {e}"))?;
    let named_writer = clusters
        .iter()
        .find(|c| c.name == p.cluster)
        .map(|c| c.writer.clone());
    let mut ids = vec![p.from.clone(), p.to.clone()];
    ids.extend(p.siblings.iter().cloned());
    ids.extend(p.followers.iter().cloned());
    let looks = ids.into_iter().map(|id| async move {
        let Ok(ep) = provider.describe_instance(&id).await.map(|i| i.endpoint) else {
            return Err(id);
        };
        let opts = crate::connect_options(creds, &creds.admin, &ep)
            .connect_timeout(Duration::from_secs(2));
        let look = async {
            let mut s = Server::connect(&opts).await?;
            let read_only = s.read_only().await?;
            let st = s.replication_status().await?;
            let server_id = s.server_id();
            s.close().await;
            Ok::<_, dbshift_db::Error>((server_id, read_only, st))
        };
        match tokio::time::timeout(LOOK_TIMEOUT, look).await {
            Ok(Ok((server_id, read_only, st))) => Ok(Seen {
                id,
                server_id,
                port: ep.port,
                read_only,
                source: st
                    .configured
                    .then_some((st.source_server_id, st.source_port)),
            }),
            _ => Err(id),
        }
    });
    let mut seen = Vec::new();
    let mut unreachable = Vec::new();
    for r in futures::future::join_all(looks).await {
        match r {
            Ok(s) => seen.push(s),
            Err(id) => unreachable.push(id),
        }
    }
    Ok(ClusterView {
        named_writer,
        seen,
        unreachable,
    })
}

/// Whether the cluster is still what this run believes at `moment`: `Ok(None)` if so,
/// `Ok(Some(what differs))` if not.
async fn cluster_changed(
    provider: &dyn Provider,
    creds: &Credentials,
    p: &SwitchoverParams,
    moment: Moment,
    renaming: bool,
) -> StepResult<Option<String>> {
    let v = observe(provider, creds, p).await?;
    let (from, to) = (p.from.as_str(), p.to.as_str());
    let named = v.named_writer.clone().unwrap_or_else(|| "nothing".into());
    let mut wrong = Vec::new();
    let name_ok: &[&str] = match moment {
        Moment::BeforeFence | Moment::BeforeRollback | Moment::BeforePointOfNoReturn => &[from],
        Moment::BeforePromote | Moment::Resume => &[from, to],
    };
    let between_holders = renaming && v.named_writer.is_none();
    // Only a run that moves the name can judge by it: with the proxy (or hooks) moving
    // clients, the provider may keep the name where it was (AWS keeps blue's), and the
    // servers' own roles below are the evidence.
    if p.redirect == Redirect::Name && !name_ok.contains(&named.as_str()) && !between_holders {
        wrong.push(format!(
            "{} resolves to {named}, not {}",
            p.cluster,
            name_ok.join(" or ")
        ));
    }
    let writable_ok: &[&str] = match moment {
        Moment::BeforeFence | Moment::BeforeRollback | Moment::BeforePointOfNoReturn => &[from],
        Moment::BeforePromote => &[to],
        Moment::Resume => &[from, to],
    };
    let others = v.other_writers(writable_ok);
    if !others.is_empty() {
        wrong.push(format!("{} writable", others.join(", ")));
    }
    if matches!(
        moment,
        Moment::BeforeFence | Moment::BeforeRollback | Moment::BeforePointOfNoReturn
    ) && v.get(from).is_some_and(|s| s.source.is_some())
    {
        wrong.push(format!("{from} is now a replica of {}", v.source_of(from)));
    }
    if matches!(moment, Moment::BeforeFence | Moment::BeforePointOfNoReturn)
        && v.get(from).is_some()
        && v.get(to).is_some()
        && !v.replicates_from(to, from)
    {
        wrong.push(format!(
            "{to} replicates from {}, not {from}",
            v.source_of(to)
        ));
    }
    if moment == Moment::Resume && v.seen.is_empty() {
        wrong.push(format!(
            "no server of the run answers ({})",
            v.unreachable.join(", ")
        ));
    }
    Ok((!wrong.is_empty()).then(|| wrong.join("; ")))
}

/// Run only the guards (the `check` command).
pub async fn check(
    provider: &dyn Provider,
    params: &SwitchoverParams,
) -> Result<GuardReport, SwitchoverError> {
    let creds = provider.credentials()?;
    let old_ep = provider.describe_instance(&params.from).await?.endpoint;
    let new_ep = provider.describe_instance(&params.to).await?.endpoint;
    let mut old = Server::connect(&crate::connect_options(&creds, &creds.admin, &old_ep)).await?;
    let mut new = Server::connect(&crate::connect_options(&creds, &creds.admin, &new_ep)).await?;
    let limits = GuardLimits {
        max_lag_transactions: params.max_lag_transactions,
        max_lag_seconds: params.max_lag_seconds,
        ..GuardLimits::default()
    };
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
