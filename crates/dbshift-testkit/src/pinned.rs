//! A client's view of a cluster behind something that is not the provider's name (an HAProxy
//! frontend, a load balancer): one name resolves to a fixed endpoint, everything else is the
//! provider's. An [`crate::AckedWriter`] started on it writes through that endpoint.

use std::sync::Arc;
use std::time::Duration;

use dbshift_provider::{BlueGreen, Certificates, Fleet, InstanceControl, Provider, Redirect};
use dbshift_provider::{Cluster, Credentials, Endpoint, Instance, Result};

/// `inner`, with `name` resolving to `endpoint`.
pub struct Pinned {
    pub inner: Arc<dyn Provider>,
    pub name: String,
    pub endpoint: Endpoint,
}

#[async_trait::async_trait]
impl Fleet for Pinned {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        self.inner.list_clusters().await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.inner.list_instances().await
    }

    async fn describe_instance(&self, id: &str) -> Result<Instance> {
        self.inner.describe_instance(id).await
    }

    async fn resolve(&self, name: &str) -> Result<Endpoint> {
        if name == self.name {
            return Ok(self.endpoint.clone());
        }
        self.inner.resolve(name).await
    }

    fn credentials(&self) -> Result<Credentials> {
        self.inner.credentials()
    }
}

#[async_trait::async_trait]
impl Redirect for Pinned {
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        self.inner.set_writer(cluster, instance).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for Pinned {
    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()> {
        self.inner.reboot(id, timeout).await
    }

    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()> {
        self.inner.set_read_only(instance, on).await
    }
}

impl Certificates for Pinned {}

impl BlueGreen for Pinned {}
