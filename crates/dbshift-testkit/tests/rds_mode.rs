//! The RDS-mode lab (`lab up --rds-mode`) on real servers: dbshift's admin user is an RDS
//! master user (no SUPER, no READ_ONLY ADMIN), replication and other sessions change only
//! through the `mysql.rds_*` procedures (called with the SQL the dialect generates), the
//! platform's `read_only` fences the writer, and nothing the lab or a procedure does creates a
//! GTID. Run with `make test`, or `cargo test -p dbshift-testkit --test rds_mode`.
//!
//! One lab (a writer and a replica) serves the whole file; the tests take turns on it (they
//! fence the writer and re-point the replica) and each leaves it replicating and writable.

use dbshift_testkit::eventually;
use std::time::{Duration, Instant};

use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::{mariadb, Server};
use dbshift_provider::local::{rds, Lab, UpOptions};
use dbshift_provider::{Error, Fleet, InstanceControl, Provider};
use dbshift_testkit::TestLab;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

const WRITER: &str = "lab-1-1";
const REPLICA: &str = "lab-1-2";

/// The shared lab, built once; its GTID histories and replication are checked right after
/// `lab up`, before any test writes or re-points.
async fn lab() -> (&'static Lab, MutexGuard<'static, ()>) {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    static TURN: Mutex<()> = Mutex::const_new(());
    let t = LAB
        .get_or_init(|| async {
            let t = TestLab::start_rds(1, 1).await;
            for id in [WRITER, REPLICA] {
                let mut s = t.lab().connect_admin(id).await.unwrap();
                assert!(
                    s.gtid_binlog_pos().await.unwrap().is_empty(),
                    "{id}: lab up created a GTID"
                );
                assert!(s.gtid_slave_pos().await.unwrap().is_empty(), "{id}");
                s.close().await;
            }
            // The platform built replication as the default lab does, over verified TLS,
            // which the procedures could not have done.
            let mut r = t.lab().connect_admin(REPLICA).await.unwrap();
            let st = r.replication_status().await.unwrap();
            assert!(st.healthy(), "{st:?}");
            assert_eq!(st.ssl_verify_server_cert, Some(true));
            r.close().await;
            let mut w = t.lab().connect_admin(WRITER).await.unwrap();
            w.exec_sql("CREATE TABLE app.rds_rows (id INT PRIMARY KEY, v VARCHAR(20))")
                .await
                .unwrap();
            w.close().await;
            t
        })
        .await;
    (t.lab(), TURN.lock().await)
}

async fn connect(lab: &Lab, id: &str, user: &str, password: &str) -> Server {
    let port = lab.state().instance(id).unwrap().port;
    let opts = ConnectOptions::new("127.0.0.1", port, user)
        .password(password)
        .tls(TlsOptions {
            ca_path: lab.ca_bundle(),
            verify_identity: true,
        });
    Server::connect(&opts).await.unwrap()
}

async fn app(lab: &Lab, id: &str) -> Server {
    Server::connect(&lab.app_options(id).unwrap())
        .await
        .unwrap()
}

/// The platform's superuser, for injecting faults as a human with root would.
async fn platform(lab: &Lab, id: &str) -> Server {
    let cred = lab
        .state()
        .platform
        .clone()
        .expect("an RDS lab has a platform user");
    connect(lab, id, &cred.user, &cred.password).await
}

/// Run a statement that must fail, and return the server's error code.
async fn refused(s: &mut Server, sql: &str) -> u16 {
    let err = s.exec_sql(sql).await.expect_err(sql);
    err.server_code().unwrap_or_else(|| panic!("{sql}: {err}"))
}

async fn gtid_binlog_pos(lab: &Lab, id: &str) -> mariadb::GtidPos {
    let mut s = lab.connect_admin(id).await.unwrap();
    let pos = s.gtid_binlog_pos().await.unwrap();
    s.close().await;
    pos
}

/// Insert a row on the writer as the application; returns the writer's position after it.
async fn write_row(lab: &Lab, id: i32, v: &str) -> mariadb::GtidPos {
    let mut w = app(lab, WRITER).await;
    w.exec_sql(&format!(
        "INSERT INTO app.rds_rows VALUES ({id}, '{v}') ON DUPLICATE KEY UPDATE v=VALUES(v)"
    ))
    .await
    .unwrap();
    w.close().await;
    gtid_binlog_pos(lab, WRITER).await
}

