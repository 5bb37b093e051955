//! What a provider does, as a core and optional capabilities.
//!
//! [`Fleet`] is the core every provider has: list the fleet, describe an instance, resolve a
//! name, hand out the credentials and the proxies clients connect through. The capabilities
//! are traits of their own: [`Redirect`] (move a cluster's name), [`InstanceControl`]
//! (restart, start, stop, the platform's `read_only` fence and failover), [`Certificates`]
//! (CAs and trust) and [`BlueGreen`] (deployments). Their methods have defaults that say what
//! the provider cannot do ([`crate::Error::Unsupported`]), or that there is nothing (no
//! deployment, no CA), so a provider without a capability writes an empty `impl` and is done.
//! Workflows ask a capability question ([`Fleet::slow_control_plane`],
//! [`Certificates::gives_ca_certificates`], [`Fleet::sql_access`],
//! [`InstanceControl::has_platform_failover`], [`crate::Instance::shares_storage`]), never
//! for a provider's name.
//!
//! [`Provider`] is every capability together, implemented for each type that has them all.
//! Why supertraits and not accessors such as `fn blue_green(&self) -> Option<&dyn BlueGreen>`:
//! every workflow takes one `&dyn Provider` and calls what it needs on it
//! (`provider.modify_ca(..)`); with supertraits those callers stay as they are, a capability a
//! provider lacks still answers with an error that names it, and there is one object to pass
//! around instead of an `Option` to unwrap at each call. This module must never know about
//! workflows: it acts on one instance or cluster at a time, when told.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{
    CaApply, CertificateAuthority, Cluster, Credentials, Deployment, Endpoint, GreenSpec, Instance,
    ProxyEndpoint, Rename,
};

/// The core of a provider: the fleet as it is, and how to reach it.
#[async_trait::async_trait]
pub trait Fleet: Send + Sync {
    /// `local`, `aws`: for messages and logs only, never to decide anything.
    fn name(&self) -> &'static str;

    /// Whether its control-plane actions take minutes (a cloud API: modify, reboot, failover)
    /// rather than the seconds of local processes; plans estimate with it.
    fn slow_control_plane(&self) -> bool {
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

    /// The credentials dbshift uses on this fleet.
    fn credentials(&self) -> Result<Credentials>;

    /// The credentials dbshift uses on `cluster`'s servers: the fleet's, unless the provider
    /// keeps users per cluster (a self-managed fleet file's `[cluster.credentials]`).
    fn credentials_for(&self, cluster: &str) -> Result<Credentials> {
        let _ = cluster;
        self.credentials()
    }

    /// Whether dbshift can talk SQL to the servers (it has their credentials). False on AWS
    /// when no database credentials are configured: health gates then rely on the control
    /// plane alone (instance available, the change recorded, nothing pending) and say so.
    fn sql_access(&self) -> bool {
        true
    }

    /// The dbshift proxies in front of `cluster` that run (several, for HA behind a load
    /// balancer or DNS; none without a proxy): a switchover holds clients at every one of them
    /// instead of letting them see errors, and is refused if one cannot be paused.
    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        let _ = cluster;
        Ok(Vec::new())
    }
}

/// Moving a cluster's name to another writer: the redirect of a switchover.
#[async_trait::async_trait]
pub trait Redirect: Fleet {
    /// Make a cluster's name resolve to `instance` from now on (a switchover's redirect).
    /// Changes no server.
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()>;

    /// Check, without changing anything, that [`Redirect::set_writer`] can move `cluster`'s
    /// clients to `instance`, and say in words what it would do (HAProxy: the commands for
    /// each one, read from its current state). The switchover core asks before anything
    /// changes, so a redirect that cannot work refuses the run instead of stopping it after
    /// the point of no return. Empty where there is nothing to check or tell (the default).
    async fn check_redirect(&self, cluster: &str, instance: &str) -> Result<Vec<String>> {
        let _ = (cluster, instance);
        Ok(Vec::new())
    }

    /// Record that `instance` now serves `cluster`'s clients, who reach it by other means
    /// than the name (the dbshift proxy, or hooks): the name itself is not moved where moving
    /// it is slow (AWS: no renames; a tag records the serving side). The default moves the
    /// name, where that is instant bookkeeping (the lab).
    async fn record_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        self.set_writer(cluster, instance).await
    }

    /// The renames [`Redirect::set_writer`] would do to make `cluster` resolve to `instance`,
    /// in order (AWS: the holder of the name renamed away, then `instance` to the name). Empty
    /// where the redirect is one atomic change (the lab). The core journals each one, applies
    /// it with [`Redirect::rename`], then calls `set_writer`, which finds nothing left to do.
    async fn redirect_plan(&self, cluster: &str, instance: &str) -> Result<Vec<Rename>> {
        let _ = (cluster, instance);
        Ok(Vec::new())
    }

    /// Apply one rename of a [`Redirect::redirect_plan`] and wait until it is done; done
    /// already (a resumed run) is success.
    async fn rename(&self, rename: &Rename) -> Result<()> {
        Err(Error::Unsupported(format!(
            "the {} provider renames nothing ({rename:?})",
            self.name()
        )))
    }
}

