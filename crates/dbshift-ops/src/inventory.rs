//! The inventory: what the provider says of each instance, joined with what its server says
//! right now (`@@read_only`, replication threads, source, lag, last error), and the problems
//! where the two disagree: a writable reader (two writers), a read-only writer, a writer that
//! replicates, a replica that replicates from the wrong server or not at all. The provider's
//! records say what each instance should be; only the servers say what it is, and a role
//! taken from the records alone made a writable reader look healthy. It reads; it never
//! changes a thing, and a problem is reported, never repaired.

use std::collections::BTreeMap;
use std::time::Duration;

use dbshift_db::status::IoState;
use dbshift_db::{ReplicationPosition, Server};
use dbshift_provider::{Cluster, Deployment, Endpoint, Instance, InstanceStatus, Provider, Role};
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
    /// The instance whose endpoint `source` is, when it is one the provider knows.
    pub source_instance: Option<String>,
    /// Where the server stands (MariaDB `@@gtid_current_pos`, MySQL `@@gtid_executed`).
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
    /// What the server says it is, from its own variables (`MySQL 8.4.3 (RDS)`, `Aurora MySQL
    /// 3.05.2 (8.0.32)`, `MariaDB 10.11.14`); `None` when it was not asked.
    pub flavor: Option<String>,
    pub status: InstanceStatus,
    pub ca: String,
    pub encrypted: bool,
    /// What it replicates from, so that a tree can be rebuilt from the rows: the instance the
    /// provider records as its source (self-managed: discovered from the servers, chains
    /// included), else what its server reports (`replication.source_instance`, or
    /// `replication.source` when that endpoint is no instance the provider knows); `None` for
    /// a server that replicates from nobody, or whose source is not known.
    pub source: Option<String>,
    /// `None` when the server could not be asked (stopped, unreachable: see `error`).
    pub replication: Option<ReplicationHealth>,
    pub error: Option<String>,
    /// What the server itself says it is (`@@read_only` and whether it replicates), next to
    /// `role`, which is what the provider's records say.
    pub observed_role: ObservedRole,
    /// Where the server disagrees with its role, in plain English; empty when it agrees or
    /// was not asked. The inventory still succeeds: it is a report.
    pub problems: Vec<String>,
}

/// What a server is by its own account: whether it accepts writes (`@@read_only`) and whether
/// it is configured to replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedRole {
    /// Writable and replicating from no one.
    Writer,
    /// Read-only and replicating.
    Replica,
    /// Replicating, yet it accepts writes.
    WritableReplica,
    /// Read-only and replicating from no one: neither takes writes nor follows a writer.
    ReadOnlyStandalone,
    /// The server was not asked (stopped, unreachable, or no database credentials).
    Unknown,
}

impl ObservedRole {
    fn of(h: &ReplicationHealth) -> ObservedRole {
        match (h.read_only, h.replicating) {
            (false, false) => ObservedRole::Writer,
            (true, true) => ObservedRole::Replica,
            (false, true) => ObservedRole::WritableReplica,
            (true, false) => ObservedRole::ReadOnlyStandalone,
        }
    }
}

impl std::fmt::Display for ObservedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObservedRole::Writer => "writer",
            ObservedRole::Replica => "replica",
            ObservedRole::WritableReplica => "writable_replica",
            ObservedRole::ReadOnlyStandalone => "read_only_standalone",
            ObservedRole::Unknown => "unknown",
        })
    }
}

/// Errors of the inventory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
}

/// Why an instance's server was not observed.
#[derive(Debug, thiserror::Error)]
enum Unobserved {
    /// The instance is stopped: nothing to ask (not an error).
    #[error("stopped")]
    Stopped,
    /// The provider has no database credentials (AWS): only the control plane is shown
    /// (not an error).
    #[error("not observed")]
    NoSqlAccess,
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
}

struct Observed {
    health: ReplicationHealth,
    flavor: String,
    binlog_pos: Option<ReplicationPosition>,
    slave_pos: Option<ReplicationPosition>,
    encrypted: bool,
}

