//! `dbshift upgrade-check <cluster> --to VERSION`: the pre-checks of a major-version upgrade
//! run on the cluster's writer (every statement is `dbshift_db::upgrade`'s), with its users.
//! Changes nothing.

use dbshift_db::upgrade::{Finding, Level, Target};
use dbshift_db::Server;
use dbshift_provider::Provider;
use serde::Serialize;

/// What stopped a check.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeCheckError {
    /// The request is wrong; nothing was read.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
}

/// The findings of one check.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    pub cluster: String,
    pub writer: String,
    /// The server as it describes itself (`MySQL 8.0.39`).
    pub from: String,
    /// `major.minor` of the target.
    pub to: String,
    pub findings: Vec<Finding>,
    /// How many findings would stop the upgrade.
    pub errors: usize,
}

/// Run the checks of an upgrade of `cluster` to `to` on its writer.
pub async fn check(
    provider: &dyn Provider,
    cluster: &str,
    to: &str,
) -> Result<UpgradeReport, UpgradeCheckError> {
    let clusters = provider.list_clusters().await?;
    let Some(c) = clusters.iter().find(|c| c.name == cluster) else {
        return Err(UpgradeCheckError::BadInput(format!(
            "unknown cluster {cluster:?}; known: {}",
            clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let creds = provider.credentials_for(cluster)?;
    let writer = provider.describe_instance(&c.writer).await?;
    let opts = crate::connect_options(&creds, &creds.admin, &writer.endpoint);
    let mut s = Server::connect(&opts).await?;
    let target = match Target::parse(to, s.flavor()) {
        Ok(t) => t,
        Err(m) => {
            s.close().await;
            return Err(UpgradeCheckError::BadInput(m));
        }
    };
    let from = s.flavor().to_string();
    tracing::info!(cluster, writer = %c.writer, from = %from, to, "upgrade pre-checks");
    let findings = s.upgrade_findings(&target).await;
    s.close().await;
    let findings = findings?;
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    Ok(UpgradeReport {
        cluster: cluster.to_string(),
        writer: c.writer.clone(),
        from,
        to: format!("{}.{}", target.version.0, target.version.1),
        findings,
        errors,
    })
}
