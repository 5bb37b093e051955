//! Ending client sessions: those that could write through a fence, and, on a demoted writer,
//! every leftover one so that pools reconnect and follow the cluster's name.

use super::Server;
use crate::dialect::Statement;
use crate::error::Result;

impl Server {
    /// `(id, user)` of each row of `query` (a sessions query of the dialect).
    async fn sessions(&mut self, query: &Statement) -> Result<Vec<(u64, String)>> {
        let rows = self.query_rows(&query.sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row
                    .first()
                    .and_then(|c| c.1.as_deref())
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|&id| id != 0)?;
                let user = row.get(1).and_then(|c| c.1.clone()).unwrap_or_default();
                Some((id, user))
            })
            .collect())
    }

    /// End client sessions of users holding SUPER or READ_ONLY ADMIN (they can write through
    /// `read_only`), except this connection and replication threads. Gives `(id, user)` of
    /// each ended; one that ended by itself meanwhile is not counted, any other failure stops.
    pub async fn end_privileged_sessions(&mut self) -> Result<Vec<(u64, String)>> {
        let query = self.dialect.privileged_sessions();
        let sessions = self.sessions(&query).await?;
        tracing::info!(endpoint = %self.endpoint, sessions = sessions.len(), "ending privileged sessions");
        let mut killed = Vec::new();
        for (id, user) in sessions {
            let stmt = self.dialect.kill_connection(id);
            match self.exec(&stmt).await {
                Ok(()) => killed.push((id, user)),
                // 1094: unknown thread id: it ended by itself meanwhile.
                Err(e) if e.server_code() == Some(1094) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(endpoint = %self.endpoint, ended = killed.len(), "privileged sessions ended");
        Ok(killed)
    }

    /// End every client session but this one and the replication and server threads (`KILL`,
    /// or `mysql.rds_kill` without SUPER). Best effort per session: gives how many ended.
    pub async fn end_client_sessions(&mut self) -> Result<usize> {
        let query = self.dialect.client_sessions();
        let sessions = self.sessions(&query).await?;
        tracing::info!(endpoint = %self.endpoint, sessions = sessions.len(), "ending client sessions");
        let mut ended = 0;
        for (id, _) in sessions {
            let kill = self.dialect.kill_connection(id);
            if self.exec(&kill).await.is_ok() {
                ended += 1;
            }
        }
        tracing::info!(endpoint = %self.endpoint, ended, "client sessions ended");
        Ok(ended)
    }
}
