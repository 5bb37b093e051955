//! How clients find a self-managed cluster's writer once a switchover moved it, for the two
//! redirects that act outside dbshift: HAProxy's runtime API ([`haproxy`]) and a command
//! template (`commands.redirect`: DNS, Consul, ProxySQL's admin, anything). The switchover
//! core calls [`crate::Redirect::set_writer`] after the old writer is fenced and before the
//! new one is made writable, so while a redirect runs no server takes writes; and it calls
//! [`crate::Redirect::check_redirect`] before it changes anything, which reads every HAProxy
//! (or fills the command) without changing it, so a socket, backend or server that does not
//! exist refuses the run with nothing changed.
//!
//! It must never leave an error without the HAProxy (or the command), what was sent and what
//! came back; and never run anything but the operator's template on the command side.

pub mod haproxy;

use std::time::Duration;

use super::commands;
use crate::error::{Error, Result};
use crate::model::Endpoint;
pub use haproxy::{HaproxySpec, ServerMap, Socket};

/// `template` with `{cluster}`, `{writer_id}`, `{writer_host}`, `{writer_port}` and
/// `{old_id}` replaced by the shell-quoted values, in one pass (a value that looks like a
/// placeholder stays as it is).
pub fn fill_command(
    template: &str,
    cluster: &str,
    writer_id: &str,
    writer: &Endpoint,
    old_id: &str,
) -> String {
    let port = writer.port.to_string();
    let values: [(&str, &str); 5] = [
        ("{cluster}", cluster),
        ("{writer_id}", writer_id),
        ("{writer_host}", &writer.host),
        ("{writer_port}", &port),
        ("{old_id}", old_id),
    ];
    let mut out = String::new();
    let mut rest = template;
    'outer: while !rest.is_empty() {
        for (key, value) in values {
            if let Some(after) = rest.strip_prefix(key) {
                out.push_str(&commands::shell_quote(value));
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Run the filled redirect command of `cluster` with its timeout; non-zero exit, a failure to
/// start or the timeout is an error with the command and its output.
pub async fn run_command(cluster: &str, command: &str, timeout: Duration) -> Result<()> {
    tracing::info!(cluster, command, "moving clients with the redirect command");
    commands::run("redirect", &format!("cluster {cluster}"), command, timeout).await?;
    tracing::info!(cluster, "the redirect command succeeded");
    Ok(())
}

/// What one HAProxy will be sent: first (stop every other server), then (enable the writer).
#[derive(Debug, Clone)]
pub struct HaproxyPlan {
    pub socket: Socket,
    pub first: Vec<String>,
    pub then: Vec<String>,
}

impl HaproxyPlan {
    /// One line for `--plan` and `check`.
    pub fn describe(&self, backend: &str) -> String {
        format!(
            "haproxy {}: {}; then {}; then `show servers state {backend}` must show only the \
             writer taking connections",
            self.socket,
            self.first.join("; "),
            self.then.join("; ")
        )
    }
}

fn error(cluster: &str, message: String) -> Error {
    Error::Redirect {
        cluster: cluster.to_string(),
        message,
    }
}

/// The backend's servers on one HAProxy.
async fn servers_state(
    cluster: &str,
    spec: &HaproxySpec,
    socket: &Socket,
) -> Result<Vec<haproxy::ServerState>> {
    let command = format!("show servers state {}", spec.backend);
    let answer = haproxy::send(socket, &command, spec.timeout)
        .await
        .map_err(|m| error(cluster, format!("HAProxy {socket}, `{command}`: {m}")))?;
    haproxy::parse_servers_state(&answer).map_err(|m| {
        error(
            cluster,
            format!(
                "HAProxy {socket} answered `{command}` with {:?}: {m} (is the backend's name \
                 right in [cluster.haproxy]?)",
                answer.trim()
            ),
        )
    })
}

/// Read every HAProxy and work out what each must be sent to make `id` (at `ep`) the
/// backend's only server taking connections. Changes nothing; any HAProxy that does not
/// answer, or lacks the backend or a server, is an error before any change.
pub async fn plan_haproxy(
    cluster: &str,
    spec: &HaproxySpec,
    id: &str,
    ep: &Endpoint,
) -> Result<Vec<HaproxyPlan>> {
    let mut plans = Vec::new();
    for socket in &spec.sockets {
        let servers = servers_state(cluster, spec, socket).await?;
        let (first, then) = haproxy::writer_commands(&spec.backend, &spec.map, &servers, id, ep)
            .map_err(|m| error(cluster, format!("HAProxy {socket}: {m}")))?;
        plans.push(HaproxyPlan {
            socket: socket.clone(),
            first,
            then,
        });
    }
    Ok(plans)
}

/// Send one command and require HAProxy's success answer.
async fn apply(cluster: &str, spec: &HaproxySpec, socket: &Socket, command: &str) -> Result<()> {
    let answer = haproxy::send(socket, command, spec.timeout)
        .await
        .map_err(|m| error(cluster, format!("HAProxy {socket}, `{command}`: {m}")))?;
    if !haproxy::succeeded(command, &answer) {
        return Err(error(
            cluster,
            format!("HAProxy {socket} refused `{command}`: {:?}", answer.trim()),
        ));
    }
    Ok(())
}

/// Make `id` the only server of the backend that takes connections on every HAProxy: every
/// other server stopped and its sessions shut on all of them first, then `id` enabled on all,
/// then each read back. A failure part way names the HAProxy and the command; what was done
/// before it stays done (every command is idempotent: running the redirect again finishes it).
pub async fn set_writer_haproxy(
    cluster: &str,
    spec: &HaproxySpec,
    id: &str,
    ep: &Endpoint,
) -> Result<()> {
    let plans = plan_haproxy(cluster, spec, id, ep).await?;
    tracing::info!(
        cluster,
        writer = id,
        backend = spec.backend,
        haproxies = plans.len(),
        "stopping the other servers of the HAProxy backend"
    );
    for p in &plans {
        for c in &p.first {
            apply(cluster, spec, &p.socket, c).await?;
        }
    }
    tracing::info!(
        cluster,
        writer = id,
        "enabling the writer in the HAProxy backend"
    );
    for p in &plans {
        for c in &p.then {
            apply(cluster, spec, &p.socket, c).await?;
        }
    }
    for socket in &spec.sockets {
        let servers = servers_state(cluster, spec, socket).await?;
        haproxy::check_final(&spec.map, &servers, id, ep)
            .map_err(|m| error(cluster, format!("HAProxy {socket}: {m}")))?;
    }
    tracing::info!(
        cluster,
        writer = id,
        "every HAProxy sends new connections to the writer only"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_template_is_filled_with_quoted_values_in_one_pass() {
        let ep = Endpoint {
            host: "10.0.0.2".into(),
            port: 3306,
        };
        assert_eq!(
            fill_command(
                "dns-set {cluster} {writer_host}:{writer_port} # {writer_id} was {old_id} {other}",
                "main db",
                "db2",
                &ep,
                "{cluster}'s",
            ),
            r#"dns-set 'main db' 10.0.0.2:3306 # db2 was '{cluster}'\''s' {other}"#
        );
    }

    #[tokio::test]
    async fn a_failing_redirect_command_names_the_cluster_and_its_output() {
        let e = run_command(
            "main",
            "echo no-such-zone >&2; exit 4",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cluster main") && e.contains("no-such-zone") && e.contains("redirect"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_an_error_naming_it_and_the_command() {
        let spec = HaproxySpec {
            sockets: vec![Socket::Unix("/nonexistent/haproxy.sock".into())],
            backend: "mysql".into(),
            map: ServerMap::Name,
            timeout: Duration::from_secs(1),
        };
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let e = plan_haproxy("main", &spec, "db1", &ep)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unix:/nonexistent/haproxy.sock")
                && e.contains("show servers state mysql")
                && e.contains("cluster main"),
            "{e}"
        );
    }
}
