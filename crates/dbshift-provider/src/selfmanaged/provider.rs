//! The self-managed fleet as a [`crate::Provider`]: the core from discovery, the redirect in
//! memory (the servers are the truth), `read_only` through `dbshift-db`, and restart, stop and
//! start through the fleet file's command templates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::discovery::{self, Member};
use super::fleet_file::{ClusterSpec, RedirectKind};
use super::{commands, redirect, SelfManaged};
use crate::error::{Error, Result};
use crate::model::{Cluster, Credentials, Endpoint, Instance, InstanceStatus, ProxyEndpoint};
use crate::provider::{Fleet, InstanceControl, Redirect};

impl SelfManaged {
    async fn instance(&self, spec: &ClusterSpec, m: &Member) -> Instance {
        let ca = self.presented_ca(spec, m).await;
        let mut tags = BTreeMap::new();
        tags.insert("server_id".to_string(), m.server_id.to_string());
        tags.insert("version".to_string(), m.version.clone());
        if let Some(src) = &m.source {
            tags.insert("source".to_string(), src.to_string());
        }
        Instance {
            id: m.id.clone(),
            cluster: spec.name.clone(),
            role: m.role,
            endpoint: m.endpoint.clone(),
            engine: m.engine.clone(),
            engine_version: m.version.clone(),
            // Not answering: stopped as far as dbshift can tell (`failover` fences it with the
            // stop command, `rejoin` starts it with the start command).
            status: if m.reachable {
                InstanceStatus::Available
            } else {
                InstanceStatus::Stopped
            },
            // The `[[ca]]` that verifies what it presents (`-`: none of them, or no [[ca]]).
            ca,
            encrypted: false,
            source: m.source_id.clone(),
            tags,
        }
    }

    /// The cluster of `id` and its member record, looking through every cluster.
    pub(super) async fn find(&self, id: &str) -> Result<(&ClusterSpec, Member)> {
        let mut first_error = None;
        let mut known = Vec::new();
        for spec in &self.fleet.clusters {
            match self.topology(&spec.name).await {
                Ok(t) => match t.member(id) {
                    Some(m) => return Ok((spec, m.clone())),
                    None => known.extend(t.members.iter().map(|m| m.id.clone())),
                },
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| Error::Unknown {
            kind: "instance",
            name: id.to_string(),
            known: known.join(", "),
        }))
    }

    /// The fleet file's command for `key` of `id`'s cluster, filled in, or what to set.
    async fn command(
        &self,
        id: &str,
        key: &str,
        pick: fn(&super::fleet_file::Commands) -> Option<&String>,
    ) -> Result<(String, Duration, ClusterSpec, Member)> {
        let (spec, m) = self.find(id).await?;
        let Some(template) = pick(&spec.commands) else {
            return Err(Error::Unsupported(format!(
                "the fleet file {} has no `{key}` command for cluster {}: set `{key} = \"...\"` \
                 under [cluster.commands] (or [commands] for every cluster), with {{host}}, \
                 {{port}} and {{id}} filled in by dbshift",
                self.fleet.path.display(),
                spec.name
            )));
        };
        let cmd = commands::fill(template, &m.id, &m.endpoint);
        Ok((cmd, spec.commands.timeout, spec.clone(), m))
    }

