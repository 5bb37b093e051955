//! Topology discovery, as Orchestrator does it: start at the seeds, follow each replica to its
//! source (`Source_Host`/`Master_Host` of its replica status) and each server to the replicas
//! registered with it (`SHOW REPLICAS` / `SHOW SLAVE HOSTS`, which needs `report_host` on the
//! replica), until nothing new turns up. Servers are told apart by `server_id`, so a server
//! reached under two names (a seed's host name, a replica's `Source_Host` address) is one.
//!
//! The writer is the server that replicates from nobody and is writable. A writer that does not
//! answer (dead, stopped, cut off) is still known from its replicas, which name it as their
//! source, and from the fleet file's seeds: it is listed as unreachable, so that `failover`
//! sees a dead writer instead of a fleet it cannot read. What does not fit is reported, never
//! guessed around: no server answering, a login refused, two writable servers, no writer
//! (the decision is [`decide_writer`], a pure function). Discovery only reads; it changes
//! nothing.

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
    /// It answered dbshift's admin user during discovery. An unreachable member is known only
    /// by name (a seed, or the source its replicas name): its `server_id` is 0, its engine
    /// and version `-`, its `read_only` unknown (taken as on).
    pub reachable: bool,
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

/// A server that does not answer, as a member known only by name.
fn unreachable_member(spec: &ClusterSpec, ep: &Endpoint) -> Member {
    Member {
        id: spec.id_of(ep),
        endpoint: ep.clone(),
        server_id: 0,
        engine: "-".to_string(),
        version: "-".to_string(),
        read_only: true,
        source: None,
        role: Role::Reader,
        reachable: false,
    }
}