async fn observe(provider: &dyn Provider, inst: &Instance) -> Result<Observed, Unobserved> {
    let creds = provider.credentials_for(&inst.cluster)?;
    let opts = crate::connect_options(&creds, &creds.admin, &inst.endpoint)
        .connect_timeout(Duration::from_secs(3));
    let mut s = Server::connect(&opts).await?;
    let result = async {
        let st = s.replication_status().await?;
        let read_only = s.read_only().await?;
        let encrypted = s.encrypts_new_tables().await?;
        let binlog_pos = Some(s.executed_position().await?);
        // A writer has no applied position where positions are binlog coordinates (MySQL
        // without GTIDs): none, not an error.
        let slave_pos = s.applied_position().await.ok();
        let current = Some(s.current_position().await?.to_string());
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
                source_instance: None,
                gtid_position: current,
                read_only,
            },
            binlog_pos,
            slave_pos,
            encrypted,
            flavor: s.flavor().to_string(),
        })
    }
    .await;
    s.close().await;
    Ok(result?)
}

/// Describe every instance of the provider, asking each running server for its replication.
pub async fn inventory(provider: &dyn Provider) -> Result<Vec<InventoryRow>, Error> {
    let instances = provider.list_instances().await?;
    let observed = futures::future::join_all(instances.iter().map(|i| async move {
        if i.status == InstanceStatus::Stopped {
            return Err(Unobserved::Stopped);
        }
        // Without database credentials (AWS) only the control plane is shown.
        if !provider.sql_access() {
            return Err(Unobserved::NoSqlAccess);
        }
        observe(provider, i).await
    }))
    .await;

    // Lag in transactions: how far each replica's applied position is behind what its source
    // has written (its cluster's writer, or in a chain or a blue/green pair, whatever it
    // replicates from), in the source's domains.
    let source_pos = |source: &str| -> Option<ReplicationPosition> {
        instances
            .iter()
            .zip(observed.iter())
            .find(|(i, _)| i.endpoint.to_string() == source)
            .and_then(|(_, o)| o.as_ref().ok())
            .and_then(|o| o.binlog_pos.clone())
    };
    let mut rows = Vec::with_capacity(instances.len());
    for (inst, obs) in instances.iter().zip(observed.iter()) {
        let flavor = obs.as_ref().ok().map(|o| o.flavor.clone());
        let (replication, error, encrypted) = match obs {
            Ok(o) => {
                let mut h = o.health.clone();
                h.source_instance = h.source.as_deref().and_then(|src| {
                    instances
                        .iter()
                        .find(|i| i.endpoint.to_string() == src)
                        .map(|i| i.id.clone())
                });
                if h.replicating {
                    let from = h.source.as_deref().and_then(source_pos);
                    if let (Some(w), Some(mine)) = (from, &o.slave_pos) {
                        h.lag_transactions = mine.behind(&w);
                    }
                }
                (Some(h), None, o.encrypted || inst.encrypted)
            }
            Err(Unobserved::Stopped | Unobserved::NoSqlAccess) => (None, None, inst.encrypted),
            Err(e) => (None, Some(e.to_string()), inst.encrypted),
        };
        let source = inst.source.clone().or_else(|| {
            replication
                .as_ref()
                .and_then(|h| h.source_instance.clone().or_else(|| h.source.clone()))
        });
        rows.push(InventoryRow {
            id: inst.id.clone(),
            cluster: inst.cluster.clone(),
            role: inst.role,
            endpoint: inst.endpoint.clone(),
            engine: inst.engine.clone(),
            engine_version: inst.engine_version.clone(),
            flavor,
            status: inst.status,
            ca: inst.ca.clone(),
            encrypted,
            source,
            observed_role: replication
                .as_ref()
                .map(ObservedRole::of)
                .unwrap_or(ObservedRole::Unknown),
            replication,
            error,
            problems: Vec::new(),
        });
    }
    if provider.sql_access() {
        let clusters = provider.list_clusters().await?;
        let deployments = provider.deployments().await?;
        // On Aurora the storage replicates, not the servers: there is no source to check.
        let mut platform_replicated = Vec::new();
        for c in &clusters {
            if provider.has_platform_failover(&c.name).await? {
                platform_replicated.push(c.name.clone());
            }
        }
        let recorded: Vec<Option<String>> = instances.iter().map(|i| i.source.clone()).collect();
        find_problems(
            &mut rows,
            &recorded,
            &clusters,
            &deployments,
            &platform_replicated,
        );
    }
    Ok(rows)
}

/// What an instance should be by the provider's records.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// Takes the writes of `name` (the name clients use): writable, replicating from no one.
    Writer { name: String },
    /// Read-only, replicating from `source`; `writer` takes the writes of `name`. `standby`:
    /// the writer of a blue/green side that does not serve.
    Replica {
        source: String,
        name: String,
        writer: String,
        standby: bool,
    },
    /// Not judged: the provider names no writer for its cluster.
    Unjudged,
}

