//! Pre-checks of a major-version upgrade (`dbshift upgrade-check`), in the manner of MySQL
//! Shell's upgrade checker (`util.checkForServerUpgrade`): what in the server's catalogue or
//! settings the target version refuses or changes, each finding with its objects and the fix.
//! Every check is a query of the server's own catalogue (`information_schema`,
//! `mysql.user`, the system variables' origin); nothing is changed.
//!
//! The lists below are transcribed from the vendors' documentation:
//! - MySQL 8.0 "Keywords and Reserved Words", the words marked new and reserved in 8.0 and in
//!   8.4 (https://dev.mysql.com/doc/refman/8.0/en/keywords.html,
//!   https://dev.mysql.com/doc/refman/8.4/en/keywords.html);
//! - "Features Removed in MySQL 8.0" and "... in MySQL 8.4" (system variables, functions, SQL
//!   modes; https://dev.mysql.com/doc/refman/8.0/en/mysql-nutshell.html,
//!   https://dev.mysql.com/doc/refman/8.4/en/mysql-nutshell.html);
//! - MySQL 8.4: `mysql_native_password` is disabled by default
//!   (https://dev.mysql.com/doc/refman/8.4/en/native-pluggable-authentication.html);
//! - MariaDB 11.0 removed the InnoDB change buffer (`innodb_change_buffering`), 11.1 InnoDB
//!   defragmentation (`innodb_defragment*`) (https://mariadb.com/kb/en/changes-improvements-in-mariadb-11-0/,
//!   https://mariadb.com/kb/en/changes-improvements-in-mariadb-11-1/).

use serde::Serialize;

use crate::flavor::Engine;
use crate::{Flavor, Result, Server};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Worth knowing; nothing breaks.
    Notice,
    /// Works, but behaves differently or is deprecated on the target.
    Warning,
    /// The upgrade fails, or the application breaks, until it is fixed.
    Error,
}

/// One finding: the check, its level, the objects, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub objects: Vec<String>,
    pub fix: String,
}

/// A target version: the engine and `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub engine: Engine,
    pub version: (u32, u32),
}

impl Target {
    /// `8.0`, `8.4.3`, `11.4`, `mysql-8.4`, `mariadb-11.4`; the engine is the server's when
    /// not named. Refused: a downgrade, the same major and minor, another engine.
    pub fn parse(text: &str, from: &Flavor) -> std::result::Result<Target, String> {
        let t = text.trim().to_ascii_lowercase();
        let (engine, rest) = if let Some(r) = t.strip_prefix("mysql-") {
            (Engine::MySql, r)
        } else if let Some(r) = t.strip_prefix("mariadb-") {
            (Engine::MariaDb, r)
        } else {
            (from.engine, t.as_str())
        };
        let mut parts = rest.split('.').map(|p| p.parse::<u32>());
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return Err(format!(
                "--to {text:?}: give a version as MAJOR.MINOR (8.0, 8.4, 11.4), optionally \
                 prefixed with mysql- or mariadb-"
            ));
        };
        if engine != from.engine {
            return Err(format!(
                "--to {text:?}: the server runs {}; an upgrade stays within one engine",
                engine_name(from.engine)
            ));
        }
        let (fm, fi, _) = from.version;
        if (major, minor) <= (fm, fi) {
            return Err(format!(
                "--to {text:?}: the server runs {fm}.{fi}; {major}.{minor} is not newer (a \
                 downgrade is not an upgrade)"
            ));
        }
        let known = match engine {
            Engine::MySql => [(5, 7), (8, 0), (8, 4), (9, 0)].contains(&(major, minor)),
            Engine::MariaDb => {
                (major == 10 && (2..=11).contains(&minor)) || (major == 11 && minor <= 8)
            }
        };
        if !known {
            return Err(format!(
                "--to {text:?}: no {} release series {major}.{minor} (MySQL: 8.0, 8.4, 9.0; \
                 MariaDB: 10.2 to 10.11, 11.0 to 11.8)",
                engine_name(engine)
            ));
        }
        Ok(Target {
            engine,
            version: (major, minor),
        })
    }

    fn crosses(&self, from: &Flavor, major: u32, minor: u32) -> bool {
        let (fm, fi, _) = from.version;
        (fm, fi) < (major, minor) && self.version >= (major, minor)
    }
}

fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::MySql => "MySQL",
        Engine::MariaDb => "MariaDB",
    }
}

/// Words reserved from MySQL 8.0 on that 5.7 did not reserve.
pub const MYSQL_80_RESERVED: &[&str] = &[
    "CUME_DIST",
    "DENSE_RANK",
    "EMPTY",
    "EXCEPT",
    "FIRST_VALUE",
    "FUNCTION",
    "GROUPING",
    "GROUPS",
    "JSON_TABLE",
    "LAG",
    "LAST_VALUE",
    "LATERAL",
    "LEAD",
    "NTH_VALUE",
    "NTILE",
    "OF",
    "OVER",
    "PERCENT_RANK",
    "RANK",
    "RECURSIVE",
    "ROW",
    "ROWS",
    "ROW_NUMBER",
    "SYSTEM",
    "WINDOW",
];

/// Words reserved from MySQL 8.4 on that 8.0 did not reserve.
pub const MYSQL_84_RESERVED: &[&str] = &["MANUAL", "PARALLEL", "QUALIFY", "TABLESAMPLE"];

/// System variables MySQL 8.0 removed.
pub const MYSQL_80_REMOVED_VARIABLES: &[&str] = &[
    "date_format",
    "datetime_format",
    "time_format",
    "ignore_builtin_innodb",
    "innodb_file_format",
    "innodb_file_format_check",
    "innodb_file_format_max",
    "innodb_large_prefix",
    "innodb_locks_unsafe_for_binlog",
    "innodb_support_xa",
    "log_warnings",
    "max_tmp_tables",
    "multi_range_count",
    "old_passwords",
    "query_cache_limit",
    "query_cache_min_res_unit",
    "query_cache_size",
    "query_cache_type",
    "query_cache_wlock_invalidate",
    "secure_auth",
    "sync_frm",
    "tx_isolation",
    "tx_read_only",
];

/// System variables MySQL 8.4 removed.
pub const MYSQL_84_REMOVED_VARIABLES: &[&str] = &[
    "avoid_temporal_upgrade",
    "binlog_transaction_dependency_tracking",
    "default_authentication_plugin",
    "expire_logs_days",
    "log_bin_use_v1_row_events",
    "master_info_repository",
    "relay_log_info_repository",
    "show_old_temporals",
    "transaction_write_set_extraction",
];

/// System variables MariaDB 11 removed (11.0: the change buffer; 11.1: defragmentation).
pub const MARIADB_11_REMOVED_VARIABLES: &[(&str, (u32, u32))] = &[
    ("innodb_change_buffering", (11, 0)),
    ("innodb_change_buffer_max_size", (11, 0)),
    ("innodb_defragment", (11, 1)),
    ("innodb_defragment_fill_factor", (11, 1)),
    ("innodb_defragment_fill_factor_n_recs", (11, 1)),
    ("innodb_defragment_frequency", (11, 1)),
    ("innodb_defragment_n_pages", (11, 1)),
    ("innodb_defragment_stats_accuracy", (11, 1)),
];

/// Functions MySQL 8.0 removed.
pub const MYSQL_80_REMOVED_FUNCTIONS: &[&str] = &[
    "PASSWORD",
    "ENCODE",
    "DECODE",
    "ENCRYPT",
    "DES_ENCRYPT",
    "DES_DECRYPT",
    "GLENGTH",
    "ASTEXT",
    "GEOMFROMTEXT",
    "GEOMFROMWKB",
];

