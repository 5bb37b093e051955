//! HAProxy's runtime API as a redirect: one line in, text out, connection closed, over the
//! stats socket (`stats socket ... level admin`, a Unix path or a TCP address). It makes the
//! new writer the only server of a backend that takes connections, on every HAProxy named,
//! in an order where no HAProxy ever sends a client to the old writer once one sends clients
//! to the new one: first every other server put in maintenance and its sessions shut, on
//! every HAProxy; then the new writer set ready, on every HAProxy; then each backend read
//! back. Every answer is checked (HAProxy answers nothing on success) and an error names the
//! HAProxy, the command and its answer.
//!
//! It must never change a server before every HAProxy has answered and known the backend and
//! the servers (a typo in the fleet file changes nothing), and never enable the new writer
//! while another server of the backend still takes connections.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::Endpoint;

/// Admin-state bits of `show servers state` that keep a server from taking new
/// connections: forced, inherited, resolver and health-check maintenance (0x01, 0x02, 0x20,
/// 0x40) and forced or inherited drain (0x08, 0x10). 0x04 (maintenance from the
/// configuration's `disabled`) stays set after `state ready` and does not count.
const NOT_TAKING: u32 = 0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40;

/// Where one HAProxy's runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socket {
    Unix(PathBuf),
    Tcp(Endpoint),
}

impl Socket {
    /// `unix:/path` or `tcp:host:port`.
    pub fn parse(s: &str) -> Result<Socket, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path (unix:/run/haproxy/admin.sock)".into());
            }
            return Ok(Socket::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            return super::super::fleet_file::parse_endpoint(addr)
                .map(Socket::Tcp)
                .map_err(|m| format!("tcp:{addr}: {m}"));
        }
        Err("expected unix:/path or tcp:host:port".into())
    }
}

impl fmt::Display for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Socket::Unix(p) => write!(f, "unix:{}", p.display()),
            Socket::Tcp(ep) => write!(f, "tcp:{ep}"),
        }
    }
}

/// How the backend's servers map to the cluster's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMap {
    /// A server's name in the backend is the dbshift instance id.
    Name,
    /// A server's address and port are the instance's endpoint.
    Address,
    /// The backend has this one server, re-addressed to the writer.
    Single(String),
}

/// The `[cluster.haproxy]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxySpec {
    pub sockets: Vec<Socket>,
    pub backend: String,
    pub map: ServerMap,
    /// Bound of one runtime API exchange (connect, send, read to the close).
    pub timeout: Duration,
}

/// One server of a backend as `show servers state` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    pub addr: String,
    pub port: u16,
    /// 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    pub admin_state: u32,
}

impl ServerState {
    /// Whether HAProxy sends it new connections (health checks aside).
    pub fn takes_connections(&self) -> bool {
        self.admin_state & NOT_TAKING == 0
    }
}

/// Send one command to the runtime API at `socket` and read its answer to the close, at most
/// `timeout` in all.
pub async fn send(socket: &Socket, command: &str, timeout: Duration) -> Result<String, String> {
    let exchange = async {
        let line = format!("{command}\n");
        let mut answer = Vec::new();
        match socket {
            Socket::Unix(path) => {
                let mut s = tokio::net::UnixStream::connect(path).await?;
                s.write_all(line.as_bytes()).await?;
                s.read_to_end(&mut answer).await?;
            }
            Socket::Tcp(ep) => {
                let mut s = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port)).await?;
                s.write_all(line.as_bytes()).await?;
                s.read_to_end(&mut answer).await?;
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(format!("cannot reach its runtime API: {e}")),
        Err(_) => Err(format!("its runtime API did not answer within {timeout:?}")),
    }
}

/// Whether `answer` is success for `command`: nothing, except for `set server .. addr`, which
/// says what it changed (or that nothing needed to).
pub fn succeeded(command: &str, answer: &str) -> bool {
    let a = answer.trim();
    if command.contains(" addr ") {
        return a.starts_with("IP changed")
            || a.starts_with("no need to change")
            || a.starts_with("port changed");
    }
    a.is_empty()
}

