//! A blue/green switchover and its rollback through two proxies in front of one cluster (as
//! behind a load balancer), with 50 persistent client connections spread over both: idle ones,
//! ones looping over transactions, ones with session variables, user variables and prepared
//! statements. The switches are the switchover core's (`dbshift_ops::bluegreen::switch`),
//! which pauses every proxy at the fence, switches them at the redirect and resumes them after
//! the promotion through their admin APIs. Zero client errors, zero dropped connections,
//! session state still in effect, every statement after each switch on the serving writer,
//! every acknowledged write there. Then a third proxy that cannot be paused (its admin API
//! gone): the switch is refused having changed nothing, the two others resumed, clients going
//! on.
//!
//! The probe runs through the second proxy all along (writes, reads, new connections): no
//! failed attempt, no lost write.
//!
//! Run with `cargo test -p dbshift-proxy --test switch` (needs `mariadbd`). The lab (blue: a
//! writer and a replica; green: a writer) is this binary's own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbshift_db::server::TlsOptions;
use dbshift_db::ConnectOptions;
use dbshift_ops::bluegreen::{self, SwitchOptions};
use dbshift_ops::events::LogObserver;
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::Outcome;
use dbshift_probe::{Probe, ProbeConfig, TargetResolver, UrlTarget};
use dbshift_provider::local::Lab;
use dbshift_provider::{Endpoint, GreenSpec, ProxyEndpoint, Side};
use dbshift_proxy::{AuthSource, Backend, ProxyConfig};
use dbshift_testkit::{ProxiedLab, TestLab};
use mysql_async::prelude::*;