/// SQL modes MySQL 8.0 removed.
pub const MYSQL_80_REMOVED_SQL_MODES: &[&str] = &[
    "NO_AUTO_CREATE_USER",
    "DB2",
    "MAXDB",
    "MSSQL",
    "MYSQL323",
    "MYSQL40",
    "ORACLE",
    "POSTGRESQL",
    "NO_FIELD_OPTIONS",
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
];

/// The schemas of the server itself, never the user's.
const SYSTEM_SCHEMAS: &str = "'mysql','sys','information_schema','performance_schema'";

/// `'A','B'` of `words`, for an `IN (...)`.
fn in_list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The words newly reserved between the server and the target.
pub fn new_reserved_words(from: &Flavor, to: &Target) -> Vec<&'static str> {
    let mut out = Vec::new();
    if to.engine == Engine::MySql {
        if to.crosses(from, 8, 0) {
            out.extend_from_slice(MYSQL_80_RESERVED);
        }
        if to.crosses(from, 8, 4) {
            out.extend_from_slice(MYSQL_84_RESERVED);
        }
    }
    out
}

/// The system variables removed between the server and the target.
pub fn removed_variables(from: &Flavor, to: &Target) -> Vec<&'static str> {
    let mut out = Vec::new();
    match to.engine {
        Engine::MySql => {
            if to.crosses(from, 8, 0) {
                out.extend_from_slice(MYSQL_80_REMOVED_VARIABLES);
            }
            if to.crosses(from, 8, 4) {
                out.extend_from_slice(MYSQL_84_REMOVED_VARIABLES);
            }
        }
        Engine::MariaDb => {
            for (v, (major, minor)) in MARIADB_11_REMOVED_VARIABLES {
                if to.crosses(from, *major, *minor) {
                    out.push(*v);
                }
            }
        }
    }
    out
}

/// The statement that lists the variables of `names` set explicitly (not compiled-in): from
/// MariaDB's `SYSTEM_VARIABLES.GLOBAL_VALUE_ORIGIN`, MySQL 8.0's `variables_info`; on older
/// MySQL every one the server has (its origin is not kept).
pub fn explicitly_set_variables(from: &Flavor, names: &[&str]) -> String {
    let list = in_list(names);
    match from.engine {
        Engine::MariaDb => format!(
            "SELECT CONCAT(LOWER(VARIABLE_NAME), ' = ', IFNULL(GLOBAL_VALUE, 'NULL'), ' (', \
             GLOBAL_VALUE_ORIGIN, ')') FROM information_schema.SYSTEM_VARIABLES \
             WHERE LOWER(VARIABLE_NAME) IN ({list}) AND GLOBAL_VALUE_ORIGIN <> 'COMPILE-TIME' \
             ORDER BY 1"
        ),
        Engine::MySql if from.version >= (8, 0, 0) => format!(
            "SELECT CONCAT(i.VARIABLE_NAME, ' = ', IFNULL(g.VARIABLE_VALUE, 'NULL'), ' (', \
             i.VARIABLE_SOURCE, ')') FROM performance_schema.variables_info i \
             LEFT JOIN performance_schema.global_variables g USING (VARIABLE_NAME) \
             WHERE i.VARIABLE_NAME IN ({list}) AND i.VARIABLE_SOURCE <> 'COMPILED' ORDER BY 1"
        ),
        Engine::MySql => format!(
            "SELECT CONCAT(LOWER(VARIABLE_NAME), ' = ', VARIABLE_VALUE) \
             FROM performance_schema.global_variables WHERE LOWER(VARIABLE_NAME) IN ({list}) \
             ORDER BY 1"
        ),
    }
}