/// The servers of the answer to `show servers state BACKEND`, by the columns its header names.
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    let version = lines.next().unwrap_or_default();
    if version != "1" {
        return Err(format!(
            "not a `show servers state` answer (expected format 1): {}",
            first_line(answer)
        ));
    }
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or_else(|| "no header line in the `show servers state` answer".to_string())?
        .split_whitespace()
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("no column {name} in the `show servers state` answer"))
    };
    let (name, addr, port, op, admin) = (
        col("srv_name")?,
        col("srv_addr")?,
        col("srv_port")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
    );
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("a short line in the `show servers state` answer: {line}"))
        };
        let num = |i: usize| -> Result<u32, String> {
            get(i)?
                .parse()
                .map_err(|_| format!("a bad number in the `show servers state` answer: {line}"))
        };
        out.push(ServerState {
            name: get(name)?.to_string(),
            addr: get(addr)?.to_string(),
            port: num(port)?
                .try_into()
                .map_err(|_| format!("a bad port in: {line}"))?,
            op_state: num(op)?,
            admin_state: num(admin)?,
        });
    }
    Ok(out)
}

fn first_line(answer: &str) -> String {
    let l = answer.trim().lines().next().unwrap_or("(nothing)");
    if l.is_empty() {
        "(nothing)".to_string()
    } else {
        l.to_string()
    }
}

