//! A lab whose cluster has dbshift proxies that run inside the test process (one, or several
//! as behind a load balancer): the provider names them (`proxies_of`), so the switchover core
//! holds clients at each, as it does with the lab's proxy processes (`dbshift lab proxy up`).

use std::time::Duration;

use dbshift_provider::local::Lab;
use dbshift_provider::{BlueGreen, Certificates, Fleet, InstanceControl, Redirect};
use dbshift_provider::{
    Cluster, Credentials, Deployment, Endpoint, Instance, ProxyEndpoint, Result,
};

/// [`Lab`] with `proxies` in front of their clusters; everything else is the lab's.
pub struct ProxiedLab {
    pub lab: Lab,
    pub proxies: Vec<ProxyEndpoint>,
}

#[async_trait::async_trait]
impl Fleet for ProxiedLab {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        self.lab.list_clusters().await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.lab.list_instances().await
    }

    async fn describe_instance(&self, id: &str) -> Result<Instance> {
        self.lab.describe_instance(id).await
    }

    async fn resolve(&self, name: &str) -> Result<Endpoint> {
        Fleet::resolve(&self.lab, name).await
    }

    fn credentials(&self) -> Result<Credentials> {
        self.lab.credentials()
    }

    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        Ok(self
            .proxies
            .iter()
            .filter(|p| p.cluster == cluster)
            .cloned()
            .collect())
    }
}

#[async_trait::async_trait]
impl Redirect for ProxiedLab {
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        Redirect::set_writer(&self.lab, cluster, instance).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for ProxiedLab {
    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()> {
        self.lab.reboot(id, timeout).await
    }

    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()> {
        InstanceControl::set_read_only(&self.lab, instance, on).await
    }
}

impl Certificates for ProxiedLab {}

#[async_trait::async_trait]
impl BlueGreen for ProxiedLab {
    async fn deployments(&self) -> Result<Vec<Deployment>> {
        self.lab.deployments().await
    }
}