/// Schemas, tables, columns, routines, triggers and events named by one of `words`.
pub fn identifiers_named(words: &[&str]) -> String {
    let list = in_list(words);
    format!(
        "SELECT CONCAT('schema ', SCHEMA_NAME) FROM information_schema.SCHEMATA \
         WHERE UPPER(SCHEMA_NAME) IN ({list}) \
         UNION ALL SELECT CONCAT('table ', TABLE_SCHEMA, '.', TABLE_NAME) \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         AND UPPER(TABLE_NAME) IN ({list}) \
         UNION ALL SELECT CONCAT('column ', TABLE_SCHEMA, '.', TABLE_NAME, '.', COLUMN_NAME) \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         AND UPPER(COLUMN_NAME) IN ({list}) \
         UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME) \
         FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         AND UPPER(ROUTINE_NAME) IN ({list}) \
         UNION ALL SELECT CONCAT('trigger ', TRIGGER_SCHEMA, '.', TRIGGER_NAME) \
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         AND UPPER(TRIGGER_NAME) IN ({list}) \
         UNION ALL SELECT CONCAT('event ', EVENT_SCHEMA, '.', EVENT_NAME) \
         FROM information_schema.EVENTS WHERE UPPER(EVENT_NAME) IN ({list})"
    )
}

/// Tables and columns in utf8mb3 (`utf8` before MySQL 8.0.30 and MariaDB 10.6).
pub fn utf8mb3_objects() -> String {
    format!(
        "SELECT CONCAT('column ', TABLE_SCHEMA, '.', TABLE_NAME, '.', COLUMN_NAME, ' (', \
         CHARACTER_SET_NAME, ')') FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         AND CHARACTER_SET_NAME IN ('utf8','utf8mb3') ORDER BY 1 LIMIT 200"
    )
}

/// Integer columns with ZEROFILL or a display width (deprecated from MySQL 8.0.17).
pub fn zerofill_and_display_width() -> String {
    format!(
        "SELECT CONCAT('column ', TABLE_SCHEMA, '.', TABLE_NAME, '.', COLUMN_NAME, ' (', \
         COLUMN_TYPE, ')') FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         AND DATA_TYPE IN ('tinyint','smallint','mediumint','int','bigint') \
         AND (COLUMN_TYPE LIKE '%zerofill%' OR (COLUMN_TYPE LIKE '%(%' AND COLUMN_TYPE <> 'tinyint(1)')) \
         ORDER BY 1 LIMIT 200"
    )
}

/// Foreign keys whose name is longer than 64 characters (refused by MySQL 8.0's data
/// dictionary).
pub fn long_foreign_key_names() -> String {
    format!(
        "SELECT CONCAT('foreign key ', CONSTRAINT_SCHEMA, '.', CONSTRAINT_NAME) \
         FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND CHAR_LENGTH(CONSTRAINT_NAME) > 64"
    )
}

/// Partitioned tables of an engine without native partitioning (MySQL 8.0: InnoDB and NDB
/// only).
pub fn non_native_partitioning() -> String {
    format!(
        "SELECT DISTINCT CONCAT('table ', t.TABLE_SCHEMA, '.', t.TABLE_NAME, ' (', t.ENGINE, ')') \
         FROM information_schema.TABLES t JOIN information_schema.PARTITIONS p \
         ON p.TABLE_SCHEMA = t.TABLE_SCHEMA AND p.TABLE_NAME = t.TABLE_NAME \
         WHERE t.TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND p.PARTITION_NAME IS NOT NULL \
         AND t.ENGINE NOT IN ('InnoDB','ndbcluster')"
    )
}

/// Accounts that log in with `plugin`.
pub fn accounts_with_plugin(plugin: &str) -> String {
    format!(
        "SELECT CONCAT('''', User, '''@''', Host, '''') FROM mysql.user \
         WHERE plugin = '{}' AND User NOT IN ('mysql.sys','mysql.session','mysql.infoschema','rdsadmin') \
         ORDER BY 1",
        plugin.replace('\'', "''")
    )
}

