//! Rejoin: a former writer that comes back after a failover becomes a replica of the new
//! writer, when that is safe.
//!
//! Safe means its binlogged history (MariaDB's `@@gtid_binlog_state`, MySQL's
//! `@@gtid_executed`) is contained in the new writer's: every transaction it ever binlogged
//! reached the new writer. Anything else is an errant transaction (typically the
//! acknowledged-or-not writes it took just before it died, which no replica received): it is
//! reported by GTID and the server is left read-only with no replication, never discarded
//! silently. A human decides (keep them by replaying them on the new writer, or rebuild the
//! instance). This module must never make the instance writable.

use std::time::Duration;

use dbshift_provider::{InstanceStatus, Provider};
use serde::Serialize;

use crate::events::{Silent, Workflow};
use crate::journal::{Journal, RunStatus};
use crate::runner::StepRunner;

/// The journal kind of a rejoin.
pub const RUN_KIND: &str = "rejoin";

/// How a rejoin ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RejoinOutcome {
    /// It replicates from the writer now (or already did).
    Rejoined {
        run_id: String,
        instance: String,
        writer: String,
        /// It was started by this rejoin.
        started: bool,
        already: bool,
        events_disabled: Vec<String>,
    },
    /// It holds transactions the writer never had; left read-only, not replicating.
    Errant {
        run_id: String,
        instance: String,
        writer: String,
        errant: Vec<String>,
        instance_binlog_state: String,
        writer_binlog_state: String,
    },
}

impl RejoinOutcome {
    /// 0 rejoined, 3 errant transactions (a human decides).
    pub fn exit_code(&self) -> u8 {
        match self {
            RejoinOutcome::Rejoined { .. } => 0,
            RejoinOutcome::Errant { .. } => 3,
        }
    }
}

/// Errors before anything changed (bad input, control plane) or a server that failed.
#[derive(Debug, thiserror::Error)]
pub enum RejoinError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
    /// Another command holds the cluster: nothing changed.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

/// Make `instance` (a former writer) a replica of its cluster's writer, or report why not.
/// A stopped instance is started first (the provider starts a non-writer read-only).
pub async fn rejoin(
    provider: &dyn Provider,
    journal: &Journal,
    instance: &str,
    start_timeout: Duration,
) -> Result<RejoinOutcome, RejoinError> {
    let inst = provider.describe_instance(instance).await?;
    let clusters = provider.list_clusters().await?;
    let cluster = clusters
        .iter()
        .find(|c| c.instances.iter().any(|i| i == instance))
        .ok_or_else(|| RejoinError::BadInput(format!("{instance} is in no cluster")))?;
    if cluster.writer == instance {
        return Err(RejoinError::BadInput(format!(
            "{instance} is the writer of {}; rejoin is for a former writer after a failover",
            cluster.name
        )));
    }
    let _lock = journal
        .locks()
        .acquire(&cluster.name, &format!("rejoin of {instance}"))
        .await?;
    let writer = cluster.writer.clone();
    let run_id = journal
        .create_run(
            RUN_KIND,
            &cluster.name,
            &serde_json::json!({ "instance": instance, "writer": writer }),
        )
        .await?;
    let result = rejoin_steps(
        provider,
        journal,
        &run_id,
        instance,
        &writer,
        inst.status,
        start_timeout,
    )
    .await;
    match &result {
        Ok(RejoinOutcome::Rejoined { .. }) => {
            journal
                .set_status(&run_id, RunStatus::Done, Some("rejoined"))
                .await?
        }
        Ok(RejoinOutcome::Errant { errant, .. }) => {
            journal
                .set_status(
                    &run_id,
                    RunStatus::NeedsHuman,
                    Some(&format!(
                        "errant transactions {}; left read-only",
                        errant.join(",")
                    )),
                )
                .await?
        }
        Err(e) => {
            journal
                .set_status(&run_id, RunStatus::Failed, Some(&e.to_string()))
                .await?
        }
    }
    result
}

/// The cluster's lock, taken for the whole rejoin, still held, or the rejoin stops before its
/// next step.
fn check_lock(journal: &Journal, cluster: &str) -> Result<(), RejoinError> {
    if let Some(lock) = journal.locks().held(cluster) {
        lock.check()?;
    }
    Ok(())
}

