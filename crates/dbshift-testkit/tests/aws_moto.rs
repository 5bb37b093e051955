//! The aws provider against a real `moto_server` (started here, behind the testkit's shim that
//! throttles, delays and reports state transitions). Run: `cargo test -p dbshift-testkit --test
//! aws_moto`; needs `moto_server` on PATH (`scripts/deps.sh` installs it).
//!
//! Each test starts its own moto and seeds the 50-instance fleet: they share nothing.

use std::time::Duration;

use dbshift_provider::{
    BlueGreen, CaApply, Certificates, Error, Fleet as _, GreenSpec, InstanceControl,
    InstanceStatus, Redirect, Role,
};
use dbshift_testkit::moto::{self, Fleet, Moto};

async fn fleet() -> (Moto, dbshift_provider::aws::AwsProvider) {
    let m = Moto::start(moto::default_shim()).await;
    Fleet::seed(&m.moto_url()).await;
    let p = moto::provider(&m).await;
    (m, p)
}

/// What moto itself says of an instance (not through the provider).
async fn raw(m: &Moto, id: &str) -> aws_sdk_rds::types::DbInstance {
    moto::sdk_client(&m.moto_url())
        .await
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .expect("describe in moto")
        .db_instances()[0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_fleet_with_clusters_replicas_and_tags() {
    let (_m, p) = fleet().await;
    let instances = p.list_instances().await.unwrap();
    assert_eq!(instances.len(), 50, "{instances:#?}");
    let clusters = p.list_clusters().await.unwrap();
    // 10 Aurora clusters and 8 standalone sources (2 replicas belong to theirs).
    assert_eq!(clusters.len(), 18, "{clusters:#?}");
    let a1 = clusters.iter().find(|c| c.name == "aurora-01").unwrap();
    assert_eq!(a1.instances.len(), 4);
    assert_eq!(a1.writer, "aurora-01-1");
    let m1 = clusters.iter().find(|c| c.name == "mysql-01").unwrap();
    assert_eq!(m1.writer, "mysql-01");
    assert_eq!(m1.instances, vec!["mysql-01", "mysql-01-r1"]);
    let r = instances.iter().find(|i| i.id == "mysql-01-r1").unwrap();
    assert_eq!((r.cluster.as_str(), r.role), ("mysql-01", Role::Reader));
    let a = instances.iter().find(|i| i.id == "aurora-02-3").unwrap();
    assert_eq!(a.role, Role::Reader);
    assert_eq!(a.engine, "aurora-mysql");
    assert_eq!(a.ca, "rds-ca-2019");
    assert_eq!(a.tags.get("env").map(String::as_str), Some("staging"));
    assert_eq!(
        instances
            .iter()
            .filter(|i| i.tags.get("team").map(String::as_str) == Some("payments"))
            .count(),
        12
    );
    assert!(instances
        .iter()
        .all(|i| i.status == InstanceStatus::Available));
    assert!(!p.sql_access());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_come_from_the_injected_catalog_and_modify_waits_for_the_transition() {
    let (m, p) = fleet().await;
    let cas = p.list_cas().await.unwrap();
    let g1 = cas.iter().find(|c| c.id == "rds-ca-rsa2048-g1").unwrap();
    assert!(g1.rotation_without_restart);
    assert!(cas
        .iter()
        .any(|c| c.id == "rds-ca-2019" && c.not_after.starts_with("2024-08-22")));

    let before = m.calls("DescribeDBInstances");
    p.modify_ca("mysql-02", "rds-ca-rsa2048-g1", CaApply::NoRestart)
        .await
        .unwrap();
    // The shim reported `modifying` three times: the waiter polled through them.
    assert!(m.calls("DescribeDBInstances") - before >= 4);
    let d = raw(&m, "mysql-02").await;
    assert_eq!(d.ca_certificate_identifier(), Some("rds-ca-rsa2048-g1"));
    assert_eq!(
        p.describe_instance("mysql-02").await.unwrap().ca,
        "rds-ca-rsa2048-g1"
    );

    // An engine version RDS does not list as rotating without restart refuses no-restart.
    m.configure(|c| c.no_restart_versions.clear());
    let err = p
        .modify_ca("mysql-03", "rds-ca-rsa2048-g1", CaApply::NoRestart)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    assert!(
        err.to_string()
            .contains("SupportsCertificateRotationWithoutRestart"),
        "{err}"
    );
    assert_eq!(
        raw(&m, "mysql-03").await.ca_certificate_identifier(),
        Some("rds-ca-2019")
    );
    assert!(!p.list_cas().await.unwrap()[0].rotation_without_restart);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_errors_say_what_to_do() {
    let (m, p) = fleet().await;
    // Two throttles: the SDK's retries (with jitter) absorb them.
    m.configure(|c| {
        c.throttle_first.insert("DescribeDBInstances".into(), 2);
    });
    assert_eq!(p.list_instances().await.unwrap().len(), 50);
    assert_eq!(m.throttled("DescribeDBInstances"), 2);

    // More throttles than attempts: an error that names the throttle and the way out.
    m.configure(|c| {
        c.throttle_first.insert("RebootDBInstance".into(), 50);
    });
    let err = p
        .reboot("mysql-02", Duration::from_secs(10))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Throttling"), "{text}");
    assert!(text.contains("run the same command again"), "{text}");
    assert_eq!(
        m.throttled("RebootDBInstance"),
        5,
        "max_attempts calls, then the error"
    );

    // Not found: the provider's Unknown (exit 2 in the CLI), naming the instance.
    let err = p.describe_instance("no-such-db").await.unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err}");
    assert!(err.to_string().contains("no-such-db"));

    // Invalid state, as RDS answers a change to a busy instance.
    m.configure(|c| {
        c.fail_next.insert(
            "ModifyDBInstance".into(),
            (
                "InvalidDBInstanceState".into(),
                "Database instance is not in available state.".into(),
            ),
        );
    });
    let err = p
        .modify_ca("mysql-04", "rds-ca-rsa2048-g1", CaApply::Restart)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("InvalidDBInstanceState"), "{text}");
    assert!(text.contains("wait until"), "{text}");
    // A waiter's describe throttled beyond the SDK's attempts: the waiter backs off and
    // polls again instead of failing.
    m.configure(|c| {
        c.throttle_first.insert("DescribeDBInstances".into(), 7);
    });
    p.wait_instance("mysql-04", "available", |_| true)
        .await
        .unwrap();
    assert_eq!(m.throttled("DescribeDBInstances"), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aurora_failover_and_a_multi_az_reboot() {
    let (m, p) = fleet().await;
    assert!(p
        .failover_cluster("aurora-02", "aurora-02-3", Duration::from_secs(20))
        .await
        .unwrap());
    let c = p
        .list_clusters()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "aurora-02")
        .unwrap();
    assert_eq!(c.writer, "aurora-02-3");
    assert_eq!(
        p.describe_instance("aurora-02-3").await.unwrap().role,
        Role::Writer
    );
    // A standalone instance has no platform failover: the caller uses the switchover core.
    assert!(!p
        .failover_cluster("mysql-02", "mysql-02", Duration::from_secs(5))
        .await
        .unwrap());
    let before = m.calls("DescribeDBInstances");
    p.reboot("aurora-02-1", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        m.calls("DescribeDBInstances") - before >= 4,
        "waited through `rebooting`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_green_is_snapshot_copy_restore_and_the_rename_swap_redirects() {
    let (m, p) = fleet().await;
    let spec = GreenSpec {
        source: "mysql-05".into(),
        name: "mysql-05-green".into(),
        replicas: 0,
        encrypt: true,
        engine_binary: None,
    };
    // No database credentials: the control-plane half is done and kept, and the error says
    // what exists and how to go on.
    let err = p.create_green(&spec).await.unwrap_err();
    assert!(matches!(err, Error::NeedsHuman(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("mysql-05-green-snap-"), "{text}");
    assert!(text.contains("-enc"), "{text}");
    assert!(text.contains("DBSHIFT_DB_USER"), "{text}");
    assert!(text.contains("delete-db-instance"), "{text}");
    let client = moto::sdk_client(&m.moto_url()).await;
    let snaps = client
        .describe_db_snapshots()
        .db_instance_identifier("mysql-05")
        .send()
        .await
        .unwrap();
    // Ours (moto also keeps an automated `rds:` snapshot).
    let snaps: Vec<_> = snaps
        .db_snapshots()
        .iter()
        .filter(|s| {
            s.db_snapshot_identifier()
                .unwrap()
                .starts_with("mysql-05-green-snap-")
        })
        .collect();
    assert_eq!(snaps.len(), 2, "{snaps:#?}");
    let copy = snaps
        .iter()
        .find(|s| s.db_snapshot_identifier().unwrap().ends_with("-enc"))
        .unwrap();
    assert_eq!(copy.encrypted(), Some(true));
    assert!(copy.kms_key_id().is_some());
    let green = raw(&m, "mysql-05-green").await;
    assert_eq!(green.storage_encrypted(), Some(true));
    assert_eq!(green.engine_version(), Some("8.4.3"));
    assert_eq!(green.db_instance_class(), Some("db.t3.medium"));
    let g = p.describe_instance("mysql-05-green").await.unwrap();
    assert_eq!(
        g.tags.get("dbshift:deployment").map(String::as_str),
        Some("mysql-05-green")
    );
    assert_eq!(
        g.tags.get("dbshift:side").map(String::as_str),
        Some("green")
    );
    assert!(!raw(&m, "mysql-05")
        .await
        .storage_encrypted()
        .unwrap_or(false));
    // The same request again reuses green (no second snapshot) and stops at the same place.
    let err = p.create_green(&spec).await.unwrap_err();
    assert!(matches!(err, Error::NeedsHuman(_)), "{err}");
    assert!(err.to_string().contains("earlier run"), "{err}");
    let n = client
        .describe_db_snapshots()
        .db_instance_identifier("mysql-05")
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter(|s| {
            s.db_snapshot_identifier()
                .unwrap()
                .starts_with("mysql-05-green-snap-")
        })
        .count();
    assert_eq!(n, 2);
    // Another deployment's name on an existing instance is refused.
    let other = GreenSpec {
        source: "mysql-06".into(),
        name: "mysql-05-green".into(),
        ..spec.clone()
    };
    assert!(matches!(
        p.create_green(&other).await.unwrap_err(),
        Error::BadInput(_)
    ));
    let deps = p.deployments().await.unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].blue, "mysql-05");

    // Redirect by identifier swap: blue is renamed away, green takes blue's name.
    p.set_writer("mysql-05", "mysql-05-green").await.unwrap();
    let now = raw(&m, "mysql-05").await;
    assert_eq!(
        now.storage_encrypted(),
        Some(true),
        "the name is green's now"
    );
    // dbshift's ids stay (the `dbshift:id` tags); the names clients use moved.
    let all = p.list_instances().await.unwrap();
    assert_eq!(all.len(), 51);
    let blue = all.iter().find(|i| i.id == "mysql-05").unwrap();
    assert!(blue.cluster.starts_with("mysql-05-old-"), "{blue:?}");
    assert!(!blue.encrypted);
    let green = all.iter().find(|i| i.id == "mysql-05-green").unwrap();
    assert_eq!(green.cluster, "mysql-05");
    let clusters = p.list_clusters().await.unwrap();
    let c = clusters.iter().find(|c| c.name == "mysql-05").unwrap();
    assert_eq!(c.writer, "mysql-05-green");
    assert!(!p.describe_instance("mysql-05").await.unwrap().encrypted);
    let deps = p.deployments().await.unwrap();
    assert_eq!(deps[0].serving, dbshift_provider::Side::Green);
    assert_eq!(
        (deps[0].blue_writer.as_str(), deps[0].green_writer.as_str()),
        ("mysql-05", "mysql-05-green")
    );
    // And back: the name returns to blue, green gets a name of its own again.
    p.set_writer("mysql-05", "mysql-05").await.unwrap();
    assert!(!raw(&m, "mysql-05")
        .await
        .storage_encrypted()
        .unwrap_or(false));
    assert_eq!(
        p.deployments().await.unwrap()[0].serving,
        dbshift_provider::Side::Blue
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aurora_green_is_a_restored_encrypted_cluster_with_a_writer() {
    let (m, p) = fleet().await;
    let spec = GreenSpec {
        source: "aurora-04".into(),
        name: "aurora-04-green".into(),
        replicas: 0,
        encrypt: true,
        engine_binary: None,
    };
    let err = p.create_green(&spec).await.unwrap_err();
    assert!(matches!(err, Error::NeedsHuman(_)), "{err}");
    let client = moto::sdk_client(&m.moto_url()).await;
    let c = client
        .describe_db_clusters()
        .db_cluster_identifier("aurora-04-green")
        .send()
        .await
        .unwrap();
    let c = &c.db_clusters()[0];
    assert_eq!(c.storage_encrypted(), Some(true));
    assert_eq!(c.engine_version(), Some(Fleet::AURORA_VERSION));
    assert_eq!(c.db_cluster_members().len(), 1);
    assert_eq!(
        c.db_cluster_members()[0].db_instance_identifier(),
        Some("aurora-04-green-1")
    );
    let clusters = p.list_clusters().await.unwrap();
    let g = clusters
        .iter()
        .find(|c| c.name == "aurora-04-green")
        .unwrap();
    assert_eq!(g.writer, "aurora-04-green-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gives_up_at_its_timeout_naming_what_it_waited_for() {
    let m = Moto::start(moto::default_shim()).await;
    Fleet::seed(&m.moto_url()).await;
    // An instance that stays `modifying` far longer than the waiter's bound, each describe
    // slowed down too.
    m.configure(|c| {
        c.busy_describes = 10_000;
        c.delay
            .insert("DescribeDBInstances".into(), Duration::from_millis(20));
    });
    moto::set_test_credentials();
    let opts = dbshift_provider::aws::AwsOptions {
        endpoint_url: Some(m.url()),
        wait_timeout: Duration::from_secs(1),
        ..moto::test_options()
    };
    let p = dbshift_provider::aws::AwsProvider::connect(opts)
        .await
        .unwrap();
    let err = p
        .modify_ca("mysql-02", "rds-ca-rsa2048-g1", CaApply::NoRestart)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("mysql-02 to be on rds-ca-rsa2048-g1"),
        "{text}"
    );
    assert_eq!(
        p.describe_instance("mysql-02").await.unwrap().status,
        InstanceStatus::Busy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_fence_goes_through_a_custom_parameter_group_only() {
    let (m, p) = fleet().await;
    // A default group cannot be changed: refused, with the way out.
    let err = p.set_read_only("mysql-02", true).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("custom parameter group"), "{err}");

    let client = moto::sdk_client(&m.moto_url()).await;
    client
        .create_db_parameter_group()
        .db_parameter_group_name("orders-mysql80")
        .db_parameter_group_family("mysql8.0")
        .description("orders")
        .send()
        .await
        .unwrap();
    client
        .modify_db_instance()
        .db_instance_identifier("mysql-02")
        .db_parameter_group_name("orders-mysql80")
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    p.set_read_only("mysql-02", true).await.unwrap();
    let read_only = || async {
        client
            .describe_db_parameters()
            .db_parameter_group_name("orders-mysql80")
            .source("user")
            .send()
            .await
            .unwrap()
            .parameters()
            .iter()
            .find(|x| x.parameter_name() == Some("read_only"))
            .and_then(|x| x.parameter_value().map(str::to_string))
    };
    assert_eq!(read_only().await.as_deref(), Some("1"));
    p.set_read_only("mysql-02", false).await.unwrap();
    assert_eq!(read_only().await.as_deref(), Some("0"));
}
