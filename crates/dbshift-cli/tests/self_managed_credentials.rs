//! Users per cluster on a self-managed fleet: a lab of two clusters driven through one fleet
//! file where the second cluster has an admin user of its own (`[cluster.credentials]`, a
//! user only its servers know). `inventory` reads both, and `check` and a switchover there
//! and back run on the second cluster with its own user; the fleet's user cannot log in there,
//! which the test checks first, so nothing could have passed with it.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_credentials` (needs MariaDB).
#![cfg(feature = "self-managed")]

mod common;

use std::process::Output;
use std::time::Duration;

use common::{json, text};
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_testkit::TestLab;

async fn run(
    dir: &std::path::Path,
    fleet: &std::path::Path,
    env: &[(&str, String)],
    args: &[&str],
) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::fleet_run(dir, fleet, &env, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_is_reached_with_its_own_users() {
    let lab = TestLab::start(2, 1).await;
    let st = lab.lab().state().clone();
    let (one, two) = (&st.clusters[0], &st.clusters[1]);
    let port = |id: &str| st.instance(id).unwrap().port;
    let two_replica = st
        .instances
        .iter()
        .find(|i| i.cluster == two.name && i.id != two.writer)
        .unwrap();
    // A user only the second cluster knows (created on its writer, replicated to its replica),
    // and the fleet's user dropped there.
    let other_pw = "other-admin-password-1234";
    let mut w = lab.lab().connect_admin(&two.writer).await.unwrap();
    for sql in [
        format!("CREATE USER 'other_admin'@'127.0.0.1' IDENTIFIED BY '{other_pw}'"),
        "GRANT ALL ON *.* TO 'other_admin'@'127.0.0.1' WITH GRANT OPTION".to_string(),
    ] {
        w.exec_sql(&sql).await.unwrap();
    }
    w.close().await;
    let ca = lab.lab().ca_bundle();
    let login = |p: u16, user: &str, pw: &str| {
        ConnectOptions::new("127.0.0.1".to_string(), p, user.to_string())
            .password(pw.to_string())
            .tls(TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            })
            .connect_timeout(Duration::from_secs(2))
    };
    // Replicated before the fleet's user goes: wait until the replica lets the new one in.
    let mut tries = 0;
    while Server::connect(&login(two_replica.port, "other_admin", other_pw))
        .await
        .is_err()
    {
        tries += 1;
        assert!(tries < 100, "the user never reached the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut w = Server::connect(&login(port(&two.writer), "other_admin", other_pw))
        .await
        .unwrap();
    w.exec_sql(&format!(
        "DROP USER '{0}'@'127.0.0.1', '{0}'@'localhost'",
        st.users.admin.user
    ))
    .await
    .unwrap();
    w.close().await;
    let fleet_admin = &st.users.admin;
    for p in [port(&two.writer), two_replica.port] {
        let mut tries = 0;
        while Server::connect(&login(p, &fleet_admin.user, &fleet_admin.password))
            .await
            .is_ok()
        {
            tries += 1;
            assert!(tries < 100, "the fleet's user still logs in on {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(
        dir.join("replication.password"),
        format!("{}\n", st.users.replication.password),
    )
    .unwrap();
    let fleet = dir.join("fleet.toml");
    std::fs::write(
        &fleet,
        format!(
            "[credentials]\n\
             admin = {{ user = {:?}, password_env = \"FLEET_ADMIN_PW\" }}\n\
             replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
             [tls]\nca_file = {:?}\n\
             [[cluster]]\nname = \"one\"\nseeds = [\"127.0.0.1:{}\"]\n\
             [[cluster]]\nname = \"two\"\nseeds = [\"127.0.0.1:{}\"]\n\
             [cluster.credentials]\nadmin = {{ user = \"other_admin\", password_env = \"OTHER_ADMIN_PW\" }}\n",
            fleet_admin.user,
            st.users.replication.user,
            ca.display().to_string(),
            port(&one.writer),
            port(&two.writer),
        ),
    )
    .unwrap();
    let env = [
        ("FLEET_ADMIN_PW", fleet_admin.password.clone()),
        ("OTHER_ADMIN_PW", other_pw.to_string()),
    ];
    let rows = json(&run(dir, &fleet, &env, &["inventory", "-o", "json"]).await);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| r["replication"].is_null()
                || r["problems"].as_array().is_none_or(|p| p.is_empty())),
        "every server read: {rows:#?}"
    );
    let o = run(dir, &fleet, &env, &["check", "two"]).await;
    assert!(o.status.success(), "check two: {}", text(&o));
    let replica_id = format!("127.0.0.1:{}", two_replica.port);
    let writer_id = format!("127.0.0.1:{}", port(&two.writer));
    for to in [&replica_id, &writer_id] {
        let o = run(
            dir,
            &fleet,
            &env,
            &["switchover", "two", "--to", to, "--yes"],
        )
        .await;
        assert!(o.status.success(), "switchover to {to}: {}", text(&o));
    }
    let o = run(dir, &fleet, &env, &["check", "one"]).await;
    assert!(o.status.success(), "check one: {}", text(&o));
    // Each run says who started it.
    let runs = json(&run(dir, &fleet, &env, &["runs", "-o", "json"]).await);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for r in runs {
        let by = &r["started_by"];
        assert!(
            by["pid"].as_u64().is_some_and(|p| p > 0)
                && by["version"] == env!("CARGO_PKG_VERSION")
                && by["host"].as_str().is_some_and(|h| !h.is_empty())
                && by["user"].as_str().is_some_and(|u| !u.is_empty()),
            "{r:#}"
        );
    }
}
