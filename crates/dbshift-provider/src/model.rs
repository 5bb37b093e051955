//! What every provider describes: clusters, instances, endpoints, credentials, CAs and
//! blue/green deployments. Plain data: no provider behaviour lives here (see [`crate::provider`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A `host:port` a client connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Whether it names this machine only: a loopback IP address or `localhost`. A host name
    /// is not resolved: any other name counts as another machine.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An instance's role in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Writer,
    Reader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
        })
    }
}

/// Whether the instance's server is running and answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    Available,
    Stopped,
    /// The platform is changing it (AWS: creating, modifying, rebooting, a change pending,
    /// ...): running or not, it is not ready for the next step.
    Busy,
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InstanceStatus::Available => "available",
            InstanceStatus::Stopped => "stopped",
            InstanceStatus::Busy => "busy",
        })
    }
}

/// One database instance as the platform describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub cluster: String,
    pub role: Role,
    pub endpoint: Endpoint,
    /// `mariadb` or `mysql`.
    pub engine: String,
    pub engine_version: String,
    pub status: InstanceStatus,
    /// The CA that signed the server certificate.
    pub ca: String,
    pub encrypted: bool,
    /// The instance it replicates from, when the provider records it: the self-managed
    /// provider's discovery, from the servers' replica status (chains included). `None` for a
    /// writer, a member whose source is unknown, and providers that keep no such record (the
    /// lab, AWS: `inventory` asks their servers).
    #[serde(default)]
    pub source: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    /// Whether it keeps its data in storage shared with its cluster's other members (Aurora):
    /// there is no binlog replication between them to check or repair.
    pub fn shares_storage(&self) -> bool {
        self.engine.starts_with("aurora")
    }
}

/// A cluster: one writer and its readers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub writer: String,
    pub instances: Vec<String>,
    /// MariaDB `gtid_domain_id` the cluster's writes are in.
    pub gtid_domain_id: Option<u32>,
}

/// A user and its password. `Debug` hides the password; serializing shows it (only `lab status`
/// prints it, for the operator of a local lab).
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, ***)", self.user)
    }
}

/// The users a provider knows: dbshift's admin, replication, and the application's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub admin: Credential,
    pub replication: Credential,
    /// No SUPER and no READ_ONLY ADMIN, as real applications.
    pub app: Credential,
    /// The CA bundle clients should trust, when the provider has one.
    pub ca_bundle: Option<PathBuf>,
}

/// A certificate authority that instances' server certificates can be issued from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateAuthority {
    pub id: String,
    /// Validity, RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// Its certificate (PEM) when the provider has it: client trust bundles are checked
    /// against it before a rotation.
    pub pem: Option<String>,
    /// Whether an instance can take a certificate from it without a restart (AWS:
    /// `SupportsCertificateRotationWithoutRestart`; the lab: MariaDB's `FLUSH LOCAL SSL`).
    pub rotation_without_restart: bool,
}

/// How a new server certificate is put in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaApply {
    /// Loaded by the running server (MariaDB `FLUSH LOCAL SSL`; AWS
    /// `CertificateRotationRestart=false`).
    NoRestart,
    /// The server is restarted.
    Restart,
}

/// A dbshift proxy in front of a cluster: the clients' stable endpoint, and the admin API the
/// switchover uses to hold clients and move them to the new writer.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProxyEndpoint {
    pub cluster: String,
    /// Where clients connect.
    pub listen: Endpoint,
    /// The admin API: plain HTTP on a loopback address, or HTTPS (any address) when
    /// `admin_ca` is given.
    pub admin: Endpoint,
    /// The admin API's bearer token.
    pub token: String,
    /// The CA (PEM) the admin API's certificate is verified against, its name included:
    /// HTTPS when set, plain HTTP (loopback only) when not. Absent from records written
    /// before it existed: they read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_ca: Option<PathBuf>,
}

