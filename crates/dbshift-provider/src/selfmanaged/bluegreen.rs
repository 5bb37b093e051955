//! Blue/green on servers dbshift did not start: green is a cluster the operator built (a
//! restore, a provisioning tool, a newer version) whose writer replicates from blue's writer,
//! named with blue in the fleet file's `[[deployment]]`. dbshift then runs the same `bluegreen
//! status`, `verify`, `switchover` and `rollback` as on the lab (the switchover core, blue's
//! redirect moving the clients, the old writer demoted to a replica of the new one: reverse
//! replication for the rollback); `cleanup` only detaches (the standby writer stops
//! replicating and forgets its source), it deletes nothing.
//!
//! The servers are the truth, as for every self-managed topology: the two sides are
//! discovered together from both clusters' seeds (they are one replication tree), then split
//! where the standby side's writer replicates from the serving writer: its subtree is the
//! standby side. Which side serves is the one whose writer takes writes.

use std::collections::BTreeSet;

use super::discovery::{self, Topology};
use super::fleet_file::{ClusterSpec, DeploymentSpec};
use super::SelfManaged;
use crate::error::{Error, Result};
use crate::model::{Deployment, Role, Side};
use crate::provider::BlueGreen;

/// Both sides of a deployment as discovered, and the writer the clients' name (blue's
/// cluster) resolves to in this run.
#[derive(Debug, Clone)]
pub struct DeploymentView {
    pub blue: Topology,
    pub green: Topology,
    pub serving: Side,
    /// The writer blue's name resolves to: the serving side's writer, moved by a redirect.
    pub named: String,
    /// Green does not exist yet: none of its seeds answers (`bluegreen create` runs the
    /// fleet file's `provision_green`). Blue is then every member found, green is empty.
    pub pending: bool,
}

impl DeploymentView {
    /// The topology of `side`.
    pub fn side(&self, side: Side) -> &Topology {
        match side {
            Side::Blue => &self.blue,
            Side::Green => &self.green,
        }
    }

    /// Every member of both sides.
    pub fn members(&self) -> impl Iterator<Item = &discovery::Member> {
        self.blue.members.iter().chain(self.green.members.iter())
    }
}

/// Split the union topology `u` of a deployment: the standby side is the subtree under the
/// writer's replica that leads to the seeds of one side only, the rest serves. `blue_seeds`
/// and `green_seeds` are member ids. An error says what does not fit, in words.
pub fn partition(
    u: &Topology,
    blue_seeds: &[String],
    green_seeds: &[String],
) -> std::result::Result<(Side, Topology, Topology), String> {
    let w = u.writer.as_str();
    let subtree = |root: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![root.to_string()];
        while let Some(id) = todo.pop() {
            if out.insert(id.clone()) {
                todo.extend(
                    u.members
                        .iter()
                        .filter(|m| m.source_id.as_deref() == Some(id.as_str()))
                        .map(|m| m.id.clone()),
                );
            }
        }
        out
    };
    let children: Vec<&str> = u
        .members
        .iter()
        .filter(|m| m.source_id.as_deref() == Some(w))
        .map(|m| m.id.as_str())
        .collect();
    let holds = |set: &BTreeSet<String>, seeds: &[String]| seeds.iter().any(|s| set.contains(s));
    // A writer named among one side's seeds settles which side serves.
    let serving_known = match (
        blue_seeds.iter().any(|s| s == w),
        green_seeds.iter().any(|s| s == w),
    ) {
        (true, false) => Some(Side::Blue),
        (false, true) => Some(Side::Green),
        _ => None,
    };
    let mut found: Option<(Side, &str, BTreeSet<String>)> = None;
    for c in &children {
        let sub = subtree(c);
        let (b, g) = (holds(&sub, blue_seeds), holds(&sub, green_seeds));
        let standby = match (b, g) {
            (false, true) => Side::Green,
            (true, false) => Side::Blue,
            _ => continue,
        };
        if serving_known == Some(standby) {
            continue;
        }
        // The serving side must have a seed outside the standby subtree.
        let serving_seeds = match standby {
            Side::Green => blue_seeds,
            Side::Blue => green_seeds,
        };
        if !serving_seeds.iter().any(|s| !sub.contains(s)) {
            continue;
        }
        if found.is_some() {
            return Err(format!(
                "more than one replica of the writer {w} leads to one side's seeds only; name \
                 each side's writer among its seeds"
            ));
        }
        found = Some((standby, c, sub));
    }
    let Some((standby, root, sub)) = found else {
        return Err(format!(
            "no replica of the writer {w} leads to the other side's seeds: the two sides do not \
             replicate one from the other's writer (detached, or green's writer replicates from \
             a replica of blue); if the deployment was detached, remove its [[deployment]] from \
             the fleet file"
        ));
    };
    let side_of = |ids: &dyn Fn(&str) -> bool, writer: &str| {
        let mut members: Vec<discovery::Member> =
            u.members.iter().filter(|m| ids(&m.id)).cloned().collect();
        for m in &mut members {
            m.role = if m.id == writer {
                Role::Writer
            } else {
                Role::Reader
            };
        }
        members.sort_by_key(|m| m.id != writer);
        Topology {
            writer: writer.to_string(),
            findings: u
                .findings
                .iter()
                .filter(|f| ids(&f.member))
                .cloned()
                .collect(),
            members,
        }
    };
    let standby_t = side_of(&|id| sub.contains(id), root);
    let serving_t = side_of(&|id| !sub.contains(id), w);
    Ok(match standby {
        Side::Green => (Side::Blue, serving_t, standby_t),
        Side::Blue => (Side::Green, standby_t, serving_t),
    })
}

