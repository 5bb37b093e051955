//! Unit tests of `dialect.rs`, continued: UNTIL, waits, fences, TLS, quoting and redaction.

use super::*;

// ---- until, waits, fences, TLS ----

#[test]
fn start_until_mariadb_position() {
    let pos: mariadb::GtidPos = "0-1-100".parse().unwrap();
    for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
        assert_eq!(
            sql(&d.start_replica_until_gtid(&pos).unwrap()),
            ["STOP SLAVE", "START SLAVE UNTIL master_gtid_pos='0-1-100'"]
        );
    }
    for d in [mysql_5_7(), mysql_8_4(), rds_mysql_8_0(), rds_mariadb()] {
        unsupported(d.start_replica_until_gtid(&pos));
    }
}

#[test]
fn start_until_mysql_gtid_set() {
    let set: mysql::GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".parse().unwrap();
    assert_eq!(
        sql(&mysql_8_0_21()
            .start_replica_until_gtid_set(&set, Until::AfterGtids)
            .unwrap()),
        [
            "STOP SLAVE SQL_THREAD",
            "START SLAVE IO_THREAD",
            "START SLAVE SQL_THREAD UNTIL SQL_AFTER_GTIDS=\
             '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'",
        ]
    );
    assert_eq!(
        sql(&mysql_8_4()
            .start_replica_until_gtid_set(&set, Until::BeforeGtids)
            .unwrap()),
        [
            "STOP REPLICA SQL_THREAD",
            "START REPLICA IO_THREAD",
            "START REPLICA SQL_THREAD UNTIL SQL_BEFORE_GTIDS=\
             '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'",
        ]
    );
    assert_eq!(
        sql(&rds_mysql_8_0()
            .start_replica_until_gtid_set(&set, Until::AfterGtids)
            .unwrap()),
        [
            "CALL mysql.rds_stop_replication",
            "CALL mysql.rds_start_replication_until_gtid(\
             '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5')",
        ]
    );
    unsupported(rds_mysql_8_4().start_replica_until_gtid_set(&set, Until::BeforeGtids));
    unsupported(maria_10_11().start_replica_until_gtid_set(&set, Until::AfterGtids));
}

#[test]
fn waits_with_fractional_and_whole_seconds() {
    let pos: mariadb::GtidPos = "0-1-100,1-2-5".parse().unwrap();
    let d = maria_10_11();
    assert_eq!(
        d.wait_for_gtid_mariadb(&pos, Duration::from_millis(1500))
            .sql,
        "SELECT MASTER_GTID_WAIT('0-1-100,1-2-5', 1.5)"
    );
    assert_eq!(
        d.wait_for_gtid_mariadb(&pos, Duration::from_secs(30)).sql,
        "SELECT MASTER_GTID_WAIT('0-1-100,1-2-5', 30)"
    );
    // Zero would mean "forever" to some of these functions: never sent.
    assert_eq!(
        d.wait_for_gtid_mariadb(&pos, Duration::ZERO).sql,
        "SELECT MASTER_GTID_WAIT('0-1-100,1-2-5', 0.001)"
    );

    let set: mysql::GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".parse().unwrap();
    assert_eq!(
        mysql_8_4()
            .wait_for_gtid_set(&set, Duration::from_millis(2250))
            .sql,
        "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 2.25)"
    );
    assert_eq!(
        mysql_5_7()
            .wait_for_gtid_set(&set, Duration::from_millis(200))
            .sql,
        "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 1)"
    );

    let at = BinlogPosition::new("mysql-bin.000042", 1307);
    let t = Duration::from_millis(1500);
    assert_eq!(
        maria_10_11().wait_for_position(&at, t).sql,
        "SELECT MASTER_POS_WAIT('mysql-bin.000042', 1307, 2)"
    );
    assert_eq!(
        mysql_5_7().wait_for_position(&at, t).sql,
        "SELECT MASTER_POS_WAIT('mysql-bin.000042', 1307, 2)"
    );
    assert_eq!(
        mysql_8_0_23().wait_for_position(&at, t).sql,
        "SELECT MASTER_POS_WAIT('mysql-bin.000042', 1307, 2)"
    );
    assert_eq!(
        mysql_8_0_26().wait_for_position(&at, t).sql,
        "SELECT SOURCE_POS_WAIT('mysql-bin.000042', 1307, 2)"
    );
    assert_eq!(
        mysql_8_4()
            .wait_for_position(&at, Duration::from_secs(60))
            .sql,
        "SELECT SOURCE_POS_WAIT('mysql-bin.000042', 1307, 60)"
    );
    assert_eq!(
        rds_mysql_8_0().wait_for_position(&at, Duration::ZERO).sql,
        "SELECT SOURCE_POS_WAIT('mysql-bin.000042', 1307, 1)"
    );
}

