//! What the aws provider changes on RDS (CA, tags, identifiers, replicas, deletions), and
//! waiting until RDS shows a change done: polled at the configured interval with jitter,
//! backing off when a describe is throttled.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_rds::types::{DbInstance, Tag};
use rand::Rng;

use super::describe::instance_status;
use super::errors::{code_of, is_throttling, platform};
use super::{stable_id, tag_value, AwsProvider, TAG_ID, TAG_SERVES};
use crate::model::{CaApply, CertificateAuthority, InstanceStatus};
use crate::{Error, Result};

impl AwsProvider {
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

    pub(crate) async fn wait_for_within<T, F, Fut>(
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
    pub(crate) async fn apply_ca(
        &self,
        id: &str,
        ca: &CertificateAuthority,
        apply: CaApply,
    ) -> Result<()> {
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
    pub(crate) async fn mark_serving(&self, cluster: &str, instance: &str) -> Result<()> {
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
    pub(crate) async fn away_name(&self, cluster: &str, holder: &str) -> Result<String> {
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
}
