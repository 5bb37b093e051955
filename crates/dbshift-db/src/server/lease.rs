//! The commit lease on a server (see `dialect/lease.rs`): held on this connection, it stops
//! every commit until released or until the connection ends, whichever comes first.

use std::time::Duration;

use super::Server;
use crate::error::Result;

impl Server {
    /// Whether this server's flavor has a commit lease at all (MariaDB 10.4.1+ with SUPER).
    pub fn can_hold_commit_lease(&self) -> bool {
        self.dialect.can_hold_commit_lease()
    }

    /// Stop every commit on the server for as long as this connection holds the lease, taken
    /// under `lock_wait` (a long write in flight makes it fail rather than stall the clients
    /// queued behind it). On failure nothing is held. [`crate::Error::Unsupported`] where
    /// [`Self::can_hold_commit_lease`] is false.
    pub async fn hold_commit_lease(&mut self, lock_wait: Duration) -> Result<()> {
        let lease = self.dialect.commit_lease(lock_wait)?;
        tracing::info!(endpoint = %self.endpoint, ?lock_wait, "holding the commit lease");
        self.exec_all(&lease.session).await?;
        for (i, stmt) in lease.hold.iter().enumerate() {
            if let Err(e) = self.exec(stmt).await {
                if i > 0 {
                    // Part of the lease is held: leave none of it behind on this session.
                    let _ = self.exec(&lease.release).await;
                }
                return Err(e);
            }
        }
        tracing::info!(endpoint = %self.endpoint, "commit lease held: commits wait");
        Ok(())
    }

    /// End the commit lease held on this connection: commits go on.
    pub async fn release_commit_lease(&mut self) -> Result<()> {
        let lease = self.dialect.commit_lease(Duration::from_secs(1))?;
        tracing::info!(endpoint = %self.endpoint, "releasing the commit lease");
        self.exec(&lease.release).await?;
        tracing::info!(endpoint = %self.endpoint, "commit lease released");
        Ok(())
    }
}