/// `recorded`: the source the provider records for `inst` (self-managed: discovered, so a
/// replica of a replica in a chain is expected to replicate from it), else its cluster's
/// writer is expected.
fn expected(
    inst: &InventoryRow,
    recorded: Option<&String>,
    clusters: &[Cluster],
    deployments: &[Deployment],
) -> Expected {
    use dbshift_provider::Side;
    let side = deployments.iter().find_map(|d| {
        if d.blue == inst.cluster {
            Some((d, Side::Blue))
        } else if d.green == inst.cluster {
            Some((d, Side::Green))
        } else {
            None
        }
    });
    if let Some((d, side)) = side {
        // Clients use blue's name for either side; only the serving side's writer takes writes,
        // the other side's writer replicates from it, and each side's readers from their own
        // side's writer (blue's readers from blue's old writer after a switch).
        let serving_writer = d.writer(d.serving).to_string();
        let side_writer = d.writer(side);
        return if inst.id == side_writer && d.serving == side {
            Expected::Writer {
                name: d.blue.clone(),
            }
        } else if inst.id == side_writer {
            Expected::Replica {
                source: serving_writer.clone(),
                name: d.blue.clone(),
                writer: serving_writer,
                standby: true,
            }
        } else {
            Expected::Replica {
                source: side_writer.to_string(),
                name: d.blue.clone(),
                writer: serving_writer,
                standby: false,
            }
        };
    }
    match clusters.iter().find(|c| c.name == inst.cluster) {
        Some(c) if c.writer == inst.id => Expected::Writer {
            name: c.name.clone(),
        },
        Some(c) if !c.writer.is_empty() => Expected::Replica {
            source: recorded.unwrap_or(&c.writer).clone(),
            name: c.name.clone(),
            writer: c.writer.clone(),
            standby: false,
        },
        _ => Expected::Unjudged,
    }
}

/// `: two writers` when more than one server behind a name accepts writes.
fn writers_suffix(writable: usize) -> String {
    match writable {
        0 | 1 => String::new(),
        2 => ": two writers".to_string(),
        n => format!(": {n} writers"),
    }
}