/// `Ok(None)`: the server does not answer (a refused login or an unreadable status is an
/// error: that is the fleet file's or the grants' to fix, not a dead server).
async fn look_at(spec: &ClusterSpec, fleet: &str, ep: &Endpoint) -> Result<Option<Seen>> {
    let mut s = match connect_admin(spec, fleet, ep).await {
        Ok(s) => s,
        Err(e @ Error::Discovery { .. }) => {
            tracing::warn!(cluster = %spec.name, "{e}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
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
    Ok(Some(Seen {
        member: Member {
            id: spec.id_of(ep),
            endpoint: ep.clone(),
            server_id,
            engine: engine.to_string(),
            version,
            read_only,
            source,
            role: Role::Reader,
            reachable: true,
        },
        replicas: replicas
            .into_iter()
            .filter_map(|r| r.host.map(|host| Endpoint { host, port: r.port }))
            .collect(),
    }))
}

/// Walk the cluster from its seeds; see the module documentation. `fleet` names the fleet file
/// in messages.
pub async fn discover(spec: &ClusterSpec, fleet: &str) -> Result<Topology> {
    tracing::debug!(cluster = %spec.name, seeds = spec.seeds.len(), "discovering the topology");
    let mut queue: VecDeque<Endpoint> = spec.seeds.iter().cloned().collect();
    let mut visited: Vec<Endpoint> = Vec::new();
    let mut by_server_id: BTreeMap<u32, Member> = BTreeMap::new();
    let mut down: Vec<Endpoint> = Vec::new();
    while let Some(ep) = queue.pop_front() {
        if visited.contains(&ep) {
            continue;
        }
        visited.push(ep.clone());
        if by_server_id.len() + down.len() >= MAX_MEMBERS {
            return Err(Error::Discovery {
                cluster: spec.name.clone(),
                message: format!(
                    "more than {MAX_MEMBERS} servers reached from the seeds: is a seed in \
                     another cluster?"
                ),
            });
        }
        let Some(seen) = look_at(spec, fleet, &ep).await? else {
            down.push(ep);
            continue;
        };
        if let Some(src) = &seen.member.source {
            queue.push_back(src.clone());
        }
        queue.extend(seen.replicas);
        // Reached twice (two names of one server): the first name stays, a seed's first.
        by_server_id
            .entry(seen.member.server_id)
            .or_insert(seen.member);
    }
    if by_server_id.is_empty() {
        // Nothing answers: the seeds are wrong, or this machine cannot reach them.
        let seeds = spec
            .seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::Discovery {
            cluster: spec.name.clone(),
            message: format!(
                "no server answers: {seeds} does not answer; check its host:port in {fleet}, \
                 that the server runs and that this machine may reach it (a firewall, TLS: \
                 tls.ca_file); nothing changed"
            ),
        });
    }
    let mut members: Vec<Member> = by_server_id.into_values().collect();
    // A server that does not answer is one more member, unless a member answered under that
    // very name: a seed always (the operator named it), one found on the way only when no
    // writer answers (else it may be a live member under a name this machine cannot reach).
    let live_writer = members.iter().any(|m| m.source.is_none() && !m.read_only);
    for ep in down {
        let seed = spec.seeds.contains(&ep);
        if !seed && live_writer {
            tracing::warn!(cluster = %spec.name, "{ep} does not answer: left out");
            continue;
        }
        if !members.iter().any(|m| m.endpoint == ep) {
            members.push(unreachable_member(spec, &ep));
        }
    }
    let writer = decide_writer(&members).map_err(|message| Error::Discovery {
        cluster: spec.name.clone(),
        message,
    })?;
    for m in &mut members {
        if m.id == writer {
            m.role = Role::Writer;
        }
    }
    members.sort_by(|a, b| (a.role != Role::Writer, &a.id).cmp(&(b.role != Role::Writer, &b.id)));
    let unreachable: Vec<&str> = members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| m.id.as_str())
        .collect();
    if !unreachable.is_empty() {
        tracing::warn!(cluster = %spec.name, unreachable = %unreachable.join(", "), "members that do not answer are listed as stopped");
    }
    tracing::info!(cluster = %spec.name, writer = %writer, members = %ids(&members), "topology discovered");
    Ok(Topology { writer, members })
}

/// The writer of a cluster from what its members said: the one reachable server that
/// replicates from nobody and is writable; when none is, the one unreachable member the
/// reachable ones replicate from (a dead writer). Anything else is an error message that
/// says what to do. Pure: the unit tests give it topologies.
pub fn decide_writer(members: &[Member]) -> std::result::Result<String, String> {
    let writers: Vec<&Member> = members
        .iter()
        .filter(|m| m.reachable && m.source.is_none() && !m.read_only)
        .collect();
    match writers.as_slice() {
        [w] => return Ok(w.id.clone()),
        [] => {}
        many => {
            return Err(format!(
                "two writable servers that replicate from nobody: {}; a cluster has one \
                 writer: make the others read-only (read_only=ON) or replicas, or split them \
                 into clusters of their own in the fleet file; nothing changed",
                many.iter()
                    .map(|m| format!("{} ({})", m.id, m.endpoint))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
    // No reachable writer: the unreachable sources of reachable replicas.
    let mut dead: Vec<&Member> = members
        .iter()
        .filter(|d| !d.reachable)
        .filter(|d| {
            members
                .iter()
                .any(|m| m.reachable && m.source.as_ref() == Some(&d.endpoint))
        })
        .collect();
    dead.dedup_by(|a, b| a.id == b.id);
    if let [w] = dead.as_slice() {
        return Ok(w.id.clone());
    }
    let sources: Vec<String> = members
        .iter()
        .filter_map(|m| m.source.as_ref().map(|s| format!("{} <- {s}", m.id)))
        .collect();
    let unreachable: Vec<&str> = members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| m.id.as_str())
        .collect();
    Err(format!(
        "no writer among {} (every server that answers is read-only or a replica; replicas \
         and their sources: {}; not answering: {}); if the writer is down and no replica names \
         it, list it as a seed; if a switchover stopped half way, see `dbshift runs`; nothing \
         changed",
        ids(members),
        if sources.is_empty() {
            "none".to_string()
        } else {
            sources.join(", ")
        },
        if unreachable.is_empty() {
            "none".to_string()
        } else {
            unreachable.join(", ")
        }
    ))
}

fn ids(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            host: "10.0.0.1".into(),
            port,
        }
    }

    fn up(port: u16, read_only: bool, source: Option<u16>) -> Member {
        Member {
            id: format!("db{port}"),
            endpoint: ep(port),
            server_id: port as u32,
            engine: "mariadb".into(),
            version: "MariaDB 10.11".into(),
            read_only,
            source: source.map(ep),
            role: Role::Reader,
            reachable: true,
        }
    }

    fn down(port: u16) -> Member {
        Member {
            id: format!("db{port}"),
            endpoint: ep(port),
            server_id: 0,
            engine: "-".into(),
            version: "-".into(),
            read_only: true,
            source: None,
            role: Role::Reader,
            reachable: false,
        }
    }

    #[test]
    fn the_writable_root_is_the_writer() {
        let m = [
            up(1, false, None),
            up(2, true, Some(1)),
            up(3, true, Some(1)),
        ];
        assert_eq!(decide_writer(&m).unwrap(), "db1");
        // A dead replica changes nothing.
        let m = [up(1, false, None), down(2), up(3, true, Some(1))];
        assert_eq!(decide_writer(&m).unwrap(), "db1");
    }

    #[test]
    fn a_dead_writer_is_known_from_its_replicas() {
        let m = [down(1), up(2, true, Some(1)), up(3, true, Some(1))];
        assert_eq!(decide_writer(&m).unwrap(), "db1");
        // A chain: the leaf's source answers, the intermediate's does not.
        let m = [down(1), up(2, true, Some(1)), up(3, true, Some(2))];
        assert_eq!(decide_writer(&m).unwrap(), "db1");
    }

    #[test]
    fn a_new_writer_wins_over_the_dead_old_one() {
        // After a failover: the old writer is still a seed and still dead.
        let m = [down(1), up(2, false, None), up(3, true, Some(2))];
        assert_eq!(decide_writer(&m).unwrap(), "db2");
    }

    #[test]
    fn two_writers_or_none_are_errors() {
        let m = [up(1, false, None), up(2, false, None)];
        assert!(decide_writer(&m).unwrap_err().contains("two writable"));
        // Two dead sources: which one was the writer is not guessed.
        let m = [down(1), down(2), up(3, true, Some(1)), up(4, true, Some(2))];
        assert!(decide_writer(&m).unwrap_err().contains("no writer"));
        // A dead server nobody names, and only read-only servers.
        let m = [down(1), up(2, true, None)];
        let e = decide_writer(&m).unwrap_err();
        assert!(e.contains("no writer") && e.contains("db1"), "{e}");
    }
}
