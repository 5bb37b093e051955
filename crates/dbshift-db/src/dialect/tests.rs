//! Unit tests of the statement builders in `dialect.rs`: the generated SQL per flavor.

#[test]
fn an_event_is_altered_with_its_own_definer_restated() {
    let e = EventRef {
        schema: "app".into(),
        name: "ti`ck".into(),
        definer: "app@127.0.0.1".into(),
    };
    assert_eq!(
        alter_event(&e, "ENABLE"),
        "ALTER DEFINER='app'@'127.0.0.1' EVENT `app`.`ti``ck` ENABLE"
    );
    let odd = EventRef {
        definer: "o'brien@%".into(),
        ..e
    };
    assert_eq!(
        alter_event(&odd, "DISABLE ON SLAVE"),
        "ALTER DEFINER='o''brien'@'%' EVENT `app`.`ti``ck` DISABLE ON SLAVE"
    );
}

use super::*;

const PW: &str = "hunter2-Secret";

fn dialect(version: &str, rds: bool, has_super: bool) -> Dialect {
    Dialect::new(Flavor::detect(version, "", None, rds, has_super))
}

fn maria_10_6() -> Dialect {
    dialect("10.6.18-MariaDB-log", false, true)
}
fn maria_10_11() -> Dialect {
    dialect("10.11.14-MariaDB-0+deb12u2-log", false, true)
}
fn maria_11_4() -> Dialect {
    dialect("11.4.2-MariaDB", false, true)
}
fn mysql_5_7() -> Dialect {
    dialect("5.7.44-log", false, true)
}
fn mysql_8_0_21() -> Dialect {
    dialect("8.0.21", false, true)
}
fn mysql_8_0_22() -> Dialect {
    dialect("8.0.22", false, true)
}
fn mysql_8_0_23() -> Dialect {
    dialect("8.0.23", false, true)
}
fn mysql_8_0_26() -> Dialect {
    dialect("8.0.26", false, true)
}
fn mysql_8_4() -> Dialect {
    dialect("8.4.3", false, true)
}
fn aurora() -> Dialect {
    Dialect::new(Flavor::detect(
        "8.0.mysql_aurora.3.05.2",
        "Source distribution",
        Some("3.05.2"),
        true,
        false,
    ))
}
fn rds_mysql_8_0() -> Dialect {
    dialect("8.0.36", true, false)
}
fn rds_mysql_8_4() -> Dialect {
    dialect("8.4.3", true, false)
}
fn rds_mariadb() -> Dialect {
    dialect("10.11.8-MariaDB-log", true, false)
}

fn all() -> Vec<(&'static str, Dialect)> {
    vec![
        ("mariadb 10.6", maria_10_6()),
        ("mariadb 10.11", maria_10_11()),
        ("mariadb 11.4", maria_11_4()),
        ("mysql 5.7", mysql_5_7()),
        ("mysql 8.0.21", mysql_8_0_21()),
        ("mysql 8.0.22", mysql_8_0_22()),
        ("mysql 8.0.23", mysql_8_0_23()),
        ("mysql 8.0.26", mysql_8_0_26()),
        ("mysql 8.4", mysql_8_4()),
        ("aurora", aurora()),
        ("rds mysql 8.0", rds_mysql_8_0()),
        ("rds mysql 8.4", rds_mysql_8_4()),
        ("rds mariadb", rds_mariadb()),
    ]
}

fn spec(start: SourceStart) -> SourceSpec {
    SourceSpec {
        host: "db-1.example".into(),
        port: 3306,
        user: "repl".into(),
        password: PW.into(),
        start,
        ssl: Some(SslSpec {
            ca_path: Some("/etc/mysql/ca.pem".into()),
            verify_server_cert: true,
        }),
        connect_retry_s: Some(10),
        heartbeat_period_ms: None,
    }
}

#[test]
fn the_heartbeat_period_is_set_in_seconds_after_the_retry() {
    let s = SourceSpec {
        heartbeat_period_ms: Some(500),
        ..spec(SourceStart::Gtid)
    };
    let maria = maria_11_4().point_replica_at(&s).unwrap();
    assert!(
        maria[1]
            .sql
            .ends_with("MASTER_CONNECT_RETRY=10, MASTER_HEARTBEAT_PERIOD=0.500"),
        "{}",
        maria[1].sql
    );
    let mysql = mysql_8_4().point_replica_at(&s).unwrap();
    assert!(
        mysql[1].sql.contains("SOURCE_HEARTBEAT_PERIOD=0.500"),
        "{}",
        mysql[1].sql
    );
}