#[test]
fn seconds_formatting() {
    assert_eq!(
        fractional_seconds(Duration::from_micros(1_000_001)),
        "1.000001"
    );
    assert_eq!(fractional_seconds(Duration::from_millis(100)), "0.1");
    assert_eq!(fractional_seconds(Duration::from_nanos(1)), "0.001");
    assert_eq!(whole_seconds(Duration::from_secs(5)), "5");
    assert_eq!(whole_seconds(Duration::from_nanos(5_000_000_001)), "6");
    assert_eq!(whole_seconds(Duration::ZERO), "1");
}

#[test]
fn read_only_per_flavor() {
    for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
        assert_eq!(
            sql(&d.set_read_only(true).unwrap()),
            ["SET GLOBAL read_only=ON"]
        );
        assert_eq!(
            sql(&d.set_read_only(false).unwrap()),
            ["SET GLOBAL read_only=OFF"]
        );
    }
    for d in [
        mysql_5_7(),
        mysql_8_0_21(),
        mysql_8_0_22(),
        mysql_8_0_23(),
        mysql_8_0_26(),
        mysql_8_4(),
    ] {
        assert_eq!(
            sql(&d.set_read_only(true).unwrap()),
            ["SET GLOBAL super_read_only=ON"]
        );
        assert_eq!(
            sql(&d.set_read_only(false).unwrap()),
            ["SET GLOBAL super_read_only=OFF", "SET GLOBAL read_only=OFF"]
        );
        // super_read_only stops SUPER users too: a privileged definer cannot write.
        assert!(d.fence_stops_privileged_users());
    }
    for d in [
        maria_10_6(),
        maria_10_11(),
        maria_11_4(),
        rds_mysql_8_0(),
        rds_mariadb(),
        aurora(),
    ] {
        assert!(!d.fence_stops_privileged_users());
    }
    assert!(!dialect("5.6.51-log", false, true).fence_stops_privileged_users());
    assert_eq!(
        sql(&dialect("5.6.51-log", false, true)
            .set_read_only(true)
            .unwrap()),
        ["SET GLOBAL read_only=ON"]
    );
    for d in [aurora(), rds_mysql_8_0(), rds_mysql_8_4(), rds_mariadb()] {
        let err = unsupported(d.set_read_only(true));
        assert!(err.contains("parameter group"), "{err}");
        assert!(err.contains("proxy"), "{err}");
        unsupported(d.set_read_only(false));
    }
}

#[test]
fn flush_ssl_per_flavor() {
    for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
        // Never the binlogged FLUSH SSL.
        assert_eq!(d.flush_ssl().unwrap().sql, "FLUSH LOCAL SSL");
    }
    let err = unsupported(dialect("10.3.39-MariaDB", false, true).flush_ssl());
    assert!(err.contains("10.4"), "{err}");
    for d in [mysql_8_0_21(), mysql_8_0_26(), mysql_8_4()] {
        assert_eq!(d.flush_ssl().unwrap().sql, "ALTER INSTANCE RELOAD TLS");
    }
    assert_eq!(
        dialect("8.0.16", false, true).flush_ssl().unwrap().sql,
        "ALTER INSTANCE RELOAD TLS"
    );
    unsupported(dialect("8.0.15", false, true).flush_ssl());
    unsupported(mysql_5_7().flush_ssl());
    for d in [aurora(), rds_mysql_8_0(), rds_mysql_8_4(), rds_mariadb()] {
        unsupported(d.flush_ssl());
    }
}

#[test]
fn unsupported_names_the_flavor() {
    let err = unsupported(rds_mysql_8_4().set_read_only(true));
    assert!(
        err.ends_with("is not supported on MySQL 8.4.3 (RDS)"),
        "{err}"
    );
}

// ---- quoting and redaction ----

/// Reads one quoted literal the way the server does with the default sql_mode; returns
/// the value and what follows the closing quote.
fn read_literal_default_mode(sql: &str) -> (String, &str) {
    let mut chars = sql.char_indices();
    assert_eq!(chars.next(), Some((0, '\'')));
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next().unwrap();
                value.push(match e {
                    '0' => '\0',
                    'n' => '\n',
                    'r' => '\r',
                    'Z' => '\x1a',
                    other => other,
                });
            }
            '\'' => {
                if sql[i + 1..].starts_with('\'') {
                    chars.next();
                    value.push('\'');
                } else {
                    return (value, &sql[i + 1..]);
                }
            }
            c => value.push(c),
        }
    }
    panic!("unterminated literal: {sql}");
}

/// The same under NO_BACKSLASH_ESCAPES, where only a doubled quote escapes.
fn literal_end_no_backslash_escapes(sql: &str) -> &str {
    let bytes = sql.as_bytes();
    assert_eq!(bytes[0], b'\'');
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return &sql[i + 1..];
        }
        i += 1;
    }
    panic!("unterminated literal: {sql}");
}

