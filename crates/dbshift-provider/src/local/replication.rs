//! Replication inside the lab: pointing a replica at its source over TLS with the source's
//! certificate verified, as a platform builds it, and waiting until it runs.

use std::time::{Duration, Instant};

use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};

use super::Lab;
use crate::error::{Error, Result};

impl Lab {
    /// Make `replica` replicate from `source` by GTID (from `start`), over TLS with the
    /// certificate verified.
    pub(crate) async fn attach_replica(
        &self,
        replica: &str,
        source: &str,
        start: SourceStart,
    ) -> Result<()> {
        let src = self.state.instance(source)?;
        let spec = SourceSpec {
            host: "127.0.0.1".into(),
            port: src.port,
            user: self.state.users.replication.user.clone(),
            password: self.state.users.replication.password.clone(),
            start,
            ssl: Some(SslSpec {
                ca_path: Some(self.ca_bundle().display().to_string()),
                verify_server_cert: true,
            }),
            connect_retry_s: Some(1),
            heartbeat_period_ms: Some(dbshift_db::dialect::HEARTBEAT_PERIOD_MS),
        };
        // The platform builds replication, as RDS's control plane does: in RDS mode the admin
        // user could only use the procedures, which cannot verify the source's certificate.
        let mut server = self.connect_platform(replica).await?;
        server.point_replica_at(&spec).await?;
        server.close().await;
        Ok(())
    }

    /// Wait until an instance's IO and SQL threads both run, or report the replication error.
    pub async fn wait_replicating(&self, id: &str, timeout: Duration) -> Result<()> {
        let mut server = self.connect_platform(id).await?;
        let started = Instant::now();
        loop {
            let st = server.replication_status().await?;
            if st.healthy() {
                server.close().await;
                return Ok(());
            }
            if started.elapsed() > timeout {
                server.close().await;
                let why = st
                    .last_io_error
                    .or(st.last_sql_error)
                    .map(|(code, msg)| format!("error {code}: {msg}"))
                    .unwrap_or_else(|| {
                        format!(
                            "IO thread {:?}, SQL thread running: {}",
                            st.io_running, st.sql_running
                        )
                    });
                return Err(Error::Process {
                    instance: id.to_string(),
                    message: format!("replication did not start within {timeout:?}: {why}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