fn rds_spec(start: SourceStart) -> SourceSpec {
    SourceSpec {
        ssl: Some(SslSpec::default()),
        connect_retry_s: None,
        ..spec(start)
    }
}

fn plain_spec(start: SourceStart) -> SourceSpec {
    SourceSpec {
        ssl: None,
        connect_retry_s: None,
        ..spec(start)
    }
}

fn file() -> SourceStart {
    SourceStart::File(BinlogPosition::new("mysql-bin.000042", 1307))
}

fn at() -> SourceStart {
    SourceStart::GtidAt("0-1-100,1-2-5".parse().unwrap())
}

fn sql(stmts: &[Statement]) -> Vec<&str> {
    stmts.iter().map(|s| s.sql.as_str()).collect()
}

fn unsupported<T: fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(e @ Error::Unsupported { .. }) => e.to_string(),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// Every statement keeps the password out of its redacted, Display and Debug forms.
fn assert_redacted(stmts: &[Statement], password: &str) {
    for s in stmts {
        assert!(!s.redacted.contains(password), "{}", s.redacted);
        assert!(!s.to_string().contains(password));
        assert!(!format!("{s:?}").contains(password));
        assert!(!format!("{s:#?}").contains(password));
    }
    assert!(!format!("{stmts:?}").contains(password));
}

// ---- status and simple statements ----

#[test]
fn show_replica_status_per_flavor() {
    let expect = [
        ("mariadb 10.6", "SHOW SLAVE STATUS"),
        ("mariadb 10.11", "SHOW SLAVE STATUS"),
        ("mariadb 11.4", "SHOW SLAVE STATUS"),
        ("mysql 5.7", "SHOW SLAVE STATUS"),
        ("mysql 8.0.21", "SHOW SLAVE STATUS"),
        ("mysql 8.0.22", "SHOW REPLICA STATUS"),
        ("mysql 8.0.23", "SHOW REPLICA STATUS"),
        ("mysql 8.0.26", "SHOW REPLICA STATUS"),
        ("mysql 8.4", "SHOW REPLICA STATUS"),
        ("aurora", "SHOW REPLICA STATUS"),
        ("rds mysql 8.0", "SHOW REPLICA STATUS"),
        ("rds mysql 8.4", "SHOW REPLICA STATUS"),
        ("rds mariadb", "CALL mysql.rds_replica_status"),
    ];
    for ((name, d), (ename, want)) in all().into_iter().zip(expect) {
        assert_eq!(name, ename);
        assert_eq!(d.show_replica_status().sql, want, "{name}");
    }
    // RDS for MariaDB before 10.5 still allows SHOW SLAVE STATUS.
    assert_eq!(
        dialect("10.4.34-MariaDB-log", true, false)
            .show_replica_status()
            .sql,
        "SHOW SLAVE STATUS"
    );
}

#[test]
fn show_binlog_status_per_flavor() {
    for (name, d) in all() {
        let want = if name == "mysql 8.4" || name == "rds mysql 8.4" {
            "SHOW BINARY LOG STATUS"
        } else {
            "SHOW MASTER STATUS"
        };
        assert_eq!(d.show_binlog_status().sql, want, "{name}");
    }
    assert_eq!(
        dialect("8.2.0", false, true).show_binlog_status().sql,
        "SHOW BINARY LOG STATUS"
    );
    assert_eq!(
        dialect("8.1.0", false, true).show_binlog_status().sql,
        "SHOW MASTER STATUS"
    );
}

