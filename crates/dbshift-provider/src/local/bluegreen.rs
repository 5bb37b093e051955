//! Blue/green in the lab: green built from a hot snapshot of one of blue's replicas (the
//! writer when blue has none), its writer replicating from blue's writer from the writer's
//! coordinates the backup recorded; the deployment kept in the lab state; the standby side
//! removed at the end.
//!
//! Which side serves is the deployment's `serving`; blue's cluster name resolves to the
//! serving side's writer (the switchover's redirect moves it, see [`Lab::set_writer`]). Only
//! the serving side's writer is made writable when a server starts
//! ([`super::state::LabState::serves_writes`]).

use std::time::Duration;

use dbshift_db::dialect::{alter_event, SourceStart};

use super::snapshot::RestoreOptions;
use super::state::{self, LabState};
use super::{process, Lab, STOP_GRACE};
use crate::error::{Error, Result};
use crate::model::{Deployment, GreenSpec, Role, Side};

/// How long green's writer may take to start replicating from blue after the restore.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

impl Lab {
    /// A handle on the lab with the state as the file says now.
    fn reloaded(&self) -> Result<Lab> {
        Ok(Lab {
            dir: self.dir.clone(),
            state: self.fresh()?,
            die_with_parent: self.die_with_parent,
        })
    }

