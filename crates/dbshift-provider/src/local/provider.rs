//! The lab as a [`crate::Provider`]: the core and every capability. What blocks a thread (the
//! state file and its lock, waiting for a process to exit, probing a proxy's port) runs off the
//! async runtime ([`blocking::run`]).

use std::path::PathBuf;
use std::time::Duration;

use super::{blocking, endpoint, Lab};
use crate::error::Result;
use crate::model::{
    CaApply, CertificateAuthority, Cluster, Credentials, Deployment, Endpoint, GreenSpec, Instance,
    ProxyEndpoint,
};
use crate::provider::{BlueGreen, Certificates, Fleet, InstanceControl, Redirect};

#[async_trait::async_trait]
impl Fleet for Lab {
    fn name(&self) -> &'static str {
        "local"
    }

    fn fleet_id(&self) -> String {
        let st = self.fresh().unwrap_or_else(|_| self.state.clone());
        if st.lab_id.is_empty() {
            format!("lab created {}", st.created_at)
        } else {
            format!("lab {}", st.lab_id)
        }
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let lab = self.clone();
        blocking::run("listing the lab's clusters", move || {
            let st = lab.fresh()?;
            Ok(st
                .clusters
                .iter()
                .map(|c| Cluster {
                    name: c.name.clone(),
                    writer: c.writer.clone(),
                    instances: st.instances_of(&c.name).map(|i| i.id.clone()).collect(),
                    gtid_domain_id: Some(c.gtid_domain_id),
                })
                .collect())
        })
        .await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        let lab = self.clone();
        blocking::run("listing the lab's instances", move || {
            let st = lab.fresh()?;
            Ok(st.instances.iter().map(|r| lab.describe(&st, r)).collect())
        })
        .await
    }

    async fn describe_instance(&self, id: &str) -> Result<Instance> {
        let lab = self.clone();
        let id = id.to_string();
        blocking::run("describing an instance", move || {
            let st = lab.fresh()?;
            Ok(lab.describe(&st, st.instance(&id)?))
        })
        .await
    }

    async fn resolve(&self, name: &str) -> Result<Endpoint> {
        let lab = self.clone();
        let name = name.to_string();
        blocking::run("resolving a name", move || {
            let st = lab.fresh()?;
            if let Some(c) = st.cluster(&name) {
                return Ok(endpoint(st.instance(&c.writer)?.port));
            }
            Ok(endpoint(st.instance(&name)?.port))
        })
        .await
    }

    /// The platform's own credential (RDS mode) is never among them.
    fn credentials(&self) -> Result<Credentials> {
        Ok(Credentials {
            admin: self.state.users.admin.clone(),
            replication: self.state.users.replication.clone(),
            app: self.state.users.app.clone(),
            ca_bundle: Some(self.ca_bundle()),
        })
    }

    /// Finding a running proxy reads its pid file and tries its port.
    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        let lab = self.clone();
        let cluster = cluster.to_string();
        blocking::run("finding the cluster's proxies", move || {
            lab.running_proxies(&cluster)
        })
        .await
    }
}

#[async_trait::async_trait]
impl Redirect for Lab {
    /// Waits for the lab's lock: off the runtime.
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        let lab = self.clone();
        let (cluster, instance) = (cluster.to_string(), instance.to_string());
        let what = format!("redirecting {cluster}");
        blocking::run(&what, move || Lab::set_writer(&lab, &cluster, &instance)).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for Lab {
    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()> {
        self.restart(id, timeout).await
    }

    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()> {
        Lab::set_read_only(self, instance, on).await
    }

    async fn start_instance(&self, instance: &str, timeout: Duration) -> Result<()> {
        Lab::start_instance(self, instance, timeout).await
    }

    /// Stopping waits for the process to exit (up to its grace period): off the runtime.
    async fn stop_instance(&self, instance: &str) -> Result<()> {
        let lab = self.clone();
        let id = instance.to_string();
        blocking::run(instance, move || lab.stop_instance(&id).map(|_| ())).await
    }
}

#[async_trait::async_trait]
impl Certificates for Lab {
    /// The lab's CAs are its own: their certificates are always there.
    fn gives_ca_certificates(&self) -> bool {
        true
    }

    async fn list_cas(&self) -> Result<Vec<CertificateAuthority>> {
        Lab::list_cas(self).await
    }

    async fn trusted_cas(&self) -> Result<Vec<String>> {
        Lab::trusted_cas(self).await
    }

    async fn deploy_trust(&self, cas: &[String]) -> Result<Option<PathBuf>> {
        Lab::deploy_trust(self, cas).await
    }

    async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        Lab::modify_ca(self, instance, ca, apply).await
    }
}

#[async_trait::async_trait]
impl BlueGreen for Lab {
    async fn deployments(&self) -> Result<Vec<Deployment>> {
        let lab = self.clone();
        blocking::run("reading the deployments", move || {
            Ok(lab.fresh()?.deployments)
        })
        .await
    }

    async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        Lab::create_green(self, spec).await
    }

    /// Stopping its servers waits for them to exit: off the runtime.
    async fn remove_standby(&self, deployment: &str) -> Result<Vec<String>> {
        let lab = self.clone();
        let name = deployment.to_string();
        blocking::run(deployment, move || lab.remove_standby(&name)).await
    }
}
