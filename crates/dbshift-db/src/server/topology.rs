//! Topology reads (see `dialect/topology.rs`): the replicas a server knows of, for discovery
//! by a provider that did not build the fleet. Nothing here changes a server.

use super::Server;
use crate::error::Result;

/// A replica registered with a server, as it reported itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaHost {
    pub server_id: u32,
    /// `report_host`; `None` when the replica reports none (it cannot be reached from here).
    pub host: Option<String>,
    pub port: u16,
}

impl Server {
    /// The replicas registered with this server (`SHOW REPLICAS` / `SHOW SLAVE HOSTS`).
    pub async fn replica_hosts(&mut self) -> Result<Vec<ReplicaHost>> {
        let stmt = self.dialect.show_replica_hosts();
        let rows = self.query_rows(&stmt.sql).await?;
        Ok(rows
            .iter()
            .filter_map(|row| parse_replica_host(row))
            .collect())
    }
}

/// One row of `SHOW REPLICAS` / `SHOW SLAVE HOSTS`; column names differ in case by flavor.
fn parse_replica_host(row: &[(String, Option<String>)]) -> Option<ReplicaHost> {
    let col = |name: &str| {
        row.iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    };
    let server_id = col("Server_id")?.parse().ok()?;
    let port = col("Port")?.parse().ok()?;
    let host = col("Host").filter(|h| !h.is_empty()).map(str::to_string);
    Some(ReplicaHost {
        server_id,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        cols.iter()
            .map(|(c, v)| (c.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn rows_of_both_flavors_parse() {
        // MariaDB 10.11 `SHOW SLAVE HOSTS`.
        let maria = row(&[
            ("Server_id", "12"),
            ("Host", "10.0.0.2"),
            ("Port", "3306"),
            ("Master_id", "11"),
        ]);
        assert_eq!(
            parse_replica_host(&maria),
            Some(ReplicaHost {
                server_id: 12,
                host: Some("10.0.0.2".into()),
                port: 3306
            })
        );
        // MySQL 8.4 `SHOW REPLICAS` (refman 8.4, SHOW REPLICAS statement).
        let mysql = row(&[
            ("Server_Id", "3"),
            ("Host", ""),
            ("Port", "3306"),
            ("Source_Id", "1"),
            ("Replica_UUID", "6ba8d9f2-1ad6-11ef-9c2c-0242ac120002"),
        ]);
        let r = parse_replica_host(&mysql).unwrap();
        assert_eq!((r.server_id, r.host, r.port), (3, None, 3306));
        assert_eq!(parse_replica_host(&row(&[("Host", "x")])), None);
    }
}