    /// Check a green request against the state; changes nothing.
    fn check_green(&self, st: &LabState, spec: &GreenSpec) -> Result<()> {
        let Some(blue) = st.cluster(&spec.source) else {
            return Err(Error::Unknown {
                kind: "cluster",
                name: spec.source.clone(),
                known: st
                    .clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if let Some((d, side)) = st.deployment_of(&blue.name) {
            return Err(Error::BadInput(format!(
                "{} is already the {side} side of deployment {}; finish it first \
                 (`dbshift bluegreen cleanup {}`)",
                blue.name, d.name, d.name
            )));
        }
        if st.deployments.iter().any(|d| d.name == spec.name) {
            return Err(Error::BadInput(format!(
                "a deployment named {:?} exists already; choose another --name",
                spec.name
            )));
        }
        let writer = st.instance(&blue.writer)?;
        if process::running_pid(&self.paths(&writer.id)).is_none() {
            return Err(Error::Process {
                instance: writer.id.clone(),
                message: "blue's writer is not running; start it with `dbshift lab up`".into(),
            });
        }
        Ok(())
    }

    /// Blue's instance to back up: a running replica that replicates without error (the
    /// backup then costs the writer nothing), else the writer.
    pub(super) async fn snapshot_source(&self, st: &LabState, blue: &str) -> Result<String> {
        let writer = st
            .cluster(blue)
            .map(|c| c.writer.clone())
            .unwrap_or_default();
        for rec in st.instances_of(blue) {
            if st.role_of(rec) != Role::Reader
                || process::running_pid(&self.paths(&rec.id)).is_none()
            {
                continue;
            }
            let Ok(mut s) = self.connect_platform(&rec.id).await else {
                continue;
            };
            let healthy = s.replication_status().await.is_ok_and(|r| r.healthy());
            s.close().await;
            if healthy {
                return Ok(rec.id.clone());
            }
        }
        Ok(writer)
    }

    /// Build green (see [`crate::BlueGreen::create_green`]).
    pub async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        let st = self.fresh()?;
        self.check_green(&st, spec)?;
        let blue_writer = st
            .cluster(&spec.source)
            .map(|c| c.writer.clone())
            .expect("checked");
        let taken_on = self.snapshot_source(&st, &spec.source).await?;
        let snap_dir = self.dir.join("snapshots").join(format!(
            "{}-{}",
            spec.name,
            super::snapshot::random_suffix()
        ));
        tracing::info!(source = %spec.source, on = %taken_on, "taking the snapshot green is built from");
        let snapshot = self.snapshot(&taken_on, &snap_dir).await?;
        let restored = self
            .restore_cluster(
                &snapshot,
                &spec.name,
                spec.replicas,
                RestoreOptions {
                    encrypt: spec.encrypt,
                    engine_binary: spec.engine_binary.clone(),
                    consume_snapshot: true,
                },
            )
            .await;
        let _ = std::fs::remove_dir_all(&snap_dir);
        restored?;
        let green_writer = format!("{}-1", spec.name);
        let ids: Vec<String> = self
            .fresh()?
            .instances_of(&spec.name)
            .map(|i| i.id.clone())
            .collect();
        let lab = self.reloaded()?;
        let attached = lab
            .attach_green(&green_writer, &blue_writer, &snapshot.source_position)
            .await;
        if let Err(e) = attached {
            tracing::warn!(error = %e, "green's writer could not replicate from blue; removing green");
            lab.remove_restored(&spec.name, &ids).await;
            return Err(e);
        }
        let deployment = Deployment {
            name: spec.name.clone(),
            blue: spec.source.clone(),
            green: spec.name.clone(),
            blue_writer,
            green_writer: green_writer.clone(),
            serving: Side::Blue,
            source_position: snapshot.source_position.to_string(),
            snapshot_taken_on: taken_on,
            encrypted: spec.encrypt,
            engine_binary: spec.engine_binary.clone(),
            created_at: super::files::now_rfc3339(),
        };
        {
            let _lock = state::LabLock::acquire_async(&self.dir).await?;
            let mut st = self.fresh()?;
            st.deployments.push(deployment.clone());
            // The deployment now keeps green's writer read-only at every start (it is the
            // standby side's writer); the parameter the restore set for that is not needed.
            if let Some(rec) = st.instances.iter_mut().find(|i| i.id == green_writer) {
                rec.read_only_parameter = None;
            }
            st.save(&self.dir)?;
        }
        Ok(deployment)
    }

    /// Green's events stay disabled (a backup of blue's writer holds them enabled), not
    /// binlogged; then its writer replicates from blue's writer from exactly `position`.
    async fn attach_green(
        &self,
        green_writer: &str,
        blue_writer: &str,
        position: &dbshift_db::mariadb::GtidPos,
    ) -> Result<()> {
        for rec in self
            .state
            .instances_of(&self.state.instance(green_writer)?.cluster)
        {
            let mut s = self.connect_platform(&rec.id).await?;
            let events = s.events_with_status("ENABLED").await?;
            if !events.is_empty() {
                s.exec_sql("SET SESSION sql_log_bin=0").await?;
                for e in events {
                    s.exec_sql(&alter_event(&e, "DISABLE ON SLAVE")).await?;
                }
            }
            s.close().await;
        }
        self.attach_replica(
            green_writer,
            blue_writer,
            SourceStart::GtidAt(position.clone()),
        )
        .await?;
        self.wait_replicating(green_writer, ATTACH_TIMEOUT).await
    }

    /// Remove the side of `deployment` that does not serve (see
    /// [`crate::BlueGreen::remove_standby`]).
    pub fn remove_standby(&self, deployment: &str) -> Result<Vec<String>> {
        let _lock = state::LabLock::acquire(&self.dir)?;
        let mut st = self.fresh()?;
        let Some(d) = st
            .deployments
            .iter()
            .find(|d| d.name == deployment)
            .cloned()
        else {
            return Err(Error::Unknown {
                kind: "deployment",
                name: deployment.to_string(),
                known: known_deployments(&st),
            });
        };
        let standby = d.cluster(d.serving.other()).to_string();
        let removed: Vec<String> = st.instances_of(&standby).map(|i| i.id.clone()).collect();
        // What serves must not replicate from what is removed.
        let serving_writer = d.writer(d.serving).to_string();
        for id in &removed {
            let paths = self.paths(id);
            if let Some(pid) = process::running_pid(&paths) {
                process::stop_pid(pid, &paths.cnf(), STOP_GRACE);
            }
        }
        for id in &removed {
            let _ = std::fs::remove_dir_all(self.paths(id).dir);
        }
        let _ = std::fs::remove_file(
            self.dir
                .join("tls")
                .join(format!("{standby}-encryption.key")),
        );
        st.instances.retain(|i| !removed.contains(&i.id));
        st.deployments.retain(|d| d.name != deployment);
        match d.serving {
            Side::Blue => st.clusters.retain(|c| c.name != d.green),
            Side::Green => {
                // Green takes blue's name, as AWS renames green to blue's identifiers: clients
                // keep using the name they know.
                st.clusters.retain(|c| c.name != d.blue);
                for c in st.clusters.iter_mut().filter(|c| c.name == d.green) {
                    c.name = d.blue.clone();
                    c.writer = serving_writer.clone();
                }
                for i in st.instances.iter_mut().filter(|i| i.cluster == d.green) {
                    i.cluster = d.blue.clone();
                }
            }
        }
        st.save(&self.dir)?;
        tracing::info!(deployment, removed = ?removed, "standby side removed");
        Ok(removed)
    }
}

/// Deployment names, for "unknown deployment" messages.
pub(crate) fn known_deployments(st: &LabState) -> String {
    if st.deployments.is_empty() {
        "none (create one with `dbshift bluegreen create --source <cluster>`)".into()
    } else {
        st.deployments
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
