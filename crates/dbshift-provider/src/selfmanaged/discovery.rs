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
//! guessed around. What leaves no writer to act on is an error: no server answering, a login
//! refused, two writable servers, no writer (a loop among them, named). What leaves the
//! writer known is a [`Finding`] of the [`Topology`], logged and shown by `inventory`: a member
//! that does not answer, a replica of nowhere (its source is no server reached, or one that
//! does not answer), a detached server (read-only, replicating from nobody, not the writer),
//! a loop away from the writer. The decisions
//! are pure functions ([`settle`], [`decide_writer`], [`findings`], [`loops`],
//! [`Topology::tree`]) that the unit tests give topologies. Discovery only reads; it changes
//! nothing.

use std::collections::VecDeque;
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use serde::Serialize;

use super::fleet_file::ClusterSpec;
use crate::error::{Error, Result};
use crate::model::{Credential, Endpoint, Role};

/// Bound of each connection attempt during discovery.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most servers a cluster may have: a bound on a walk through a misconfigured fleet.
const MAX_MEMBERS: usize = 64;

/// One server of a discovered cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub endpoint: Endpoint,
    pub server_id: u32,
    /// `mariadb` or `mysql`.
    pub engine: String,
    /// The server's own description (`MariaDB 10.11.14`).
    pub version: String,
    pub read_only: bool,
    /// `host:port` of its source, when it is a replica (as its replica status names it; for a
    /// member that does not answer, as the source that listed it names it, if one did).
    pub source: Option<Endpoint>,
    /// The member `source` is, once the walk is over: found by that endpoint, by another name
    /// the same server answered under, or by the `server_id` the replica's IO thread last saw
    /// there (`Master_Server_Id`). `None` when it replicates from nobody, when its source is
    /// unknown (it does not answer), or when its source is no server dbshift reached: a
    /// replica of nowhere (a [`Finding`]).
    pub source_id: Option<String>,
    /// `Master_Server_Id` / `Source_Server_Id` of its replica status, when the IO thread has
    /// seen its source.
    pub source_server_id: Option<u32>,
    pub role: Role,
    /// It answered dbshift's admin user during discovery. An unreachable member is known only
    /// by name (a seed, the source its replicas name, or a replica its source lists): its
    /// `server_id` is 0, its engine and version `-`, its `read_only` unknown (taken as on).
    pub reachable: bool,
}

/// Something about a discovered cluster that does not fit but leaves its writer known: the
/// member it is about and what is wrong, in plain English. Discovery logs it as a warning and
/// `inventory` shows it (under the tree, and in the member's `problems`); it is never guessed
/// around: a replica of nowhere is not hung under the writer, a member that does not answer is
/// not taken for a live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub member: String,
    pub message: String,
}

/// A cluster as its servers describe it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The writer's id.
    pub writer: String,
    /// Writer first, then the others by id.
    pub members: Vec<Member>,
    /// What does not fit, the writer known all the same ([`findings`]).
    pub findings: Vec<Finding>,
}

