//! The database layer on real MariaDB: flavor detection, positions, waits with deadlines,
//! fences, pointing replicas, errant transactions. These tests change replication roles, so
//! they run one at a time on this binary's own lab. Run with `make test`.

use std::time::{Duration, Instant};

use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::mariadb::GtidPos;
use dbshift_db::server::FenceOptions;
use dbshift_db::{Error, Server};
use dbshift_provider::local::Lab;
use dbshift_testkit::shared_lab;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn ids(lab: &Lab) -> (String, String, String) {
    let c = &lab.state().clusters[0];
    let readers: Vec<String> = lab
        .state()
        .instances_of(&c.name)
        .filter(|i| i.id != c.writer)
        .map(|i| i.id.clone())
        .collect();
    (c.writer.clone(), readers[0].clone(), readers[1].clone())
}

fn source_spec(lab: &Lab, source: &str, start: SourceStart) -> SourceSpec {
    SourceSpec {
        host: "127.0.0.1".into(),
        port: lab.state().instance(source).unwrap().port,
        user: lab.state().users.replication.user.clone(),
        password: lab.state().users.replication.password.clone(),
        start,
        ssl: Some(SslSpec {
            ca_path: Some(lab.ca_bundle().display().to_string()),
            verify_server_cert: true,
        }),
        connect_retry_s: Some(1),
        heartbeat_period_ms: None,
    }
}

#[tokio::test]
async fn flavor_and_positions_of_a_real_mariadb() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, r1, _) = ids(lab);
    let mut writer = lab.connect_admin(&w).await.unwrap();
    assert!(writer.flavor().is_mariadb());
    assert!(writer.flavor().at_least(10, 0, 0));
    assert!(writer.flavor().to_string().contains("MariaDB"));
    assert!(writer.has_privilege("SUPER").await.unwrap());

    writer
        .exec_sql("CREATE TABLE IF NOT EXISTS app.pos (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await
        .unwrap();
    writer
        .exec_sql("INSERT INTO app.pos (v) VALUES (1)")
        .await
        .unwrap();
    let pos = writer.gtid_binlog_pos().await.unwrap();
    let domain = lab.state().clusters[0].gtid_domain_id;
    assert!(pos.get(domain).is_some(), "{pos}");
    let file_pos = writer
        .binlog_position()
        .await
        .unwrap()
        .expect("binlog is on");
    assert!(file_pos.file.starts_with("binlog."), "{file_pos}");

    let mut replica = lab.connect_admin(&r1).await.unwrap();
    replica
        .wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();
    replica
        .wait_for_position(&file_pos, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(replica.gtid_slave_pos().await.unwrap().behind(&pos), 0);

    // A position nobody has written yet: the wait ends at its deadline with a Timeout.
    let future: GtidPos = format!(
        "{domain}-{}-{}",
        writer.server_id(),
        pos.get(domain).unwrap().seq + 1000
    )
    .parse()
    .unwrap();
    let started = Instant::now();
    let err = replica
        .wait_for_gtid(&future, Duration::from_millis(700))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(started.elapsed() < Duration::from_secs(5));

    // The writer's binlog state is contained in the replica's once it caught up.
    let ws = writer.gtid_binlog_state().await.unwrap();
    let rs = replica.gtid_binlog_state().await.unwrap();
    assert!(rs.contains(&ws), "replica {rs} must contain writer {ws}");
    assert!(rs.errant_against(&ws).is_empty());
    writer.close().await;
    replica.close().await;
}

#[tokio::test]
async fn errant_transactions_are_found_in_binlog_state() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, _, r2) = ids(lab);
    let mut writer = lab.connect_admin(&w).await.unwrap();
    let mut replica = lab.connect_admin(&r2).await.unwrap();
    // The admin user writes through read_only; in a domain of its own so that replication
    // from the writer (strict mode) is not disturbed.
    replica
        .exec_sql("SET SESSION gtid_domain_id=77")
        .await
        .unwrap();
    replica
        .exec_sql("CREATE TABLE IF NOT EXISTS app.errant_here (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let ws = writer.gtid_binlog_state().await.unwrap();
    let rs = replica.gtid_binlog_state().await.unwrap();
    let errant = rs.errant_against(&ws);
    assert!(
        errant
            .iter()
            .any(|g| g.domain == 77 && g.server_id == replica.server_id()),
        "{errant:?}"
    );
    assert!(!rs.contains(&ws) || !ws.contains(&rs));
    writer.close().await;
    replica.close().await;
}

