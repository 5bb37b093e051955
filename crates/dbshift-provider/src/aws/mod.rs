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
//! them [`Provider::sql_access`] is false and workflows gate on the control plane alone.
//! This module must never print, log or journal a password.

pub mod certs;
pub mod errors;
mod green;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_rds::types::{DbCluster, DbInstance, Tag};
use aws_sdk_rds::Client;
use rand::Rng;

use crate::model::{
    CaApply, CertificateAuthority, Cluster, Credential, Credentials, Deployment, Endpoint,
    GreenSpec, Instance, InstanceStatus, Provider, ProxyEndpoint, Rename, Role,
};
use crate::{Error, Result};
use certs::{ApiCertificates, CertificateSource, StaticCertificates};
use errors::{code_of, is_throttling, platform};

pub use green::{parse_recovery_position, resume_position, start_green_replication, GreenBuilt};

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

/// How the provider reaches AWS and waits on it.
#[derive(Clone)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Another RDS endpoint (moto, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Between two describes of a waiter (jittered by up to a quarter).
    pub poll_interval: Duration,
    /// Longest a waiter waits (snapshots and restores take minutes to hours).
    pub wait_timeout: Duration,
    /// Attempts per API call, throttles included (SDK standard retry mode).
    pub max_attempts: u32,
    /// The KMS key an encrypted copy is made with.
    pub kms_key: String,
    /// The servers' credentials for the SQL side, if configured.
    pub db: Option<Credentials>,
    /// Instance or cluster id -> where to connect instead of the AWS endpoint (SSH tunnels,
    /// bastions): `DBSHIFT_AWS_ENDPOINTS=id=host:port,id2=host:port`.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// A CA list instead of `DescribeCertificates` (`DBSHIFT_AWS_CERTIFICATES`).
    pub certificates_file: Option<PathBuf>,
    /// Standalone instance name (what clients use) -> the dbshift proxies in front of it
    /// (`DBSHIFT_AWS_PROXY=NAME=LISTEN_HOST:PORT/ADMIN_HOST:PORT,...`, a name given again for
    /// each further proxy, the admin API's token in `DBSHIFT_PROXY_TOKEN`): a switchover then
    /// holds clients there and switches them all.
    pub proxies: BTreeMap<String, Vec<ProxyEndpoint>>,
}

/// `NAME=LISTEN_HOST:PORT/ADMIN_HOST:PORT,...` with the admin API's `token`; a name given
/// several times has several proxies, in the order given.
pub fn parse_proxy_map(text: &str, token: &str) -> Result<BTreeMap<String, Vec<ProxyEndpoint>>> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::BadInput(format!(
                "DBSHIFT_AWS_PROXY: {part:?} is not NAME=LISTEN_HOST:PORT/ADMIN_HOST:PORT"
            ))
        };
        let (name, addrs) = part.split_once('=').ok_or_else(bad)?;
        let (listen, admin) = addrs.split_once('/').ok_or_else(bad)?;
        let ep = |a: &str| -> Result<Endpoint> {
            let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
            Ok(Endpoint {
                host: host.to_string(),
                port: port.parse().map_err(|_| bad())?,
            })
        };
        out.entry(name.to_string())
            .or_insert_with(Vec::new)
            .push(ProxyEndpoint {
                cluster: name.to_string(),
                listen: ep(listen)?,
                admin: ep(admin)?,
                token: token.to_string(),
            });
    }
    Ok(out)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_number(name: &str) -> Result<Option<u64>> {
    env(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::BadInput(format!("{name}={v:?} is not a whole number")))
        })
        .transpose()
}

/// `id=host:port,id2=host:port`.
pub fn parse_endpoint_map(text: &str) -> Result<BTreeMap<String, Endpoint>> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::BadInput(format!(
                "DBSHIFT_AWS_ENDPOINTS: {part:?} is not ID=HOST:PORT"
            ))
        };
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if id.is_empty() || host.is_empty() {
            return Err(bad());
        }
        out.insert(
            id.to_string(),
            Endpoint {
                host: host.to_string(),
                port,
            },
        );
    }
    Ok(out)
}