#[test]
fn stop_start_reset_per_flavor() {
    let expect = [
        (
            "mariadb 10.6",
            "STOP SLAVE",
            "START SLAVE",
            "RESET SLAVE ALL",
        ),
        (
            "mariadb 10.11",
            "STOP SLAVE",
            "START SLAVE",
            "RESET SLAVE ALL",
        ),
        (
            "mariadb 11.4",
            "STOP SLAVE",
            "START SLAVE",
            "RESET SLAVE ALL",
        ),
        ("mysql 5.7", "STOP SLAVE", "START SLAVE", "RESET SLAVE ALL"),
        (
            "mysql 8.0.21",
            "STOP SLAVE",
            "START SLAVE",
            "RESET SLAVE ALL",
        ),
        (
            "mysql 8.0.22",
            "STOP REPLICA",
            "START REPLICA",
            "RESET REPLICA ALL",
        ),
        (
            "mysql 8.0.23",
            "STOP REPLICA",
            "START REPLICA",
            "RESET REPLICA ALL",
        ),
        (
            "mysql 8.0.26",
            "STOP REPLICA",
            "START REPLICA",
            "RESET REPLICA ALL",
        ),
        (
            "mysql 8.4",
            "STOP REPLICA",
            "START REPLICA",
            "RESET REPLICA ALL",
        ),
        (
            "aurora",
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_start_replication",
            "CALL mysql.rds_reset_external_source",
        ),
        (
            "rds mysql 8.0",
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_start_replication",
            "CALL mysql.rds_reset_external_master",
        ),
        (
            "rds mysql 8.4",
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_start_replication",
            "CALL mysql.rds_reset_external_source",
        ),
        (
            "rds mariadb",
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_start_replication",
            "CALL mysql.rds_reset_external_master",
        ),
    ];
    for ((name, d), (ename, stop, start, reset)) in all().into_iter().zip(expect) {
        assert_eq!(name, ename);
        assert_eq!(d.stop_replica().sql, stop, "{name}");
        assert_eq!(d.start_replica().sql, start, "{name}");
        assert_eq!(d.reset_replica_all().sql, reset, "{name}");
    }
}

#[test]
fn gtid_state_query_per_engine() {
    for (name, d) in all() {
        let want = if name.contains("mariadb") {
            "SELECT @@gtid_binlog_pos, @@gtid_binlog_state"
        } else {
            "SELECT @@GLOBAL.gtid_executed"
        };
        assert_eq!(d.gtid_state_query().sql, want, "{name}");
    }
}

#[test]
fn kill_connection_per_flavor() {
    for (name, d) in all() {
        let want = if name.starts_with("rds") || name == "aurora" {
            "CALL mysql.rds_kill(42)"
        } else {
            "KILL CONNECTION 42"
        };
        assert_eq!(d.kill_connection(42).sql, want, "{name}");
    }
}

#[test]
fn kill_query_per_flavor() {
    for (name, d) in all() {
        let want = if name.starts_with("rds") || name == "aurora" {
            "CALL mysql.rds_kill_query(42)"
        } else {
            "KILL QUERY 42"
        };
        assert_eq!(d.kill_query(42).sql, want, "{name}");
    }
}

// ---- point_replica_at ----

#[test]
fn point_mariadb_with_gtid() {
    for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
        let stmts = d.point_replica_at(&spec(SourceStart::Gtid)).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', \
                 MASTER_USE_GTID=slave_pos, MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
                 MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10",
                "START SLAVE",
            ]
        );
        assert_eq!(
            stmts[1].redacted,
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='***', MASTER_USE_GTID=slave_pos, \
             MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
             MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10"
        );
        assert_redacted(&stmts, PW);
    }
}

#[test]
fn point_mariadb_at_gtid_position() {
    let stmts = maria_10_11().point_replica_at(&plain_spec(at())).unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "STOP SLAVE",
            "SET GLOBAL gtid_slave_pos='0-1-100,1-2-5'",
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', \
             MASTER_USE_GTID=slave_pos, MASTER_SSL=0",
            "START SLAVE",
        ]
    );
    assert_redacted(&stmts, PW);
}

#[test]
fn point_mariadb_at_file() {
    let stmts = maria_11_4().point_replica_at(&plain_spec(file())).unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "STOP SLAVE",
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', \
             MASTER_LOG_FILE='mysql-bin.000042', MASTER_LOG_POS=1307, \
             MASTER_USE_GTID=no, MASTER_SSL=0",
            "START SLAVE",
        ]
    );
}

#[test]
fn point_mariadb_demote() {
    let stmts = maria_10_11()
        .point_replica_at(&spec(SourceStart::DemoteToReplica))
        .unwrap();
    assert_eq!(
        stmts[1].sql,
        "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
         MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_USE_GTID=slave_pos, \
         MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1, \
         MASTER_CONNECT_RETRY=10, MASTER_DEMOTE_TO_SLAVE=1"
    );
    let err = unsupported(maria_10_6().point_replica_at(&spec(SourceStart::DemoteToReplica)));
    assert!(err.contains("MariaDB 10.10"), "{err}");
}

