//! Topology discovery, as Orchestrator does it: start at the seeds, follow each replica to its
//! source (`Source_Host`/`Master_Host` of its replica status) and each server to the replicas
//! registered with it (`SHOW REPLICAS` / `SHOW SLAVE HOSTS`, which needs `report_host` on the
//! replica), until nothing new turns up. Servers are told apart by `server_id`, so a server
//! reached under two names (a seed's host name, a replica's `Source_Host` address) is one.
//!
//! The writer is the server that replicates from nobody and is writable. What does not fit
//! is reported, never guessed around: a seed that does not answer, a login refused, two
//! writable servers, no writer. Discovery only reads; it changes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;

use super::fleet_file::ClusterSpec;
use crate::error::{Error, Result};
use crate::model::{Credential, Endpoint, Role};

/// Bound of each connection attempt during discovery.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most servers a cluster may have: a bound on a walk through a misconfigured fleet.
const MAX_MEMBERS: usize = 64;

/// One server of a discovered cluster.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub endpoint: Endpoint,
    pub server_id: u32,
    /// `mariadb` or `mysql`.
    pub engine: String,
    /// The server's own description (`MariaDB 10.11.14`).
    pub version: String,
    pub read_only: bool,
    /// `host:port` of its source, when it is a replica.
    pub source: Option<Endpoint>,
    pub role: Role,
}

/// A cluster as its servers describe it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The writer's id.
    pub writer: String,
    /// Writer first, then the others by id.
    pub members: Vec<Member>,
}

impl Topology {
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Make `id` the writer in this record (after a redirect); the servers are the truth and
    /// the next discovery reads them again.
    pub fn set_writer(&mut self, id: &str) {
        self.writer = id.to_string();
        for m in &mut self.members {
            m.role = if m.id == id {
                Role::Writer
            } else {
                Role::Reader
            };
        }
    }
}

/// Connection options for `ep` as `who`, over the cluster's TLS.
pub fn options(spec: &ClusterSpec, who: &Credential, ep: &Endpoint) -> ConnectOptions {
    let mut o = ConnectOptions::new(ep.host.clone(), ep.port, who.user.clone())
        .password(who.password.clone())
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(ca) = &spec.tls.ca_file {
        o = o.tls(TlsOptions {
            ca_path: ca.clone(),
            verify_identity: true,
        });
    }
    o
}

/// Connect as the cluster's admin user; the error names the server, the user and what to do.
pub async fn connect_admin(spec: &ClusterSpec, fleet: &str, ep: &Endpoint) -> Result<Server> {
    let opts = options(spec, &spec.admin, ep);
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT * 2, Server::connect(&opts)).await;
    let e = match attempt {
        Ok(Ok(s)) => return Ok(s),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {:?}", CONNECT_TIMEOUT * 2),
    };
    let cluster = &spec.name;
    if e.contains("Access denied") || e.contains("1045") {
        return Err(Error::BadInput(format!(
            "cluster {cluster}: {ep} refused the login of {:?} ({e}); check the admin user's \
             password_env/password_file in {fleet} and that the user exists on {ep}; nothing \
             changed",
            spec.admin.user
        )));
    }
    Err(Error::Discovery {
        cluster: cluster.clone(),
        message: format!(
            "{ep} does not answer ({e}); check its host:port in {fleet}, that the server runs \
             and that this machine may reach it (a firewall, TLS: tls.ca_file); nothing changed"
        ),
    })
}

/// What one server says about itself and its neighbours.
struct Seen {
    member: Member,
    replicas: Vec<Endpoint>,
}

