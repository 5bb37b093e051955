//! The inventory: what the provider says of each instance, joined with what its server says
//! right now (replication threads, lag, last error). It reads; it never changes a thing.

use std::time::Duration;

use dbshift_db::mariadb::GtidPos;
use dbshift_db::status::IoState;
use dbshift_db::Server;
use dbshift_provider::{Endpoint, Instance, InstanceStatus, Provider, Role};
use serde::Serialize;

/// Replication as the instance's server reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationHealth {
    /// Whether the server is configured as a replica.
    pub replicating: bool,
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    pub sql_running: bool,
    /// `Seconds_Behind_Master`: shown, never trusted alone.
    pub lag_seconds: Option<u64>,
    /// GTID distance to the cluster's writer, in transactions.
    pub lag_transactions: Option<u64>,
    pub last_error: Option<String>,
    /// `host:port` it replicates from.
    pub source: Option<String>,
    /// `@@gtid_current_pos` (MariaDB).
    pub gtid_position: Option<String>,
    pub read_only: bool,
}

/// One inventory row.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryRow {
    pub id: String,
    pub cluster: String,
    pub role: Role,
    pub endpoint: Endpoint,
    pub engine: String,
    pub engine_version: String,
    pub status: InstanceStatus,
    pub ca: String,
    pub encrypted: bool,
    /// `None` when the server could not be asked (stopped, unreachable: see `error`).
    pub replication: Option<ReplicationHealth>,
    pub error: Option<String>,
}

/// Errors of the inventory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
}

/// The servers are not asked: the provider has no database credentials.
const NOT_OBSERVED: &str = "not observed";

struct Observed {
    health: ReplicationHealth,
    binlog_pos: Option<GtidPos>,
    slave_pos: Option<GtidPos>,
    encrypted: bool,
}

async fn observe(provider: &dyn Provider, inst: &Instance) -> Result<Observed, String> {
    let creds = provider.credentials().map_err(|e| e.to_string())?;
    let opts = crate::connect_options(&creds, &creds.admin, &inst.endpoint)
        .connect_timeout(Duration::from_secs(3));
    let mut s = Server::connect(&opts).await.map_err(|e| e.to_string())?;
    let result = async {
        let st = s.replication_status().await?;
        let read_only = s.read_only().await?;
        let encrypted = !matches!(
            s.variable("innodb_encrypt_tables").await?.as_deref(),
            None | Some("OFF") | Some("0")
        );
        let (binlog_pos, slave_pos, current) = if s.flavor().is_mariadb() {
            (
                Some(s.gtid_binlog_pos().await?),
                Some(s.gtid_slave_pos().await?),
                Some(s.gtid_current_pos().await?.to_string()),
            )
        } else {
            (None, None, Some(s.gtid_executed().await?.to_string()))
        };
        let last_error = st
            .last_io_error
            .clone()
            .or(st.last_sql_error.clone())
            .map(|(code, msg)| format!("{code}: {msg}"));
        Ok::<_, dbshift_db::Error>(Observed {
            health: ReplicationHealth {
                replicating: st.configured,
                io_running: match st.io_running {
                    IoState::Yes => "Yes",
                    IoState::No => "No",
                    IoState::Connecting => "Connecting",
                }
                .to_string(),
                sql_running: st.sql_running,
                lag_seconds: st.seconds_behind,
                lag_transactions: None,
                last_error,
                source: match (&st.source_host, st.source_port) {
                    (Some(h), Some(p)) if st.configured => Some(format!("{h}:{p}")),
                    _ => None,
                },
                gtid_position: current,
                read_only,
            },
            binlog_pos,
            slave_pos,
            encrypted,
        })
    }
    .await;
    s.close().await;
    result.map_err(|e| e.to_string())
}

/// Describe every instance of the provider, asking each running server for its replication.
pub async fn inventory(provider: &dyn Provider) -> Result<Vec<InventoryRow>, Error> {
    let instances = provider.list_instances().await?;
    let observed = futures::future::join_all(instances.iter().map(|i| async move {
        if i.status == InstanceStatus::Stopped {
            return Err("stopped".to_string());
        }
        // Without database credentials (AWS) only the control plane is shown.
        if !provider.sql_access() {
            return Err(NOT_OBSERVED.to_string());
        }
        observe(provider, i).await
    }))
    .await;

    // Lag in transactions: how far each replica's applied position is behind what its source
    // has written (its cluster's writer, or in a chain or a blue/green pair, whatever it
    // replicates from), in the source's domains.
    let source_pos = |source: &str| -> Option<GtidPos> {
        instances
            .iter()
            .zip(observed.iter())
            .find(|(i, _)| i.endpoint.to_string() == source)
            .and_then(|(_, o)| o.as_ref().ok())
            .and_then(|o| o.binlog_pos.clone())
    };
    let mut rows = Vec::with_capacity(instances.len());
    for (inst, obs) in instances.iter().zip(observed.iter()) {
        let (replication, error, encrypted) = match obs {
            Ok(o) => {
                let mut h = o.health.clone();
                if h.replicating {
                    let from = h.source.as_deref().and_then(source_pos);
                    if let (Some(w), Some(mine)) = (from, &o.slave_pos) {
                        h.lag_transactions = Some(mine.behind(&w));
                    }
                }
                (Some(h), None, o.encrypted || inst.encrypted)
            }
            Err(e) if e == "stopped" || e == NOT_OBSERVED => (None, None, inst.encrypted),
            Err(e) => (None, Some(e.clone()), inst.encrypted),
        };
        rows.push(InventoryRow {
            id: inst.id.clone(),
            cluster: inst.cluster.clone(),
            role: inst.role,
            endpoint: inst.endpoint.clone(),
            engine: inst.engine.clone(),
            engine_version: inst.engine_version.clone(),
            status: inst.status,
            ca: inst.ca.clone(),
            encrypted,
            replication,
            error,
        });
    }
    Ok(rows)
}
