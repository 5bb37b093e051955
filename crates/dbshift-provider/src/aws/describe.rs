//! The fleet as the RDS API shows it: instances and Aurora clusters described (by dbshift's
//! stable id wherever a rename swap moved them), and turned into [`Instance`]s and
//! [`Cluster`]s.

use std::collections::BTreeMap;

use aws_sdk_rds::types::{DbCluster, DbInstance, Tag};

use super::errors::{code_of, platform};
use super::{stable_id, tag_value, AwsProvider, TAG_ID};
use crate::model::{Cluster, Endpoint, Instance, InstanceStatus, Role};
use crate::{Error, Result};

impl AwsProvider {
    /// One instance by dbshift's id (see [`TAG_ID`]): the instance tagged with it wherever a
    /// swap renamed it, else the one with that identifier.
    pub(crate) async fn describe_db_instance(&self, id: &str) -> Result<DbInstance> {
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

    /// Every MySQL-family instance of the account and region (all pages); the others
    /// (PostgreSQL, Oracle, SQL Server, Db2) are not dbshift's and are left out, counted in
    /// the log.
    pub(crate) async fn all_instances(&self) -> Result<Vec<DbInstance>> {
        let all: Vec<DbInstance> = self
            .client
            .describe_db_instances()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| platform("DescribeDBInstances", "", e))?;
        let total = all.len();
        let ours: Vec<DbInstance> = all
            .into_iter()
            .filter(|d| is_mysql_family(d.engine()))
            .collect();
        if ours.len() < total {
            tracing::info!(
                left_out = total - ours.len(),
                "instances of other engines than MySQL, MariaDB and Aurora MySQL left out"
            );
        }
        Ok(ours)
    }

    /// One instance by its identifier at AWS, whatever its tags say.
    pub(crate) async fn describe_raw(&self, id: &str) -> Result<DbInstance> {
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
        let d = out
            .db_instances()
            .first()
            .cloned()
            .ok_or_else(|| Error::Unknown {
                kind: "instance",
                name: id.to_string(),
                known: "see `dbshift --provider aws inventory`".into(),
            })?;
        if !is_mysql_family(d.engine()) {
            return Err(Error::BadInput(format!(
                "{id} runs {}: dbshift acts on MySQL, MariaDB and Aurora MySQL only",
                d.engine().unwrap_or("?")
            )));
        }
        Ok(d)
    }

    pub(crate) async fn describe_db_cluster(&self, id: &str) -> Result<Option<DbCluster>> {
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
    pub(crate) async fn fleet(&self) -> Result<(Vec<DbInstance>, Vec<DbCluster>)> {
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
        let clusters = clusters
            .into_iter()
            .filter(|c: &DbCluster| is_mysql_family(c.engine()))
            .collect();
        Ok((instances, clusters))
    }

    /// Where to connect: the override map by dbshift's id, then by the identifier, then AWS's
    /// endpoint.
    pub(crate) fn endpoint_of(&self, id: &str, aws_id: &str, ep: Option<(&str, i32)>) -> Endpoint {
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
    pub(crate) fn to_instance(&self, d: &DbInstance, clusters: &[DbCluster]) -> Instance {
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
            source: None,
            tags: tags(d.tag_list()),
        }
    }

    /// `stable` maps identifiers at AWS to dbshift's ids.
    pub(crate) fn clusters_of(
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
}

/// Whether an RDS engine name is MySQL's family, the engines dbshift acts on: `mysql`,
/// `mariadb`, `aurora-mysql` and Aurora MySQL 1's `aurora`. An instance without an engine
/// (never seen from RDS) is kept.
pub(crate) fn is_mysql_family(engine: Option<&str>) -> bool {
    match engine {
        None => true,
        Some(e) => matches!(e, "mysql" | "mariadb" | "aurora-mysql" | "aurora"),
    }
}

pub(crate) fn tags(list: &[Tag]) -> BTreeMap<String, String> {
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
pub(crate) fn instance_status(d: &DbInstance) -> InstanceStatus {
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