/// Wait until the replica has applied `pos` and holds the row.
async fn assert_replicated(lab: &Lab, pos: &mariadb::GtidPos, id: i32, v: &str) {
    let mut r = lab.connect_admin(REPLICA).await.unwrap();
    r.wait_for_gtid(pos, Duration::from_secs(20)).await.unwrap();
    let got = r
        .query_scalar(&format!("SELECT v FROM app.rds_rows WHERE id={id}"))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(v));
    r.close().await;
}

/// The replica's status as the admin user sees it (through `mysql.rds_replica_status`),
/// once both threads run.
async fn wait_healthy(lab: &Lab) -> dbshift_db::ReplicationStatus {
    let mut r = lab.connect_admin(REPLICA).await.unwrap();
    let st = eventually!(Duration::from_secs(20), "replication to run", {
        let st = r.replication_status().await.unwrap();
        st.healthy().then_some(st)
    });
    r.close().await;
    st
}

fn source_spec(lab: &Lab, start: SourceStart) -> SourceSpec {
    let repl = lab.credentials().unwrap().replication;
    SourceSpec {
        host: "127.0.0.1".into(),
        port: lab.state().instance(WRITER).unwrap().port,
        user: repl.user,
        password: repl.password,
        start,
        // What the procedures can do: TLS, no CA file, no certificate check.
        ssl: Some(SslSpec {
            ca_path: None,
            verify_server_cert: false,
        }),
        connect_retry_s: None,
        heartbeat_period_ms: None,
    }
}

