//! Hot snapshots and restores on real servers: a replica's backup under a write load, restored
//! as an encrypted green on another server binary path, continues from exactly the writer's
//! position it recorded: no row twice, none missing, no replication error. Run with
//! `make test`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::Server;
use dbshift_provider::local::snapshot::RestoreOptions;
use dbshift_provider::local::{find_mariadbd, Lab, LabState, LabUsers};
use dbshift_provider::{Credential, Error, Fleet};
use dbshift_testkit::{eventually, init, TestLab};

const TABLE: &str = "app.snap_load";
/// Rows and their content, so a row applied twice or skipped shows.
const SUMMARY: &str =
    "SELECT CONCAT(COUNT(*), '/', COUNT(DISTINCT id), '/', COALESCE(SUM(id), 0), \
                       '/', COALESCE(SUM(CRC32(v)), 0)) FROM app.snap_load";

async fn scalar(server: &mut Server, sql: &str) -> String {
    server
        .query_scalar(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_snapshot_restored_as_encrypted_green_continues_exactly_from_the_writer() {
    let tl = TestLab::start(1, 1).await;
    let blue = tl.lab().clone();
    let blue_writer_id = blue.state().clusters[0].writer.clone();
    let blue_replica_id = "lab-1-2";
    let mut writer = blue.connect_admin(&blue_writer_id).await.unwrap();
    writer
        .exec_sql(&format!(
            "CREATE TABLE {TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40) NOT NULL)"
        ))
        .await
        .unwrap();

    // A steady write load on blue's writer, as the application.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let opts = blue.app_options(&blue_writer_id).unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut app = Server::connect(&opts).await.expect("the app user connects");
            let mut n: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                app.exec_sql(&format!("INSERT INTO {TABLE} (v) VALUES ('row {n}')"))
                    .await
                    .expect("a load insert");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            app.close().await;
            n
        })
    };
    eventually!(
        Duration::from_secs(30),
        "the load to write rows",
        scalar(&mut writer, "SELECT COUNT(*) FROM app.snap_load")
            .await
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 100)
    );

    let work = tempfile::tempdir().unwrap();
    let before = writer.gtid_binlog_pos().await.unwrap();
    let snap = blue
        .snapshot(blue_replica_id, &work.path().join("snap"))
        .await
        .unwrap();
    let after = writer.gtid_binlog_pos().await.unwrap();
    assert!(snap.from_replica);
    assert_eq!(snap.taken_on, blue_replica_id);
    assert!(snap.dir.join("xtrabackup_slave_info").is_file());
    // The writer's position, not the replica's own: the replica writes nothing itself here,
    // so the two agree in seq, but the position must lie between before and after.
    assert!(
        before.reached_by(&snap.source_position),
        "snapshot position {} is before the position read before the backup {before}",
        snap.source_position
    );
    assert!(
        snap.source_position.reached_by(&after),
        "snapshot position {} is beyond the writer's {after}",
        snap.source_position
    );
    let domain = blue.state().clusters[0].gtid_domain_id;
    assert_eq!(
        snap.source_position.get(domain).map(|g| g.server_id),
        Some(blue.state().instance(&blue_writer_id).unwrap().server_id),
        "the position names the writer's transactions"
    );

    // Green runs "another" server binary: the same one at another path.
    let engine = work.path().join("engine").join("mariadbd");
    std::fs::create_dir_all(engine.parent().unwrap()).unwrap();
    std::fs::copy(find_mariadbd(None).unwrap(), &engine).unwrap();
    blue.restore_cluster(
        &snap,
        "green",
        1,
        RestoreOptions {
            encrypt: true,
            engine_binary: Some(engine.clone()),
            consume_snapshot: true,
        },
    )
    .await
    .unwrap();
    let mut lab = blue.clone();
    lab.reload().unwrap();
    let green = lab.state().cluster("green").unwrap().clone();
    assert_eq!(green.writer, "green-1");
    assert_eq!(green.gtid_domain_id, domain);
    let green_ids: Vec<String> = lab
        .state()
        .instances_of("green")
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(green_ids, vec!["green-1", "green-2"]);
    for id in &green_ids {
        // mariadb-upgrade ran against the other binary (it leaves its marker in the datadir).
        assert!(
            lab.paths(id).data().join("mysql_upgrade_info").is_file(),
            "{id}: mariadb-upgrade did not run"
        );
        let inst = lab.describe_instance(id).await.unwrap();
        assert!(inst.encrypted, "{id} must be listed encrypted");
        assert_eq!(lab.state().instance(id).unwrap().engine_binary, engine);
    }
    assert_eq!(
        lab.resolve("green").await.unwrap().port,
        lab.state().instance("green-1").unwrap().port
    );

    // Green's writer starts read-only and replicates from nowhere until pointed at blue.
    let mut gw = lab.connect_admin("green-1").await.unwrap();
    assert!(gw.read_only().await.unwrap());
    assert!(!gw.replication_status().await.unwrap().configured);
    let blue_port = lab.state().instance(&blue_writer_id).unwrap().port;
    let creds = lab.credentials().unwrap();
    gw.point_replica_at(&SourceSpec {
        host: "127.0.0.1".into(),
        port: blue_port,
        user: creds.replication.user.clone(),
        password: creds.replication.password.clone(),
        start: SourceStart::GtidAt(snap.source_position.clone()),
        ssl: Some(SslSpec {
            ca_path: Some(lab.ca_bundle().display().to_string()),
            verify_server_cert: true,
        }),
        connect_retry_s: Some(1),
        heartbeat_period_ms: None,
    })
    .await
    .unwrap();

    // Green applies blue's writes while the load goes on; then the load stops.
    eventually!(
        Duration::from_secs(30),
        "green's writer to apply writes made after the snapshot",
        {
            let pos = gw.gtid_slave_pos().await.unwrap();
            (!pos.reached_by(&snap.source_position)).then_some(())
        }
    );
    stop.store(true, Ordering::SeqCst);
    let written = load.await.unwrap();
    let final_pos = writer.gtid_binlog_pos().await.unwrap();
    let blue_summary = scalar(&mut writer, SUMMARY).await;
    assert!(
        blue_summary.starts_with(&format!("{written}/{written}/")),
        "{blue_summary}"
    );
    let blue_checksum = scalar(&mut writer, "CHECKSUM TABLE app.snap_load").await;

    let mut green_servers = Vec::new();
    for id in &green_ids {
        let mut s = lab.connect_admin(id).await.unwrap();
        eventually!(Duration::from_secs(60), format!("{id} to catch up"), {
            let st = s.replication_status().await.unwrap();
            assert!(
                st.last_sql_error.is_none() && st.last_io_error.is_none(),
                "{id}: replication error {st:?}"
            );
            let pos = s.gtid_slave_pos().await.unwrap();
            final_pos.reached_by(&pos).then_some(())
        });
        let st = s.replication_status().await.unwrap();
        assert!(st.healthy(), "{id}: {st:?}");
        assert_eq!(st.ssl_verify_server_cert, Some(true), "{id}");
        assert_eq!(scalar(&mut s, SUMMARY).await, blue_summary, "{id}");
        assert_eq!(
            scalar(&mut s, "CHECKSUM TABLE app.snap_load").await,
            blue_checksum,
            "{id}"
        );
        assert_eq!(
            s.variable("gtid_domain_id").await.unwrap(),
            Some(domain.to_string())
        );
        assert!(s.read_only().await.unwrap(), "{id} must stay read-only");
        green_servers.push(s);
    }

    // Fresh, distinct server_ids.
    let mut ids: Vec<u32> = lab.state().instances.iter().map(|i| i.server_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), lab.state().instances.len(), "server_ids {ids:?}");
    for s in &green_servers {
        assert!(s.server_id() > 200, "{}", s.server_id());
    }

    // Every tablespace on green ends up encrypted (the temporary tablespace, remade at each
    // start and encrypted by `innodb_encrypt_temporary_tables`, is never listed in
    // INNODB_TABLESPACES_ENCRYPTION).
    let unencrypted = "SELECT COALESCE(GROUP_CONCAT(CONCAT(t.NAME, ':', COALESCE(e.ENCRYPTION_SCHEME, 'none'), ':', COALESCE(e.ROTATING_OR_FLUSHING, '-'))), '') FROM information_schema.INNODB_SYS_TABLESPACES t \
                       LEFT JOIN information_schema.INNODB_TABLESPACES_ENCRYPTION e \
                       ON e.SPACE = t.SPACE \
                       WHERE t.NAME <> 'innodb_temporary' AND (e.SPACE IS NULL \
                       OR e.ENCRYPTION_SCHEME <> 1 OR e.ROTATING_OR_FLUSHING <> 0)";
    for (id, s) in green_ids.iter().zip(green_servers.iter_mut()) {
        let started = std::time::Instant::now();
        loop {
            let last = scalar(s, unencrypted).await;
            if last.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{id}: tablespaces not encrypted: {last}"
            );
            dbshift_testkit::poll_pause().await;
        }
        let listed = scalar(
            s,
            "SELECT COUNT(*) FROM information_schema.INNODB_TABLESPACES_ENCRYPTION \
             WHERE NAME = 'app/snap_load' AND ENCRYPTION_SCHEME = 1",
        )
        .await;
        assert_eq!(listed, "1", "{id}");
        assert!(
            s.variable_bool("innodb_encrypt_log").await.unwrap(),
            "{id}: innodb_encrypt_log"
        );
        assert!(
            s.variable_bool("encrypt_binlog").await.unwrap(),
            "{id}: encrypt_binlog"
        );
    }
    let key = lab.dir().join("tls").join("green-encryption.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for s in green_servers {
        s.close().await;
    }
    gw.close().await;
    writer.close().await;

    // `lab down` knows green too.
    let report = Lab::down(tl.dir(), false).unwrap();
    for id in &green_ids {
        assert!(report.stopped.contains(id), "{report:?}");
    }
}

#[tokio::test]
async fn a_snapshot_of_an_unknown_instance_is_refused_and_changes_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let cred = |u: &str| Credential {
        user: u.into(),
        password: "pw".into(),
    };
    let st = LabState::new_empty(
        "10.11".into(),
        "/usr/sbin/mariadbd".into(),
        1,
        LabUsers {
            admin: cred("dbshift_admin"),
            replication: cred("dbshift_repl"),
            app: cred("app"),
        },
    );
    st.save(dir.path()).unwrap();
    let state_before = std::fs::read(dir.path().join("lab.json")).unwrap();
    let lab = Lab::open(dir.path()).unwrap();
    let dest = dir.path().join("snaps").join("one");
    let err = lab.snapshot("lab-9-9", &dest).await.unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err}");
    assert!(err.to_string().contains("lab-9-9"), "{err}");
    assert!(!dest.exists());
    assert!(!dir.path().join("snaps").exists());
    assert_eq!(
        std::fs::read(dir.path().join("lab.json")).unwrap(),
        state_before
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
