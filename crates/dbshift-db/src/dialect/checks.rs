//! Read-only checks: what the switchover guards and the failover's look at a replica ask a
//! server. None of these changes anything.
//!
//! `information_schema` reads the same on every flavor. The replica heartbeat counters are
//! MariaDB's status variables; MySQL keeps them in
//! `performance_schema.replication_connection_status` (issue 18).

use super::{Dialect, Statement};
use crate::error::Result;

impl Dialect {
    /// One row, one column: whether the server answers at all.
    pub fn ping(&self) -> Statement {
        Statement::plain("SELECT 1")
    }

    /// `schema.name` of the tables and triggers an online schema change leaves while it runs
    /// (gh-ost's `_x_gho`/`_x_ghc`, pt-online-schema-change's `_x_new` and `pt_osc_*`
    /// triggers).
    pub fn online_schema_change_leftovers(&self) -> Statement {
        Statement::plain(
            "SELECT CONCAT(TABLE_SCHEMA,'.',TABLE_NAME) FROM information_schema.TABLES \
             WHERE TABLE_NAME LIKE '\\_%\\_gho' OR TABLE_NAME LIKE '\\_%\\_ghc' \
             OR TABLE_NAME LIKE '\\_%\\_new' \
             UNION SELECT CONCAT(TRIGGER_SCHEMA,'.',TRIGGER_NAME) FROM information_schema.TRIGGERS \
             WHERE TRIGGER_NAME LIKE 'pt\\_osc\\_%'",
        )
    }

    /// One text per routine (SQL SECURITY DEFINER) and enabled event whose definer holds
    /// SUPER or READ_ONLY ADMIN, and so could write through `read_only`:
    /// `routine db.name (definer)`, `event db.name (definer)`.
    pub fn privileged_definers(&self) -> Statement {
        Statement::plain(
            "SELECT CONCAT('routine ', r.ROUTINE_SCHEMA, '.', r.ROUTINE_NAME, ' (', r.DEFINER, ')') \
             FROM information_schema.ROUTINES r \
             WHERE r.SECURITY_TYPE='DEFINER' AND r.ROUTINE_SCHEMA NOT IN ('sys','mysql') \
             AND EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES u \
               WHERE u.PRIVILEGE_TYPE IN ('SUPER','READ_ONLY ADMIN') AND u.GRANTEE = CONCAT('''', \
               SUBSTRING_INDEX(r.DEFINER,'@',1), '''@''', SUBSTRING_INDEX(r.DEFINER,'@',-1), '''')) \
             UNION ALL \
             SELECT CONCAT('event ', e.EVENT_SCHEMA, '.', e.EVENT_NAME, ' (', e.DEFINER, ')') \
             FROM information_schema.EVENTS e WHERE e.STATUS='ENABLED' \
             AND EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES u \
               WHERE u.PRIVILEGE_TYPE IN ('SUPER','READ_ONLY ADMIN') AND u.GRANTEE = CONCAT('''', \
               SUBSTRING_INDEX(e.DEFINER,'@',1), '''@''', SUBSTRING_INDEX(e.DEFINER,'@',-1), ''''))",
        )
    }

    /// `schema.name` of at most `limit` user base tables without a primary key (they
    /// replicate slowly in ROW format).
    pub fn tables_without_primary_key(&self, limit: u32) -> Statement {
        Statement::plain(format!(
            "SELECT CONCAT(t.TABLE_SCHEMA,'.',t.TABLE_NAME) FROM information_schema.TABLES t \
             WHERE t.TABLE_TYPE='BASE TABLE' \
             AND t.TABLE_SCHEMA NOT IN ('mysql','sys','information_schema','performance_schema') \
             AND NOT EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS k \
               WHERE k.TABLE_SCHEMA=t.TABLE_SCHEMA AND k.TABLE_NAME=t.TABLE_NAME \
               AND k.CONSTRAINT_TYPE='PRIMARY KEY') LIMIT {limit}"
        ))
    }

    /// One row per prepared XA transaction.
    pub fn prepared_xa_transactions(&self) -> Statement {
        Statement::plain("XA RECOVER")
    }

    /// `sync_binlog` (one column, a number).
    pub fn read_sync_binlog(&self) -> Statement {
        Statement::plain("SELECT @@GLOBAL.sync_binlog")
    }

    /// A replica's heartbeat counters (`Variable_name`, `Value` rows of
    /// `Slave_received_heartbeats` and `Slave_heartbeat_period`, in seconds).
    pub fn replica_heartbeats(&self) -> Result<Statement> {
        if !self.flavor.is_mariadb() {
            return Err(self.unsupported(
                "reading heartbeat counters (MySQL keeps them in \
                 performance_schema.replication_connection_status)",
            ));
        }
        Ok(Statement::plain(
            "SHOW GLOBAL STATUS WHERE Variable_name IN \
             ('Slave_received_heartbeats', 'Slave_heartbeat_period')",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn guard_reads_are_the_same_on_every_flavor() {
        let want = maria_10_11();
        for d in mysqls().into_iter().chain(without_super()) {
            assert_eq!(d.ping(), want.ping());
            assert_eq!(
                d.online_schema_change_leftovers(),
                want.online_schema_change_leftovers()
            );
            assert_eq!(d.privileged_definers(), want.privileged_definers());
            assert_eq!(
                d.tables_without_primary_key(20),
                want.tables_without_primary_key(20)
            );
            assert_eq!(d.prepared_xa_transactions().sql, "XA RECOVER");
            assert_eq!(d.read_sync_binlog().sql, "SELECT @@GLOBAL.sync_binlog");
        }
        assert_eq!(want.ping().sql, "SELECT 1");
    }

    #[test]
    fn guard_reads_name_what_they_look_for() {
        let d = maria_10_11();
        let osc = d.online_schema_change_leftovers().sql;
        for part in [
            "'\\_%\\_gho'",
            "'\\_%\\_ghc'",
            "'\\_%\\_new'",
            "'pt\\_osc\\_%'",
        ] {
            assert!(osc.contains(part), "{osc}");
        }
        let definers = d.privileged_definers().sql;
        assert!(definers.contains("r.SECURITY_TYPE='DEFINER'"), "{definers}");
        assert!(definers.contains("e.STATUS='ENABLED'"), "{definers}");
        assert!(
            definers.contains("('SUPER','READ_ONLY ADMIN')"),
            "{definers}"
        );
        let no_pk = d.tables_without_primary_key(20).sql;
        assert!(
            no_pk.ends_with("AND k.CONSTRAINT_TYPE='PRIMARY KEY') LIMIT 20"),
            "{no_pk}"
        );
        assert!(d.tables_without_primary_key(5).sql.ends_with("LIMIT 5"));
    }

    #[test]
    fn heartbeats_are_mariadb_status_variables() {
        for d in mariadbs().into_iter().chain([rds_mariadb()]) {
            assert_eq!(
                d.replica_heartbeats().unwrap().sql,
                "SHOW GLOBAL STATUS WHERE Variable_name IN \
                 ('Slave_received_heartbeats', 'Slave_heartbeat_period')"
            );
        }
        for d in mysqls() {
            unsupported(d.replica_heartbeats());
        }
    }
}
