//! RDS mode of the lab (`lab up --rds-mode`): servers that treat dbshift as RDS for MariaDB
//! treats its master user, so the no-SUPER path of dbshift runs against real servers.
//!
//! Three things make a lab server look like RDS to dbshift:
//! - dbshift's admin user gets the privileges RDS gives its master user and nothing that
//!   bypasses `read_only` or changes replication or other users' sessions: no SUPER, no
//!   READ_ONLY ADMIN, no REPLICATION SLAVE ADMIN, no CONNECTION ADMIN, no SLAVE MONITOR;
//! - the `mysql.rds_*` procedures, written in SQL, owned by a privileged definer
//!   (`'rdsadmin'@'localhost'`, locked, with a random password nobody keeps) and run with
//!   `SQL SECURITY DEFINER`, are the only way to change replication or end another session;
//! - `read_only` is changed by the platform (the "parameter group"), never by dbshift's SQL.
//!
//! The lab itself still sets up replication and makes writers writable, as RDS's control plane
//! does: it uses its own superuser (`dbshift_platform`), whose credential stays in the state file
//! and is never handed to workflows.
//!
//! Everything here is SQL run once in the template datadir at bootstrap, where nothing is
//! binlogged, so every server starts with the procedures, the users and an empty GTID history.
//! None of the procedures writes a row, so calling them never creates a GTID either. This
//! module must never grant the admin user a privilege RDS withholds.

use dbshift_db::quote_literal;

use crate::model::Credential;

/// The definer of the procedures, as on RDS.
pub const DEFINER: &str = "rdsadmin";
/// The lab's own superuser: the control plane's credential.
pub const PLATFORM_USER: &str = "dbshift_platform";

/// Every procedure RDS mode installs in the `mysql` schema.
pub const PROCEDURES: &[&str] = &[
    "rds_set_external_master",
    "rds_set_external_master_gtid",
    "rds_reset_external_master",
    "rds_start_replication",
    "rds_stop_replication",
    "rds_kill",
    "rds_kill_query",
    "rds_skip_repl_error",
    "rds_set_configuration",
    "rds_show_configuration",
    "rds_replica_status",
];

/// What RDS for MariaDB grants its master user on `*.*` (MariaDB 10.11 names: BINLOG MONITOR is
/// what REPLICATION CLIENT became). None of these lets a session write through `read_only`,
/// `SET GLOBAL read_only`, change replication, see `SHOW SLAVE STATUS`, or end another user's
/// session.
pub const ADMIN_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, \
     PROCESS, REFERENCES, INDEX, ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, \
     EXECUTE, REPLICATION SLAVE, BINLOG MONITOR, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, \
     ALTER ROUTINE, CREATE USER, EVENT, TRIGGER";

/// The hosts the lab's clients connect from.
const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// dbshift's admin user as RDS's master user: the RDS privilege list and EXECUTE on each
/// procedure (already implied by the global EXECUTE, stated so that it survives a narrower
/// grant). Must run after [`procedures_sql`].
pub fn admin_sql(admin: &Credential) -> String {
    let mut sql = String::new();
    let user = quote_literal(&admin.user);
    for host in HOSTS {
        sql.push_str(&format!(
            "CREATE USER {user}@'{host}' IDENTIFIED BY {p};\n\
             GRANT {ADMIN_PRIVILEGES} ON *.* TO {user}@'{host}' WITH GRANT OPTION;\n",
            p = quote_literal(&admin.password),
        ));
        for proc in PROCEDURES {
            sql.push_str(&format!(
                "GRANT EXECUTE ON PROCEDURE mysql.{proc} TO {user}@'{host}';\n"
            ));
        }
    }
    sql
}

/// The lab's superuser, for what RDS's control plane does (replication at build time,
/// `read_only` as the parameter group).
pub fn platform_sql(platform: &Credential) -> String {
    let user = quote_literal(&platform.user);
    let mut sql = String::new();
    for host in HOSTS {
        sql.push_str(&format!(
            "CREATE USER {user}@'{host}' IDENTIFIED BY {p};\n\
             GRANT ALL PRIVILEGES ON *.* TO {user}@'{host}' WITH GRANT OPTION;\n",
            p = quote_literal(&platform.password),
        ));
    }
    sql
}

