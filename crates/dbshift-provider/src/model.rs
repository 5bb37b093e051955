//! What every provider describes: clusters, instances, endpoints, credentials.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A `host:port` a client connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
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
    /// The admin API (loopback).
    pub admin: Endpoint,
    /// The admin API's bearer token.
    pub token: String,
}

impl std::fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProxyEndpoint({} listen {} admin {}, token ***)",
            self.cluster, self.listen, self.admin
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

/// The control plane of a fleet.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// `local`, `aws`.
    fn name(&self) -> &'static str;

    /// Whether its control-plane actions take minutes (a cloud API: modify, reboot, failover)
    /// rather than the seconds of local processes; plans estimate with it.
    fn slow_control_plane(&self) -> bool {
        false
    }

    /// Whether it gives the certificate (PEM) of every CA it lists: a health gate can then
    /// check a server's chain itself, and a CA without one is an error, not a blind spot.
    fn gives_ca_certificates(&self) -> bool {
        false
    }

    /// The identity of the fleet this provider acts on (one lab, one AWS account's region):
    /// the journal ties each run to it, and a run is resumed only against its own fleet.
    fn fleet_id(&self) -> String {
        self.name().to_string()
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>>;

    async fn list_instances(&self) -> Result<Vec<Instance>>;

    /// One instance by id; [`crate::Error::Unknown`] if there is none.
    async fn describe_instance(&self, id: &str) -> Result<Instance>;

    /// A cluster name resolves to its current writer's endpoint, an instance id to its own.
    async fn resolve(&self, name: &str) -> Result<Endpoint>;

    /// Make a cluster's name resolve to `instance` from now on (a switchover's redirect).
    /// Changes no server.
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()>;

    /// Record that `instance` now serves `cluster`'s clients, who reach it by other means
    /// than the name (the dbshift proxy, or hooks): the name itself is not moved where moving
    /// it is slow (AWS: no renames; a tag records the serving side). The default moves the
    /// name, where that is instant bookkeeping (the lab).
    async fn record_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        self.set_writer(cluster, instance).await
    }

    /// The renames [`Provider::set_writer`] would do to make `cluster` resolve to `instance`,
    /// in order (AWS: the holder of the name renamed away, then `instance` to the name). Empty
    /// where the redirect is one atomic change (the lab). The core journals each one, applies
    /// it with [`Provider::rename`], then calls `set_writer`, which finds nothing left to do.
    async fn redirect_plan(&self, cluster: &str, instance: &str) -> Result<Vec<Rename>> {
        let _ = (cluster, instance);
        Ok(Vec::new())
    }

    /// Apply one rename of a [`Provider::redirect_plan`] and wait until it is done; done
    /// already (a resumed run) is success.
    async fn rename(&self, rename: &Rename) -> Result<()> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider renames nothing ({rename:?})",
            self.name()
        )))
    }

    /// Restart the instance's server and wait until it accepts connections again.
    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()>;

    /// Turn the platform's `read_only` setting of an instance on or off, for servers where
    /// dbshift's user cannot set it by SQL (RDS: no SUPER). On AWS this changes the DB
    /// parameter group, which applies to *every* instance sharing that group; the local lab
    /// keeps one setting per instance. On survives restarts, as a parameter group does.
    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()>;

    /// The credentials dbshift uses on this fleet.
    fn credentials(&self) -> Result<Credentials>;

    /// Whether dbshift can talk SQL to the servers (it has their credentials). False on AWS
    /// when no database credentials are configured: health gates then rely on the control
    /// plane alone (instance available, the change recorded, nothing pending) and say so.
    fn sql_access(&self) -> bool {
        true
    }

    /// Whether the platform can move `cluster`'s writer itself ([`Self::failover_cluster`]),
    /// without dbshift's SQL-side switchover core. Aurora clusters on AWS; nothing else.
    async fn has_platform_failover(&self, cluster: &str) -> Result<bool> {
        let _ = cluster;
        Ok(false)
    }

    /// Move `cluster`'s writer to `to` by the platform's own failover (Aurora:
    /// FailoverDBCluster) and wait until `to` is the writer. `Ok(false)`: the platform has no
    /// such failover for this cluster; the caller uses the switchover core instead.
    async fn failover_cluster(&self, cluster: &str, to: &str, timeout: Duration) -> Result<bool> {
        let _ = (cluster, to, timeout);
        Ok(false)
    }

    /// The dbshift proxies in front of `cluster` that run (several, for HA behind a load
    /// balancer or DNS; none without a proxy): a switchover holds clients at every one of them
    /// instead of letting them see errors, and is refused if one cannot be paused.
    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        let _ = cluster;
        Ok(Vec::new())
    }

    /// The CAs instances can be moved to.
    async fn list_cas(&self) -> Result<Vec<CertificateAuthority>> {
        Ok(Vec::new())
    }

    /// The CAs every trust point the provider manages trusts now (servers' `ssl_ca`,
    /// replication's `MASTER_SSL_CA`).
    async fn trusted_cas(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Make every trust point the provider manages trust exactly `cas`, loaded without a
    /// restart; idempotent. Done before any server certificate changes (old+new), and after a
    /// rotation (new only) if asked. Gives the path of the bundle clients can use, if local.
    async fn deploy_trust(&self, cas: &[String]) -> Result<Option<PathBuf>> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider cannot deploy the trust bundle {cas:?}",
            self.name()
        )))
    }

    /// Give `instance` a server certificate issued by `ca`, put in effect as `apply` says;
    /// returns once it is applied (the caller's health gate checks what the server presents).
    async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider cannot move {instance} to {ca} ({apply:?})",
            self.name()
        )))
    }

    /// Start a stopped instance and wait until it accepts connections.
    async fn start_instance(&self, instance: &str, timeout: Duration) -> Result<()> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider cannot start {instance} (timeout {timeout:?})",
            self.name()
        )))
    }

    /// Stop an instance.
    async fn stop_instance(&self, instance: &str) -> Result<()> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider cannot stop {instance}",
            self.name()
        )))
    }

    /// The blue/green deployments this provider holds.
    async fn deployments(&self) -> Result<Vec<Deployment>> {
        Ok(Vec::new())
    }

    /// Build green from a hot snapshot of `spec.source` and make its writer replicate from
    /// blue's writer from the exact position the snapshot holds. Nothing is left behind on
    /// failure.
    async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider cannot build a green environment from {} yet",
            self.name(),
            spec.source
        )))
    }

    /// Remove the side of a deployment that does not serve, and the deployment with it: the
    /// serving side keeps (or takes) blue's cluster name. Gives the removed instances.
    async fn remove_standby(&self, deployment: &str) -> Result<Vec<String>> {
        Err(crate::Error::Unsupported(format!(
            "the {} provider cannot remove deployment {deployment}",
            self.name()
        )))
    }
}