const HOSTILE: [&str; 12] = [
    "",
    "plain",
    "it's",
    "''",
    "\\",
    "\\'",
    "a\\'); DROP TABLE t; --",
    "x', MASTER_HOST='evil",
    "nul\0byte",
    "line\nbreak\rreturn",
    "ctrl\x1az",
    "ünïcødé 😀 \"double\"",
];

#[test]
fn quote_literal_examples() {
    assert_eq!(quote_literal("plain"), "'plain'");
    assert_eq!(quote_literal("it's"), "'it''s'");
    assert_eq!(quote_literal("a\\b"), "'a\\\\b'");
    assert_eq!(quote_literal("a\0b"), "'a\\0b'");
    assert_eq!(quote_literal("a\nb\rc\x1ad"), "'a\\nb\\rc\\Zd'");
    assert_eq!(quote_literal("\"x\""), "'\"x\"'");
    assert_eq!(quote_literal(""), "''");
}

#[test]
fn quote_literal_round_trips_and_never_ends_early() {
    for s in HOSTILE {
        let q = quote_literal(s);
        let (value, rest) = read_literal_default_mode(&q);
        assert_eq!(value, s, "{q}");
        assert_eq!(rest, "", "{q}");
        assert_eq!(literal_end_no_backslash_escapes(&q), "", "{q}");
        assert!(!q.contains('\0'), "{q:?}");
    }
}

#[test]
fn hostile_values_stay_inside_their_literals() {
    let d = mysql_8_4();
    let s = SourceSpec {
        host: "h'; DROP TABLE x; --".into(),
        user: "u\\".into(),
        ..spec(SourceStart::File(BinlogPosition::new("f'\\.000001", 4)))
    };
    let stmts = d.point_replica_at(&s).unwrap();
    assert_eq!(
        stmts[1].sql,
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='h''; DROP TABLE x; --', SOURCE_PORT=3306, \
         SOURCE_USER='u\\\\', SOURCE_PASSWORD='hunter2-Secret', SOURCE_AUTO_POSITION=0, \
         SOURCE_LOG_FILE='f''\\\\.000001', SOURCE_LOG_POS=4, SOURCE_SSL=1, \
         SOURCE_SSL_CA='/etc/mysql/ca.pem', SOURCE_SSL_VERIFY_SERVER_CERT=1, \
         SOURCE_CONNECT_RETRY=10"
    );
    let pos: mariadb::GtidPos = "0-1-1".parse().unwrap();
    let w = maria_10_11().wait_for_position(&BinlogPosition::new("a'b", 4), Duration::ZERO);
    assert_eq!(w.sql, "SELECT MASTER_POS_WAIT('a''b', 4, 1)");
    assert_eq!(
        maria_10_11().start_replica_until_gtid(&pos).unwrap()[1].sql,
        "START SLAVE UNTIL master_gtid_pos='0-1-1'"
    );
}

#[test]
fn hostile_passwords_never_leak() {
    for password in HOSTILE.iter().filter(|p| p.len() >= 4) {
        for (name, d) in all() {
            for start in [
                SourceStart::Gtid,
                file(),
                at(),
                SourceStart::DemoteToReplica,
            ] {
                for mut s in [spec(start.clone()), rds_spec(start.clone())] {
                    s.password = password.to_string();
                    let Ok(stmts) = d.point_replica_at(&s) else {
                        continue;
                    };
                    let change = stmts
                        .iter()
                        .find(|st| st.sql != st.redacted)
                        .unwrap_or_else(|| panic!("{name}: no statement holds the password"));
                    assert!(change.sql.contains(&quote_literal(password)), "{name}");
                    assert!(change.redacted.contains(REDACTED), "{name}");
                    assert!(
                        !change.redacted.contains(&quote_literal(password)),
                        "{name}"
                    );
                    assert_redacted(&stmts, password);
                    // Only the password literal differs between the two forms.
                    assert_eq!(
                        change.sql.replacen(&quote_literal(password), REDACTED, 1),
                        change.redacted,
                        "{name}"
                    );
                }
            }
        }
    }
}

#[test]
fn debug_of_a_spec_hides_the_password() {
    let s = spec(SourceStart::Gtid);
    let shown = format!("{s:?}");
    assert!(!shown.contains(PW), "{shown}");
    assert!(shown.contains("password: \"***\""), "{shown}");
    assert!(shown.contains("db-1.example"), "{shown}");
}

#[test]
fn statement_display_and_debug_show_the_redacted_form() {
    let st = Statement::with_secret(PW, |p| format!("SET PASSWORD = {p}"));
    assert_eq!(st.sql, "SET PASSWORD = 'hunter2-Secret'");
    assert_eq!(st.redacted, "SET PASSWORD = '***'");
    assert_eq!(st.to_string(), "SET PASSWORD = '***'");
    assert_eq!(format!("{st:?}"), "Statement(\"SET PASSWORD = '***'\")");
    let plain = Statement::plain("SELECT 1");
    assert_eq!(plain.sql, plain.redacted);
    assert_eq!(plain.to_string(), "SELECT 1");
}
