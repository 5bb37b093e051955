//! Blue/green on AWS through the switchover core, with the SQL half on real servers: a
//! `moto_server` (behind the testkit's shim) holds the instances `orders` (blue) and, once
//! `bluegreen create --encrypt` built it, `orders-green`; the aws provider connects to them at
//! two RDS-mode lab servers (`DBSHIFT_AWS_ENDPOINTS` by dbshift's stable ids): blue is `lab-1-1`
//! (the writer), green `lab-1-2` (its replica, so green holds blue's data). The shim applies
//! each parameter group's `read_only` to the server mapped to it, as RDS does at once, so the
//! fence is real. Under acknowledged writes through the name `orders` and with the invariant
//! checker sampling both servers: a refused switch (green not replicating) changes nothing;
//! the switchover renames blue away and green to `orders` (each rename journaled), the
//! rollback swaps back; never two writable servers, no acknowledged write lost.
//! Run: `cargo test -p dbshift-ops --test aws_bluegreen` (needs `moto_server` and MariaDB).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dbshift_ops::bluegreen::{self, BlueGreenError, SwitchOptions};
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::{LogObserver, Outcome, Redirect};
use dbshift_provider::aws::{AwsOptions, AwsProvider, TAG_ID};
use dbshift_provider::{Fleet, GreenSpec, Provider, Side};
use dbshift_testkit::moto::{self, Moto};
use dbshift_testkit::{eventually, AckedWriter, InvariantChecker, TestLab};

/// dbshift's id of the instance that holds the identifier `name` at AWS, straight from moto.
async fn holder_of(m: &Moto, name: &str) -> Option<String> {
    moto::raw_tags(&m.moto_url(), name)
        .await
        .and_then(|t| t.get(TAG_ID).cloned())
}