impl std::fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProxyEndpoint({} listen {} admin {}{}, token ***)",
            self.cluster,
            self.listen,
            self.admin,
            match &self.admin_ca {
                Some(ca) => format!(" (TLS, CA {})", ca.display()),
                None => String::new(),
            }
        )
    }
}

/// Which side of a blue/green deployment serves the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Blue,
    Green,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Blue => Side::Green,
            Side::Green => Side::Blue,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Blue => "blue",
            Side::Green => "green",
        })
    }
}

/// A blue/green deployment: a green cluster built from a snapshot of the blue one, its writer
/// replicating from blue's writer. Clients use blue's cluster name; it resolves to the writer
/// of the side that serves. The side that does not serve replicates from the one that does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// The cluster that existed first; its name is the one clients use.
    pub blue: String,
    /// The cluster built from blue's snapshot.
    pub green: String,
    /// The writer instance of each side (blue's name may resolve to green's writer).
    pub blue_writer: String,
    pub green_writer: String,
    pub serving: Side,
    /// Blue writer's GTID position green's writer started replicating from (the writer's
    /// coordinates recorded by the backup, never the backed-up replica's own).
    pub source_position: String,
    /// The instance the snapshot was taken on.
    pub snapshot_taken_on: String,
    pub encrypted: bool,
    /// Green's server binary when it differs from blue's.
    pub engine_binary: Option<PathBuf>,
    pub created_at: String,
}

impl Deployment {
    /// The cluster of a side.
    pub fn cluster(&self, side: Side) -> &str {
        match side {
            Side::Blue => &self.blue,
            Side::Green => &self.green,
        }
    }

    /// The writer instance of a side.
    pub fn writer(&self, side: Side) -> &str {
        match side {
            Side::Blue => &self.blue_writer,
            Side::Green => &self.green_writer,
        }
    }
}

/// One rename of a redirect by identifier swap (AWS): the switchover core journals each one
/// before and after, so that a resumed run finishes a half-done swap from the plan it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    /// The instance's stable id (what dbshift calls it before and after the rename).
    pub instance: String,
    /// The platform's identifier now, and after.
    pub from: String,
    pub to: String,
}

/// What `create_green` builds.
#[derive(Debug, Clone)]
pub struct GreenSpec {
    /// Blue: the cluster green is built from.
    pub source: String,
    /// The deployment's name, also green's cluster name.
    pub name: String,
    /// Green's replicas besides its writer.
    pub replicas: u32,
    /// Data-at-rest encryption on green.
    pub encrypt: bool,
    /// Another server binary for green.
    pub engine_binary: Option<PathBuf>,
}

/// The certificates of a PEM text, as their base64 bodies without line breaks: two files hold
/// the same certificate when these are equal.
pub fn pem_certificates(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            cur = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(c) = cur.take() {
                out.push(c);
            }
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_endpoint_stored_before_admin_ca_still_reads() {
        let old = r#"{"cluster":"lab-1","listen":{"host":"127.0.0.1","port":3307},
            "admin":{"host":"127.0.0.1","port":3308},"token":"t"}"#;
        let p: ProxyEndpoint = serde_json::from_str(old).unwrap();
        assert_eq!(p.admin_ca, None);
        assert!(!serde_json::to_string(&p).unwrap().contains("admin_ca"));
        let tls = ProxyEndpoint {
            admin_ca: Some("/etc/dbshift/proxy-ca.pem".into()),
            ..p
        };
        let back: ProxyEndpoint =
            serde_json::from_str(&serde_json::to_string(&tls).unwrap()).unwrap();
        assert_eq!(back.admin_ca, tls.admin_ca);
    }

    #[test]
    fn loopback_endpoints() {
        let ep = |h: &str| Endpoint {
            host: h.into(),
            port: 1,
        };
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(ep(h).is_loopback(), "{h}");
        }
        for h in [
            "10.0.0.5",
            "0.0.0.0",
            "::",
            "proxy.internal",
            "localhost.example",
        ] {
            assert!(!ep(h).is_loopback(), "{h}");
        }
    }
}
