//! A writer switch through the proxy with 50 persistent client connections: idle ones, ones
//! looping over transactions, ones with session variables, user variables and prepared
//! statements. Zero client errors, zero dropped connections, session state still in effect,
//! and every statement after the switch lands on the new writer.
//!
//! Run with `cargo test -p dbshift-proxy --test switch` (needs `mariadbd`). The lab (a writer
//! and a replica) is this binary's own: the test makes the replica the writer the simplest
//! way (read_only on the old writer, wait for the replica, reset its replication, writable).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbshift_db::server::TlsOptions;
use dbshift_db::ConnectOptions;
use dbshift_proxy::{AuthSource, Backend, ProxyConfig};
use dbshift_testkit::TestLab;
use mysql_async::prelude::*;

const IDLE: usize = 15;
const LOOPERS: usize = 20;
const STATEFUL: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_survive_a_switch_with_their_state() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tl = TestLab::start(1, 1).await;
    let lab = tl.lab();
    let st = lab.state();
    let old_id = st.clusters[0].writer.clone();
    let new_id = st
        .instances
        .iter()
        .find(|i| i.id != old_id)
        .expect("a replica")
        .id
        .clone();
    let old = st.instance(&old_id).unwrap().clone();
    let new = st.instance(&new_id).unwrap().clone();

    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Backend::new("127.0.0.1", old.port),
        AuthSource::Admin {
            user: st.users.admin.user.clone(),
            password: st.users.admin.password.clone(),
        },
    );
    cfg.backend_tls = Some(lab.ca_bundle());
    let tls_dir = lab.dir().join("proxy-tls");
    let ca = st.ca(&st.current_ca).unwrap();
    dbshift_provider::local::tls::issue_server_cert(lab.dir(), ca, "dbshift-proxy", &tls_dir)
        .unwrap();
    cfg.client_tls = Some(dbshift_proxy::ClientTls {
        cert: tls_dir.join("server.pem"),
        key: tls_dir.join("server.key"),
    });
    let proxy = dbshift_proxy::start(cfg).await.unwrap();
    let opts = ConnectOptions::new(
        "127.0.0.1",
        proxy.local_addr().port(),
        st.users.app.user.clone(),
    )
    .password(st.users.app.password.clone())
    .database("app")
    .tls(TlsOptions {
        ca_path: lab.ca_bundle(),
        verify_identity: true,
    })
    .to_opts();

    let mut setup = mysql_async::Conn::new(opts.clone()).await.unwrap();
    setup
        .query_drop("CREATE TABLE sw (client INT, seq INT, PRIMARY KEY (client, seq))")
        .await
        .unwrap();
    setup.disconnect().await.unwrap();

    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));

    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(mysql_async::Conn::new(opts.clone()).await.unwrap());
    }
    let mut loopers = Vec::new();
    for client in 0..LOOPERS {
        let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
        let (stop, errors, acked) = (stop.clone(), errors.clone(), acked.clone());
        loopers.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Relaxed) {
                seq += 1;
                let r = async {
                    c.query_drop("BEGIN").await?;
                    c.exec_drop("INSERT INTO sw VALUES (?, ?)", (client, seq))
                        .await?;
                    c.query_drop(format!("UPDATE sw SET seq = seq WHERE client = {client}"))
                        .await?;
                    c.query_drop("COMMIT").await
                }
                .await;
                match r {
                    Ok(()) => {
                        acked.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(format!("looper {client}: {e}"));
                        break;
                    }
                }
            }
            c
        }));
    }
    let mut stateful = Vec::new();
    for i in 0..STATEFUL {
        let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
        c.query_drop(format!(
            "SET SESSION sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION', \
             SESSION wait_timeout = {}, SESSION time_zone = '+0{}:00'",
            1000 + i,
            i % 10
        ))
        .await
        .unwrap();
        c.query_drop(format!("SET @mine = 'session-{i}', @n = {i}"))
            .await
            .unwrap();
        c.query_drop("USE dbshift").await.unwrap();
        let stmt = c
            .prep("SELECT ? + 1, @@server_id, @@SESSION.wait_timeout")
            .await
            .unwrap();
        let r: Option<(i64, u32, u64)> = c.exec_first(&stmt, (i as i64,)).await.unwrap();
        assert_eq!(r, Some((i as i64 + 1, old.server_id, 1000 + i as u64)));
        stateful.push((c, stmt));
    }

    // Traffic runs for a moment before the switch.
    dbshift_testkit::eventually!(Duration::from_secs(10), "some commits", {
        (acked.load(Relaxed) > 100).then_some(())
    });

    // The switch, the simplest way.
    let report = proxy.pause(Duration::from_secs(3)).await.unwrap();
    assert_eq!(report.ended_in_transaction, 0, "{report:?}");
    let mut old_admin = lab.connect_admin(&old_id).await.unwrap();
    old_admin.set_read_only().await.unwrap();
    let pos = old_admin.gtid_binlog_pos().await.unwrap();
    let mut new_admin = lab.connect_admin(&new_id).await.unwrap();
    new_admin
        .wait_for_gtid(&pos, Duration::from_secs(20))
        .await
        .unwrap();
    new_admin.reset_replication().await.unwrap();
    new_admin.set_writable().await.unwrap();
    let sw = proxy
        .switch(Backend::new("127.0.0.1", new.port))
        .await
        .unwrap();
    assert_eq!(sw.ended, 0, "{sw:?}");
    assert_eq!(sw.moved, IDLE + LOOPERS + STATEFUL, "{sw:?}");
    proxy.resume().await;

    let at_switch = acked.load(Relaxed);
    dbshift_testkit::eventually!(Duration::from_secs(10), "commits after the switch", {
        (acked.load(Relaxed) > at_switch + 100).then_some(())
    });
    stop.store(true, Relaxed);
    let mut looper_conns = Vec::new();
    for l in loopers {
        looper_conns.push(l.await.unwrap());
    }
    let errs = errors.lock().unwrap().clone();
    assert!(errs.is_empty(), "client errors: {errs:#?}");

    // Every connection is alive and on the new writer.
    for c in idle.iter_mut().chain(looper_conns.iter_mut()) {
        let sid: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_eq!(sid, new.server_id);
    }
    let mut user_variables_moved = true;
    for (i, (c, stmt)) in stateful.iter_mut().enumerate() {
        let r: Option<(i64, u32, u64)> = c.exec_first(&*stmt, (i as i64,)).await.unwrap();
        assert_eq!(r, Some((i as i64 + 1, new.server_id, 1000 + i as u64)));
        let (mode, tz, db): (String, String, String) = c
            .query_first("SELECT @@SESSION.sql_mode, @@SESSION.time_zone, DATABASE()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode, "ANSI_QUOTES,NO_ENGINE_SUBSTITUTION");
        assert_eq!(tz, format!("+0{}:00", i % 10));
        assert_eq!(db, "dbshift");
        let (mine, n): (Option<String>, Option<i64>) =
            c.query_first("SELECT @mine, @n").await.unwrap().unwrap();
        if mine.is_none() {
            user_variables_moved = false;
        } else {
            assert_eq!((mine, n), (Some(format!("session-{i}")), Some(i as i64)));
        }
    }
    let uv_plugin = new_admin
        .query_scalar(
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'user_variables'",
        )
        .await
        .unwrap();
    if uv_plugin.as_deref() == Some("ACTIVE") {
        assert!(
            user_variables_moved,
            "user variables were lost although the plugin is active"
        );
    }
    eprintln!("user_variables plugin: {uv_plugin:?}, user variables moved: {user_variables_moved}");

    // Every acknowledged write is on the new writer.
    let rows: u64 = new_admin
        .query_scalar("SELECT COUNT(*) FROM app.sw")
        .await
        .unwrap()
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(rows, acked.load(Relaxed));

    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("dbshift_proxy_switches_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "dbshift_proxy_connections_current {}",
            IDLE + LOOPERS + STATEFUL
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("dbshift_proxy_errors_sent_total 0"),
        "{metrics}"
    );
    proxy.shutdown().await;
}