/// One line of a cluster drawn as a tree ([`Topology::tree`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLine<'a> {
    /// The branches before the member: `""` for a root, then `├─ `, `└─ `, `│  ` and spaces.
    pub prefix: String,
    /// 0 for a root, 1 for its replicas, 2 for theirs...
    pub depth: usize,
    pub member: &'a Member,
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

    /// The cluster as a tree, one line per member: the writer at the root, each replica under
    /// its source (chains as nested levels), replicas of one source by id. Then, each a root
    /// of its own, every member that does not lead to the writer: a replica of nowhere, a
    /// member that does not answer and whose source is unknown, a loop (drawn from its
    /// smallest id, once). Nothing is placed where the servers did not say it is.
    pub fn tree(&self) -> Vec<TreeLine<'_>> {
        let mut drawn: Vec<&str> = Vec::new();
        let mut lines = Vec::new();
        let cycles = loops(&self.members);
        let roots = self
            .members
            .iter()
            .filter(|m| m.id == self.writer)
            .chain(
                self.members
                    .iter()
                    .filter(|m| m.id != self.writer && m.source_id.is_none()),
            )
            .chain(
                cycles
                    .iter()
                    .filter_map(|c| self.members.iter().find(|m| m.id == c[0])),
            )
            // Nothing is left by then (each member leads to a root or into a loop); drawn
            // all the same rather than lost.
            .chain(self.members.iter());
        for root in roots {
            if !drawn.contains(&root.id.as_str()) {
                self.draw(
                    root,
                    String::new(),
                    String::new(),
                    0,
                    &mut drawn,
                    &mut lines,
                );
            }
        }
        lines
    }

    fn draw<'a>(
        &'a self,
        m: &'a Member,
        prefix: String,
        below: String,
        depth: usize,
        drawn: &mut Vec<&'a str>,
        lines: &mut Vec<TreeLine<'a>>,
    ) {
        drawn.push(&m.id);
        lines.push(TreeLine {
            prefix,
            depth,
            member: m,
        });
        let mut replicas: Vec<&Member> = self
            .members
            .iter()
            .filter(|r| r.source_id.as_deref() == Some(&m.id) && !drawn.contains(&r.id.as_str()))
            .collect();
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        let n = replicas.len();
        for (i, r) in replicas.into_iter().enumerate() {
            let last = i + 1 == n;
            let (branch, under) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            self.draw(
                r,
                format!("{below}{branch}"),
                format!("{below}{under}"),
                depth + 1,
                drawn,
                lines,
            );
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
    /// The replicas registered with it: their endpoint and `server_id`.
    replicas: Vec<(Endpoint, u32)>,
}

/// A server that does not answer, as a member known only by name.
fn unreachable_member(id_of: &dyn Fn(&Endpoint) -> String, ep: &Endpoint) -> Member {
    Member {
        id: id_of(ep),
        endpoint: ep.clone(),
        server_id: 0,
        engine: "-".to_string(),
        version: "-".to_string(),
        read_only: true,
        source: None,
        source_id: None,
        source_server_id: None,
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
            source_server_id: status
                .source_server_id
                .filter(|id| *id != 0 && source.is_some()),
            source,
            source_id: None,
            role: Role::Reader,
            reachable: true,
        },
        replicas: replicas
            .into_iter()
            .filter_map(|r| {
                r.host
                    .map(|host| (Endpoint { host, port: r.port }, r.server_id))
            })
            .collect(),
    }))
}

/// What the walk from the seeds saw, before anything is decided ([`settle`]).
#[derive(Debug, Default)]
pub struct Walk {
    /// The servers that answered, one per `server_id` (the first name reached, a seed's first).
    pub members: Vec<Member>,
    /// Every name that answered, and the `server_id` behind it.
    pub answered: Vec<(Endpoint, u32)>,
    /// Replicas a server that answered lists: the replica's endpoint, its `server_id`, and
    /// the endpoint of the server that lists it.
    pub listed: Vec<(Endpoint, u32, Endpoint)>,
    /// Names that did not answer, in the order reached.
    pub down: Vec<Endpoint>,
}