impl SelfManaged {
    /// The view of deployment `d`: discovered this run, or now.
    pub(super) async fn view(&self, d: &DeploymentSpec) -> Result<DeploymentView> {
        let mut views = self.views.lock().await;
        if let Some((at, v)) = views.get(&d.name) {
            if self.max_age.is_none_or(|age| at.elapsed() < age) {
                return Ok(v.clone());
            }
        }
        let blue = self.fleet.cluster(&d.blue)?;
        let green = self.fleet.cluster(&d.green)?;
        let mut union: ClusterSpec = blue.clone();
        union.name = format!(
            "{} (deployment {}: {} and {})",
            d.blue, d.name, d.blue, d.green
        );
        for s in &green.seeds {
            if !union.seeds.contains(s) {
                union.seeds.push(s.clone());
            }
        }
        union.names.extend(green.names.clone());
        let fleet = self.fleet.path.display().to_string();
        let u = discovery::discover(&union, &fleet).await?;
        let seed_ids = |spec: &ClusterSpec| -> Vec<String> {
            spec.seeds
                .iter()
                .filter_map(|ep| u.members.iter().find(|m| &m.endpoint == ep))
                .map(|m| m.id.clone())
                .collect()
        };
        let green_answers = u
            .members
            .iter()
            .any(|m| m.reachable && green.seeds.contains(&m.endpoint));
        if !green_answers {
            // Blue: what answers, and blue's seeds; a server that does not answer and was
            // only listed by another may be one of green's, not built yet.
            let mut blue_t = u.clone();
            blue_t.members.retain(|m| {
                !green.seeds.contains(&m.endpoint)
                    && (m.reachable || blue.seeds.contains(&m.endpoint))
            });
            blue_t
                .findings
                .retain(|f| blue_t.members.iter().any(|m| m.id == f.member));
            let v = DeploymentView {
                named: blue_t.writer.clone(),
                blue: blue_t,
                green: Topology {
                    writer: String::new(),
                    members: Vec::new(),
                    findings: Vec::new(),
                },
                serving: Side::Blue,
                pending: true,
            };
            views.insert(d.name.clone(), (std::time::Instant::now(), v.clone()));
            return Ok(v);
        }
        let (serving, blue_t, green_t) =
            partition(&u, &seed_ids(blue), &seed_ids(green)).map_err(|message| {
                Error::Discovery {
                    cluster: d.blue.clone(),
                    message: format!("deployment {} in {fleet}: {message}", d.name),
                }
            })?;
        let named = match serving {
            Side::Blue => blue_t.writer.clone(),
            Side::Green => green_t.writer.clone(),
        };
        let mut presented = self.presented.lock().await;
        for m in u.members.iter() {
            presented.remove(&m.id);
        }
        drop(presented);
        let v = DeploymentView {
            blue: blue_t,
            green: green_t,
            serving,
            named,
            pending: false,
        };
        views.insert(d.name.clone(), (std::time::Instant::now(), v.clone()));
        Ok(v)
    }

    /// Record that blue's name now resolves to `instance`, a member of either side.
    pub(super) async fn record_named(&self, d: &DeploymentSpec, instance: &str) -> Result<()> {
        let mut v = self.view(d).await?;
        if !v.members().any(|m| m.id == instance) {
            return Err(Error::BadInput(format!(
                "{instance} is not a member of deployment {} ({} or {})",
                d.name, d.blue, d.green
            )));
        }
        v.named = instance.to_string();
        self.views
            .lock()
            .await
            .insert(d.name.clone(), (std::time::Instant::now(), v));
        Ok(())
    }

    fn deployment(&self, v: &DeploymentView, d: &DeploymentSpec) -> Deployment {
        Deployment {
            name: d.name.clone(),
            blue: d.blue.clone(),
            green: d.green.clone(),
            blue_writer: v.blue.writer.clone(),
            green_writer: v.green.writer.clone(),
            serving: v.serving,
            // Green was built by the operator: dbshift did not see where it started.
            source_position: "-".to_string(),
            snapshot_taken_on: "-".to_string(),
            encrypted: false,
            engine_binary: None,
            created_at: "-".to_string(),
        }
    }
}

