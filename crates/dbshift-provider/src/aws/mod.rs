//! The `aws` provider: RDS and Aurora MySQL (and RDS MariaDB) through `aws-sdk-rds`.
//!
//! Clusters are Aurora DB clusters (members from `DescribeDBClusters`, the writer flagged by
//! RDS) and standalone instances with their read replicas (the source is the writer, the
//! cluster carries its name). HTTPS goes through rustls with ring; credentials come from the
//! default chain (environment, profile, SSO, instance role). Calls are retried on throttling by
//! the SDK (standard mode: exponential backoff with jitter), and the waiters poll at a
//! configurable interval with jitter and back off again when a describe is throttled.
//!
//! The SQL side needs database credentials, from `DBSHIFT_DB_USER` / `DBSHIFT_DB_PASSWORD`
//! (replication: `DBSHIFT_REPL_USER` / `DBSHIFT_REPL_PASSWORD`, default the same); without
//! them [`crate::Fleet::sql_access`] is false and workflows gate on the control plane alone.
//! This module must never print, log or journal a password.

//!
//! Its files: `options` (what it is told: flags, `DBSHIFT_*` variables), `describe` (the fleet
//! as the RDS API shows it), `changes` (what it changes, and waiting until RDS shows it
//! done), `provider` (the [`crate::Provider`] capabilities), `green` (blue/green), `certs`
//! (where CAs come from) and `errors` (what RDS's errors mean to an operator).

pub mod certs;
mod changes;
mod describe;
pub mod errors;
mod green;
mod options;
mod provider;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_rds::types::DbInstance;
use aws_sdk_rds::Client;

use crate::model::Credentials;
use crate::{Error, Result};
use certs::{ApiCertificates, CertificateSource, StaticCertificates};

pub use green::{parse_recovery_position, resume_position, start_green_replication, GreenBuilt};
pub use options::{parse_endpoint_map, parse_proxy_map, set_proxy_admin_ca, AwsOptions};

/// Tag keys the provider writes on what it builds.
pub const TAG_DEPLOYMENT: &str = "dbshift:deployment";
pub const TAG_SIDE: &str = "dbshift:side";
pub const TAG_BLUE: &str = "dbshift:blue";
pub const TAG_SOURCE_POSITION: &str = "dbshift:source-position";
/// An instance's stable id: its identifier when dbshift first tagged it. A rename swap changes
/// identifiers; dbshift keeps calling each instance by this tag, so a switchover's "old
/// writer" and "new writer" name the same servers before, during and after the swap, also
/// in a resumed run.
pub const TAG_ID: &str = "dbshift:id";
/// On the instance that serves a name's clients (`dbshift:serves=<name>`): set by every
/// redirect, by rename or by proxy, so the serving side is known whichever was used.
pub const TAG_SERVES: &str = "dbshift:serves";

/// What dbshift calls an instance: its `dbshift:id` tag, else its identifier.
pub fn stable_id(d: &DbInstance) -> String {
    tag_value(d, TAG_ID)
        .unwrap_or_else(|| d.db_instance_identifier().unwrap_or_default())
        .to_string()
}

fn tag_value<'a>(d: &'a DbInstance, key: &str) -> Option<&'a str> {
    d.tag_list()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The AWS provider.
pub struct AwsProvider {
    client: Client,
    opts: AwsOptions,
    certs: Box<dyn CertificateSource>,
}

/// An HTTPS client on rustls with ring (plain HTTP too, for a local endpoint).
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl AwsProvider {
    /// Connect with the default credential chain. Makes no API call.
    pub async fn connect(opts: AwsOptions) -> Result<AwsProvider> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(opts.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            );
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(u) = &opts.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::BadInput(
                "no AWS region: pass --region, or set AWS_REGION or a region in the profile".into(),
            ));
        }
        let client = Client::new(&config);
        let certs: Box<dyn CertificateSource> = match &opts.certificates_file {
            Some(f) => Box::new(StaticCertificates::from_file(f).await?),
            None => Box::new(ApiCertificates {
                client: client.clone(),
            }),
        };
        Ok(AwsProvider {
            client,
            opts,
            certs,
        })
    }

    /// Replace where the CAs come from (tests; endpoints without `DescribeCertificates`).
    pub fn with_certificates(mut self, certs: Box<dyn CertificateSource>) -> AwsProvider {
        self.certs = certs;
        self
    }

    /// The SDK client, for what the trait does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn options(&self) -> &AwsOptions {
        &self.opts
    }

    pub(crate) fn db_credentials(&self) -> Result<Credentials> {
        self.opts.db.clone().ok_or_else(|| {
            Error::Missing(
                "no database credentials for the SQL side: set DBSHIFT_DB_USER and \
                 DBSHIFT_DB_PASSWORD (the RDS master user or one with its privileges)"
                    .into(),
            )
        })
    }
}