/// What one HAProxy must be sent to make the instance `id` at `ep` the backend's only server
/// that takes connections: first the commands that stop the others, then those that enable
/// it. An error says which server is missing and which the backend has.
pub fn writer_commands(
    backend: &str,
    map: &ServerMap,
    servers: &[ServerState],
    id: &str,
    ep: &Endpoint,
) -> Result<(Vec<String>, Vec<String>), String> {
    let names = || {
        servers
            .iter()
            .map(|s| format!("{} ({}:{})", s.name, s.addr, s.port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stop = |s: &str| {
        [
            format!("set server {backend}/{s} state maint"),
            format!("shutdown sessions server {backend}/{s}"),
        ]
    };
    let target = match map {
        ServerMap::Name => servers.iter().find(|s| s.name == id).ok_or_else(|| {
            format!(
                "backend {backend} has no server named {id} (servers = \"name\" maps servers by \
                 instance id; it has: {})",
                names()
            )
        })?,
        ServerMap::Address => servers
            .iter()
            .find(|s| s.addr == ep.host && s.port == ep.port)
            .ok_or_else(|| {
                format!(
                    "backend {backend} has no server at {ep} for {id} (servers = \"address\" \
                     maps servers by address; it has: {})",
                    names()
                )
            })?,
        ServerMap::Single(name) => {
            if !servers.iter().any(|s| s.name == *name) {
                return Err(format!(
                    "backend {backend} has no server named {name}; it has: {}",
                    names()
                ));
            }
            if servers.len() != 1 {
                return Err(format!(
                    "servers = \"single\" re-addresses the one server of backend {backend}, \
                     but it has {}: {}",
                    servers.len(),
                    names()
                ));
            }
            let mut first = stop(name).to_vec();
            first.push(format!(
                "set server {backend}/{name} addr {} port {}",
                ep.host, ep.port
            ));
            return Ok((
                first,
                vec![format!("set server {backend}/{name} state ready")],
            ));
        }
    };
    let first = servers
        .iter()
        .filter(|s| s.name != target.name)
        .flat_map(|s| stop(&s.name))
        .collect();
    Ok((
        first,
        vec![format!("set server {backend}/{} state ready", target.name)],
    ))
}

/// Whether `servers` is what a redirect to `id` at `ep` leaves: exactly one server takes
/// connections, the writer's (at the writer's address with `Single`). `Err` says what is not.
pub fn check_final(
    map: &ServerMap,
    servers: &[ServerState],
    id: &str,
    ep: &Endpoint,
) -> Result<(), String> {
    let taking: Vec<&ServerState> = servers.iter().filter(|s| s.takes_connections()).collect();
    let listed = taking
        .iter()
        .map(|s| format!("{} ({}:{})", s.name, s.addr, s.port))
        .collect::<Vec<_>>()
        .join(", ");
    let ok = match (taking.as_slice(), map) {
        ([s], ServerMap::Name) => s.name == id,
        ([s], ServerMap::Address | ServerMap::Single(_)) => s.addr == ep.host && s.port == ep.port,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "after the redirect to {id} ({ep}) the servers taking connections are [{listed}], \
             not exactly {id}'s"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy 2.6's answer, the first server enabled, the second `disabled` in the
    /// configuration then set ready (0x04 stays), the third in forced maintenance.
    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state \
        srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status \
        srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id \
        srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr \
        srv_agent_addr srv_agent_port\n\
        2 mysql 1 db1 127.0.0.1 2 0 1 1 0 1 0 2 0 0 0 0 - 3306 - 0 0 - - 0\n\
        2 mysql 2 db2 127.0.0.1 2 4 1 1 0 1 0 0 8 0 0 0 - 3307 - 0 0 - - 0\n\
        2 mysql 3 db3 127.0.0.1 0 1 1 1 0 1 0 0 8 0 0 0 - 3308 - 0 0 - - 0\n\n";

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn servers_state_is_read_by_its_header() {
        let s = parse_servers_state(STATE).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[1].name.as_str(), s[1].port, s[1].admin_state),
            ("db2", 3307, 4)
        );
        assert!(s[0].takes_connections() && s[1].takes_connections());
        assert!(!s[2].takes_connections());
        for bad in ["Can't find backend.\n", "", "1\n2 mysql\n"] {
            assert!(parse_servers_state(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_are_success_only_when_haproxy_says_nothing_or_what_it_changed() {
        assert!(succeeded("set server b/s state ready", "\n"));
        assert!(!succeeded(
            "set server b/s state ready",
            "No such server.\n"
        ));
        assert!(!succeeded(
            "shutdown sessions server b/s",
            "No such backend.\n"
        ));
        let addr = "set server b/s addr 10.0.0.2 port 3306";
        assert!(succeeded(
            addr,
            "IP changed from '1' to '2', no port change by 'stats socket command'\n"
        ));
        assert!(succeeded(
            addr,
            "no need to change the addr, no need to change the port\n"
        ));
        assert!(!succeeded(addr, "Invalid addr.\n"));
        assert!(!succeeded(addr, ""));
    }

    #[test]
    fn the_others_are_stopped_before_the_writer_is_enabled() {
        let s = parse_servers_state(STATE).unwrap();
        let (first, then) =
            writer_commands("mysql", &ServerMap::Name, &s, "db2", &ep(3307)).unwrap();
        assert_eq!(
            first,
            [
                "set server mysql/db1 state maint",
                "shutdown sessions server mysql/db1",
                "set server mysql/db3 state maint",
                "shutdown sessions server mysql/db3",
            ]
        );
        assert_eq!(then, ["set server mysql/db2 state ready"]);
        let (first, then) =
            writer_commands("mysql", &ServerMap::Address, &s, "x", &ep(3308)).unwrap();
        assert_eq!(first.len(), 4);
        assert_eq!(then, ["set server mysql/db3 state ready"]);
        let e = writer_commands("mysql", &ServerMap::Name, &s, "db9", &ep(1)).unwrap_err();
        assert!(
            e.contains("no server named db9") && e.contains("db1 (127.0.0.1:3306)"),
            "{e}"
        );
        let e = writer_commands("mysql", &ServerMap::Address, &s, "db9", &ep(1)).unwrap_err();
        assert!(e.contains("no server at 127.0.0.1:1"), "{e}");
        let e = writer_commands("mysql", &ServerMap::Single("db1".into()), &s, "x", &ep(1))
            .unwrap_err();
        assert!(e.contains("has 3"), "{e}");
        let (first, then) = writer_commands(
            "mysql",
            &ServerMap::Single("db1".into()),
            &s[..1],
            "x",
            &ep(3310),
        )
        .unwrap();
        assert_eq!(
            first,
            [
                "set server mysql/db1 state maint",
                "shutdown sessions server mysql/db1",
                "set server mysql/db1 addr 127.0.0.1 port 3310",
            ]
        );
        assert_eq!(then, ["set server mysql/db1 state ready"]);
    }

    #[test]
    fn the_final_state_has_exactly_the_writer() {
        let s = parse_servers_state(STATE).unwrap();
        let e = check_final(&ServerMap::Name, &s, "db1", &ep(3306)).unwrap_err();
        assert!(
            e.contains("db1 (127.0.0.1:3306), db2 (127.0.0.1:3307)"),
            "{e}"
        );
        assert!(check_final(&ServerMap::Name, &s[..1], "db1", &ep(3306)).is_ok());
        assert!(check_final(&ServerMap::Name, &s[..1], "db2", &ep(3306)).is_err());
        assert!(check_final(&ServerMap::Address, &s[..1], "x", &ep(3306)).is_ok());
    }

    #[test]
    fn sockets_are_unix_paths_or_tcp_addresses() {
        assert_eq!(
            Socket::parse("unix:/run/h.sock").unwrap().to_string(),
            "unix:/run/h.sock"
        );
        assert_eq!(
            Socket::parse("tcp:10.0.0.1:9999").unwrap(),
            Socket::Tcp(Endpoint {
                host: "10.0.0.1".into(),
                port: 9999
            })
        );
        assert!(Socket::parse("/run/h.sock").is_err());
        assert!(Socket::parse("tcp:h").is_err());
    }
}