async fn read_only(lab: &dbshift_provider::local::Lab, id: &str) -> bool {
    let mut s = lab.connect_admin(id).await.unwrap();
    let ro = s.read_only().await.unwrap();
    s.close().await;
    ro
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_and_rollback_by_rename_swap_with_the_sql_half_on_real_servers() {
    let t = TestLab::start_rds(1, 1).await;
    let lab = t.lab().clone();
    let m = Moto::start(moto::default_shim()).await;
    moto::seed_instance(
        &m.moto_url(),
        "orders",
        "mariadb",
        "10.11.8",
        "mariadb10.11",
        "orders-params",
    )
    .await;

    // Each parameter group is one lab server's `read_only` (green's group is the copy
    // `bluegreen create` makes).
    moto::map_parameter_groups(
        &m,
        &lab,
        &[
            ("orders-params", "lab-1-1"),
            ("orders-green-params", "lab-1-2"),
        ],
    );

    let mut endpoints = BTreeMap::new();
    endpoints.insert("orders".to_string(), lab.resolve("lab-1-1").await.unwrap());
    endpoints.insert(
        "orders-green".to_string(),
        lab.resolve("lab-1-2").await.unwrap(),
    );
    moto::set_test_credentials();
    let opts = AwsOptions {
        endpoint_url: Some(m.url()),
        db: Some(lab.credentials().unwrap()),
        endpoints,
        ..moto::test_options()
    };
    let p: Arc<dyn Provider> = Arc::new(AwsProvider::connect(opts).await.unwrap());

    // Green: snapshot, encrypted copy, restore in moto; the SQL half on lab-1-2.
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
    assert_eq!(
        (d.blue_writer.as_str(), d.green_writer.as_str()),
        ("orders", "orders-green")
    );
    assert_eq!(holder_of(&m, "orders").await.as_deref(), Some("orders"));

    // Bad input changes nothing.
    assert!(matches!(
        bluegreen::find(&*p, Some("nope")).await.unwrap_err(),
        BlueGreenError::BadInput(_)
    ));
    assert!(matches!(
        bluegreen::switch_params(&*p, &d, Side::Blue, &SwitchOptions::default())
            .await
            .unwrap_err(),
        BlueGreenError::BadInput(_)
    ));
    assert!(matches!(
        bluegreen::switch_params(
            &*p,
            &d,
            Side::Green,
            &SwitchOptions {
                redirect: Some(Redirect::Proxy),
                ..SwitchOptions::default()
            }
        )
        .await
        .unwrap_err(),
        BlueGreenError::BadInput(_)
    ));

    // Both sides compared by chunked checksums at one GTID position, over the RDS procedures.
    let v = bluegreen::verify(&*p, &d, &dbshift_ops::verify::VerifyOptions::default())
        .await
        .unwrap();
    assert!(v.equal, "{v:?}");

    let checker = InvariantChecker::start_lab(&lab).await.unwrap();
    let writer = AckedWriter::start_via(&lab, p.clone(), "orders", "aws_bg").await;
    eventually!(Duration::from_secs(20), "writes through orders", {
        (writer.acked() > 20).then_some(())
    });
    let journal = Journal::open(&t.dir().join("aws-journal.sqlite"))
        .await
        .unwrap();
    let opts = SwitchOptions {
        timeout: Duration::from_secs(20),
        ..SwitchOptions::default()
    };

    // Green not replicating: the guards refuse, nothing changes (blue writable, names kept).
    let mut g = lab.connect_admin("lab-1-2").await.unwrap();
    g.exec_sql("CALL mysql.rds_stop_replication").await.unwrap();
    let params = bluegreen::switch_params(&*p, &d, Side::Green, &opts)
        .await
        .unwrap();
    let (_, out) = bluegreen::switch(&*p, &journal, params, Side::Green, &LogObserver)
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Refused(_)), "{out:?}");
    assert_eq!(out.exit_code(), 1);
    assert!(!read_only(&lab, "lab-1-1").await);
    assert_eq!(holder_of(&m, "orders").await.as_deref(), Some("orders"));
    g.exec_sql("CALL mysql.rds_start_replication")
        .await
        .unwrap();
    g.close().await;

    // Switchover: fence by blue's parameter group, renames, green promoted by its own group.
    let params = bluegreen::switch_params(&*p, &d, Side::Green, &opts)
        .await
        .unwrap();
    assert_eq!(params.redirect, Redirect::Name);
    assert_eq!(
        (params.from.as_str(), params.to.as_str()),
        ("orders", "orders-green")
    );
    let (run, out) = bluegreen::switch(&*p, &journal, params, Side::Green, &LogObserver)
        .await
        .unwrap();
    let Outcome::Done(report) = &out else {
        panic!("{out:?}")
    };
    // On moto a rename is one describe-poll away; on RDS each takes minutes.
    eprintln!(
        "switchover by rename swap: write gap {:?} ms, redirect {:?} ms",
        report.write_gap_ms,
        report
            .step_ms
            .iter()
            .find(|(s, _)| s == "redirect")
            .map(|(_, ms)| ms)
    );
    let record = journal.run(&run).await.unwrap();
    assert!(record.step_done("redirect_plan"));
    assert!(record.step_done("redirect_rename_0") && record.step_done("redirect_rename_1"));
    assert_eq!(
        holder_of(&m, "orders").await.as_deref(),
        Some("orders-green")
    );
    assert!(read_only(&lab, "lab-1-1").await);
    assert!(!read_only(&lab, "lab-1-2").await);
    let blue_now = p.describe_instance("orders").await.unwrap();
    assert!(blue_now.cluster.starts_with("orders-old-"), "{blue_now:?}");
    let d = bluegreen::find(&*p, Some("orders-green")).await.unwrap();
    assert_eq!(d.serving, Side::Green);
    let before = writer.acked();
    eventually!(Duration::from_secs(30), "writes through orders on green", {
        (writer.acked() > before + 20).then_some(())
    });

    // Rollback: the same core backwards, the name swapped back to blue.
    let params = bluegreen::switch_params(&*p, &d, Side::Blue, &opts)
        .await
        .unwrap();
    assert_eq!(
        (params.from.as_str(), params.to.as_str()),
        ("orders-green", "orders")
    );
    let (_, out) = bluegreen::switch(&*p, &journal, params, Side::Blue, &LogObserver)
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(holder_of(&m, "orders").await.as_deref(), Some("orders"));
    assert!(!read_only(&lab, "lab-1-1").await);
    assert!(read_only(&lab, "lab-1-2").await);
    assert_eq!(
        bluegreen::find(&*p, Some("orders-green"))
            .await
            .unwrap()
            .serving,
        Side::Blue
    );
    let before = writer.acked();
    eventually!(
        Duration::from_secs(30),
        "writes through orders on blue again",
        { (writer.acked() > before + 20).then_some(()) }
    );

    let acked = writer.stop_and_audit(&lab).await;
    assert!(acked > 60, "{acked}");
    let report = checker.stop().await;
    report.assert_never_two_writers();
    journal.close().await;
}

/// An Aurora deployment cannot be redirected by renames (its name is the cluster's): the
/// request is refused before anything changes, saying to use the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aurora_deployment_refuses_the_rename_redirect_before_any_change() {
    let m = Moto::start(moto::default_shim()).await;
    let c = moto::sdk_client(&m.moto_url()).await;
    c.create_db_cluster()
        .db_cluster_identifier("pay")
        .engine("aurora-mysql")
        .engine_version(moto::Fleet::AURORA_VERSION)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .send()
        .await
        .unwrap();
    c.create_db_instance()
        .db_instance_identifier("pay-1")
        .db_cluster_identifier("pay")
        .engine("aurora-mysql")
        .db_instance_class("db.r6g.large")
        .send()
        .await
        .unwrap();
    let p = moto::provider(&m).await;
    // Without database credentials green is built and kept, the SQL half left to a human.
    let err = bluegreen::create(
        &p,
        &GreenSpec {
            source: "pay".into(),
            name: "pay-green".into(),
            replicas: 0,
            encrypt: false,
            engine_binary: None,
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("DBSHIFT_DB_USER"), "{err}");
    let d = bluegreen::find(&p, Some("pay-green")).await.unwrap();
    assert_eq!(d.green_writer, "pay-green-1");
    let err = bluegreen::switch_params(&p, &d, Side::Green, &SwitchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, BlueGreenError::BadInput(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Aurora") && text.contains("--redirect proxy"),
        "{text}"
    );
}
