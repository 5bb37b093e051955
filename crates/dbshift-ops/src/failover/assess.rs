//! Looking at the writer and its replicas: each one's state as a failover candidate, bounded
//! in time (a hung server must not hang the failover). Changes nothing.

use super::*;

pub(super) fn options(
    creds: &Credentials,
    ep: &Endpoint,
    timeout: Duration,
) -> dbshift_db::ConnectOptions {
    crate::connect_options(creds, &creds.admin, ep).connect_timeout(timeout)
}

/// Connect, bounded as a whole by `timeout` (a hung server accepts TCP and never greets).
pub(super) async fn connect_within(
    creds: &Credentials,
    ep: &Endpoint,
    timeout: Duration,
) -> StepResult<Server> {
    match tokio::time::timeout(timeout, Server::connect(&options(creds, ep, timeout))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(StepError::timeout(format!(
            "no answer within {} ms",
            ms(timeout)
        ))),
    }
}

pub(super) fn error_text(e: &Option<(u32, String)>) -> Option<String> {
    e.as_ref().map(|(code, msg)| format!("error {code}: {msg}"))
}

/// One replica's state, bounded by `timeout`.
pub(super) async fn describe_candidate(
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
pub(super) async fn assess_as(
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
    let creds = provider.credentials_for(cluster)?;
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
            Err(e) => Err(e.to_string()),
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