impl AwsOptions {
    /// Defaults, then the `DBSHIFT_*` variables: `DBSHIFT_DB_USER`, `DBSHIFT_DB_PASSWORD`,
    /// `DBSHIFT_REPL_USER`, `DBSHIFT_REPL_PASSWORD`, `DBSHIFT_DB_CA_BUNDLE`,
    /// `DBSHIFT_AWS_ENDPOINTS`, `DBSHIFT_AWS_POLL_MS`, `DBSHIFT_AWS_WAIT_TIMEOUT_S`,
    /// `DBSHIFT_AWS_MAX_ATTEMPTS`, `DBSHIFT_AWS_KMS_KEY`, `DBSHIFT_AWS_CERTIFICATES`.
    pub fn from_env() -> Result<AwsOptions> {
        let db = match (env("DBSHIFT_DB_USER"), env("DBSHIFT_DB_PASSWORD")) {
            (Some(user), Some(password)) => {
                let admin = Credential { user, password };
                let replication = match (env("DBSHIFT_REPL_USER"), env("DBSHIFT_REPL_PASSWORD")) {
                    (Some(user), Some(password)) => Credential { user, password },
                    _ => admin.clone(),
                };
                Some(Credentials {
                    app: admin.clone(),
                    admin,
                    replication,
                    ca_bundle: env("DBSHIFT_DB_CA_BUNDLE").map(PathBuf::from),
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::BadInput(
                    "set both DBSHIFT_DB_USER and DBSHIFT_DB_PASSWORD (or neither: then only the \
                     control plane is used)"
                        .into(),
                ))
            }
            (None, None) => None,
        };
        Ok(AwsOptions {
            region: None,
            profile: None,
            endpoint_url: None,
            poll_interval: Duration::from_millis(
                env_number("DBSHIFT_AWS_POLL_MS")?.unwrap_or(15_000),
            ),
            wait_timeout: Duration::from_secs(
                env_number("DBSHIFT_AWS_WAIT_TIMEOUT_S")?.unwrap_or(4 * 3600),
            ),
            max_attempts: env_number("DBSHIFT_AWS_MAX_ATTEMPTS")?.unwrap_or(8) as u32,
            kms_key: env("DBSHIFT_AWS_KMS_KEY").unwrap_or_else(|| "alias/aws/rds".into()),
            db,
            endpoints: env("DBSHIFT_AWS_ENDPOINTS")
                .map(|t| parse_endpoint_map(&t))
                .transpose()?
                .unwrap_or_default(),
            certificates_file: env("DBSHIFT_AWS_CERTIFICATES").map(PathBuf::from),
            proxies: match env("DBSHIFT_AWS_PROXY") {
                None => BTreeMap::new(),
                Some(text) => {
                    let token = env("DBSHIFT_PROXY_TOKEN").ok_or_else(|| {
                        Error::BadInput(
                            "DBSHIFT_AWS_PROXY needs the proxies' admin token in \
                             DBSHIFT_PROXY_TOKEN"
                                .into(),
                        )
                    })?;
                    parse_proxy_map(&text, &token)?
                }
            },
        })
    }
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
            Some(f) => Box::new(StaticCertificates::from_file(f)?),
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

    /// Poll `check` until it gives a value, at the poll interval (jittered); a throttled
    /// describe backs off (doubling, jittered) and polls again; other errors end the wait.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        self.wait_for_within(what, self.opts.wait_timeout, &mut check)
            .await
    }

