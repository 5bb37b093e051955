//! Where the AWS provider learns the CAs (`DescribeCertificates`) and whether an instance can
//! take a new certificate without a restart: RDS reports that as
//! `SupportsCertificateRotationWithoutRestart` of the instance's engine version
//! (`DescribeDBEngineVersions`; the SDK's `Certificate` has no such field), never from an engine
//! list of ours. The source is injectable because moto implements neither call.

use aws_sdk_rds::Client;

use super::errors::platform;
use crate::{CertificateAuthority, Error, Result};

/// A source of the CAs RDS offers.
#[async_trait::async_trait]
pub trait CertificateSource: Send + Sync {
    /// The CAs (their `rotation_without_restart` is filled in by the provider per fleet).
    async fn certificates(&self) -> Result<Vec<CertificateAuthority>>;

    /// Whether RDS can rotate the certificate of `engine` `version` without a restart.
    async fn rotation_without_restart(&self, engine: &str, version: &str) -> Result<bool>;
}

/// `DescribeCertificates` through the SDK (paginated).
pub struct ApiCertificates {
    pub client: Client,
}

fn rfc3339(t: Option<&aws_sdk_rds::primitives::DateTime>) -> String {
    t.and_then(|t| {
        t.fmt(aws_sdk_rds::primitives::DateTimeFormat::DateTime)
            .ok()
    })
    .unwrap_or_else(|| "?".into())
}

#[async_trait::async_trait]
impl CertificateSource for ApiCertificates {
    async fn certificates(&self) -> Result<Vec<CertificateAuthority>> {
        let certs = self
            .client
            .describe_certificates()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| {
                let err = platform("DescribeCertificates", "", e);
                match err {
                    Error::Platform {
                        operation,
                        target,
                        code,
                        message,
                    } => Error::Platform {
                        operation,
                        target,
                        code,
                        message: format!(
                            "{message}; an endpoint without DescribeCertificates (plain moto) \
                             needs the CA list from a file: DBSHIFT_AWS_CERTIFICATES=FILE \
                             (docs/aws.md)"
                        ),
                    },
                    other => other,
                }
            })?;
        Ok(certs
            .into_iter()
            .filter_map(|c| {
                Some(CertificateAuthority {
                    id: c.certificate_identifier()?.to_string(),
                    not_before: rfc3339(c.valid_from()),
                    not_after: rfc3339(c.valid_till()),
                    pem: None,
                    // Per engine version, filled in by the provider.
                    rotation_without_restart: false,
                })
            })
            .collect())
    }

    async fn rotation_without_restart(&self, engine: &str, version: &str) -> Result<bool> {
        let out = self
            .client
            .describe_db_engine_versions()
            .engine(engine)
            .engine_version(version)
            .send()
            .await
            .map_err(|e| {
                platform(
                    "DescribeDBEngineVersions",
                    &format!("{engine} {version}"),
                    e,
                )
            })?;
        Ok(out
            .db_engine_versions()
            .first()
            .and_then(|v| v.supports_certificate_rotation_without_restart())
            .unwrap_or(false))
    }
}

/// A fixed list: tests, and endpoints without `DescribeCertificates` (a JSON file of
/// [`CertificateAuthority`] objects named by `DBSHIFT_AWS_CERTIFICATES`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StaticCertificates {
    pub certificates: Vec<CertificateAuthority>,
    /// `engine version` pairs that rotate without a restart, e.g. `mysql 8.0.35`.
    #[serde(default)]
    pub rotation_without_restart: Vec<String>,
}

impl StaticCertificates {
    /// Read the file (with tokio's file I/O: it is read while the provider connects).
    pub async fn from_file(path: &std::path::Path) -> Result<StaticCertificates> {
        let text = tokio::fs::read_to_string(path).await.map_err(|e| {
            Error::BadInput(format!("DBSHIFT_AWS_CERTIFICATES {}: {e}", path.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::BadInput(format!(
                "DBSHIFT_AWS_CERTIFICATES {}: not {{\"certificates\": [{{id, not_before, \
                 not_after, rotation_without_restart}}], \"rotation_without_restart\": \
                 [\"ENGINE VERSION\"]}}: {e}",
                path.display()
            ))
        })
    }
}

#[async_trait::async_trait]
impl CertificateSource for StaticCertificates {
    async fn certificates(&self) -> Result<Vec<CertificateAuthority>> {
        Ok(self.certificates.clone())
    }

    async fn rotation_without_restart(&self, engine: &str, version: &str) -> Result<bool> {
        let key = format!("{engine} {version}");
        Ok(self.rotation_without_restart.contains(&key))
    }
}
