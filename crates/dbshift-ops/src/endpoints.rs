//! The endpoints of a run's servers, resolved once at its start and again only after its
//! redirect (on AWS a rename moves an instance's endpoint): inside the write pause a new
//! connection must not wait on the control plane's API.

use std::collections::HashMap;

use dbshift_provider::{Endpoint, Provider};

/// Each server's endpoint as the provider gave it when last resolved.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    known: HashMap<String, Endpoint>,
}

impl Endpoints {
    /// Ask the provider for each of `ids` at once; one it cannot describe now is asked again
    /// when it is used (the error is that use's to report).
    pub async fn resolve(provider: &dyn Provider, ids: &[String]) -> Endpoints {
        let asked = futures::future::join_all(ids.iter().map(|id| async move {
            (
                id.clone(),
                provider.describe_instance(id).await.map(|i| i.endpoint),
            )
        }))
        .await;
        Endpoints {
            known: asked
                .into_iter()
                .filter_map(|(id, ep)| ep.ok().map(|ep| (id, ep)))
                .collect(),
        }
    }

    /// The endpoint of `id`: the one resolved, or the provider's now.
    pub async fn get(
        &self,
        provider: &dyn Provider,
        id: &str,
    ) -> Result<Endpoint, dbshift_provider::Error> {
        match self.known.get(id) {
            Some(ep) => Ok(ep.clone()),
            None => provider.describe_instance(id).await.map(|i| i.endpoint),
        }
    }
}