async fn look_at(spec: &ClusterSpec, fleet: &str, ep: &Endpoint) -> Result<Seen> {
    let mut s = connect_admin(spec, fleet, ep).await?;
    let read = async {
        let status = s.replication_status().await?;
        let read_only = s.read_only().await?;
        let replicas = s.replica_hosts().await?;
        Ok::<_, dbshift_db::Error>((status, read_only, replicas))
    }
    .await;
    let server_id = s.server_id();
    let engine = if s.flavor().is_mariadb() {
        "mariadb"
    } else {
        "mysql"
    };
    let version = s.flavor().to_string();
    s.close().await;
    let (status, read_only, replicas) = read.map_err(|e| Error::Discovery {
        cluster: spec.name.clone(),
        message: format!(
            "{ep}: reading its replication status failed ({e}); the admin user needs \
             REPLICATION CLIENT (or SLAVE MONITOR on MariaDB 10.5+) and REPLICATION SLAVE"
        ),
    })?;
    let source = match (status.configured, &status.source_host, status.source_port) {
        (true, Some(h), Some(p)) if !h.is_empty() => Some(Endpoint {
            host: h.clone(),
            port: p,
        }),
        _ => None,
    };
    Ok(Seen {
        member: Member {
            id: spec.id_of(ep),
            endpoint: ep.clone(),
            server_id,
            engine: engine.to_string(),
            version,
            read_only,
            source,
            role: Role::Reader,
        },
        replicas: replicas
            .into_iter()
            .filter_map(|r| r.host.map(|host| Endpoint { host, port: r.port }))
            .collect(),
    })
}

/// Walk the cluster from its seeds; see the module documentation. `fleet` names the fleet file
/// in messages.
pub async fn discover(spec: &ClusterSpec, fleet: &str) -> Result<Topology> {
    tracing::debug!(cluster = %spec.name, seeds = spec.seeds.len(), "discovering the topology");
    let mut queue: VecDeque<(Endpoint, bool)> =
        spec.seeds.iter().map(|e| (e.clone(), true)).collect();
    let mut visited: Vec<Endpoint> = Vec::new();
    let mut by_server_id: BTreeMap<u32, Member> = BTreeMap::new();
    while let Some((ep, seed)) = queue.pop_front() {
        if visited.contains(&ep) {
            continue;
        }
        visited.push(ep.clone());
        if by_server_id.len() >= MAX_MEMBERS {
            return Err(Error::Discovery {
                cluster: spec.name.clone(),
                message: format!(
                    "more than {MAX_MEMBERS} servers reached from the seeds: is a seed in \
                     another cluster?"
                ),
            });
        }
        let seen = match look_at(spec, fleet, &ep).await {
            Ok(s) => s,
            // A seed must answer. A source or replica found on the way that does not answer
            // under that name may be known under another (a seed's); said below if not.
            Err(e) if seed => return Err(e),
            Err(e) => {
                tracing::warn!(cluster = %spec.name, "{e}");
                continue;
            }
        };
        if let Some(src) = &seen.member.source {
            queue.push_back((src.clone(), false));
        }
        for r in seen.replicas {
            queue.push_back((r, false));
        }
        // Reached twice (two names of one server): the first name stays, a seed's first.
        by_server_id
            .entry(seen.member.server_id)
            .or_insert(seen.member);
    }
    let mut members: Vec<Member> = by_server_id.into_values().collect();
    let writers: Vec<&Member> = members
        .iter()
        .filter(|m| m.source.is_none() && !m.read_only)
        .collect();
    let writer = match writers.as_slice() {
        [w] => w.id.clone(),
        [] => {
            let sources: Vec<String> = members
                .iter()
                .filter_map(|m| m.source.as_ref().map(|s| format!("{} <- {s}", m.id)))
                .collect();
            return Err(Error::Discovery {
                cluster: spec.name.clone(),
                message: format!(
                    "no writer among {} (every server is read-only or a replica; replicas and \
                     their sources: {}); if the writer is down, list it as a seed or start it; \
                     if a switchover stopped half way, see `dbshift runs`; nothing changed",
                    ids(&members),
                    if sources.is_empty() {
                        "none".to_string()
                    } else {
                        sources.join(", ")
                    }
                ),
            });
        }
        many => {
            return Err(Error::Discovery {
                cluster: spec.name.clone(),
                message: format!(
                    "two writable servers that replicate from nobody: {}; a cluster has one \
                     writer: make the others read-only (read_only=ON) or replicas, or split \
                     them into clusters of their own in the fleet file; nothing changed",
                    many.iter()
                        .map(|m| format!("{} ({})", m.id, m.endpoint))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    for m in &mut members {
        if m.id == writer {
            m.role = Role::Writer;
        }
    }
    members.sort_by(|a, b| (a.role != Role::Writer, &a.id).cmp(&(b.role != Role::Writer, &b.id)));
    tracing::info!(cluster = %spec.name, writer = %writer, members = %ids(&members), "topology discovered");
    Ok(Topology { writer, members })
}

fn ids(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