    /// The writer `cluster` has in this run and the endpoint of `instance`, a member of it.
    async fn old_and_new(&self, cluster: &str, instance: &str) -> Result<(String, Endpoint)> {
        let (writer, members) = self.clients_view(cluster).await?;
        let m = members.iter().find(|m| m.id == instance).ok_or_else(|| {
            Error::BadInput(format!(
                "{instance} is not a member of cluster {cluster} (members: {})",
                members
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok((writer, m.endpoint.clone()))
    }

    /// What `cluster`'s name stands for, for its clients: the writer it resolves to and the
    /// members it may be moved to. A deployment's blue cluster: the writer the name was moved
    /// to and both sides; any other cluster: its writer and its members.
    async fn clients_view(&self, cluster: &str) -> Result<(String, Vec<Member>)> {
        if let Some(d) = self
            .fleet
            .deployment_of(cluster)
            .filter(|d| d.blue == cluster)
        {
            let v = self.view(&d.clone()).await?;
            return Ok((v.named.clone(), v.members().cloned().collect()));
        }
        let t = self.topology(cluster).await?;
        Ok((t.writer, t.members))
    }

    /// The cluster's `commands.redirect` filled in for a move to `instance`.
    async fn redirect_command(&self, spec: &ClusterSpec, instance: &str) -> Result<String> {
        let (old, ep) = self.old_and_new(&spec.name, instance).await?;
        let template = spec
            .commands
            .redirect
            .as_ref()
            .expect("checked when the file was read");
        Ok(redirect::fill_command(
            template, &spec.name, instance, &ep, &old,
        ))
    }

    /// After `m`, the writer, restarted: writable again if it came back read-only and no
    /// other member that answers is writable.
    async fn restore_writer(&self, spec: &ClusterSpec, m: &Member) -> Result<()> {
        let fleet = self.fleet.path.display().to_string();
        let mut s = discovery::connect_admin(spec, &fleet, &m.endpoint).await?;
        let read_only = s.read_only().await;
        s.close().await;
        if !read_only? {
            return Ok(());
        }
        let t = self.topology(&spec.name).await?;
        for other in t.members.iter().filter(|o| o.id != m.id) {
            match discovery::connect_admin(spec, &fleet, &other.endpoint).await {
                Ok(mut o) => {
                    let ro = o.read_only().await;
                    o.close().await;
                    if !ro? {
                        return Err(Error::NeedsHuman(format!(
                            "{} was cluster {}'s writer and came back read-only after its                              restart, but {} is writable now: dbshift leaves both as they are;                              decide which one is the writer",
                            m.id, spec.name, other.id
                        )));
                    }
                }
                Err(e) => tracing::warn!(
                    instance = %other.id,
                    "not checked before making the restarted writer writable again: {e}"
                ),
            }
        }
        tracing::info!(instance = %m.id, "the writer came back read-only: making it writable again");
        let mut s = discovery::connect_admin(spec, &fleet, &m.endpoint).await?;
        let r = s.set_writable().await;
        s.close().await;
        r?;
        Ok(())
    }

    /// Wait until `m` accepts the admin user's connections again, up to `timeout`.
    async fn wait_until_answers(
        &self,
        spec: &ClusterSpec,
        m: &Member,
        timeout: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let fleet = self.fleet.path.display().to_string();
        loop {
            match discovery::connect_admin(spec, &fleet, &m.endpoint).await {
                Ok(s) => {
                    s.close().await;
                    return Ok(());
                }
                Err(e) if started.elapsed() >= timeout => {
                    return Err(Error::Timeout {
                        what: format!("{} to accept connections ({e})", m.id),
                        after: timeout,
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// `id` with its cluster, as a command's error names it.
fn in_cluster(id: &str, spec: &ClusterSpec) -> String {
    format!("{id} of cluster {}", spec.name)
}

#[async_trait::async_trait]
impl Fleet for SelfManaged {
    fn name(&self) -> &'static str {
        "self-managed"
    }

    /// The fleet file's path: a run is resumed only with the same file.
    fn fleet_id(&self) -> String {
        let path = std::fs::canonicalize(&self.fleet.path).unwrap_or(self.fleet.path.clone());
        format!("self-managed fleet {}", path.display())
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let mut out = Vec::new();
        for spec in &self.fleet.clusters {
            if self.is_pending_green(&spec.name).await {
                continue;
            }
            let t = self.topology(&spec.name).await?;
            let (writer, _) = self.clients_view(&spec.name).await?;
            out.push(Cluster {
                name: spec.name.clone(),
                writer,
                instances: t.members.iter().map(|m| m.id.clone()).collect(),
                gtid_domain_id: None,
            });
        }
        Ok(out)
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        for spec in &self.fleet.clusters {
            if self.is_pending_green(&spec.name).await {
                continue;
            }
            let t = self.topology(&spec.name).await?;
            for m in &t.members {
                out.push(self.instance(spec, m).await);
            }
        }
        Ok(out)
    }

    async fn describe_instance(&self, id: &str) -> Result<Instance> {
        let (spec, m) = self.find(id).await?;
        Ok(self.instance(spec, &m).await)
    }

    async fn resolve(&self, name: &str) -> Result<Endpoint> {
        if self.fleet.clusters.iter().any(|c| c.name == name) {
            let (writer, members) = self.clients_view(name).await?;
            let w = members
                .iter()
                .find(|m| m.id == writer)
                .expect("the writer is a member");
            return Ok(w.endpoint.clone());
        }
        match self.find(name).await {
            Ok((_, m)) => Ok(m.endpoint),
            Err(Error::Unknown { known, .. }) => Err(Error::Unknown {
                kind: "cluster or instance",
                name: name.to_string(),
                known: format!("clusters {}; instances {known}", self.fleet.known()),
            }),
            Err(e) => Err(e),
        }
    }

    /// `cluster`'s users and TLS (`[cluster.credentials]` and `[cluster.tls]` over the
    /// fleet's); a cluster that is no cluster of the file, the fleet's ([`Fleet::credentials`]).
    fn credentials_for(&self, cluster: &str) -> Result<Credentials> {
        match self.fleet.cluster(cluster) {
            Ok(c) => Ok(Credentials {
                admin: c.admin.clone(),
                replication: c.replication.clone(),
                app: c.app.clone().unwrap_or_else(|| c.admin.clone()),
                ca_bundle: c.tls.ca_file.clone(),
            }),
            Err(_) => self.credentials(),
        }
    }

    /// One set for the whole fleet, for what is not about one cluster. Clusters whose users
    /// or TLS differ are refused here: the workflows ask for a cluster's own
    /// ([`Fleet::credentials_for`]).
    fn credentials(&self) -> Result<Credentials> {
        let first = self
            .fleet
            .clusters
            .first()
            .expect("a fleet file has a cluster");
        let key = |c: &ClusterSpec| {
            (
                c.admin.user.clone(),
                c.admin.password.clone(),
                c.replication.user.clone(),
                c.replication.password.clone(),
                c.app.as_ref().map(|a| (a.user.clone(), a.password.clone())),
                c.tls.clone(),
            )
        };
        if let Some(other) = self.fleet.clusters.iter().find(|c| key(c) != key(first)) {
            return Err(Error::Unsupported(format!(
                "clusters {} and {} of {} use different users or TLS, and this asks for one set \
                 for the whole fleet; the workflows on one cluster take that cluster's own: \
                 name the cluster",
                first.name,
                other.name,
                self.fleet.path.display()
            )));
        }
        Ok(Credentials {
            admin: first.admin.clone(),
            replication: first.replication.clone(),
            app: first.app.clone().unwrap_or_else(|| first.admin.clone()),
            ca_bundle: first.tls.ca_file.clone(),
        })
    }

    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        let spec = self.fleet.cluster(cluster)?;
        Ok(spec
            .proxies
            .iter()
            .map(|p| ProxyEndpoint {
                cluster: cluster.to_string(),
                listen: p.listen.clone(),
                admin: p.admin.clone(),
                token: p.token.clone(),
                admin_ca: p.admin_ca.clone(),
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Redirect for SelfManaged {
    /// Moves the clients as the fleet file says (HAProxy, the redirect command; nothing for
    /// `none` and `proxy`), then records the writer for the rest of the run.
    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        let spec = self.fleet.cluster(cluster)?;
        match spec.redirect {
            RedirectKind::None => tracing::warn!(
                cluster,
                writer = instance,
                "redirect = \"none\": dbshift moved no client; the operator must point the \
                 clients of {cluster} at {instance}"
            ),
            RedirectKind::Proxy => tracing::info!(
                cluster,
                writer = instance,
                "the cluster's dbshift proxies follow the new writer"
            ),
            RedirectKind::Haproxy => {
                let (_, ep) = self.old_and_new(cluster, instance).await?;
                let hp = spec
                    .haproxy
                    .as_ref()
                    .expect("checked when the file was read");
                redirect::set_writer_haproxy(cluster, hp, instance, &ep).await?;
            }
            RedirectKind::Command => {
                let cmd = self.redirect_command(spec, instance).await?;
                redirect::run_command(cluster, &cmd, spec.commands.timeout).await?;
            }
        }
        self.record(cluster, instance).await
    }

    async fn check_redirect(&self, cluster: &str, instance: &str) -> Result<Vec<String>> {
        let spec = self.fleet.cluster(cluster)?;
        Ok(match spec.redirect {
            RedirectKind::None => vec![format!(
                "none: dbshift moves no client of {cluster}; the operator (or a --hook) points \
                 them at {instance}"
            )],
            RedirectKind::Proxy => Vec::new(),
            RedirectKind::Haproxy => {
                let (_, ep) = self.old_and_new(cluster, instance).await?;
                let hp = spec
                    .haproxy
                    .as_ref()
                    .expect("checked when the file was read");
                redirect::plan_haproxy(cluster, hp, instance, &ep)
                    .await?
                    .iter()
                    .map(|p| p.describe(&hp.backend))
                    .collect()
            }
            RedirectKind::Command => vec![format!(
                "run `{}` (at most {:?})",
                self.redirect_command(spec, instance).await?,
                spec.commands.timeout
            )],
        })
    }

    /// The database is the truth: the writer is kept in memory for the rest of the run.
    async fn record_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        self.record(cluster, instance).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for SelfManaged {
    /// The `restart` command, then a wait until the server answers. A writer that was
    /// writable and comes back read-only (its option file says `read_only=ON`, as is usual
    /// where a failover tool manages the writer) is made writable again, as it was, once
    /// every other member that answers is checked read-only; otherwise a human is asked.
    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()> {
        let (cmd, limit, spec, m) = self.command(id, "restart", |c| c.restart.as_ref()).await?;
        let was_writer = m.role == crate::model::Role::Writer && !m.read_only;
        tracing::info!(instance = id, "restarting the server");
        commands::run("restart", &in_cluster(id, &spec), &cmd, limit).await?;
        self.wait_until_answers(&spec, &m, timeout).await?;
        tracing::info!(instance = id, "the server restarted and answers");
        if was_writer {
            self.restore_writer(&spec, &m).await?;
        }
        Ok(())
    }

    /// By SQL, as the admin user: on a self-managed server dbshift's user may set it.
    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()> {
        let (spec, m) = self.find(instance).await?;
        let fleet = self.fleet.path.display().to_string();
        let mut s = discovery::connect_admin(spec, &fleet, &m.endpoint).await?;
        tracing::info!(instance, read_only = on, "setting read_only");
        let r = if on {
            s.set_read_only().await
        } else {
            s.set_writable().await
        };
        s.close().await;
        r?;
        tracing::info!(instance, read_only = on, "read_only set");
        Ok(())
    }

    async fn start_instance(&self, instance: &str, timeout: Duration) -> Result<()> {
        let (cmd, limit, spec, m) = self
            .command(instance, "start", |c| c.start.as_ref())
            .await?;
        tracing::info!(instance, "starting the server");
        commands::run("start", &in_cluster(instance, &spec), &cmd, limit).await?;
        self.wait_until_answers(&spec, &m, timeout).await?;
        tracing::info!(instance, "the server started and answers");
        Ok(())
    }

    fn cannot_stop(&self, cluster: &str) -> Option<String> {
        let spec = self.fleet.cluster(cluster).ok()?;
        spec.commands.stop.is_none().then(|| {
            format!(
                "the fleet file {} has no `stop` command for cluster {cluster}, so dbshift cannot \
                 fence a writer that does not answer (it may still be alive and take writes): \
                 set `stop = \"...\"` under [commands] (or [cluster.commands]), a command that \
                 returns only once the server ({{host}}, {{port}}, {{id}}) can no longer accept \
                 writes",
                self.fleet.path.display()
            )
        })
    }

    async fn stop_instance(&self, instance: &str) -> Result<()> {
        let (cmd, limit, spec, _) = self.command(instance, "stop", |c| c.stop.as_ref()).await?;
        tracing::info!(instance, "stopping the server");
        commands::run("stop", &in_cluster(instance, &spec), &cmd, limit).await?;
        tracing::info!(instance, "the server's stop command succeeded");
        Ok(())
    }
}