#[tokio::test]
async fn the_admin_user_is_an_rds_master_user() {
    let (lab, _turn) = lab().await;
    assert!(lab.rds_mode());
    assert!(lab.status().rds_mode);
    let creds = lab.credentials().unwrap();
    for c in [&creds.admin, &creds.replication, &creds.app] {
        assert_ne!(
            c.user,
            rds::PLATFORM_USER,
            "the platform leaked to workflows"
        );
    }

    for id in [WRITER, REPLICA] {
        let mut s = lab.connect_admin(id).await.unwrap();
        let before = s.gtid_binlog_pos().await.unwrap();
        let flavor = s.flavor().clone();
        assert!(flavor.rds && !flavor.has_super, "{id}: {flavor:?}");
        assert!(flavor.needs_rds_procedures());
        assert!(flavor.needs_rds_replica_status());
        for p in [
            "SUPER",
            "READ_ONLY ADMIN",
            "REPLICATION SLAVE ADMIN",
            "CONNECTION ADMIN",
            "SLAVE MONITOR",
            "BINLOG ADMIN",
            "SET USER",
        ] {
            assert!(!s.has_privilege(p).await.unwrap(), "{id}: admin has {p}");
        }
        assert!(s.has_privilege("EXECUTE").await.unwrap());
        assert!(s.has_privilege("BINLOG MONITOR").await.unwrap());

        // 1227: access denied, you need SUPER / READ_ONLY ADMIN / REPLICATION SLAVE ADMIN.
        assert_eq!(refused(&mut s, "SET GLOBAL read_only=ON").await, 1227);
        assert_eq!(refused(&mut s, "SET GLOBAL read_only=OFF").await, 1227);
        assert_eq!(
            refused(&mut s, "CHANGE MASTER TO MASTER_HOST='127.0.0.1'").await,
            1227
        );
        assert_eq!(refused(&mut s, "STOP SLAVE").await, 1227);
        assert_eq!(refused(&mut s, "SHOW SLAVE STATUS").await, 1227);
        assert_eq!(refused(&mut s, "SET GLOBAL gtid_slave_pos=''").await, 1227);
        // Nor can the admin make a routine run as the definer.
        assert_eq!(
            refused(
                &mut s,
                "CREATE DEFINER='rdsadmin'@'localhost' PROCEDURE app.escalate() SELECT 1"
            )
            .await,
            1227
        );

        // Each procedure exists, belongs to the definer and runs as it.
        let rows = s
            .query_rows(
                "SELECT ROUTINE_NAME, DEFINER, SECURITY_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA='mysql' AND ROUTINE_NAME LIKE 'rds\\_%' \
                 ORDER BY ROUTINE_NAME",
            )
            .await
            .unwrap();
        let mut names: Vec<String> = Vec::new();
        for row in &rows {
            assert_eq!(row[1].1.as_deref(), Some("rdsadmin@localhost"), "{row:?}");
            assert_eq!(row[2].1.as_deref(), Some("DEFINER"), "{row:?}");
            names.extend(row[0].1.clone());
        }
        let mut want: Vec<String> = rds::PROCEDURES.iter().map(|p| p.to_string()).collect();
        want.sort();
        assert_eq!(names, want);

        // Configuration, and a status that can be read without SLAVE MONITOR.
        s.exec_sql("CALL mysql.rds_set_configuration('binlog retention hours', 24)")
            .await
            .unwrap();
        assert_eq!(
            s.variable("binlog_expire_logs_seconds")
                .await
                .unwrap()
                .as_deref(),
            Some("86400")
        );
        let conf = s
            .query_rows("CALL mysql.rds_show_configuration")
            .await
            .unwrap();
        assert_eq!(conf[0][0].1.as_deref(), Some("binlog retention hours"));
        assert_eq!(conf[0][1].1.as_deref(), Some("24"));
        // 1644: an error signalled by the procedure.
        assert_eq!(
            refused(
                &mut s,
                "CALL mysql.rds_set_configuration('target delay', 1)"
            )
            .await,
            1644
        );
        s.exec_sql("CALL mysql.rds_set_configuration('binlog retention hours', NULL)")
            .await
            .unwrap();
        let st = s.replication_status().await.unwrap();
        if id == REPLICA {
            assert!(st.healthy(), "{st:?}");
            assert_eq!(
                refused(&mut s, "CALL mysql.rds_skip_repl_error").await,
                1644
            );
        } else {
            assert!(!st.configured, "{st:?}");
        }
        assert_eq!(
            s.gtid_binlog_pos().await.unwrap(),
            before,
            "{id}: a procedure created a GTID"
        );
        s.close().await;
    }

    // Asked for the default mode, the lab refuses and changes nothing.
    let err = Lab::up(
        lab.dir(),
        &UpOptions {
            die_with_parent: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    assert!(err.to_string().contains("--rds-mode"), "{err}");
}

#[tokio::test]
async fn replication_is_stopped_reset_and_pointed_again_through_the_procedures() {
    let (lab, _turn) = lab().await;
    let pos = write_row(lab, 1, "before").await;
    assert_replicated(lab, &pos, 1, "before").await;

    let mut r = lab.connect_admin(REPLICA).await.unwrap();
    let replica_binlog = r.gtid_binlog_pos().await.unwrap();
    r.stop_replication().await.unwrap();
    let st = r.replication_status().await.unwrap();
    assert!(st.configured && !st.sql_running, "{st:?}");
    r.reset_replication().await.unwrap();
    assert!(!r.replication_status().await.unwrap().configured);

    // Written while the replica has no source: it must arrive once replication resumes.
    let pos = write_row(lab, 2, "detached").await;

    // Point it again by GTID position, with the SQL the dialect generates for RDS MariaDB.
    let at = r.gtid_slave_pos().await.unwrap();
    let spec = source_spec(lab, SourceStart::GtidAt(at.clone()));
    let stmts = r.dialect().point_replica_at(&spec).unwrap();
    let sql: Vec<&str> = stmts.iter().map(|s| s.redacted.as_str()).collect();
    assert_eq!(sql[0], "CALL mysql.rds_stop_replication");
    assert!(
        sql[1].starts_with("CALL mysql.rds_set_external_master_gtid("),
        "{sql:?}"
    );
    assert_eq!(sql[2], "CALL mysql.rds_start_replication");
    r.point_replica_at(&spec).await.unwrap();
    r.close().await;

    let st = wait_healthy(lab).await;
    assert_eq!(st.using_gtid.as_deref(), Some("Slave_Pos"));
    assert_eq!(st.ssl, Some(true));
    assert_eq!(st.ssl_verify_server_cert, Some(false));
    assert_replicated(lab, &pos, 2, "detached").await;
    let pos = write_row(lab, 3, "after").await;
    assert_replicated(lab, &pos, 3, "after").await;

    // By binlog file and offset (rds_set_external_master), then back to GTID.
    let mut w = lab.connect_admin(WRITER).await.unwrap();
    let file_pos = w
        .binlog_position()
        .await
        .unwrap()
        .expect("the writer binlogs");
    w.close().await;
    let mut r = lab.connect_admin(REPLICA).await.unwrap();
    r.point_replica_at(&source_spec(lab, SourceStart::File(file_pos)))
        .await
        .unwrap();
    r.close().await;
    let st = wait_healthy(lab).await;
    assert_eq!(st.using_gtid.as_deref(), Some("No"));
    let pos = write_row(lab, 4, "by file").await;
    assert_replicated(lab, &pos, 4, "by file").await;

    let mut r = lab.connect_admin(REPLICA).await.unwrap();
    let at = r.gtid_slave_pos().await.unwrap();
    r.point_replica_at(&source_spec(lab, SourceStart::GtidAt(at)))
        .await
        .unwrap();
    // None of it was written to the replica's own binlog except what it replicated.
    let state = r.gtid_binlog_state().await.unwrap();
    r.close().await;
    wait_healthy(lab).await;
    let pos = write_row(lab, 5, "by gtid").await;
    assert_replicated(lab, &pos, 5, "by gtid").await;
    assert_only_the_writer_wrote(lab).await;
    assert!(
        !state.to_string().contains("-102-"),
        "the replica wrote: {state} (was {replica_binlog})"
    );
}

#[tokio::test]
async fn rds_kill_ends_another_users_session() {
    let (lab, _turn) = lab().await;
    let before = gtid_binlog_pos(lab, WRITER).await;
    let mut admin = lab.connect_admin(WRITER).await.unwrap();

    let mut victim = app(lab, WRITER).await;
    let id = victim.connection_id();
    // 1095: you are not owner of thread: KILL itself is refused without CONNECTION ADMIN.
    assert_eq!(
        refused(&mut admin, &format!("KILL CONNECTION {id}")).await,
        1095
    );
    let kill = admin.dialect().kill_connection(id.into());
    assert_eq!(kill.sql, format!("CALL mysql.rds_kill({id})"));
    admin.exec(&kill).await.unwrap();
    assert!(
        victim.query_scalar("SELECT 1").await.is_err(),
        "the killed session still answers"
    );

    // rds_kill_query ends the statement and leaves the session.
    let mut sleeper = app(lab, WRITER).await;
    let sleeper_id = sleeper.connection_id();
    let sleeping = tokio::spawn(async move {
        let started = Instant::now();
        let r = sleeper.query_scalar("SELECT SLEEP(30)").await;
        (started.elapsed(), r.is_ok(), sleeper)
    });
    let mut waits = 0;
    while admin
        .query_scalar(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID={sleeper_id} \
             AND INFO LIKE 'SELECT SLEEP%'"
        ))
        .await
        .unwrap()
        .as_deref()
        != Some("1")
    {
        waits += 1;
        assert!(waits < 200, "the sleep never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    admin
        .exec_sql(&format!("CALL mysql.rds_kill_query({sleeper_id})"))
        .await
        .unwrap();
    let (took, _, mut sleeper) = sleeping.await.unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        sleeper.query_scalar("SELECT 1").await.unwrap().as_deref(),
        Some("1")
    );
    sleeper.close().await;

    // The platform's own sessions are out of reach, as rdsadmin's are on RDS.
    let plat = platform(lab, WRITER).await;
    assert_eq!(
        refused(
            &mut admin,
            &format!("CALL mysql.rds_kill({})", plat.connection_id())
        )
        .await,
        1644
    );
    plat.close().await;
    admin.close().await;
    assert_eq!(gtid_binlog_pos(lab, WRITER).await, before);
}

/// Until `id`'s `read_only` is `on`.
async fn wait_read_only(lab: &Lab, id: &str, on: bool) {
    eventually(
        Duration::from_secs(10),
        "the read_only parameter applied",
        || async move {
            let mut admin = lab.connect_admin(id).await.map_err(|e| e.to_string())?;
            let now = admin.read_only().await.map_err(|e| e.to_string());
            admin.close().await;
            match now? {
                now if now == on => Ok(()),
                now => Err(format!("read_only={now}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_parameter_group_fences_the_writer_and_survives_a_restart() {
    let (lab, _turn) = lab().await;
    let provider: &dyn Provider = lab;
    provider.set_read_only(WRITER, true).await.unwrap();
    // As on RDS, the parameter reaches the server after the call returns.
    wait_read_only(lab, WRITER, true).await;

    let mut a = app(lab, WRITER).await;
    // 1290: the server runs with --read-only.
    assert_eq!(
        refused(&mut a, "INSERT INTO app.rds_rows VALUES (100, 'fenced')").await,
        1290
    );
    let mut admin = lab.connect_admin(WRITER).await.unwrap();
    assert!(admin.read_only().await.unwrap());
    // The admin holds no READ_ONLY ADMIN: read_only stops it too, and it cannot lift it.
    assert_eq!(
        refused(
            &mut admin,
            "INSERT INTO app.rds_rows VALUES (101, 'fenced')"
        )
        .await,
        1290
    );
    assert_eq!(refused(&mut admin, "SET GLOBAL read_only=OFF").await, 1227);
    // The dialect knows: it refuses rather than sending what the server would deny.
    let err = admin.set_writable().await.unwrap_err();
    assert!(
        matches!(err, dbshift_db::Error::Unsupported { .. }),
        "{err}"
    );
    admin.close().await;
    a.close().await;

    // A parameter group outlives a reboot: the writer comes back fenced.
    let tied = dbshift_testkit::tied(lab);
    tied.reboot(WRITER, Duration::from_secs(60)).await.unwrap();
    let mut admin = lab.connect_admin(WRITER).await.unwrap();
    assert!(
        admin.read_only().await.unwrap(),
        "the reboot lifted the fence"
    );
    admin.close().await;

    provider.set_read_only(WRITER, false).await.unwrap();
    wait_read_only(lab, WRITER, false).await;
    let pos = write_row(lab, 102, "unfenced").await;
    assert_replicated(lab, &pos, 102, "unfenced").await;
    wait_healthy(lab).await;
}

#[tokio::test]
async fn rds_skip_repl_error_skips_one_failed_transaction() {
    let (lab, _turn) = lab().await;
    // A conflicting row planted on the replica by hand, outside the binlog.
    let mut p = platform(lab, REPLICA).await;
    p.exec_sql("SET SESSION sql_log_bin=0").await.unwrap();
    p.exec_sql("INSERT INTO app.rds_rows VALUES (200, 'planted')")
        .await
        .unwrap();
    p.close().await;

    let mut w = app(lab, WRITER).await;
    w.exec_sql("INSERT INTO app.rds_rows VALUES (200, 'writer')")
        .await
        .unwrap();
    w.close().await;
    let mut r = lab.connect_admin(REPLICA).await.unwrap();
    let st = eventually!(Duration::from_secs(20), "the duplicate-key error", {
        let st = r.replication_status().await.unwrap();
        (!st.sql_running && st.last_sql_error.is_some()).then_some(st)
    });
    assert_eq!(
        st.last_sql_error.as_ref().map(|e| e.0),
        Some(1062),
        "{st:?}"
    );
    r.exec_sql("CALL mysql.rds_skip_repl_error").await.unwrap();
    r.close().await;
    wait_healthy(lab).await;
    let pos = write_row(lab, 201, "after skip").await;
    assert_replicated(lab, &pos, 201, "after skip").await;
    assert_only_the_writer_wrote(lab).await;
}

/// Every GTID on every server was written by the writer (server_id 101) in the cluster's
/// domain: nothing the lab or a procedure did wrote a transaction of its own.
async fn assert_only_the_writer_wrote(lab: &Lab) {
    let writer_id = lab.state().instance(WRITER).unwrap().server_id;
    for id in [WRITER, REPLICA] {
        let mut s = lab.connect_admin(id).await.unwrap();
        let state = s.gtid_binlog_state().await.unwrap();
        s.close().await;
        for g in state.to_string().split(',').filter(|g| !g.is_empty()) {
            let parts: Vec<&str> = g.split('-').collect();
            assert_eq!(
                (parts[0], parts[1]),
                ("1", writer_id.to_string().as_str()),
                "{id}: GTID {g} was not written by the writer ({state})"
            );
        }
    }
}
