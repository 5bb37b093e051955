//! The self-managed provider (`--provider self-managed --fleet FILE`): MySQL and MariaDB
//! servers dbshift did not start, on the operator's own hosts. The fleet file
//! ([`fleet_file`]) names the clusters, a seed or two each, the users and the TLS; the
//! topology is discovered from the servers themselves ([`discovery`]) and kept for the run
//! (resolved once, as the workflows' endpoints are); host-level actions (restart, stop,
//! start) are the file's command templates ([`commands`]), and so is a CA rotation's
//! certificate and trust installation ([`certificates`]).
//!
//! The servers are the truth: this provider keeps no state of its own. A redirect is recorded
//! in memory for the rest of the run; with `redirect = "none"` clients are the operator's to
//! move, with `redirect = "proxy"` the dbshift proxies the file names hold and move them,
//! with `redirect = "haproxy"` or `"command"` dbshift moves them itself ([`redirect`]).
//! It must never print or log a password (the fleet file holds none: it names where each one
//! is), and never write SQL of its own: every statement is `dbshift-db`'s.

pub mod bluegreen;
pub mod certificates;
pub mod commands;
pub mod discovery;
pub mod fleet_file;
mod provider;
pub mod redirect;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::error::Result;
use crate::model;
use discovery::Topology;
pub use fleet_file::{ClusterSpec, FleetFile, RedirectKind};

/// The provider; see the module documentation. Cloning shares the discovery cache.
#[derive(Clone)]
pub struct SelfManaged {
    fleet: Arc<FleetFile>,
    /// Each cluster's topology and when it was discovered.
    cache: Arc<Mutex<BTreeMap<String, (Instant, Topology)>>>,
    /// How long a discovery is trusted; `None`: for the whole run (a command).
    max_age: Option<Duration>,
    /// The `[[ca]]` each instance's certificate was found to come from, this run.
    presented: Arc<Mutex<BTreeMap<String, String>>>,
    /// Each `[[deployment]]`'s two sides and when they were discovered.
    views: Arc<Mutex<BTreeMap<String, (Instant, bluegreen::DeploymentView)>>>,
}

impl SelfManaged {
    /// Read and check the fleet file (passwords from the process's environment or their
    /// files). Nothing connects yet: discovery happens on first use.
    pub fn open(path: &Path) -> Result<SelfManaged> {
        let fleet = FleetFile::load(path, &|var| std::env::var(var).ok())?;
        Ok(SelfManaged::new(fleet))
    }

    pub fn new(fleet: FleetFile) -> SelfManaged {
        SelfManaged {
            fleet: Arc::new(fleet),
            cache: Arc::new(Mutex::new(BTreeMap::new())),
            max_age: None,
            presented: Arc::new(Mutex::new(BTreeMap::new())),
            views: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Discover again when a topology is older than `max_age` (a long-lived user: a client
    /// that follows the writer). A command keeps the default, one discovery per run.
    pub fn with_max_age(mut self, max_age: Duration) -> SelfManaged {
        self.max_age = Some(max_age);
        self
    }

    /// The fleet file as read.
    pub fn fleet(&self) -> &FleetFile {
        &self.fleet
    }

    /// The topology of `cluster`: the one discovered this run, or discovered now.
    pub async fn topology(&self, cluster: &str) -> Result<Topology> {
        let spec = self.fleet.cluster(cluster)?;
        if let Some(d) = self.fleet.deployment_of(cluster) {
            let v = self.view(d).await?;
            let side = if d.blue == cluster {
                model::Side::Blue
            } else {
                model::Side::Green
            };
            if v.pending && side == model::Side::Green {
                return Err(crate::Error::Discovery {
                    cluster: cluster.to_string(),
                    message: format!(
                        "green of deployment {} is not built yet (none of its seeds answers); \
                         `dbshift bluegreen create --source {}` builds it with the fleet \
                         file's provision_green command",
                        d.name, d.blue
                    ),
                });
            }
            return Ok(v.side(side).clone());
        }
        let mut cache = self.cache.lock().await;
        if let Some((at, t)) = cache.get(cluster) {
            if self.max_age.is_none_or(|age| at.elapsed() < age) {
                return Ok(t.clone());
            }
        }
        let fleet = self.fleet.path.display().to_string();
        let t = discovery::discover(spec, &fleet).await?;
        // What the servers present is read again with the topology.
        let mut presented = self.presented.lock().await;
        for m in &t.members {
            presented.remove(&m.id);
        }
        drop(presented);
        cache.insert(cluster.to_string(), (Instant::now(), t.clone()));
        Ok(t)
    }

    /// Whether `cluster` is the green of a deployment not built yet: left out of the
    /// listings until `bluegreen create` builds it.
    pub async fn is_pending_green(&self, cluster: &str) -> bool {
        match self.fleet.deployment_of(cluster) {
            Some(d) if d.green == cluster => {
                let d = d.clone();
                self.view(&d).await.is_ok_and(|v| v.pending)
            }
            _ => false,
        }
    }

    /// Record `instance` as `cluster`'s writer for the rest of the run.
    async fn record(&self, cluster: &str, instance: &str) -> Result<()> {
        // Blue's name of a deployment moves between the two sides.
        if let Some(d) = self.fleet.deployment_of(cluster) {
            return self.record_named(&d.clone(), instance).await;
        }
        let mut t = self.topology(cluster).await?;
        if t.member(instance).is_none() {
            return Err(crate::Error::BadInput(format!(
                "{instance} is not a member of cluster {cluster} (members: {})",
                t.members
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        t.set_writer(instance);
        self.cache
            .lock()
            .await
            .insert(cluster.to_string(), (Instant::now(), t));
        Ok(())
    }
}