#[test]
fn point_mysql_5_7_and_8_0_21_use_change_master() {
    let stmts = mysql_5_7()
        .point_replica_at(&spec(SourceStart::Gtid))
        .unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "STOP SLAVE",
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=1, \
             MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
             MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10",
            "START SLAVE",
        ]
    );
    // No TLS: 5.7 has no GET_MASTER_PUBLIC_KEY.
    let stmts = mysql_5_7().point_replica_at(&plain_spec(file())).unwrap();
    assert_eq!(
        stmts[1].sql,
        "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, MASTER_USER='repl', \
         MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=0, \
         MASTER_LOG_FILE='mysql-bin.000042', MASTER_LOG_POS=1307, MASTER_SSL=0"
    );
    let stmts = mysql_8_0_21()
        .point_replica_at(&plain_spec(file()))
        .unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "STOP SLAVE",
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=0, \
             MASTER_LOG_FILE='mysql-bin.000042', MASTER_LOG_POS=1307, MASTER_SSL=0, \
             GET_MASTER_PUBLIC_KEY=1",
            "START SLAVE",
        ]
    );
}

#[test]
fn point_mysql_8_0_22_mixes_replica_and_change_master() {
    let stmts = mysql_8_0_22()
        .point_replica_at(&spec(SourceStart::Gtid))
        .unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "STOP REPLICA",
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=1, \
             MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
             MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10",
            "START REPLICA",
        ]
    );
}

#[test]
fn point_mysql_8_0_23_and_later_use_change_replication_source() {
    for d in [mysql_8_0_23(), mysql_8_0_26(), mysql_8_4()] {
        let stmts = d.point_replica_at(&spec(SourceStart::Gtid)).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
                 SOURCE_USER='repl', SOURCE_PASSWORD='hunter2-Secret', \
                 SOURCE_AUTO_POSITION=1, SOURCE_SSL=1, SOURCE_SSL_CA='/etc/mysql/ca.pem', \
                 SOURCE_SSL_VERIFY_SERVER_CERT=1, SOURCE_CONNECT_RETRY=10",
                "START REPLICA",
            ]
        );
        assert_redacted(&stmts, PW);
        let stmts = d.point_replica_at(&plain_spec(file())).unwrap();
        assert_eq!(
            stmts[1].sql,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
             SOURCE_USER='repl', SOURCE_PASSWORD='hunter2-Secret', SOURCE_AUTO_POSITION=0, \
             SOURCE_LOG_FILE='mysql-bin.000042', SOURCE_LOG_POS=1307, SOURCE_SSL=0, \
             GET_SOURCE_PUBLIC_KEY=1"
        );
        assert_eq!(
            stmts[1].redacted,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
             SOURCE_USER='repl', SOURCE_PASSWORD='***', SOURCE_AUTO_POSITION=0, \
             SOURCE_LOG_FILE='mysql-bin.000042', SOURCE_LOG_POS=1307, SOURCE_SSL=0, \
             GET_SOURCE_PUBLIC_KEY=1"
        );
    }
    // TLS without a CA file and without verification.
    let mut s = spec(SourceStart::Gtid);
    s.ssl = Some(SslSpec::default());
    s.connect_retry_s = None;
    assert_eq!(
        mysql_8_4().point_replica_at(&s).unwrap()[1].sql,
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
         SOURCE_USER='repl', SOURCE_PASSWORD='hunter2-Secret', SOURCE_AUTO_POSITION=1, \
         SOURCE_SSL=1, SOURCE_SSL_VERIFY_SERVER_CERT=0"
    );
}

#[test]
fn point_mysql_refuses_mariadb_only_starts() {
    for d in [mysql_5_7(), mysql_8_0_23(), mysql_8_4()] {
        let err = unsupported(d.point_replica_at(&spec(at())));
        assert!(err.contains("MariaDB GTID position"), "{err}");
        let err = unsupported(d.point_replica_at(&spec(SourceStart::DemoteToReplica)));
        assert!(err.contains("MASTER_DEMOTE_TO_SLAVE"), "{err}");
    }
}

fn aurora_2() -> Dialect {
    Dialect::new(Flavor::detect(
        "5.7.mysql_aurora.2.11.2",
        "Source distribution",
        Some("2.11.2"),
        true,
        false,
    ))
}

