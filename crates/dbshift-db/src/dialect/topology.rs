//! Reads that find a server's neighbours for topology discovery: the replicas registered
//! with it. The source is in the replica status already (`Source_Host`/`Master_Host`).
//!
//! A replica is listed only when it registers with its source: MySQL lists one only with
//! `report_host` set; MariaDB lists every connected replica but leaves the host empty
//! without `report_host`. Nothing here changes a server.

use super::{Dialect, Statement};

impl Dialect {
    /// The replicas registered with this server: `SHOW REPLICAS` on MySQL 8.0.22+
    /// (<https://dev.mysql.com/doc/refman/8.0/en/show-replicas.html>), `SHOW SLAVE HOSTS`
    /// before it and on MariaDB (<https://mariadb.com/kb/en/show-replica-hosts/>). Columns
    /// `Server_id`, `Host`, `Port` on both.
    pub fn show_replica_hosts(&self) -> Statement {
        if self.flavor.uses_replica_keywords() {
            Statement::plain("SHOW REPLICAS")
        } else {
            Statement::plain("SHOW SLAVE HOSTS")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn replica_hosts_by_flavor() {
        assert_eq!(maria_10_11().show_replica_hosts().sql, "SHOW SLAVE HOSTS");
        assert_eq!(maria_10_3().show_replica_hosts().sql, "SHOW SLAVE HOSTS");
        assert_eq!(mysql_5_7().show_replica_hosts().sql, "SHOW SLAVE HOSTS");
        assert_eq!(mysql_8_0_21().show_replica_hosts().sql, "SHOW SLAVE HOSTS");
        assert_eq!(mysql_8_4().show_replica_hosts().sql, "SHOW REPLICAS");
    }
}
