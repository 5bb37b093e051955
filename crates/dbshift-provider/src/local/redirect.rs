//! Where a cluster's name points: the lab's redirect, bookkeeping in the state file that
//! changes no server.

use super::state;
use super::Lab;
use crate::error::{Error, Result};
use crate::model::Side;

impl Lab {
    /// switchover). `instance` is one of the cluster's own, or, when the cluster is blue in a
    /// blue/green deployment, green's writer: the deployment then records that green serves
    /// (and blue serves again when the name comes back to one of blue's). Changes no server.
    pub fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        let _lock = state::LabLock::acquire(&self.dir)?;
        let mut st = self.fresh()?;
        let rec = st.instance(instance)?.clone();
        if st.cluster(cluster).is_none() {
            return Err(Error::Unknown {
                kind: "cluster",
                name: cluster.to_string(),
                known: st.known_names(),
            });
        }
        let deployment = st
            .deployments
            .iter()
            .position(|d| d.blue == cluster || d.green == cluster);
        let serving = if rec.cluster == cluster {
            deployment.map(|i| {
                let d = &st.deployments[i];
                if d.blue == cluster {
                    Side::Blue
                } else {
                    Side::Green
                }
            })
        } else {
            match deployment.map(|i| &st.deployments[i]) {
                Some(d) if d.blue == cluster && d.green == rec.cluster => Some(Side::Green),
                Some(d) if d.green == cluster && d.blue == rec.cluster => Some(Side::Blue),
                _ => {
                    return Err(Error::BadInput(format!(
                        "{instance} is in cluster {}, not {cluster}",
                        rec.cluster
                    )))
                }
            }
        };
        let mut changed = false;
        if let Some((i, side)) = deployment.zip(serving) {
            let d = &mut st.deployments[i];
            if d.serving != side {
                tracing::info!(deployment = %d.name, serving = %side, "the serving side changes");
                d.serving = side;
                changed = true;
            }
            // A planned switchover inside one side moves that side's writer.
            let writer = match side {
                Side::Blue => &mut d.blue_writer,
                Side::Green => &mut d.green_writer,
            };
            if *writer != instance {
                *writer = instance.to_string();
                changed = true;
            }
        }
        let c = st
            .clusters
            .iter_mut()
            .find(|c| c.name == cluster)
            .expect("checked above");
        if c.writer != instance {
            tracing::info!(cluster, from = %c.writer, to = instance, "redirecting the cluster name");
            c.writer = instance.to_string();
            changed = true;
        }
        if changed {
            st.save(&self.dir)?;
        }
        Ok(())
    }
}