/// RDS for MySQL 8.0 and Aurora MySQL version 2 keep the `*_master` procedures.
#[test]
fn point_rds_mysql_8_0_and_aurora_2() {
    assert_eq!(
        aurora_2().reset_replica_all().sql,
        "CALL mysql.rds_reset_external_master"
    );
    for d in [rds_mysql_8_0(), aurora_2()] {
        let stmts = d.point_replica_at(&rds_spec(file())).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_set_external_master('db-1.example', 3306, 'repl', \
                 'hunter2-Secret', 'mysql-bin.000042', 1307, 1)",
                "CALL mysql.rds_start_replication",
            ]
        );
        assert_eq!(
            stmts[1].redacted,
            "CALL mysql.rds_set_external_master('db-1.example', 3306, 'repl', '***', \
             'mysql-bin.000042', 1307, 1)"
        );
        assert_redacted(&stmts, PW);
        let stmts = d.point_replica_at(&plain_spec(SourceStart::Gtid)).unwrap();
        assert_eq!(
            stmts[1].sql,
            "CALL mysql.rds_set_external_master_with_auto_position('db-1.example', 3306, \
             'repl', 'hunter2-Secret', 0, 0)"
        );
        assert_redacted(&stmts, PW);
    }
}

/// RDS for MySQL 8.4 and Aurora MySQL version 3 use the `*_source` procedures
/// (<https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/mysql-stored-proc-replicating.html>).
#[test]
fn point_rds_mysql_8_4_and_aurora_3_use_source_procedures() {
    for d in [rds_mysql_8_4(), aurora()] {
        point_with_source_procedures(d);
    }
}

fn point_with_source_procedures(d: Dialect) {
    let stmts = d.point_replica_at(&rds_spec(SourceStart::Gtid)).unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_set_external_source_with_auto_position('db-1.example', 3306, \
             'repl', 'hunter2-Secret', 1, 0)",
            "CALL mysql.rds_start_replication",
        ]
    );
    let stmts = d.point_replica_at(&rds_spec(file())).unwrap();
    assert_eq!(
        stmts[1].sql,
        "CALL mysql.rds_set_external_source('db-1.example', 3306, 'repl', 'hunter2-Secret', \
         'mysql-bin.000042', 1307, 1)"
    );
    assert_redacted(&stmts, PW);
}

#[test]
fn point_rds_mariadb() {
    let d = rds_mariadb();
    let stmts = d.point_replica_at(&rds_spec(at())).unwrap();
    assert_eq!(
        sql(&stmts),
        [
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_set_external_master_gtid('db-1.example', 3306, 'repl', \
             'hunter2-Secret', '0-1-100,1-2-5', 1)",
            "CALL mysql.rds_start_replication",
        ]
    );
    assert_eq!(
        stmts[1].redacted,
        "CALL mysql.rds_set_external_master_gtid('db-1.example', 3306, 'repl', '***', \
         '0-1-100,1-2-5', 1)"
    );
    let stmts = d.point_replica_at(&plain_spec(file())).unwrap();
    assert_eq!(
        stmts[1].sql,
        "CALL mysql.rds_set_external_master('db-1.example', 3306, 'repl', 'hunter2-Secret', \
         'mysql-bin.000042', 1307, 0)"
    );
    let err = unsupported(d.point_replica_at(&rds_spec(SourceStart::Gtid)));
    assert!(err.contains("explicit position"), "{err}");
    unsupported(d.point_replica_at(&rds_spec(SourceStart::DemoteToReplica)));
}

#[test]
fn point_rds_refuses_what_the_procedures_cannot_do() {
    for d in [rds_mysql_8_0(), rds_mysql_8_4(), aurora(), rds_mariadb()] {
        // A CA file or certificate checks cannot be passed to the procedures.
        let err = unsupported(d.point_replica_at(&spec(file())));
        assert!(err.contains("rds_import_binlog_ssl_material"), "{err}");
        let mut s = rds_spec(file());
        s.ssl = Some(SslSpec {
            ca_path: None,
            verify_server_cert: true,
        });
        let err = unsupported(d.point_replica_at(&s));
        assert!(err.contains("VERIFY_SERVER_CERT"), "{err}");
    }
    for d in [rds_mysql_8_0(), rds_mysql_8_4(), aurora()] {
        unsupported(d.point_replica_at(&rds_spec(at())));
        unsupported(d.point_replica_at(&rds_spec(SourceStart::DemoteToReplica)));
    }
}

#[test]
fn point_refuses_an_empty_host() {
    let mut s = spec(SourceStart::Gtid);
    s.host = "  ".into();
    assert!(matches!(
        mysql_8_4().point_replica_at(&s),
        Err(Error::Parse { .. })
    ));
}

mod waits_fences_quoting;
