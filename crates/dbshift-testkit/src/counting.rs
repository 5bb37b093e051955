//! The lab as a provider that counts its control-plane calls: a test asserts how often a
//! workflow asks the control plane (on AWS each call is a rate-limited API request, and
//! `list_clusters` lists the whole fleet), not only that it ends well.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dbshift_provider::local::Lab;
use dbshift_provider::{BlueGreen, Certificates, Fleet, InstanceControl, Redirect};
use dbshift_provider::{Cluster, Credentials, Deployment, Endpoint, Instance, ProxyEndpoint};

/// How many times each control-plane read was made since the last [`CountingProvider::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub list_clusters: usize,
    pub list_instances: usize,
    pub describe_instance: usize,
}

/// The lab, its `Fleet` reads counted; every other call passed through.
pub struct CountingProvider {
    lab: Lab,
    list_clusters: AtomicUsize,
    list_instances: AtomicUsize,
    describe_instance: AtomicUsize,
}

impl CountingProvider {
    pub fn new(lab: &Lab) -> CountingProvider {
        CountingProvider {
            lab: lab.clone(),
            list_clusters: AtomicUsize::new(0),
            list_instances: AtomicUsize::new(0),
            describe_instance: AtomicUsize::new(0),
        }
    }

    /// The calls counted so far, and the counts back to zero.
    pub fn take(&self) -> Calls {
        Calls {
            list_clusters: self.list_clusters.swap(0, Ordering::SeqCst),
            list_instances: self.list_instances.swap(0, Ordering::SeqCst),
            describe_instance: self.describe_instance.swap(0, Ordering::SeqCst),
        }
    }
}

#[async_trait::async_trait]
impl Fleet for CountingProvider {
    fn name(&self) -> &'static str {
        "local-counting"
    }

    async fn list_clusters(&self) -> dbshift_provider::Result<Vec<Cluster>> {
        self.list_clusters.fetch_add(1, Ordering::SeqCst);
        self.lab.list_clusters().await
    }

    async fn list_instances(&self) -> dbshift_provider::Result<Vec<Instance>> {
        self.list_instances.fetch_add(1, Ordering::SeqCst);
        self.lab.list_instances().await
    }

    async fn describe_instance(&self, id: &str) -> dbshift_provider::Result<Instance> {
        self.describe_instance.fetch_add(1, Ordering::SeqCst);
        self.lab.describe_instance(id).await
    }

    async fn resolve(&self, name: &str) -> dbshift_provider::Result<Endpoint> {
        self.lab.resolve(name).await
    }

    fn credentials(&self) -> dbshift_provider::Result<Credentials> {
        self.lab.credentials()
    }

    async fn proxies_of(&self, cluster: &str) -> dbshift_provider::Result<Vec<ProxyEndpoint>> {
        Fleet::proxies_of(&self.lab, cluster).await
    }
}

#[async_trait::async_trait]
impl Redirect for CountingProvider {
    async fn set_writer(&self, cluster: &str, instance: &str) -> dbshift_provider::Result<()> {
        Redirect::set_writer(&self.lab, cluster, instance).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for CountingProvider {
    async fn reboot(&self, id: &str, timeout: Duration) -> dbshift_provider::Result<()> {
        self.lab.reboot(id, timeout).await
    }

    async fn set_read_only(&self, instance: &str, on: bool) -> dbshift_provider::Result<()> {
        InstanceControl::set_read_only(&self.lab, instance, on).await
    }
}

impl Certificates for CountingProvider {}

#[async_trait::async_trait]
impl BlueGreen for CountingProvider {
    async fn deployments(&self) -> dbshift_provider::Result<Vec<Deployment>> {
        BlueGreen::deployments(&self.lab).await
    }
}
