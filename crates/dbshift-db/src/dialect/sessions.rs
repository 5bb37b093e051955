//! Client sessions: which ones to end when a writer is fenced or demoted. Replication threads,
//! the server's own threads and dbshift's own connection are never among them.
//!
//! `information_schema.PROCESSLIST` and `USER_PRIVILEGES` read the same on every flavor; the
//! thread commands listed cover MariaDB's (`Slave_IO`, `Slave_SQL`, `Slave_worker`) and the
//! binlog dump threads of both. Ending a session is [`Dialect::kill_connection`].

use super::{Dialect, Statement};

/// The `WHERE` condition that leaves out replication threads, the server's own threads and
/// this connection (`p` is the `PROCESSLIST` alias).
const CLIENTS_ONLY: &str = "p.ID <> CONNECTION_ID() \
     AND p.COMMAND NOT IN ('Binlog Dump','Binlog Dump GTID','Daemon','Slave_IO','Slave_SQL','Slave_worker') \
     AND p.USER NOT IN ('system user','event_scheduler','')";

impl Dialect {
    /// `ID, USER` of every client session but this one: what a demoted writer ends so that
    /// pools reconnect and follow the name.
    pub fn client_sessions(&self) -> Statement {
        Statement::plain(format!(
            "SELECT p.ID, p.USER FROM information_schema.PROCESSLIST p WHERE {CLIENTS_ONLY}"
        ))
    }

    /// `ID, USER` of the client sessions whose user holds SUPER or READ_ONLY ADMIN: they can
    /// write through `read_only`, so a fence ends them.
    pub fn privileged_sessions(&self) -> Statement {
        Statement::plain(format!(
            "SELECT p.ID, p.USER FROM information_schema.PROCESSLIST p WHERE {CLIENTS_ONLY} \
             AND EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES u \
               WHERE u.PRIVILEGE_TYPE IN ('SUPER','READ_ONLY ADMIN') \
               AND u.GRANTEE LIKE CONCAT('''', REPLACE(REPLACE(p.USER,'_','\\_'),'%','\\%'), '''@%'))"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn client_sessions_leave_out_replication_and_this_connection() {
        for d in mariadbs()
            .into_iter()
            .chain(mysqls())
            .chain(without_super())
        {
            let s = d.client_sessions().sql;
            assert!(
                s.starts_with("SELECT p.ID, p.USER FROM information_schema.PROCESSLIST p WHERE "),
                "{s}"
            );
            assert!(s.contains("p.ID <> CONNECTION_ID()"), "{s}");
            assert!(s.contains("'Binlog Dump GTID'"), "{s}");
            assert!(s.contains("'Slave_SQL'"), "{s}");
            assert!(s.contains("'event_scheduler'"), "{s}");
            assert!(!s.contains("USER_PRIVILEGES"), "{s}");
        }
    }

    #[test]
    fn privileged_sessions_are_clients_that_write_through_read_only() {
        let d = maria_10_11();
        let s = d.privileged_sessions().sql;
        assert!(s.starts_with(&d.client_sessions().sql), "{s}");
        assert!(
            s.contains("PRIVILEGE_TYPE IN ('SUPER','READ_ONLY ADMIN')"),
            "{s}"
        );
        // A user name's LIKE wildcards are escaped, so `a_b` does not match `axb`'s grants.
        assert!(
            s.contains("REPLACE(REPLACE(p.USER,'_','\\_'),'%','\\%')"),
            "{s}"
        );
    }
}