/// Views, routines, triggers and events whose body calls one of `functions`.
pub fn bodies_calling(functions: &[&str]) -> String {
    let like = |col: &str| {
        functions
            .iter()
            .map(|f| format!("UPPER({col}) LIKE '%{f}(%'"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    format!(
        "SELECT CONCAT('view ', TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.VIEWS \
         WHERE TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND ({}) \
         UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME) \
         FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND ({}) \
         UNION ALL SELECT CONCAT('trigger ', TRIGGER_SCHEMA, '.', TRIGGER_NAME) \
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND ({}) \
         UNION ALL SELECT CONCAT('event ', EVENT_SCHEMA, '.', EVENT_NAME) \
         FROM information_schema.EVENTS WHERE ({})",
        like("VIEW_DEFINITION"),
        like("ROUTINE_DEFINITION"),
        like("ACTION_STATEMENT"),
        like("EVENT_DEFINITION"),
    )
}

/// Routines, triggers and events stored with one of `modes` in their `sql_mode`, and the
/// global `sql_mode` itself.
pub fn objects_with_sql_modes(modes: &[&str]) -> String {
    let cond = |col: &str| {
        modes
            .iter()
            .map(|m| format!("FIND_IN_SET('{m}', {col})"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    format!(
        "SELECT CONCAT('global sql_mode ', @@GLOBAL.sql_mode) FROM DUAL WHERE {} \
         UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME) \
         FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND ({}) \
         UNION ALL SELECT CONCAT('trigger ', TRIGGER_SCHEMA, '.', TRIGGER_NAME) \
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) AND ({}) \
         UNION ALL SELECT CONCAT('event ', EVENT_SCHEMA, '.', EVENT_NAME) \
         FROM information_schema.EVENTS WHERE ({})",
        cond("@@GLOBAL.sql_mode"),
        cond("SQL_MODE"),
        cond("SQL_MODE"),
        cond("SQL_MODE"),
    )
}

/// One check to run: its name, level, statement, and fix.
struct Check {
    name: &'static str,
    level: Level,
    sql: String,
    fix: String,
}

/// The checks that apply to an upgrade of `from` to `to`, in the order they run.
fn checks(from: &Flavor, to: &Target) -> Vec<Check> {
    let mut out = Vec::new();
    let reserved = new_reserved_words(from, to);
    if !reserved.is_empty() {
        out.push(Check {
            name: "reserved_words",
            level: Level::Error,
            sql: identifiers_named(&reserved),
            fix: format!(
                "these names are reserved words in {}.{}: rename them, or quote them with \
                 backticks in every statement the application sends",
                to.version.0, to.version.1
            ),
        });
    }
    let removed = removed_variables(from, to);
    if !removed.is_empty() {
        out.push(Check {
            name: "removed_system_variables",
            level: Level::Error,
            sql: explicitly_set_variables(from, &removed),
            fix: format!(
                "{}.{} does not have these variables, and a server whose configuration (option \
                 file, parameter group) sets one does not start: remove them from it",
                to.version.0, to.version.1
            ),
        });
    }
    out.push(Check {
        name: "utf8mb3",
        level: Level::Notice,
        sql: utf8mb3_objects(),
        fix: "utf8mb3 is deprecated; convert to utf8mb4 when convenient (ALTER TABLE ... \
              CONVERT TO CHARACTER SET utf8mb4)"
            .to_string(),
    });
    if to.engine == Engine::MySql {
        if to.crosses(from, 8, 0) {
            out.push(Check {
                name: "foreign_key_name_length",
                level: Level::Error,
                sql: long_foreign_key_names(),
                fix: "MySQL 8.0 refuses foreign key names over 64 characters: rename them"
                    .to_string(),
            });
            out.push(Check {
                name: "non_native_partitioning",
                level: Level::Error,
                sql: non_native_partitioning(),
                fix: "MySQL 8.0 partitions InnoDB (and NDB) tables only: ALTER TABLE ... \
                      ENGINE=InnoDB, or remove the partitioning"
                    .to_string(),
            });
            out.push(Check {
                name: "removed_functions",
                level: Level::Error,
                sql: bodies_calling(MYSQL_80_REMOVED_FUNCTIONS),
                fix: format!(
                    "these call functions MySQL 8.0 removed ({}): rewrite them (ST_ spatial \
                     functions, SHA2/AES_ENCRYPT, the server's own authentication)",
                    MYSQL_80_REMOVED_FUNCTIONS.join(", ")
                ),
            });
            out.push(Check {
                name: "removed_sql_modes",
                level: Level::Error,
                sql: objects_with_sql_modes(MYSQL_80_REMOVED_SQL_MODES),
                fix: format!(
                    "these are stored with SQL modes MySQL 8.0 removed ({}): re-create them \
                     (and set sql_mode) without them",
                    MYSQL_80_REMOVED_SQL_MODES.join(", ")
                ),
            });
            out.push(Check {
                name: "zerofill_and_display_width",
                level: Level::Notice,
                sql: zerofill_and_display_width(),
                fix: "MySQL 8.0.17 deprecates ZEROFILL and integer display widths (SHOW CREATE \
                      TABLE no longer prints the width); format in the application"
                    .to_string(),
            });
        }
        if to.crosses(from, 8, 4) {
            out.push(Check {
                name: "mysql_native_password",
                level: Level::Error,
                sql: accounts_with_plugin("mysql_native_password"),
                fix: "MySQL 8.4 disables mysql_native_password by default: these accounts \
                      cannot log in until they move to caching_sha2_password (ALTER USER ... \
                      IDENTIFIED WITH caching_sha2_password BY ...; check the clients support \
                      it) or mysql_native_password=ON is set"
                    .to_string(),
            });
        }
        out.push(Check {
            name: "sha256_password",
            level: Level::Warning,
            sql: accounts_with_plugin("sha256_password"),
            fix: "sha256_password is deprecated: move these accounts to caching_sha2_password"
                .to_string(),
        });
    }
    out
}

/// Every statement the checks of `from` -> `to` run, for the unit tests and `--plan`.
pub fn statements(from: &Flavor, to: &Target) -> Vec<(&'static str, String)> {
    checks(from, to)
        .into_iter()
        .map(|c| (c.name, c.sql))
        .collect()
}

impl Server {
    /// Run the upgrade pre-checks for `to` against this server's catalogue; gives the
    /// findings (a check that finds nothing gives none). Changes nothing.
    pub async fn upgrade_findings(&mut self, to: &Target) -> Result<Vec<Finding>> {
        let from = self.flavor().clone();
        let mut out = Vec::new();
        for c in checks(&from, to) {
            tracing::debug!(endpoint = %self.endpoint(), check = c.name, "upgrade check");
            let rows = self.query_rows(&c.sql).await?;
            let objects: Vec<String> = rows
                .into_iter()
                .filter_map(|r| r.into_iter().next().and_then(|(_, v)| v))
                .collect();
            if !objects.is_empty() {
                out.push(Finding {
                    check: c.name,
                    level: c.level,
                    objects,
                    fix: c.fix,
                });
            }
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.level));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(version: &str) -> Flavor {
        Flavor::detect(version, "", None, false, true)
    }

    #[test]
    fn targets_are_newer_versions_of_the_same_engine() {
        let m57 = flavor("5.7.44-log");
        assert_eq!(
            Target::parse("8.0", &m57).unwrap(),
            Target {
                engine: Engine::MySql,
                version: (8, 0)
            }
        );
        assert_eq!(Target::parse("mysql-8.4.3", &m57).unwrap().version, (8, 4));
        assert!(Target::parse("5.7", &m57)
            .unwrap_err()
            .contains("not newer"));
        assert!(Target::parse("5.6", &m57)
            .unwrap_err()
            .contains("not newer"));
        assert!(Target::parse("mariadb-11.4", &m57)
            .unwrap_err()
            .contains("one engine"));
        assert!(Target::parse("8.2", &m57)
            .unwrap_err()
            .contains("no MySQL release series"));
        assert!(Target::parse("eight", &m57)
            .unwrap_err()
            .contains("MAJOR.MINOR"));
        let maria = flavor("10.11.19-MariaDB-0+deb12u1");
        assert_eq!(Target::parse("11.4", &maria).unwrap().version, (11, 4));
        assert!(Target::parse("10.6", &maria)
            .unwrap_err()
            .contains("not newer"));
    }

    #[test]
    fn the_lists_follow_the_versions_crossed() {
        let m57 = flavor("5.7.44");
        let m80 = flavor("8.0.39");
        let to80 = Target::parse("8.0", &m57).unwrap();
        let to84 = Target::parse("8.4", &m57).unwrap();
        assert!(new_reserved_words(&m57, &to80).contains(&"RANK"));
        assert!(!new_reserved_words(&m57, &to80).contains(&"QUALIFY"));
        let both = new_reserved_words(&m57, &to84);
        assert!(both.contains(&"RANK") && both.contains(&"QUALIFY"));
        let from80 = new_reserved_words(&m80, &Target::parse("8.4", &m80).unwrap());
        assert_eq!(from80, MYSQL_84_RESERVED);
        assert!(removed_variables(&m57, &to80).contains(&"query_cache_size"));
        assert!(
            removed_variables(&m80, &Target::parse("8.4", &m80).unwrap())
                .contains(&"expire_logs_days")
        );
        let maria = flavor("10.11.19-MariaDB");
        assert_eq!(
            removed_variables(&maria, &Target::parse("11.0", &maria).unwrap()),
            ["innodb_change_buffering", "innodb_change_buffer_max_size"]
        );
        assert!(
            removed_variables(&maria, &Target::parse("11.4", &maria).unwrap())
                .contains(&"innodb_defragment")
        );
        assert!(new_reserved_words(&maria, &Target::parse("11.4", &maria).unwrap()).is_empty());
    }

    #[test]
    fn the_statements_of_each_upgrade() {
        let m57 = flavor("5.7.44");
        let names: Vec<&str> = statements(&m57, &Target::parse("8.4", &m57).unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "reserved_words",
                "removed_system_variables",
                "utf8mb3",
                "foreign_key_name_length",
                "non_native_partitioning",
                "removed_functions",
                "removed_sql_modes",
                "zerofill_and_display_width",
                "mysql_native_password",
                "sha256_password"
            ]
        );
        // 5.7 keeps no origin of a variable: every removed one it has is named.
        let vars = explicitly_set_variables(&m57, &["tx_isolation"]);
        assert!(
            vars.contains("performance_schema.global_variables"),
            "{vars}"
        );
        assert!(!vars.contains("variables_info"), "{vars}");
        let m80 = flavor("8.0.39");
        let vars = explicitly_set_variables(&m80, &["expire_logs_days"]);
        assert!(vars.contains("VARIABLE_SOURCE <> 'COMPILED'"), "{vars}");
        let maria = flavor("10.11.19-MariaDB");
        let vars = explicitly_set_variables(&maria, &["innodb_defragment"]);
        assert!(
            vars.contains("GLOBAL_VALUE_ORIGIN <> 'COMPILE-TIME'"),
            "{vars}"
        );
        let names: Vec<&str> = statements(&maria, &Target::parse("11.4", &maria).unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["removed_system_variables", "utf8mb3"]);
        let words = identifiers_named(&["RANK"]);
        assert!(words.contains("UPPER(COLUMN_NAME) IN ('RANK')"), "{words}");
        assert!(accounts_with_plugin("x'y").contains("'x''y'"));
        let modes = objects_with_sql_modes(&["DB2"]);
        assert!(modes.contains("FIND_IN_SET('DB2', SQL_MODE)"), "{modes}");
    }
}
