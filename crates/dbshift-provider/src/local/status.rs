//! What the lab is: `lab status` (every endpoint and credential, for its operator) and the
//! [`Instance`] a provider describes.

use std::path::PathBuf;

use serde::Serialize;

use super::process;
use super::state::{InstanceRecord, LabState, LabUsers};
use super::{endpoint, Lab};
use crate::model::{Endpoint, Instance, InstanceStatus, Role};

/// One instance in `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatusRow {
    pub id: String,
    pub cluster: String,
    pub role: Role,
    pub endpoint: Endpoint,
    pub server_id: u32,
    pub status: InstanceStatus,
    pub pid: Option<u32>,
    pub dir: PathBuf,
    pub ca: String,
}

/// One cluster in `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatusRow {
    pub name: String,
    pub writer: String,
    /// Where a client that follows the cluster name connects now.
    pub endpoint: Endpoint,
    pub gtid_domain_id: u32,
    /// The dbshift proxy in front of the cluster, when one runs: the stable client endpoint
    /// (the first one when there are several).
    pub proxy: Option<Endpoint>,
    /// Every running proxy in front of the cluster, first one first.
    pub proxies: Vec<Endpoint>,
}

/// `lab status`: every endpoint and the credentials, for the operator of the lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub dir: PathBuf,
    pub engine_version: String,
    /// Servers behave like RDS for MariaDB: the admin user has no SUPER, `mysql.rds_*`
    /// procedures change replication.
    pub rds_mode: bool,
    pub ca_bundle: PathBuf,
    pub users: LabUsers,
    pub clusters: Vec<ClusterStatusRow>,
    pub instances: Vec<InstanceStatusRow>,
}

impl Lab {
    pub fn status(&self) -> LabStatus {
        let st = self.fresh().unwrap_or_else(|_| self.state.clone());
        let instances = st
            .instances
            .iter()
            .map(|rec| {
                let paths = self.paths(&rec.id);
                let pid = process::running_pid(&paths);
                InstanceStatusRow {
                    id: rec.id.clone(),
                    cluster: rec.cluster.clone(),
                    role: st.role_of(rec),
                    endpoint: endpoint(rec.port),
                    server_id: rec.server_id,
                    status: if pid.is_some() {
                        InstanceStatus::Available
                    } else {
                        InstanceStatus::Stopped
                    },
                    pid,
                    dir: paths.dir,
                    ca: rec.ca.clone(),
                }
            })
            .collect();
        let proxies_of = |cluster: &str| -> Vec<Endpoint> {
            self.running_proxies(cluster)
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.listen)
                .collect()
        };
        let clusters = st
            .clusters
            .iter()
            .map(|c| ClusterStatusRow {
                name: c.name.clone(),
                writer: c.writer.clone(),
                endpoint: st
                    .instance(&c.writer)
                    .map(|w| endpoint(w.port))
                    .unwrap_or_else(|_| endpoint(0)),
                gtid_domain_id: c.gtid_domain_id,
                proxy: proxies_of(&c.name).first().cloned(),
                proxies: proxies_of(&c.name),
            })
            .collect();
        LabStatus {
            dir: self.dir.clone(),
            engine_version: st.engine_version.clone(),
            rds_mode: st.rds_mode,
            ca_bundle: self.ca_bundle(),
            users: st.users.clone(),
            clusters,
            instances,
        }
    }

    /// The server version an instance runs (its binary may differ from the lab's).
    pub(super) fn engine_version_of(&self, rec: &InstanceRecord) -> String {
        if rec.engine_binary == self.state.mariadbd {
            self.state.engine_version.clone()
        } else {
            process::engine_version(&rec.engine_binary).unwrap_or_else(|_| "unknown".into())
        }
    }

    pub(super) fn describe(&self, st: &LabState, rec: &InstanceRecord) -> Instance {
        let running = process::running_pid(&self.paths(&rec.id)).is_some();
        Instance {
            id: rec.id.clone(),
            cluster: rec.cluster.clone(),
            role: st.role_of(rec),
            endpoint: endpoint(rec.port),
            engine: "mariadb".into(),
            engine_version: self.engine_version_of(rec),
            status: if running {
                InstanceStatus::Available
            } else {
                InstanceStatus::Stopped
            },
            ca: rec.ca.clone(),
            encrypted: rec.encrypted,
            source: None,
            tags: rec.tags.clone(),
        }
    }
}