/// Compare each observed server with what the provider's records say it should be, and write
/// the disagreements into `problems`. Servers that were not asked are not judged.
fn find_problems(
    rows: &mut [InventoryRow],
    recorded: &[Option<String>],
    clusters: &[Cluster],
    deployments: &[Deployment],
    platform_replicated: &[String],
) {
    let expectations: Vec<Expected> = rows
        .iter()
        .zip(recorded)
        .map(|(r, source)| {
            if platform_replicated.contains(&r.cluster) {
                Expected::Unjudged
            } else {
                expected(r, source.as_ref(), clusters, deployments)
            }
        })
        .collect();
    // Writable servers behind each name clients use (both sides of a blue/green deployment
    // count under blue's name: clients of that name can reach either).
    let mut writable: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (r, e) in rows.iter().zip(&expectations) {
        let name = match e {
            Expected::Writer { name } | Expected::Replica { name, .. } => name.as_str(),
            Expected::Unjudged => continue,
        };
        if matches!(&r.replication, Some(h) if !h.read_only) {
            writable.entry(name).or_default().push(r.id.as_str());
        }
    }
    // Hosts of known instances: a source on one of them at an unknown port is no instance of
    // the fleet; a source elsewhere may be one under another address (an RDS replica names
    // its source by IP, the provider by DNS name), so it is shown, not judged.
    let known_hosts: Vec<String> = rows.iter().map(|r| r.endpoint.host.clone()).collect();

    let mut found: Vec<Vec<String>> = vec![Vec::new(); rows.len()];
    for ((r, e), problems) in rows.iter().zip(&expectations).zip(found.iter_mut()) {
        let Some(h) = &r.replication else { continue };
        let source = || match (&h.source_instance, &h.source) {
            (Some(id), Some(ep)) => format!("{id} ({ep})"),
            (None, Some(ep)) => ep.clone(),
            _ => "an unknown source".to_string(),
        };
        match e {
            Expected::Unjudged => {}
            Expected::Writer { name } => {
                let n = writable.get(name.as_str()).map(Vec::len).unwrap_or(0);
                if h.read_only {
                    problems.push(format!("read-only writer: clients of {name} cannot write"));
                } else if n > 1 {
                    let all = writable[name.as_str()].join(", ");
                    problems.push(format!(
                        "{n} writable servers behind {name} ({all}){}",
                        writers_suffix(n)
                    ));
                }
                if h.replicating {
                    problems.push(format!(
                        "writer replicates: {} is {name}'s writer but replicates from {} \
                         (IO {}, SQL {})",
                        r.id,
                        source(),
                        h.io_running,
                        if h.sql_running { "Yes" } else { "No" }
                    ));
                }
            }
            Expected::Replica {
                source: want,
                name,
                writer,
                standby,
            } => {
                if !h.read_only {
                    let n = writable.get(name.as_str()).map(Vec::len).unwrap_or(0);
                    let what = if *standby {
                        "writable standby"
                    } else {
                        "writable reader"
                    };
                    problems.push(format!(
                        "{what}: {} accepts writes although {name}'s writer is {writer}{}",
                        r.id,
                        writers_suffix(n)
                    ));
                }
                if !h.replicating {
                    problems.push(format!(
                        "not replicating: {} should replicate from {want} but has no source",
                        r.id
                    ));
                    continue;
                }
                let wrong = match (&h.source_instance, &h.source) {
                    (Some(id), _) => id != want,
                    (None, Some(ep)) => known_hosts
                        .iter()
                        .any(|host| ep.rsplit_once(':').map(|(on, _)| on) == Some(host.as_str())),
                    (None, None) => true,
                };
                if wrong {
                    problems.push(format!(
                        "wrong source: {} replicates from {}, not from {want}",
                        r.id,
                        source()
                    ));
                }
                if h.io_running == "No" || !h.sql_running {
                    let mut p = format!(
                        "replication stopped: {} has IO thread {}, SQL thread {}",
                        r.id,
                        h.io_running,
                        if h.sql_running { "Yes" } else { "No" }
                    );
                    if let Some(err) = &h.last_error {
                        p.push_str(&format!(" (last error {err})"));
                    }
                    problems.push(p);
                }
            }
        }
    }
    for (r, p) in rows.iter_mut().zip(found) {
        r.problems = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, source: Option<&str>) -> InventoryRow {
        let ep = |id: &str| Endpoint {
            host: "10.0.0.1".into(),
            port: id.trim_start_matches("db").parse().unwrap(),
        };
        InventoryRow {
            id: id.into(),
            cluster: "main".into(),
            role: if source.is_none() {
                Role::Writer
            } else {
                Role::Reader
            },
            endpoint: ep(id),
            engine: "mariadb".into(),
            engine_version: "10.11".into(),
            flavor: None,
            status: InstanceStatus::Available,
            ca: "-".into(),
            encrypted: false,
            source: source.map(str::to_string),
            replication: Some(ReplicationHealth {
                replicating: source.is_some(),
                io_running: "Yes".into(),
                sql_running: true,
                lag_seconds: Some(0),
                lag_transactions: Some(0),
                last_error: None,
                source: source.map(|s| ep(s).to_string()),
                source_instance: source.map(str::to_string),
                gtid_position: None,
                read_only: source.is_some(),
            }),
            error: None,
            observed_role: ObservedRole::Unknown,
            problems: Vec::new(),
        }
    }

    #[test]
    fn a_chain_is_judged_by_the_recorded_source() {
        let cluster = Cluster {
            name: "main".into(),
            writer: "db1".into(),
            instances: vec!["db1".into(), "db2".into(), "db3".into()],
            gtid_domain_id: None,
        };
        let chain = || {
            vec![
                row("db1", None),
                row("db2", Some("db1")),
                row("db3", Some("db2")),
            ]
        };
        // The provider records the chain (self-managed discovery): no problem.
        let mut rows = chain();
        let recorded = [None, Some("db1".to_string()), Some("db2".to_string())];
        find_problems(
            &mut rows,
            &recorded,
            std::slice::from_ref(&cluster),
            &[],
            &[],
        );
        assert!(rows.iter().all(|r| r.problems.is_empty()), "{rows:#?}");
        // It records nothing (the lab): a replica of a replica is a wrong source.
        let mut rows = chain();
        find_problems(&mut rows, &[None, None, None], &[cluster], &[], &[]);
        assert_eq!(
            rows[2].problems,
            ["wrong source: db3 replicates from db2 (10.0.0.1:2), not from db1"]
        );
        assert!(rows[0].problems.is_empty() && rows[1].problems.is_empty());
    }
}