#[async_trait::async_trait]
impl BlueGreen for SelfManaged {
    /// The `[[deployment]]`s of the fleet file, each as its servers show it.
    async fn deployments(&self) -> Result<Vec<Deployment>> {
        let mut out = Vec::new();
        for d in &self.fleet.deployments {
            let v = self.view(d).await?;
            if v.pending {
                tracing::info!(deployment = %d.name, "green {} is not built yet", d.green);
                continue;
            }
            out.push(self.deployment(&v, d));
        }
        Ok(out)
    }

    /// Green as the fleet file declares it (a `[[deployment]]` whose blue is `spec.source`),
    /// built by the green cluster's `provision_green` command when none of its seeds answers
    /// yet; then waited for until green's writer replicates from blue's. Done already: the
    /// deployment as it is.
    async fn create_green(&self, spec: &crate::model::GreenSpec) -> Result<Deployment> {
        let fleet = self.fleet.path.display();
        let declare = || {
            format!(
                "on a self-managed fleet green is a cluster you declare: add it as a [[cluster]] \
                 (its seeds where it runs, or will run) and name both in a [[deployment]] of \
                 {fleet} (name, blue = {:?}, green); a green you built yourself must replicate \
                 from {}'s writer by GTID; one to be built needs `provision_green` under the \
                 green cluster's commands (docs/self-managed.md)",
                spec.source, spec.source
            )
        };
        let candidates: Vec<&DeploymentSpec> = self
            .fleet
            .deployments
            .iter()
            .filter(|d| d.blue == spec.source)
            .collect();
        let d = match candidates.as_slice() {
            [] => return Err(Error::Unsupported(declare())),
            [one] => (*one).clone(),
            many => many
                .iter()
                .find(|d| d.name == spec.name || d.green == spec.name)
                .map(|d| (*d).clone())
                .ok_or_else(|| {
                    Error::BadInput(format!(
                        "{} has several deployments in {fleet} ({}); name one with --name",
                        spec.source,
                        many.iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        };
        if spec.encrypt || spec.engine_binary.is_some() || spec.replicas != 1 {
            return Err(Error::BadInput(format!(
                "on a self-managed fleet the provision_green command builds green as it is \
                 written: --encrypt, --engine-binary and --replicas do not apply to {}",
                d.name
            )));
        }
        self.views.lock().await.remove(&d.name);
        let v = self.view(&d).await?;
        if !v.pending {
            tracing::info!(deployment = %d.name, "green {} exists already", d.green);
            return Ok(self.deployment(&v, &d));
        }
        let green = self.fleet.cluster(&d.green)?;
        let Some(template) = green.commands.provision_green.clone() else {
            return Err(Error::Unsupported(format!(
                "green {} does not answer at its seeds and {fleet} has no `provision_green` \
                 command for it: build it (its writer replicating from {}'s writer by GTID), \
                 or set provision_green under [cluster.commands] of {}",
                d.green, d.blue, d.green
            )));
        };
        let writer = v
            .blue
            .member(&v.blue.writer)
            .expect("the writer is a member")
            .clone();
        let seeds = green
            .seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let port = writer.endpoint.port.to_string();
        let cmd = super::commands::fill_with(
            &template,
            &writer.id,
            &writer.endpoint,
            &[
                ("{blue}", &d.blue),
                ("{green}", &d.green),
                ("{deployment}", &d.name),
                ("{blue_writer_id}", &writer.id),
                ("{blue_writer_host}", &writer.endpoint.host),
                ("{blue_writer_port}", &port),
                ("{green_seeds}", &seeds),
            ],
        );
        tracing::info!(deployment = %d.name, "building green {} with provision_green", d.green);
        super::commands::run("provision_green", &d.green, &cmd, green.commands.timeout).await?;
        let started = std::time::Instant::now();
        loop {
            self.views.lock().await.remove(&d.name);
            match self.view(&d).await {
                Ok(v) if !v.pending => {
                    tracing::info!(deployment = %d.name, "green {} replicates from blue", d.green);
                    return Ok(self.deployment(&v, &d));
                }
                other => {
                    if started.elapsed() >= green.commands.timeout {
                        let why = match other {
                            Ok(_) => "none of its seeds answers".to_string(),
                            Err(e) => e.to_string(),
                        };
                        return Err(Error::Timeout {
                            what: format!(
                                "green {} after provision_green succeeded ({why}); check what \
                                 the command built",
                                d.green
                            ),
                            after: green.commands.timeout,
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn cleanup_deletes(&self) -> bool {
        false
    }

    /// Detach only: the standby side's writer stops replicating from the serving writer and
    /// forgets it; no server is stopped or deleted. Gives no instance (none was removed).
    async fn remove_standby(&self, deployment: &str) -> Result<Vec<String>> {
        let d = self
            .fleet
            .deployments
            .iter()
            .find(|d| d.name == deployment)
            .ok_or_else(|| Error::Unknown {
                kind: "deployment",
                name: deployment.to_string(),
                known: self
                    .fleet
                    .deployments
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .clone();
        let v = self.view(&d).await?;
        let standby = v.side(v.serving.other());
        let spec = self.fleet.cluster(match v.serving.other() {
            Side::Blue => &d.blue,
            Side::Green => &d.green,
        })?;
        let m = standby
            .member(&standby.writer)
            .expect("a side's writer is a member of it")
            .clone();
        let fleet = self.fleet.path.display().to_string();
        let mut s = discovery::connect_admin(spec, &fleet, &m.endpoint).await?;
        tracing::info!(deployment, standby = %m.id, "detaching the standby side");
        let r = s.reset_replication().await;
        s.close().await;
        r?;
        self.views.lock().await.remove(&d.name);
        tracing::warn!(
            deployment,
            "detached: {} no longer replicates from {}; remove the [[deployment]] {deployment} \
             from {fleet} (its sides are separate clusters now)",
            m.id,
            v.named
        );
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn member(id: &str, source: Option<&str>) -> discovery::Member {
        discovery::Member {
            id: id.into(),
            endpoint: Endpoint {
                host: id.into(),
                port: 3306,
            },
            server_id: 1,
            engine: "mariadb".into(),
            version: "MariaDB 10.11".into(),
            read_only: source.is_some(),
            source: source.map(|s| Endpoint {
                host: s.into(),
                port: 3306,
            }),
            source_id: source.map(str::to_string),
            source_server_id: None,
            role: if source.is_none() {
                Role::Writer
            } else {
                Role::Reader
            },
            reachable: true,
        }
    }

    fn union(members: Vec<discovery::Member>) -> Topology {
        Topology {
            writer: members[0].id.clone(),
            members,
            findings: Vec::new(),
        }
    }

    fn ids(t: &Topology) -> Vec<&str> {
        t.members.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn the_standby_side_is_the_subtree_that_leads_to_its_seeds() {
        // b1 writes; b2 replicates from it; g1 (green's writer) from b1; g2 from g1.
        let u = union(vec![
            member("b1", None),
            member("b2", Some("b1")),
            member("g1", Some("b1")),
            member("g2", Some("g1")),
        ]);
        let (serving, blue, green) = partition(&u, &["b1".into()], &["g2".into()]).unwrap();
        assert_eq!(serving, Side::Blue);
        assert_eq!((blue.writer.as_str(), ids(&blue)), ("b1", vec!["b1", "b2"]));
        assert_eq!(
            (green.writer.as_str(), ids(&green)),
            ("g1", vec!["g1", "g2"])
        );
        assert_eq!(green.member("g1").unwrap().role, Role::Writer);

        // After a switchover: g1 writes, b1 replicates from it (reverse replication).
        let u = union(vec![
            member("g1", None),
            member("g2", Some("g1")),
            member("b1", Some("g1")),
            member("b2", Some("b1")),
        ]);
        let (serving, blue, green) = partition(&u, &["b1".into()], &["g1".into()]).unwrap();
        assert_eq!(serving, Side::Green);
        assert_eq!(ids(&blue), vec!["b1", "b2"]);
        assert_eq!(ids(&green), vec!["g1", "g2"]);
    }

    #[test]
    fn sides_that_do_not_replicate_one_from_the_other_are_refused_with_the_fix() {
        // Green replicates from a replica of blue: not from blue's writer.
        let u = union(vec![
            member("b1", None),
            member("b2", Some("b1")),
            member("g1", Some("b2")),
        ]);
        let e = partition(&u, &["b1".into(), "b2".into()], &["g1".into()]).unwrap_err();
        assert!(e.contains("do not replicate"), "{e}");
        // Replicas alone as seeds, two readings possible: the writers must be named.
        let u = union(vec![
            member("b1", None),
            member("b2", Some("b1")),
            member("g1", Some("b1")),
        ]);
        let e = partition(&u, &["b2".into()], &["g1".into()]).unwrap_err();
        assert!(e.contains("name each side's writer"), "{e}");
        // Seeds of both sides under one replica: nothing tells them apart.
        let u = union(vec![
            member("b1", None),
            member("x", Some("b1")),
            member("g1", Some("x")),
        ]);
        let e = partition(&u, &["x".into()], &["g1".into()]).unwrap_err();
        assert!(e.contains("do not replicate"), "{e}");
    }
}