    async fn wait_for_within<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        check: &mut F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let started = Instant::now();
        let mut throttle_pause = self.opts.poll_interval.max(Duration::from_millis(100));
        loop {
            let pause = match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => self.opts.poll_interval,
                Err(e) if code_of(&e).is_some_and(is_throttling) => {
                    tracing::warn!(what, "describe throttled; backing off");
                    throttle_pause = (throttle_pause * 2).min(Duration::from_secs(60));
                    throttle_pause
                }
                Err(e) => return Err(e),
            };
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    after: timeout,
                });
            }
            let jitter = rand::rng().random_range(0.0..=0.25);
            let pause = pause.mul_f64(1.0 + jitter);
            let left = timeout.saturating_sub(started.elapsed());
            tokio::time::sleep(pause.min(left).max(Duration::from_millis(1))).await;
        }
    }

    /// One instance by dbshift's id (see [`TAG_ID`]): the instance tagged with it wherever a
    /// swap renamed it, else the one with that identifier.
    async fn describe_db_instance(&self, id: &str) -> Result<DbInstance> {
        let named = match self.describe_raw(id).await {
            Ok(d) if tag_value(&d, TAG_ID).is_none_or(|t| t == id) => return Ok(d),
            Ok(d) => Some(d),
            Err(Error::Unknown { .. }) => None,
            Err(e) => return Err(e),
        };
        let tagged = self
            .all_instances()
            .await?
            .into_iter()
            .find(|d| tag_value(d, TAG_ID) == Some(id));
        tagged.or(named).ok_or_else(|| Error::Unknown {
            kind: "instance",
            name: id.to_string(),
            known: "see `dbshift --provider aws inventory` (this region and account)".into(),
        })
    }

    /// The instance's identifier at AWS now (it differs from dbshift's id after a swap).
    pub async fn aws_id(&self, id: &str) -> Result<String> {
        Ok(self
            .describe_db_instance(id)
            .await?
            .db_instance_identifier()
            .unwrap_or(id)
            .to_string())
    }

    async fn all_instances(&self) -> Result<Vec<DbInstance>> {
        self.client
            .describe_db_instances()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| platform("DescribeDBInstances", "", e))
    }

    /// One instance by its identifier at AWS, whatever its tags say.
    async fn describe_raw(&self, id: &str) -> Result<DbInstance> {
        let out = self
            .client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| {
                let err = platform("DescribeDBInstances", id, e);
                if code_of(&err).is_some_and(|c| c.starts_with("DBInstanceNotFound")) {
                    Error::Unknown {
                        kind: "instance",
                        name: id.to_string(),
                        known: "see `dbshift --provider aws inventory` (this region and account)"
                            .into(),
                    }
                } else {
                    err
                }
            })?;
        out.db_instances()
            .first()
            .cloned()
            .ok_or_else(|| Error::Unknown {
                kind: "instance",
                name: id.to_string(),
                known: "see `dbshift --provider aws inventory`".into(),
            })
    }

    async fn describe_db_cluster(&self, id: &str) -> Result<Option<DbCluster>> {
        match self
            .client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_clusters().first().cloned()),
            Err(e) => {
                let err = platform("DescribeDBClusters", id, e);
                if code_of(&err).is_some_and(|c| c.starts_with("DBClusterNotFound")) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Every instance and every cluster, all pages.
    async fn fleet(&self) -> Result<(Vec<DbInstance>, Vec<DbCluster>)> {
        let instances = self.all_instances().await?;
        let clusters = self
            .client
            .describe_db_clusters()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| platform("DescribeDBClusters", "", e))?;
        Ok((instances, clusters))
    }

    /// Where to connect: the override map by dbshift's id, then by the identifier, then AWS's
    /// endpoint.
    fn endpoint_of(&self, id: &str, aws_id: &str, ep: Option<(&str, i32)>) -> Endpoint {
        if let Some(e) = self
            .opts
            .endpoints
            .get(id)
            .or_else(|| self.opts.endpoints.get(aws_id))
        {
            return e.clone();
        }
        let (host, port) = ep.unwrap_or(("", 3306));
        Endpoint {
            host: host.to_string(),
            port: u16::try_from(port).unwrap_or(3306),
        }
    }

    /// dbshift's view of an instance: `id` is its stable id ([`TAG_ID`]); a standalone
    /// instance's cluster is its identifier at AWS (the DNS name clients use), so after a
    /// swap the name's cluster has the new writer.
    fn to_instance(&self, d: &DbInstance, clusters: &[DbCluster]) -> Instance {
        let aws_id = d.db_instance_identifier().unwrap_or_default().to_string();
        let id = stable_id(d);
        let (cluster, role) = match d.db_cluster_identifier() {
            Some(c) => {
                let writer = clusters
                    .iter()
                    .find(|x| x.db_cluster_identifier() == Some(c))
                    .and_then(|x| {
                        x.db_cluster_members()
                            .iter()
                            .find(|m| m.db_instance_identifier() == Some(&aws_id))
                    })
                    .and_then(|m| m.is_cluster_writer())
                    .unwrap_or(false);
                (
                    c.to_string(),
                    if writer { Role::Writer } else { Role::Reader },
                )
            }
            None => match d.read_replica_source_db_instance_identifier() {
                // A cross-region source is an ARN: its replica is a cluster of its own here.
                Some(src) if !src.starts_with("arn:") => (src.to_string(), Role::Reader),
                _ => (aws_id.clone(), Role::Writer),
            },
        };
        let status = instance_status(d);
        let ca = d
            .certificate_details()
            .and_then(|c| c.ca_identifier())
            .or(d.ca_certificate_identifier())
            .unwrap_or("?")
            .to_string();
        Instance {
            endpoint: self.endpoint_of(
                &id,
                &aws_id,
                d.endpoint()
                    .map(|e| (e.address().unwrap_or_default(), e.port().unwrap_or(3306))),
            ),
            id,
            cluster,
            role,
            engine: d.engine().unwrap_or("?").to_string(),
            engine_version: d.engine_version().unwrap_or("?").to_string(),
            status,
            ca,
            encrypted: d.storage_encrypted().unwrap_or(false),
            tags: tags(d.tag_list()),
        }
    }

    /// `stable` maps identifiers at AWS to dbshift's ids.
    fn clusters_of(
        instances: &[Instance],
        clusters: &[DbCluster],
        stable: &BTreeMap<String, String>,
    ) -> Vec<Cluster> {
        let id_of = |aws: &str| stable.get(aws).cloned().unwrap_or_else(|| aws.to_string());
        let mut out = Vec::new();
        for c in clusters {
            let name = c.db_cluster_identifier().unwrap_or_default().to_string();
            let members: Vec<String> = c
                .db_cluster_members()
                .iter()
                .filter_map(|m| m.db_instance_identifier().map(id_of))
                .collect();
            let writer = c
                .db_cluster_members()
                .iter()
                .find(|m| m.is_cluster_writer() == Some(true))
                .and_then(|m| m.db_instance_identifier())
                .map(id_of)
                .unwrap_or_default();
            out.push(Cluster {
                name,
                writer,
                instances: members,
                gtid_domain_id: None,
            });
        }
        for w in instances.iter().filter(|i| {
            i.role == Role::Writer
                && !clusters
                    .iter()
                    .any(|c| c.db_cluster_identifier() == Some(&i.cluster))
        }) {
            let mut members = vec![w.id.clone()];
            members.extend(
                instances
                    .iter()
                    .filter(|i| i.role == Role::Reader && i.cluster == w.cluster)
                    .map(|i| i.id.clone()),
            );
            out.push(Cluster {
                name: w.cluster.clone(),
                writer: w.id.clone(),
                instances: members,
                gtid_domain_id: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Wait until the instance is available with nothing pending, and `extra` holds.
    pub async fn wait_instance<F>(&self, id: &str, what: &str, extra: F) -> Result<DbInstance>
    where
        F: Fn(&DbInstance) -> bool,
    {
        self.wait_for(&format!("{id} to be {what}"), || async {
            let d = self.describe_raw(id).await?;
            Ok((instance_status(&d) == InstanceStatus::Available && extra(&d)).then_some(d))
        })
        .await
    }

    /// Modify the CA of one instance, then wait until RDS shows it applied.
    async fn apply_ca(&self, id: &str, ca: &CertificateAuthority, apply: CaApply) -> Result<()> {
        let mut req = self
            .client
            .modify_db_instance()
            .db_instance_identifier(id)
            .ca_certificate_identifier(&ca.id)
            .apply_immediately(true);
        // Only where RDS says the CA allows it; otherwise RDS restarts the instance.
        if apply == CaApply::NoRestart {
            req = req.certificate_rotation_restart(false);
        }
        tracing::info!(instance = id, ca = %ca.id, ?apply, "ModifyDBInstance CACertificateIdentifier");
        req.send()
            .await
            .map_err(|e| platform("ModifyDBInstance", id, e))?;
        let target = ca.id.clone();
        self.wait_instance(id, &format!("on {target}"), |d| {
            d.certificate_details()
                .and_then(|c| c.ca_identifier())
                .or(d.ca_certificate_identifier())
                == Some(target.as_str())
        })
        .await?;
        tracing::info!(instance = id, ca = %ca.id, "CA applied");
        Ok(())
    }

    /// Add tags to an instance or cluster (by ARN).
    pub async fn tag(&self, arn: &str, tags: &[(&str, &str)]) -> Result<()> {
        let mut req = self.client.add_tags_to_resource().resource_name(arn);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(*k).value(*v).build());
        }
        req.send()
            .await
            .map_err(|e| platform("AddTagsToResource", arn, e))?;
        Ok(())
    }

    /// Tag `instance` as serving `cluster` ([`TAG_SERVES`]) and untag every other instance
    /// tagged so.
    async fn mark_serving(&self, cluster: &str, instance: &str) -> Result<()> {
        for d in self.all_instances().await? {
            let Some(arn) = d.db_instance_arn() else {
                continue;
            };
            let serves = tag_value(&d, TAG_SERVES) == Some(cluster);
            if stable_id(&d) == instance {
                if !serves {
                    self.tag(arn, &[(TAG_SERVES, cluster)]).await?;
                }
            } else if serves {
                self.client
                    .remove_tags_from_resource()
                    .resource_name(arn)
                    .tag_keys(TAG_SERVES)
                    .send()
                    .await
                    .map_err(|e| platform("RemoveTagsFromResource", arn, e))?;
            }
        }
        Ok(())
    }

    /// Where the holder of `cluster` goes: its own id when free (green going back to its
    /// name on a rollback), else `<cluster>-old-<unix time>` (a free one).
    async fn away_name(&self, cluster: &str, holder: &str) -> Result<String> {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut candidates = Vec::new();
        if holder != cluster {
            candidates.push(holder.to_string());
        }
        candidates.push(format!("{cluster}-old-{ts}"));
        candidates.extend((2..10).map(|n| format!("{cluster}-old-{ts}-{n}")));
        for c in candidates {
            match self.describe_raw(&c).await {
                Err(Error::Unknown { .. }) => return Ok(c),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::NeedsHuman(format!(
            "no free name to rename {holder} away from {cluster}"
        )))
    }

    /// Tag the instance with its [`TAG_ID`] (its identifier now) unless it has one.
    pub async fn ensure_stable_id(&self, d: &DbInstance) -> Result<()> {
        if tag_value(d, TAG_ID).is_some() {
            return Ok(());
        }
        let (Some(arn), Some(id)) = (d.db_instance_arn(), d.db_instance_identifier()) else {
            return Ok(());
        };
        self.tag(arn, &[(TAG_ID, id)]).await
    }

    /// Rename an instance (`ModifyDBInstance NewDBInstanceIdentifier`, applied now) and wait
    /// until the new name answers describes as available.
    pub async fn rename_instance(&self, from: &str, to: &str) -> Result<()> {
        tracing::info!(from, to, "renaming instance");
        self.client
            .modify_db_instance()
            .db_instance_identifier(from)
            .new_db_instance_identifier(to)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| platform("ModifyDBInstance NewDBInstanceIdentifier", from, e))?;
        self.wait_for(&format!("{from} renamed to {to}"), || async {
            match self.describe_raw(to).await {
                Ok(d) => Ok((instance_status(&d) == InstanceStatus::Available).then_some(())),
                Err(Error::Unknown { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await?;
        tracing::info!(from, to, "renamed");
        Ok(())
    }

    /// Delete an instance without a final snapshot (what dbshift built itself).
    pub async fn delete_instance(&self, id: &str) -> Result<()> {
        tracing::info!(instance = id, "DeleteDBInstance");
        self.client
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| platform("DeleteDBInstance", id, e))?;
        self.wait_for(&format!("{id} to be deleted"), || async {
            match self.describe_raw(id).await {
                Err(Error::Unknown { .. }) => Ok(Some(())),
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Delete an Aurora cluster (its instances first) without a final snapshot.
    pub async fn delete_cluster(&self, id: &str) -> Result<()> {
        if let Some(c) = self.describe_db_cluster(id).await? {
            for m in c.db_cluster_members() {
                if let Some(i) = m.db_instance_identifier() {
                    self.delete_instance(i).await?;
                }
            }
        }
        tracing::info!(cluster = id, "DeleteDBCluster");
        self.client
            .delete_db_cluster()
            .db_cluster_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| platform("DeleteDBCluster", id, e))?;
        Ok(())
    }

    /// A read replica of a standalone instance, in the source's class, waited for.
    pub async fn create_read_replica(&self, source: &str, id: &str) -> Result<()> {
        tracing::info!(source, replica = id, "CreateDBInstanceReadReplica");
        self.client
            .create_db_instance_read_replica()
            .db_instance_identifier(id)
            .source_db_instance_identifier(source)
            .send()
            .await
            .map_err(|e| platform("CreateDBInstanceReadReplica", id, e))?;
        self.wait_instance(id, "available", |_| true).await?;
        Ok(())
    }

    fn db_credentials(&self) -> Result<Credentials> {
        self.opts.db.clone().ok_or_else(|| {
            Error::Missing(
                "no database credentials for the SQL side: set DBSHIFT_DB_USER and \
                 DBSHIFT_DB_PASSWORD (the RDS master user or one with its privileges)"
                    .into(),
            )
        })
    }
}

fn tags(list: &[Tag]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// `available` with no change pending is [`InstanceStatus::Available`]; `stopped` is stopped;
/// everything else (creating, modifying, rebooting, a pending CA) is busy.
fn instance_status(d: &DbInstance) -> InstanceStatus {
    match d.db_instance_status().unwrap_or_default() {
        "available" => {
            let pending = d.pending_modified_values().is_some_and(|p| {
                p.ca_certificate_identifier().is_some()
                    || p.db_instance_class().is_some()
                    || p.engine_version().is_some()
                    || p.db_instance_identifier().is_some()
                    || p.multi_az().is_some()
            });
            if pending {
                InstanceStatus::Busy
            } else {
                InstanceStatus::Available
            }
        }
        "stopped" | "stopping" => InstanceStatus::Stopped,
        _ => InstanceStatus::Busy,
    }
}

#[async_trait::async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn slow_control_plane(&self) -> bool {
        true
    }

    fn fleet_id(&self) -> String {
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        match &self.opts.endpoint_url {
            Some(u) => format!("aws {region} at {u}"),
            None => format!("aws {region}"),
        }
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let (raw, clusters) = self.fleet().await?;
        let instances: Vec<Instance> = raw.iter().map(|d| self.to_instance(d, &clusters)).collect();
        let stable = raw
            .iter()
            .map(|d| {
                (
                    d.db_instance_identifier().unwrap_or_default().to_string(),
                    stable_id(d),
                )
            })
            .collect();
        Ok(Self::clusters_of(&instances, &clusters, &stable))
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        let (raw, clusters) = self.fleet().await?;
        let mut out: Vec<Instance> = raw.iter().map(|d| self.to_instance(d, &clusters)).collect();
        out.sort_by(|a, b| (&a.cluster, &a.id).cmp(&(&b.cluster, &b.id)));
        Ok(out)
    }

    async fn describe_instance(&self, id: &str) -> Result<Instance> {
        let d = self.describe_db_instance(id).await?;
        let clusters = match d.db_cluster_identifier() {
            Some(c) => self.describe_db_cluster(c).await?.into_iter().collect(),
            None => Vec::new(),
        };
        Ok(self.to_instance(&d, &clusters))
    }

    /// An Aurora cluster's endpoint; else the instance that holds the identifier `name` now
    /// (a standalone instance's name is what clients use: after a swap it is green); else the
    /// instance dbshift calls `name`.
    async fn resolve(&self, name: &str) -> Result<Endpoint> {
        if let Some(c) = self.describe_db_cluster(name).await? {
            return Ok(self.endpoint_of(
                name,
                name,
                c.endpoint().map(|h| (h, c.port().unwrap_or(3306))),
            ));
        }
        match self.describe_raw(name).await {
            Ok(d) => Ok(self.to_instance(&d, &[]).endpoint),
            Err(Error::Unknown { .. }) => Ok(self.describe_instance(name).await?.endpoint),
            Err(e) => Err(e),
        }
    }

    /// Redirect by identifier swap, as AWS's own blue/green does: the renames of
    /// [`Provider::redirect_plan`], then a check that the name is `instance`'s.
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        for r in self.redirect_plan(cluster, instance).await? {
            self.rename(&r).await?;
        }
        let holder = self.describe_raw(cluster).await?;
        if stable_id(&holder) != instance {
            return Err(Error::NeedsHuman(format!(
                "{cluster} is held by {} after the renames, not by {instance}",
                stable_id(&holder)
            )));
        }
        self.mark_serving(cluster, instance).await
    }

    /// No rename (the proxy or hooks move clients): only the [`TAG_SERVES`] record.
    async fn record_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        self.mark_serving(cluster, instance).await
    }

    /// The instance that holds the name now is renamed away (`<name>-old-<unix time>`), then
    /// `instance` takes the name, so clients of the name's DNS reach it once their caches
    /// expire. Both are tagged with their [`TAG_ID`] first (if not yet), so dbshift keeps
    /// calling them what it called them. Renames take minutes; DNS caches add their TTL.
    async fn redirect_plan(&self, cluster: &str, instance: &str) -> Result<Vec<Rename>> {
        if self.describe_db_cluster(cluster).await?.is_some() {
            return Err(Error::Unsupported(format!(
                "{cluster} is an Aurora cluster: its writer moves by failover (FailoverDBCluster), \
                 not by renaming {instance}; across clusters use the dbshift proxy \
                 (--redirect proxy)"
            )));
        }
        let target = self.describe_db_instance(instance).await?;
        self.ensure_stable_id(&target).await?;
        let now = target
            .db_instance_identifier()
            .unwrap_or_default()
            .to_string();
        if now == cluster {
            return Ok(Vec::new());
        }
        let mut plan = Vec::new();
        match self.describe_raw(cluster).await {
            Ok(holder) => {
                self.ensure_stable_id(&holder).await?;
                let away = self.away_name(cluster, &stable_id(&holder)).await?;
                plan.push(Rename {
                    instance: stable_id(&holder),
                    from: cluster.to_string(),
                    to: away,
                });
            }
            Err(Error::Unknown { .. }) => {}
            Err(e) => return Err(e),
        }
        plan.push(Rename {
            instance: instance.to_string(),
            from: now,
            to: cluster.to_string(),
        });
        Ok(plan)
    }

    /// `ModifyDBInstance NewDBInstanceIdentifier`, waited for; already done (the name held by
    /// the same instance, by its [`TAG_ID`]) is success, so a resumed run finishes a half-done
    /// swap.
    async fn rename(&self, r: &Rename) -> Result<()> {
        match self.describe_raw(&r.to).await {
            Ok(d) if stable_id(&d) == r.instance => {
                self.wait_instance(&r.to, "available", |_| true).await?;
                return Ok(());
            }
            Ok(d) => {
                return Err(Error::NeedsHuman(format!(
                    "renaming {} to {}: that name is held by {} (not {}); look at both in the \
                     RDS console before going on",
                    r.from,
                    r.to,
                    stable_id(&d),
                    r.instance
                )))
            }
            Err(Error::Unknown { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.describe_raw(&r.from).await {
            Ok(d) if stable_id(&d) == r.instance => self.rename_instance(&r.from, &r.to).await,
            Ok(_) | Err(Error::Unknown { .. }) => Err(Error::NeedsHuman(format!(
                "renaming {} ({}) to {}: it is under neither name now; find it by its tag \
                 {TAG_ID}={} and rename it by hand",
                r.from, r.instance, r.to, r.instance
            ))),
            Err(e) => Err(e),
        }
    }

    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()> {
        let d = self.describe_db_instance(id).await?;
        let failover = d.multi_az().unwrap_or(false);
        let aws_id = d.db_instance_identifier().unwrap_or(id).to_string();
        tracing::info!(
            instance = id,
            aws_id,
            force_failover = failover,
            "RebootDBInstance"
        );
        let mut req = self
            .client
            .reboot_db_instance()
            .db_instance_identifier(&aws_id);
        if failover {
            req = req.force_failover(true);
        }
        req.send()
            .await
            .map_err(|e| platform("RebootDBInstance", id, e))?;
        self.wait_for_within(
            &format!("{id} to be available after its reboot"),
            timeout,
            &mut || async {
                let d = self.describe_db_instance(id).await?;
                Ok((instance_status(&d) == InstanceStatus::Available).then_some(()))
            },
        )
        .await
    }

    /// The parameter group's `read_only` (ModifyDBParameterGroup, applied immediately): it
    /// would apply to every instance sharing the group, so a shared group is refused, as is a
    /// default group (RDS lets no one change those).
    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()> {
        let d = self.describe_db_instance(instance).await?;
        let group = d
            .db_parameter_groups()
            .first()
            .and_then(|g| g.db_parameter_group_name())
            .unwrap_or_default()
            .to_string();
        if group.is_empty() || group.starts_with("default.") {
            return Err(Error::Unsupported(format!(
                "{instance} uses the default parameter group {group:?}, which RDS does not let \
                 anyone change: give it a custom parameter group (shared by nothing else) to \
                 fence it by read_only, or put the dbshift proxy in front"
            )));
        }
        let sharing: Vec<String> = self
            .fleet()
            .await?
            .0
            .iter()
            .filter(|o| {
                o.db_parameter_groups()
                    .iter()
                    .any(|g| g.db_parameter_group_name() == Some(group.as_str()))
            })
            .map(stable_id)
            .collect();
        // A shared group would fence its other instances too, and unfencing one would
        // unfence them all: in a switchover, old and new writer writable at once.
        if sharing.len() > 1 {
            return Err(Error::Unsupported(format!(
                "{instance}'s parameter group {group} is shared by {}: its read_only would fence \
                 all of them (and turning it off would make all of them writable); give \
                 {instance} a parameter group of its own (CopyDBParameterGroup, then \
                 ModifyDBInstance DBParameterGroupName), or put the dbshift proxy in front",
                sharing.join(", ")
            )));
        }
        tracing::warn!(instance, group = %group, sharing = ?sharing, on, "read_only through the parameter group: it applies to every instance sharing it");
        self.client
            .modify_db_parameter_group()
            .db_parameter_group_name(&group)
            .parameters(
                aws_sdk_rds::types::Parameter::builder()
                    .parameter_name("read_only")
                    .parameter_value(if on { "1" } else { "0" })
                    .apply_method(aws_sdk_rds::types::ApplyMethod::Immediate)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| platform("ModifyDBParameterGroup", &group, e))?;
        Ok(())
    }

    fn credentials(&self) -> Result<Credentials> {
        self.db_credentials()
    }

    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        Ok(self.opts.proxies.get(cluster).cloned().unwrap_or_default())
    }

    fn sql_access(&self) -> bool {
        self.opts.db.is_some()
    }

    async fn has_platform_failover(&self, cluster: &str) -> Result<bool> {
        Ok(self.describe_db_cluster(cluster).await?.is_some())
    }

    async fn failover_cluster(&self, cluster: &str, to: &str, timeout: Duration) -> Result<bool> {
        if self.describe_db_cluster(cluster).await?.is_none() {
            return Ok(false);
        }
        tracing::info!(cluster, to, "FailoverDBCluster");
        self.client
            .failover_db_cluster()
            .db_cluster_identifier(cluster)
            .target_db_instance_identifier(to)
            .send()
            .await
            .map_err(|e| platform("FailoverDBCluster", cluster, e))?;
        self.wait_for_within(
            &format!("{to} to be the writer of {cluster}"),
            timeout,
            &mut || async {
                let Some(c) = self.describe_db_cluster(cluster).await? else {
                    return Err(Error::Unknown {
                        kind: "cluster",
                        name: cluster.to_string(),
                        known: "it disappeared during the failover".into(),
                    });
                };
                let writer = c
                    .db_cluster_members()
                    .iter()
                    .find(|m| m.is_cluster_writer() == Some(true))
                    .and_then(|m| m.db_instance_identifier());
                let ready = writer == Some(to) && c.status() == Some("available");
                if !ready {
                    return Ok(None);
                }
                let d = self.describe_db_instance(to).await?;
                Ok((instance_status(&d) == InstanceStatus::Available).then_some(()))
            },
        )
        .await?;
        tracing::info!(cluster, to, "failover done");
        Ok(true)
    }

    /// The CAs; `rotation_without_restart` is true when every engine version of the fleet
    /// supports it (RDS's `SupportsCertificateRotationWithoutRestart`).
    async fn list_cas(&self) -> Result<Vec<CertificateAuthority>> {
        let mut cas = self.certs.certificates().await?;
        let mut versions: Vec<(String, String)> = self
            .list_instances()
            .await?
            .into_iter()
            .map(|i| (i.engine, i.engine_version))
            .collect();
        versions.sort();
        versions.dedup();
        let mut all = !versions.is_empty();
        for (engine, version) in &versions {
            if !self.certs.rotation_without_restart(engine, version).await? {
                all = false;
                break;
            }
        }
        for c in &mut cas {
            c.rotation_without_restart = all;
        }
        Ok(cas)
    }

    /// Trust is the clients' on AWS: RDS's published bundle (global-bundle.pem) holds every
    /// RDS CA, and the servers' own trust is not dbshift's to change. Check client bundles
    /// with `ca-rotate --client-ca`.
    async fn trusted_cas(&self) -> Result<Vec<String>> {
        Ok(self
            .certs
            .certificates()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }

    async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        let cas = self.certs.certificates().await?;
        let target = cas
            .iter()
            .find(|c| c.id == ca)
            .ok_or_else(|| Error::Unknown {
                kind: "CA",
                name: ca.to_string(),
                known: cas
                    .iter()
                    .map(|c| c.id.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if apply == CaApply::NoRestart {
            let d = self.describe_db_instance(instance).await?;
            let (engine, version) = (d.engine().unwrap_or("?"), d.engine_version().unwrap_or("?"));
            if !self.certs.rotation_without_restart(engine, version).await? {
                return Err(Error::BadInput(format!(
                    "RDS says {engine} {version} ({instance}) cannot rotate its certificate \
                     without a restart (SupportsCertificateRotationWithoutRestart=false): use \
                     --mode failover-first or restart"
                )));
            }
        }
        let aws_id = self.aws_id(instance).await?;
        self.apply_ca(&aws_id, target, apply).await
    }

    async fn start_instance(&self, instance: &str, timeout: Duration) -> Result<()> {
        tracing::info!(instance, "StartDBInstance");
        self.client
            .start_db_instance()
            .db_instance_identifier(self.aws_id(instance).await?)
            .send()
            .await
            .map_err(|e| platform("StartDBInstance", instance, e))?;
        self.wait_for_within(&format!("{instance} to start"), timeout, &mut || async {
            let d = self.describe_db_instance(instance).await?;
            Ok((instance_status(&d) == InstanceStatus::Available).then_some(()))
        })
        .await
    }

    async fn stop_instance(&self, instance: &str) -> Result<()> {
        tracing::info!(instance, "StopDBInstance");
        self.client
            .stop_db_instance()
            .db_instance_identifier(self.aws_id(instance).await?)
            .send()
            .await
            .map_err(|e| platform("StopDBInstance", instance, e))?;
        Ok(())
    }

    async fn deployments(&self) -> Result<Vec<Deployment>> {
        green::deployments(self).await
    }

    async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        green::create_green(self, spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_map() {
        let m = parse_endpoint_map("db-1=127.0.0.1:3307, db-2=bastion:13306").unwrap();
        assert_eq!(m["db-1"].port, 3307);
        assert_eq!(m["db-2"].host, "bastion");
        assert!(parse_endpoint_map("db-1=127.0.0.1").is_err());
        assert!(parse_endpoint_map("=h:1").is_err());
        assert!(parse_endpoint_map("").unwrap().is_empty());
    }

    #[test]
    fn proxy_map() {
        let m = parse_proxy_map("orders=10.0.0.5:3306/127.0.0.1:7070", "t").unwrap();
        assert_eq!(m["orders"][0].listen.port, 3306);
        assert_eq!(m["orders"][0].admin.host, "127.0.0.1");
        assert!(format!("{:?}", m["orders"]).contains("***"));
        let two = parse_proxy_map(
            "orders=10.0.0.5:3306/127.0.0.1:7070, orders=10.0.0.6:3306/127.0.0.1:7071",
            "t",
        )
        .unwrap();
        assert_eq!(two["orders"].len(), 2);
        assert_eq!(two["orders"][1].admin.port, 7071);
        assert!(parse_proxy_map("orders=10.0.0.5:3306", "t").is_err());
        assert!(parse_proxy_map("orders=h:x/h:1", "t").is_err());
    }
}