/// What the platform does to one instance's server, or a cluster's writer, by itself.
#[async_trait::async_trait]
pub trait InstanceControl: Fleet {
    /// Restart the instance's server and wait until it accepts connections again.
    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()>;

    /// Turn the platform's `read_only` setting of an instance on or off, for servers where
    /// dbshift's user cannot set it by SQL (RDS: no SUPER). On AWS this changes the DB
    /// parameter group, which applies to *every* instance sharing that group; the local lab
    /// keeps one setting per instance. On survives restarts, as a parameter group does.
    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()>;

    /// Start a stopped instance and wait until it accepts connections.
    async fn start_instance(&self, instance: &str, timeout: Duration) -> Result<()> {
        Err(Error::Unsupported(format!(
            "the {} provider cannot start {instance} (timeout {timeout:?})",
            self.name()
        )))
    }

    /// Why [`InstanceControl::stop_instance`] cannot fence `cluster`'s servers, if it cannot
    /// (a self-managed fleet without a `stop` command): an unplanned failover refuses before
    /// it changes anything, rather than promote while the old writer may still take writes.
    fn cannot_stop(&self, cluster: &str) -> Option<String> {
        let _ = cluster;
        None
    }

    /// Stop an instance.
    async fn stop_instance(&self, instance: &str) -> Result<()> {
        Err(Error::Unsupported(format!(
            "the {} provider cannot stop {instance}",
            self.name()
        )))
    }

    /// Whether the platform can move `cluster`'s writer itself
    /// ([`InstanceControl::failover_cluster`]), without dbshift's SQL-side switchover core.
    /// Aurora clusters on AWS; nothing else.
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
}

/// Certificate authorities: which exist, which are trusted, which signed each server's
/// certificate.
#[async_trait::async_trait]
pub trait Certificates: Fleet {
    /// Whether it gives the certificate (PEM) of every CA it lists: a health gate can then
    /// check a server's chain itself, and a CA without one is an error, not a blind spot.
    fn gives_ca_certificates(&self) -> bool {
        false
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
        Err(Error::Unsupported(format!(
            "the {} provider cannot deploy the trust bundle {cas:?}",
            self.name()
        )))
    }

    /// Give `instance` a server certificate issued by `ca`, put in effect as `apply` says;
    /// returns once it is applied (the caller's health gate checks what the server presents).
    async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        Err(Error::Unsupported(format!(
            "the {} provider cannot move {instance} to {ca} ({apply:?})",
            self.name()
        )))
    }
}

/// Blue/green deployments: a green copy of a cluster that replicates from it until it serves.
#[async_trait::async_trait]
pub trait BlueGreen: Fleet {
    /// The blue/green deployments this provider holds.
    async fn deployments(&self) -> Result<Vec<Deployment>> {
        Ok(Vec::new())
    }

    /// Build green from a hot snapshot of `spec.source` and make its writer replicate from
    /// blue's writer from the exact position the snapshot holds. Nothing is left behind on
    /// failure.
    async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        Err(Error::Unsupported(format!(
            "the {} provider cannot build a green environment from {} yet",
            self.name(),
            spec.source
        )))
    }

    /// Whether [`BlueGreen::remove_standby`] stops and deletes the standby side (the lab,
    /// AWS), or only detaches it from the serving side (self-managed: servers dbshift did not
    /// build are never deleted).
    fn cleanup_deletes(&self) -> bool {
        true
    }

    /// Remove the side of a deployment that does not serve, and the deployment with it: the
    /// serving side keeps (or takes) blue's cluster name. Gives the removed instances.
    async fn remove_standby(&self, deployment: &str) -> Result<Vec<String>> {
        Err(Error::Unsupported(format!(
            "the {} provider cannot remove deployment {deployment}",
            self.name()
        )))
    }
}

/// The control plane of a fleet: the core and every capability (see the module's comment for
/// why they are supertraits). Nothing to implement: a type with all of them is a `Provider`.
pub trait Provider: Fleet + Redirect + InstanceControl + Certificates + BlueGreen {}

impl<T> Provider for T where
    T: Fleet + Redirect + InstanceControl + Certificates + BlueGreen + ?Sized
{
}
