//! A blue/green switchover and rollback on AWS redirected by the dbshift proxy instead of the
//! rename swap: `moto_server` (behind the testkit's shim) holds `orders` and the green
//! `bluegreen create` builds, mapped onto an RDS-mode lab writer (`lab-1-1`) and its replica
//! (`lab-1-2`); a proxy in front of `orders` (`AwsOptions::proxies`, as `DBSHIFT_AWS_PROXY`
//! gives it) is paused at the fence (blue's parameter-group `read_only`, applied to the lab
//! server by the shim), switched to green and resumed after the promotion by the switchover
//! core. Clients writing through the proxy see no error; no name changes in moto; the
//! deployment's serving side follows (the `dbshift:serves` tag); every acknowledged write is
//! on blue at the end. Run: `cargo test -p dbshift-proxy --test aws_proxy_switch` (needs
//! `moto_server` and MariaDB).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbshift_db::server::TlsOptions;
use dbshift_db::ConnectOptions;
use dbshift_ops::bluegreen::{self, SwitchOptions};
use dbshift_ops::events::LogObserver;
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::{Outcome, Redirect};
use dbshift_provider::aws::{AwsOptions, AwsProvider};
use dbshift_provider::{Endpoint, GreenSpec, Provider, ProxyEndpoint, Side};
use dbshift_proxy::{AuthSource, Backend, ProxyConfig};
use dbshift_testkit::AwsBlueGreen;
use mysql_async::prelude::*;

const CLIENTS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_and_rollback_through_the_proxy_move_no_name() {
    let f = AwsBlueGreen::start().await;
    let lab = f.lab().clone();
    let st = lab.state().clone();
    let blue_port = st.instance("lab-1-1").unwrap().port;
    let green_port = st.instance("lab-1-2").unwrap().port;

    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Backend::new("127.0.0.1", blue_port),
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
    let token = "a-test-token-of-the-admin-api".to_string();
    let admin =
        dbshift_proxy::serve_admin(proxy.clone(), "127.0.0.1:0".parse().unwrap(), token.clone())
            .await
            .unwrap();

    let mut proxies = BTreeMap::new();
    proxies.insert(
        "orders".to_string(),
        vec![ProxyEndpoint {
            cluster: "orders".into(),
            listen: Endpoint {
                host: "127.0.0.1".into(),
                port: proxy.local_addr().port(),
            },
            admin: Endpoint {
                host: "127.0.0.1".into(),
                port: admin.local_addr().port(),
            },
            token,
            admin_ca: None,
        }],
    );
    let p: Arc<dyn Provider> = Arc::new(
        AwsProvider::connect(AwsOptions {
            proxies,
            ..f.options().await
        })
        .await
        .unwrap(),
    );
    let d = bluegreen::create(
        &*p,
        &GreenSpec {
            source: "orders".into(),
            name: "orders-green".into(),
            replicas: 0,
            encrypt: true,
            engine_binary: None,
        },
    )
    .await
    .unwrap();

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
        .query_drop("CREATE TABLE aws_px (client INT, seq INT, PRIMARY KEY (client, seq))")
        .await
        .unwrap();
    setup.disconnect().await.unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
        let (stop, errors, acked) = (stop.clone(), errors.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Relaxed) {
                seq += 1;
                match c
                    .exec_drop("INSERT INTO aws_px VALUES (?, ?)", (client, seq))
                    .await
                {
                    Ok(()) => {
                        acked.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(format!("client {client}: {e}"));
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = c.disconnect().await;
        }));
    }
    let wait_commits = |what: &'static str| {
        let acked = acked.clone();
        async move {
            let at = acked.load(Relaxed);
            dbshift_testkit::eventually!(Duration::from_secs(20), what, {
                (acked.load(Relaxed) > at + 50).then_some(())
            });
        }
    };
    wait_commits("commits before the switch").await;

    let journal = Journal::open(&f.lab.dir().join("aws-journal.sqlite"))
        .await
        .unwrap();
    let switch = |to: Side| {
        let (p, journal) = (p.clone(), &journal);
        async move {
            let d = bluegreen::find(&*p, Some("orders-green")).await.unwrap();
            // The demoted side may be a burst behind just after the first switch; the wait
            // step closes the gap under the fence.
            let opts = SwitchOptions {
                max_lag_transactions: 10_000,
                max_lag_seconds: 30,
                timeout: Duration::from_secs(20),
                ..SwitchOptions::default()
            };
            let params = bluegreen::switch_params(&*p, &d, to, &opts).await.unwrap();
            assert_eq!(params.redirect, Redirect::Proxy, "the default with a proxy");
            let (_, out) = bluegreen::switch(&*p, journal, params, to, &LogObserver)
                .await
                .unwrap();
            let Outcome::Done(report) = &out else {
                panic!("{out:?}")
            };
            eprintln!("{to} by proxy: write gap {:?} ms", report.write_gap_ms);
        }
    };
    let name_holder = || f.holder_of("orders");

    switch(Side::Green).await;
    assert_eq!(proxy.backend().port, green_port, "the proxy follows");
    assert_eq!(name_holder().await.as_deref(), Some("orders"), "no rename");
    assert_eq!(
        bluegreen::find(&*p, Some("orders-green"))
            .await
            .unwrap()
            .serving,
        Side::Green
    );
    wait_commits("commits on green").await;

    switch(Side::Blue).await;
    assert_eq!(proxy.backend().port, blue_port, "the proxy follows back");
    assert_eq!(name_holder().await.as_deref(), Some("orders"));
    assert_eq!(
        bluegreen::find(&*p, Some("orders-green"))
            .await
            .unwrap()
            .serving,
        Side::Blue
    );
    wait_commits("commits on blue again").await;

    stop.store(true, Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let errs = errors.lock().unwrap().clone();
    assert!(errs.is_empty(), "client errors: {errs:#?}");
    let mut b = lab.connect_admin("lab-1-1").await.unwrap();
    let rows: u64 = b
        .query_scalar("SELECT COUNT(*) FROM app.aws_px")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        rows,
        acked.load(Relaxed),
        "every acknowledged write on blue"
    );
    assert!(!b.read_only().await.unwrap());
    b.close().await;
    let mut g = lab.connect_admin("lab-1-2").await.unwrap();
    assert!(g.read_only().await.unwrap());
    g.close().await;
    assert!(d.green_writer == "orders-green");
    journal.close().await;
}
