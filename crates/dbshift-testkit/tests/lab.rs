//! The local lab on real servers: replication over verified TLS, users, idempotent `up`,
//! restarts, `down`, and bad input that changes nothing. Run with `make test`.

use dbshift_testkit::eventually;
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::local::{Lab, UpOptions};
use dbshift_provider::{Error, Fleet, InstanceControl, Role};
use dbshift_testkit::{init, shared_lab, TestLab};

#[tokio::test]
async fn replicas_follow_the_writer_over_verified_tls() {
    let lab = shared_lab().await;
    let cluster = &lab.state().clusters[0];
    let mut writer = lab.connect_admin(&cluster.writer).await.unwrap();
    writer
        .exec_sql("CREATE TABLE IF NOT EXISTS app.lab_rows (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    writer
        .exec_sql("REPLACE INTO app.lab_rows VALUES (1, 'hello')")
        .await
        .unwrap();
    assert_eq!(
        writer.variable("binlog_format").await.unwrap().as_deref(),
        Some("ROW")
    );
    assert!(writer.variable_bool("log_slave_updates").await.unwrap());
    assert_eq!(
        writer.variable("gtid_domain_id").await.unwrap(),
        Some(cluster.gtid_domain_id.to_string())
    );
    assert!(!writer.read_only().await.unwrap());
    assert!(!writer.replication_status().await.unwrap().configured);

    let mut server_ids = vec![writer.server_id()];
    for rec in lab.state().instances_of(&cluster.name) {
        if rec.id == cluster.writer {
            continue;
        }
        let mut r = lab.connect_admin(&rec.id).await.unwrap();
        server_ids.push(r.server_id());
        assert!(r.read_only().await.unwrap(), "{} must be read-only", rec.id);
        let st = r.replication_status().await.unwrap();
        assert!(st.healthy(), "{}: {st:?}", rec.id);
        assert_eq!(st.ssl, Some(true));
        assert_eq!(st.ssl_verify_server_cert, Some(true));
        assert_eq!(st.using_gtid.as_deref(), Some("Slave_Pos"));
        let v = eventually!(
            Duration::from_secs(10),
            "the row on the replica",
            r.query_scalar("SELECT v FROM app.lab_rows WHERE id=1")
                .await
                .ok()
                .flatten()
        );
        assert_eq!(v, "hello");
        r.close().await;
    }
    server_ids.sort();
    server_ids.dedup();
    assert_eq!(server_ids.len(), 3, "every server has its own server_id");
    writer.close().await;
}

#[tokio::test]
async fn app_user_is_stopped_by_read_only_and_has_no_super() {
    let lab = shared_lab().await;
    let cluster = &lab.state().clusters[0];
    let replica = lab
        .state()
        .instances_of(&cluster.name)
        .find(|i| i.id != cluster.writer)
        .unwrap()
        .id
        .clone();
    let mut w = lab.connect_admin(&cluster.writer).await.unwrap();
    w.exec_sql("CREATE TABLE IF NOT EXISTS app.ro_check (id INT PRIMARY KEY)")
        .await
        .unwrap();
    w.close().await;

    let mut app = Server::connect(&lab.app_options(&replica).unwrap())
        .await
        .unwrap();
    assert!(!app.has_privilege("SUPER").await.unwrap());
    assert!(!app.has_privilege("READ_ONLY ADMIN").await.unwrap());
    // The table arrives by replication; then the write must be refused with 1290.
    let err = eventually!(
        Duration::from_secs(10),
        "a read-only refusal",
        match app.exec_sql("INSERT INTO app.ro_check VALUES (1)").await {
            Err(e) if e.server_code() == Some(1290) => Some(e),
            Err(e) if e.server_code() == Some(1146) => None, // not replicated yet
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
    );
    assert!(err.to_string().contains("read-only") || err.to_string().contains("read_only"));
    app.close().await;
}

#[tokio::test]
async fn clients_verify_the_lab_ca_and_reject_another() {
    init();
    let lab = shared_lab().await;
    let writer = lab.state().clusters[0].writer.clone();
    let good = lab.app_options(&writer).unwrap();
    Server::connect(&good).await.unwrap().close().await;

    // A CA the servers were not signed by: the handshake must fail.
    let other = tempfile::tempdir().unwrap();
    let ca = dbshift_provider::local::tls::create_ca(
        other.path(),
        "stranger",
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        30,
    )
    .unwrap();
    let bad = ConnectOptions {
        tls: Some(TlsOptions {
            ca_path: other.path().join(&ca.cert),
            verify_identity: true,
        }),
        ..good.clone()
    };
    let err = Server::connect(&bad).await.unwrap_err();
    assert!(matches!(err, dbshift_db::Error::Connect { .. }), "{err}");

    let wrong_password = good.clone().password("not-the-password");
    let err = Server::connect(&wrong_password).await.unwrap_err();
    assert_eq!(err.server_code(), Some(1045), "{err}");
    assert!(!err.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn cluster_names_resolve_to_the_writer() {
    let lab = shared_lab().await;
    let cluster = &lab.state().clusters[0];
    let writer = lab.state().instance(&cluster.writer).unwrap();
    let ep = lab.resolve(&cluster.name).await.unwrap();
    assert_eq!(ep.port, writer.port);
    let inst = lab.describe_instance(&cluster.writer).await.unwrap();
    assert_eq!(inst.role, Role::Writer);
    assert_eq!(inst.engine, "mariadb");
    assert!(matches!(
        lab.resolve("lab-9").await,
        Err(Error::Unknown { .. })
    ));
    assert!(matches!(
        lab.describe_instance("lab-1-9").await,
        Err(Error::Unknown { .. })
    ));
}

#[tokio::test]
async fn up_is_idempotent_restarts_the_dead_and_down_leaves_nothing() {
    let t = TestLab::start(1, 1).await;
    let dir = t.dir().to_path_buf();
    let opts = UpOptions {
        die_with_parent: true,
        ..Default::default()
    };
    let (_, report) = Lab::up(&dir, &opts).await.unwrap();
    assert!(!report.created);
    assert!(report.started.is_empty(), "{report:?}");
    assert_eq!(report.already_running.len(), 2);

    // A different shape is refused, and nothing changes.
    let err = Lab::up(
        &dir,
        &UpOptions {
            clusters: Some(3),
            ..opts.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");

    // Kill the replica hard: `up` restarts it, and replication resumes by itself.
    let lab = t.lab();
    let replica = "lab-1-2";
    dbshift_testkit::kill_9(lab, replica);
    dbshift_testkit::eventually(Duration::from_secs(10), "SIGKILL to stop it", || async {
        dbshift_testkit::holds(lab.pid(replica).unwrap().is_none(), lab.pid(replica))
    })
    .await;
    let (lab2, report) = Lab::up(&dir, &opts).await.unwrap();
    assert_eq!(report.started, vec![replica.to_string()]);
    lab2.wait_replicating(replica, Duration::from_secs(20))
        .await
        .unwrap();

    // Reboot the writer: it comes back writable and the replica reconnects.
    lab2.reboot("lab-1-1", Duration::from_secs(60))
        .await
        .unwrap();
    let mut w = lab2.connect_admin("lab-1-1").await.unwrap();
    assert!(!w.read_only().await.unwrap());
    w.exec_sql("CREATE TABLE app.after_reboot (id INT PRIMARY KEY)")
        .await
        .unwrap();
    w.close().await;
    let mut r = lab2.connect_admin(replica).await.unwrap();
    eventually!(
        Duration::from_secs(20),
        "replication after the writer's reboot",
        r.query_scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA='app' AND TABLE_NAME='after_reboot'"
        )
        .await
        .ok()
        .flatten()
        .filter(|n| n == "1")
    );
    r.close().await;

    let pids: Vec<u32> = ["lab-1-1", replica]
        .iter()
        .map(|id| lab2.pid(id).unwrap().unwrap())
        .collect();
    let down = Lab::down(&dir, false).unwrap();
    assert_eq!(down.stopped.len(), 2);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z"))
                    .unwrap_or(true),
            "mariadbd {pid} survived lab down"
        );
    }
    assert_eq!(
        lab2.status()
            .instances
            .iter()
            .filter(|i| i.pid.is_some())
            .count(),
        0
    );
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    init();
    let base = tempfile::tempdir().unwrap();

    let dir = base.path().join("zero");
    let err = Lab::up(
        &dir,
        &UpOptions {
            clusters: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::BadInput(_)) && err.to_string().contains("at least 1"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing may be created");

    let dir = base.path().join("nobinary");
    let err = Lab::up(
        &dir,
        &UpOptions {
            mariadbd: Some("/nonexistent/mariadbd".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Missing(_)), "{err}");
    assert!(
        err.to_string()
            .contains("apt-get install -y mariadb-server"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing may be created");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = base.path().join("porttaken");
    let err = Lab::up(
        &dir,
        &UpOptions {
            base_port: Some(port),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&format!("port {port}")), "{err}");
    assert!(!dir.exists(), "nothing may be created");

    let dir = base.path().join("damaged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lab.json"), "{ this is not json").unwrap();
    let err = Lab::open(&dir).unwrap_err();
    assert!(matches!(err, Error::DamagedState { .. }), "{err}");
    assert!(err.to_string().contains("lab down --purge"), "{err}");
    let err = Lab::up(&dir, &UpOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::DamagedState { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("lab.json")).unwrap(),
        "{ this is not json"
    );

    let err = Lab::open(&base.path().join("nolab")).unwrap_err();
    assert!(matches!(err, Error::NoLab(_)), "{err}");
}

#[tokio::test]
async fn down_finds_the_servers_of_a_lab_dir_deleted_by_hand() {
    init();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("deleted");
    let opts = UpOptions {
        clusters: Some(1),
        replicas: Some(1),
        die_with_parent: true,
        ..Default::default()
    };
    let (lab, _) = Lab::up(&dir, &opts).await.unwrap();
    let pids: Vec<u32> = ["lab-1-1", "lab-1-2"]
        .iter()
        .map(|id| lab.pid(id).unwrap().unwrap())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let report = Lab::down(&dir, true).unwrap();
    assert_eq!(report.stopped.len(), 2, "{report:?}");
    for pid in pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false);
        assert!(!alive, "mariadbd {pid} survived");
    }
    // Nothing left: now there is no lab there at all.
    assert!(matches!(Lab::down(&dir, true), Err(Error::NoLab(_))));
}