#[tokio::test]
async fn fence_stops_app_writes_ends_privileged_sessions_and_unfences() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, _, _) = ids(lab);
    let mut admin = lab.connect_admin(&w).await.unwrap();
    admin
        .exec_sql("CREATE TABLE IF NOT EXISTS app.fence (id INT PRIMARY KEY AUTO_INCREMENT)")
        .await
        .unwrap();
    admin
        .exec_sql("SET GLOBAL event_scheduler=ON")
        .await
        .unwrap();
    let mut app = Server::connect(&lab.app_options(&w).unwrap())
        .await
        .unwrap();
    app.exec_sql("INSERT INTO app.fence VALUES ()")
        .await
        .unwrap();
    let mut other_admin = lab.connect_admin(&w).await.unwrap();
    let other_id = other_admin.connection_id();

    let fence = admin.fence_writes(&FenceOptions::default()).await.unwrap();
    assert_eq!(fence.event_scheduler_before, "ON");
    assert!(!fence.was_read_only);
    assert!(
        fence
            .killed_sessions
            .iter()
            .any(|(id, _)| *id == other_id as u64),
        "{:?}",
        fence.killed_sessions
    );
    assert!(admin.read_only().await.unwrap());
    assert_eq!(
        admin.variable("event_scheduler").await.unwrap().as_deref(),
        Some("OFF")
    );
    let err = app
        .exec_sql("INSERT INTO app.fence VALUES ()")
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(1290), "{err}");
    assert!(
        other_admin.exec_sql("SELECT 1").await.is_err(),
        "privileged session must be ended"
    );

    admin.unfence_writes(&fence).await.unwrap();
    assert!(!admin.read_only().await.unwrap());
    assert_eq!(
        admin.variable("event_scheduler").await.unwrap().as_deref(),
        Some("ON")
    );
    app.exec_sql("INSERT INTO app.fence VALUES ()")
        .await
        .unwrap();
    admin
        .exec_sql("SET GLOBAL event_scheduler=OFF")
        .await
        .unwrap();
    admin.close().await;
    app.close().await;
}

#[tokio::test]
async fn point_replica_by_file_position_then_back_to_gtid() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, r1, _) = ids(lab);
    let mut writer = lab.connect_admin(&w).await.unwrap();
    let mut replica = lab.connect_admin(&r1).await.unwrap();
    writer
        .exec_sql("CREATE TABLE IF NOT EXISTS app.filepos (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = writer.gtid_binlog_pos().await.unwrap();
    replica
        .wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();

    // Detach, then attach by file/position from exactly where the writer is now.
    replica.reset_replication().await.unwrap();
    assert!(!replica.replication_status().await.unwrap().configured);
    let file_pos = writer.binlog_position().await.unwrap().unwrap();
    replica
        .point_replica_at(&source_spec(lab, &w, SourceStart::File(file_pos.clone())))
        .await
        .unwrap();
    writer
        .exec_sql("INSERT INTO app.filepos VALUES (1)")
        .await
        .unwrap();
    let after = writer.binlog_position().await.unwrap().unwrap();
    replica
        .wait_for_position(&after, Duration::from_secs(10))
        .await
        .unwrap();
    let st = replica.replication_status().await.unwrap();
    assert!(st.healthy(), "{st:?}");
    assert_eq!(st.using_gtid.as_deref(), Some("No"));
    assert_eq!(
        replica
            .query_scalar("SELECT COUNT(*) FROM app.filepos")
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );

    // Back to GTID: the lab's normal state, which the other tests expect.
    replica
        .point_replica_at(&source_spec(lab, &w, SourceStart::Gtid))
        .await
        .unwrap();
    writer
        .exec_sql("INSERT INTO app.filepos VALUES (2)")
        .await
        .unwrap();
    let pos = writer.gtid_binlog_pos().await.unwrap();
    replica
        .wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();
    let st = replica.replication_status().await.unwrap();
    assert!(st.healthy(), "{st:?}");
    assert_eq!(st.using_gtid.as_deref(), Some("Slave_Pos"));
    writer.close().await;
    replica.close().await;
}

#[tokio::test]
async fn waiting_on_a_stopped_replica_fails_clearly() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, r1, _) = ids(lab);
    let mut writer = lab.connect_admin(&w).await.unwrap();
    let mut replica = lab.connect_admin(&r1).await.unwrap();
    replica.stop_replication().await.unwrap();
    writer
        .exec_sql("CREATE TABLE IF NOT EXISTS app.stopped (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = writer.gtid_binlog_pos().await.unwrap();
    let err = replica
        .wait_for_gtid(&pos, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. } | Error::State { .. }),
        "{err}"
    );
    replica.start_replication().await.unwrap();
    replica
        .wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();
    writer.close().await;
    replica.close().await;
}
