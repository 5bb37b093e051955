//! The aws provider's capabilities: the core (the fleet, names, credentials), redirects by
//! identifier swap, reboots and the parameter-group fence, Aurora failover, CAs and
//! blue/green.

use std::time::Duration;

use super::describe::instance_status;
use super::errors::platform;
use super::{green, stable_id, AwsProvider, TAG_ID};
use crate::model::{
    CaApply, CertificateAuthority, Cluster, Credentials, Deployment, Endpoint, GreenSpec, Instance,
    InstanceStatus, ProxyEndpoint, Rename,
};
use crate::provider::{BlueGreen, Certificates, Fleet, InstanceControl, Redirect};
use crate::{Error, Result};

#[async_trait::async_trait]
impl Fleet for AwsProvider {
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

    fn credentials(&self) -> Result<Credentials> {
        self.db_credentials()
    }

    fn sql_access(&self) -> bool {
        self.opts.db.is_some()
    }

    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        Ok(self.opts.proxies.get(cluster).cloned().unwrap_or_default())
    }
}

#[async_trait::async_trait]
impl Redirect for AwsProvider {
    /// Redirect by identifier swap, as AWS's own blue/green does: the renames of
    /// [`Redirect::redirect_plan`], then a check that the name is `instance`'s.
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

    /// No rename (the proxy or hooks move clients): only the [`super::TAG_SERVES`] record.
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
}

#[async_trait::async_trait]
impl InstanceControl for AwsProvider {
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
}

#[async_trait::async_trait]
impl Certificates for AwsProvider {
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
}

#[async_trait::async_trait]
impl BlueGreen for AwsProvider {
    async fn deployments(&self) -> Result<Vec<Deployment>> {
        green::deployments(self).await
    }

    async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        green::create_green(self, spec).await
    }
}