async fn rejoin_steps(
    provider: &dyn Provider,
    journal: &Journal,
    run: &str,
    instance: &str,
    writer: &str,
    status: InstanceStatus,
    start_timeout: Duration,
) -> Result<RejoinOutcome, RejoinError> {
    let cluster = provider.describe_instance(instance).await?.cluster;
    let creds = provider.credentials_for(&cluster)?;
    let mut steps = StepRunner::new(journal, run, Workflow::Rejoin, &Silent);
    let started = status == InstanceStatus::Stopped;
    if started {
        check_lock(journal, &cluster)?;
        let begun = steps.begin("start").await?;
        provider.start_instance(instance, start_timeout).await?;
        steps
            .end(begun, serde_json::json!({ "started": instance }))
            .await?;
    }
    let ep = provider.describe_instance(instance).await?.endpoint;
    let wep = provider.describe_instance(writer).await?.endpoint;
    let opts =
        |e| crate::connect_options(&creds, &creds.admin, e).connect_timeout(Duration::from_secs(3));
    let mut s = dbshift_db::Server::connect(&opts(&ep)).await?;
    let mut w = dbshift_db::Server::connect(&opts(&wep)).await?;
    // Never two writers, whatever state it came back in.
    if !s.read_only().await? {
        tracing::warn!(
            instance,
            "a former writer came back writable: setting read_only"
        );
        s.set_read_only().await?;
    }
    s.semi_sync_follow_role(false).await?;
    check_lock(journal, &cluster)?;
    let begun = steps.begin("compare").await?;
    let mine = s.history().await?;
    let theirs = w.history().await?;
    let writer_id = w.server_id();
    w.close().await;
    // By entry, or by domain position where the writer was restored from a backup (a green)
    // and knows only each domain's last GTID.
    let errant = mine.missing_from(s.server_id(), &theirs);
    steps
        .end(
            begun,
            serde_json::json!({
                "instance_binlog_state": mine.to_string(),
                "writer_binlog_state": theirs.to_string(),
                "errant": errant.to_strings(),
            }),
        )
        .await?;
    if !errant.is_empty() {
        // Left as it is: read-only, and no replication that could overwrite or trip on them.
        let st = s.replication_status().await?;
        if st.configured && st.io_running != dbshift_db::status::IoState::No {
            s.stop_replication().await?;
        }
        s.close().await;
        return Ok(RejoinOutcome::Errant {
            run_id: run.to_string(),
            instance: instance.to_string(),
            writer: writer.to_string(),
            errant: errant.to_strings(),
            instance_binlog_state: mine.to_string(),
            writer_binlog_state: theirs.to_string(),
        });
    }
    check_lock(journal, &cluster)?;
    let begun = steps.begin("replicate").await?;
    let st = s.replication_status().await?;
    let already = st.configured
        && match st.source_server_id {
            Some(id) => id == writer_id,
            None => st.source_port == Some(wep.port),
        };
    if !already {
        // Its own history is in the writer already: replication starts after it.
        let start = s.start_after_own_history().await?;
        let spec = crate::replica_source(&creds, &wep, start);
        s.point_replica_at(&spec).await?;
    } else if !st.healthy() {
        s.start_replication().await?;
    }
    let events_disabled = s.disable_events_as_replica().await?;
    // Healthy within a bound, or say what replication reports.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let st = s.replication_status().await?;
        if st.healthy() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let why = st
                .last_io_error
                .or(st.last_sql_error)
                .map(|(c, m)| format!("error {c}: {m}"))
                .unwrap_or_else(|| {
                    format!("IO {:?}, SQL running {}", st.io_running, st.sql_running)
                });
            s.close().await;
            steps.failed(begun, &why).await?;
            return Err(RejoinError::Failed(format!(
                "{instance} was pointed at {writer} but replication is not healthy: {why}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.close().await;
    steps
        .end(begun, serde_json::json!({ "writer": writer, "already": already, "events_disabled": events_disabled }))
        .await?;
    Ok(RejoinOutcome::Rejoined {
        run_id: run.to_string(),
        instance: instance.to_string(),
        writer: writer.to_string(),
        started,
        already,
        events_disabled,
    })
}