const IDLE: usize = 15;
const LOOPERS: usize = 20;
const STATEFUL: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_survive_a_bluegreen_switchover_and_rollback_with_their_state() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tl = TestLab::start(1, 1).await;
    let spec = GreenSpec {
        source: "lab-1".into(),
        name: "green".into(),
        replicas: 0,
        encrypt: false,
        engine_binary: None,
    };
    let d = bluegreen::create(tl.lab(), &spec).await.unwrap();
    let mut lab = Lab::open(tl.dir()).unwrap();
    lab.set_die_with_parent(true);
    let lab = &lab;
    let st = lab.state();
    let old_id = d.blue_writer.clone();
    let new_id = d.green_writer.clone();
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
    let token = "a-test-token-of-the-admin-api".to_string();
    let mut proxies = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..2 {
        let proxy = dbshift_proxy::start(cfg.clone()).await.unwrap();
        let admin = dbshift_proxy::serve_admin(
            proxy.clone(),
            "127.0.0.1:0".parse().unwrap(),
            token.clone(),
        )
        .await
        .unwrap();
        endpoints.push(ProxyEndpoint {
            cluster: "lab-1".into(),
            listen: Endpoint {
                host: "127.0.0.1".into(),
                port: proxy.local_addr().port(),
            },
            admin: Endpoint {
                host: "127.0.0.1".into(),
                port: admin.local_addr().port(),
            },
            token: token.clone(),
            admin_ca: None,
        });
        proxies.push((proxy, admin));
    }
    let provider = ProxiedLab {
        lab: lab.clone(),
        proxies: endpoints.clone(),
    };
    let journal = Journal::open(&tl.dir().join("journal.sqlite"))
        .await
        .unwrap();
    // The n-th client connects through proxy n % 2.
    let opts_for = |n: usize| {
        ConnectOptions::new(
            "127.0.0.1",
            proxies[n % 2].0.local_addr().port(),
            st.users.app.user.clone(),
        )
        .password(st.users.app.password.clone())
        .database("app")
        .tls(TlsOptions {
            ca_path: lab.ca_bundle(),
            verify_identity: true,
        })
        .to_opts()
    };
    let opts = opts_for(0);

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
    for n in 0..IDLE {
        idle.push(mysql_async::Conn::new(opts_for(n)).await.unwrap());
    }
    let mut loopers = Vec::new();
    for client in 0..LOOPERS {
        let mut c = mysql_async::Conn::new(opts_for(client)).await.unwrap();
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
        let mut c = mysql_async::Conn::new(opts_for(i)).await.unwrap();
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

    // The probe (writes, reads and new connections) through the second proxy, for what a
    // client sees of each switch and for its audit of every acknowledged write.
    let probe_url = format!(
        "mysql://{}:{}@127.0.0.1:{}/dbshift",
        st.users.app.user,
        st.users.app.password,
        proxies[1].0.local_addr().port()
    );
    let probe = Probe::start(
        ProbeConfig {
            rate: 100.0,
            // A held attempt waits for the switch; a busy 2-core machine must not turn that
            // into a timeout.
            timeout: Duration::from_secs(5),
            report_dir: Some(tl.dir().join("probe")),
            ..ProbeConfig::default()
        },
        TargetResolver::url(UrlTarget::parse(&probe_url, None).unwrap())
            .tls_ca(Some(lab.ca_bundle())),
    )
    .await
    .unwrap();

    // Traffic runs for a moment before the switch.
    dbshift_testkit::eventually!(Duration::from_secs(10), "some commits", {
        (acked.load(Relaxed) > 100).then_some(())
    });

    // Blue -> green through the switchover core, which holds the clients at the proxy.
    let switch = |to: Side| {
        let (provider, journal) = (&provider, &journal);
        async move {
            let d = bluegreen::find(provider, Some("green")).await.unwrap();
            // Twenty clients write as fast as they can on a busy 2-core machine: the standby
            // may be a few hundred transactions behind; the wait step closes the gap.
            let opts = SwitchOptions {
                max_lag_transactions: 10_000,
                max_lag_seconds: 30,
                timeout: Duration::from_secs(30),
                ..Default::default()
            };
            let params = bluegreen::switch_params(provider, &d, to, &opts)
                .await
                .unwrap();
            let (_, outcome) = bluegreen::switch(provider, journal, params, to, &LogObserver)
                .await
                .unwrap();
            assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
        }
    };
    switch(Side::Green).await;
    for (proxy, _) in &proxies {
        assert_eq!(
            proxy.backend().port,
            new.port,
            "every proxy follows the switch"
        );
    }
    let wait_commits = |what: &'static str| {
        let acked = acked.clone();
        async move {
            let at = acked.load(Relaxed);
            dbshift_testkit::eventually!(Duration::from_secs(10), what, {
                (acked.load(Relaxed) > at + 100).then_some(())
            });
        }
    };
    wait_commits("commits after the switchover").await;
    let mut uv_moved = check_sessions(&mut idle, &mut stateful, new.server_id).await;

    // And back: green -> blue over the reverse replication, the same core.
    switch(Side::Blue).await;
    for (proxy, _) in &proxies {
        assert_eq!(
            proxy.backend().port,
            old.port,
            "every proxy follows the rollback"
        );
    }
    wait_commits("commits after the rollback").await;

    // A third proxy in front of lab-1 whose admin API does not answer: the switch is refused
    // at the fence, the two others are resumed, nothing changed, clients go on.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_port = gone.local_addr().unwrap().port();
    drop(gone);
    let mut three = endpoints.clone();
    three.push(ProxyEndpoint {
        admin: Endpoint {
            host: "127.0.0.1".into(),
            port: gone_port,
        },
        ..endpoints[0].clone()
    });
    let with_a_dead_one = ProxiedLab {
        lab: lab.clone(),
        proxies: three,
    };
    let d = bluegreen::find(&with_a_dead_one, Some("green"))
        .await
        .unwrap();
    let refused_opts = SwitchOptions {
        max_lag_transactions: 10_000,
        max_lag_seconds: 30,
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let params = bluegreen::switch_params(&with_a_dead_one, &d, Side::Green, &refused_opts)
        .await
        .unwrap();
    let (_, outcome) = bluegreen::switch(
        &with_a_dead_one,
        &journal,
        params,
        Side::Green,
        &LogObserver,
    )
    .await
    .unwrap();
    let Outcome::RolledBack { reason } = &outcome else {
        panic!("a proxy that cannot be paused refuses the switch: {outcome:?}")
    };
    assert!(
        reason.contains("nothing was changed") && reason.contains("pausing the proxy"),
        "{reason}"
    );
    for (proxy, _) in &proxies {
        assert_eq!(proxy.backend().port, old.port, "nothing moved");
    }
    wait_commits("commits after the refused switch").await;
    stop.store(true, Relaxed);
    let mut looper_conns = Vec::new();
    for l in loopers {
        looper_conns.push(l.await.unwrap());
    }
    let errs = errors.lock().unwrap().clone();
    assert!(errs.is_empty(), "client errors: {errs:#?}");
    let summary = probe.stop().await.unwrap();
    for (kind, k) in &summary.kinds {
        assert!(k.succeeded > 0, "probe {kind:?}: {k:?}");
        assert_eq!(
            (k.failed, k.indeterminate),
            (0, 0),
            "probe {kind:?} through the proxy saw no error: {k:?}"
        );
    }
    assert!(summary.lost_writes.is_empty(), "{:?}", summary.lost_writes);
    eprintln!(
        "probe through the proxy: longest write gap {:.0} ms over two switches",
        summary.max_write_gap_ms
    );
    uv_moved &= check_sessions(&mut looper_conns, &mut stateful, old.server_id).await;
    uv_moved &= check_sessions(&mut idle, &mut [], old.server_id).await;

    let mut blue_admin = lab.connect_admin(&old_id).await.unwrap();
    let uv_plugin = blue_admin
        .query_scalar(
            "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'user_variables'",
        )
        .await
        .unwrap();
    if uv_plugin.as_deref() == Some("ACTIVE") {
        assert!(
            uv_moved,
            "user variables were lost although the plugin is active"
        );
    }
    eprintln!("user_variables plugin: {uv_plugin:?}, user variables moved: {uv_moved}");

    // Every acknowledged write is on the serving writer.
    let rows: u64 = blue_admin
        .query_scalar("SELECT COUNT(*) FROM app.sw")
        .await
        .unwrap()
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(rows, acked.load(Relaxed));

    let mut connections = 0;
    for (proxy, _) in &proxies {
        let metrics = proxy.metrics_text();
        assert!(
            metrics.contains("dbshift_proxy_switches_total 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("dbshift_proxy_errors_sent_total 0"),
            "{metrics}"
        );
        connections += metrics
            .lines()
            .find_map(|l| l.strip_prefix("dbshift_proxy_connections_current "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
    }
    assert_eq!(connections, IDLE + LOOPERS + STATEFUL);
    for (proxy, _) in &proxies {
        proxy.shutdown().await;
    }
}

/// Every connection alive and on `server_id`; the stateful ones with their session variables,
/// schema and prepared statement in effect. Gives whether their user variables moved too.
async fn check_sessions(
    plain: &mut [mysql_async::Conn],
    stateful: &mut [(mysql_async::Conn, mysql_async::Statement)],
    server_id: u32,
) -> bool {
    for c in plain.iter_mut() {
        let sid: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_eq!(sid, server_id);
    }
    let mut user_variables_moved = true;
    for (i, (c, stmt)) in stateful.iter_mut().enumerate() {
        let r: Option<(i64, u32, u64)> = c.exec_first(&*stmt, (i as i64,)).await.unwrap();
        assert_eq!(r, Some((i as i64 + 1, server_id, 1000 + i as u64)));
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
    user_variables_moved
}
