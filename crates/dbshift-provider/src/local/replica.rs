//! New replicas for a lab cluster from a hot snapshot of one of its members, at the exact
//! position the snapshot holds (`dbshift replica add`).
//!
//! The snapshot is taken on a healthy replica when there is one (the writer is not loaded by
//! the backup), else on the writer; `snapshot.rs` reads the writer's position from it either
//! way. Each new instance gets a fresh server_id and port, the cluster's `gtid_domain_id`, a
//! certificate from the lab CA, and replicates from the cluster's writer by GTID from exactly
//! that position over verified TLS. This module builds; it never decides a workflow. On
//! failure what it built is stopped and removed and the state is as before.

use std::collections::BTreeSet;
use std::time::Duration;

use dbshift_db::dialect::SourceStart;

use super::process;
use super::state::{self, InstanceRecord};
use super::{snapshot, Lab, MAX_REPLICAS, STOP_GRACE};
use crate::error::{Error, Result};

/// What `add_replicas` built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddedReplicas {
    pub cluster: String,
    /// The instance the snapshot was taken on.
    pub snapshot_of: String,
    /// The writer's GTID position the new replicas started from.
    pub position: String,
    pub instances: Vec<String>,
}

impl Lab {
    /// Add `count` replicas to `cluster`, built from one hot snapshot.
    pub async fn add_replicas(&self, cluster: &str, count: u32) -> Result<AddedReplicas> {
        let st = self.fresh()?;
        let Some(c) = st.cluster(cluster).cloned() else {
            return Err(Error::Unknown {
                kind: "cluster",
                name: cluster.to_string(),
                known: st.known_names(),
            });
        };
        let members: Vec<InstanceRecord> = st.instances_of(cluster).cloned().collect();
        if count == 0 || members.len() as u32 + count > 1 + MAX_REPLICAS {
            return Err(Error::BadInput(format!(
                "--count {count}: {cluster} has {} replica(s) and can have at most {MAX_REPLICAS}",
                members.len().saturating_sub(1)
            )));
        }
        if members.iter().any(|m| m.encrypted) {
            return Err(Error::Unsupported(format!(
                "{cluster} is encrypted at rest; adding replicas to it is not supported yet"
            )));
        }
        // The same choice as blue/green's: a healthy replica, else the writer.
        let source = self.snapshot_source(&st, cluster).await?;
        let snap_dir = self
            .dir
            .join("snapshots")
            .join(format!("replica-{cluster}-{}", snapshot::random_suffix()));
        tracing::info!(cluster, source = %source, "hot snapshot for new replicas");
        let snap = self.snapshot(&source, &snap_dir).await?;
        let result = self
            .build_replicas(&c.name, &c.writer, c.gtid_domain_id, count, &snap)
            .await;
        let _ = std::fs::remove_dir_all(&snap_dir);
        let instances = result?;
        Ok(AddedReplicas {
            cluster: cluster.to_string(),
            snapshot_of: source,
            position: snap.source_position.to_string(),
            instances,
        })
    }

    async fn build_replicas(
        &self,
        cluster: &str,
        writer: &str,
        domain: u32,
        count: u32,
        snap: &snapshot::Snapshot,
    ) -> Result<Vec<String>> {
        let ports = process::free_ports(count as usize)?;
        // Names and server_ids reserved under the lock before any file is made, so that
        // `lab down` finds whatever comes next.
        let ids: Vec<String> = {
            let _lock = state::LabLock::acquire_async(&self.dir).await?;
            let mut st = self.fresh()?;
            let taken: BTreeSet<String> = st.instances.iter().map(|i| i.id.clone()).collect();
            let used_ids: BTreeSet<u32> = st.instances.iter().map(|i| i.server_id).collect();
            let mut next_id = st
                .instances_of(cluster)
                .map(|i| i.server_id)
                .max()
                .unwrap_or(0)
                + 1;
            let mut n = 1;
            let mut ids = Vec::new();
            for port in &ports {
                while taken.contains(&format!("{cluster}-{n}")) {
                    n += 1;
                }
                while used_ids.contains(&next_id) {
                    next_id += 1;
                }
                let id = format!("{cluster}-{n}");
                st.instances.push(InstanceRecord {
                    id: id.clone(),
                    cluster: cluster.to_string(),
                    port: *port,
                    server_id: next_id,
                    ca: st.current_ca.clone(),
                    engine_binary: st.instance(writer)?.engine_binary.clone(),
                    encrypted: false,
                    tags: Default::default(),
                    read_only_parameter: None,
                });
                ids.push(id);
                n += 1;
                next_id += 1;
            }
            st.save(&self.dir)?;
            ids
        };
        let mut lab = self.clone();
        lab.reload()?;
        match lab.start_replicas(&ids, writer, domain, snap).await {
            Ok(()) => Ok(ids),
            Err(e) => {
                tracing::warn!(cluster, error = %e, "adding replicas failed; removing them");
                lab.remove_instances(&ids).await;
                Err(e)
            }
        }
    }

    async fn start_replicas(
        &self,
        ids: &[String],
        writer: &str,
        domain: u32,
        snap: &snapshot::Snapshot,
    ) -> Result<()> {
        let ca = self.state.ca(&self.state.current_ca)?.clone();
        for id in ids {
            let rec = self.state.instance(id)?.clone();
            self.lay_down(id, &snap.dir, false, &ca).await?;
            // The first start must not start a replication the copy may remember.
            self.write_cnf_with(&rec, domain, "skip_slave_start=ON\n")?;
        }
        self.start_and_wait(ids).await?;
        for id in ids {
            self.attach_replica(
                id,
                writer,
                SourceStart::GtidAt(snap.source_position.clone()),
            )
            .await?;
            // From now on it is a replica like the others: replication starts with it.
            let rec = self.state.instance(id)?.clone();
            self.write_cnf_with(&rec, domain, "")?;
        }
        for id in ids {
            self.wait_replicating(id, Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// Stop instances, delete their files, drop them from the state. Off the runtime:
    /// stopping waits for the servers to exit.
    async fn remove_instances(&self, ids: &[String]) {
        let (lab, ids) = (self.clone(), ids.to_vec());
        let undone = super::blocking::run("removing failed replicas", move || {
            for id in &ids {
                let paths = lab.paths(id);
                if let Some(pid) = process::running_pid(&paths) {
                    process::stop_pid(pid, &paths.cnf(), STOP_GRACE);
                }
                let _ = std::fs::remove_dir_all(&paths.dir);
            }
            if let Ok(_lock) = state::LabLock::acquire(&lab.dir) {
                if let Ok(mut st) = lab.fresh() {
                    st.instances.retain(|i| !ids.contains(&i.id));
                    let _ = st.save(&lab.dir);
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = undone {
            tracing::warn!(error = %e, "removing replicas that failed");
        }
    }
}