/// Walk the cluster from its seeds; see the module documentation. `fleet` names the fleet file
/// in messages.
pub async fn discover(spec: &ClusterSpec, fleet: &str) -> Result<Topology> {
    tracing::debug!(cluster = %spec.name, seeds = spec.seeds.len(), "discovering the topology");
    let mut queue: VecDeque<Endpoint> = spec.seeds.iter().cloned().collect();
    let mut visited: Vec<Endpoint> = Vec::new();
    let mut walk = Walk::default();
    while let Some(ep) = queue.pop_front() {
        if visited.contains(&ep) {
            continue;
        }
        visited.push(ep.clone());
        if walk.members.len() + walk.down.len() >= MAX_MEMBERS {
            return Err(Error::Discovery {
                cluster: spec.name.clone(),
                message: format!(
                    "more than {MAX_MEMBERS} servers reached from the seeds: is a seed in \
                     another cluster?"
                ),
            });
        }
        let Some(seen) = look_at(spec, fleet, &ep).await? else {
            walk.down.push(ep);
            continue;
        };
        if let Some(src) = &seen.member.source {
            queue.push_back(src.clone());
        }
        for (r, id) in seen.replicas {
            queue.push_back(r.clone());
            walk.listed.push((r, id, ep.clone()));
        }
        walk.answered.push((ep, seen.member.server_id));
        // Reached twice (two names of one server): the first name stays, a seed's first.
        if !walk
            .members
            .iter()
            .any(|m| m.server_id == seen.member.server_id)
        {
            walk.members.push(seen.member);
        }
    }
    if walk.members.is_empty() {
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
    let t =
        settle(walk, &spec.seeds, &|ep| spec.id_of(ep)).map_err(|message| Error::Discovery {
            cluster: spec.name.clone(),
            message,
        })?;
    for f in &t.findings {
        tracing::warn!(cluster = %spec.name, member = %f.member, "{}", f.message);
    }
    tracing::info!(cluster = %spec.name, writer = %t.writer, members = %ids(&t.members), "topology discovered");
    Ok(t)
}

/// The topology from what the walk saw: the members that do not answer added, each source
/// found among the members, the writer decided, the members ordered (writer first, then by
/// id), the findings made. `seeds` are the fleet file's; `id_of` names a server by its
/// endpoint. An error is a message that says what to do. Pure: the unit tests give it walks.
///
/// A name that does not answer is a member of its own (listed as stopped), unless it is
/// another name of a server that answered: a replica's IO thread saw that server's
/// `server_id` at it, or a source lists that `server_id` under it. A seed is always one (the
/// operator named it). A replica its source lists replicates from that source.
pub fn settle(
    walk: Walk,
    seeds: &[Endpoint],
    id_of: &dyn Fn(&Endpoint) -> String,
) -> std::result::Result<Topology, String> {
    let Walk {
        mut members,
        answered,
        listed,
        down,
    } = walk;
    let live: Vec<u32> = members.iter().map(|m| m.server_id).collect();
    for ep in down {
        if members.iter().any(|m| m.endpoint == ep) {
            continue;
        }
        let alias = members.iter().any(|m| {
            m.source.as_ref() == Some(&ep) && m.source_server_id.is_some_and(|s| live.contains(&s))
        }) || listed
            .iter()
            .any(|(r, id, _)| *r == ep && live.contains(id));
        if alias && !seeds.contains(&ep) {
            tracing::debug!(%ep, "another name of a server that answered: not a member of its own");
            continue;
        }
        let mut m = unreachable_member(id_of, &ep);
        m.source = listed
            .iter()
            .find(|(r, ..)| *r == ep)
            .map(|(_, _, by)| by.clone());
        members.push(m);
    }
    link(&mut members, &answered);
    let writer = decide_writer(&members)?;
    for m in &mut members {
        if m.id == writer {
            m.role = Role::Writer;
        }
    }
    members.sort_by(|a, b| (a.role != Role::Writer, &a.id).cmp(&(b.role != Role::Writer, &b.id)));
    let findings = findings(&members, &writer);
    Ok(Topology {
        writer,
        members,
        findings,
    })
}

/// Find each member's source among the members (see [`Member::source_id`]): a server that
/// answered under that endpoint, or under another name that answered, or with the `server_id`
/// the replica saw there; else a member that does not answer under that endpoint.
fn link(members: &mut [Member], answered: &[(Endpoint, u32)]) {
    let reachable: Vec<(Endpoint, u32, String)> = members
        .iter()
        .filter(|m| m.reachable)
        .map(|m| (m.endpoint.clone(), m.server_id, m.id.clone()))
        .collect();
    let unreachable: Vec<(Endpoint, String)> = members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| (m.endpoint.clone(), m.id.clone()))
        .collect();
    let by_server_id = |sid: u32| {
        reachable
            .iter()
            .find(|(_, s, _)| *s == sid)
            .map(|(_, _, id)| id.clone())
    };
    for m in members.iter_mut() {
        let Some(src) = &m.source else {
            m.source_id = None;
            continue;
        };
        m.source_id = reachable
            .iter()
            .find(|(e, ..)| e == src)
            .map(|(_, _, id)| id.clone())
            .or_else(|| {
                answered
                    .iter()
                    .find(|(e, _)| e == src)
                    .and_then(|(_, sid)| by_server_id(*sid))
            })
            .or_else(|| m.source_server_id.and_then(by_server_id))
            .or_else(|| {
                unreachable
                    .iter()
                    .find(|(e, _)| e == src)
                    .map(|(_, id)| id.clone())
            });
    }
}