/// The definer and the procedures. `definer_password` is random and thrown away: the account
/// is also locked, so nobody logs in as it; a locked definer still runs its routines.
/// Sessions of `protected_users` (the definer, the platform) cannot be ended by `rds_kill`,
/// as RDS refuses to end `rdsadmin`'s.
///
/// The bootstrap of `mariadb-install-db` understands `DELIMITER`, which the bodies need.
pub fn procedures_sql(definer_password: &str, protected_users: &[&str]) -> String {
    let definer = format!("'{DEFINER}'@'localhost'");
    let protected = protected_users
        .iter()
        .map(|u| quote_literal(u))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "CREATE USER {definer} IDENTIFIED BY {p} ACCOUNT LOCK;\n\
         GRANT ALL PRIVILEGES ON *.* TO {definer} WITH GRANT OPTION;\n\
         DELIMITER $$\n",
        p = quote_literal(definer_password),
    );
    let head = |name: &str, params: &str| {
        format!(
            "CREATE DEFINER={definer} PROCEDURE mysql.{name}({params})\n\
             SQL SECURITY DEFINER\n\
             COMMENT 'dbshift lab RDS mode'\n"
        )
    };
    // CHANGE MASTER takes literals only, hence a prepared statement built with QUOTE().
    // Like RDS, the procedures never check the source's certificate
    // (MASTER_SSL_VERIFY_SERVER_CERT=0) and take no CA: that is rds_import_binlog_ssl_material's
    // job on RDS, which the lab does not have. The user variable is cleared afterwards because
    // it lives in the caller's session.
    let change_master = |extra: &str| {
        format!(
            "  SET @rds_change_master = CONCAT('CHANGE MASTER TO MASTER_HOST=', QUOTE(host), \
             ', MASTER_PORT=', port, ', MASTER_USER=', QUOTE(user_name), \
             ', MASTER_PASSWORD=', QUOTE(user_password), \
             ', MASTER_SSL=', IF(ssl_encryption = 0, 0, 1), \
             ', MASTER_SSL_VERIFY_SERVER_CERT=0, '{extra});\n\
             \x20 PREPARE rds_change_master FROM @rds_change_master;\n\
             \x20 SET @rds_change_master = NULL;\n\
             \x20 EXECUTE rds_change_master;\n\
             \x20 DEALLOCATE PREPARE rds_change_master;\n"
        )
    };
    let source_params = "IN host VARCHAR(255), IN port INT, IN user_name VARCHAR(128), \
                         IN user_password VARCHAR(255)";

    sql.push_str(&head(
        "rds_set_external_master",
        &format!(
            "{source_params}, IN mysql_binary_log_file_name VARCHAR(255), \
             IN mysql_binary_log_file_location BIGINT UNSIGNED, IN ssl_encryption INT"
        ),
    ));
    sql.push_str("BEGIN\n");
    sql.push_str(&change_master(
        " 'MASTER_USE_GTID=no, MASTER_LOG_FILE=', QUOTE(mysql_binary_log_file_name), \
         ', MASTER_LOG_POS=', mysql_binary_log_file_location",
    ));
    sql.push_str("END$$\n");

    sql.push_str(&head(
        "rds_set_external_master_gtid",
        &format!("{source_params}, IN gtid VARCHAR(4096), IN ssl_encryption INT"),
    ));
    // gtid_slave_pos is where MASTER_USE_GTID=slave_pos starts; both need replication stopped.
    sql.push_str("BEGIN\n  SET GLOBAL gtid_slave_pos = gtid;\n");
    sql.push_str(&change_master(" 'MASTER_USE_GTID=slave_pos'"));
    sql.push_str("END$$\n");

    sql.push_str(&head("rds_reset_external_master", ""));
    sql.push_str("BEGIN\n  STOP SLAVE;\n  RESET SLAVE ALL;\nEND$$\n");

    sql.push_str(&head("rds_start_replication", ""));
    sql.push_str("BEGIN\n  START SLAVE;\nEND$$\n");

    sql.push_str(&head("rds_stop_replication", ""));
    sql.push_str("BEGIN\n  STOP SLAVE;\nEND$$\n");

    for (name, what) in [("rds_kill", "CONNECTION"), ("rds_kill_query", "QUERY")] {
        sql.push_str(&head(name, "IN thread BIGINT UNSIGNED"));
        sql.push_str(&format!(
            "BEGIN\n\
             \x20 DECLARE owner VARCHAR(128) DEFAULT NULL;\n\
             \x20 SELECT USER INTO owner FROM information_schema.PROCESSLIST WHERE ID = thread \
             LIMIT 1;\n\
             \x20 IF owner IN ({protected}) THEN\n\
             \x20   SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = \
             'the platform''s own sessions cannot be ended';\n\
             \x20 END IF;\n\
             \x20 KILL {what} thread;\n\
             END$$\n"
        ));
    }

    // Only an applier that stopped can have an error to skip; without a `Slave_SQL` thread in
    // the process list the SQL thread is stopped. (RDS reads Last_SQL_Errno; SHOW SLAVE STATUS
    // cannot be read into variables in MariaDB, so a SQL thread stopped by hand counts too.)
    sql.push_str(&head("rds_skip_repl_error", ""));
    sql.push_str(
        "BEGIN\n\
         \x20 IF EXISTS (SELECT 1 FROM information_schema.PROCESSLIST \
         WHERE COMMAND = 'Slave_SQL') THEN\n\
         \x20   SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = \
         'the replication SQL thread is running: there is no error to skip';\n\
         \x20 END IF;\n\
         \x20 SET GLOBAL sql_slave_skip_counter = 1;\n\
         \x20 START SLAVE;\n\
         END$$\n",
    );

    // RDS keeps the setting in a table; the lab keeps it in the server variable only (until
    // the next restart), because a row written here would be binlogged as a GTID.
    sql.push_str(&head(
        "rds_set_configuration",
        "IN name VARCHAR(64), IN value INT",
    ));
    sql.push_str(
        "BEGIN\n\
         \x20 IF name = 'binlog retention hours' THEN\n\
         \x20   SET GLOBAL binlog_expire_logs_seconds = IFNULL(value, 0) * 3600;\n\
         \x20 ELSE\n\
         \x20   SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = \
         'unsupported configuration name: the lab knows binlog retention hours only';\n\
         \x20 END IF;\n\
         END$$\n",
    );

    sql.push_str(&head("rds_show_configuration", ""));
    sql.push_str(
        "BEGIN\n\
         \x20 SELECT 'binlog retention hours' AS name, \
         IF(@@GLOBAL.binlog_expire_logs_seconds = 0, NULL, \
         @@GLOBAL.binlog_expire_logs_seconds DIV 3600) AS value, \
         'binlog retention hours specifies the duration in hours before binary logs are \
         automatically deleted.' AS description;\n\
         END$$\n",
    );

    // The master user lacks SLAVE MONITOR (REPLICA MONITOR), so SHOW SLAVE STATUS goes
    // through the definer.
    sql.push_str(&head("rds_replica_status", ""));
    sql.push_str("BEGIN\n  SHOW SLAVE STATUS;\nEND$$\n");

    sql.push_str("DELIMITER ;\n");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(user: &str) -> Credential {
        Credential {
            user: user.into(),
            password: "pw-Secret".into(),
        }
    }

    #[test]
    fn the_admin_gets_nothing_that_bypasses_read_only() {
        let sql = admin_sql(&cred("dbshift_admin"));
        for withheld in [
            "SUPER",
            "READ_ONLY ADMIN",
            "ALL PRIVILEGES",
            "REPLICATION SLAVE ADMIN",
            "CONNECTION ADMIN",
            "SLAVE MONITOR",
            "REPLICA MONITOR",
            "BINLOG ADMIN",
            "SET USER",
        ] {
            assert!(!sql.contains(withheld), "{withheld} in {sql}");
        }
        for host in HOSTS {
            assert!(sql.contains(&format!("'dbshift_admin'@'{host}'")), "{sql}");
        }
        for proc in PROCEDURES {
            assert!(
                sql.contains(&format!("EXECUTE ON PROCEDURE mysql.{proc} TO")),
                "{proc}"
            );
        }
    }

    #[test]
    fn every_procedure_is_created_by_the_definer() {
        let sql = procedures_sql("def-pw", &[DEFINER, PLATFORM_USER]);
        for proc in PROCEDURES {
            assert!(
                sql.contains(&format!(
                    "CREATE DEFINER='rdsadmin'@'localhost' PROCEDURE mysql.{proc}("
                )),
                "{proc}"
            );
        }
        assert_eq!(
            sql.matches("SQL SECURITY DEFINER").count(),
            PROCEDURES.len()
        );
        assert!(sql.contains("ACCOUNT LOCK"));
        assert!(sql.contains("IN ('rdsadmin', 'dbshift_platform')"), "{sql}");
        assert!(sql.trim_end().ends_with("DELIMITER ;"));
    }

    #[test]
    fn the_platform_is_a_superuser() {
        let sql = platform_sql(&cred(PLATFORM_USER));
        assert_eq!(sql.matches("GRANT ALL PRIVILEGES ON *.*").count(), 2);
    }
}