/// The loops of replication among `members` (by [`Member::source_id`]): each as the ids in
/// order, each replicating from the next and the last from the first, starting at the
/// smallest id; each loop once.
pub fn loops(members: &[Member]) -> Vec<Vec<String>> {
    let source_of = |id: &str| {
        members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.source_id.clone())
    };
    let mut found: Vec<Vec<String>> = Vec::new();
    for m in members {
        let mut path = vec![m.id.clone()];
        while let Some(next) = source_of(path.last().expect("never empty")) {
            if let Some(at) = path.iter().position(|p| *p == next) {
                let mut cycle = path.split_off(at);
                let smallest = (0..cycle.len())
                    .min_by_key(|&i| cycle[i].as_str())
                    .expect("a loop has a member");
                cycle.rotate_left(smallest);
                if !found.contains(&cycle) {
                    found.push(cycle);
                }
                break;
            }
            path.push(next);
        }
    }
    found
}

/// `a replicates from b, b from a`.
fn describe_loop(cycle: &[String]) -> String {
    let mut parts = Vec::new();
    for (i, id) in cycle.iter().enumerate() {
        let next = &cycle[(i + 1) % cycle.len()];
        parts.push(if i == 0 {
            format!("{id} replicates from {next}")
        } else {
            format!("{id} from {next}")
        });
    }
    parts.join(", ")
}

/// The writer of a cluster from what its members said: the one reachable server that
/// replicates from nobody and is writable; when none is, the one unreachable member the
/// reachable ones replicate from (a dead writer). Anything else is an error message that
/// says what to do, naming the loops when there are some. Pure: the unit tests give it
/// topologies.
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
    let dead: Vec<&Member> = members
        .iter()
        .filter(|d| !d.reachable)
        .filter(|d| {
            members.iter().any(|m| {
                m.reachable
                    && (m.source_id.as_deref() == Some(&d.id)
                        || m.source.as_ref() == Some(&d.endpoint))
            })
        })
        .collect();
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
    let cycles = loops(members);
    let looped = if cycles.is_empty() {
        String::new()
    } else {
        format!(
            "replication loop: {}; a loop has no writer to start from (each of it replicates \
             from another): stop replication on the server that should take the writes \
             (co-masters: keep one active, with nothing to replicate from). ",
            cycles
                .iter()
                .map(|c| describe_loop(c))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Err(format!(
        "{looped}no writer among {} (every server that answers is read-only or a replica; \
         replicas and their sources: {}; not answering: {}); if the writer is down and no \
         replica names it, list it as a seed; if a switchover stopped half way, see `dbshift \
         runs`; nothing changed",
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

/// What does not fit in a cluster whose writer is `writer`: each member that does not
/// answer; each replica of nowhere (its source is no member, or a member other than the
/// writer that does not answer); each member detached (read-only, replicating from nobody,
/// not the writer); each loop (on its smallest id). Pure.
pub fn findings(members: &[Member], writer: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in members {
        let message = if !m.reachable && m.id == writer {
            "the writer does not answer dbshift's admin user; its replicas name it as their \
             source: listed as stopped (`failover` fences it with the stop command)"
                .to_string()
        } else if !m.reachable {
            format!(
                "does not answer dbshift's admin user: listed as stopped, {}",
                match (&m.source_id, &m.source) {
                    (Some(id), _) => format!("a replica of {id} as {id} lists it"),
                    (None, Some(ep)) => format!("a replica of {ep} as {ep} lists it"),
                    (None, None) => "its source unknown".to_string(),
                }
            )
        } else if m.id == writer {
            continue;
        } else {
            let answers = |id: &str| members.iter().any(|s| s.id == id && s.reachable);
            match (&m.source, &m.source_id) {
                (None, _) => format!(
                    "detached: it replicates from nobody, is read-only and is not the writer \
                     ({writer}); point it at a server of the cluster, or take it out of the \
                     fleet file"
                ),
                (Some(ep), None) => format!(
                    "a replica of nowhere: it replicates from {ep}, which is no server of the \
                     cluster that dbshift reached (gone, or named by an address this machine \
                     cannot reach: name it as a seed)"
                ),
                (Some(_), Some(src)) if src != writer && !answers(src) => format!(
                    "a replica of nowhere: its source {src} does not answer, so it receives \
                     nothing; point it at a server that answers"
                ),
                (Some(_), Some(_)) => continue,
            }
        };
        out.push(Finding {
            member: m.id.clone(),
            message,
        });
    }
    for cycle in loops(members) {
        out.push(Finding {
            member: cycle[0].clone(),
            message: format!(
                "replication loop: {}; it does not lead to the writer {writer}",
                describe_loop(&cycle)
            ),
        });
    }
    out
}

fn ids(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
